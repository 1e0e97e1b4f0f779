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
from typing import Any, Literal, Protocol

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
    assigned_to: str | None = None  # who works on it (EngineAPI.assign); assigning notifies nobody

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
    answered_at: float | None = None  # the newest poll that answered; version, uptime and CPU are its figures

    @property
    def stale(self) -> bool:
        """Polled since it last answered: version, uptime and CPU are the last known, not the present."""
        return self.answered_at is not None and self.last_poll_at is not None and self.last_poll_at > self.answered_at


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
    maintenance: str | None = None  # the name of a maintenance window in force over one of its devices


@dataclass(frozen=True)
class ServiceView:
    """A configured service: its state from what it depends on (engine/home_status.py)."""

    name: str
    state: EntityState  # down: everything it depends on is down; degraded: some of it
    depends_on: int  # how many entities it names
    down: int  # of them, down
    subscribers: int | None = None
    category: str | None = None
    maintenance: str | None = None  # a window in force over one of its devices


@dataclass(frozen=True)
class CollectorView:
    """What polls: this host's poller ("local") or a remote collector, and how well it keeps up."""

    name: str
    kind: Literal["local", "remote"]
    state: EntityState  # remote: down when its heartbeats stopped
    devices: int
    last_poll_at: float | None = None  # local: the newest poll's start; remote: its last heartbeat
    failing: int = 0  # devices whose last poll failed
    lag_s: float | None = None  # local: how far the most overdue answering device is past its interval
    storm: bool = False  # local: many devices stopped answering at once; every poll starts with a check


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
    config_changes: tuple[ConfigChangeView, ...] = ()  # newest first, the last few detected
    services: tuple[ServiceView, ...] = ()
    collectors: tuple[CollectorView, ...] = ()

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
class AuditEntryView:
    """One entry of the hash-chained audit log (engine/audit_log.py)."""

    seq: int
    ts: float
    actor: str
    action: str
    target: str | None
    detail: str | None


@dataclass(frozen=True)
class HardeningFindingView:
    """One RouterOS hardening finding (engine/hardening.py)."""

    device: str
    severity: Literal["high", "medium", "low"]
    check: str
    detail: str


@dataclass(frozen=True)
class DeliveryReport:
    taken_at: float
    endpoints: tuple[EndpointView, ...]
    dead: tuple[DeliveryView, ...]  # newest first
    recent: tuple[AttemptView, ...]  # newest first
    live: bool = True  # breaker states are the running engine's (False: last recorded ones)


ChangeStatus = Literal["planned", "in-progress", "completed", "canceled"]
CHANGE_STATUSES: tuple[ChangeStatus, ...] = ("planned", "in-progress", "completed", "canceled")
CONFIG_CATEGORIES: tuple[str, ...] = ("bgp", "ospf", "interfaces", "addressing", "firewall", "system")


@dataclass(frozen=True)
class Scope:
    """What planned work or a change touches; a device is in scope if it is named, at a named site, carries a
    named tag, or is something a named service depends on."""

    sites: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    services: tuple[str, ...] = ()

    def empty(self) -> bool:
        return not (self.sites or self.devices or self.tags or self.services)


@dataclass(frozen=True)
class ChangeRecordView:
    """A change in the calendar: planned work with an owner, whatever it is called in the NOC."""

    id: str  # "CHG-1", "CHG-2", ...
    title: str
    description: str
    starts_at: float
    ends_at: float
    scope: Scope
    owner: str
    status: ChangeStatus
    created_at: float
    created_by: str
    updated_at: float
    incidents: tuple[str, ...] = ()  # incidents that began during it, in its scope


@dataclass(frozen=True)
class MaintenanceView:
    """A maintenance window, from the config file (read-only at run time) or made at run time."""

    id: str  # "MW-1", ... for run-time windows; "config:<name>" for the config file's
    name: str
    scope: Scope
    starts_at: float | None  # one-off
    ends_at: float | None
    weekly: tuple[str, ...]  # recurring: "Tue 02:00-04:00"
    timezone: str
    source: Literal["config", "calendar"]
    status: Literal["active", "canceled"]
    note: str = ""
    created_by: str | None = None
    active_now: bool = False


@dataclass(frozen=True)
class ConfigChangeView:
    """One detected configuration change: a category of a device whose fingerprint moved."""

    device: str
    category: str
    detected_at: float
    version: int  # the new version's number
    old_hash: str | None  # None: the first fingerprint of that category
    new_hash: str
    summary: str  # "bgp: connection TRANSIT1 remote.as 64500 -> 64501"
    since: float | None = None  # the last fingerprint that did not see it: the change happened after this


@dataclass(frozen=True)
class InterfaceRow:
    """One interface as the device's last poll saw it; counters are totals since the device's boot."""

    name: str
    admin_up: bool | None
    oper_up: bool | None
    speed_bps: int | None
    rx_bytes: int | None
    tx_bytes: int | None
    rx_errors: int | None
    tx_errors: int | None
    rx_discards: int | None = None
    tx_discards: int | None = None
    comment: str | None = None


