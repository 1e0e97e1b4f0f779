"""Maintenance windows: planned work pages nobody, and is still recorded.

A window has a scope (sites, devices, tags: resolved to a set of devices once)
and a time (one-off start/end, or weekly windows in its time zone). An incident
is *in* a window when the window is active and every one of its root causes
touches a device in scope (a link counts when either end is in scope: work at
a PoP breaks the links to it). Such an incident is created, stored and shown
as usual, labelled ``maintenance = <window name>``, and queued for no target
that has not already had it (engine/outbox.py ``enqueue``: so an incident
notified before the window still gets its ``incident.closed``). When the
window ends and the incident is still open, it is notified then (core's sweep).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from ispvm_tui.config import Config, MaintenanceWindow
from ispvm_tui.engine.correlator import Plan
from ispvm_tui.engine.notify.routing import Hours, parse_hours

LABEL = "maintenance"


@dataclass(frozen=True)
class Window:
    name: str
    devices: frozenset[str]
    start: float | None
    end: float | None
    weekly: tuple[Hours, ...]
    tz: ZoneInfo

    def active(self, now: float) -> bool:
        if self.start is not None and self.end is not None and self.start <= now < self.end:
            return True
        if self.weekly:
            local = datetime.fromtimestamp(now, self.tz)
            return any(h.contains(local) for h in self.weekly)
        return False


def entity_devices(entity_id: str) -> set[str]:
    """Devices an entity id names: ``DEV``, ``DEV:ether1``, ``DEV:peer``, ``DEV>target``, ``A:x--B:y``."""
    return {part.split(">", 1)[0].split(":", 1)[0] for part in entity_id.split("--") if part}


class Maintenance:
    def __init__(self, config: Config) -> None:
        default_tz = config.ispvm.timezone
        self.windows = [self._window(w, config, default_tz) for w in config.maintenance]

    @staticmethod
    def _window(w: MaintenanceWindow, config: Config, default_tz: str) -> Window:
        tags = set(w.tags)
        devices = frozenset(d.name for d in config.devices
                            if d.name in w.devices or d.site in w.sites or tags & set(d.tags))
        return Window(w.name, devices, w.start.timestamp() if w.start else None,
                      w.end.timestamp() if w.end else None, tuple(parse_hours(h) for h in w.weekly),
                      ZoneInfo(w.timezone or default_tz))

    def window_for(self, roots: list[str], now: float) -> str | None:
        """The first active window holding every root cause, if any."""
        if not roots:
            return None
        for win in self.windows:
            if win.active(now) and all(entity_devices(r) & win.devices for r in roots):
                return win.name
        return None

    def label(self, plans: list[Plan], now: float) -> None:
        """Mark each plan whose incident is planned work; the label is stored with the incident."""
        if not self.windows:
            return
        for plan in plans:
            name = self.window_for(plan.roots, now)
            if name is not None:
                plan.labels = {**plan.labels, LABEL: name}
