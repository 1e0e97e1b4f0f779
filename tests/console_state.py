"""A fixed console state and ``StaticEngine``, the EngineAPI that serves it.

This is a fixture for the console's screens (snapshot tests, ``bench/console.py``), not a mock of the engine
under test: the engine's own behaviour is tested against the lab elsewhere. Here the screens are what is under
test, so they get a state that never moves, built from a seed with times relative to a fixed ``taken_at``:
the same pixels on every run, on every host.

``small_state()``: an ISP with two cores, two edges, a BNG and five PoPs (30 devices), three open incidents
of different severities, one acknowledged and one closed. ``large_state()``: 1,000 devices on 100 sites with
50 incidents, for timing the console under a realistic load.

``StaticEngine`` answers only from that state. Where a screen asks for something the state does not hold
(deliveries, the change calendar, config diffs) it answers what an engine with an empty database would;
acknowledge and close change the held state as the engine would (so a test can see their effect); the
calendar's writes fail with a clear error, as nothing here stores them.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ispvm_tui.engine.api import (
    AlertView,
    AuditEntryView,
    BgpRow,
    ChangeRecordView,
    CollectorView,
    ConfigChangeView,
    DeliveryReport,
    DeviceDetail,
    DeviceHistory,
    DeviceView,
    EngineEvent,
    HardeningFindingView,
    Impact,
    IncidentView,
    InterfaceHistory,
    InterfaceRow,
    LinkView,
    MaintenanceView,
    Noise,
    OspfRow,
    RootCause,
    SensorRow,
    ServiceView,
    Severity,
    SiteView,
    Snapshot,
    TimelineEntry,
)

TAKEN_AT = 1_760_000_000.0  # 2025-10-09 08:53:20 UTC: every time in the state is relative to it
VERSIONS = ("7.16.2", "7.15.3", "6.49.17")
BOARDS = {
    "core": "CCR2216-1G-12XS-2XQ",
    "edge": "CCR2116-12G-4S+",
    "bng": "CCR2004-16G-2S+",
    "aggregation": "CCR2004-1G-12S+2XS",
    "access": "CRS326-24G-2S+",
}
PRIORITY = {"critical": "P1", "major": "P2", "minor": "P3", "warning": "P3", "info": "P4"}
SMALL_POPS = ("NORTH", "EAST", "SOUTH", "WEST", "HARBOUR")
TRANSITS = (("TRANSIT1", 64500, "198.51.100.1"), ("TRANSIT2", 64510, "203.0.113.1"))

T = TypeVar("T")


@dataclass
class _Net:
    """The topology being built: devices by name, links, which site each device is at."""

    rng: random.Random
    devices: dict[str, DeviceView]
    links: list[LinkView]
    subscribers: dict[str, int]  # per site
    next_port: dict[str, int]

    def port(self, device: str, kind: str = "sfp") -> str:
        n = self.next_port.get(device, 0) + 1
        self.next_port[device] = n
        return f"{kind}{n}" if kind == "sfp" else f"ether{n}"

    def link(self, a: str, b: str, speed_mbps: int, kind: str = "sfp") -> LinkView:
        end_a, end_b = sorted((f"{a}:{self.port(a, kind)}", f"{b}:{self.port(b, kind)}"))
        view = LinkView(f"{end_a}--{end_b}", end_a, end_b, "up", speed_mbps,
                        round(self.rng.uniform(0.05, 0.7), 2))
        self.links.append(view)
        return view


def _device(rng: random.Random, name: str, site: str, role: str, address: str) -> DeviceView:
    total = {"core": 30, "edge": 16, "bng": 20, "aggregation": 14, "access": 26}[role]
    version = VERSIONS[0] if role in ("core", "edge") else rng.choice(VERSIONS)
    return DeviceView(
        name=name, site=site, role=role, address=address, state="up",
        last_poll_at=TAKEN_AT - rng.randrange(2, 28), version=version,
        uptime_s=float(rng.randrange(3_600, 220 * 86_400)), cpu_load=rng.randrange(2, 38),
        interfaces_up=total - rng.randrange(0, 4), interfaces_total=total,
    )


def _build_net(rng: random.Random, pops: list[str], access_per_pop: list[int]) -> _Net:
    net = _Net(rng, {}, [], {}, {})

    def add(name: str, site: str, role: str) -> None:
        n = len(net.devices)
        net.devices[name] = _device(rng, name, site, role, f"10.{n // 250}.{n % 250}.1")

    for name, role in (("CORE1", "core"), ("CORE2", "core"), ("EDGE1", "edge"), ("EDGE2", "edge"),
                       ("BNG1", "bng")):
        add(name, "DC1", role)
    net.link("CORE1", "CORE2", 100_000)
    net.link("CORE1", "EDGE1", 100_000)
    net.link("CORE2", "EDGE2", 100_000)
    net.link("CORE1", "BNG1", 10_000)
    for pop, access in zip(pops, access_per_pop, strict=True):
        site = f"POP-{pop}"
        short = pop[:5]
        agg = f"{short}-AGG"
        add(agg, site, "aggregation")
        net.link("CORE1", agg, 10_000)
        net.link("CORE2", agg, 10_000)
        for k in range(1, access + 1):
            acc = f"{short}-ACC{k}"
            add(acc, site, "access")
            net.link(agg, acc, 1_000, kind="ether")
        net.subscribers[site] = access * rng.randrange(120, 480)
    return net


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _alert(rng: random.Random, rule: str, entity_type: str, entity_id: str, severity: Severity, starts_at: float,
           summary: str, incident_id: str, *, suppressed: bool = False, ends_at: float | None = None) -> AlertView:
    return AlertView(id=_uuid(rng), rule=rule, entity_type=entity_type, entity_id=entity_id, severity=severity,
                     state="firing" if ends_at is None else "resolved", starts_at=starts_at, ends_at=ends_at,
                     summary=summary, incident_id=incident_id, suppressed=suppressed)


def _set_state(net: _Net, name: str, state: str, error: str | None) -> None:
    device = net.devices[name]
    if state == "down":
        net.devices[name] = replace(device, state="down", last_error=error, cpu_load=None, interfaces_up=0,
                                    last_poll_at=TAKEN_AT - net.rng.randrange(200, 900))
    else:
        net.devices[name] = replace(device, state=state, last_error=error)  # type: ignore[arg-type]


def _set_link(net: _Net, predicate: Callable[[LinkView], bool], state: str) -> list[LinkView]:
    hit = []
    for k, link in enumerate(net.links):
        if predicate(link):
            net.links[k] = replace(link, state=state, utilisation=None)  # type: ignore[arg-type]
            hit.append(net.links[k])
    return hit


def _site_of(net: _Net, device: str) -> str:
    return net.devices[device].site


def _pop_outage(net: _Net, agg: str, opened_at: float, severity: Severity = "critical",
                status: str = "open", acked_by: str | None = None) -> IncidentView:
    """An aggregation router that lost power: it and everything behind it stop answering."""
    rng = net.rng
    inc_id = _uuid(rng)
    site = _site_of(net, agg)
    behind = sorted(n for n, d in net.devices.items() if d.site == site and n != agg)
    _set_state(net, agg, "down", "api: timeout; snmp: timeout")
    for name in behind:
        _set_state(net, name, "down", "unreachable: every path crosses " + agg)
    _set_link(net, lambda link: agg in (link.a.split(":")[0], link.b.split(":")[0]), "down")
    alerts = [_alert(rng, "device_unreachable", "device", agg, severity, opened_at,
                     f"{agg} is not answering (api, snmp)", inc_id)]
    alerts += [_alert(rng, "device_unreachable", "device", name, "major", opened_at + rng.randrange(5, 30),
                      f"{name} is not answering", inc_id, suppressed=True) for name in behind]
    subs = net.subscribers.get(site)
    return IncidentView(
        id=inc_id, title=f"Device unreachable: {agg} (+{len(behind)} behind it)", status=status,  # type: ignore[arg-type]
        severity=severity, priority=PRIORITY[severity], opened_at=opened_at, closed_at=None,
        acked_by=acked_by, acked_at=opened_at + 240 if acked_by else None,
        root_causes=(RootCause("device", agg, agg, 0.94),),
        impact=Impact(1, len(behind) + 1, 1, subs, (site,), (agg, *behind), (f"{site} broadband",)),
        evidence=(
            f"{agg} stopped answering API and SNMP at the same poll",
            "both uplinks (CORE1, CORE2) report the far end gone",
            f"{len(behind)} access switches behind it unreachable; every path crosses {agg}",
        ),
        alerts=tuple(alerts), score=min(100, 60 + len(behind) * 5 + (subs or 0) // 200),
        updated_at=opened_at + 60, labels={"site": site},
    )


def _transit_down(net: _Net, edge: str, transit: tuple[str, int, str], opened_at: float,
                  status: str = "open", acked_by: str | None = None) -> IncidentView:
    rng = net.rng
    inc_id = _uuid(rng)
    name, asn, _ = transit
    peer = f"{edge}:{name}"
    _set_state(net, edge, "degraded", f"bgp: {name} idle")
    others = [t[0] for t in TRANSITS if t[0] != name]
    return IncidentView(
        id=inc_id, title=f"Transit degraded: {name} down ({', '.join(others)} still up)", status=status,  # type: ignore[arg-type]
        severity="major", priority="P2", opened_at=opened_at, closed_at=None, acked_by=acked_by,
        acked_at=opened_at + 120 if acked_by else None,
        root_causes=(RootCause("bgp_peer", peer, f"{edge} {name} (AS{asn})", 0.9),),
        impact=Impact(0, 1, 1, None, (), (edge,), (f"Internet transit via {name}",)),
        evidence=(
            f"BGP session {name} on {edge} left established, now idle (hold timer expired)",
            f"traffic has another way out: {', '.join(others)} established",
            f"services depending on it: Internet transit via {name}",
        ),
        alerts=(_alert(rng, "bgp_session_down", "bgp_peer", peer, "major", opened_at,
                       f"BGP {name} on {edge} is idle", inc_id),),
        score=55, updated_at=opened_at + 30, labels={"provider": name},
    )


def _interface_errors(net: _Net, device: str, opened_at: float, status: str = "open",
                      acked_by: str | None = None) -> IncidentView:
    rng = net.rng
    inc_id = _uuid(rng)
    itf = f"{device}:ether{rng.randrange(2, 9)}"
    _set_state(net, device, "degraded", None)
    rate = rng.randrange(120, 900)
    return IncidentView(
        id=inc_id, title=f"Interface errors: {itf} ({rate} errors/min)", status=status,  # type: ignore[arg-type]
        severity="minor", priority="P3", opened_at=opened_at, closed_at=None, acked_by=acked_by,
        acked_at=opened_at + 600 if acked_by else None,
        root_causes=(RootCause("interface", itf, itf, 0.85),),
        impact=Impact(1, 1, 0, rng.randrange(20, 90), (_site_of(net, device),), (device,), ()),
        evidence=(f"rx errors on {itf} rising for 15 min ({rate}/min; threshold 50/min)",
                  "CRC errors only, no discards: a dirty connector or a failing optic"),
        alerts=(_alert(rng, "interface_errors", "interface", itf, "minor", opened_at,
                       f"{itf} rx errors {rate}/min", inc_id),),
        score=30, updated_at=opened_at + 900,
    )


def _cpu_high(net: _Net, device: str, opened_at: float, status: str = "open") -> IncidentView:
    rng = net.rng
    inc_id = _uuid(rng)
    load = rng.randrange(88, 99)
    net.devices[device] = replace(net.devices[device], cpu_load=load)
    return IncidentView(
        id=inc_id, title=f"CPU high: {device} at {load}% for 10 min", status=status,  # type: ignore[arg-type]
        severity="warning", priority="P3", opened_at=opened_at, closed_at=None, acked_by=None, acked_at=None,
        root_causes=(RootCause("device", device, device, 0.7),),
        impact=Impact(1, 1, 0, None, (_site_of(net, device),), (device,), ()),
        evidence=(f"CPU {load}% over the last 10 polls (threshold 85%)",),
        alerts=(_alert(rng, "cpu_high", "device", device, "warning", opened_at,
                       f"{device} CPU {load}%", inc_id),),
        score=20, updated_at=opened_at + 300,
    )


def _closed_flap(net: _Net, a: str, b: str, opened_at: float) -> IncidentView:
    rng = net.rng
    inc_id = _uuid(rng)
    link = next(link for link in net.links if {link.a.split(":")[0], link.b.split(":")[0]} == {a, b})
    closed = opened_at + rng.randrange(900, 2400)
    return IncidentView(
        id=inc_id, title=f"Link flapping: {link.id}", status="closed", severity="major", priority="P2",
        opened_at=opened_at, closed_at=closed, acked_by="maria", acked_at=opened_at + 300,
        root_causes=(RootCause("link", link.id, f"{link.a} ↔ {link.b}", 0.88),),
        impact=Impact(1, 1, 0, None, (_site_of(net, b),), (b,), ()),
        evidence=(f"{link.a} went down and up 7 times in 10 min", "stable for 15 min: closed by the engine"),
        alerts=(_alert(rng, "interface_flapping", "link", link.id, "major", opened_at,
                       f"{link.a} flapping", inc_id, ends_at=closed),),
        score=0, updated_at=closed, closed_by="engine",
    )


def _config_changes(net: _Net, entries: list[tuple[str, str, float, str]]) -> tuple[ConfigChangeView, ...]:
    rng = net.rng
    changes = []
    for device, category, detected_at, summary in entries:
        version = rng.randrange(2, 40)
        changes.append(ConfigChangeView(
            device=device, category=category, detected_at=detected_at, version=version,
            old_hash=f"{rng.getrandbits(64):016x}", new_hash=f"{rng.getrandbits(64):016x}", summary=summary,
            since=detected_at - 300))
    return tuple(sorted(changes, key=lambda c: -c.detected_at))


def _snapshot(net: _Net, incidents: list[IncidentView], changes: tuple[ConfigChangeView, ...],
              polls_total: int) -> Snapshot:
    devices = tuple(net.devices.values())
    sites: dict[str, list[DeviceView]] = {}
    for device in devices:
        sites.setdefault(device.site, []).append(device)
    site_views = []
    for name, members in sites.items():
        down = sum(d.state == "down" for d in members)
        state = "down" if down == len(members) else "degraded" if down or any(
            d.state == "degraded" for d in members) else "up"
        site_views.append(SiteView(name, len(members), down, net.subscribers.get(name), state))  # type: ignore[arg-type]
    live = sorted((i for i in incidents if i.status != "closed"), key=lambda i: -i.score)
    closed = sorted((i for i in incidents if i.status == "closed"), key=lambda i: -(i.closed_at or 0))
    alerts = tuple(a for i in incidents for a in i.alerts if a.state == "firing")
    raised = sum(len(i.alerts) for i in incidents)
    suppressed = sum(i.suppressed_count for i in incidents)
    # Transit per upstream (down while a BGP alert names it), broadband per PoP (its aggregation router).
    services = [ServiceView(f"Internet transit via {name}", "down" if any(a.entity_id.endswith(f":{name}")
                                                                           for a in alerts) else "up",
                            1, int(any(a.entity_id.endswith(f":{name}") for a in alerts)), category="transit")
                for name, _, _ in TRANSITS]
    for name, members in list(sites.items())[:8]:
        agg = next((d for d in members if d.role == "aggregation"), None)
        if agg is not None:
            services.append(ServiceView(f"{name} broadband", agg.state, 1, int(agg.state == "down"),
                                        net.subscribers.get(name), "access"))
    collectors = (CollectorView("local", "local", "up", len(devices) - 4, TAKEN_AT - 4, polls_failed_now(devices),
                                0.0),
                  CollectorView("POP-FAR", "remote", "up", 4, TAKEN_AT - 12, 0))
    return Snapshot(
        taken_at=TAKEN_AT, vantage=("CORE1", "CORE2"), sites=tuple(site_views), devices=devices,
        links=tuple(net.links), incidents=(*live, *closed), alerts=alerts, polls_total=polls_total,
        polls_failed=sum(d.state == "down" for d in devices) * 12,
        noise=Noise(raised, suppressed, len(incidents), len(alerts)), config_changes=changes,
        services=tuple(services), collectors=collectors,
    )


def polls_failed_now(devices: tuple[DeviceView, ...]) -> int:
    return sum(d.state == "down" for d in devices)


def small_state(seed: int = 7) -> Snapshot:
    """30 devices: DC1 (2 cores, 2 edges, a BNG), five PoPs of an aggregation router and its access switches."""
    rng = random.Random(seed)
    net = _build_net(rng, list(SMALL_POPS), [4, 5, 4, 6, 5])
    incidents = [
        _pop_outage(net, "EAST-AGG", TAKEN_AT - 1_260),
        _transit_down(net, "EDGE2", TRANSITS[1], TAKEN_AT - 3_000),
        _cpu_high(net, "BNG1", TAKEN_AT - 780),
        _interface_errors(net, "SOUTH-ACC3", TAKEN_AT - 8_400, status="acked", acked_by="maria"),
        _closed_flap(net, "CORE2", "NORTH-AGG", TAKEN_AT - 14_000),
    ]
    changes = _config_changes(net, [
        ("EDGE2", "bgp", TAKEN_AT - 3_300, "bgp: connection TRANSIT2 hold-time 90s -> 9s"),
        ("SOUTH-ACC3", "interfaces", TAKEN_AT - 86_000, "interfaces: ether5 comment 'cust 4411' added"),
        ("CORE1", "firewall", TAKEN_AT - 170_000, "firewall: filter rule 12 (drop 23/tcp) added"),
    ])
    return _snapshot(net, incidents, changes, polls_total=48_212)


def large_state(devices: int = 1_000, incidents: int = 50, seed: int = 1_000) -> Snapshot:
    """``devices`` devices on about ``devices // 10`` sites, ``incidents`` incidents of every kind."""
    rng = random.Random(seed)
    pops = max(1, (devices - 5) // 10)
    per_pop = [(devices - 5) // pops - 1] * pops
    for k in range((devices - 5) - sum(n + 1 for n in per_pop)):
        per_pop[k % pops] += 1
    net = _build_net(rng, [f"{k:03d}" for k in range(1, pops + 1)], per_pop)
    aggs = [n for n, d in net.devices.items() if d.role == "aggregation"]
    access = [n for n, d in net.devices.items() if d.role == "access"]
    made: list[IncidentView] = []
    rng.shuffle(aggs)
    for k in range(incidents):
        opened = TAKEN_AT - rng.randrange(60, 6 * 3600)
        status = "closed" if k % 10 == 9 else "acked" if k % 4 == 3 else "open"
        kind = k % 5
        if kind == 0 and aggs:
            inc = _pop_outage(net, aggs.pop(), opened, severity=rng.choice(("critical", "major")))
        elif kind == 1:
            inc = _transit_down(net, rng.choice(("EDGE1", "EDGE2")), rng.choice(TRANSITS), opened)
        elif kind == 2:
            inc = _cpu_high(net, rng.choice(access), opened)
        else:
            inc = _interface_errors(net, rng.choice(access), opened)
        if status == "acked":
            inc = replace(inc, status="acked", acked_by=rng.choice(("maria", "tomas", "noc")), acked_at=opened + 90)
        elif status == "closed":
            inc = replace(inc, status="closed", closed_at=opened + 1_800, closed_by="engine", score=0)
        made.append(inc)
    changes = _config_changes(net, [
        (rng.choice(list(net.devices)), rng.choice(("bgp", "interfaces", "firewall", "system")),
         TAKEN_AT - rng.randrange(60, 7 * 86_400), "interfaces: ether3 mtu 1500 -> 9000") for _ in range(20)])
    return _snapshot(net, made, changes, polls_total=2_400_000)


def storm_step(snapshot: Snapshot, step: int) -> Snapshot:
    """The next snapshot of a storm: every incident updated, some device states flipped, 5 s later."""
    at = snapshot.taken_at + 5
    incidents = tuple(replace(i, updated_at=at, score=(i.score + step) % 100) for i in snapshot.incidents)
    devices = list(snapshot.devices)
    for k in range(step % 7, len(devices), 7):
        d = devices[k]
        flipped = "degraded" if d.state == "up" else "up" if d.state == "degraded" else d.state
        devices[k] = replace(d, state=flipped, last_poll_at=at, cpu_load=((d.cpu_load or 0) + 7) % 100)  # type: ignore[arg-type]
    return replace(snapshot, taken_at=at, incidents=incidents, devices=tuple(devices),
                   polls_total=snapshot.polls_total + len(devices))


# -- device detail ----------------------------------------------------------------------------------

def device_detail_of(snapshot: Snapshot, name: str) -> DeviceDetail:
    """A device's last poll as the engine would report it, from the state (seeded by the name)."""
    device = next((d for d in snapshot.devices if d.name == name), None)
    if device is None:
        raise KeyError(f"unknown device {name!r}")
    rng = random.Random(name)
    changes = tuple(c for c in snapshot.config_changes if c.device == name)
    if device.state == "down":
        return DeviceDetail(device=device, sampled_at=device.last_poll_at, errors=("api: timeout", "snmp: timeout"),
                            config_changes=changes)
    ends = sorted(((link, end) for link in snapshot.links for end in (link.a, link.b) if end.startswith(name + ":")),
                  key=lambda pair: pair[1])
    interfaces = []
    for link, end in ends:
        peer = link.b if end == link.a else link.a
        up = link.state != "down"
        speed = (link.speed_mbps or 1_000) * 1_000_000
        interfaces.append(InterfaceRow(
            name=end.split(":", 1)[1], admin_up=True, oper_up=up, speed_bps=speed,
            rx_bytes=rng.randrange(10**9, 10**14), tx_bytes=rng.randrange(10**9, 10**14),
            rx_errors=rng.randrange(0, 40), tx_errors=0, rx_discards=rng.randrange(0, 400), tx_discards=0,
            comment=f"to {peer}"))
    interfaces.append(InterfaceRow("ether-mgmt", True, True, 1_000_000_000, rng.randrange(10**8, 10**10),
                                   rng.randrange(10**8, 10**10), 0, 0, comment="out-of-band"))
    bgp: tuple[BgpRow, ...] = ()
    if device.role == "core":  # iBGP to both edges (the route reflector's clients)
        bgp = tuple(BgpRow(f"IBGP-{edge}", edge_view.address, 64496, "established", True,
                           float(rng.randrange(86_400, 90 * 86_400)), rng.randrange(940_000, 960_000))
                    for edge_view in snapshot.devices if (edge := edge_view.name) in ("EDGE1", "EDGE2"))
    elif device.role == "edge":
        bgp = tuple(
            BgpRow(t, addr, asn, "idle" if f"bgp: {t} idle" == device.last_error else "established",
                   f"bgp: {t} idle" != device.last_error,
                   None if f"bgp: {t} idle" == device.last_error else float(rng.randrange(3_600, 90 * 86_400)),
                   None if f"bgp: {t} idle" == device.last_error else rng.randrange(940_000, 960_000))
            for t, asn, addr in TRANSITS)
    ospf = tuple(
        OspfRow(f"10.255.{k}.{rng.randrange(1, 250)}", f"10.254.{k}.2", itf.name, "full", True)
        for k, itf in enumerate(interfaces[:-1]) if itf.oper_up) if device.role != "access" else ()
    memory = 4 * 2**30 if device.role in ("core", "edge", "bng") else 2**30
    return DeviceDetail(
        device=device, sampled_at=device.last_poll_at, collectors=("api", "snmp"),
        identity=name.lower(), board=BOARDS[device.role], descr=f"RouterOS {device.version} ({BOARDS[device.role]})",
        total_memory=memory, free_memory=int(memory * rng.uniform(0.3, 0.8)),
        route_count=rng.randrange(940_000, 960_000) if device.role in ("core", "edge") else rng.randrange(40, 900),
        interfaces=tuple(interfaces),
        sensors=(SensorRow("cpu-temperature", float(rng.randrange(38, 61)), "C"),
                 SensorRow("board-temperature1", float(rng.randrange(30, 45)), "C"),
                 SensorRow("fan1-speed", float(rng.randrange(4_000, 7_000)), "RPM"),
                 SensorRow("psu1-state", None, state="ok")),
        bgp=bgp, ospf=ospf, config_changes=changes,
    )


# -- the engine ------------------------------------------------------------------------------------

def _done(value: T) -> Future[T]:
    future: Future[T] = Future()
    future.set_result(value)
    return future


def _failed(exc: BaseException) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_exception(exc)
    return future


class StaticEngine:
    """EngineAPI over a fixed state (a fixture for the screens, not a stand-in for the engine under test).

    ``snapshot()`` returns the same object until the state is replaced (``set_state``), as the engine's does
    between changes, so the console's "nothing changed" paths run as they do for real.
    """

    def __init__(self, state: Snapshot) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[EngineEvent], None]] = []

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._state

    def set_state(self, state: Snapshot, event: EngineEvent | None = None) -> None:
        """Replace the state (a bench's snapshot storm); ``event`` then goes to subscribers, as the engine's do."""
        with self._lock:
            self._state = state
            callbacks = list(self._callbacks)
        if event is not None:
            for callback in callbacks:
                callback(event)

    def subscribe(self, callback: Callable[[EngineEvent], None]) -> Callable[[], None]:
        # The state never moves by itself: events come only with set_state(..., event).
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return unsubscribe

    def _change_incident(self, incident_id: str, **changes: Any) -> Future[IncidentView]:
        with self._lock:
            state = self._state
            incident = state.incident(incident_id)
            if incident is None or incident.status == "closed" or (
                    changes.get("status") == "acked" and incident.status != "open"):
                return _failed(KeyError(f"no open incident {incident_id}"))
            changed = replace(incident, updated_at=state.taken_at, **changes)
            self._state = replace(state, incidents=tuple(changed if i.id == incident_id else i
                                                         for i in state.incidents))
        return _done(changed)

    def acknowledge(self, incident_id: str, actor: str) -> Future[IncidentView]:
        at = self.snapshot().taken_at
        return self._change_incident(incident_id, status="acked", acked_by=actor, acked_at=at)

    def close(self, incident_id: str, actor: str, note: str = "") -> Future[IncidentView]:
        at = self.snapshot().taken_at
        return self._change_incident(incident_id, status="closed", closed_at=at, closed_by=actor)

    def delivery_report(self, limit: int = 200) -> Future[DeliveryReport]:
        return _done(DeliveryReport(taken_at=self.snapshot().taken_at, endpoints=(), dead=(), recent=()))

    def resend(self, event_id: str, actor: str) -> Future[bool]:
        return _failed(KeyError(f"no delivered or dead event {event_id}"))

    def resend_all_dead(self, actor: str) -> Future[list[str]]:
        return _done([])

    def maintenance_list(self) -> Future[list[MaintenanceView]]:
        return _done([])

    def maintenance_add(self, fields: dict[str, Any], actor: str) -> Future[MaintenanceView]:
        return _failed(ValueError("this fixed state keeps no maintenance windows"))

    def maintenance_edit(self, window_id: str, fields: dict[str, Any], actor: str) -> Future[MaintenanceView]:
        return _failed(KeyError(f"unknown maintenance window {window_id}"))

    def maintenance_cancel(self, window_id: str, actor: str) -> Future[MaintenanceView]:
        return _failed(KeyError(f"unknown maintenance window {window_id}"))

    def changes_list(self) -> Future[list[ChangeRecordView]]:
        return _done([])

    def change_add(self, fields: dict[str, Any], actor: str) -> Future[ChangeRecordView]:
        return _failed(ValueError("this fixed state keeps no change calendar"))

    def change_edit(self, change_id: str, fields: dict[str, Any], actor: str) -> Future[ChangeRecordView]:
        return _failed(KeyError(f"unknown change {change_id}"))

    def change_cancel(self, change_id: str, actor: str) -> Future[ChangeRecordView]:
        return _failed(KeyError(f"unknown change {change_id}"))

    def device_detail(self, name: str) -> Future[DeviceDetail]:
        try:
            return _done(device_detail_of(self.snapshot(), name))
        except KeyError as exc:
            return _failed(exc)

    def config_changes(self, device: str | None = None, limit: int = 200) -> Future[list[ConfigChangeView]]:
        changes = [c for c in self.snapshot().config_changes if device is None or c.device == device]
        return _done(changes[:limit])

    def config_diff(self, device: str, category: str, old_version: int | None = None,
                    new_version: int | None = None) -> Future[list[str]]:
        return _done([])  # no stored versions: what an engine with an empty database says

    def capture_config(self, device: str | None = None, actor: str = "engine") -> Future[int]:
        if device is not None and all(d.name != device for d in self.snapshot().devices):
            return _failed(ValueError(f"unknown device {device!r}"))
        return _done(0)  # no routers to ask

    # ---- one device's history, one incident in detail, diagnostics -------------------------------
    def device_history(self, name: str, hours: float = 6.0,
                       interfaces: tuple[str, ...] = ()) -> Future[DeviceHistory]:
        """Seeded series for the state's devices: the same every time, as a stored database's would be."""
        state = self.snapshot()
        try:
            detail = device_detail_of(state, name)
        except KeyError as exc:
            return _failed(exc)
        bucket = 300
        until = state.taken_at - state.taken_at % bucket
        points = min(120, int(hours * 3600 // bucket))
        starts = [until - bucket * (points - k) for k in range(points)]
        rng = random.Random(name)
        wanted = [i for i in detail.interfaces if not interfaces or i.name in interfaces]
        series = []
        for itf in wanted:
            base = rng.uniform(5e6, 4e8) if itf.oper_up else 0.0
            rx = tuple((s, base * (1 + 0.3 * rng.random())) for s in starts)
            tx = tuple((s, base * 0.4 * (1 + 0.3 * rng.random())) for s in starts)
            series.append(InterfaceHistory(itf.name, rx, tx))
        cpu = tuple((s, float(rng.randint(2, 40))) for s in starts)
        return _done(DeviceHistory(device=name, since=until - hours * 3600, until=until, bucket_s=bucket,
                                   interfaces=tuple(series), cpu_load=cpu, total_memory=detail.total_memory))

    def incident_timeline(self, incident_id: str) -> Future[tuple[TimelineEntry, ...]]:
        """What the engine's store would say of the state: its alerts, opened, acked and closed."""
        incident = self.snapshot().incident(incident_id)
        if incident is None:
            return _failed(KeyError(f"unknown incident {incident_id}"))
        entries = [TimelineEntry(at=a.starts_at, kind="alert.fired", summary=a.summary) for a in incident.alerts]
        entries.append(TimelineEntry(at=incident.opened_at, kind="incident.opened", summary=incident.title))
        if incident.acked_at is not None:
            entries.append(TimelineEntry(at=incident.acked_at, kind="incident.acked", summary="acknowledged",
                                         actor=incident.acked_by))
        if incident.closed_at is not None:
            entries.append(TimelineEntry(at=incident.closed_at, kind="incident.closed", summary="closed",
                                         actor=incident.closed_by))
        return _done(tuple(sorted(entries, key=lambda e: e.at)))

    def add_note(self, incident_id: str, text: str, actor: str) -> Future[None]:
        if self.snapshot().incident(incident_id) is None:
            return _failed(KeyError(f"unknown incident {incident_id}"))
        return _done(None)

    def assign(self, incident_id: str, assignee: str, actor: str) -> Future[IncidentView]:
        return self._change_incident(incident_id, assigned_to=assignee)

    def incident_runbooks(self, incident_id: str) -> Future[list[str]]:
        return _done([])

    def audit_entries(self, limit: int = 100) -> Future[list[AuditEntryView]]:
        return _done([AuditEntryView(seq=2, ts=self.snapshot().taken_at, actor="alice", action="incident.ack",
                                     target="inc-1", detail=None),
                      AuditEntryView(seq=1, ts=self.snapshot().taken_at - 60, actor="bob", action="maint.add",
                                     target="MW-1", detail='{"name": "fibre works"}')][:limit])

    def hardening_findings(self) -> Future[list[HardeningFindingView]]:
        return _done([HardeningFindingView(device="CORE1", severity="high", check="telnet enabled",
                                           detail="telnet on port 23 sends passwords in clear text")])

    def run_diagnostic(self, device: str, kind: str, target: str, actor: str, count: int = 5) -> Future[str]:
        return _failed(ValueError("a fixed state has no routers to run diagnostics from"))
