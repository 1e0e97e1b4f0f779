"""Availability against SLA targets, and how fast incidents were answered (``ispvm report sla``).

Downtime comes from the alerts the engine raised, suppressed ones included (a device cut off behind a
fibre is down for its customers whatever the root cause was):

* a **device** is down while its ``device_unreachable`` alert fires;
* a **link** while ``interface_down`` fires on either of its ends;
* a **BGP peer** (``EDGE1:UPSTREAM1``) while ``bgp_session_down`` fires on it or its router is down;
* a **site** while every one of its devices is down, and a **service** while every one of its dependencies
  (devices, links, BGP peers, sites) is down: the same rule as the Home screen's tiles (``combine``).

Downtime is *planned* where an alert of it belonged to an incident labelled with a maintenance window
(as the engine labelled it then); for a site or a service, where any part of it was down in maintenance.
Availability is ``1 - unplanned downtime / window``, against the service's ``sla_target_pct`` or
``[reports].sla_target_pct``; a breach is availability under target. Time the engine was not running counts
as up, since nothing was seen to be down; and alerts older than the alerts' retention are gone.

MTTA and MTTR are over the incidents opened in the window: from opening to acknowledgement, and to closing.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any

from ispvm_tui.config import Config

Query = Callable[[str, list[Any]], list[dict[str, Any]]]
Interval = tuple[float, float]

DOWN_RULES = ("device_unreachable", "interface_down", "bgp_session_down")


# ---- intervals ----------------------------------------------------------------------------------------------
def union(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """Both merged (as ``union`` returns them)."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def intersect_all(lists: list[list[Interval]]) -> list[Interval]:
    if not lists:
        return []
    out = lists[0]
    for more in lists[1:]:
        out = intersect(out, more)
    return out


def total(intervals: Iterable[Interval]) -> float:
    return sum(b - a for a, b in intervals)


class Downtime:
    """One entity's downtime in the window: all of it, and the part in maintenance."""

    def __init__(self, down: Iterable[Interval] = (), planned: Iterable[Interval] = ()) -> None:
        self.down = union(down)
        self.planned = intersect(self.down, union(planned))

    @property
    def unplanned(self) -> list[Interval]:
        out: list[Interval] = []
        for a, b in self.down:
            cursor = a
            for pa, pb in self.planned:
                if pb <= cursor or pa >= b:
                    continue
                if pa > cursor:
                    out.append((cursor, pa))
                cursor = max(cursor, pb)
            if cursor < b:
                out.append((cursor, b))
        return out


def any_of(parts: list[Downtime]) -> Downtime:
    return Downtime([i for p in parts for i in p.down], [i for p in parts for i in p.planned])


def every_of(parts: list[Downtime]) -> Downtime:
    """Down while every part is; planned where some part was down in maintenance meanwhile."""
    down = intersect_all([p.down for p in parts])
    return Downtime(down, [i for p in parts for i in p.planned])


