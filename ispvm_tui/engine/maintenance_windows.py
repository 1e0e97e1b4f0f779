"""Maintenance windows: planned work pages nobody, and is still recorded.

A window comes from the config file (``[[maintenance]]``) or is made at run
time (engine/calendar.py: the CLI, the console); a canceled one is left out.
It has a scope (sites, devices, tags, services: resolved to a set of devices
once) and a time (one-off start/end, or weekly windows in its time zone). An incident
is *in* a window when the window is active and every one of its root causes
touches a device in scope (a link counts when either end is in scope: work at
a PoP breaks the links to it). Such an incident is created, stored and shown
as usual, labelled ``maintenance = <window name>``, and queued for no target
that has not already had it (engine/outbox.py ``enqueue``: so an incident
notified before the window still gets its ``incident.closed``). When the
window ends and the incident is still open, it is notified then (core's sweep).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from ispvm_tui.config import Config, MaintenanceWindow
from ispvm_tui.engine.api import ChangeRecordView, MaintenanceView, Scope
from ispvm_tui.engine.correlator import Plan
from ispvm_tui.engine.notify.routing import Hours, parse_hours

log = logging.getLogger(__name__)

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


def scope_devices(scope: Scope, config: Config) -> frozenset[str]:
    """The devices a scope holds: named, at a named site, carrying a named tag, or something a named service
    depends on (the devices its ``depends_on`` entity ids name: a device, a link's two ends, a BGP peer's
    router, every device of a site)."""
    sites, named, tags = set(scope.sites), set(scope.devices), set(scope.tags)
    out = {d.name for d in config.devices if d.name in named or d.site in sites or tags & set(d.tags)}
    if scope.services:
        wanted = set(scope.services)
        known = {d.name for d in config.devices}
        site_names = {s.name for s in config.sites}
        for svc in config.services:
            if svc.name not in wanted:
                continue
            for dep in svc.depends_on:
                if dep in site_names and dep not in known:
                    out |= {d.name for d in config.devices if d.site == dep}
                else:
                    out |= entity_devices(dep) & known
    return frozenset(out)


def changes_covering(changes: list[ChangeRecordView], roots: list[str], at: float,
                     config: Config) -> list[ChangeRecordView]:
    """Changes that may explain an incident: not canceled, running at ``at`` ([starts_at, ends_at]), and with
    a device of some root cause in scope. Unlike a window this silences nothing: it links the incident."""
    root_devices = set().union(*(entity_devices(r) for r in roots)) if roots else set()
    if not root_devices:
        return []
    return [c for c in changes if c.status != "canceled" and c.starts_at <= at <= c.ends_at
            and scope_devices(c.scope, config) & root_devices]


def window_of(view: MaintenanceView, config: Config) -> Window:
    """A run-time window (engine/calendar.py) as the engine matches it."""
    return Window(view.name, scope_devices(view.scope, config), view.starts_at, view.ends_at,
                  tuple(parse_hours(h) for h in view.weekly), ZoneInfo(view.timezone))


class Maintenance:
    """The windows in force: the config file's, then the active run-time ones (canceled ones silence nothing)."""

    def __init__(self, config: Config, runtime: Iterable[MaintenanceView] = ()) -> None:
        default_tz = config.ispvm.timezone
        self.windows = [self._window(w, config, default_tz) for w in config.maintenance]
        for view in runtime:
            if view.status != "active":
                continue
            try:
                self.windows.append(window_of(view, config))
            except (ValueError, KeyError) as exc:  # a row edited by hand: the rest still hold
                log.error("maintenance window %s ignored: %s", view.id, exc)

    @staticmethod
    def _window(w: MaintenanceWindow, config: Config, default_tz: str) -> Window:
        devices = scope_devices(Scope(sites=tuple(w.sites), devices=tuple(w.devices), tags=tuple(w.tags)), config)
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
