"""What a poll returns: plain, immutable values shared by every collector.

Collectors never raise for a router's misbehaviour: a timeout, refused
connection, failed login or malformed reply becomes a PollResult with
``ok=False`` (device level) or a ``stale`` entry (one family), so one bad
router or one missing menu never stops anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# "unreachable": the device could not be reached (no route, network down, connection reset or
# closed under us), as opposed to "timeout" (nothing came back) and "refused" (service off).
# "slow": the poll timed out although the device answered a reachability check just before: it is there.
ErrorKind = Literal["timeout", "refused", "unreachable", "auth", "protocol", "tls", "error", "slow"]


@dataclass(frozen=True, slots=True)
class SystemInfo:
    identity: str | None = None  # /system/identity or sysName
    version: str | None = None  # "7.16.2"
    board: str | None = None
    uptime_s: float | None = None
    cpu_load: int | None = None  # percent
    total_memory: int | None = None  # bytes
    free_memory: int | None = None
    descr: str | None = None  # sysDescr
    object_id: str | None = None  # sysObjectID
    temperature_c: float | None = None  # /system/health (board or CPU sensor)
    voltage_v: float | None = None  # /system/health supply voltage
    firmware: str | None = None  # /system/routerboard current-firmware (RouterBOARDs only)
    firmware_upgrade: str | None = None  # upgrade-firmware: what the installed RouterOS carries


@dataclass(frozen=True, slots=True)
class InterfaceStat:
    name: str
    ifindex: int | None = None
    type: str | None = None
    admin_up: bool | None = None
    oper_up: bool | None = None
    speed_bps: int | None = None
    mtu: int | None = None
    mac: str | None = None
    alias: str | None = None  # RouterOS comment / ifAlias
    rx_bytes: int | None = None
    tx_bytes: int | None = None
    rx_packets: int | None = None
    tx_packets: int | None = None
    counter_bits: int = 64  # 32 when only ifInOctets/ifOutOctets were available
    link_downs: int | None = None
    # Packets the interface could not receive intact / could not send (RouterOS rx-error/tx-error,
    # IF-MIB ifIn/OutErrors) and packets dropped though intact (RouterOS rx-drop, tx-drop plus
    # tx-queue-drop; ifIn/OutDiscards). Over SNMP these are always Counter32: IF-MIB has no HC variant.
    rx_errors: int | None = None
    tx_errors: int | None = None
    rx_discards: int | None = None
    tx_discards: int | None = None


@dataclass(frozen=True, slots=True)
class IpAddress:
    address: str  # "10.0.0.1/30"
    interface: str
    network: str | None = None


@dataclass(frozen=True, slots=True)
class BgpSession:
    name: str  # peer/connection name as configured on the router, e.g. "UPSTREAM1"
    remote_address: str | None
    remote_as: int | None
    state: str  # lower-case RouterOS/BGP4-MIB word: established, idle, active, connect, ...
    established: bool
    local_as: int | None = None
    uptime_s: float | None = None
    prefixes: int | None = None
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class OspfNeighbor:
    router_id: str
    address: str | None
    interface: str | None
    state: str  # "full", "down", "init", "2-way", ...
    full: bool


@dataclass(frozen=True, slots=True)
class HealthSensor:
    """One health reading: RouterOS /system/health row or a MIKROTIK-MIB gauge."""

    name: str  # as the device names it: "temperature", "cpu-temperature", "voltage", "fan1-speed", "psu1-state"
    value: float | None  # None for state-only sensors
    unit: str | None = None  # "C", "V", "A", "W", "RPM", "%"; None for states
    state: str | None = None  # "ok" / "fail" for PSU and fan states where the device reports one


@dataclass(frozen=True, slots=True)
class Neighbor:
    """A directly attached device as discovery protocols see it (MNDP/LLDP/CDP, LLDP-MIB)."""

    local_interface: str
    remote_identity: str | None = None
    remote_interface: str | None = None
    remote_address: str | None = None
    remote_mac: str | None = None
    platform: str | None = None
    protocol: str | None = None  # "mndp", "lldp", "cdp" where known


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """A ping run *from* the router to a configured target."""

    target: str
    sent: int
    received: int
    loss_pct: float
    rtt_min_ms: float | None = None
    rtt_avg_ms: float | None = None
    rtt_max_ms: float | None = None
    jitter_ms: float | None = None  # mean absolute difference of consecutive RTTs
    error: str | None = None  # the router refused or failed the probe


@dataclass(frozen=True, slots=True)
class WirelessClient:
    """A station registered to one of the device's wireless interfaces (MIKROTIK-MIB mtxrWlRtabTable)."""

    interface: str | None
    mac: str
    signal_dbm: float | None = None
    tx_rate_bps: int | None = None
    rx_rate_bps: int | None = None
    uptime_s: float | None = None
    ssid: str | None = None  # the RouterOS API names it; MIKROTIK-MIB's registration table does not


