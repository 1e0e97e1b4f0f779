"""The inventory and settings file (config.toml), validated with pydantic.

Every problem is reported as ``FILE:LINE: field: message`` (see
tomlsource.py), and ``load_config`` reports all of them at once, so an
engineer fixes a broken file in one pass. Secrets never live here: fields
ending in ``_secret`` name an entry in the secret store (keyring or the
encrypted file), see secrets.py.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Collection
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ispvm_tui.engine.rulepack import RuleOverride
from ispvm_tui.tomlsource import Problem, SourceError, TomlSource, read_toml, validate

if TYPE_CHECKING:
    from ispvm_tui.engine.rulepack import RuleSet

Role = Literal["core", "edge", "aggregation", "access", "cpe"]

_HOST_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Settings(Strict):
    database: str = "ispvm.duckdb"  # relative paths are relative to the config file
    base_url: str = "http://localhost:8080"  # deep links in notifications: BASE/incidents/<id>
    timezone: str = "UTC"  # an IANA name (Europe/Riga): routes' hours are read in it
    audit_secret_reads: bool = False  # an audit entry (secret.read) each time the engine reads a secret

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (an IANA name such as 'UTC' or 'Europe/Riga')") from None
        return v


class Tenant(Strict):
    id: UUID
    name: str | None = None


class Polling(Strict):
    interval_s: float = Field(60.0, gt=0)
    timeout_s: float = Field(5.0, gt=0)
    concurrency: int = Field(64, ge=1, le=4096)
    # SNMP replies are decoded on the poller's one core: past ~16 polls in flight replies wait in the
    # socket while others decode, and time out for no fault of the router.
    snmp_concurrency: int = Field(16, ge=1, le=4096)
    # How late, as a fraction of the interval, a poll may start (queued behind others) and still be on time:
    # the correlator's "same poll round" window and the benchmarks' expected poll counts allow for it.
    jitter: float = Field(0.1, ge=0, le=0.5)
    backoff_max_s: float = Field(600.0, gt=0)  # unreachable routers are retried at most this far apart
    # A device that just failed, or is behind something that did, is first asked "anyone there?" with this
    # short timeout, in a pool of its own: dead routers then cost seconds, not poll slots (0 turns it off).
    check_timeout_s: float = Field(2.0, ge=0)
    check_concurrency: int = Field(512, ge=1, le=8192)


class RulesConfig(Strict):
    """Which rule packs run, extra rule files, and overrides per site, device or tag.

    Rules themselves are data (see ``ispvm_tui/rules/*.toml`` and docs/rules.md).
    """

    packs: list[str] = ["availability", "capacity", "health"]
    files: list[str] = []  # extra rule files; relative paths are relative to the config file
    overrides: list[RuleOverride] = []
    uplink_comment: str = r"(?i)\b(uplink|upstream|transit|backhaul|core)\b"  # ports whose comment matches are watched


class Incidents(Strict):
    close_after_s: float = Field(120.0, ge=0)  # recovery must hold this long before an incident closes
    correlate_every_s: float = Field(5.0, gt=0)
    update_every_s: float = Field(60.0, ge=0)  # at most one incident.updated per incident this often
    # While a device near a failure has not been re-polled (or its own alert is still pending), the
    # decision waits, so timing never picks the root cause; never longer than this.
    settle_max_s: float = Field(120.0, ge=0)
    # However the news keeps coming (a flapping link, a storm still spreading), one problem waits at most
    # this long in all: then its incident opens on what is known and is updated as the rest answers.
    hold_max_s: float = Field(45.0, ge=0)
    reopen_window_s: float = Field(900.0, ge=0)  # the same root failing again this soon reopens its incident


class ConfigWatch(Strict):
    """Configuration fingerprints (docs/architecture.md, "Config changes"): what is read, how often, and how
    far back a detected change counts towards an incident's root cause."""

    enabled: bool = True
    interval_s: float = Field(900.0, ge=5)  # each device's fingerprint is taken this often (after a poll)
    concurrency: int = Field(8, ge=1, le=256)  # config reads at once, beside the polls
    # A change detected on a root-cause device up to this long before an incident began makes it
    # `change_related = "possible"`, with the change as evidence.
    lookback_s: float = Field(1800.0, ge=0)
    # When a fault starts, its answering devices are fingerprinted at once: a change made two minutes before
    # an outage is added to its incident within seconds instead of at the next scheduled read.
    read_on_fault: bool = True


class Retention(Strict):
    """How long each table keeps its rows, and how often maintenance runs.

    Every ``run_every_s`` the engine first rolls raw samples up into 5-minute and hourly
    summaries, then deletes rows older than their table's retention: raw samples can be
    short-lived because the rollups keep the long-term picture. Event tables only lose
    finished rows: an open incident, a firing alert or an undelivered webhook is kept
    whatever its age. The ``*_days`` fields set a group of tables; ``days`` overrides
    single tables by name.
    """

    samples_days: int = Field(14, ge=1)  # raw poll samples
    poll_log_days: int = Field(7, ge=1)  # one row per poll and collector: high volume, short-lived value
    rollup_5m_days: int = Field(90, ge=1)  # 5-minute summaries: a quarter at full daily detail
    rollup_1h_days: int = Field(730, ge=1)  # hourly summaries: two years of capacity trends
    events_days: int = Field(365, ge=1)  # alerts, incidents, webhook outbox and deliveries, audit
    days: dict[str, int] = {}  # per-table overrides, e.g. {audit = 1095}
    run_every_s: float = Field(300.0, gt=0)  # rollup + retention interval; one 5-minute bucket

    @staticmethod
    def groups() -> dict[str, tuple[str, ...]]:
        """Which tables each ``*_days`` field governs."""
        return {
            "samples_days": ("interface_samples", "health_samples", "bgp_samples", "ospf_samples",
                             "sensor_samples", "probe_samples", "neighbor_samples", "config_checks"),
            "poll_log_days": ("poll_log",),
            "rollup_5m_days": ("interface_rollup_5m", "health_rollup_5m", "probe_rollup_5m"),
            "rollup_1h_days": ("interface_rollup_1h", "health_rollup_1h", "probe_rollup_1h"),
            "events_days": ("alerts", "incidents", "incident_events", "outbox", "deliveries", "audit", "events",
                            "config_versions"),
        }

    @classmethod
    def tables(cls) -> tuple[str, ...]:
        return tuple(table for tables in cls.groups().values() for table in tables)

    @field_validator("days")
    @classmethod
    def _known_tables(cls, v: dict[str, int]) -> dict[str, int]:
        unknown = [name for name in v if name not in cls.tables()]
        if unknown:
            names = ", ".join(repr(name) for name in unknown)
            raise ValueError(f"unknown table {names}; tables with a retention: {', '.join(cls.tables())}")
        too_short = [name for name, days in v.items() if days < 1]
        if too_short:
            raise ValueError(f"{', '.join(too_short)}: retention must be at least 1 day")
        return v

    def days_for(self, table: str) -> int:
        """Retention of one table in days: its override, else its group's setting."""
        if table in self.days:
            return self.days[table]
        for field, tables in self.groups().items():
            if table in tables:
                return getattr(self, field)
        raise KeyError(f"no retention for table {table!r}")


class ConsoleLocation(Strict):
    # Devices through which the monitoring host reaches the network: where root-cause analysis starts.
    attach: list[str] = Field(min_length=1)
    # A group whose members may attach consoles and use the CLI on the running engine (socket mode 0660).
    control_group: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")


class Site(Strict):
    name: str = Field(min_length=1)
    region: str | None = None  # groups sites for routing and ticket assignment
    subscribers: int | None = Field(None, ge=0)
    description: str = ""


class Credential(Strict):
    username: str = Field(min_length=1)
    password_secret: str = Field(min_length=1)


class SnmpProfile(Strict):
    version: Literal["2c", "3"] = "2c"
    port: int = Field(161, ge=1, le=65535)
    community_secret: str | None = None
    v3_user: str | None = None
    v3_auth_proto: Literal["SHA", "SHA256", "SHA512", "MD5"] = "SHA"
    v3_auth_secret: str | None = None
    v3_priv_proto: Literal["AES", "AES256", "DES"] = "AES"
    v3_priv_secret: str | None = None
    timeout_s: float = Field(2.0, gt=0)
    retries: int = Field(1, ge=0, le=5)


class Device(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    site: str
    role: Role
    vendor: Literal["mikrotik", "other"] = "mikrotik"
    address: str
    api_port: int = Field(8728, ge=1, le=65535)
    api_tls: bool = False
    api_tls_verify: bool = True
    credential: str | None = None  # a [credentials.NAME]; enables RouterOS API polling
    snmp: str | None = None  # a [snmp.NAME] profile; enables SNMP polling
    snmp_port: int | None = Field(None, ge=1, le=65535)  # overrides the profile's port
    tags: list[str] = []
    subscribers: int | None = Field(None, ge=0)  # subscribers served directly by this device
    interval_s: float | None = Field(None, gt=0)  # overrides [polling].interval_s for this device
    watch_interfaces: list[str] = []  # ports alerted on besides link ends and uplinks (globs: "sfp*")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            labels = v.rstrip(".").split(".")
            if all(label.isdigit() for label in labels):
                # 999.1.2.3 or 10.300.1.1 would otherwise pass as a host name (and 010.1.1.1 is
                # octal to some resolvers): all-numeric is meant as an IPv4 address, so it must be one.
                raise ValueError(f"{v!r} is not an IPv4 address (four numbers 0-255, no leading zeros)") from None
            if len(v) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
                raise ValueError("must be an IP address or host name") from None
        return v


class Link(Strict):
    a: str = Field(pattern=r"^[^:\s]+:\S+$", description="DEVICE:interface")
    b: str = Field(pattern=r"^[^:\s]+:\S+$")
    speed_mbps: int | None = Field(None, gt=0)

    @property
    def id(self) -> str:
        return link_id(self.a, self.b)


class BgpPeer(Strict):
    device: str
    name: str  # as configured on the router (v6 peer name / v7 connection name)
    remote_as: int | None = None
    remote_address: str | None = None
    provider: str | None = None  # labels incidents, e.g. the transit provider

    @property
    def id(self) -> str:
        return f"{self.device}:{self.name}"


class Probe(Strict):
    """Ping run from a router (RouterOS API /ping) to a target: loss, latency, jitter."""

    device: str
    target: str  # IP address
    name: str | None = None  # shown in evidence; defaults to the target
    count: int = Field(5, ge=1, le=100)
    size: int = Field(64, ge=28, le=1500)
    loss_alert_pct: float = Field(50.0, gt=0, le=100)

    @property
    def id(self) -> str:
        return f"{self.device}>{self.target}"


class Service(Strict):
    name: str
    depends_on: list[str] = Field(min_length=1)  # entity ids: devices, links, BGP peers, sites
    subscribers: int | None = Field(None, ge=0)
    category: str | None = None  # e.g. "transit": becomes an incident label
    sla_target_pct: float | None = Field(None, gt=0, le=100)  # its own SLA target ([reports] has the default)


class Metrics(Strict):
    """Prometheus /metrics for the engine itself (docs/service.md); off unless enabled."""

    enabled: bool = False
    address: str = "127.0.0.1"  # loopback by default: device, site and target names are in the labels
    port: int = Field(9464, ge=0, le=65535)  # 0: any free port (tests)


class Roles(Strict):
    """Who may do what through the control socket (engine/roles.py). Entries: a user name ("alice" or
    "user:alice") or "group:NAME". Unset: everyone the socket admits is admin."""

    viewers: list[str] = []  # read: lists, consoles (read-only), reports, the audit log
    operators: list[str] = []  # and act: acknowledge, close, note, assign, the calendar, resends, diagnostics
    admins: list[str] = []  # and the database (backups)

    @field_validator("viewers", "operators", "admins")
    @classmethod
    def _entries(cls, v: list[str]) -> list[str]:
        for entry in v:
            kind, sep, name = entry.rpartition(":")
            if not name or (sep and kind not in ("user", "group")):
                raise ValueError(f"{entry!r}: a user name, user:NAME or group:NAME")
        return v


class InboundSource(Strict):
    """One system allowed to send alerts in (docs/inbound.md): POST /inbound/NAME."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    kind: Literal["alertmanager", "zabbix", "json"]
    api_key_secret: str  # Authorization: Bearer <key>
    hmac_secret: str  # X-Ispvm-Signature: sha256=HMAC(key, "<X-Ispvm-Timestamp>." + body)
    rate_per_s: float = Field(5.0, gt=0, le=1000)  # accepted requests a second, sustained ...
    burst: int = Field(20, ge=1, le=10_000)  # ... and at once


class Inbound(Strict):
    """An HTTP endpoint for alerts from other systems; they go through the same rules and correlation."""

    enabled: bool = False
    address: str = "127.0.0.1"
    port: int = Field(9465, ge=0, le=65535)  # 0: any free port (tests)
    max_body_bytes: int = Field(262_144, ge=1024, le=16 * 1024 * 1024)
    max_alerts: int = Field(500, ge=1, le=10_000)  # in one request
    max_age_s: float = Field(300.0, ge=10, le=3600)  # a request's timestamp older (or newer) than this is refused
    sources: list[InboundSource] = []

    @model_validator(mode="after")
    def _unique(self) -> Inbound:
        names = [s.name for s in self.sources]
        if len(names) != len(set(names)):
            raise ValueError("sources: two share a name")
        return self


class Reports(Strict):
    """What ``ispvm report`` measures against."""

    sla_target_pct: float = Field(99.9, gt=0, le=100)  # availability target of devices, sites and services
    capacity_threshold_pct: float = Field(80.0, gt=0, le=100)  # a link's daily p95 utilisation worth warning of
    capacity_days: int = Field(28, ge=7, le=730)  # days of daily p95s the trend is fitted to


NotifyEvent = Literal["incident.opened", "incident.updated", "incident.acked", "incident.closed"]
NOTIFY_EVENTS: list[NotifyEvent] = ["incident.opened", "incident.updated", "incident.acked", "incident.closed"]
SeverityName = Literal["critical", "major", "minor", "warning", "info"]
_TARGET_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_HTTP_URL = r"^https?://[^\s]+$"


class Route(Strict):
    """Which incidents a target is sent (docs/notifications.md, "Routing"). Every field that is set must
    match; an empty field matches anything. Once a target got an event of an incident it gets the rest of
    that incident's events whatever the route says now, so a ticket opened in office hours is closed at
    night too."""

    severities: list[SeverityName] = []
    sites: list[str] = []  # any affected site
    regions: list[str] = []  # any affected site's [[sites]].region
    services: list[str] = []  # any affected service
    labels: dict[str, str] = {}  # incident labels, each pair equal
    # Time of day in [ispvm].timezone: "Mon-Fri 08:00-18:00", "Sat,Sun 00:00-24:00", "22:00-06:00" (every day).
    hours: list[str] = []
    # Escalation: only incidents still open and unacknowledged this long; they are sent when they reach it.
    unacked_for_s: float = Field(0.0, ge=0)

    @field_validator("hours")
    @classmethod
    def _hours_parse(cls, v: list[str]) -> list[str]:
        from ispvm_tui.engine.notify.routing import parse_hours  # one parser for config and engine

        for spec in v:
            parse_hours(spec)  # ValueError names what is wrong
        return v


class TargetBase(Strict):
    """What every notification target has: the outbox's retry policy and the route."""

    name: str = Field(pattern=_TARGET_NAME)
    events: list[NotifyEvent] = NOTIFY_EVENTS
    timeout_s: float = Field(10.0, gt=0, le=120)
    # 0: no limit by count; an event is retried (backoff capped at 10 min) until it is max_age_s old.
    max_attempts: int = Field(0, ge=0, le=1000)
    max_age_s: float = Field(86400.0, ge=60, le=30 * 86400)
    route: Route = Route()

    def secret_refs(self) -> list[str]:
        """Secret-store names this target reads (never values)."""
        return []


class Webhook(TargetBase):
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None  # secret-store entry holding the HMAC key
    # Secret-store names of keys being rotated out: they still sign the V2 header (docs/webhooks.md).
    previous_secrets: list[str] = []
    timeout_s: float = Field(5.0, gt=0, le=120)

    def secret_refs(self) -> list[str]:
        return ([self.secret] if self.secret else []) + list(self.previous_secrets)


class JiraConfig(TargetBase):
    """Jira Cloud REST v3: an issue per incident, comments on updates, a transition on close."""

    url: str = Field(pattern=_HTTP_URL)  # https://SITE.atlassian.net
    email: str | None = None  # with token_secret: Basic email:token; absent: the token is an OAuth bearer
    token_secret: str = Field(min_length=1)
    project: str = Field(min_length=1)  # project key, e.g. NOC
    issue_type: str = "Task"
    priorities: dict[SeverityName, str] = {
        "critical": "Highest", "major": "High", "minor": "Medium", "warning": "Low", "info": "Lowest"}
    labels: list[str] = []  # besides "ispvm", "ispvm-<incident id>" and the incident's site/provider tags
    close_transition: str | None = None  # e.g. "Done": looked up by name when the incident closes
    reopen_transition: str | None = None  # e.g. "Reopen": looked up by name when a closed incident fails again

    def secret_refs(self) -> list[str]:
        return [self.token_secret]


class ServiceNowAssignment(Strict):
    """First rule whose every set field matches the incident's tags picks the assignment group."""

    group: str = Field(min_length=1)
    sites: list[str] = []
    regions: list[str] = []
    providers: list[str] = []
    roles: list[str] = []  # roles of the affected devices: core, edge, aggregation, access, cpe


class ServiceNowConfig(TargetBase):
    """ServiceNow Table API: an incident record per incident, work notes on updates, resolved on close."""

    url: str = Field(pattern=_HTTP_URL)  # https://INSTANCE.service-now.com
    auth: Literal["basic", "bearer", "apikey"] = "basic"
    user: str | None = None  # basic auth user name; the password is `secret`
    secret: str = Field(min_length=1)  # secret-store name: password, bearer token or x-sn-apikey value
    assignment: list[ServiceNowAssignment] = []
    default_group: str | None = None  # when no assignment rule matches
    caller_id: str | None = None
    close_code: str = "Solved Remotely (Permanently)"

    def secret_refs(self) -> list[str]:
        return [self.secret]

    @model_validator(mode="after")
    def _basic_needs_user(self) -> ServiceNowConfig:
        if self.auth == "basic" and not self.user:
            raise ValueError("auth = 'basic' needs `user` (the password is the secret)")
        return self


class TelegramConfig(TargetBase):
    token_secret: str = Field(min_length=1)  # the bot token: it is part of the URL path, so it is never logged
    chat_id: int | str  # numeric id or "@channelname"
    message_thread_id: int | None = None  # a forum topic
    api_url: str = Field("https://api.telegram.org", pattern=_HTTP_URL)
    quiet_severities: list[SeverityName] = ["warning", "info"]  # sent with disable_notification

    def secret_refs(self) -> list[str]:
        return [self.token_secret]


class SlackConfig(TargetBase):
    url_secret: str = Field(min_length=1)  # the incoming-webhook URL is the secret: it lives in the store

    def secret_refs(self) -> list[str]:
        return [self.url_secret]


class EmailConfig(TargetBase):
    """SMTP, one thread per incident (Message-ID / In-Reply-To / References)."""

    host: str = Field(min_length=1)
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    user: str | None = None
    password_secret: str | None = None
    ca_file: str | None = None  # PEM bundle to trust instead of the system's (a private relay); relative to the file
    sender: str = Field(min_length=3)
    recipients: list[str] = Field(min_length=1)

    def secret_refs(self) -> list[str]:
        return [self.password_secret] if self.password_secret else []

    @model_validator(mode="after")
    def _user_and_password(self) -> EmailConfig:
        if bool(self.user) != bool(self.password_secret):
            raise ValueError("`user` and `password_secret` go together (SMTP AUTH)")
        if self.user and self.security == "none":
            raise ValueError("SMTP AUTH without TLS would send the password in clear: set security to "
                             "'starttls' or 'tls'")
        return self


class MaintenanceWindow(Strict):
    """Planned work (docs/notifications.md, "Maintenance"): incidents whose every root cause is in
    scope while the window is active are stored and shown, marked with it, and notify nobody."""

    name: str = Field(min_length=1)
    sites: list[str] = []
    devices: list[str] = []
    tags: list[str] = []  # devices carrying any of these tags
    start: datetime | None = None  # one-off: RFC 3339 with an offset (TOML datetime)
    end: datetime | None = None
    weekly: list[str] = []  # recurring, same syntax as route hours: "Tue 02:00-04:00"
    timezone: str | None = None  # for `weekly`; default [ispvm].timezone

    @model_validator(mode="after")
    def _when(self) -> MaintenanceWindow:
        from ispvm_tui.engine.notify.routing import parse_hours

        if not (self.sites or self.devices or self.tags):
            raise ValueError("a maintenance window needs a scope: sites, devices or tags")
        if (self.start is None) != (self.end is None):
            raise ValueError("`start` and `end` go together")
        if self.start is None and not self.weekly:
            raise ValueError("a maintenance window needs `start` and `end`, or `weekly`")
        if self.start is not None and self.end is not None:
            if self.start.tzinfo is None or self.end.tzinfo is None:
                raise ValueError("`start` and `end` need a UTC offset (2026-12-08T02:00:00+01:00)")
            if self.end <= self.start:
                raise ValueError("`end` must be after `start`")
        for spec in self.weekly:
            parse_hours(spec)
        if self.timezone is not None:
            Settings(timezone=self.timezone)  # the same check as [ispvm].timezone
        return self


class Notify(Strict):
    webhooks: list[Webhook] = []
    jira: list[JiraConfig] = []
    servicenow: list[ServiceNowConfig] = []
    telegram: list[TelegramConfig] = []
    slack: list[SlackConfig] = []
    email: list[EmailConfig] = []

    def kinds(self) -> list[tuple[str, str, list[TargetBase]]]:
        """(kind, config key, targets) for every kind, in a fixed order."""
        return [("webhook", "webhooks", list(self.webhooks)), ("jira", "jira", list(self.jira)),
                ("servicenow", "servicenow", list(self.servicenow)), ("telegram", "telegram", list(self.telegram)),
                ("slack", "slack", list(self.slack)), ("email", "email", list(self.email))]

    def all(self) -> list[TargetBase]:
        return [t for _, _, targets in self.kinds() for t in targets]


class Remote(Strict):
    """NATS JetStream between remote collectors and the centre (docs/architecture.md, "Result stream").

    Credentials are secret-store names, as everywhere: ``password_secret`` (with ``user``) or
    ``nkey_seed_secret``. TLS is used when ``tls_ca`` is set or the URL is ``tls://``.
    """

    nats_url: str = Field("nats://127.0.0.1:4222", pattern=r"^(nats|tls)://[^\s/]+$")
    stream: str = Field("ISPVM", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    user: str | None = Field(None, min_length=1)
    password_secret: str | None = Field(None, min_length=1)
    nkey_seed_secret: str | None = Field(None, min_length=1)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    heartbeat_s: float = Field(5.0, ge=0.2, le=300)  # a collector unheard of for 3 of these is lost
    # Polls a collector keeps while the centre is out of reach; past it the oldest go, counted and logged.
    buffer_max_polls: int = Field(100_000, ge=10, le=10_000_000)
    # The result stream is a work queue (acked messages leave it), so these bound only what waits for the
    # engine: an engine outage, or a backlog. Past either the oldest go (docs/architecture.md, sizing).
    stream_max_age_s: float = Field(7 * 86400.0, ge=60)
    stream_max_bytes: int = Field(10 * 1024**3, ge=1024**2)

    @field_validator("nats_url")
    @classmethod
    def _no_credentials_in_url(cls, v: str) -> str:
        if "@" in v:  # the URL is logged; a password belongs in the secret store
            raise ValueError("no user or password in the URL: use user and password_secret (or nkey_seed_secret)")
        return v

    def for_collector(self, collector: CollectorDef) -> Remote:
        """The link as this collector makes it: its own NATS user when it has one."""
        if collector.user is None:
            return self
        return self.model_copy(update={"user": collector.user, "password_secret": collector.password_secret,
                                       "nkey_seed_secret": None})

    @model_validator(mode="after")
    def _auth(self) -> Remote:
        if (self.user is None) != (self.password_secret is None):
            raise ValueError("user and password_secret go together")
        if self.nkey_seed_secret is not None and self.user is not None:
            raise ValueError("use either user/password_secret or nkey_seed_secret, not both")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self


class CollectorDef(Strict):
    """A remote collector: polls the devices of its ``site`` and those named in ``devices``.

    ``user``/``password_secret``: its own NATS user, which the collector connects as instead of
    [remote]'s; ``ispvm nats-config`` prints the server's users with each one's permissions (publish
    only its own results and heartbeat, read only its own configuration key)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")  # a NATS subject token: no dots
    site: str | None = None
    devices: list[str] = []
    user: str | None = Field(None, pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    password_secret: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _auth(self) -> CollectorDef:
        if (self.user is None) != (self.password_secret is None):
            raise ValueError("user and password_secret go together")
        return self


class Config(Strict):
    ispvm: Settings = Settings()
    tenant: Tenant | None = None
    polling: Polling = Polling()
    rules: RulesConfig = RulesConfig()
    incidents: Incidents = Incidents()
    retention: Retention = Retention()
    config_watch: ConfigWatch = ConfigWatch()
    reports: Reports = Reports()
    metrics: Metrics = Metrics()
    roles: Roles | None = None
    inbound: Inbound = Inbound()
    console: ConsoleLocation
    sites: list[Site] = Field(min_length=1)
    credentials: dict[str, Credential] = {}
    snmp: dict[str, SnmpProfile] = {}
    devices: list[Device] = Field(min_length=1)
    links: list[Link] = []
    bgp_peers: list[BgpPeer] = []
    probes: list[Probe] = []
    services: list[Service] = []
    notify: Notify = Notify()
    maintenance: list[MaintenanceWindow] = []
    remote: Remote | None = None
    collectors: list[CollectorDef] = []

    def device(self, name: str) -> Device:
        return next(d for d in self.devices if d.name == name)

    def database_path(self, base: Path) -> Path:
        p = Path(self.ispvm.database).expanduser()
        return p if p.is_absolute() else base / p

    def interval_of(self, device: str) -> float:
        """Clock seconds between polls of one device: its own interval_s, else the fleet's."""
        return self._own_intervals.get(device) or self.polling.interval_s

    @functools.cached_property
    def _own_intervals(self) -> dict[str, float]:
        # Asked once per device per poll: a search of the device list was 86 ms per 1,000 at start alone.
        return {d.name: d.interval_s for d in self.devices if d.interval_s}

    def secret_names(self, polled_elsewhere: Collection[str] = ()) -> set[str]:
        """The secrets this host needs (names, never values): its devices' credentials and SNMP profiles,
        webhooks and the NATS link. Devices in ``polled_elsewhere`` are a remote collector's business: their
        secrets live in that collector's store."""
        if polled_elsewhere:
            here = [d for d in self.devices if d.name not in polled_elsewhere]
            creds = [self.credentials[d.credential] for d in here if d.credential in self.credentials]
            profiles = [self.snmp[d.snmp] for d in here if d.snmp in self.snmp]
        else:  # everything named, used or not: `secret check` reports a forgotten one before it is needed
            creds, profiles = list(self.credentials.values()), list(self.snmp.values())
        names = {c.password_secret for c in creds}
        for prof in profiles:
            names |= {n for n in (prof.community_secret, prof.v3_auth_secret, prof.v3_priv_secret) if n}
        names |= {name for target in self.notify.all() for name in target.secret_refs()}
        if self.remote is not None:
            names |= {n for n in (self.remote.password_secret, self.remote.nkey_seed_secret) if n}
        names |= {n for src in self.inbound.sources for n in (src.api_key_secret, src.hmac_secret)}
        return names


def remote_devices(cfg: Config) -> dict[str, str]:
    """Device -> the collector that polls it (by its site, or by name); absent: the engine polls it."""
    out: dict[str, str] = {}
    for col in cfg.collectors:
        named = set(col.devices)
        for dev in cfg.devices:
            if dev.name in named or (col.site is not None and dev.site == col.site):
                out.setdefault(dev.name, col.name)
    return out


def link_id(a: str, b: str) -> str:
    """Links are named by their two ends in sorted order, so either spelling is the same link."""
    x, y = sorted((a, b))
    return f"{x}--{y}"


def cross_check(cfg: Config, source: TomlSource | None, name: str = "<config>") -> list[Problem]:
    """References between sections: every name used must exist, once."""

    def problem(loc: tuple[str | int, ...], message: str) -> Problem:
        if source is not None:
            return source.problem(loc, message)
        return Problem(name, None, ".".join(str(p) for p in loc), message)

    problems: list[Problem] = []
    sites = {s.name for s in cfg.sites}
    devices: dict[str, int] = {}
    for i, dev in enumerate(cfg.devices):
        if dev.name in devices:
            problems.append(problem(("devices", i, "name"), f"duplicate device name {dev.name!r}"))
        devices[dev.name] = i
        if dev.site not in sites:
            problems.append(problem(("devices", i, "site"), f"unknown site {dev.site!r} (not in [[sites]])"))
        if dev.credential is not None and dev.credential not in cfg.credentials:
            problems.append(problem(("devices", i, "credential"), f"unknown credential {dev.credential!r}"))
        if dev.snmp is not None and dev.snmp not in cfg.snmp:
            problems.append(problem(("devices", i, "snmp"), f"unknown SNMP profile {dev.snmp!r}"))
        if dev.credential is None and dev.snmp is None:
            problems.append(problem(("devices", i), "no collector: set credential (API) and/or snmp"))
    site_count = Counter(s.name for s in cfg.sites)  # counted once: per-site sums were quadratic
    for i, site in enumerate(cfg.sites):
        if site_count[site.name] > 1:
            problems.append(problem(("sites", i, "name"), f"duplicate site name {site.name!r}"))
    for i, dev_name in enumerate(cfg.console.attach):
        if dev_name not in devices:
            problems.append(problem(("console", "attach", i), f"unknown device {dev_name!r}"))
    ends: dict[str, int] = {}
    for i, link in enumerate(cfg.links):
        for side in ("a", "b"):
            end = getattr(link, side)
            dev_name = end.split(":", 1)[0]
            if dev_name not in devices:
                problems.append(problem(("links", i, side), f"unknown device {dev_name!r}"))
            if end in ends:
                problems.append(problem(("links", i, side), f"interface {end} is already used by link {ends[end]}"))
            ends[end] = i
        if link.a.split(":")[0] == link.b.split(":")[0]:
            problems.append(problem(("links", i), "a link must join two different devices"))
    peers = set()
    for i, peer in enumerate(cfg.bgp_peers):
        if peer.device not in devices:
            problems.append(problem(("bgp_peers", i, "device"), f"unknown device {peer.device!r}"))
        peers.add(peer.id)
    for i, probe in enumerate(cfg.probes):
        if probe.device not in devices:
            problems.append(problem(("probes", i, "device"), f"unknown device {probe.device!r}"))
        elif cfg.devices[devices[probe.device]].credential is None:
            problems.append(problem(("probes", i, "device"), "probes run over the RouterOS API: the device "
                                                             "needs a credential"))
    known = set(devices) | sites | peers | {link.id for link in cfg.links}
    for i, svc in enumerate(cfg.services):
        for j, dep in enumerate(svc.depends_on):
            if dep not in known:
                problems.append(problem(("services", i, "depends_on", j),
                                        f"unknown entity {dep!r} (a device, site, link id or DEVICE:PEER)"))
    for i, o in enumerate(cfg.rules.overrides):
        if o.site is not None and o.site not in sites:
            problems.append(problem(("rules", "overrides", i, "site"), f"unknown site {o.site!r}"))
        if o.device is not None and o.device not in devices:
            problems.append(problem(("rules", "overrides", i, "device"), f"unknown device {o.device!r}"))
    problems += _check_collectors(cfg, devices, sites, problem)
    for i, win in enumerate(cfg.maintenance):
        for j, site in enumerate(win.sites):
            if site not in sites:
                problems.append(problem(("maintenance", i, "sites", j), f"unknown site {site!r}"))
        for j, dev_name in enumerate(win.devices):
            if dev_name not in devices:
                problems.append(problem(("maintenance", i, "devices", j), f"unknown device {dev_name!r}"))
    target_count = Counter(t.name for t in cfg.notify.all())  # one namespace: the outbox keys rows by name
    for _, key, targets in cfg.notify.kinds():
        for i, target in enumerate(targets):
            if target_count[target.name] > 1:
                problems.append(problem(("notify", key, i, "name"),
                                        f"duplicate notification target name {target.name!r}"))
    return problems


def _check_collectors(cfg: Config, devices: dict[str, int], sites: set[str],
                      problem: Callable[[tuple[str | int, ...], str], Problem]) -> list[Problem]:
    problems: list[Problem] = []
    if cfg.collectors and cfg.remote is None:
        problems.append(problem(("collectors", 0), "[[collectors]] need a [remote] section (the NATS server)"))
    owner: dict[str, str] = {}
    names: set[str] = set()
    for i, col in enumerate(cfg.collectors):
        if col.name in names:
            problems.append(problem(("collectors", i, "name"), f"duplicate collector name {col.name!r}"))
        names.add(col.name)
        if col.site is None and not col.devices:
            problems.append(problem(("collectors", i), "a collector needs a site or a list of devices"))
        if col.site is not None and col.site not in sites:
            problems.append(problem(("collectors", i, "site"), f"unknown site {col.site!r} (not in [[sites]])"))
        for j, dev_name in enumerate(col.devices):
            if dev_name not in devices:
                problems.append(problem(("collectors", i, "devices", j), f"unknown device {dev_name!r}"))
        mine = {d.name for d in cfg.devices if d.name in set(col.devices) or (col.site and d.site == col.site)}
        for dev_name in sorted(mine):
            if owner.setdefault(dev_name, col.name) != col.name:
                problems.append(problem(("collectors", i), f"device {dev_name!r} is already polled by "
                                                           f"collector {owner[dev_name]!r}"))
    return problems


def config_warnings(cfg: Config, source: TomlSource | None, name: str = "<config>") -> list[Problem]:
    """What is allowed but probably wrong: reported (``config check``, ``run`` at start), never refused."""

    def warn(loc: tuple[str | int, ...], message: str) -> Problem:
        if source is not None:
            return source.problem(loc, message, "warning")
        return Problem(name, None, ".".join(str(p) for p in loc), message, "warning")

    warnings: list[Problem] = []
    urls = [(("ispvm", "base_url"), cfg.ispvm.base_url)]
    urls += [(("notify", "webhooks", i, "url"), h.url) for i, h in enumerate(cfg.notify.webhooks)]
    urls += [(("notify", "jira", i, "url"), t.url) for i, t in enumerate(cfg.notify.jira)]
    urls += [(("notify", "servicenow", i, "url"), t.url) for i, t in enumerate(cfg.notify.servicenow)]
    for loc, url in urls:
        if _has_credentials(url):  # the message never repeats the URL: it holds the secret
            warnings.append(warn(loc, "the URL carries credentials (user:password@): credentials belong in "
                                      "the secret store (webhooks: sign with `secret`; links: no login in them)"))
    warnings += [warn(("devices", i), "no configured path from the console: root-cause analysis cannot place it")
                 for i in _unreached(cfg)]
    for i, j, what in _same_address(cfg):
        other = cfg.devices[j]
        warnings.append(warn(("devices", i, "address"), f"same management address and {what} as "
                                                        f"devices[{j}] ({other.name}): one router polled twice?"))
    poll_s = cfg.polling.timeout_s
    for prof_name, prof in cfg.snmp.items():
        if prof.timeout_s * (prof.retries + 1) > poll_s:
            warnings.append(warn(("snmp", prof_name, "timeout_s"),
                                 f"{prof.retries + 1} tries of {prof.timeout_s:g} s outlast [polling].timeout_s "
                                 f"({poll_s:g} s), which ends every SNMP poll: the last tries never happen"))
    return warnings


def _has_credentials(url: str) -> bool:
    """``user:password@`` (or a bare token ``user@``) in the URL's authority."""
    authority = url.split("//", 1)[-1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return "@" in authority


def _unreached(cfg: Config) -> list[int]:
    """Indexes of devices no chain of [[links]] joins to [console].attach."""
    neighbours: defaultdict[str, list[str]] = defaultdict(list)
    for link in cfg.links:
        a, b = link.a.split(":", 1)[0], link.b.split(":", 1)[0]
        neighbours[a].append(b)
        neighbours[b].append(a)
    seen = set(cfg.console.attach)
    queue = deque(seen)
    while queue:
        for nxt in neighbours[queue.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return [i for i, dev in enumerate(cfg.devices) if dev.name not in seen]


def _same_address(cfg: Config) -> list[tuple[int, int, str]]:
    """(device, first device with that address, "API port N" / "SNMP port N") for every repeat."""
    first: dict[tuple[str, str, int], int] = {}
    out: list[tuple[int, int, str]] = []
    for i, dev in enumerate(cfg.devices):
        address = dev.address.lower().rstrip(".")
        if ":" in address:  # IPv6 (validated) has many spellings of one address; IPv4 and names have one
            address = str(ipaddress.ip_address(address))
        keys = []
        if dev.credential is not None:
            keys.append(("API port", dev.api_port))
        if dev.snmp is not None:
            prof = cfg.snmp.get(dev.snmp)
            keys.append(("SNMP port", dev.snmp_port or (prof.port if prof else 161)))
        for what, port in keys:
            j = first.setdefault((address, what, port), i)
            if j != i:
                out.append((i, j, f"{what} {port}"))
                break
    return out


def load_config(path: str | Path, warnings: list[Problem] | None = None) -> Config:
    """Read, validate and cross-check a config file; raises SourceError listing every problem.

    With ``warnings`` given, the file's warnings (``config_warnings``) are appended to it.
    """
    source = read_toml(path)
    cfg = validate(source, Config)
    problems = cross_check(cfg, source)
    base = Path(path).resolve().parent
    files = [str(p if p.is_absolute() else base / p) for p in (Path(f).expanduser() for f in cfg.rules.files)]
    cfg = cfg.model_copy(update={"rules": cfg.rules.model_copy(update={"files": files})})
    if cfg.remote is not None:
        cfg = cfg.model_copy(update={"remote": _resolve_tls(cfg.remote, base)})
    if any(m.ca_file for m in cfg.notify.email):  # relative to the file, like every path in it
        mails = [m.model_copy(update={"ca_file": str(base / Path(m.ca_file).expanduser())}) if m.ca_file else m
                 for m in cfg.notify.email]
        cfg = cfg.model_copy(update={"notify": cfg.notify.model_copy(update={"email": mails})})
    try:
        load_rules(cfg, source)
    except SourceError as exc:
        problems += exc.problems
    if problems:
        raise SourceError(problems)
    if warnings is not None:
        warnings.extend(config_warnings(cfg, source))
    return cfg


class _RemoteFile(BaseModel):
    """What a collector reads from its own file: [remote] and [[collectors]]; anything else is ignored,
    so the centre's config.toml serves as it is, and so does a file holding only those two."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    remote: Remote
    collectors: list[CollectorDef] = []


def load_remote_settings(path: str | Path) -> tuple[Remote, list[CollectorDef]]:
    """[remote] and [[collectors]] of a file; SourceError (FILE:LINE: field: message) when they are wrong."""
    source = read_toml(path)
    parsed = validate(source, _RemoteFile)
    return _resolve_tls(parsed.remote, Path(path).resolve().parent), list(parsed.collectors)


def _resolve_tls(remote: Remote, base: Path) -> Remote:
    """TLS file paths relative to the config file, as rule files are."""
    update = {}
    for key in ("tls_ca", "tls_cert", "tls_key"):
        value = getattr(remote, key)
        if value is not None:
            p = Path(value).expanduser()
            update[key] = str(p if p.is_absolute() else base / p)
    return remote.model_copy(update=update) if update else remote


def load_rules(cfg: Config, source: TomlSource | None = None) -> RuleSet:
    """The rule set a config asks for (built-in packs, its rule files, its overrides)."""
    from ispvm_tui.engine.rulepack import load_ruleset

    def where(i: int, field: str, message: str) -> Problem:
        loc = ("rules", "overrides", i, field)
        if source is not None:
            return source.problem(loc, message)
        return Problem("<config>", None, ".".join(str(p) for p in loc), message)

    return load_ruleset(list(cfg.rules.packs), list(cfg.rules.files), list(cfg.rules.overrides), where,
                        source.path if source else "<config>")
