"""State of one simulated router, as the lab's protocol servers see it.

The lab model (``lab/model.py``) owns these objects and moves them along the
scenario timeline; the RouterOS API server and the SNMP agent only *render*
them (``routeros_menus.py``, ``snmp_mibs.py``). Counters are advanced by the
model before a server reads them, so a server never computes traffic itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Port names that are SFP/SFP+/QSFP cages on MikroTik boards (a combo port takes an SFP too).
SFP_PREFIXES = ("sfp", "qsfp", "combo")


@dataclass
class SimSfp:
    """The module in an SFP cage, as its diagnostics (DOM) read. ``rx_power_dbm`` is the light arriving while
    the fibre carries it; with the link cut or the far end off the receiver sees none (rx-loss)."""

    present: bool = True
    vendor: str = "MikroTik"
    part_number: str = "S+85DLC03D"
    wavelength_nm: float = 850.0
    temperature_c: float = 38.0
    supply_v: float = 3.3
    tx_bias_ma: float = 6.5
    tx_power_dbm: float = -2.5
    rx_power_dbm: float = -3.1


@dataclass
class SimLte:
    """An LTE modem's radio link as ``/interface/lte/monitor`` (v7) or ``info`` (v6) reports it."""

    rssi_dbm: float = -71.0
    rsrp_dbm: float = -95.0
    rsrq_db: float = -9.0
    sinr_db: float = 14.0
    cell_id: str = "2100006"
    technology: str = "LTE"


@dataclass
class SimDhcpServer:
    """A DHCP server with ``leases`` leases (``bound`` of them bound) taken from its pool's ``ranges``."""

    name: str
    interface: str
    pool: str
    ranges: str  # as /ip/pool prints them: "10.20.0.10-10.20.0.250"
    leases: int = 0
    bound: int = 0


NO_LIGHT_DBM = -40.0  # what a module's receiver reports with nothing arriving


@dataclass
class SimInterface:
    name: str
    ifindex: int
    mac: str
    type: str = "ether"
    mtu: int = 1500
    speed_bps: int = 1_000_000_000
    comment: str = ""
    disabled: bool = False  # admin state: disabled = admin down
    running: bool = True  # oper state
    rx_bytes: int = 0  # 64-bit, never reset except by reboot
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0
    link_downs: int = 0
    last_change: float = 0.0  # epoch seconds of the last oper change
    # RouterOS rx-error / tx-error / rx-drop / tx-drop / tx-queue-drop: a trickle normally,
    # tx-queue-drop climbs while the link is congested (the model decides how much).
    rx_errors: int = 0
    tx_errors: int = 0
    rx_drops: int = 0
    tx_drops: int = 0
    tx_queue_drops: int = 0
    sfp: SimSfp | None = None  # an SFP cage (empty when not present); None: a copper port
    lte: SimLte | None = None  # an LTE interface's modem
    # Fractions of a packet not counted yet, per counter: the model advances many times a second,
    # and rounding each small step down would lose a slow counter's every increment.
    _carry: dict[str, float] = field(default_factory=dict, repr=False, compare=False)

    def sfp_rx_dbm(self) -> float | None:
        """The module's receive power now: its level with the link up, no light with it down."""
        if self.sfp is None or not self.sfp.present:
            return None
        return self.sfp.rx_power_dbm if self.running else NO_LIGHT_DBM

    def count(self, counter: str, amount: float) -> None:
        """Add ``amount`` (possibly fractional) packets to one of the error/drop counters."""
        total = self._carry.get(counter, 0.0) + amount
        whole = int(total)
        self._carry[counter] = total - whole
        if whole:
            setattr(self, counter, getattr(self, counter) + whole)


@dataclass
class SimAddress:
    address: str  # "10.0.0.1/30"
    network: str  # "10.0.0.0"
    interface: str


@dataclass
class SimBgpPeer:
    name: str  # "UPSTREAM1"
    remote_address: str
    remote_as: int
    local_as: int
    provider: str = ""
    disabled: bool = False
    # RouterOS state words: "established", "idle", "active", "connect", "opensent", "openconfirm"
    state: str = "established"
    established_since: float | None = None
    prefix_count: int = 0
    hold_time_s: int = 180  # configured hold-time (RouterOS prints 3m)
    tcp_md5_key: str = field(default="", repr=False)  # a secret: served like RouterOS does, never to be kept


