"""The engine's side of the result stream: remote polls in, collector configuration out.

Started by ``Engine.start`` when ``[remote]`` is set. It

* makes sure the stream (``ispvm.results.>``, with a dedup window) and the config bucket exist, and
  puts each collector's devices and polling settings under its key (secret names only);
* reads the stream through one durable pull consumer: decode -> ``engine.ingest`` -> wait until the
  samples are committed -> ack. While the rows cannot be committed yet, the messages are kept in
  progress and the commit is waited for again (never nak'd: the rows are queued and would be stored
  twice); if the store's writer died, fetching stops and a restart's dedup takes over. A malformed
  message (or one naming a device that collector does not poll) is terminated, logged and counted;
  nothing in it reaches the engine;
* drops a poll whose started_at it already has for that device (a redelivery), and marks as late
  (stored, never fed to the rules) a poll the collector says it replayed from its buffer
  (``Ispvm-Replayed`` header: buffered longer than a poll interval) or one that was already in the
  stream when the centre last (re)connected. No clock of the PoP is compared with the centre's:
  a heartbeat whose ``at`` is off by more than CLOCK_SKEW_WARN_S is warned about, nothing more;
* watches heartbeats: a collector unheard of for 3 x heartbeat_s raises one ``collector_lost`` alert
  (one incident, "Collector X lost: N devices not monitored"); its devices' state is unknown
  meanwhile, and since no results arrive for them they raise no unreachable alerts. Judged every
  tick, so an alert restored after a restart closes when the collector is heard again;
* watches its own link: while the engine cannot reach NATS, collectors' verdicts are frozen and
  one ``result_stream_unreachable`` alert (entity ``stream:<name>``) fires instead of one per
  collector; at the reconnect every collector gets its grace again;
* takes the collectors' config reads from the same stream and sends them read requests
  (centre_config.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from nats.js import api
from nats.js.errors import NotFoundError

from ispvm_tui.engine.api import CollectorView, EntityState
from ispvm_tui.remote import codec, link
from ispvm_tui.remote.centre_config import ConfigIntake
from ispvm_tui.remote.codec import CodecError

if TYPE_CHECKING:
    from ispvm_tui.engine.core import Engine

log = logging.getLogger(__name__)

DURABLE = "ispvm-engine"
FETCH_BATCH = 128
DEDUP_WINDOW_S = 300.0  # JetStream drops a repeated Nats-Msg-Id this long (a publish retried after a lost ack)
SEEN_PER_DEVICE = 512  # started_at values remembered per device for the engine's own duplicate check
LOST_AFTER = 3  # heartbeats missed
META = "ispvm."  # stream metadata keys: the limits ispvm itself last set
CLOCK_SKEW_WARN_S = 5.0  # a heartbeat's "at" this far from the engine's clock is warned about
COMMIT_RETRY_MAX_S = 10.0  # well inside ack_wait: in_progress is sent at every retry


def _close(value: float, recorded: str) -> bool:
    try:
        return math.isclose(value, float(recorded), rel_tol=1e-6)
    except ValueError:
        return False


class Centre:
    def __init__(self, engine: Engine) -> None:
        assert engine.config.remote is not None
        self.engine = engine
        self.remote = engine.config.remote
        self.assigned = dict(engine.remote_devices)  # device -> collector
        self.members: dict[str, list[str]] = {c.name: [] for c in engine.config.collectors}
        for device, collector in self.assigned.items():
            self.members[collector].append(device)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._nc: Any = None
        self._seen: dict[str, tuple[deque[float], set[float]]] = {}
        # The centre's own link: while it is down no collector can be heard, so their verdicts freeze and
        # one result_stream_unreachable alert speaks for all of them. Grace counts from the last change.
        self.link_up = False
        self._link_since = time.monotonic()
        self.last_heartbeat: dict[str, float] = dict.fromkeys(self.members, self._link_since)
        self._heard: set[str] = set()  # collectors heard since the last (re)connect
        self._skewed: set[str] = set()  # collectors whose clock was last seen off (warned once)
        self._stopped: set[str] = set()  # collectors that said goodbye (a deliberate stop), until heard again
        self._backlog_seq = 0  # stream messages up to this one were stored while the centre was away
        self._background: set[asyncio.Future[Any]] = set()
        self.received = 0
        self.ingested = 0
        self.duplicates = 0
        self.late = 0
        self.malformed = 0
        self.not_committed = 0  # polls whose commit had to be waited for
        self.halted = False  # the store's writer died: fetching stopped
        self.config_reads = ConfigIntake(self)

    # ---- lifecycle ------------------------------------------------------
    async def start(self) -> None:
        opts = link.options(self.remote, self.engine.secrets)
        await asyncio.to_thread(self._seen_from_store)  # up to an hour of poll_log: not on the loop
        await asyncio.to_thread(self.config_reads.restore)
        self._tasks = [asyncio.create_task(self._run(opts), name="remote-results"),
                       asyncio.create_task(self._watch_heartbeats(), name="remote-heartbeats")]

    async def stop(self) -> None:
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), 5)

    async def _run(self, opts: dict[str, Any]) -> None:
        nc = await link.connect_forever(self.remote, opts, "ispvm-engine", self._stop, on_state=self._on_link)
        if nc is None:
            return
        self._nc = nc
        js = nc.jetstream()
        await nc.subscribe(f"{link.HEARTBEAT_PREFIX}.*", cb=self._on_heartbeat)
        while True:  # set up what the collectors need; retried while the server is away
            try:
                await self._ensure_stream(js)
                await self._mark_backlog(js)
                await self._publish_configs(js)
                sub = await js.pull_subscribe(f"{link.RESULTS_PREFIX}.>", durable=DURABLE, stream=self.remote.stream,
                                              config=api.ConsumerConfig(ack_wait=60, max_ack_pending=4 * FETCH_BATCH))
                config_sub = await self.config_reads.subscribe(nc)
                break
            except Exception as exc:
                log.warning("setting up the result stream failed (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(2.0)
        self._tasks.append(asyncio.create_task(self.config_reads.run(config_sub), name="remote-config-reads"))

        async def handle(msgs: list[Any]) -> bool:
            await self._handle(msgs)
            return not self.halted

        await link.pull(sub, FETCH_BATCH, handle, "results")

    async def _mark_backlog(self, js: Any) -> None:
        """What the stream holds now arrived while this centre was away: history, not news."""
        info = await js.stream_info(self.remote.stream)
        self._backlog_seq = max(self._backlog_seq, info.state.last_seq)

    async def _after_reconnect(self) -> None:
        if self._nc is None:
            return
        try:
            await self._mark_backlog(self._nc.jetstream())
        except Exception as exc:  # the link dropped again: the next reconnect tries again
            log.debug("stream state after the reconnect not read: %s", exc)

    async def _ensure_stream(self, js: Any) -> None:
        """Create the stream as a work queue; on an existing one, apply the config's limits only where
        nobody changed them since ispvm set them (recorded in the stream's metadata): an operator's
        ``nats stream edit`` wins, with a warning, instead of being overwritten at every start."""
        stream = self.remote.stream
        subjects = [f"{link.RESULTS_PREFIX}.>", f"{link.CONFIG_PREFIX}.>"]
        want = {"max_age": self.remote.stream_max_age_s, "max_bytes": float(self.remote.stream_max_bytes),
                "duplicate_window": DEDUP_WINDOW_S}
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            await js.add_stream(api.StreamConfig(
                name=stream, subjects=subjects, retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE, discard=api.DiscardPolicy.OLD, max_age=want["max_age"],
                max_bytes=self.remote.stream_max_bytes, duplicate_window=DEDUP_WINDOW_S,
                metadata={f"{META}{k}": repr(v) for k, v in want.items()}))
            return
        cfg = info.config
        meta = {k: v for k, v in (cfg.metadata or {}).items() if not k.startswith("_nats")}
        changed = False
        for key, value in want.items():
            current = float(getattr(cfg, key) or 0)
            recorded = meta.get(f"{META}{key}")
            if math.isclose(current, value, rel_tol=1e-6):
                changed |= recorded != repr(value)
                meta[f"{META}{key}"] = repr(value)
                continue
            if recorded is not None and not _close(current, recorded):
                log.warning("stream %s: %s is %g, changed outside ispvm ([remote] says %g): left as it is",
                            stream, key, current, value)
                continue
            setattr(cfg, key, int(value) if key == "max_bytes" else value)
            meta[f"{META}{key}"] = repr(value)
            changed = True
        missing = [s for s in subjects if s not in (cfg.subjects or [])]
        if missing:  # a stream from before config reads gains their subject
            cfg.subjects = [*(cfg.subjects or []), *missing]
            changed = True
        if cfg.retention != api.RetentionPolicy.WORK_QUEUE:
            log.warning("stream %s keeps %s retention (made before work-queue retention): acknowledged results "
                        "stay until max_age; delete the stream while the engine is stopped to recreate it",
                        stream, cfg.retention)
        if changed:
            cfg.metadata = {**(cfg.metadata or {}), **meta}
            await js.update_stream(cfg)

    async def _publish_configs(self, js: Any) -> None:
        bucket = link.config_bucket(self.remote)
        # Direct gets name the key in the subject, so a collector's NATS user can be allowed its own key only.
        try:
            info = await js.stream_info(f"KV_{bucket}")
        except NotFoundError:
            kv = await js.create_key_value(api.KeyValueConfig(bucket=bucket, history=1, direct=True))
        else:
            if not info.config.allow_direct:  # a bucket made before per-collector users
                info.config.allow_direct = True
                await js.update_stream(info.config)
            kv = await js.key_value(bucket)
        for collector, devices in self.members.items():
            value = json.dumps(self.collector_config(collector, devices), sort_keys=True).encode()
            with contextlib.suppress(Exception):
                if (await kv.get(collector)).value == value:
                    continue  # unchanged: the collector keeps polling without a restart
            await kv.put(collector, value)

    def collector_config(self, collector: str, devices: list[str]) -> dict[str, Any]:
        """What the collector needs to poll its devices: no secrets, only their names."""
        cfg = self.engine.config
        mine = [cfg.device(d) for d in devices]
        creds = {d.credential for d in mine if d.credential}
        profiles = {d.snmp for d in mine if d.snmp}
        sites = sorted({d.site for d in mine}) or [s.name for s in cfg.sites[:1]]
        sub = {
            "polling": cfg.polling.model_dump(mode="json"),
            "console": {"attach": [devices[0]] if devices else list(cfg.console.attach[:1])},
            "sites": [{"name": s} for s in sites],
            "credentials": {k: v.model_dump(mode="json") for k, v in cfg.credentials.items() if k in creds},
            "snmp": {k: v.model_dump(mode="json") for k, v in cfg.snmp.items() if k in profiles},
            "devices": [d.model_dump(mode="json") for d in mine],
            "probes": [p.model_dump(mode="json") for p in cfg.probes if p.device in set(devices)],
            "rules": {"packs": []},
            # the collector reads its devices' configuration as the engine would (remote/collector_config.py)
            "config_watch": cfg.config_watch.model_dump(mode="json"),
        }
        return {"v": 1, "collector": collector, "heartbeat_s": self.remote.heartbeat_s, "config": sub}

    # ---- results in -------------------------------------------------------
    async def _handle(self, msgs: list[Any]) -> None:
        ack: list[Any] = []
        fresh: list[tuple[str, float]] = []
        for msg in msgs:
            self.received += 1
            await asyncio.sleep(0)  # a batch of 128 decodes: let heartbeats and the console in between
            try:
                collector, device, started_at, results = await self._check(msg)
            except CodecError as exc:
                self.malformed += 1
                log.error("malformed result message on %s terminated (%d so far): %s", msg.subject, self.malformed,
                          exc)
                self.engine._publish("remote.malformed", f"malformed result message on {msg.subject}: {exc}")
                with contextlib.suppress(Exception):
                    await msg.term()
                continue
            if self._has(device, started_at):
                self.duplicates += 1
                ack.append(msg)
                continue
            late = self._is_late(msg)
            self.late += late
            try:
                await self.engine.ingest(device, results, late=late)
            except Exception:  # an engine bug must not stop the stream, nor loop on one message forever
                log.exception("ingesting %s's poll from %s failed; message terminated", device, collector)
                with contextlib.suppress(Exception):
                    await msg.term()
                continue
            self._remember(device, started_at)
            fresh.append((device, started_at))
            ack.append(msg)
        if fresh and not await self._wait_committed(ack):
            return  # the writer is gone: nothing is acked, the stream redelivers after a restart
        self.ingested += len(fresh)
        for msg in ack:
            with contextlib.suppress(Exception):
                await msg.ack()

    async def _wait_committed(self, msgs: list[Any]) -> bool:
        """Wait until the samples these messages queued are committed; False if they never can be.

        Never nak here: the rows are already in the store's queue and are written once the database
        recovers, so a redelivery would store them twice (and feed the rules twice). Meanwhile
        ``in_progress`` keeps the stream from redelivering them after ack_wait."""
        delay = 0.5
        failures = 0
        while True:
            try:
                await asyncio.wrap_future(self.engine.store.samples_committed())
                if failures:
                    log.warning("samples of %d remote polls committed after %d failed attempts", len(msgs), failures)
                return True
            except Exception as exc:
                failures += 1
                if not self.engine.store.writer_alive:
                    # Restart dedup (polls already in poll_log count as seen) handles what was written.
                    log.critical("the database writer stopped (%s): no more remote results are read until "
                                 "the engine restarts", exc)
                    self.halted = True
                    return False
                if failures == 1:
                    self.not_committed += len(msgs)
                    log.error("samples of %d remote polls not committed yet (%s); waiting, not acknowledging",
                              len(msgs), exc)
            for msg in msgs:
                with contextlib.suppress(Exception):
                    await msg.in_progress()
            await asyncio.sleep(delay)
            delay = min(COMMIT_RETRY_MAX_S, delay * 2)

    async def _check(self, msg: Any) -> tuple[str, str, float, list[Any]]:
        now = self.engine.clock.now()
        if len(msg.data) > codec.COMPRESS_OVER or msg.data[:1] == b"Z":  # a large one: parse it off the loop
            collector, device, started_at, results = await asyncio.to_thread(codec.decode, msg.data, now)
        else:
            collector, device, started_at, results = codec.decode(msg.data, now)
        replayed = (msg.headers or {}).get(codec.REPLAYED_HEADER)
        if replayed is not None:
            codec.queued_seconds(replayed)  # CodecError when it is not a number of seconds
        parts = msg.subject.split(".", 3)
        if len(parts) < 4 or parts[2] != collector:
            raise CodecError(f"collector {collector!r} does not match the subject")
        if self.assigned.get(device) != collector:
            raise CodecError(f"device {device!r} is not polled by collector {collector!r}")
        return collector, device, started_at, results

    def _is_late(self, msg: Any) -> bool:
        """Backlog, by what the collector says (it buffered the poll) or by the stream's own order (the
        message was stored before this centre's last connect) — never by comparing two hosts' clocks."""
        if codec.REPLAYED_HEADER in (msg.headers or {}):
            return True
        with contextlib.suppress(Exception):
            return msg.metadata.sequence.stream <= self._backlog_seq
        return False

    def _has(self, device: str, started_at: float) -> bool:
        entry = self._seen.get(device)
        return entry is not None and started_at in entry[1]

    def _remember(self, device: str, started_at: float) -> None:
        order, values = self._seen.setdefault(device, (deque(), set()))
        order.append(started_at)
        values.add(started_at)
        while len(order) > SEEN_PER_DEVICE:
            values.discard(order.popleft())

    def _seen_from_store(self) -> None:
        """Polls stored before a restart count as seen: a message stored but not acked comes again."""
        if not self.assigned:
            return
        since = self.engine.clock.now() - 3600
        # A poll's key is its first collector's started_at, which is one of its poll_log rows' ts.
        rows = self.engine.store.query("SELECT device, ts FROM poll_log WHERE ts >= ? ORDER BY ts", [since])
        for device, ts in rows:
            if device in self.assigned:
                self._remember(device, ts)

    # ---- heartbeats ---------------------------------------------------------
    def _on_link(self, up: bool) -> None:
        now = time.monotonic()
        if up == self.link_up:
            return
        self.link_up, self._link_since = up, now
        if up:  # every collector gets its grace again: heartbeats could not arrive while we were away
            for name in self.last_heartbeat:
                self.last_heartbeat[name] = now
            self._heard.clear()
            if self._nc is not None:  # a reconnect (the first connect marks the backlog in _run)
                self._background.add(task := asyncio.ensure_future(self._after_reconnect()))
                task.add_done_callback(self._background.discard)

    async def _on_heartbeat(self, msg: Any) -> None:
        name = msg.subject.rsplit(".", 1)[-1]
        if name not in self.last_heartbeat or len(msg.data) >= 4096:
            return
        self.last_heartbeat[name] = time.monotonic()
        try:
            body = json.loads(msg.data)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        if body.get("stopping") is True:
            self._stopped_by_operator(name)
            return
        if name in self._stopped:
            self._stopped.discard(name)
            log.warning("collector %s started again", name)
        self._heard.add(name)
        self._check_clock(name, body)

    def _stopped_by_operator(self, name: str) -> None:
        """A goodbye: recorded (an info event), not paged; its devices are not monitored meanwhile."""
        if name in self._stopped:
            return
        self._stopped.add(name)
        self._heard.discard(name)
        n = len(self.members[name])
        text = f"Collector {name} stopped: {n} device{'s' if n != 1 else ''} not monitored until it runs again"
        log.warning("%s", text)
        self._unknown(self.members[name], f"collector {name} stopped")
        self.engine.store.append("events", [(self.engine.clock.now(), "collector.stopped", "info", None,
                                             f"collector:{name}", text)])
        self.engine._publish("remote.collector_stopped", text)

    def _check_clock(self, name: str, body: dict[str, Any]) -> None:
        """Lateness never depends on the PoP's clock, but an operator wants to know it is off."""
        at = body.get("at")
        if not isinstance(at, int | float) or isinstance(at, bool) or not math.isfinite(at):
            return
        skew = at - self.engine.clock.now()
        off = abs(skew) > CLOCK_SKEW_WARN_S
        if off and name not in self._skewed:
            self._skewed.add(name)
            text = (f"collector {name}'s clock is {abs(skew):.0f}s {'ahead of' if skew > 0 else 'behind'} the "
                    f"engine's: keep both on NTP (poll times are the collector's)")
            log.warning("%s", text)
            self.engine._publish("remote.clock_skew", text)
        elif not off and name in self._skewed:
            self._skewed.discard(name)
            log.warning("collector %s's clock agrees with the engine's again", name)

    async def _watch_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.remote.heartbeat_s / 2))
            await self.evaluate()

    async def evaluate(self) -> None:
        """Every tick, not on changes only: the rules' for/clear_for decide, and an alert restored after a
        restart is judged like any other."""
        limit = LOST_AFTER * self.remote.heartbeat_s
        now = time.monotonic()
        at = self.engine.clock.now()
        transitions = []
        down_s = now - self._link_since
        down = False if self.link_up else (True if down_s > limit else None)
        transitions += self._stream_state(down, down_s, at)
        for name, last in self.last_heartbeat.items():
            silent_s = now - last
            if not self.link_up or name in self._stopped:
                # frozen: the centre cannot hear anyone (which says nothing about them), or the collector
                # said goodbye (a deliberate stop is recorded, not paged)
                lost = None
            elif silent_s > limit:
                lost = True
            else:
                lost = False if name in self._heard else None  # no word yet since the connect: wait
            transitions += self._collector_state(name, lost, silent_s, at)
        await self.engine.apply_transitions(transitions)

    def _unknown(self, devices: list[str], why: str) -> None:
        for d in devices:  # unknown, not down: no fresh answer, no failure either
            rt = self.engine.runtime[d]
            rt.ok, rt.last_error = None, why

    def _stream_state(self, down: bool | None, down_s: float, at: float) -> list[Any]:
        n = len(self.members)
        stream = self.remote.stream
        summary = (f"Result stream {stream} unreachable: {n} remote collector{'s' if n != 1 else ''} "
                   f"({len(self.assigned)} devices) not heard")
        evidence = [f"the engine has had no connection to NATS at {self.remote.nats_url} for {down_s:.0f}s",
                    "no collector is judged lost meanwhile; their buffered polls replay when the link is back"]
        transitions = self.engine.rules.observe_stream(stream, down, at, summary, evidence)
        for t in transitions:
            log.warning("result stream %s %s", stream, "unreachable" if t.fired else "reachable again")
            if t.fired:
                self._unknown(list(self.assigned), f"result stream {stream} unreachable")
        return transitions

    def _collector_state(self, name: str, lost: bool | None, silent_s: float, at: float) -> list[Any]:
        devices = self.members[name]
        n = len(devices)
        summary = f"Collector {name} lost: {n} device{'s' if n != 1 else ''} not monitored"
        evidence = [f"no heartbeat from collector {name} for {silent_s:.0f}s "
                    f"(every {self.remote.heartbeat_s:g}s expected)",
                    "its devices' state is unknown, not down: " + ", ".join(devices[:20])
                    + (f" and {n - 20} more" if n > 20 else "")]
        transitions = self.engine.rules.observe_collector(name, lost, at, summary, evidence)
        for t in transitions:
            log.warning("collector %s %s", name, "lost" if t.fired else "back")
            if t.fired:
                self._unknown(devices, f"collector {name} lost")
        return transitions

    # ---- what the console's Home shows -------------------------------------
    def collector_views(self, now: float) -> list[CollectorView]:
        """Each remote collector as the centre hears it: down once judged lost, unknown while the centre
        cannot hear anyone (or it said goodbye, or was not heard yet), else up; its last heartbeat as the
        engine's clock time."""
        mono = time.monotonic()
        limit = LOST_AFTER * self.remote.heartbeat_s
        views = []
        for name, devices in self.members.items():
            last = self.last_heartbeat.get(name)
            heard = name in self._heard and last is not None
            silent = mono - last if last is not None else math.inf
            state: EntityState = ("unknown" if not self.link_up or name in self._stopped else
                                  "down" if silent > limit else "up" if heard else "unknown")
            failing = sum(1 for d in devices if self.engine.runtime[d].ok is False)
            views.append(CollectorView(name=name, kind="remote", state=state, devices=len(devices),
                                       last_poll_at=now - silent if heard else None, failing=failing))
        return views
