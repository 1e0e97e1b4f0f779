"""What the outbox delivers to: one protocol for webhooks, ticket systems, chat and e-mail.

The outbox (engine/outbox.py) owns durability, order, retries, dead letters and
the delivery log; a target only turns one queued event into one attempt and
says how it went. Targets that create something on the far side (a Jira issue,
a ServiceNow record, an e-mail thread) remember its key through ``Refs`` so a
retry, a restart or a lost response never creates it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ispvm_tui.engine.webhooks import AttemptOutcome


@dataclass(frozen=True, slots=True)
class Notice:
    """One queued event for one target, as the outbox hands it over."""

    event_id: str  # stable across retries and resends: receivers deduplicate on it
    target: str  # the target's configured name
    incident_id: str
    event_type: str  # incident.opened | incident.updated | incident.acked | incident.closed
    incident: dict[str, Any]  # the webhook payload's "incident" object (engine/webhooks.py incident_object)
    created_at: float  # epoch seconds the event was stored
    sequence: int  # per incident, 1, 2, 3 ... in the order the events happened
    attempt: int  # 1 for the first try of this event
    # Added: true on a manual resend after a later event of this incident already reached the target.
    superseded: bool = False


class Refs(Protocol):
    """Durable incident -> far-side key mapping, per target (e.g. a Jira issue key)."""

    async def get(self, target: str, incident_id: str) -> str | None: ...

    async def put(self, target: str, incident_id: str, ref: str) -> None: ...


class ProbeFailed(Exception):
    """``ispvm notify test``: the target cannot be used; the message says why (never a secret)."""


class Target(Protocol):
    """A configured destination. ``send`` never raises for the far side's failures: it returns them.

    ``probe`` is ``ispvm notify test NAME``: chat, e-mail and webhooks send a test message; ticket
    systems check the credentials and the project or table without opening a ticket. It returns one
    line saying what was checked, or raises ``ProbeFailed``.
    """

    name: str
    kind: str  # webhook | jira | servicenow | telegram | slack | email
    events: frozenset[str]
    max_attempts: int
    max_age_s: float

    async def send(self, notice: Notice, client: httpx.AsyncClient, refs: Refs) -> AttemptOutcome: ...

    async def probe(self, client: httpx.AsyncClient) -> str: ...


class MemoryRefs:
    """Refs kept in memory: enough for targets that create nothing on the far side (webhooks)."""

    def __init__(self) -> None:
        self._refs: dict[tuple[str, str], str] = {}

    async def get(self, target: str, incident_id: str) -> str | None:
        return self._refs.get((target, incident_id))

    async def put(self, target: str, incident_id: str, ref: str) -> None:
        self._refs[(target, incident_id)] = ref
