"""Incidents follow correlation plans over time.

An open incident is matched by root causes and entities: when a later plan
explains the same outage differently (a second uplink is cut, the link
comes back but the router behind it stays hung), the incident is updated
rather than closed and reopened, so one outage stays one incident and what
is still down is always what its title says. An incident closes only after
its plan has been absent for ``close_after_s`` (recovery must hold); the
same root failing again within ``reopen_window_s`` reopens it instead of
paging anew. A held plan (see correlator.py) freezes its incident as it is.

The book is transactional: ``reconcile`` works on a copy and returns the
changes with the state they lead to; the engine stores the changes (and
their notifications) in one database transaction and only then calls
``commit``. A failed write leaves the book as it was, so the next round
computes the same changes again and nothing is lost.
"""

from __future__ import annotations

import copy
import json
import math
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from ispvm_tui.engine.api import Impact, IncidentView, RootCause, Severity
from ispvm_tui.engine.correlator import Plan
from ispvm_tui.engine.rules import Alert

PRIORITY = {"critical": "P1", "major": "P2", "minor": "P3", "warning": "P4", "info": "P4"}
_SEVERITY_POINTS = {"critical": 60, "major": 40, "minor": 20, "warning": 10, "info": 5}


@dataclass
class Incident:
    id: str
    root_key: str
    title: str
    status: str
    severity: Severity
    opened_at: float
    updated_at: float
    root_causes: list[RootCause]
    impact: Impact
    evidence: list[str]
    labels: dict[str, str] = field(default_factory=dict)
    alert_ids: list[str] = field(default_factory=list)
    closed_at: float | None = None
    acked_by: str | None = None
    acked_at: float | None = None
    recovering_since: float | None = None
    entities: list[str] = field(default_factory=list)  # roots and every symptom seen while open
    notified_at: float = 0.0  # last opened/updated event: updates are coalesced
    update_pending: bool = False
    closed_by: str | None = None  # "engine" after recovery, else who closed it by hand
    reopened: int = 0
    assigned_to: str | None = None  # kept on the incident (and its row) so it survives a restart

    @property
    def priority(self) -> str:
        return PRIORITY[self.severity]

    @property
    def roots(self) -> list[str]:
        return [rc.entity_id for rc in self.root_causes]

    def score(self, now: float, critical_devices: frozenset[str] = frozenset()) -> int:
        """0..100: what to look at first. Severity dominates; impact, critical assets, symptoms and age order
        incidents of one severity."""
        subs = self.impact.estimated_subscribers_affected or 0
        points = _SEVERITY_POINTS.get(self.severity, 5)
        points += min(15, int(5 * math.log10(1 + subs)))
        points += min(8, self.impact.devices_affected)
        points += 8 if critical_devices.intersection(self.impact.devices) or critical_devices.intersection(
            self.roots) else 0
        points += min(4, len(self.alert_ids) // 5)
        end = self.closed_at if self.closed_at is not None else now
        points += min(5, int((end - self.opened_at) // 900))
        if self.status == "acked":
            points -= 10  # someone is on it
        return max(0, min(100, points))

    def view(self, alerts: dict[str, Alert], now: float = 0.0,
             critical_devices: frozenset[str] = frozenset()) -> IncidentView:
        return IncidentView(
            id=self.id, title=self.title, status=self.status, severity=self.severity,  # type: ignore[arg-type]
            priority=self.priority, opened_at=self.opened_at, closed_at=self.closed_at,
            acked_by=self.acked_by, acked_at=self.acked_at, root_causes=tuple(self.root_causes),
            impact=self.impact, evidence=tuple(self.evidence), labels=dict(self.labels),
            alerts=tuple(alerts[a].view() for a in self.alert_ids if a in alerts),
            score=self.score(now or self.updated_at, critical_devices), updated_at=self.updated_at,
            closed_by=self.closed_by, assigned_to=self.assigned_to,
        )

    # ---- persistence ---------------------------------------------------
    def row(self) -> list[Any]:
        return [
            self.id, self.root_key, self.title, self.status, self.severity, self.priority, self.opened_at,
            self.closed_at, self.acked_by, self.acked_at,
            json.dumps([rc.__dict__ for rc in self.root_causes]),
            json.dumps(_impact_dict(self.impact)), json.dumps(self.evidence), json.dumps(self.labels),
            json.dumps(self.alert_ids), self.updated_at, self.recovering_since, json.dumps(self.entities),
            self.notified_at, self.update_pending, self.closed_by, self.reopened, self.assigned_to,
        ]

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> Incident:
        impact = json.loads(r["impact"])
        for k in ("sites", "devices", "services"):
            impact[k] = tuple(impact.get(k, ()))
        return cls(
            id=r["id"], root_key=r["root_key"], title=r["title"], status=r["status"], severity=r["severity"],
            opened_at=r["opened_at"], updated_at=r["updated_at"],
            root_causes=[RootCause(**rc) for rc in json.loads(r["root_causes"])],
            impact=Impact(**impact), evidence=json.loads(r["evidence"]), labels=json.loads(r["labels"]),
            alert_ids=json.loads(r["alert_ids"]), closed_at=r["closed_at"], acked_by=r["acked_by"],
            acked_at=r["acked_at"], recovering_since=r["recovering_since"],
            entities=json.loads(r["entities"] or "[]"), notified_at=r["notified_at"] or 0.0,
            update_pending=bool(r["update_pending"]), closed_by=r.get("closed_by"),
            reopened=r.get("reopened") or 0, assigned_to=r.get("assigned_to"),
        )


def _impact_dict(impact: Impact) -> dict[str, Any]:
    d = dict(impact.__dict__)
    for k in ("sites", "devices", "services"):
        d[k] = list(d[k])
    return d


UPSERT_INCIDENT = "INSERT OR REPLACE INTO incidents VALUES (" + ",".join(["?"] * 23) + ")"


@dataclass
class Change:
    incident: Incident
    event: str | None  # webhook event type, or None for a change that notifies nobody
    snapshot: Incident  # a copy taken at the time of the change: what the event carries
    transition: str = "updated"  # opened | updated | acked | closed | reopened | recovering | merged | ...
    actor: str = "engine"
    detail: str = ""


@dataclass
class Round:
    """The outcome of one reconcile: the changes and the book state they lead to."""

    changes: list[Change]
    open: dict[str, Incident]
    closed: list[Incident]
    muted: set[str]


def _significant(old: Incident, plan: Plan) -> bool:
    """Severity, root cause or impact changed: the spec's reasons for incident.updated."""
    return (
        old.severity != plan.severity
        or sorted((r.entity_type, r.entity_id) for r in old.root_causes)
        != sorted((r.entity_type, r.entity_id) for r in plan.root_causes)
        or _impact_dict(old.impact) != _impact_dict(plan.impact)
    )


class IncidentBook:
    """Open and recently closed incidents, reconciled with each round of plans."""

    def __init__(self, close_after_s: float, update_every_s: float = 60.0, reopen_window_s: float = 900.0) -> None:
        self.close_after_s = close_after_s
        self.update_every_s = update_every_s
        self.reopen_window_s = reopen_window_s
        self.open: dict[str, Incident] = {}  # id -> incident (open or acked)
        self.closed: list[Incident] = []  # most recent last, bounded
        self.muted: set[str] = set()  # plan keys closed by hand while still failing

    def restore(self, incidents: list[Incident]) -> None:
        for inc in incidents:
            if inc.status == "closed":
                self.closed.append(inc)
            else:
                self.open[inc.id] = inc

    def commit(self, rnd: Round) -> None:
        self.open, self.closed, self.muted = rnd.open, rnd.closed, rnd.muted

    def reconcile(self, plans: list[Plan], now: float, unsettled: frozenset[str] = frozenset()) -> Round:
        open_ = copy.deepcopy(self.open)
        closed = list(self.closed)
        muted = set(self.muted) & {p.key for p in plans}  # a mute ends once its plan is gone
        changes: list[Change] = []
        matched: set[str] = set()
        for plan in plans:
            roots = set(plan.roots)
            entities = roots | set(plan.symptoms)
            candidates = [inc for inc in open_.values() if inc.id not in matched
                          and (roots & set(inc.roots) or entities & set(inc.entities))]
            candidates.sort(key=lambda i: (set(i.roots) != roots, not roots & set(i.roots), i.opened_at))
            if plan.held:
                matched |= {c.id for c in candidates}  # frozen as they are until the state settles
                continue
            if not candidates:
                if plan.key in muted:
                    continue
                # The same root failing again: every root of the new plan was a root of the closed incident. A
                # bigger outage that merely shares one of them (the core link of a PoP outage, then everything
                # behind the core) is a new event and pages as one.
                again = next((c for c in reversed(closed) if c.closed_by == "engine" and c.closed_at is not None
                              and now - c.closed_at <= self.reopen_window_s and roots <= set(c.roots)), None)
                if again is not None:
                    closed.remove(again)
                    again = copy.deepcopy(again)
                    again.status, again.closed_at, again.closed_by = "open", None, None
                    again.reopened += 1
                    again.recovering_since = None
                    open_[again.id] = again
                    matched.add(again.id)
                    self._apply(again, plan)
                    again.entities = list(dict.fromkeys(again.entities + sorted(entities)))
                    again.updated_at = again.notified_at = now
                    again.update_pending = False
                    changes.append(Change(again, "incident.updated", replace(again), "reopened",
                                          detail=f"failing again: {plan.title}"))
                    continue
                inc = Incident(
                    id=str(uuid.uuid4()), root_key=plan.key, title=plan.title, status="open",
                    severity=plan.severity, opened_at=now, updated_at=now, root_causes=plan.root_causes,
                    impact=plan.impact, evidence=plan.evidence, labels=plan.labels, alert_ids=plan.alert_ids,
                    entities=sorted(entities), notified_at=now,
                )
                open_[inc.id] = inc
                matched.add(inc.id)
                changes.append(Change(inc, "incident.opened", replace(inc), "opened", detail=plan.title))
                continue
            keep, merged = candidates[0], [c for c in candidates[1:] if set(c.roots) <= entities]
            matched.add(keep.id)
            was_recovering = keep.recovering_since is not None
            keep.recovering_since = None
            significant = _significant(keep, plan)
            old_title = keep.title
            self._apply(keep, plan)
            keep.entities = list(dict.fromkeys(keep.entities + sorted(entities)))
            keep.update_pending |= significant
            for other in merged:
                matched.add(other.id)
                other.evidence = [*other.evidence, f"merged into incident {keep.id[:8]} ({plan.title})"]
                changes.append(self._close(other, now, open_, closed, "engine", "merged"))
                keep.alert_ids = list(dict.fromkeys(keep.alert_ids + other.alert_ids))
                keep.entities = list(dict.fromkeys(keep.entities + other.entities))
                keep.update_pending = True
            if keep.update_pending and now - keep.notified_at >= self.update_every_s:
                keep.update_pending, keep.notified_at, keep.updated_at = False, now, now
                detail = plan.title if plan.title == old_title else f"{old_title} -> {plan.title}"
                changes.append(Change(keep, "incident.updated", replace(keep), "updated", detail=detail))
            elif was_recovering or significant:
                keep.updated_at = now
                changes.append(Change(keep, None, replace(keep), "recovery interrupted" if was_recovering
                                      else "changed", detail=plan.title))
        for inc in list(open_.values()):
            if inc.id in matched:
                continue
            if unsettled.intersection(inc.entities):
                continue  # what it covers is still being re-polled: no recovery yet
            if inc.recovering_since is None:
                inc.recovering_since = now
                inc.updated_at = now
                changes.append(Change(inc, None, replace(inc), "recovering"))
            elif now - inc.recovering_since >= self.close_after_s:
                changes.append(self._close(inc, now, open_, closed, "engine", "closed",
                                           f"recovered for {now - inc.recovering_since:.0f}s"))
            elif inc.update_pending and now - inc.notified_at >= self.update_every_s:
                inc.update_pending, inc.notified_at, inc.updated_at = False, now, now
                changes.append(Change(inc, "incident.updated", replace(inc), "updated"))
        return Round(changes, open_, closed, muted)

    @staticmethod
    def _apply(inc: Incident, plan: Plan) -> None:
        inc.root_key, inc.title, inc.severity = plan.key, plan.title, plan.severity
        inc.root_causes, inc.impact, inc.evidence = plan.root_causes, plan.impact, plan.evidence
        inc.labels = plan.labels
        inc.alert_ids = list(dict.fromkeys(inc.alert_ids + plan.alert_ids))

    @staticmethod
    def _close(inc: Incident, now: float, open_: dict[str, Incident], closed: list[Incident], actor: str,
               transition: str, detail: str = "") -> Change:
        inc.status, inc.closed_at, inc.updated_at, inc.closed_by = "closed", now, now, actor
        open_.pop(inc.id, None)
        closed.append(inc)
        del closed[:-200]
        return Change(inc, "incident.closed", replace(inc), transition, actor, detail)

    def _copy(self) -> Round:
        return Round([], copy.deepcopy(self.open), list(self.closed), set(self.muted))

    def acknowledge(self, incident_id: str, actor: str, now: float) -> Round:
        rnd = self._copy()
        inc = rnd.open.get(incident_id)
        if inc is None:
            raise KeyError(f"no open incident {incident_id}")
        if inc.status != "acked":
            inc.status, inc.acked_by, inc.acked_at, inc.updated_at = "acked", actor, now, now
            rnd.changes.append(Change(inc, "incident.acked", replace(inc), "acked", actor))
        return rnd

    def close(self, incident_id: str, actor: str, now: float, note: str = "") -> Round:
        """Close by hand. While its plan keeps failing it stays closed (muted), not paged again."""
        rnd = self._copy()
        inc = rnd.open.get(incident_id)
        if inc is None:
            raise KeyError(f"no open incident {incident_id}")
        rnd.muted.add(inc.root_key)
        rnd.changes.append(self._close(inc, now, rnd.open, rnd.closed, actor, "closed", note or "closed by hand"))
        return rnd

    def all(self) -> list[Incident]:
        return [*self.open.values(), *reversed(self.closed)]
