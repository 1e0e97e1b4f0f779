"""The engine's public surface: immutable views, events and actions.

Both front-ends (the Textual console and the headless runner) use only this
module's types and the ``EngineAPI`` protocol. Views are frozen snapshots, so
a front-end can hold one as long as it likes while the engine moves on.
Actions return ``concurrent.futures.Future`` because the engine runs on its
own thread and event loop: the console awaits them with
``asyncio.wrap_future`` and never blocks its own loop.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Literal, Protocol

Severity = Literal["critical", "major", "minor", "warning", "info"]
SEVERITY_ORDER: tuple[Severity, ...] = ("critical", "major", "minor", "warning", "info")
IncidentStatus = Literal["open", "acked", "closed"]
EntityState = Literal["up", "down", "degraded", "unknown"]


@dataclass(frozen=True)
class RootCause:
    entity_type: str  # device | link | interface | bgp_peer | ospf_neighbor
    entity_id: str  # "EDGE1", "CORE1:ether2--POPA-AGG:ether1", "EDGE1:UPSTREAM1"
    name: str
    confidence: float  # 0..1


@dataclass(frozen=True)
class Impact:
    sites_affected: int = 0
    devices_affected: int = 0
    services_affected: int = 0
    estimated_subscribers_affected: int | None = None
    sites: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    services: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertView:
    id: str
    rule: str  # device_unreachable | interface_down | bgp_session_down
    entity_type: str
    entity_id: str
    severity: Severity
    state: Literal["firing", "resolved"]
    starts_at: float
    ends_at: float | None
    summary: str
    incident_id: str | None = None
    suppressed: bool = False  # explained by another incident's root cause


@dataclass(frozen=True)
class IncidentView:
    id: str
    title: str
    status: IncidentStatus
    severity: Severity
    priority: str  # P1..P4
    opened_at: float
    closed_at: float | None
    acked_by: str | None
    acked_at: float | None
    root_causes: tuple[RootCause, ...]
    impact: Impact
    evidence: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)
    alerts: tuple[AlertView, ...] = ()  # root-cause alerts first, then suppressed ones
    score: int = 0  # priority score 0..100 (severity, impact, critical assets, symptoms, age)
    updated_at: float | None = None
    closed_by: str | None = None  # "engine" after recovery, or who closed it by hand

    @property
    def suppressed_count(self) -> int:
        return sum(1 for a in self.alerts if a.suppressed)


@dataclass(frozen=True)
class DeviceView:
    name: str
    site: str
    role: str
    address: str
    state: EntityState
    last_poll_at: float | None = None
    last_error: str | None = None
    version: str | None = None
    uptime_s: float | None = None
    cpu_load: int | None = None
    interfaces_up: int = 0
    interfaces_total: int = 0


@dataclass(frozen=True)
class LinkView:
    id: str  # "A:ether1--B:ether2" (ends sorted)
    a: str  # "A:ether1"
    b: str
    state: EntityState
    speed_mbps: int | None = None
    utilisation: float | None = None  # 0..1 of the busier direction, when known


@dataclass(frozen=True)
class SiteView:
    name: str
    devices: int
    devices_down: int
    subscribers: int | None
    state: EntityState


@dataclass(frozen=True)
class Noise:
    """How much the correlation saved: alerts raised against incidents opened."""

    alerts_raised: int = 0
    alerts_suppressed: int = 0  # raised alerts explained by another alert's root cause
    incidents: int = 0  # incidents opened (reopens not counted twice)
    alerts_firing: int = 0

    @property
    def ratio(self) -> float | None:
        return self.alerts_raised / self.incidents if self.incidents else None


@dataclass(frozen=True)
class Snapshot:
    taken_at: float
    vantage: tuple[str, ...]  # devices the console host reaches the network through
    sites: tuple[SiteView, ...]
    devices: tuple[DeviceView, ...]
    links: tuple[LinkView, ...]
    incidents: tuple[IncidentView, ...]  # open and acked first, then recently closed
    alerts: tuple[AlertView, ...]  # firing alerts
    polls_total: int = 0
    polls_failed: int = 0
    noise: Noise = field(default_factory=lambda: Noise())

    def severity_counts(self) -> dict[str, int]:
        counts = {s: 0 for s in SEVERITY_ORDER}
        for inc in self.incidents:
            if inc.status != "closed":
                counts[inc.severity] += 1
        return counts

    def incident(self, incident_id: str) -> IncidentView | None:
        return next((i for i in self.incidents if i.id == incident_id), None)


@dataclass(frozen=True)
class DeliveryView:
    """One queued event for one target (an outbox row) and its last attempt."""

    event_id: str
    target: str
    incident_id: str
    event_type: str
    sequence: int
    status: Literal["pending", "delivered", "dead"]
    attempts: int
    created_at: float
    next_attempt_at: float | None  # pending only
    finished_at: float | None
    last_error: str | None
    superseded: bool = False
    last_http_status: int | None = None
    last_latency_s: float | None = None


@dataclass(frozen=True)
class AttemptView:
    """One delivery attempt (a ``deliveries`` row)."""

    delivery_id: str
    event_id: str
    target: str
    attempt: int
    attempted_at: float
    http_status: int | None
    outcome: str  # delivered | retry | permanent
    error: str | None
    latency_s: float | None
    event_type: str | None = None
    incident_id: str | None = None


@dataclass(frozen=True)
class EndpointView:
    """A target's circuit breaker: closed (normal), open (paused, probing later), half-open (probing)."""

    name: str
    state: str
    failures: int  # failed attempts in a row
    opened_at: float | None
    probe_at: float | None
    last_error: str | None
    pending: int = 0
    dead: int = 0


@dataclass(frozen=True)
class DeliveryReport:
    taken_at: float
    endpoints: tuple[EndpointView, ...]
    dead: tuple[DeliveryView, ...]  # newest first
    recent: tuple[AttemptView, ...]  # newest first
    live: bool = True  # breaker states are the running engine's (False: last recorded ones)


@dataclass(frozen=True)
class EngineEvent:
    kind: str  # "incident.opened", "incident.updated", "incident.acked", "incident.closed",
    #            "alert.fired", "alert.resolved", "delivery.failed", "delivery.dead", "engine.error"
    at: float
    summary: str
    incident_id: str | None = None


class EngineAPI(Protocol):
    """What a front-end may do with a running engine."""

    def snapshot(self) -> Snapshot:
        """A consistent copy of current state; cheap, never touches the disk."""
        ...

    def subscribe(self, callback: Callable[[EngineEvent], None]) -> Callable[[], None]:
        """Call ``callback`` (on the engine's thread) for every event; returns an unsubscribe."""
        ...

    def acknowledge(self, incident_id: str, actor: str) -> Future[IncidentView]:
        ...

    def close(self, incident_id: str, actor: str, note: str = "") -> Future[IncidentView]:
        """Close by hand; it stays closed (not paged again) while its root keeps failing."""
        ...

    def delivery_report(self, limit: int = 200) -> Future[DeliveryReport]:
        """Dead letters, recent attempts and each target's breaker (read off the loop)."""
        ...

    def resend(self, event_id: str, actor: str) -> Future[bool]:
        """Queue a dead or delivered event again (audited); True when it is superseded."""
        ...

    def resend_all_dead(self, actor: str) -> Future[list[str]]:
        """Queue every dead event again, oldest first (each audited); the event ids queued."""
        ...
