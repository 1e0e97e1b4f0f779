"""Which incidents go to which target: severity, tags, time of day, and escalation.

Routes are matched on the webhook payload's ``incident`` object (the dict every
target receives), whose labels carry the incident's scope: ``sites``,
``regions``, ``services`` and ``roles`` (comma-separated), ``provider`` and
``category`` (engine/correlator.py ``_labels``). Matching is pure: the engine
decides *when* to ask (on every incident change, and on its escalation sweep).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ispvm_tui.config import Route

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^\s*(?:(?P<days>[A-Za-z,\-\s]+?)\s+)?(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")
# Label keys holding comma-separated lists, and the singular a rule names them by.
LIST_LABELS = {"site": "sites", "region": "regions", "service": "services", "role": "roles"}


@dataclass(frozen=True, slots=True)
class Hours:
    """Windows starting on ``days`` (0 = Monday) from ``start`` to ``end`` minutes; ``end <= start`` runs
    past midnight into the next day."""

    days: frozenset[int]
    start: int
    end: int

    def contains(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        today = local.weekday()
        if self.start < self.end:
            return today in self.days and self.start <= minute < self.end
        # Overnight: the evening part belongs to today's window, the morning part to yesterday's.
        return ((today in self.days and minute >= self.start)
                or ((today - 1) % 7 in self.days and minute < self.end))


def _minutes(text: str, spec: str, *, end: bool) -> int:
    hh, mm = (int(x) for x in text.split(":"))
    if mm > 59 or hh > 24 or (hh == 24 and (mm or not end)):
        raise ValueError(f"hours {spec!r}: {text} is not a time of day (00:00..23:59, 24:00 as an end)")
    return hh * 60 + mm


def _day(name: str, spec: str) -> int:
    key = name.strip().lower()[:3]
    if key not in DAYS or len(name.strip()) < 3:
        raise ValueError(f"hours {spec!r}: {name.strip()!r} is not a day (Mon, Tue, ... Sun)")
    return DAYS.index(key)


@functools.lru_cache(maxsize=256)  # matched on every incident event for every routed target
def parse_hours(spec: str) -> Hours:
    """``"Mon-Fri 08:00-18:00"``, ``"Sat,Sun 10:00-14:00"``, ``"22:00-06:00"`` (every day)."""
    m = _HOURS.match(spec)
    if m is None:
        raise ValueError(f"hours {spec!r}: expected '[DAYS ]HH:MM-HH:MM', e.g. 'Mon-Fri 08:00-18:00'")
    days: set[int] = set()
    for part in (m["days"] or "mon-sun").split(","):
        if not part.strip():
            raise ValueError(f"hours {spec!r}: an empty day in the list")
        if "-" in part:
            first, last = (_day(x, spec) for x in part.split("-", 1))
            days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
        else:
            days.add(_day(part, spec))
    start, end = _minutes(m["start"], spec, end=False), _minutes(m["end"], spec, end=True)
    if start == end:
        raise ValueError(f"hours {spec!r}: the window is empty (start equals end)")
    return Hours(frozenset(days), start, end)


def label_values(incident: Mapping[str, Any], key: str) -> set[str]:
    """The incident's values for a tag: ``site`` reads the comma-separated ``sites`` label, and so on."""
    labels = incident.get("labels") or {}
    raw = labels.get(LIST_LABELS.get(key, key))
    if raw is None:
        return set()
    return {v.strip() for v in str(raw).split(",") if v.strip()}


def started_at(incident: Mapping[str, Any]) -> float | None:
    starts = incident.get("starts_at")
    if not starts:
        return None
    return datetime.strptime(str(starts), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def unacked_for(incident: Mapping[str, Any], now: float) -> float | None:
    """Seconds the incident has been open without an acknowledgement; None once acked or closed."""
    if incident.get("status") == "closed" or (incident.get("ack") or {}).get("acked_by"):
        return None
    opened = started_at(incident)
    return None if opened is None else max(0.0, now - opened)


def matches(route: Route, incident: Mapping[str, Any], now: float, tz: tzinfo) -> bool:
    """Does the incident, as it is at ``now``, pass every condition the route sets?"""
    if route.severities and incident.get("severity") not in route.severities:
        return False
    for key, wanted in (("site", route.sites), ("region", route.regions), ("service", route.services)):
        if wanted and not (label_values(incident, key) & set(wanted)):
            return False
    labels = incident.get("labels") or {}
    if any(str(labels.get(k)) != v for k, v in route.labels.items()):
        return False
    if route.hours:
        local = datetime.fromtimestamp(now, tz)
        if not any(parse_hours(spec).contains(local) for spec in route.hours):
            return False
    if route.unacked_for_s > 0:
        waited = unacked_for(incident, now)
        if waited is None or waited < route.unacked_for_s:
            return False
    return True


def escalation_due_at(route: Route, incident: Mapping[str, Any]) -> float | None:
    """Epoch seconds at which the incident, if still unacknowledged, reaches the route's escalation time."""
    opened = started_at(incident)
    if route.unacked_for_s <= 0 or opened is None or unacked_for(incident, opened) is None:
        return None
    return opened + route.unacked_for_s