@dataclass(frozen=True)
class SensorRow:
    name: str
    value: float | None
    unit: str | None = None
    state: str | None = None  # "ok" / "fail" for state-only sensors


@dataclass(frozen=True)
class BgpRow:
    name: str
    remote_address: str | None
    remote_as: int | None
    state: str
    established: bool
    uptime_s: float | None = None
    prefixes: int | None = None
    disabled: bool = False


@dataclass(frozen=True)
class OspfRow:
    router_id: str
    address: str | None
    interface: str | None
    state: str
    full: bool


@dataclass(frozen=True)
class DeviceDetail:
    """One device from the engine's memory: its last poll's figures and its recent config changes.

    ``bgp``/``ospf``/``sensors`` None: not collected (or stale) in the last poll, as opposed to none there.
    ``sampled_at`` is when that poll started; two details with different ones give interface rates.
    """

    device: DeviceView
    sampled_at: float | None = None
    # Set while the device does not answer: the figures below are the last answer's (at sampled_at), kept
    # and flagged, not dropped; ``errors`` say why the polls since silent_since failed.
    silent_since: float | None = None
    collectors: tuple[str, ...] = ()  # those whose last poll answered, the one shown first
    errors: tuple[str, ...] = ()  # "snmp: timeout", per collector that failed
    stale: tuple[str, ...] = ()  # "bgp: no such menu": families that failed while the device answered
    identity: str | None = None
    board: str | None = None
    firmware: str | None = None  # RouterBOARD current-firmware
    firmware_upgrade: str | None = None  # the firmware the installed RouterOS carries
    descr: str | None = None
    total_memory: int | None = None
    free_memory: int | None = None
    route_count: int | None = None
    interfaces: tuple[InterfaceRow, ...] = ()
    sensors: tuple[SensorRow, ...] | None = None
    bgp: tuple[BgpRow, ...] | None = None
    ospf: tuple[OspfRow, ...] | None = None
    config_changes: tuple[ConfigChangeView, ...] = ()  # newest first
    wireless: tuple[WirelessClientRow, ...] | None = None  # None: not collected (no wireless, or stale)
    optics: tuple[OpticRow, ...] | None = None  # SFP cages; None: not collected (no such menu, or stale)
    lte: tuple[LteRow, ...] | None = None  # LTE interfaces; None: not collected (none, or stale)
    dhcp: tuple[DhcpRow, ...] | None = None  # DHCP servers; None: not collected (or stale)


@dataclass(frozen=True)
class DhcpRow:
    """A DHCP server's lease counts and its pool's use, as the last poll counted them."""

    name: str
    interface: str | None = None
    leases: int | None = None
    bound: int | None = None
    pool: str | None = None
    pool_size: int | None = None
    pool_used: int | None = None

    @property
    def pool_used_pct(self) -> float | None:
        if not self.pool_size or self.pool_used is None:
            return None
        return 100.0 * self.pool_used / self.pool_size


@dataclass(frozen=True)
class LteRow:
    """An LTE interface's radio link, as the last poll read it (see collectors' LteSignal)."""

    interface: str
    rssi_dbm: float | None = None
    rsrp_dbm: float | None = None
    rsrq_db: float | None = None
    sinr_db: float | None = None
    cell_id: str | None = None
    technology: str | None = None


@dataclass(frozen=True)
class OpticRow:
    """An SFP cage and its module's diagnostics, as the last poll read them (see collectors' OpticalModule)."""

    interface: str
    present: bool
    rx_loss: bool | None = None
    tx_fault: bool | None = None
    rx_power_dbm: float | None = None
    tx_power_dbm: float | None = None
    temperature_c: float | None = None
    supply_v: float | None = None
    tx_bias_ma: float | None = None
    wavelength_nm: float | None = None
    vendor: str | None = None
    part_number: str | None = None


@dataclass(frozen=True)
class WirelessClientRow:
    """A station registered to one of the device's wireless interfaces, as its last poll saw it."""

    mac: str
    interface: str | None
    signal_dbm: float | None = None
    tx_rate_bps: int | None = None
    rx_rate_bps: int | None = None
    uptime_s: float | None = None
    ssid: str | None = None


@dataclass(frozen=True)
class InterfaceHistory:
    """One interface's average rates per bucket: (bucket start, bits per second), oldest first."""

    name: str
    rx_bps: tuple[tuple[float, float], ...] = ()
    tx_bps: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class DeviceHistory:
    """A device's series over a window, from the rollups and the raw samples not rolled up yet.

    Each point is (bucket start, the average of the values in it); a bucket without values has no
    point. At most ~120 points per series.
    """

    device: str
    since: float
    until: float
    bucket_s: int
    interfaces: tuple[InterfaceHistory, ...] = ()
    cpu_load: tuple[tuple[float, float], ...] = ()  # percent
    free_memory: tuple[tuple[float, float], ...] = ()  # bytes
    total_memory: int | None = None


