"""One incident's timeline: everything stored about it and around it, in time order.

Read in a thread (``query`` is ``Store.query_dicts``), never on the engine's loop:

- its alerts (fired, resolved), from ``alerts``;
- its transitions (opened, updated, acked, closed, reopened ...), notes and assignments, from
  ``incident_events`` as they were stored;
- configuration changes on its root devices from ``lookback_s`` before it opened until it closed (or now),
  from ``config_versions``, and the change records linked to it (``change_incidents``);
- maintenance windows whose scope holds a root device and whose time covers it (the engine passes its
  current windows: config-file ones are not in the database), and the window named in its labels;
- one row per outbox row of it: target, event type, delivery status, attempts, last error.

Each source is bounded, and only the newest ``limit`` entries are kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from ispvm_tui.engine.api import TimelineEntry
from ispvm_tui.engine.maintenance_windows import LABEL as MAINT_LABEL
from ispvm_tui.engine.maintenance_windows import Window, entity_devices

Query = Callable[[str, list[Any]], list[dict[str, Any]]]

LIMIT = 500
_RUNBOOK_SCHEMES = ("http://", "https://")

# incident_events.transition -> timeline kind; every other transition is a state change ("incident.updated")
_TRANSITIONS = {
    "opened": "incident.opened", "acked": "incident.acked", "closed": "incident.closed",
    "merged": "incident.closed", "reopened": "incident.reopened", "note": "note", "assigned": "assigned",
}


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _incident_row(query: Query, incident_id: str) -> dict[str, Any]:
    rows = query("SELECT id, root_causes, labels, alert_ids, opened_at, closed_at FROM incidents WHERE id = ?",
                 [incident_id])
    if not rows:
        raise KeyError(f"no incident {incident_id!r}")
    return rows[0]


def root_devices(row: dict[str, Any]) -> set[str]:
    return {d for rc in json.loads(row["root_causes"] or "[]") for d in entity_devices(rc["entity_id"])}


def _transitions(query: Query, incident_id: str, limit: int) -> list[TimelineEntry]:
    rows = query("SELECT ts, transition, actor, status, severity, title, detail, event_type FROM incident_events "
                 "WHERE incident_id = ? ORDER BY ts DESC, rowid DESC LIMIT ?", [incident_id, limit])
    out = []
    for r in rows:
        transition, detail = r["transition"], r["detail"] or ""
        kind = _TRANSITIONS.get(transition, "incident.updated")
        if kind == "note":
            summary = detail
        elif kind == "assigned":
            summary = f"assigned to {detail}"
        elif kind == "incident.opened":
            summary = f"opened ({r['severity']}): {detail or r['title']}"
        elif kind == "incident.updated":
            summary = f"{transition} ({r['severity']})" + (f": {detail}" if detail else "")
        else:
            summary = transition + (f": {detail}" if detail else "")
        if r["event_type"]:
            summary += f" [{r['event_type']} sent]"
        actor = r["actor"] if r["actor"] and (r["actor"] != "engine" or kind == "incident.closed") else None
        out.append(TimelineEntry(at=r["ts"], kind=kind, summary=summary, actor=actor))
    return out


def _alerts(query: Query, incident_id: str, alert_ids: list[str], limit: int) -> list[TimelineEntry]:
    rows = query("SELECT rule, entity_type, entity_id, severity, starts_at, ends_at, summary, suppressed "
                 "FROM alerts WHERE incident_id = ? OR list_contains(?, id) ORDER BY starts_at DESC LIMIT ?",
                 [incident_id, alert_ids, limit])
    out = []
    for r in rows:
        # What failed first: a narrow column shows the start of it.
        what = f"{r['rule']} {r['entity_id']}" + (", suppressed" if r["suppressed"] else "")
        head = r["summary"] or r["entity_id"]
        out.append(TimelineEntry(at=r["starts_at"], kind="alert.fired", summary=f"{head} ({r['severity']} {what})"))
        if r["ends_at"] is not None:
            out.append(TimelineEntry(at=r["ends_at"], kind="alert.resolved", summary=f"{head} ({what})"))
    return out


def _config_changes(query: Query, incident_id: str, devices: set[str], start: float, end: float,
                    limit: int) -> list[TimelineEntry]:
    out = []
    if devices:
        # A change is a version with an earlier one from the same source (a source's first is its baseline).
        rows = query("SELECT device, category, version, taken_at, summary, source FROM (SELECT *, lag(version) "
                     "OVER (PARTITION BY device, category, source ORDER BY version) AS before FROM config_versions "
                     "WHERE list_contains(?, device)) WHERE before IS NOT NULL AND taken_at BETWEEN ? AND ? "
                     "ORDER BY taken_at DESC LIMIT ?", [sorted(devices), start, end, limit])
        out += [TimelineEntry(at=r["taken_at"], kind="config.changed",
                              summary=f"{r['device']} {r['category']} v{r['version']}: {r['summary'] or 'changed'}")
                for r in rows]
    records = query("SELECT c.id, c.title, c.status, c.owner, c.starts_at, c.ends_at FROM change_incidents l "
                    "JOIN change_records c ON c.id = l.change_id WHERE l.incident_id = ? ORDER BY c.starts_at "
                    "LIMIT 20", [incident_id])
    out += [TimelineEntry(at=r["starts_at"], kind="config.changed", actor=r["owner"],
                          summary=f"change {r['id']} ({r['status']}, until {_clock(r['ends_at'])}): {r['title']}")
            for r in records]
    return out


def _maintenance(windows: Iterable[Window], devices: set[str], labels: dict[str, str], start: float,
                 end: float) -> list[TimelineEntry]:
    out = []
    named = labels.get(MAINT_LABEL)
    for win in windows:
        if not (win.devices & devices or win.name == named):
            continue
        if win.start is not None and win.end is not None and win.start < end and win.end > start:
            out.append(TimelineEntry(at=win.start, kind="maintenance",
                                     summary=f"window {win.name} until {_clock(win.end)}"))
        elif win.weekly and (win.active(start) or win.active(end)):
            out.append(TimelineEntry(at=start, kind="maintenance", summary=f"weekly window {win.name} active"))
    if named and not any(named in e.summary for e in out):
        out.append(TimelineEntry(at=start, kind="maintenance", summary=f"window {named} (no longer configured)"))
    return out


def delivery_status(status: str, attempts: int, last_error: str | None) -> str:
    """An outbox row as the timeline says it: a pending row that has failed before is "failed" (retrying)."""
    if status == "pending" and attempts > 0 and last_error:
        return "failed"
    return status


def _notifications(query: Query, incident_id: str, limit: int) -> list[TimelineEntry]:
    rows = query("SELECT endpoint, event_type, status, attempts, created_at, last_error, superseded FROM outbox "
                 "WHERE incident_id = ? ORDER BY seq DESC LIMIT ?", [incident_id, limit])
    out = []
    for r in rows:
        tries = f"{r['attempts']} attempt{'s' if r['attempts'] != 1 else ''}"
        summary = f"{r['event_type']} to {r['endpoint']} ({tries}{', superseded' if r['superseded'] else ''})"
        status = delivery_status(r["status"], r["attempts"], r["last_error"])
        if r["last_error"] and status != "delivered":
            summary += f": {r['last_error']}"
        out.append(TimelineEntry(at=r["created_at"], kind="notification", summary=summary, status=status))
    return out


def read_timeline(query: Query, incident_id: str, *, now: float, lookback_s: float,
                  windows: Iterable[Window] = (), limit: int = LIMIT) -> tuple[TimelineEntry, ...]:
    """Oldest first, the newest ``limit`` entries; KeyError for an unknown id."""
    row = _incident_row(query, incident_id)
    start, end = row["opened_at"], row["closed_at"] if row["closed_at"] is not None else now
    devices = root_devices(row)
    entries = [
        *_transitions(query, incident_id, limit),
        *_alerts(query, incident_id, json.loads(row["alert_ids"] or "[]"), limit),
        *_config_changes(query, incident_id, devices, start - lookback_s, end, limit),
        *_maintenance(windows, devices, json.loads(row["labels"] or "{}"), start, end),
        *_notifications(query, incident_id, limit),
    ]
    entries.sort(key=lambda e: e.at)  # stable: each source's own order holds among equal times
    return tuple(entries[-limit:])


def is_runbook_link(value: str | None) -> bool:
    return bool(value) and value.strip().lower().startswith(_RUNBOOK_SCHEMES)  # type: ignore[union-attr]


def runbook_links(query: Query, incident_id: str, by_rule: dict[str, str | None]) -> list[str]:
    """The http(s) runbooks of the incident's root-cause (not suppressed) alerts, in the incident's alert order:
    the one stored with the alert, else the rule's current one (``by_rule``)."""
    row = _incident_row(query, incident_id)
    alert_ids = json.loads(row["alert_ids"] or "[]")
    rows = {r["id"]: r for r in query("SELECT id, rule, runbook, suppressed FROM alerts WHERE list_contains(?, id)",
                                      [alert_ids])}
    links: list[str] = []
    for aid in alert_ids:
        r = rows.get(aid)
        if r is None or r["suppressed"]:
            continue
        link = r["runbook"] if is_runbook_link(r["runbook"]) else by_rule.get(r["rule"])
        if is_runbook_link(link) and link not in links:
            links.append(link.strip())  # type: ignore[union-attr]
    return links
