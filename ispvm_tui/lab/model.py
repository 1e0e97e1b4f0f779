"""One live model of the simulated ISP: links, power, counters, BGP, OSPF.

Every lab router's API server and SNMP agent read from this model, so what
the pollers see over both protocols is one consistent network. The timeline
(scenario faults) only flips state here; reachability from the monitoring
host and interface running flags are derived from that state.

Reachability starts at the ``[console].attach`` devices and follows working
links; a device with no link at all is taken to be reached directly by the
monitoring host. A hung router (``hang``) keeps carrier and forwards traffic,
so it stays on the path for others, but its own management plane is silent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import math
import random
from collections import defaultdict, deque
from dataclasses import dataclass, field

from ispvm_tui.clock import Clock
from ispvm_tui.lab.addresses import lab_addresses
from ispvm_tui.lab.scenario import LabSettings, Scenario, TimelineEntry, normalise_link
from ispvm_tui.lab.sim import (
    SFP_PREFIXES,
    LabModelLike,
    RouterHandle,
    SimAddress,
    SimBgpPeer,
    SimCommunity,
    SimConfig,
    SimDevice,
    SimFirewallRule,
    SimInterface,
    SimLte,
    SimNeighbor,
    SimOspfNeighbor,
    SimOspfTemplate,
    SimRouteFilter,
    SimSfp,
    SimStaticRoute,
    SimUser,
    SimWirelessClient,
)

REBOOT_S = 45.0  # simulated seconds a rebooting router is away
BACKGROUND_BPS = 200_000  # traffic on interfaces without a modelled link
# Share of packets lost on a healthy port (a slow, steady baseline a capacity rule stays under),
# and the share of a congested link's sent packets its queue drops, scaled by the link's load.
ERROR_SHARE = 2e-8
DROP_SHARE = 1e-7
CONGESTED_DROP_SHARE = 0.01
# Real traffic is never flat: a link's baseline swings this share either way over one cycle (simulated
# seconds), each link at its own phase, so rates, sparklines and charts move the way a live network's do.
SWING_SHARE = 0.1
SWING_PERIOD_S = 240.0


@dataclass
class LinkState:
    id: str
    a: tuple[str, str]  # (device, interface)
    b: tuple[str, str]
    speed_bps: int
    utilisation: float
    up: bool = True
    congestion: float | None = None  # overrides utilisation while set
    congestion_until: float | None = None
    flap_down: bool = False  # toggled by a flap entry
    swing_phase: float = field(init=False)

    def __post_init__(self) -> None:
        self.swing_phase = 2 * math.pi * int(hashlib.blake2s(self.id.encode(), digest_size=4).hexdigest(), 16) / 2**32

    def mean_utilisation(self, start: float, end: float) -> float:
        """The utilisation carried on average over [start, end]: congestion while set, else the swinging baseline.

        A closed form of the swing's integral, so both ends of a link, moved at different moments, still add up
        to the same totals.
        """
        if self.congestion is not None:
            return self.congestion
        if end <= start:
            return self.utilisation
        omega = 2 * math.pi / SWING_PERIOD_S
        phase = self.swing_phase
        swing = (math.cos(omega * start + phase) - math.cos(omega * end + phase)) / (omega * (end - start))
        return self.utilisation * (1 + SWING_SHARE * swing)


@dataclass
class AppliedEvent:
    at: float  # clock epoch seconds
    offset: float  # scenario seconds
    action: str
    target: str
    note: str = ""


@dataclass
class PendingChange:
    due: float  # clock epoch seconds
    apply: str  # what to do
    target: str


@dataclass
class LabModel(LabModelLike):
    scenario: Scenario
    clock: Clock
    devices: dict[str, SimDevice] = field(default_factory=dict)
    links: dict[str, LinkState] = field(default_factory=dict)
    powered: dict[str, bool] = field(default_factory=dict)
    ospf_down: set[frozenset[str]] = field(default_factory=set)
    hung: set[str] = field(default_factory=set)  # management plane silent, forwarding and carrier intact
    history: list[AppliedEvent] = field(default_factory=list)
    maintenance: list[TimelineEntry] = field(default_factory=list)
    _pending: list[PendingChange] = field(default_factory=list)
    _last_advance: float = 0.0
    _reachable: set[str] = field(default_factory=set)
    started_at: float = 0.0
    # Lazy counters (large labs): a router's counters move only when that router is read, so a request
    # costs the same whatever the fleet size. Off by default: then every read moves the whole network.
    lazy: bool = False
    _advanced_at: dict[str, float] = field(default_factory=dict)  # lazy: device -> counters moved up to
    _link_at: dict[tuple[str, str], tuple[LinkState, bool]] = field(default_factory=dict)  # end -> (link, is a)
    _sfp_baseline: dict[tuple[str, str], SimSfp] = field(default_factory=dict)  # modules as before `sfp` entries
    _lte_baseline: dict[tuple[str, str], SimLte] = field(default_factory=dict)  # modems as before `lte` entries

    # ---- construction -------------------------------------------------
    @classmethod
    def build(cls, scenario: Scenario, clock: Clock, address_base: str | None = None, *,
              lazy: bool = False) -> LabModel:
        model = cls(scenario=scenario, clock=clock, lazy=lazy)
        now = clock.now()
        model.started_at = now
        model._last_advance = now
        # Every address is checked before the first is used: no lab router outside loopback (lab/addresses.py).
        addresses = lab_addresses(address_base or scenario.lab.address_base, len(scenario.devices))
        rng = random.Random(scenario.scenario.name)
        for n, spec in enumerate(scenario.devices, start=1):
            version = spec.version or ("7.16.2" if spec.ros_version == 7 else "6.49.10")
            dev = SimDevice(
                name=spec.name,
                address=addresses[n - 1],
                ros_major=spec.ros_version,
                version=version,
                board=spec.board or ("CCR2004-16G-2S+" if spec.ros_version == 7 else "CCR1036-8G-2S+"),
                serial=hashlib.sha1(spec.name.encode()).hexdigest()[:12].upper(),
                boot_time=now - rng.uniform(3 * 86400, 90 * 86400),
                cpu_load=rng.randint(2, 12),
                router_id=f"10.255.0.{n}",
                firmware=spec.firmware,
            )
            for i, itf in enumerate(scenario.interfaces_of(spec.name), start=1):
                mac = f"4C:5E:0C:{n:02X}:{i:02X}:{rng.randint(0, 255):02X}"
                dev.interfaces[itf] = SimInterface(
                    name=itf, ifindex=i, mac=mac, last_change=dev.boot_time,
                    rx_bytes=rng.randint(10**9, 10**12), tx_bytes=rng.randint(10**9, 10**12),
                    rx_packets=rng.randint(10**6, 10**9), tx_packets=rng.randint(10**6, 10**9),
                    # Its own random stream: a cage leaves every other port's and device's values as they were.
                    sfp=_sfp_module(random.Random(f"{spec.name}:{itf}")) if itf.startswith(SFP_PREFIXES) else None,
                )
                if itf.startswith("lte"):
                    dev.interfaces[itf].type, dev.interfaces[itf].lte = "lte", SimLte()
            dev.config = _base_config(dev.name, scenario.lab)
            model.devices[spec.name] = dev
            model.powered[spec.name] = True
        # The first access device is also an access point, with stations whose signal drifts: the
        # console's wireless table and the registration-table family have something to read.
        ap = next((spec.name for spec in scenario.devices if spec.role == "access"), None)
        if ap is not None:
            model.devices[ap].wireless = [
                SimWirelessClient(mac=f"02:1A:2B:00:00:{k:02X}", interface="wlan1", ssid=f"{ap.lower()}-ap",
                                  signal_dbm=signal, tx_rate_mbps=rate, rx_rate_mbps=rate / 2,
                                  since=now - 3600.0 * k, phase=k)
                for k, (signal, rate) in enumerate(((-58.0, 144.4), (-71.0, 65.0), (-83.0, 6.5)), start=1)]
        for k, link in enumerate(scenario.links, start=1):
            a_dev, a_itf = link.a.split(":", 1)
            b_dev, b_itf = link.b.split(":", 1)
            state = LinkState(link.id, (a_dev, a_itf), (b_dev, b_itf), link.speed_mbps * 1_000_000, link.utilisation)
            model.links[link.id] = state
            model._link_at[(a_dev, a_itf)], model._link_at[(b_dev, b_itf)] = (state, True), (state, False)
            for (dev_name, itf), (peer_name, peer_itf) in (((a_dev, a_itf), (b_dev, b_itf)),
                                                          ((b_dev, b_itf), (a_dev, a_itf))):
                dev, peer = model.devices[dev_name], model.devices[peer_name]
                dev.interfaces[itf].speed_bps = state.speed_bps
                dev.interfaces[itf].comment = f"to {peer_name} {peer_itf}"
                low = 1 if dev_name == min(a_dev, b_dev) else 2
                net = _link_net(k)
                dev.addresses.append(SimAddress(f"{net}.{low}/30", f"{net}.0", itf))
                dev.neighbors.append(SimNeighbor(
                    interface=itf, identity=peer_name, address=f"{net}.{3 - low}",
                    mac=peer.interfaces[peer_itf].mac, version=f"{peer.version} (stable)", board=peer.board,
                    interface_name=peer_itf,
                ))
        for peer in scenario.bgp_peers:
            dev = model.devices[peer.device]
            dev.bgp_peers.append(SimBgpPeer(
                name=peer.name, remote_address=peer.remote_address, remote_as=peer.remote_as,
                local_as=peer.local_as, provider=peer.provider or "", state="established",
                established_since=now - rng.uniform(86400, 30 * 86400), prefix_count=peer.prefixes,
                tcp_md5_key=lab_secret(f"{peer.device}:{peer.name}", "bgp", 0),
            ))
            if not dev.config.route_filters:
                dev.config.route_filters = _bgp_filters()
        for ospf in scenario.ospf_neighbors:
            for me, other in ((ospf.device, ospf.neighbor), (ospf.neighbor, ospf.device)):
                link = scenario.link_between(me, other)
                assert link is not None  # checked when the scenario was loaded
                my_end = link.a if link.a.startswith(me + ":") else link.b
                addr = next(a for a in model.devices[other].addresses
                            if a.interface == (link.b if my_end == link.a else link.a).split(":", 1)[1])
                model.devices[me].ospf_neighbors.append(SimOspfNeighbor(
                    router_id=model.devices[other].router_id, address=addr.address.split("/")[0],
                    interface=my_end.split(":", 1)[1], adjacency_since=now - rng.uniform(3600, 86400),
                ))
                # both ends of an authenticated adjacency share its key
                _add_ospf_template(model.devices[me], my_end.split(":", 1)[1], lab_secret(link.id, "ospf", 0))
        for dev in model.devices.values():
            dev.config.static_routes.append(SimStaticRoute("10.254.0.0/16", _gateway(dev), comment="customer pools"))
        model._advanced_at = dict.fromkeys(model.devices, now)
        model._refresh()
        return model

    # ---- what the servers ask ----------------------------------------
    def now(self) -> float:
        return self.clock.now()

    def answering(self, device: str) -> bool:
        self._apply_due()
        return device in self._reachable and device not in self.hung

    def rejecting(self, device: str) -> bool:
        """True when a connection to this router should be reset rather than ignored: the lab is a
        routed network (``[lab] unreachable = "reject"``) and the router is cut off or powered off.
        A hung router is on the path, so its kernel takes the connection and then says nothing."""
        if self.scenario.lab.unreachable != "reject":
            return False
        self._apply_due()
        return device not in self._reachable

    def handle(self, name: str) -> RouterHandle:
        lab = self.scenario.lab
        return RouterHandle(self.devices[name], lab.username, lab.password, self)

    def advance(self, min_step: float = 0.0) -> None:
        """Move counters to now (each link carries its utilisation both ways)."""
        if self.lazy:
            for name in self.devices:
                self.advance_device(name)
            return
        now = self.clock.now()
        self._apply_due()
        dt = now - self._last_advance
        # Every request of every router lands here (with min_step), and one step walks the whole fleet:
        # stepping at most every sim.STATE_STEP_S keeps a 50-router lab from spending its core on it, and
        # loses nothing (the next step carries the whole elapsed time).
        if dt <= 0 or dt < min_step:
            return
        start, self._last_advance = self._last_advance, now
        carried: set[tuple[str, str]] = set()
        for link in self.links.values():
            if not self._link_passes(link):
                continue
            util = link.mean_utilisation(start, now)
            for (src, src_itf), (dst, dst_itf), skew in ((link.a, link.b, 1.0), (link.b, link.a, 0.6)):
                nbytes = int(link.speed_bps * util * skew / 8 * dt)
                out, inn = self.devices[src].interfaces[src_itf], self.devices[dst].interfaces[dst_itf]
                out.tx_bytes += nbytes
                out.tx_packets += nbytes // 900
                inn.rx_bytes += nbytes
                inn.rx_packets += nbytes // 900
                packets = nbytes / 900
                inn.count("rx_errors", packets * ERROR_SHARE)
                inn.count("rx_drops", packets * DROP_SHARE)
                out.count("tx_drops", packets * DROP_SHARE)
                if link.congestion is not None:
                    out.count("tx_queue_drops", packets * CONGESTED_DROP_SHARE * util * skew)
                carried.update({(src, src_itf), (dst, dst_itf)})
        for dev in self.devices.values():
            if not self.powered[dev.name]:
                continue
            for itf in dev.interfaces.values():
                if (dev.name, itf.name) not in carried and itf.running and not itf.disabled:
                    nbytes = int(BACKGROUND_BPS / 8 * dt)
                    itf.rx_bytes += nbytes
                    itf.tx_bytes += nbytes // 2
                    itf.rx_packets += nbytes // 600
                    itf.tx_packets += nbytes // 1200
                    itf.count("rx_errors", nbytes / 600 * ERROR_SHARE)

    def advance_device(self, name: str, min_step: float = 0.0) -> None:
        """Move one router's counters to now: the whole network unless the model is lazy.

        Each link end carries the link's mean rate over the elapsed time in each direction (a closed form), so
        moving its two ends at different moments still gives the same totals; any state change moves everything
        first (apply).
        """
        if not self.lazy:
            self.advance(min_step)
            return
        now = self.clock.now()
        self._apply_due()
        start = self._advanced_at.get(name, now)
        dt = now - start
        if dt <= 0 or dt < min_step:
            return
        self._advanced_at[name] = now
        if not self.powered[name]:
            return
        for itf in self.devices[name].interfaces.values():
            end = self._link_at.get((name, itf.name))
            if end is not None and self._link_passes(end[0]):
                link, is_a = end
                util = link.mean_utilisation(start, now)
                out_skew, in_skew = (1.0, 0.6) if is_a else (0.6, 1.0)
                sent, got = (int(link.speed_bps * util * skew / 8 * dt) for skew in (out_skew, in_skew))
                itf.tx_bytes += sent
                itf.tx_packets += sent // 900
                itf.rx_bytes += got
                itf.rx_packets += got // 900
                itf.count("rx_errors", got / 900 * ERROR_SHARE)
                itf.count("rx_drops", got / 900 * DROP_SHARE)
                itf.count("tx_drops", sent / 900 * DROP_SHARE)
                if link.congestion is not None:
                    itf.count("tx_queue_drops", sent / 900 * CONGESTED_DROP_SHARE * util * out_skew)
            elif itf.running and not itf.disabled:
                nbytes = int(BACKGROUND_BPS / 8 * dt)
                itf.rx_bytes += nbytes
                itf.tx_bytes += nbytes // 2
                itf.rx_packets += nbytes // 600
                itf.tx_packets += nbytes // 1200
                itf.count("rx_errors", nbytes / 600 * ERROR_SHARE)

    # ---- timeline -----------------------------------------------------
    def apply(self, entry: TimelineEntry) -> None:
        self.apply_many([entry])

    def apply_many(self, entries: list[TimelineEntry]) -> None:
        """Several timeline entries at one moment (a storm: hundreds of routers off at once), with one
        recomputation of links and reachability instead of one per entry."""
        now = self.clock.now()
        self.advance()
        for entry in entries:
            target = entry.link or entry.peer or entry.interface or entry.device or ",".join(entry.scope or []) or "*"
            getattr(self, f"_do_{entry.action}")(entry, now)
            self.history.append(AppliedEvent(now, now - self.started_at, entry.action, target, entry.note))
        self._refresh()

    def _do_link_down(self, e: TimelineEntry, now: float) -> None:
        self.links[normalise_link(e.link or "")].up = False

    def _do_link_up(self, e: TimelineEntry, now: float) -> None:
        self.links[normalise_link(e.link or "")].up = True

    def _do_device_down(self, e: TimelineEntry, now: float) -> None:
        self.powered[e.device or ""] = False

    def _do_device_up(self, e: TimelineEntry, now: float) -> None:
        self._boot(e.device or "", now)

    def _do_hang(self, e: TimelineEntry, now: float) -> None:
        self.hung.add(e.device or "")

    def _do_unhang(self, e: TimelineEntry, now: float) -> None:
        self.hung.discard(e.device or "")

    def _do_reboot(self, e: TimelineEntry, now: float) -> None:
        self.powered[e.device or ""] = False
        self._pending.append(PendingChange(now + REBOOT_S, "boot", e.device or ""))

    def _do_bgp_down(self, e: TimelineEntry, now: float) -> None:
        self._bgp(e.peer or "").state = "active"

    def _do_bgp_up(self, e: TimelineEntry, now: float) -> None:
        peer = self._bgp(e.peer or "")
        if peer.state != "established":
            peer.state, peer.established_since = "established", now

    def _do_ospf_down(self, e: TimelineEntry, now: float) -> None:
        self.ospf_down.add(frozenset((e.device or "", e.neighbor or "")))

    def _do_ospf_up(self, e: TimelineEntry, now: float) -> None:
        self.ospf_down.discard(frozenset((e.device or "", e.neighbor or "")))

    def _do_congestion(self, e: TimelineEntry, now: float) -> None:
        link = self.links[normalise_link(e.link or "")]
        link.congestion = (e.percent or 100) / 100
        link.congestion_until = now + (e.duration_s or 0)
        self._pending.append(PendingChange(link.congestion_until, "uncongest", link.id))

    def _do_flap(self, e: TimelineEntry, now: float) -> None:
        # count down/up cycles spread evenly over the period
        step = (e.period_s or 1) / ((e.count or 1) * 2)
        link = self._link_of_interface(e.interface or "")
        for i in range((e.count or 1) * 2):
            self._pending.append(PendingChange(now + i * step, "flap_down" if i % 2 == 0 else "flap_up",
                                               link.id if link else e.interface or ""))

    def _do_config_change(self, e: TimelineEntry, now: float) -> None:
        """A real, deterministic change in one section (the n-th change of a section is always the same)."""
        dev = self.devices[e.device or ""]
        section = e.section or "system"
        n = dev.config.changes[section] = dev.config.changes.get(section, 0) + 1
        config = dev.config
        if section == "bgp" and dev.bgp_peers:
            dev.bgp_peers[0].hold_time_s = 90 if n % 2 else 180
        elif section == "ospf" and config.ospf_templates:
            config.ospf_templates[0].cost += 10
        elif section == "interfaces" and dev.interfaces:
            min(dev.interfaces.values(), key=lambda i: i.ifindex).mtu = 1492 if n % 2 else 1500
        elif section == "addressing":
            config.static_routes.append(SimStaticRoute(f"10.{253 - n // 256 % 200}.{n % 256}.0/24", _gateway(dev),
                                                       comment=f"lab change {n}"))
        elif section == "firewall":
            rule = SimFirewallRule("input", "accept", {"protocol": "tcp", "dst-port": str(8000 + n % 1000),
                                                       "src-address": f"192.0.2.{n % 254 + 1}"},
                                   comment=f"lab change {n}")
            last_input = max((i for i, r in enumerate(config.firewall) if r.chain == "input"), default=None)
            config.firewall.insert(len(config.firewall) if last_input is None else last_input, rule)
        elif section == "system":
            server = f"203.0.113.{n % 254 + 1}"
            config.ntp_servers[:1] = [server]

    def _do_secret_change(self, e: TimelineEntry, now: float) -> None:
        """Only a secret changes: nothing the engine fingerprints may move."""
        dev = self.devices[e.device or ""]
        section = e.section or "system"
        n = dev.config.changes[f"secret:{section}"] = dev.config.changes.get(f"secret:{section}", 0) + 1
        secret = lab_secret(dev.name, section, n)
        if section == "bgp" and dev.bgp_peers:
            dev.bgp_peers[0].tcp_md5_key = secret
        elif section == "ospf" and dev.config.ospf_templates:
            dev.config.ospf_templates[0].auth_key = secret
        elif section == "system":
            # Not the first community nor the first user: the engine keeps polling with those.
            for community in dev.config.communities[1:2]:
                community.name = f"noc-{secret}"
            for user in dev.config.users[1:2]:
                user.password = secret

    def _do_maintenance(self, e: TimelineEntry, now: float) -> None:
        # Nothing changes on the routers: maintenance is the engine's business.
        self.maintenance.append(e)

    def _do_sfp(self, e: TimelineEntry, now: float) -> None:
        dev_name, _, itf_name = (e.interface or "").partition(":")
        module = self.devices[dev_name].interfaces[itf_name].sfp
        if module is None:
            return  # the scenario check refuses an sfp entry for a port without a cage
        self._sfp_baseline.setdefault((dev_name, itf_name), dataclasses.replace(module))
        if e.temperature_c is not None:
            module.temperature_c = e.temperature_c
        if e.rx_power_dbm is not None:
            module.rx_power_dbm = e.rx_power_dbm

    def _do_lte(self, e: TimelineEntry, now: float) -> None:
        dev_name, _, itf_name = (e.interface or "").partition(":")
        modem = self.devices[dev_name].interfaces[itf_name].lte
        if modem is None:
            return  # the scenario check refuses an lte entry for a port that is no LTE interface
        self._lte_baseline.setdefault((dev_name, itf_name), dataclasses.replace(modem))
        if e.rsrp_dbm is not None:
            modem.rsrp_dbm = e.rsrp_dbm
            modem.rssi_dbm = e.rsrp_dbm + 24  # RSSI counts the whole channel: ~24 dB over RSRP at 20 MHz
        if e.sinr_db is not None:
            modem.sinr_db = e.sinr_db

    def _do_restore(self, e: TimelineEntry, now: float) -> None:
        for (dev_name, itf_name), modem in self._lte_baseline.items():
            self.devices[dev_name].interfaces[itf_name].lte = dataclasses.replace(modem)
        self._lte_baseline.clear()
        for (dev_name, itf_name), module in self._sfp_baseline.items():
            self.devices[dev_name].interfaces[itf_name].sfp = dataclasses.replace(module)
        self._sfp_baseline.clear()
        for link in self.links.values():
            link.up, link.congestion, link.flap_down = True, None, False
        for name, on in list(self.powered.items()):
            if not on:
                self._boot(name, now)
        for dev in self.devices.values():
            for peer in dev.bgp_peers:
                if peer.state != "established":
                    peer.state, peer.established_since = "established", now
        self.ospf_down.clear()
        self.hung.clear()
        self._pending = [p for p in self._pending if p.apply == "boot"]

    # ---- derived state -----------------------------------------------
    def _apply_due(self) -> None:
        if not self._pending:
            return
        now = self.clock.now()
        due = [p for p in self._pending if p.due <= now]
        if not due:
            return
        self._pending = [p for p in self._pending if p.due > now]
        for p in sorted(due, key=lambda p: p.due):
            if p.apply == "boot":
                self._boot(p.target, p.due)
            elif p.apply == "uncongest":
                self.links[p.target].congestion = None
            elif p.apply in ("flap_down", "flap_up") and p.target in self.links:
                self.links[p.target].flap_down = p.apply == "flap_down"
            # One refresh per change: a down and an up that fell due together still count a link-down.
            self._refresh(p.due)

    def _boot(self, name: str, now: float) -> None:
        dev = self.devices[name]
        self.powered[name] = True
        self.hung.discard(name)  # a power cycle is how a hung router gets fixed
        dev.boot_time = now
        for itf in dev.interfaces.values():  # counters restart from zero after a reboot
            itf.rx_bytes = itf.tx_bytes = itf.rx_packets = itf.tx_packets = 0

    def _bgp(self, peer_id: str) -> SimBgpPeer:
        dev_name, _, name = peer_id.partition(":")
        return next(p for p in self.devices[dev_name].bgp_peers if p.name == name)

    def _link_of_interface(self, end: str) -> LinkState | None:
        dev, _, itf = end.partition(":")
        return next((lk for lk in self.links.values() if (dev, itf) in (lk.a, lk.b)), None)

    def _link_passes(self, link: LinkState) -> bool:
        return link.up and not link.flap_down and self.powered[link.a[0]] and self.powered[link.b[0]]

    def _refresh(self, at: float | None = None) -> None:
        """Recompute running flags, OSPF/BGP side effects and reachability."""
        now = self.clock.now() if at is None else at
        for link in self.links.values():
            passes = self._link_passes(link)
            for dev_name, itf_name in (link.a, link.b):
                itf = self.devices[dev_name].interfaces[itf_name]
                if itf.running != passes:
                    itf.running = passes
                    itf.last_change = now
                    if not passes:
                        itf.link_downs += 1
        for dev in self.devices.values():
            for nb in dev.ospf_neighbors:
                other = self._device_by_router_id(nb.router_id)
                link = self._link_of_interface(f"{dev.name}:{nb.interface}")
                full = (other is not None and link is not None and self._link_passes(link)
                        and frozenset((dev.name, other)) not in self.ospf_down)
                if full and nb.state != "Full":
                    nb.state, nb.adjacency_since, nb.state_changes = "Full", now, nb.state_changes + 1
                elif not full and nb.state == "Full":
                    nb.state, nb.adjacency_since, nb.state_changes = "Down", None, nb.state_changes + 1
        self._reachable = self._compute_reachable()

    def _device_by_router_id(self, rid: str) -> str | None:
        return next((d.name for d in self.devices.values() if d.router_id == rid), None)

    def _compute_reachable(self) -> set[str]:
        linked = {end[0] for link in self.links.values() for end in (link.a, link.b)}
        direct = [*self.scenario.console.attach, *(d for d in self.devices if d not in linked)]
        start = list(dict.fromkeys(d for d in direct if self.powered[d]))
        return self._spread(start)

    def _spread(self, start: list[str]) -> set[str]:
        """Every device reached from ``start`` over working links (one pass over the links, then a walk)."""
        near: defaultdict[str, list[str]] = defaultdict(list)
        for link in self.links.values():
            if self._link_passes(link):
                near[link.a[0]].append(link.b[0])
                near[link.b[0]].append(link.a[0])
        seen, queue = set(start), deque(start)
        while queue:
            for there in near[queue.popleft()]:
                if there not in seen:
                    seen.add(there)
                    queue.append(there)
        return seen

    def ping(self, source: str, target: str) -> float | None:
        """One echo from a router: a lab address answers across working links; anything else
        answers through an established transit session on a reachable edge router."""
        if not self.powered.get(source):
            return None
        self._apply_due()
        near = self._reachable_from(source)
        rng = random.Random()
        for dev in self.devices.values():
            if target == dev.address or any(a.address.split("/")[0] == target for a in dev.addresses):
                if dev.name not in near:
                    return None
                return round(0.3 + 0.4 * len(near) ** 0.5 + rng.uniform(0, 0.4), 2)
        for dev in self.devices.values():
            if dev.name not in near:
                continue
            for peer in dev.bgp_peers:
                if peer.state == "established" and (target == peer.remote_address or not self._is_peer_address(target)):
                    congested = any(lk.congestion for lk in self.links.values())
                    return round(rng.uniform(7.0, 14.0) + (rng.uniform(20, 80) if congested else 0.0), 2)
        return None

    def traceroute(self, source: str, target: str, max_hops: int) -> list[tuple[str | None, float | None]]:
        """The hops of a traceroute from ``source``: (address, RTT in ms) each, (None, None) for a silent hop.

        The path is the shortest one over every link, down ones too: the routes the network had while it was
        whole, which is where the packets still go until routing moves them. A hop answers from the address
        of the interface the probe came in on (the last hop: ``target`` itself) while every link up to it
        passes and it is powered; a hung router forwards but never answers. From the first broken link or
        powered-off router on, every hop is silent, up to ``max_hops``, as on a real router. An address
        outside the lab has no path: every hop is silent.
        """
        self._apply_due()
        owner = next((d.name for d in self.devices.values()
                      if target == d.address or any(a.address.split("/")[0] == target for a in d.addresses)), None)
        path = self.path(source, owner) if owner is not None else None
        if path == [] and self.powered.get(source, False):
            return [(target, 0.05)]  # its own address: one hop, the router itself
        hops: list[tuple[str | None, float | None]] = []
        broken = path is None or not self.powered.get(source, False)
        rng = random.Random()
        for n, (device, link, interface) in enumerate(path or [], start=1):
            if len(hops) >= max_hops:
                return hops
            broken = broken or not self._link_passes(link) or not self.powered[device]
            if broken or device in self.hung:
                hops.append((None, None))
                continue
            last = n == len(path or [])
            address = target if last else next(
                (a.address.split("/")[0] for a in self.devices[device].addresses if a.interface == interface), None)
            hops.append((address, round(0.3 + 0.25 * n + rng.uniform(0, 0.2), 2)))
        if broken:
            hops += [(None, None)] * (max_hops - len(hops))
        return hops

    def path(self, source: str, target: str) -> list[tuple[str, LinkState, str]] | None:
        """The shortest path over every link, up or down: (device, link taken to it, its interface on that
        link) per hop after ``source``; ``[]`` when source is target, None when no link joins them."""
        if source == target:
            return []
        came: dict[str, tuple[str, LinkState, str]] = {}
        queue = deque([source])
        seen = {source}
        while queue:
            here = queue.popleft()
            for link in self.links.values():
                for (near, _), (far, far_itf) in ((link.a, link.b), (link.b, link.a)):
                    if near == here and far not in seen:
                        seen.add(far)
                        came[far] = (here, link, far_itf)
                        queue.append(far)
        if target not in came:
            return None
        hops: list[tuple[str, LinkState, str]] = []
        node = target
        while node != source:
            prev, link, itf = came[node]
            hops.append((node, link, itf))
            node = prev
        return hops[::-1]

    def _is_peer_address(self, target: str) -> bool:
        return any(p.remote_address == target for d in self.devices.values() for p in d.bgp_peers)

    def _reachable_from(self, start: str) -> set[str]:
        return self._spread([start])


# ---- the lab routers' configuration ------------------------------------------------


def lab_secret(owner: str, section: str, n: int) -> str:
    """A deterministic secret (a BGP MD5 key, an OSPF key, a community): the n-th one of its owner."""
    return hashlib.sha256(f"ispvm-lab:{owner}:{section}:{n}".encode()).hexdigest()[:20]


def _base_config(name: str, lab: LabSettings) -> SimConfig:
    users = [SimUser(lab.username, "full", lab.password)]
    if lab.username != "noc":
        users.append(SimUser("noc", "read", lab_secret(name, "user", 0)))
    return SimConfig(
        ntp_servers=["192.0.2.123", "198.51.100.123"],
        dns_servers=["192.0.2.53", "198.51.100.53"],
        communities=[SimCommunity(lab.community), SimCommunity(f"noc-{lab_secret(name, 'system', 0)}", "10.0.0.0/8")],
        users=users,
        firewall=[
            SimFirewallRule("input", "accept", {"connection-state": "established,related,untracked"},
                            comment="accept established,related,untracked"),
            SimFirewallRule("input", "drop", {"connection-state": "invalid"}, comment="drop invalid"),
            SimFirewallRule("input", "accept", {"protocol": "icmp"}, comment="accept ICMP"),
            SimFirewallRule("input", "accept", {"src-address": "10.0.0.0/8"}, comment="management and routing"),
            SimFirewallRule("input", "drop", comment="drop all else"),
            SimFirewallRule("forward", "fasttrack-connection", {"connection-state": "established,related"},
                            comment="fasttrack"),
            SimFirewallRule("forward", "accept", {"connection-state": "established,related,untracked"}),
            SimFirewallRule("forward", "drop", {"connection-state": "invalid"}),
        ],
    )


def _bgp_filters() -> list[SimRouteFilter]:
    return [
        SimRouteFilter("bgp-in", "discard", "10.0.0.0/8", "8-32"),
        SimRouteFilter("bgp-in", "discard", "192.168.0.0/16", "16-32"),
        SimRouteFilter("bgp-in", "accept"),
        SimRouteFilter("bgp-out", "accept", "203.0.113.0/24"),
        SimRouteFilter("bgp-out", "discard"),
    ]


def _add_ospf_template(dev: SimDevice, interface: str, key: str) -> None:
    if any(t.interface == interface for t in dev.config.ospf_templates):
        return
    address = next((a for a in dev.addresses if a.interface == interface), None)
    network = f"{address.network}/{address.address.partition('/')[2]}" if address else ""
    dev.config.ospf_templates.append(SimOspfTemplate(interface, network, auth_key=key))


def _link_net(k: int) -> str:
    """The first three octets of link k's /30: 10.0.k for the first 256 links, then 10.1.0, 10.1.1, ...

    (10.254.0.0/16 is the customer pools' static route, so links stop short of it.)
    """
    if k >= 254 * 256:
        raise ValueError(f"the lab addresses at most {254 * 256} links")
    return f"10.{k // 256}.{k % 256}"


def _gateway(dev: SimDevice) -> str:
    """The far end of the device's first link, else its first interface (a static route needs a gateway)."""
    for addr in dev.addresses:
        iface = ipaddress.IPv4Interface(addr.address)
        hosts = [h for h in iface.network.hosts() if h != iface.ip]
        if hosts:
            return str(hosts[0])
    return next(iter(dev.interfaces), "ether1")


def _sfp_module(rng: random.Random) -> SimSfp:
    """A short-reach module with readings a little different in every cage, as real ones are."""
    return SimSfp(temperature_c=round(rng.uniform(33.0, 45.0), 1), supply_v=round(rng.uniform(3.25, 3.35), 3),
                  tx_bias_ma=round(rng.uniform(5.5, 8.0), 1), tx_power_dbm=round(rng.uniform(-3.0, -1.5), 2),
                  rx_power_dbm=round(rng.uniform(-4.5, -2.0), 2))