TIMELINE_KINDS: tuple[str, ...] = (
    "alert.fired", "alert.resolved", "incident.opened", "incident.updated", "incident.acked", "incident.closed",
    "incident.reopened", "note", "assigned", "config.changed", "maintenance", "notification")


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened to an incident or around it (engine/incident_timeline.py)."""

    at: float
    kind: str  # one of TIMELINE_KINDS
    summary: str
    actor: str | None = None  # who (an ack, a note, an assignment, a hand close; a change record's owner)
    status: str | None = None  # notification: delivered | pending | failed (retrying) | dead


@dataclass(frozen=True)
class EngineEvent:
    kind: str  # "incident.opened", "incident.updated", "incident.acked", "incident.closed",
    #            "alert.fired", "alert.resolved", "delivery.failed", "delivery.dead", "engine.error",
    #            "config.changed.detected", "maintenance.changed", "change.changed",
    #            "incident.noted", "incident.assigned" (no notification: front-ends refresh the incident)
    at: float
    summary: str
    incident_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)  # what the kind carries besides (config.changed.detected:
    #                                                     device, category, version, old_hash, new_hash)


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

    # The change calendar and maintenance windows (engine/calendar.py). ``fields`` are the CLI's and the
    # console's form fields (title, description, starts_at, ends_at, duration_s, scope, owner, status; name,
    # weekly, timezone, note). Times are epoch seconds, "now" (the engine's clock) or RFC 3339 with an offset;
    # a bad value fails the future with ValueError naming the field. Every action is audited.
    def maintenance_list(self) -> Future[list[MaintenanceView]]:
        """Every window: the config file's and the run-time ones, canceled included."""
        ...

    def maintenance_add(self, fields: dict[str, Any], actor: str) -> Future[MaintenanceView]:
        ...

    def maintenance_edit(self, window_id: str, fields: dict[str, Any], actor: str) -> Future[MaintenanceView]:
        ...

    def maintenance_cancel(self, window_id: str, actor: str) -> Future[MaintenanceView]:
        ...

    def changes_list(self) -> Future[list[ChangeRecordView]]:
        ...

    def change_add(self, fields: dict[str, Any], actor: str) -> Future[ChangeRecordView]:
        ...

    def change_edit(self, change_id: str, fields: dict[str, Any], actor: str) -> Future[ChangeRecordView]:
        ...

    def change_cancel(self, change_id: str, actor: str) -> Future[ChangeRecordView]:
        ...

    def device_detail(self, name: str) -> Future[DeviceDetail]:
        """One device's last poll from memory (never the disk); an unknown name fails with KeyError."""
        ...

    # Detected configuration changes (engine/config_watch.py).
    def config_changes(self, device: str | None = None, limit: int = 200) -> Future[list[ConfigChangeView]]:
        """Newest first."""
        ...

    def config_diff(self, device: str, category: str, old_version: int | None = None,
                    new_version: int | None = None) -> Future[list[str]]:
        """A readable diff between two stored versions (default: the last two)."""
        ...

    def capture_config(self, device: str | None = None, actor: str = "engine") -> Future[int]:
        """Fingerprint now (one device or all) instead of waiting for the schedule; changes detected."""
        ...

    def device_history(self, name: str, hours: float = 6.0,
                       interfaces: tuple[str, ...] = ()) -> Future[DeviceHistory]:
        """Interface rx/tx, CPU and memory over the last ``hours`` (all interfaces when none are named),
        read off the loop; an unknown name fails with KeyError, a bad ``hours`` with ValueError."""
        ...

    def run_diagnostic(self, device: str, kind: str, target: str, actor: str, count: int = 5) -> Future[str]:
        """Ping or traceroute (``kind``) from ``device`` to ``target`` (an address or host name), run on the
        engine's loop: the run id at once, then ``diagnostic.output`` events (data: run_id, device, kind,
        target, line, done, error; the last has done=True and the summary). At most 4 at once (a fifth fails
        with RuntimeError); an unknown device fails with KeyError, one without an API credential or a bad
        target or count (1..20) with ValueError. Audited (actor, device, target, result)."""
        ...

    # One incident in detail (engine/incident_timeline.py, engine/incident_assign.py).
    def incident_timeline(self, incident_id: str) -> Future[tuple[TimelineEntry, ...]]:
        """Its alerts, transitions, notes, assignments, config changes on its root devices, maintenance windows
        covering it and notifications with their delivery status, oldest first (the newest 500); read off the
        loop. An unknown id fails with KeyError."""
        ...

    def add_note(self, incident_id: str, text: str, actor: str) -> Future[None]:
        """A note in its timeline (audited; notifies nobody). Blank or over-long text fails with ValueError."""
        ...

    def assign(self, incident_id: str, assignee: str, actor: str) -> Future[IncidentView]:
        """Assign an open incident to ``assignee`` (kept on it, in its timeline, audited; notifies nobody)."""
        ...

    def incident_runbooks(self, incident_id: str) -> Future[list[str]]:
        """The http(s) runbook links of its root-cause alerts' rules, first root first, without repeats."""
        ...

    def audit_entries(self, limit: int = 100) -> Future[list[AuditEntryView]]:
        """The newest entries of the audit log, newest first."""
        ...

    def hardening_findings(self) -> Future[list[HardeningFindingView]]:
        """RouterOS hardening findings over the fleet, worst first (ispvm audit routers)."""
        ...
