"""``ispvm collector``: polls a PoP's devices with the engine's own Poller and collectors, and
publishes every poll to JetStream.

* Configuration comes from the centre: the engine keeps each collector's devices and polling
  settings (secret *names* only) under the collector's key in a JetStream KV bucket. The
  collector reads the key every heartbeat and, when its revision changes, restarts its Poller on
  the new list. The last one received is kept in the local buffer file, so a collector restarted
  during a WAN cut polls on. (A KV watch is an ordered push consumer that has to be rebuilt after
  a server restart; reading one key every few seconds is cheaper to get right.)
* Every poll message goes to the local buffer first (buffer.py) and is deleted once the stream
  acknowledged it: a WAN cut or a restart loses nothing, and the backlog replays in order.
* ``Nats-Msg-Id`` = ``collector:device:started_at``: JetStream drops a message it already has
  (a publish whose acknowledgement was lost is sent again), and the engine ignores a started_at
  it already stored for that device.
* A heartbeat on ``ispvm.hb.<collector>`` every ``heartbeat_s`` while the link is up.
* Config reads (collector_config.py), when the centre's configuration carries ``config_watch``:
  normalised here, queued in the same buffer on ``ispvm.config.<collector>.<device>``; the centre
  asks for reads on ``ispvm.cfgreq.<collector>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from nats.errors import MaxPayloadError

from ispvm_tui.clock import Clock
from ispvm_tui.collectors.results import PollResult
from ispvm_tui.config import Config, Remote
from ispvm_tui.engine.polling import DeviceSchedule, Poller, build_collectors, shared_snmp_engine
from ispvm_tui.remote import codec, link
from ispvm_tui.remote.buffer import MAX_ATTEMPTS, Buffer
from ispvm_tui.remote.codec import CodecError
from ispvm_tui.remote.collector_config import ConfigReads, settings_from
from ispvm_tui.secrets import MemoSecrets, SecretError, SecretSource

log = logging.getLogger(__name__)

SEND_WINDOW = 32  # publishes in flight at once: a WAN round trip per poll would cap the replay rate
PUBLISH_TIMEOUT_S = 5.0
CONFIG_KEY = "config"  # meta key of the last configuration received
DRAIN_S = 5.0  # at a stop, how long the last polls may take to reach the stream (the rest stay buffered)
MAX_DENIED = 10_000  # subjects the server refused us, remembered (this collector's own: a few per device)


class _TooLarge(Exception):
    """Over the server's max_payload, headers included: it can never be sent."""


