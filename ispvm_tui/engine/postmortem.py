"""An incident written up for its postmortem, as Markdown (``ispvm export postmortem ID``).

Everything comes from what the engine stored: the incident (``incident_queries.show_incident``: fields,
root causes with confidence, impact, evidence, alerts, deliveries per target) and its timeline
(``incident_timeline.read_timeline``: alerts, transitions, notes, assignments, configuration changes on its
root devices, maintenance windows over it, notifications), plus the change records linked to it. Times are
written in one time zone, named in the header. Nothing is summarised away: a reader gets every alert and
every timeline entry the store holds for it (the timeline's newest 500).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ispvm_tui.engine import incident_queries, incident_timeline
from ispvm_tui.engine.control import jsonable
from ispvm_tui.engine.maintenance_windows import Window

Query = incident_timeline.Query


def gather(query: Query, prefix: Any, *, now: float, lookback_s: float, windows: Iterable[Window] = (),
           critical: frozenset[str] = frozenset(), live: Iterable[Any] = ()) -> dict[str, Any]:
    """The incident, its timeline and linked change records, as JSON-shaped data; ValueError for an id that
    names no incident (or several)."""
    shown = incident_queries.show_incident(query, prefix, now, critical, live)
    incident_id = shown["incident"]["id"]
    entries = incident_timeline.read_timeline(query, incident_id, now=now, lookback_s=lookback_s, windows=windows)
    changes = query("SELECT c.id, c.title, c.owner, c.status, c.starts_at, c.ends_at FROM change_incidents l "
                    "JOIN change_records c ON c.id = l.change_id WHERE l.incident_id = ? ORDER BY c.starts_at",
                    [incident_id])
    return {**shown, "entries": [jsonable(e) for e in entries], "changes": changes}


def _cell(value: Any) -> str:
    text = "-" if value is None or value == "" else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _duration(seconds: float) -> str:
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600:02d} h"


def render(data: dict[str, Any], tz: str = "UTC") -> str:
    zone = ZoneInfo(tz)

    def at(ts: float | None) -> str:
        return "-" if ts is None else datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S")

    inc, now = data["incident"], data["now"]
    lines = [f"# Postmortem: {inc['title']}", "",
             f"Incident `{inc['id']}`, written from ispvm's records at {at(now)} ({tz}); all times {tz}.", "",
             "| | |", "| --- | --- |",
             f"| Status | {inc['status']} |",
             f"| Severity | {inc['severity']} (priority {inc['priority']}, score {inc['score']}) |",
             f"| Opened | {at(inc['opened_at'])} |"]
    if inc["acked_at"] is not None:
        lines.append(f"| Acknowledged | {at(inc['acked_at'])} by {_cell(inc['acked_by'])}, "
                     f"{_duration(inc['acked_at'] - inc['opened_at'])} after it opened |")
    else:
        lines.append("| Acknowledged | never |")
    if inc["closed_at"] is not None:
        lines.append(f"| Closed | {at(inc['closed_at'])} by {_cell(inc['closed_by'])}, "
                     f"{_duration(inc['closed_at'] - inc['opened_at'])} after it opened |")
    else:
        lines.append(f"| Closed | not yet: open for {_duration(now - inc['opened_at'])} |")
    if inc.get("assigned_to"):
        lines.append(f"| Assigned to | {_cell(inc['assigned_to'])} |")
    for key in ("maintenance", "change", "change_related", "category"):
        if inc["labels"].get(key):
            lines.append(f"| {key.replace('_', ' ').capitalize()} | {_cell(inc['labels'][key])} |")

    lines += ["", "## Root cause", ""]
    for rc in inc["root_causes"] or []:
        name = f" ({rc['name']})" if rc["name"] and rc["name"] != rc["entity_id"] else ""
        lines.append(f"- {rc['entity_type']} `{rc['entity_id']}`{name}: confidence {rc['confidence']:.0%}")
    if not inc["root_causes"]:
        lines.append("- not determined")
    lines += ["", "## Evidence", "", *(f"- {e}" for e in inc["evidence"] or ["(none recorded)"])]

    imp = inc["impact"]
    subs = imp["estimated_subscribers_affected"]
    lines += ["", "## Impact", "",
              f"- Sites ({imp['sites_affected']}): {', '.join(imp['sites']) or '-'}",
              f"- Devices ({imp['devices_affected']}): {', '.join(imp['devices']) or '-'}",
              f"- Services ({imp['services_affected']}): {', '.join(imp['services']) or '-'}",
              f"- Subscribers: {'unknown' if subs is None else f'about {subs} (estimated)'}"]

    alerts = inc["alerts"]
    lines += ["", f"## Alerts ({len(alerts)}, {sum(1 for a in alerts if a['suppressed'])} suppressed as "
                  "explained by the root cause)", ""]
    if alerts:
        lines += ["| Role | Severity | Rule | Entity | Fired | Resolved | Summary |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for a in alerts:
            lines.append(f"| {'suppressed' if a['suppressed'] else 'cause'} | {a['severity']} | {a['rule']} | "
                         f"`{_cell(a['entity_id'])}` | {at(a['starts_at'])} | {at(a['ends_at'])} | "
                         f"{_cell(a['summary'])} |")
    else:
        lines.append("(none stored)")

    lines += ["", "## Timeline", "", "| Time | What | Who | |", "| --- | --- | --- | --- |"]
    for e in data["entries"]:
        lines.append(f"| {at(e['at'])} | {_cell(e['kind'])} | {_cell(e['actor'])} | {_cell(e['summary'])}"
                     + (f" ({e['status']})" if e["status"] else "") + " |")

    notes = [t for t in data["timeline"] if t["transition"] == "note"]
    if notes:
        lines += ["", "## Notes", ""]
        for t in notes:
            first, *rest = (t["detail"] or "").splitlines() or [""]
            lines.append(f"- {at(t['ts'])}, {t['actor']}: {first}")
            lines += [f"  {more}" for more in rest]

    lines += ["", "## Notifications", ""]
    for target in data["deliveries"]:
        lines.append(f"- **{target['target']}**")
        for e in target["events"]:
            http = f", last HTTP {e['last_http_status']}" if e["last_http_status"] is not None else ""
            error = f": {e['last_error']}" if e["last_error"] and e["status"] != "delivered" else ""
            done = f", finished {at(e['finished_at'])}" if e["finished_at"] is not None else ""
            lines.append(f"  - #{e['sequence']} {e['event_type']} queued {at(e['created_at'])}: {e['status']} after "
                         f"{e['attempts']} attempt{'s' if e['attempts'] != 1 else ''}{http}{done}{error}")
    if not data["deliveries"]:
        lines.append("(no target was sent anything for it)")

    if data["changes"]:
        lines += ["", "## Linked changes", ""]
        for c in data["changes"]:
            lines.append(f"- {c['id']} {c['title']} (owner {c['owner']}, {c['status']}): "
                         f"{at(c['starts_at'])} to {at(c['ends_at'])}")
    return "\n".join(lines) + "\n"
