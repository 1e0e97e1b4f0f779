"""Assigning an incident to someone: who works on it.

The assignee is kept on the incident (``incidents.assigned_to``, so it survives a restart and rides in every
later snapshot), recorded in its timeline (``incident_events`` transition ``assigned``, who assigned it, the
assignee as its detail) and audited (``incident.assign``). Like a note it notifies nobody by itself: the
change carries no event, so no outbox row is written.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ispvm_tui.engine.incidents import Change, IncidentBook, Round

MAX_ASSIGNEE = 64
_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_assignee(assignee: Any) -> str:
    if not isinstance(assignee, str) or not assignee.strip():
        raise ValueError("assignee: a name must be given")
    assignee = assignee.strip()
    if len(assignee) > MAX_ASSIGNEE or _LINE_CONTROL.search(assignee):
        raise ValueError(f"assignee: a name of 1 to {MAX_ASSIGNEE} printable characters on one line")
    return assignee


def assign_round(book: IncidentBook, incident_id: str, assignee: str, actor: str, now: float) -> Round:
    """A round for the engine to commit: the open incident with its new assignee (no change if it already has
    that one). KeyError if it is not open (a closed incident is not worked on any more)."""
    rnd = Round([], copy.deepcopy(book.open), list(book.closed), set(book.muted))
    inc = rnd.open.get(incident_id)
    if inc is None:
        raise KeyError(f"no open incident {incident_id}")
    if inc.assigned_to != assignee:
        inc.assigned_to, inc.updated_at = assignee, now
        rnd.changes.append(Change(inc, None, copy.copy(inc), "assigned", actor, assignee))
    return rnd