class RemoteCollector:
    def __init__(self, remote: Remote, name: str, *, secrets: SecretSource, clock: Clock, buffer_path: Path) -> None:
        self.remote = remote
        self.name = name
        self.secrets = MemoSecrets(secrets)
        self.clock = clock
        self.buffer = Buffer(buffer_path, remote.buffer_max_polls)
        self.heartbeat_s = remote.heartbeat_s
        self.config: Config | None = None
        self.poller: Poller | None = None
        self.config_reads: ConfigReads | None = None  # None: the centre asked for no config reads
        self._snmp_engine: Any = None
        self._revision: int | None = None
        self._nc: Any = None
        self._js: Any = None
        self._kv: Any = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self.published = 0
        self.made = 0  # polls made since start
        self.setup_errors: dict[str, str] = {}
        self._server_max_payload = 0
        self._push_lock = asyncio.Lock()
        self._denied: dict[str, str] = {}  # subject -> the server's permissions error

    # ---- lifecycle --------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        opts = link.options(self.remote, self.secrets)  # SecretError before anything starts
        opts["inbox_prefix"] = link.inbox_prefix(self.name)  # its own replies only (natsauth.py)
        saved = self.buffer.get_meta(CONFIG_KEY)
        if saved is not None:
            with contextlib.suppress(ValueError):
                await self._apply(json.loads(saved), source="the local buffer (last received)")
        tasks = [asyncio.create_task(self._sender(), name="sender"),
                 asyncio.create_task(self._heartbeats(), name="heartbeat"),
                 asyncio.create_task(self._connection(opts), name="nats")]
        try:
            await stop.wait()
            await self._stop_poller()
            await self._drain(DRAIN_S)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._stop_poller()
            self.buffer.set_meta("made", str(self.made).encode())
            if self._nc is not None:
                await self._goodbye()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._nc.close(), 5)
            self.buffer.close()

    async def _connection(self, opts: dict[str, Any]) -> None:
        nc = await link.connect_forever(self.remote, opts, f"ispvm-collector-{self.name}", self._stop,
                                        on_state=self._on_link, on_error=self._on_error)
        if nc is None:
            return
        self._nc, self._js = nc, nc.jetstream()
        with contextlib.suppress(Exception):  # nats-py subscribes again after every reconnect
            await nc.subscribe(link.request_subject(self.name), cb=self._on_request)
        while True:  # the configuration, from the centre
            await self._check_config()
            await asyncio.sleep(self.heartbeat_s)

    def _on_link(self, up: bool) -> None:
        if up:
            self._wake.set()

    # ---- configuration from the centre ------------------------------------
    async def _check_config(self) -> None:
        if self._nc is None or not self._nc.is_connected:
            return
        try:
            if self._kv is None:
                self._kv = await self._js.key_value(link.config_bucket(self.remote))
            entry = await self._kv.get(self.name)
        except Exception as exc:  # no bucket or key yet (centre not started), or the link just dropped
            log.debug("collector configuration not readable yet: %s", exc)
            return
        if entry.revision == self._revision or entry.value is None:
            return
        self._revision = entry.revision
        try:
            payload = json.loads(entry.value)
            await self._apply(payload, source="the centre")
        except (ValueError, TypeError) as exc:
            log.error("configuration from the centre rejected (keeping the current one): %s", exc)
            return
        self.buffer.set_meta(CONFIG_KEY, entry.value)

    async def _apply(self, payload: dict[str, Any], source: str) -> None:
        """Poll what ``payload`` lists (ValueError if it is not a configuration)."""
        if not isinstance(payload, dict) or payload.get("v") != 1 or payload.get("collector") != self.name:
            raise ValueError("not a configuration for this collector (v1)")
        cfg = Config.model_validate(payload["config"])  # pydantic's ValidationError is a ValueError
        reads = settings_from(payload["config"])
        hb = payload.get("heartbeat_s")
        if isinstance(hb, int | float) and 0.2 <= hb <= 300:
            self.heartbeat_s = float(hb)
        if self.config is not None and cfg == self.config and (reads is None) == (self.config_reads is None):
            return
        await self._stop_poller()
        self.config = cfg
        # Off the loop: a keyring or the encrypted file can take a while per secret, and pysnmp's engine
        # about a second of CPU; heartbeats and the sender must not wait on either.
        await asyncio.to_thread(self._prefetch_secrets, cfg)
        self._snmp_engine = await asyncio.to_thread(shared_snmp_engine, cfg)  # None unless a device polls SNMPv3
        schedules: dict[str, DeviceSchedule] = {}
        self.setup_errors = {}
        for dev in cfg.devices:
            try:
                collectors = build_collectors(cfg, dev, self.secrets, self.clock, self._snmp_engine)
            except (SecretError, ValueError) as exc:  # reported, and the device's polls say so too
                self.setup_errors[dev.name] = str(exc)
                log.error("%s", exc)
                collectors = []
            schedules[dev.name] = DeviceSchedule(dev.name, collectors)
        self.poller = Poller(cfg, self.clock, schedules, self._on_results)
        if reads is None:
            self.config_reads = None
        elif self.config_reads is None or not self.config_reads.keep_for(reads, schedules):
            self.config_reads = ConfigReads(self.name, reads, schedules, self.clock, self._enqueue)
        if self.config_reads is not None:
            self.config_reads.hook(self.poller)
        self.poller.start()
        log.warning("collector %s polls %d devices (configuration from %s)", self.name, len(schedules), source)

    def _prefetch_secrets(self, cfg: Config) -> None:
        for name in sorted(cfg.secret_names() - self._link_secrets()):
            with contextlib.suppress(SecretError):  # reported per device when its collectors are built
                self.secrets.get(name)

    def _link_secrets(self) -> set[str]:
        return {n for n in (self.remote.password_secret, self.remote.nkey_seed_secret) if n}

    async def _stop_poller(self) -> None:
        if self.poller is not None:
            await self.poller.stop()
            self.poller = None
        if self._snmp_engine is not None:
            self._snmp_engine.close_dispatcher()
            self._snmp_engine = None

    # ---- results out --------------------------------------------------------
    def _max_payload(self) -> int:
        """The server's max_payload (from its INFO, remembered), never above what the centre decodes."""
        limit = codec.MAX_MESSAGE_BYTES
        if self._nc is not None and self._nc.is_connected:
            self._server_max_payload = self._nc.max_payload
        if self._server_max_payload:
            limit = min(limit, self._server_max_payload)
        return limit

    async def _on_results(self, device: str, results: list[PollResult]) -> None:
        started = min(r.started_at for r in results)
        msg_id = f"{self.name}:{device}:{started!r}"
        subject = link.results_subject(self.name, device)
        self.made += 1
        try:
            payload = codec.encode(self.name, device, results)
        except CodecError as exc:
            await asyncio.to_thread(self.buffer.refuse, subject, msg_id, b"", f"too large: {exc}", self.clock.now())
            return
        await self._enqueue(subject, msg_id, payload)

    async def _enqueue(self, subject: str, msg_id: str, payload: bytes) -> bool:
        """Into the buffer, for the sender; False (refused, kept in ``dead``, counted) if it can never be sent."""
        # Sized with the longest headers it may get (replayed after a long cut), so it fits then too.
        size, limit = codec.wire_size(payload, self._headers(msg_id, codec.MAX_QUEUED_S)), self._max_payload()
        if size > limit:  # it would block the queue (or close the connection): refused, kept, counted
            await asyncio.to_thread(self.buffer.refuse, subject, msg_id, payload,
                                    f"too large: {size} bytes with headers, the server takes {limit}",
                                    self.clock.now())
            return False
        # Off the loop, one at a time: the lock hands out turns in arrival order, so polls are stored in
        # the order they finished, and the sender keeps it.
        queued_at = self.clock.now()
        async with self._push_lock:
            await asyncio.to_thread(self.buffer.push, subject, msg_id, payload, queued_at)
        self._wake.set()
        return True

    async def _on_request(self, msg: Any) -> None:
        if self.config_reads is not None:
            self.config_reads.on_request(msg.data, self.poller)

    def _on_error(self, exc: Exception) -> None:
        subject = link.denied_subject(exc)
        if subject is not None and len(self._denied) < MAX_DENIED:
            self._denied[subject.lower()] = str(exc)  # nats-py hands the server's error over lower-cased

    async def _sender(self) -> None:
        """Oldest first, a window at a time; what was accepted leaves the buffer, what failed is sent again.

        A message that can never be accepted is moved aside (Buffer.dead_letter): one over the server's
        max_payload, one on a subject the server denies this collector, or one that failed MAX_ATTEMPTS
        times while others in its window got through. A failure of the link or of the stream as a whole
        counts against no message: they all wait."""
        failing_since: float | None = None
        while True:
            rows = await asyncio.to_thread(self.buffer.peek, SEND_WINDOW)
            if not rows or self._js is None or not self._nc.is_connected:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                continue
            now = self.clock.now()
            outcomes = await asyncio.gather(*(self._publish(subject, msg_id, payload, queued_at, now)
                                              for _, subject, msg_id, payload, queued_at in rows),
                                            return_exceptions=True)
            sent = [row[0] for row, outcome in zip(rows, outcomes, strict=True) if outcome is None]
            failed = [(row, outcome) for row, outcome in zip(rows, outcomes, strict=True) if outcome is not None]
            await asyncio.to_thread(self.buffer.delete, sent)
            self.published += len(sent)
            if failed:
                stuck = await self._failures(failed, others_accepted=bool(sent))
                if stuck and failing_since is None:
                    failing_since = time.monotonic()
                    error = failed[0][1]
                    log.warning("publishing to JetStream failed (%s); %d polls buffered locally, retrying",
                                type(error).__name__ if isinstance(error, BaseException) else error,
                                self.buffer.count)
                if stuck:
                    await asyncio.sleep(1.0)
            elif failing_since is not None:
                log.warning("publishing again after %.0f s; %d polls still buffered",
                            time.monotonic() - failing_since, self.buffer.count)
                failing_since = None

    async def _failures(self, failed: list[tuple[Any, BaseException]], others_accepted: bool) -> bool:
        """Dead-letter what can never be sent; True if something is left to retry."""
        left = False
        for (seq, subject, *_), error in failed:
            reason = self._permanent(subject, error)
            if reason is None and others_accepted:
                attempts = await asyncio.to_thread(self.buffer.failed, seq)
                if attempts >= MAX_ATTEMPTS:
                    reason = f"failed {attempts} times while others were accepted: {type(error).__name__}: {error}"
            if reason is None:
                left = True
                continue
            await asyncio.to_thread(self.buffer.dead_letter, seq, reason, self.clock.now())
        return left

    def _permanent(self, subject: str, error: BaseException) -> str | None:
        if isinstance(error, _TooLarge):
            return f"too large: {error}"
        if isinstance(error, MaxPayloadError):
            return "too large: over the server's max_payload"
        denied = self._denied.get(subject.lower())
        if denied is not None:
            return f"permission denied: {denied}"
        return None

    async def _drain(self, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while self.buffer.count and time.monotonic() < deadline and self._nc is not None and self._nc.is_connected:
            await asyncio.sleep(0.1)

    def summary(self) -> str:
        reads = f", {self.config_reads.queued} config reads" if self.config_reads is not None else ""
        return (f"collector {self.name}: {self.made} polls made{reads}, {self.published} published, "
                f"{self.buffer.count} still buffered, {self.buffer.dropped} dropped (buffer full), "
                f"{self.buffer.dead_now} dead (never sendable)")

    @staticmethod
    def _headers(msg_id: str, replayed_s: float | None) -> dict[str, str]:
        headers = {"Nats-Msg-Id": msg_id}
        if replayed_s is not None:  # the centre stores it as history and keeps it from the rules
            headers[codec.REPLAYED_HEADER] = f"{min(replayed_s, codec.MAX_QUEUED_S):.1f}"
        return headers

    def _interval(self, subject: str) -> float:
        device = subject.split(".", 3)[-1]
        cfg = self.config
        if cfg is None:
            return 60.0
        dev = next((d for d in cfg.devices if d.name == device), None)
        return (dev.interval_s if dev is not None else None) or cfg.polling.interval_s

    async def _publish(self, subject: str, msg_id: str, payload: bytes, queued_at: float | None, now: float) -> None:
        # Replayed: it waited in the buffer longer than a poll interval, measured on this host's clock
        # alone (when it was buffered, when it is sent), so the PoP's clock never meets the centre's.
        queued_s = max(0.0, now - queued_at) if queued_at is not None else 0.0
        headers = self._headers(msg_id, queued_s if queued_s > self._interval(subject) else None)
        size, limit = codec.wire_size(payload, headers), self._max_payload()
        if size > limit:  # the server would close the connection on it, and it would come again after
            raise _TooLarge(f"{size} bytes with headers, the server takes {limit}")
        await self._js.publish(subject, payload, timeout=PUBLISH_TIMEOUT_S, headers=headers)

    def _heartbeat(self, stopping: bool = False) -> bytes:
        body = {"v": 1, "collector": self.name, "at": self.clock.now(), "buffered": self.buffer.count,
                "dropped": self.buffer.dropped, "dead": self.buffer.dead,
                "devices": len(self.poller.schedules) if self.poller else 0}
        if stopping:
            body["stopping"] = True
        return json.dumps(body).encode()

    async def _heartbeats(self) -> None:
        subject = f"{link.HEARTBEAT_PREFIX}.{self.name}"
        while True:
            # Only while connected: heartbeats queued during a cut would all arrive at once, and late.
            if self._nc is not None and self._nc.is_connected:
                with contextlib.suppress(Exception):
                    await self._nc.publish(subject, self._heartbeat())
            await asyncio.sleep(self.heartbeat_s)

    async def _goodbye(self) -> None:
        """A deliberate stop says so: the centre records "collector stopped" instead of paging it lost."""
        if not self._nc.is_connected:
            return
        with contextlib.suppress(Exception):
            await self._nc.publish(f"{link.HEARTBEAT_PREFIX}.{self.name}", self._heartbeat(stopping=True))
            await asyncio.wait_for(self._nc.flush(), 2)
