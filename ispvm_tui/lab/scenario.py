"""Lab scenario files: a small ISP's topology plus a timeline of faults.

The format is a public interface (see docs/scenarios.md): every problem is
reported with file, line and field, including references to devices,
interfaces, links and peers that do not exist.
"""

from __future__ import annotations

import ipaddress
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ispvm_tui.config import Role, link_id
from ispvm_tui.lab.addresses import LabAddressError, lab_addresses
from ispvm_tui.lab.sim import SFP_PREFIXES
from ispvm_tui.tomlsource import Problem, SourceError, TomlSource, read_toml, validate

Action = Literal[
    "link_down", "link_up", "device_down", "device_up", "bgp_down", "bgp_up", "ospf_down", "ospf_up",
    "congestion", "flap", "reboot", "config_change", "secret_change", "maintenance", "restore", "hang", "unhang",
    "sfp", "lte",
]
ConfigSection = Literal["bgp", "ospf", "interfaces", "addressing", "firewall", "system"]
SECRET_SECTIONS = ("bgp", "ospf", "system")  # where secret_change has a secret to change

# Which fields each action needs; checked so a typo fails at load time, not mid-demo.
ACTION_FIELDS: dict[str, tuple[str, ...]] = {
    "link_down": ("link",), "link_up": ("link",),
    "device_down": ("device",), "device_up": ("device",),
    "bgp_down": ("peer",), "bgp_up": ("peer",),
    "ospf_down": ("device", "neighbor"), "ospf_up": ("device", "neighbor"),
    "congestion": ("link", "percent", "duration_s"),
    "flap": ("interface", "count", "period_s"),
    "reboot": ("device",),
    "hang": ("device",), "unhang": ("device",),
    "config_change": ("device", "section"), "secret_change": ("device", "section"),
    "maintenance": ("scope", "duration_s"),
    "restore": (),
    "sfp": ("interface",),  # and temperature_c and/or rx_power_dbm: the module's readings from then on
    "lte": ("interface",),  # and rsrp_dbm and/or sinr_db: the modem's radio link from then on
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScenarioInfo(Strict):
    name: str = Field(min_length=1)
    description: str = ""
    duration_s: float = Field(gt=0)  # simulated seconds the headless demo runs
    poll_interval_s: float = Field(10.0, gt=0)  # simulated seconds between polls of one router


class LabSettings(Strict):
    address_base: str = "127.77.0.0"  # routers get base+1, base+2, ... on loopback
    api_port: int = Field(8728, ge=1, le=65535)
    snmp_port: int = Field(1161, ge=1, le=65535)
    username: str = "admin"
    password: str = "ispvm-lab"  # lab routers only; real credentials live in the secret store
    community: str = "public"
    # What a poller sees of a router it has no path to (cut off or powered off): "drop" = silence until
    # it times out (a switched or black-holed network); "reject" = the API connection is reset at once,
    # as across a routed network that answers with ICMP unreachable or a firewall reject. SNMP stays silent.
    unreachable: Literal["drop", "reject"] = "drop"

    @field_validator("address_base")
    @classmethod
    def _loopback(cls, v: str) -> str:
        addr = ipaddress.ip_address(v)
        if addr.version != 4 or not addr.is_loopback:
            raise ValueError("must be an IPv4 address in 127.0.0.0/8")
        return v


class ConsoleSpec(Strict):
    attach: list[str] = Field(min_length=1)


class SiteSpec(Strict):
    name: str
    subscribers: int | None = Field(None, ge=0)


class DeviceSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    site: str
    role: Role
    ros_version: Literal[6, 7] = 7
    # The exact RouterOS release (default 7.16.2 / 6.49.10) and the RouterBOARD firmware when it lags it.
    version: str | None = Field(None, pattern=r"^[67]\.\d+(\.\d+)?$")
    firmware: str | None = Field(None, pattern=r"^[67]\.\d+(\.\d+)?$")
    board: str | None = None
    interfaces: list[str] = []  # link ends are added automatically
    tags: list[str] = []
    subscribers: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _version_of_its_major(self) -> DeviceSpec:
        if self.version is not None and not self.version.startswith(f"{self.ros_version}."):
            raise ValueError(f"version {self.version} is not RouterOS {self.ros_version}")
        return self


class LinkSpec(Strict):
    a: str = Field(pattern=r"^[^:\s]+:\S+$")
    b: str = Field(pattern=r"^[^:\s]+:\S+$")
    speed_mbps: int = Field(1000, gt=0)
    utilisation: float = Field(0.2, ge=0, le=1)  # baseline, each direction

    @property
    def id(self) -> str:
        return link_id(self.a, self.b)


class BgpSpec(Strict):
    device: str
    name: str
    remote_as: int = Field(ge=1, le=4294967295)
    remote_address: str
    local_as: int = Field(65000, ge=1, le=4294967295)
    provider: str | None = None
    prefixes: int = Field(1000, ge=0)

    @property
    def id(self) -> str:
        return f"{self.device}:{self.name}"


class OspfSpec(Strict):
    device: str
    neighbor: str  # another lab device, joined to this one by a link


class ServiceSpec(Strict):
    name: str
    depends_on: list[str] = Field(min_length=1)
    subscribers: int | None = Field(None, ge=0)
    category: str | None = None


class TimelineEntry(Strict):
    at: float = Field(ge=0)  # simulated seconds from the start
    action: Action
    link: str | None = None
    device: str | None = None
    interface: str | None = None  # DEVICE:interface
    peer: str | None = None  # DEVICE:PEER
    neighbor: str | None = None
    percent: float | None = Field(None, gt=0, le=100)
    duration_s: float | None = Field(None, gt=0)
    count: int | None = Field(None, ge=1)
    period_s: float | None = Field(None, gt=0)
    section: ConfigSection | None = None  # config_change, secret_change
    scope: list[str] | None = None  # maintenance: sites, devices, tags ("tag:x") or services
    temperature_c: float | None = Field(None, ge=-40, le=150)  # sfp: the module's temperature
    rx_power_dbm: float | None = Field(None, ge=-40, le=10)  # sfp: the light it receives with the link up
    rsrp_dbm: float | None = Field(None, ge=-140, le=-44)  # lte: reference signal power (3GPP's range)
    sinr_db: float | None = Field(None, ge=-20, le=40)  # lte: signal to interference and noise
    note: str = ""

    @model_validator(mode="after")
    def _fields_for_action(self) -> TimelineEntry:
        missing = [f for f in ACTION_FIELDS[self.action] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"action {self.action!r} needs: {', '.join(missing)}")
        if self.action == "sfp" and self.temperature_c is None and self.rx_power_dbm is None:
            raise ValueError("action 'sfp' needs temperature_c or rx_power_dbm (or both)")
        if self.action == "lte" and self.rsrp_dbm is None and self.sinr_db is None:
            raise ValueError("action 'lte' needs rsrp_dbm or sinr_db (or both)")
        return self


Severity = Literal["critical", "major", "minor", "warning", "info"]  # as the engine grades incidents
WEBHOOK_EVENTS = ("incident.opened", "incident.updated", "incident.acked", "incident.closed")


def _range(v: list[int] | None) -> list[int] | None:
    if v is not None and (len(v) != 2 or v[0] > v[1]):
        raise ValueError("must be [min, max] with min <= max")
    return v


class IncidentExpect(Strict):
    """What one incident must look like at the end of the run (matched in order of opening)."""

    index: int | None = None  # which incident (0 = first opened, -1 = last); default: this table's position
    root_causes: list[str] | None = None  # entity ids, compared as a set
    root_cause_types: list[str] | None = None  # in the order of root_causes sorted
    title_contains: str | None = None
    severity: Severity | None = None
    severity_in: list[Severity] | None = Field(None, min_length=1)
    impact_devices: list[int] | None = None  # inclusive [min, max] of impact.devices_affected
    subscribers: list[int] | None = None  # inclusive [min, max] of impact.estimated_subscribers_affected
    services: list[str] | None = None  # exact set of impact.services
    labels: dict[str, str] = {}
    devices_not_counted: list[str] = []  # must not appear in impact.devices
    alert_rules: list[str] = []  # each rule must appear among the incident's alerts
    suppressed_min: int | None = Field(None, ge=0)  # at least this many of its alerts suppressed
    webhooks: list[str] | None = None  # this incident's event types received, in order
    status: Literal["open", "acked", "closed"] | None = None
    confidence_min: float | None = Field(None, ge=0, le=1)  # of the first root cause
    confidence_max: float | None = Field(None, ge=0, le=1)
    evidence_contains: list[str] = []  # each a substring of one of its evidence lines

    @field_validator("impact_devices", "subscribers")
    @classmethod
    def _ranges(cls, v: list[int] | None) -> list[int] | None:
        return _range(v)

    @field_validator("webhooks")
    @classmethod
    def _events(cls, v: list[str] | None) -> list[str] | None:
        for event in v or []:
            if event not in WEBHOOK_EVENTS:
                raise ValueError(f"unknown webhook event {event!r} (one of {', '.join(WEBHOOK_EVENTS)})")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> IncidentExpect:
        if self.severity is not None and self.severity_in is not None:
            raise ValueError("give severity or severity_in, not both")
        if self.root_cause_types is not None and (
                self.root_causes is None or len(self.root_cause_types) != len(self.root_causes)):
            raise ValueError("root_cause_types needs root_causes, one type per root cause")
        if None not in (self.confidence_min, self.confidence_max) and \
                (self.confidence_min or 0) > (self.confidence_max or 0):
            raise ValueError("confidence_min is above confidence_max")
        return self


class Expect(Strict):
    incidents: int | None = Field(None, ge=0)
    root_cause: str | None = None  # entity id of the (first) incident's top root cause
    root_cause_type: str | None = None
    impact_devices_min: int | None = Field(None, ge=0)
    labels: dict[str, str] = {}
    webhook_events: list[str] | None = None  # event types received, in order
    first_incident_within_s: float | None = Field(None, gt=0)  # after the first fault
    all_closed: bool | None = None
    runs: int = Field(1, ge=1, le=50)  # play the scenario this many times; every run must give the same signature
    incident: list[IncidentExpect] = []  # [[expect.incident]], in order of opening
    orphan_alerts_max: int | None = Field(None, ge=0)  # alerts not suppressed and in no incident
    config_changes: int | None = Field(None, ge=0)  # config.changed.detected in the whole run, exactly


class Scenario(Strict):
    scenario: ScenarioInfo
    lab: LabSettings = LabSettings()
    console: ConsoleSpec
    sites: list[SiteSpec] = Field(min_length=1)
    devices: list[DeviceSpec] = Field(min_length=1)
    links: list[LinkSpec] = []
    bgp_peers: list[BgpSpec] = []
    ospf_neighbors: list[OspfSpec] = []
    services: list[ServiceSpec] = []
    timeline: list[TimelineEntry] = []
    expect: Expect | None = None

    def device(self, name: str) -> DeviceSpec:
        return next(d for d in self.devices if d.name == name)

    def interfaces_of(self, name: str) -> list[str]:
        """Declared interfaces plus every link end on this device, in a stable order."""
        names = list(self.device(name).interfaces)
        for link in self.links:
            for end in (link.a, link.b):
                dev, itf = end.split(":", 1)
                if dev == name and itf not in names:
                    names.append(itf)
        return names or ["ether1"]

    def link_between(self, a: str, b: str) -> LinkSpec | None:
        for link in self.links:
            ends = {link.a.split(":")[0], link.b.split(":")[0]}
            if ends == {a, b}:
                return link
        return None


def _cross_check(sc: Scenario, source: TomlSource) -> list[Problem]:
    problems: list[Problem] = []
    sites = {s.name for s in sc.sites}
    devices = [d.name for d in sc.devices]
    known_devices = set(devices)

    def device_ref(loc: tuple[str | int, ...], name: str) -> None:
        if name not in known_devices:
            problems.append(source.problem(loc, f"unknown device {name!r}"))

    try:  # the whole fleet on loopback, known at load time rather than at the first bind
        lab_addresses(sc.lab.address_base, len(sc.devices))
    except LabAddressError as exc:
        problems.append(source.problem(("lab", "address_base"), str(exc)))
    for i, name in enumerate(devices):
        if devices.count(name) > 1 and devices.index(name) != i:
            problems.append(source.problem(("devices", i, "name"), f"duplicate device name {name!r}"))
    for i, dev in enumerate(sc.devices):
        if dev.site not in sites:
            problems.append(source.problem(("devices", i, "site"), f"unknown site {dev.site!r}"))
    for i, name in enumerate(sc.console.attach):
        device_ref(("console", "attach", i), name)
    for i, link in enumerate(sc.links):
        device_ref(("links", i, "a"), link.a.split(":")[0])
        device_ref(("links", i, "b"), link.b.split(":")[0])
    for i, peer in enumerate(sc.bgp_peers):
        device_ref(("bgp_peers", i, "device"), peer.device)
    for i, ospf in enumerate(sc.ospf_neighbors):
        device_ref(("ospf_neighbors", i, "device"), ospf.device)
        device_ref(("ospf_neighbors", i, "neighbor"), ospf.neighbor)
        if ospf.device in known_devices and ospf.neighbor in known_devices and not sc.link_between(
            ospf.device, ospf.neighbor
        ):
            problems.append(source.problem(("ospf_neighbors", i), "no link joins these two devices"))
    links = {link.id for link in sc.links}
    peers = {p.id for p in sc.bgp_peers}
    entities = known_devices | sites | links | peers
    for i, svc in enumerate(sc.services):
        for j, dep in enumerate(svc.depends_on):
            if dep not in entities:
                problems.append(source.problem(("services", i, "depends_on", j), f"unknown entity {dep!r}"))
    for i, ev in enumerate(sc.timeline):
        loc = ("timeline", i)
        if ev.device is not None:
            device_ref((*loc, "device"), ev.device)
        if ev.neighbor is not None:
            device_ref((*loc, "neighbor"), ev.neighbor)
        if ev.link is not None and normalise_link(ev.link) not in links:
            problems.append(source.problem((*loc, "link"), f"unknown link {ev.link!r} (use A:if--B:if)"))
        if ev.peer is not None and ev.peer not in peers:
            problems.append(source.problem((*loc, "peer"), f"unknown BGP peer {ev.peer!r} (use DEVICE:NAME)"))
        if ev.interface is not None:
            dev, _, itf = ev.interface.partition(":")
            if dev not in known_devices:
                device_ref((*loc, "interface"), dev)
            elif itf not in sc.interfaces_of(dev):
                problems.append(source.problem((*loc, "interface"), f"unknown interface {ev.interface!r}"))
            elif ev.action == "lte" and not itf.startswith("lte"):
                problems.append(source.problem((*loc, "interface"),
                                               f"{ev.interface!r} is no LTE interface (names start with lte)"))
            elif ev.action == "sfp" and not itf.startswith(SFP_PREFIXES):
                problems.append(source.problem((*loc, "interface"),
                                               f"{ev.interface!r} is no SFP cage (names start with "
                                               f"{', '.join(SFP_PREFIXES)})"))
        for j, item in enumerate(ev.scope or []):
            target = item.removeprefix("tag:")
            if not item.startswith("tag:") and target not in entities | {s.name for s in sc.services}:
                problems.append(source.problem((*loc, "scope", j), f"unknown scope entry {item!r}"))
        if ev.action in ("config_change", "secret_change") and ev.device in known_devices:
            problems += _check_section(sc, source, (*loc, "section"), ev)
        if ev.at > sc.scenario.duration_s:
            problems.append(source.problem((*loc, "at"), "after the end of the scenario (scenario.duration_s)"))
    if sc.expect is not None:
        problems += _check_expect(sc, source, entities)
    return problems


def _check_section(sc: Scenario, source: TomlSource, loc: tuple[str | int, ...], ev: TimelineEntry) -> list[Problem]:
    """A change needs something to change: BGP peers for bgp, an OSPF adjacency for ospf."""
    if ev.action == "secret_change" and ev.section not in SECRET_SECTIONS:
        return [source.problem(loc, f"secret_change changes a secret of {', '.join(SECRET_SECTIONS)}; "
                                    f"{ev.section!r} has none")]
    if ev.section == "bgp" and not any(p.device == ev.device for p in sc.bgp_peers):
        return [source.problem(loc, f"device {ev.device!r} has no BGP peer to change (see [[bgp_peers]])")]
    if ev.section == "ospf" and not any(ev.device in (o.device, o.neighbor) for o in sc.ospf_neighbors):
        return [source.problem(loc, f"device {ev.device!r} runs no OSPF to change (see [[ospf_neighbors]])")]
    return []


def _check_expect(sc: Scenario, source: TomlSource, entities: set[str]) -> list[Problem]:
    """References in [expect] must name things the scenario has: a typo would otherwise only show as a
    failed run, far from the line that caused it."""
    assert sc.expect is not None
    problems: list[Problem] = []
    interfaces = {f"{d.name}:{i}" for d in sc.devices for i in sc.interfaces_of(d.name)}
    known = entities | interfaces
    devices = {d.name for d in sc.devices}
    services = {s.name for s in sc.services}
    if sc.expect.root_cause is not None and normalise_link(sc.expect.root_cause) not in known:
        problems.append(source.problem(("expect", "root_cause"), f"unknown entity {sc.expect.root_cause!r}"))
    for j, event in enumerate(sc.expect.webhook_events or []):
        if event not in WEBHOOK_EVENTS:
            problems.append(source.problem(("expect", "webhook_events", j), f"unknown webhook event {event!r}"))
    for i, inc in enumerate(sc.expect.incident):
        loc = ("expect", "incident", i)
        for j, rc in enumerate(inc.root_causes or []):
            if normalise_link(rc) not in known:
                problems.append(source.problem((*loc, "root_causes", j), f"unknown entity {rc!r}"))
        for j, name in enumerate(inc.devices_not_counted):
            if name not in devices:
                problems.append(source.problem((*loc, "devices_not_counted", j), f"unknown device {name!r}"))
        for j, name in enumerate(inc.services or []):
            if name not in services:
                problems.append(source.problem((*loc, "services", j), f"unknown service {name!r}"))
        if inc.index is not None and sc.expect.incidents is not None and not (
                -sc.expect.incidents <= inc.index < sc.expect.incidents):
            problems.append(source.problem((*loc, "index"), f"no incident {inc.index} when exactly "
                                                            f"{sc.expect.incidents} are expected"))
    return problems


def normalise_link(text: str) -> str:
    """Either spelling of a link id, A:x--B:y or B:y--A:x, as the canonical one."""
    a, sep, b = text.partition("--")
    return link_id(a, b) if sep else text


def load_scenario(path: str | Path) -> Scenario:
    """Load a scenario by path, or by the name of a built-in one (e.g. "core-link-cut")."""
    source = read_toml(resolve_scenario_path(path))
    sc = validate(source, Scenario)
    problems = _cross_check(sc, source)
    if problems:
        raise SourceError(problems)
    return sc


def builtin_scenarios() -> list[str]:
    folder = resources.files("ispvm_tui.lab") / "scenarios"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def resolve_scenario_path(name: str | Path) -> Path:
    p = Path(name)
    if p.exists() or p.suffix == ".toml" or "/" in str(name):
        return p
    builtin = resources.files("ispvm_tui.lab") / "scenarios" / f"{name}.toml"
    return Path(str(builtin))