@dataclass
class SimOspfNeighbor:
    router_id: str
    address: str
    interface: str
    state: str = "Full"  # RouterOS words: Full, Down, Init, 2-Way, ExStart, Exchange, Loading
    state_changes: int = 1
    adjacency_since: float | None = None


@dataclass
class SimNeighbor:
    """One /ip/neighbor row (MNDP/LLDP discovery of a directly attached router)."""

    interface: str
    identity: str
    address: str
    mac: str
    platform: str = "MikroTik"
    version: str = ""
    board: str = ""
    interface_name: str = ""  # the remote side's interface


@dataclass
class SimWirelessClient:
    """A station registered to the device's access point; its signal drifts with time, as stations move."""

    mac: str
    interface: str
    ssid: str
    signal_dbm: float  # the middle of its drift
    tx_rate_mbps: float
    rx_rate_mbps: float
    since: float  # clock time it registered
    phase: float = 0.0

    def signal_at(self, now: float) -> int:
        return round(self.signal_dbm + 6 * math.sin(now / 90.0 + self.phase))


@dataclass
class SimSensor:
    """One /system/health reading beyond the board temperature and supply voltage."""

    name: str  # RouterOS sensor name: "fan1-speed", "psu1-state", "cpu-temperature", "power-consumption"
    value: float | None = None  # None for state-only sensors
    unit: str = ""  # v7 ``type``: "C", "V", "A", "W", "RPM"; empty for states
    state: str = ""  # "ok" / "fail" for PSU states


def default_sensors() -> list[SimSensor]:
    """What a dual-PSU CCR reports: a CPU sensor, two fans and two power supplies."""
    return [
        SimSensor("cpu-temperature", 52.0, "C"),
        SimSensor("fan1-speed", 5880, "RPM"),
        SimSensor("fan2-speed", 5940, "RPM"),
        SimSensor("psu1-state", state="ok"),
        SimSensor("psu2-state", state="ok"),
    ]


@dataclass
class SimFirewallRule:
    """One /ip/firewall/filter rule: chain, action and its matchers under their RouterOS names."""

    chain: str
    action: str
    match: dict[str, str] = field(default_factory=dict)  # {"protocol": "tcp", "dst-port": "22"}
    comment: str = ""
    disabled: bool = False


@dataclass
class SimStaticRoute:
    dst_address: str
    gateway: str
    distance: int = 1
    comment: str = ""


@dataclass
class SimRouteFilter:
    """A BGP route filter: v6 renders it as a /routing/filter row, v7 as a /routing/filter/rule text."""

    chain: str
    action: str  # "accept" or "discard"
    prefix: str = ""  # matches everything when empty
    prefix_length: str = ""  # "8-32"


@dataclass
class SimCommunity:
    name: str = field(repr=False)  # the community string is a password
    addresses: str = "0.0.0.0/0"
    read_access: bool = True
    write_access: bool = False


@dataclass
class SimUser:
    name: str
    group: str  # "full", "read", "write"
    password: str = field(default="", repr=False)  # never served: the RouterOS API does not return it


@dataclass
class SimOspfTemplate:
    """OSPF on one interface: a v7 interface-template, a v6 interface plus network entry."""

    interface: str
    network: str = ""  # the interface's subnet, "10.0.1.0/30"
    area: str = "backbone"
    cost: int = 10
    auth_key: str = field(default="", repr=False)  # a secret (v6 authentication-key, v7 auth-key)


@dataclass
class SimConfig:
    """What the router is configured to do, beyond its interfaces, addresses and BGP peers.

    Rendered by ``routeros_menus`` for the configuration menus; the scenario
    actions ``config_change`` and ``secret_change`` edit it. ``changes``
    counts the changes per section, so every change makes a new configuration.
    """

    ntp_servers: list[str] = field(default_factory=list)
    dns_servers: list[str] = field(default_factory=list)
    time_zone: str = "UTC"
    communities: list[SimCommunity] = field(default_factory=list)
    users: list[SimUser] = field(default_factory=list)
    firewall: list[SimFirewallRule] = field(default_factory=list)
    static_routes: list[SimStaticRoute] = field(default_factory=list)
    route_filters: list[SimRouteFilter] = field(default_factory=list)
    ospf_templates: list[SimOspfTemplate] = field(default_factory=list)
    changes: dict[str, int] = field(default_factory=dict)