# ---- the window ---------------------------------------------------------------------------------------------
def parse_moment(text: Any, now: float, tz: str, field: str) -> float:
    """``now``, a duration ago (``30d``, ``12h``), a date (its midnight in ``tz``) or RFC 3339 with an offset;
    against the caller's clock (the engine's, which a scaled lab runs faster)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from ispvm_tui.engine.calendar import parse_duration, parse_time

    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{field}: expected a time")
    value = text.strip()
    if value[:1].isdigit() and value[-1:].isalpha() and "-" not in value:
        return now - parse_duration(value)
    if len(value) == 10 and value[4] == "-" and value[7] == "-":
        try:
            return datetime.fromisoformat(value).replace(tzinfo=ZoneInfo(tz)).timestamp()
        except ValueError:
            raise ValueError(f"{field}: {value!r} is not a date") from None
    try:
        return parse_time(value, now, field)
    except ValueError as exc:
        raise ValueError(f"{exc} (or a date, 2026-11-01, or a duration ago, 30d)") from None


def window(args: dict[str, Any], now: float, tz: str) -> tuple[float, float]:
    start = parse_moment(args.get("from", "30d"), now, tz, "from")
    end = parse_moment(args.get("to", "now"), now, tz, "to")
    if end <= start:
        raise ValueError("from must be before to")
    return start, end


# ---- the report ---------------------------------------------------------------------------------------------
def _alerts(query: Query, start: float, end: float) -> dict[tuple[str, str], Downtime]:
    rows = query(
        "SELECT a.rule, a.entity_id, greatest(a.starts_at, ?) AS s, least(coalesce(a.ends_at, ?), ?) AS e, "
        "json_extract_string(i.labels, '$.maintenance') IS NOT NULL AS planned "
        "FROM alerts a LEFT JOIN incidents i ON i.id = a.incident_id "
        "WHERE list_contains(?, a.rule) AND a.starts_at < ? AND coalesce(a.ends_at, ?) > ?",
        [start, end, end, list(DOWN_RULES), end, end, start])
    down: dict[tuple[str, str], list[Interval]] = {}
    planned: dict[tuple[str, str], list[Interval]] = {}
    for r in rows:
        key = (r["rule"], r["entity_id"])
        down.setdefault(key, []).append((r["s"], r["e"]))
        if r["planned"]:
            planned.setdefault(key, []).append((r["s"], r["e"]))
    return {k: Downtime(v, planned.get(k, ())) for k, v in down.items()}


def _row(kind: str, name: str, dt: Downtime, window_s: float, target: float) -> dict[str, Any]:
    unplanned = dt.unplanned
    availability = 100.0 * (1.0 - total(unplanned) / window_s) if window_s > 0 else 100.0
    return {"kind": kind, "name": name, "availability_pct": round(availability, 4), "target_pct": target,
            "breach": availability < target, "down_s": round(total(dt.down), 1),
            "planned_s": round(total(dt.planned), 1), "unplanned_s": round(total(unplanned), 1),
            "outages": len(unplanned), "longest_s": round(max((b - a for a, b in unplanned), default=0.0), 1)}


def _incidents(query: Query, start: float, end: float) -> list[dict[str, Any]]:
    rows = query("SELECT severity, opened_at, acked_at, closed_at, "
                 "json_extract_string(labels, '$.maintenance') IS NOT NULL AS planned "
                 "FROM incidents WHERE opened_at >= ? AND opened_at < ?", [start, end])
    out = []
    for severity in ("all", "critical", "major", "minor", "warning", "info"):
        chosen = [r for r in rows if severity in ("all", r["severity"])]
        if not chosen and severity != "all":
            continue
        tta = [r["acked_at"] - r["opened_at"] for r in chosen if r["acked_at"] is not None]
        ttr = [r["closed_at"] - r["opened_at"] for r in chosen if r["closed_at"] is not None]
        out.append({"severity": severity, "incidents": len(chosen), "in_maintenance": sum(r["planned"] for r in chosen),
                    "acknowledged": len(tta), "closed": len(ttr),
                    "mtta_s": round(statistics.fmean(tta), 1) if tta else None,
                    "mtta_median_s": round(statistics.median(tta), 1) if tta else None,
                    "mttr_s": round(statistics.fmean(ttr), 1) if ttr else None,
                    "mttr_median_s": round(statistics.median(ttr), 1) if ttr else None})
    return out


def report(query: Query, config: Config, start: float, end: float) -> dict[str, Any]:
    """The SLA report for [start, end) (clock seconds); ValueError when the window is empty."""
    if end <= start:
        raise ValueError("the report's window is empty: --from must be before --to")
    window = end - start
    target = config.reports.sla_target_pct
    alerts = _alerts(query, start, end)

    def of(rule: str, entity: str) -> Downtime:
        return alerts.get((rule, entity)) or Downtime()

    devices = {d.name: of("device_unreachable", d.name) for d in config.devices}
    links = {link.id: any_of([of("interface_down", link.a), of("interface_down", link.b)]) for link in config.links}
    sites = {s.name: every_of([devices[d.name] for d in config.devices if d.site == s.name]) for s in config.sites}

    def dependency(dep: str) -> Downtime:
        """The config has checked every dependency is one of these (config.py, services)."""
        if dep in links:
            return links[dep]
        if dep in devices:
            return devices[dep]
        if dep in sites:
            return sites[dep]
        return any_of([of("bgp_session_down", dep), devices[dep.partition(":")[0]]])  # a BGP peer

    services = [_row("service", svc.name, every_of([dependency(d) for d in svc.depends_on]), window,
                     svc.sla_target_pct or target) for svc in config.services]
    rows = ([_row("device", n, dt, window, target) for n, dt in devices.items()]
            + [_row("site", n, dt, window, target) for n, dt in sites.items()] + services)
    return {"from": start, "to": end, "target_pct": target, "rows": rows,
            "breaches": [r for r in rows if r["breach"]], "incidents": _incidents(query, start, end)}
