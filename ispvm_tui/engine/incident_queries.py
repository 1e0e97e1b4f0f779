"""Incidents as the CLI reads them: lists, one incident in full, ids by prefix, notes.

One implementation for both ways in (``ispvm incidents``): the running engine
answers its control socket with these functions, giving them its live views
(``Snapshot.incidents``) to prefer over stored rows; with no engine running the
CLI runs them on the database file. Either way the answer has the same shape.
``query`` is ``Store.query_dicts``.

A note is a row in ``incident_events`` (transition ``note``, who, the text as
its detail) and an ``audit`` row, and nothing else: no outbox row, so no
target hears of it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from typing import Any

import duckdb

from ispvm_tui.engine import audit_log
from ispvm_tui.engine.api import AlertView, IncidentView
from ispvm_tui.engine.control import jsonable
from ispvm_tui.engine.incidents import Incident

Query = Callable[[str, list[Any]], list[dict[str, Any]]]

STATUSES = ("open", "acked", "closed", "all")
MAX_LIMIT = 10_000
MIN_PREFIX = 6
MAX_TEXT = 2000  # characters in a note or a closing note
_ID = re.compile(r"[0-9a-f-]{1,36}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # newlines and tabs pass


# ---- checking requests (from any socket peer, or the CLI) ------------------------------------------

def list_args(args: dict[str, Any]) -> tuple[str, int]:
    status, limit = args.get("status", "all"), args.get("limit", 100)
    if status not in STATUSES:
        raise ValueError(f"status: one of {', '.join(STATUSES)}")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit: an integer from 1 to {MAX_LIMIT}")
    return status, limit


def check_text(text: Any, what: str, *, required: bool = True) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{what}: expected text")
    text = text.strip()
    if required and not text:
        raise ValueError(f"{what}: must not be blank")
    if len(text) > MAX_TEXT:
        raise ValueError(f"{what}: at most {MAX_TEXT} characters")
    if _CONTROL.search(text):
        raise ValueError(f"{what}: no control characters")
    return text


def check_prefix(prefix: Any) -> str:
    """An incident id or its first characters (at least MIN_PREFIX), lower-cased."""
    p = prefix.strip().lower() if isinstance(prefix, str) else ""
    if not _ID.fullmatch(p):
        raise ValueError(f"incident id {prefix!r}: expected an id or its first {MIN_PREFIX} or more characters "
                         "(ispvm incidents list)")
    if len(p) < MIN_PREFIX:
        raise ValueError(f"incident id {p!r}: give at least {MIN_PREFIX} characters of it")
    return p


def resolve_id(query: Query, prefix: Any, live_ids: Iterable[str] = ()) -> str:
    """The one incident whose id starts with ``prefix`` (at least 6 characters), stored or live."""
    p = check_prefix(prefix)
    found = {i for i in live_ids if i.startswith(p)}
    found |= {r["id"] for r in query("SELECT id FROM incidents WHERE starts_with(id, ?) LIMIT 20", [p])}
    if not found:
        raise ValueError(f"no incident {p!r} (ispvm incidents list)")
    if len(found) > 1:
        shown = ", ".join(sorted(i[:12] for i in found)[:5])
        raise ValueError(f"incident id {p!r} is ambiguous: {len(found)} incidents start with it ({shown}): "
                         "give more of it")
    return found.pop()


# ---- reading -------------------------------------------------------------------------------------------

def _order(view: IncidentView) -> tuple[Any, ...]:
    """Open and acknowledged first, newest first; then closed, most recently closed first (as LIST_SQL)."""
    closed = view.status == "closed"
    return closed, -(view.closed_at or 0.0) if closed else 0.0, -view.opened_at, view.id


LIST_SQL = ("SELECT * FROM incidents {where} ORDER BY (status = 'closed'), "
            "CASE WHEN status = 'closed' THEN closed_at END DESC, opened_at DESC, id LIMIT ?")


def _alert_view(r: dict[str, Any]) -> AlertView:
    return AlertView(id=r["id"], rule=r["rule"], entity_type=r["entity_type"], entity_id=r["entity_id"],
                     severity=r["severity"], state="firing" if r["state"] == "firing" else "resolved",
                     starts_at=r["starts_at"], ends_at=r["ends_at"], summary=r["summary"],
                     incident_id=r["incident_id"], suppressed=bool(r["suppressed"]))


def stored_view(query: Query, row: dict[str, Any], now: float, critical: frozenset[str] = frozenset(), *,
                alerts: bool = False) -> IncidentView:
    """An incident row as the engine would show it (its alerts read from the alerts table when asked)."""
    inc = Incident.from_row(row)
    view = inc.view({}, now, critical)
    if not alerts or not inc.alert_ids:
        return view
    rows = {r["id"]: r for r in query("SELECT * FROM alerts WHERE list_contains(?, id)", [inc.alert_ids])}
    return dataclasses.replace(view, alerts=tuple(_alert_view(rows[a]) for a in inc.alert_ids if a in rows))


def summary(view: IncidentView) -> dict[str, Any]:
    """Every field but the alerts (a list is for scanning; ``show`` has them)."""
    out = jsonable(view)
    out.pop("alerts")
    return out


def list_incidents(query: Query, status: str, limit: int, now: float, critical: frozenset[str] = frozenset(),
                   live: Iterable[IncidentView] = ()) -> dict[str, Any]:
    """Incidents by ``status`` (or all), at most ``limit``: live views where given, stored rows for the rest."""
    views = {v.id: v for v in live}
    where = "" if status == "all" else "WHERE status = ?"
    for row in query(LIST_SQL.format(where=where), ([] if status == "all" else [status]) + [limit]):
        if row["id"] not in views:
            views[row["id"]] = stored_view(query, row, now, critical)
    chosen = sorted((v for v in views.values() if status == "all" or v.status == status), key=_order)[:limit]
    return {"now": now, "incidents": [summary(v) for v in chosen]}


def timeline(query: Query, incident_id: str) -> list[dict[str, Any]]:
    """Every transition and note, oldest first."""
    return query("SELECT ts, transition, actor, status, severity, title, detail, event_type FROM incident_events "
                 "WHERE incident_id = ? ORDER BY ts, rowid", [incident_id])


def deliveries(query: Query, incident_id: str) -> list[dict[str, Any]]:
    """The incident's queued events per target, in sequence order, each with its last attempt's HTTP status."""
    rows = query(
        "SELECT o.endpoint AS target, o.event_id, o.event_type, o.sequence, o.status, o.attempts, o.created_at, "
        "o.next_attempt_at, o.finished_at, o.last_error, o.superseded, "
        "(SELECT d.http_status FROM deliveries d WHERE d.event_id = o.event_id ORDER BY d.attempted_at DESC "
        "LIMIT 1) AS last_http_status "
        "FROM outbox o WHERE o.incident_id = ? ORDER BY o.endpoint, o.seq", [incident_id])
    by_target: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        target = r.pop("target")
        r["superseded"] = bool(r["superseded"])
        if r["status"] != "pending":
            r["next_attempt_at"] = None
        by_target.setdefault(target, []).append(r)
    return [{"target": t, "events": events} for t, events in by_target.items()]


def show_incident(query: Query, prefix: Any, now: float, critical: frozenset[str] = frozenset(),
                  live: Iterable[IncidentView] = ()) -> dict[str, Any]:
    """One incident in full: its fields and alerts, its timeline (transitions and notes), its deliveries."""
    views = {v.id: v for v in live}
    incident_id = resolve_id(query, prefix, views)
    view = views.get(incident_id)
    if view is None:
        rows = query("SELECT * FROM incidents WHERE id = ?", [incident_id])
        if not rows:
            raise ValueError(f"no incident {incident_id!r}")
        view = stored_view(query, rows[0], now, critical, alerts=True)
    return {"now": now, "incident": jsonable(view), "timeline": timeline(query, incident_id),
            "deliveries": deliveries(query, incident_id)}


# ---- notes (written by the engine, in a Store.transaction) ------------------------------------------------

def add_note(con: duckdb.DuckDBPyConnection, incident_id: str, actor: str, text: str, now: float,
             current: tuple[str, str, str]) -> dict[str, Any]:
    """Record a note: its timeline row, carrying the incident's ``current`` (status, severity, title), and its
    audit row. No outbox row."""
    status, severity, title = current
    con.execute("INSERT INTO incident_events VALUES (?, ?, 'note', ?, ?, ?, ?, ?, NULL)",
                [now, incident_id, actor, status, severity, title, text])
    audit_log.append(con, now, actor, "incident.note", incident_id, text)
    return {"id": incident_id, "ts": now, "actor": actor, "note": text, "status": status, "title": title}


def current_state(query: Query, incident_id: str) -> tuple[str, str, str]:
    """A stored incident's status, severity and title (for a note on one the engine no longer holds)."""
    rows = query("SELECT status, severity, title FROM incidents WHERE id = ?", [incident_id])
    if not rows:
        raise ValueError(f"no incident {incident_id!r}")
    return rows[0]["status"], rows[0]["severity"], rows[0]["title"]