@dataclass
class SimDevice:
    name: str
    address: str  # management address on loopback, e.g. 127.77.0.2
    ros_major: int  # 6 or 7: decides which menus exist and their shape
    version: str  # "7.16.2", "6.49.10"
    board: str = "CCR2004-16G-2S+"
    # RouterBOARD current-firmware; None: the RouterOS version's (upgraded after the last RouterOS upgrade)
    firmware: str | None = None
    architecture: str = "arm64"
    serial: str = "HEX0000000"
    boot_time: float = 0.0  # epoch seconds of the last boot
    cpu_load: int = 3  # percent
    total_memory: int = 4 * 1024**3
    free_memory: int = 3 * 1024**3
    temperature_c: float = 41.0
    voltage_v: float = 24.1
    router_id: str = ""
    interfaces: dict[str, SimInterface] = field(default_factory=dict)
    addresses: list[SimAddress] = field(default_factory=list)
    bgp_peers: list[SimBgpPeer] = field(default_factory=list)
    ospf_neighbors: list[SimOspfNeighbor] = field(default_factory=list)
    neighbors: list[SimNeighbor] = field(default_factory=list)
    route_count: int = 12
    # extra health sensors (CHR/x86 boards report none, whatever is listed here)
    sensors: list[SimSensor] = field(default_factory=default_sensors)
    wireless: list[SimWirelessClient] = field(default_factory=list)  # empty: no wireless package
    dhcp_servers: list[SimDhcpServer] = field(default_factory=list)
    # configuration beyond the fields above (identity is the name, interface comments and MTU are the interfaces')
    config: SimConfig = field(default_factory=SimConfig)

    def uptime(self, now: float) -> float:
        return max(0.0, now - self.boot_time)

    def interface_by_index(self, ifindex: int) -> SimInterface | None:
        for itf in self.interfaces.values():
            if itf.ifindex == ifindex:
                return itf
        return None


def format_ros_duration(seconds: float) -> str:
    """RouterOS duration words: 1w2d3h4m5s (no zero parts, '0s' for zero)."""
    s = int(max(0, seconds))
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    if s or not parts:
        parts.append(f"{s}s")
    return "".join(parts)


STATE_STEP_S = 0.25  # simulated seconds: requests closer together than this share one counter step


class RouterHandle:
    """What a protocol server needs of one lab router.

    ``answering()`` is False while the router is powered off, cut off from
    the monitoring host or hung: servers then behave like a black hole (read,
    never reply), which is what a poller sees across a dead path.
    ``rejecting()`` is True when, instead, the API server should reset the
    connection (a routed lab, ``[lab] unreachable = "reject"``).
    """

    def __init__(self, device: SimDevice, username: str, password: str, model: LabModelLike) -> None:
        self.device = device
        self.username = username
        self.password = password
        self._model = model

    @property
    def name(self) -> str:
        return self.device.name

    def now(self) -> float:
        return self._model.now()

    def answering(self) -> bool:
        return self._model.answering(self.device.name)

    def rejecting(self) -> bool:
        return self._model.rejecting(self.device.name)

    def state(self) -> SimDevice:
        """The device with its counters advanced to now (to within the model's step)."""
        self._model.advance_device(self.device.name, min_step=STATE_STEP_S)
        return self.device

    def ping(self, target: str) -> float | None:
        """Round-trip time in ms of one echo from this router to ``target``, or None if lost."""
        return self._model.ping(self.device.name, target)

    def traceroute(self, target: str, max_hops: int) -> list[tuple[str | None, float | None]]:
        """(address, RTT ms) per hop from this router to ``target``; (None, None) for a silent hop."""
        return self._model.traceroute(self.device.name, target, max_hops)


class LabModelLike:
    """The slice of the lab model a RouterHandle uses (see lab/model.py)."""

    def now(self) -> float:
        raise NotImplementedError

    def answering(self, device: str) -> bool:
        raise NotImplementedError

    def rejecting(self, device: str) -> bool:
        return False  # a model without a routed network only ever drops

    def advance(self, min_step: float = 0.0) -> None:
        raise NotImplementedError

    def advance_device(self, device: str, min_step: float = 0.0) -> None:
        """Move one router's counters to now; a model without per-router state moves everything."""
        self.advance(min_step)

    def ping(self, source: str, target: str) -> float | None:
        raise NotImplementedError

    def traceroute(self, source: str, target: str, max_hops: int) -> list[tuple[str | None, float | None]]:
        """A model without a topology has no path: every hop is silent."""
        return [(None, None)] * max_hops
