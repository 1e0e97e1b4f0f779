"""The centre's side of remote config reads: reads in from the stream, read requests out.

* In: ``ispvm.config.<collector>.<device>`` (the results' stream, its own durable consumer
  ``ispvm-engine-config``). Each message is decoded strictly (codec.decode_config), checked as a
  result is (the subject's collector is the message's, and that collector polls the device), handed
  to ``Engine.apply_remote_config`` with its own read time, and acknowledged only once stored; a
  store that failed gets it again later (nak with a delay). A malformed one is terminated, logged,
  counted and published as ``remote.malformed``.
* Order: a read older than the newest one applied for that device (reordered in flight, or a
  redelivery) is acknowledged and dropped: applied late it would compare the device's current
  configuration with an older one and report a change back and forth. The newest read time per
  device is reloaded from ``config_checks`` at start.
* Out: the engine's ConfigWatcher hands a read asked for a remote device (a fault near it,
  ``ispvm changes capture``) to ``ask``, which publishes the names on ``ispvm.cfgreq.<collector>``.
  A plain NATS message: one lost in a cut is harmless (the periodic read comes anyway), and the
  watcher asks again after ASK_AGAIN_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from nats.js import api

from ispvm_tui.remote import codec, link
from ispvm_tui.remote.codec import CodecError

if TYPE_CHECKING:
    from ispvm_tui.remote.centre import Centre

log = logging.getLogger(__name__)

DURABLE = "ispvm-engine-config"
FETCH_BATCH = 32  # a config read is a whole device's configuration: fewer per batch than polls
RETRY_S = 5.0  # a read the store could not take comes again after this long


class ConfigIntake:
    def __init__(self, centre: Centre) -> None:
        self.centre = centre
        self.engine = centre.engine
        self._newest: dict[str, float] = {}  # device -> read time of the newest read applied
        self._background: set[asyncio.Future[Any]] = set()
        self._nc: Any = None
        self.received = 0
        self.applied = 0
        self.stale = 0
        self.malformed = 0
        self.not_stored = 0
        self.asked = 0
        self.engine.config_watch.elsewhere(centre.assigned, self.ask)

    def restore(self) -> None:
        """Off the loop, at start: what was stored counts as applied (a redelivery is dropped)."""
        if not self.centre.assigned:
            return
        rows = self.engine.store.query("SELECT device, max(ts) FROM config_checks GROUP BY device", [])
        self._newest = {device: ts for device, ts in rows if device in self.centre.assigned}

    async def subscribe(self, nc: Any) -> Any:
        self._nc = nc
        return await nc.jetstream().pull_subscribe(
            f"{link.CONFIG_PREFIX}.>", durable=DURABLE, stream=self.centre.remote.stream,
            config=api.ConsumerConfig(ack_wait=60, max_ack_pending=4 * FETCH_BATCH))

    async def run(self, sub: Any) -> None:
        async def handle(msgs: list[Any]) -> bool:
            for msg in msgs:
                await self._handle(msg)
            return True

        await link.pull(sub, FETCH_BATCH, handle, "config")

    async def _handle(self, msg: Any) -> None:
        self.received += 1
        try:
            read = await self._check(msg)
        except CodecError as exc:
            self.malformed += 1
            log.error("malformed config message on %s terminated (%d so far): %s", msg.subject, self.malformed, exc)
            self.engine._publish("remote.malformed", f"malformed config message on {msg.subject}: {exc}")
            with contextlib.suppress(Exception):
                await msg.term()
            return
        if read.read_at <= self._newest.get(read.device, float("-inf")):
            self.stale += 1
            with contextlib.suppress(Exception):
                await msg.ack()
            return
        categories = {cat: (canonical, source) for cat, (canonical, source) in read.categories.items()}
        try:
            stored = await self.engine.apply_remote_config(read.device, categories, read.read_at)
        except Exception:  # an engine bug must not stop the stream, nor loop on one message forever
            log.exception("applying %s's config read from %s failed; message terminated", read.device, read.collector)
            with contextlib.suppress(Exception):
                await msg.term()
            return
        if not stored:  # the engine logged why; the stream keeps it
            self.not_stored += 1
            with contextlib.suppress(Exception):
                await msg.nak(delay=RETRY_S)
            return
        self._newest[read.device] = read.read_at
        self.applied += 1
        with contextlib.suppress(Exception):
            await msg.ack()

    async def _check(self, msg: Any) -> codec.ConfigMessage:
        now = self.engine.clock.now()
        if len(msg.data) > codec.COMPRESS_OVER or msg.data[:1] == b"Z":  # a large one: parse it off the loop
            read = await asyncio.to_thread(codec.decode_config, msg.data, now)
        else:
            read = codec.decode_config(msg.data, now)
        parts = msg.subject.split(".", 3)
        if len(parts) < 4 or parts[2] != read.collector or parts[3] != read.device:
            raise CodecError(f"collector {read.collector!r} or device {read.device!r} does not match the subject")
        if self.centre.assigned.get(read.device) != read.collector:
            raise CodecError(f"device {read.device!r} is not polled by collector {read.collector!r}")
        return read

    # ---- requests out ---------------------------------------------------------------------------
    def ask(self, devices: list[str]) -> None:
        """Called by the engine's ConfigWatcher (on the engine's loop): one request per collector."""
        by_collector: dict[str, list[str]] = {}
        for d in devices:
            if (collector := self.centre.assigned.get(d)) is not None:
                by_collector.setdefault(collector, []).append(d)
        nc = self._nc
        if nc is None or not nc.is_connected:
            return  # lost, harmlessly: the watcher asks again later, and the periodic read comes anyway
        for collector, names in by_collector.items():
            self.asked += len(names)
            task = asyncio.ensure_future(self._send(nc, collector, names))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _send(self, nc: Any, collector: str, devices: list[str]) -> None:
        with contextlib.suppress(Exception):
            await nc.publish(link.request_subject(collector), codec.encode_request(devices))
