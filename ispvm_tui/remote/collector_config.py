"""A collector's config reads: fingerprinted for the centre at the PoP, sent as canonical texts only.

The centre puts its ``[config_watch]`` settings in this collector's configuration (one written before
config reads has none: then nothing is read). A local ConfigWatcher decides when to read, as the
engine's does for its own devices: at a device's first poll (the baseline), then every
``interval_s``, and at once when the centre asks (``ispvm.cfgreq.<collector>``: a fault near the
device, or ``ispvm changes capture``). The read is normalised here, so a router's rows, which may hold
secrets, never leave the PoP: what is queued is ``{category: [canonical JSON, source]}`` on
``ispvm.config.<collector>.<device>``, through the same buffer as the polls (same order, same bound,
same replay after a WAN cut). Fingerprints, versions and changes are the centre's business.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from ispvm_tui.clock import Clock
from ispvm_tui.collectors.results import ConfigRead
from ispvm_tui.config import ConfigWatch
from ispvm_tui.engine import config_watch
from ispvm_tui.engine.config_watch import ConfigWatcher
from ispvm_tui.engine.polling import Poller
from ispvm_tui.remote import codec, link
from ispvm_tui.remote.codec import CodecError

log = logging.getLogger(__name__)

# (subject, msg_id, payload) into the buffer; False when it can never be sent (refused, counted)
Queue = Callable[[str, str, bytes], Awaitable[bool]]


def settings_from(payload_config: dict[str, object]) -> ConfigWatch | None:
    """The settings the centre sent; None when it sent none (a centre from before remote config reads)."""
    raw = payload_config.get("config_watch")
    if raw is None:
        return None
    settings = ConfigWatch.model_validate(raw)  # a ValidationError is a ValueError: the payload is refused
    return settings if settings.enabled else None


class ConfigReads:
    def __init__(self, name: str, settings: ConfigWatch, devices: Iterable[str], clock: Clock, queue: Queue) -> None:
        self.name = name
        self.clock = clock
        self.watcher = ConfigWatcher(settings, devices)
        self._queue = queue
        self.queued = 0
        self.failed = 0
        self.requested = 0

    def keep_for(self, settings: ConfigWatch, devices: Iterable[str]) -> bool:
        """Carry the schedule over a new configuration with the same settings (no fresh baseline for all)."""
        if settings != self.watcher.settings:
            return False
        self.watcher.devices = set(devices)
        return True

    def hook(self, poller: Poller) -> None:
        poller.config_due = self.watcher.due
        poller.on_config = self.on_config

    async def on_config(self, device: str, reads: list[ConfigRead]) -> None:
        now = self.clock.now()
        cw = self.watcher
        categories = await config_watch.normalise_off_loop(cw, reads) if any(r.ok for r in reads) else {}
        if not categories:
            self.failed += 1
            cw.failed(device, now)
            return
        subject = link.config_subject(self.name, device)
        try:
            payload = codec.encode_config(self.name, device, now, categories)
        except CodecError as exc:
            log.error("config read of %s cannot be sent: %s", device, exc)
            cw.failed(device, now)
            return
        await self._queue(subject, f"{self.name}:{device}:config:{now!r}", payload)
        self.queued += 1
        cw.taken(device, now)

    def on_request(self, data: bytes, poller: Poller | None) -> list[str]:
        """The centre asks for reads of these devices: at once (a poll now), whatever the schedule says."""
        try:
            devices = codec.decode_request(data)
        except CodecError as exc:
            log.warning("config read request refused: %s", exc)
            return []
        now = self.clock.now()
        asked = self.watcher.request(devices, now, now, forced=True)  # unknown names are ignored there
        self.requested += len(asked)
        if asked and poller is not None:
            poller.poll_soon(asked)
        return asked
