"""Incidents follow correlation plans over time.

An open incident is keyed by its root entity. When a later plan explains
that root as a symptom of something else (the far device answered first,
then the cut link was seen), the incident is re-keyed rather than closed and
reopened: one outage stays one incident. An incident closes only after its
plan has been absent for ``close_after_s`` (recovery must hold).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from ispvm_tui.engine.api import Impact, IncidentView, RootCause, Severity
from ispvm_tui.engine.correlator import Plan
from ispvm_tui.engine.rules import Alert

PRIORITY = {"critical": "P1", "major": "P2", "minor": "P3", "warning": "P4", "info": "P4"}


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
    entities: list[str] = field(default_factory=list)  # root and every symptom seen while open
    notified_at: float = 0.0  # last opened/updated event: updates are coalesced
    update_pending: bool = False

    @property
    def priority(self) -> str:
        return PRIORITY[self.severity]

    def view(self, alerts: dict[str, Alert]) -> IncidentView:
        return IncidentView(
            id=self.id, title=self.title, status=self.status, severity=self.severity,  # type: ignore[arg-type]
            priority=self.priority, opened_at=self.opened_at, closed_at=self.closed_at,
            acked_by=self.acked_by, acked_at=self.acked_at, root_causes=tuple(self.root_causes),
            impact=self.impact, evidence=tuple(self.evidence), labels=dict(self.labels),
            alerts=tuple(alerts[a].view() for a in self.alert_ids if a in alerts),
        )

    # ---- persistence ---------------------------------------------------
    def row(self) -> list[Any]:
        return [
            self.id, self.root_key, self.title, self.status, self.severity, self.priority, self.opened_at,
            self.closed_at, self.acked_by, self.acked_at,
            json.dumps([rc.__dict__ for rc in self.root_causes]),
            json.dumps(_impact_dict(self.impact)), json.dumps(self.evidence), json.dumps(self.labels),
            json.dumps(self.alert_ids), self.updated_at, self.recovering_since, json.dumps(self.entities),
            self.notified_at, self.update_pending,
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
            update_pending=bool(r["update_pending"]),
        )


def _impact_dict(impact: Impact) -> dict[str, Any]:
    d = dict(impact.__dict__)
    for k in ("sites", "devices", "services"):
        d[k] = list(d[k])
    return d


UPSERT_INCIDENT = "INSERT OR REPLACE INTO incidents VALUES (" + ",".join(["?"] * 20) + ")"


@dataclass
class Change:
    incident: Incident
    event: str | None  # webhook event type, or None for a silent state change (recovery timer)
    snapshot: Incident  # a copy taken at the time of the change: what the event carries


def _significant(old: Incident, plan: Plan) -> bool:
    """Severity, root cause or impact changed: the spec's reasons for incident.updated."""
    return (
        old.severity != plan.severity
        or [(r.entity_type, r.entity_id) for r in old.root_causes]
        != [(r.entity_type, r.entity_id) for r in plan.root_causes]
        or _impact_dict(old.impact) != _impact_dict(plan.impact)
    )


class IncidentBook:
    """Open and recently closed incidents, reconciled with each round of plans."""

    def __init__(self, close_after_s: float, update_every_s: float = 60.0) -> None:
        self.close_after_s = close_after_s
        self.update_every_s = update_every_s
        self.open: dict[str, Incident] = {}  # id -> incident (open or acked)
        self.closed: list[Incident] = []  # most recent last, bounded

    def restore(self, incidents: list[Incident]) -> None:
        for inc in incidents:
            if inc.status == "closed":
                self.closed.append(inc)
            else:
                self.open[inc.id] = inc

    def reconcile(self, plans: list[Plan], now: float) -> list[Change]:
        changes: list[Change] = []
        matched: set[str] = set()
        for plan in plans:
            entities = [plan.key, *plan.symptoms]
            # A former symptom joins its incident even when that incident already took a plan this round
            # (the link's plan and a far device's leftover plan can arrive together).
            related = [inc for inc in self.open.values()
                       if plan.key in inc.entities
                       or (inc.id not in matched and (inc.root_key == plan.key or inc.root_key in plan.symptoms))]
            related.sort(key=lambda i: (i.root_key != plan.key, i.opened_at))
            if not related:
                inc = Incident(
                    id=str(uuid.uuid4()), root_key=plan.key, title=plan.title, status="open",
                    severity=plan.severity, opened_at=now, updated_at=now, root_causes=plan.root_causes,
                    impact=plan.impact, evidence=plan.evidence, labels=plan.labels, alert_ids=plan.alert_ids,
                    entities=entities, notified_at=now,
                )
                self.open[inc.id] = inc
                matched.add(inc.id)
                changes.append(Change(inc, "incident.opened", replace(inc)))
                continue
            keep, merged = related[0], related[1:]
            matched.add(keep.id)
            keep.alert_ids = list(dict.fromkeys(keep.alert_ids + plan.alert_ids))
            keep.entities = list(dict.fromkeys(keep.entities + entities))
            was_recovering = keep.recovering_since is not None
            keep.recovering_since = None
            if plan.key != keep.root_key and plan.key in keep.entities and keep.root_key not in plan.symptoms:
                # A former symptom still failing after its root recovered (polls catch up one by one):
                # the outage is ending, not a new one. Keep the incident and its root as they are.
                if was_recovering:
                    keep.updated_at = now
                    changes.append(Change(keep, None, replace(keep)))
                continue
            keep.update_pending |= _significant(keep, plan) or keep.root_key != plan.key
            keep.root_key, keep.title, keep.severity = plan.key, plan.title, plan.severity
            keep.root_causes, keep.impact, keep.evidence = plan.root_causes, plan.impact, plan.evidence
            keep.labels = plan.labels
            for other in merged:
                other.evidence = [*other.evidence, f"merged into incident {keep.id[:8]} ({plan.title})"]
                changes.append(self._close(other, now))
                keep.alert_ids = list(dict.fromkeys(keep.alert_ids + other.alert_ids))
                keep.entities = list(dict.fromkeys(keep.entities + other.entities))
            if keep.update_pending and now - keep.notified_at >= self.update_every_s:
                keep.update_pending, keep.notified_at, keep.updated_at = False, now, now
                changes.append(Change(keep, "incident.updated", replace(keep)))
            elif was_recovering:
                keep.updated_at = now
                changes.append(Change(keep, None, replace(keep)))
        for inc in list(self.open.values()):
            if inc.id in matched:
                continue
            if inc.recovering_since is None:
                inc.recovering_since = now
                inc.updated_at = now
                changes.append(Change(inc, None, replace(inc)))
            elif now - inc.recovering_since >= self.close_after_s:
                changes.append(self._close(inc, now))
        return changes

    def _close(self, inc: Incident, now: float) -> Change:
        inc.status, inc.closed_at, inc.updated_at = "closed", now, now
        self.open.pop(inc.id, None)
        self.closed.append(inc)
        del self.closed[:-200]
        return Change(inc, "incident.closed", replace(inc))

    def acknowledge(self, incident_id: str, actor: str, now: float) -> Change:
        inc = self.open.get(incident_id)
        if inc is None:
            raise KeyError(f"no open incident {incident_id}")
        if inc.status == "acked":
            return Change(inc, None, replace(inc))
        inc.status, inc.acked_by, inc.acked_at, inc.updated_at = "acked", actor, now, now
        return Change(inc, "incident.acked", replace(inc))

    def all(self) -> list[Incident]:
        return [*self.open.values(), *reversed(self.closed)]