@dataclass(frozen=True, slots=True)
class OpticalModule:
    """An SFP/SFP+/QSFP cage and the diagnostics (DOM) of the module in it.

    RouterOS ``/interface/ethernet/monitor`` (``sfp-*``) or MIKROTIK-MIB mtxrOpticalTable. An empty cage is
    ``present=False`` with every reading None: RouterOS and its MIB report an empty cage as zeros, and 0 dBm
    would read as a strong signal.
    """

    interface: str
    present: bool = True
    rx_loss: bool | None = None  # loss of signal at the receiver
    tx_fault: bool | None = None
    rx_power_dbm: float | None = None
    tx_power_dbm: float | None = None
    temperature_c: float | None = None
    supply_v: float | None = None
    tx_bias_ma: float | None = None
    wavelength_nm: float | None = None
    vendor: str | None = None  # the RouterOS API names it; MIKROTIK-MIB does not
    part_number: str | None = None


@dataclass(frozen=True, slots=True)
class LteSignal:
    """An LTE interface's radio link: RouterOS ``/interface/lte/monitor`` (v7) or ``info`` (v6), or
    MIKROTIK-MIB mtxrLTEModemTable. RSRP is the signal's power, RSRQ its quality, SINR how far it stands above
    noise and interference."""

    interface: str
    rssi_dbm: float | None = None
    rsrp_dbm: float | None = None
    rsrq_db: float | None = None
    sinr_db: float | None = None
    cell_id: str | None = None
    technology: str | None = None  # "LTE", "Evolved 3G (LTE)", "5G NSA" as the modem says


@dataclass(frozen=True, slots=True)
class DhcpServer:
    """One DHCP server's lease counts and its pool's use (counted on the router, never each lease).

    Over SNMP MIKROTIK-MIB has only the total lease count: one entry named ``ALL_SERVERS``."""

    name: str
    interface: str | None = None
    leases: int | None = None
    bound: int | None = None
    pool: str | None = None
    pool_size: int | None = None  # addresses in the pool's ranges
    pool_used: int | None = None


ALL_SERVERS = "all servers"


@dataclass(frozen=True, slots=True)
class StorageUse:
    """One HOST-RESOURCES-MIB hrStorageTable row, in bytes."""

    name: str
    kind: str  # "ram" | "disk" | "other"
    size_bytes: int | None
    used_bytes: int | None


@dataclass(frozen=True, slots=True)
class PollResult:
    device: str
    collector: Literal["api", "snmp"]
    started_at: float  # clock epoch seconds
    duration_s: float  # real seconds the poll took
    ok: bool
    error: str | None = None  # human-readable, never contains a secret
    error_kind: ErrorKind | None = None
    system: SystemInfo | None = None
    interfaces: tuple[InterfaceStat, ...] = ()
    addresses: tuple[IpAddress, ...] = ()
    bgp: tuple[BgpSession, ...] | None = None  # None = not collected (or stale)
    ospf: tuple[OspfNeighbor, ...] | None = None
    sensors: tuple[HealthSensor, ...] | None = None
    neighbors: tuple[Neighbor, ...] | None = None
    probes: tuple[ProbeResult, ...] = ()
    route_count: int | None = None  # counted on the router, never fetched
    # family -> reason, for families that failed while the device answered
    stale: dict[str, str] = field(default_factory=dict)
    wireless: tuple[WirelessClient, ...] | None = None  # None = not collected (or stale)
    storage: tuple[StorageUse, ...] | None = None
    optics: tuple[OpticalModule, ...] | None = None  # SFP cages; None = not collected (or stale)
    lte: tuple[LteSignal, ...] | None = None  # LTE interfaces; None = not collected (none there, or stale)
    dhcp: tuple[DhcpServer, ...] | None = None  # DHCP servers; None = not collected (or stale)


@dataclass(frozen=True)
class ConfigRead:
    """One read of a device's configuration menus (``read_config``), raw: secrets may be in ``menus``.

    ``engine.config_normalise.normalise`` turns ``menus`` into the canonical,
    secret-free text that is fingerprinted; nothing else should keep the rows.
    A menu the device does not have is absent, and so is every menu of a
    category one of whose menus failed to read: a category is read whole or
    not at all, so a passing failure never looks like a configuration change.
    """

    device: str
    collector: Literal["api", "snmp"]  # the values PollResult.collector uses
    started_at: float  # clock epoch seconds
    ok: bool
    menus: dict[str, list[dict[str, str]]] = field(default_factory=dict, repr=False)
    error: str | None = None  # human-readable, never contains a secret
