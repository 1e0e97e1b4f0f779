"""Walked and fetched SNMP values turned into results: system, interfaces, storage, health, LLDP, BGP, OSPF, wireless.

Pure functions of what ``snmp.SnmpCollector`` fetched (scalars by OID and
``_Walk`` columns) and of the definitions in ``snmp_mibs``: no request, no
socket. Values are the plain ones ``snmp_wire`` decodes to (SNMPv3 replies are
converted to the same by ``snmp_v3``). Names with a leading underscore are
shared by the ``collectors/snmp*.py`` modules only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ispvm_tui.collectors.results import (
    BgpSession,
    HealthSensor,
    InterfaceStat,
    LteSignal,
    Neighbor,
    OpticalModule,
    OspfNeighbor,
    StorageUse,
    SystemInfo,
    WirelessClient,
)
from ispvm_tui.collectors.snmp_mibs import (
    _ADDRESS_IPV4,
    _ADDRESS_IPV6,
    _ADMIN_STATUS,
    _BGP_ADMIN_STOP,
    _BGP_ESTABLISHED,
    _BGP_STATES,
    _CHASSIS_MAC,
    _GAUGE_CELSIUS,
    _GAUGE_DECIVOLT,
    _GAUGE_STATES,
    _GAUGE_STATUS,
    _GAUGE_UNITS,
    _HEALTH_SCALARS,
    _HR_STORAGE_RAM,
    _IF_TYPE_NAMES,
    _LLDP_LOC_COLUMNS,
    _LLDP_REM_COLUMNS,
    _OSPF_FULL,
    _OSPF_STATES,
    _PORT_INTERFACE_NAME,
    _PORT_MAC,
    _PORT_NAMING_SUBTYPES,
    _STORAGE_KINDS,
    _SYSTEM_OIDS,
    Oid,
    _HealthScalar,
    _Table,
)

_MAC_TEXT = re.compile(r"[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}")


@dataclass
class _Walk:
    """Columns of one table walk: column name -> {instance suffix: value}."""

    columns: dict[str, dict[Oid, Any]]
    errors: list[str] = field(default_factory=list)  # columns the agent refused

    @classmethod
    def empty(cls, table: _Table) -> _Walk:
        return cls({name: {} for name in table.columns})


def _lacks_64bit_counters(if_walk: _Walk | None, ifx_walk: _Walk | None) -> bool:
    """True if some interface has no ifHCInOctets (32-bit agent, SNMPv1, odd row)."""
    indexes = {index for walk in (if_walk, ifx_walk) if walk for column in walk.columns.values() for index in column}
    hc = ifx_walk.columns["hc_in_octets"] if ifx_walk else {}
    return any(index not in hc for index in indexes)


def _dotted(oid: Sequence[int]) -> str:
    return ".".join(str(c) for c in oid)


# -- value decoding ---------------------------------------------------------
# Agents do send the wrong type now and then: a value that does not fit its
# column reads as missing rather than failing the whole poll.


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return None if value is None else str(value)


def _number(value: Any) -> str:
    number = _int(value)
    return "" if number is None else str(number)


def _admin_status(value: Any) -> str:
    status = _int(value)
    return "" if status is None else _ADMIN_STATUS.get(status, str(status))


def _octets(value: Any) -> bytes:
    """An OCTET STRING's bytes; b"" for any other type."""
    return value if isinstance(value, bytes) else b""


def _mac(value: Any) -> str | None:
    raw = _octets(value)
    return ":".join(f"{b:02X}" for b in raw) if raw else None


def _system_info(scalars: dict[Oid, Any], got: dict[str, _Walk | None]) -> SystemInfo:
    def scalar(key: str) -> Any:
        return scalars.get(_SYSTEM_OIDS[key])

    descr = _text(scalar("descr"))
    uptime = _int(scalar("uptime"))
    object_id = scalar("object_id")
    total, free = _ram(got.get("hrStorageTable"))
    gauges = _gauges(got.get("mtxrGaugeTable"))
    return SystemInfo(
        identity=_text(scalar("name")),
        version=_text(scalar("version")),
        board=_board(descr, _text(scalar("board"))),
        uptime_s=uptime / 100 if uptime is not None else None,
        cpu_load=_cpu_load(got.get("hrProcessorTable")),
        total_memory=total,
        free_memory=free,
        descr=descr,
        object_id=str(object_id) if object_id is not None else None,
        # The gauge table's board sensor first; the classic scalars are missing on some v7 boards.
        temperature_c=_first(
            gauges.get(("temperature", _GAUGE_CELSIUS)),
            _tenths(_int(scalar("temperature"))),
            gauges.get(("cpu-temperature", _GAUGE_CELSIUS)),
            _tenths(_int(scalar("cpu_temperature"))),
        ),
        voltage_v=_first(
            _tenths(gauges.get(("voltage", _GAUGE_DECIVOLT))),
            _tenths(_int(scalar("voltage"))),
        ),
    )


def _gauges(walk: _Walk | None) -> dict[tuple[str, int], float]:
    """mtxrGaugeTable as {(name, unit): raw value}."""
    if walk is None:
        return {}
    cols = walk.columns
    out: dict[tuple[str, int], float] = {}
    for index, name in cols["name"].items():
        value, unit = _int(cols["value"].get(index)), _int(cols["unit"].get(index))
        if value is not None and unit is not None:
            out.setdefault((_text(name) or "", unit), float(value))
    return out


def _tenths(value: float | None) -> float | None:
    return None if value is None else value / 10


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def _board(descr: str | None, board_name: str | None) -> str | None:
    # RouterOS >= 6.41 puts the board in sysDescr ("RouterOS RB750Gr3"); older
    # ones say just "router", where only v7's mtxrBoardName would help.
    if descr and descr.startswith("RouterOS "):
        return descr.removeprefix("RouterOS ").strip() or board_name
    return board_name


def _cpu_load(cpu: _Walk | None) -> int | None:
    loads = [load for v in cpu.columns["load"].values() if (load := _int(v)) is not None] if cpu else []
    return round(sum(loads) / len(loads)) if loads else None


def _ram(storage: _Walk | None) -> tuple[int | None, int | None]:
    if storage is None:
        return None, None
    cols = storage.columns
    for index in sorted(cols["type"]):
        if str(cols["type"][index]) != _HR_STORAGE_RAM:
            continue
        units, size, used = (_int(cols[c].get(index)) for c in ("units", "size", "used"))
        if units is None or size is None:
            return None, None
        free = (size - used) * units if used is not None else None
        return size * units, free
    return None, None


def _storage(walk: _Walk | None) -> tuple[StorageUse, ...] | None:
    """Every hrStorageTable row (RAM, disks, tmpfs...), sizes in bytes; None without the table.

    An agent that implements hrStorageTable lists at least its memory, so a
    walk without rows means the device lacks HOST-RESOURCES storage.
    """
    if walk is None:
        return None
    cols = walk.columns
    rows = sorted({index for values in cols.values() for index in values})
    return tuple(_storage_use(index, cols) for index in rows) or None


def _storage_use(index: Oid, cols: dict[str, dict[Oid, Any]]) -> StorageUse:
    units, size, used = (_int(cols[c].get(index)) for c in ("units", "size", "used"))
    kind = cols["type"].get(index)
    return StorageUse(
        name=_text(cols["descr"].get(index)) or f"hrStorage {_dotted(index)}",
        kind=_STORAGE_KINDS.get(tuple(kind), "other") if isinstance(kind, tuple) else "other",
        size_bytes=size * units if size is not None and units is not None else None,
        used_bytes=used * units if used is not None and units is not None else None,
    )


_Getter = Callable[[str, Oid], Any]


def _interfaces(if_walk: _Walk | None, ifx_walk: _Walk | None, c32: _Walk | None) -> tuple[InterfaceStat, ...]:
    cols: dict[str, dict[Oid, Any]] = {}
    for walk in (if_walk, ifx_walk, c32):
        if walk is not None:
            cols.update(walk.columns)
    indexes = sorted({index for values in cols.values() for index in values})

    def get(column: str, index: Oid) -> Any:
        return cols.get(column, {}).get(index)

    return tuple(_interface(index, get) for index in indexes)


def _interface(index: Oid, get: _Getter) -> InterfaceStat:
    ifindex = index[0] if len(index) == 1 else None
    name = _text(get("name", index)) or _text(get("descr", index)) or f"ifIndex {_dotted(index)}"
    high_speed = _int(get("high_speed", index))
    speed = high_speed * 1_000_000 if high_speed is not None else _int(get("speed", index))
    if_type = _int(get("type", index))
    admin, oper = _int(get("admin", index)), _int(get("oper", index))
    bits, rx, tx, rx_pkts, tx_pkts = _counters(index, get)
    return InterfaceStat(
        name=name,
        ifindex=ifindex,
        type=_IF_TYPE_NAMES.get(if_type, f"iftype-{if_type}") if if_type is not None else None,
        admin_up=admin == 1 if admin is not None else None,
        oper_up=oper == 1 if oper is not None else None,
        speed_bps=speed,
        mtu=_int(get("mtu", index)),
        mac=_mac(get("mac", index)),
        alias=_text(get("alias", index)) or None,
        rx_bytes=rx,
        tx_bytes=tx,
        rx_packets=rx_pkts,
        tx_packets=tx_pkts,
        counter_bits=bits,
        rx_errors=_int(get("in_errors", index)),
        tx_errors=_int(get("out_errors", index)),
        rx_discards=_int(get("in_discards", index)),
        tx_discards=_int(get("out_discards", index)),
    )


def _counters(index: Oid, get: _Getter) -> tuple[int, int | None, int | None, int | None, int | None]:
    """(bits, rx bytes, tx bytes, rx packets, tx packets), all from one counter width.

    Packets are unicast + multicast + broadcast, i.e. everything, like RouterOS's
    rx-packet; the sum is reduced to the counter width so deltas stay modular.
    """
    if get("hc_in_octets", index) is not None:
        bits, prefix = 64, "hc_"
    else:
        bits, prefix = 32, ""

    def total(direction: str) -> int | None:
        ucast = _int(get(f"{prefix}{direction}_ucast", index))
        if ucast is None:
            return None
        if bits == 32 and get(f"{direction}_nucast", index) is not None:
            others = [_int(get(f"{direction}_nucast", index))]
        else:
            others = [_int(get(f"{prefix}{direction}_{kind}", index)) for kind in ("mcast", "bcast")]
        return (ucast + sum(v for v in others if v is not None)) % 2**bits

    rx = _int(get(f"{prefix}in_octets", index))
    tx = _int(get(f"{prefix}out_octets", index))
    return bits, rx, tx, total("in"), total("out")


def _ipv4(value: Any) -> str | None:
    if isinstance(value, str):  # an IpAddress
        return value
    raw = _octets(value)
    return str(ipaddress.IPv4Address(raw)) if len(raw) == 4 else None


# -- health sensors -----------------------------------------------------------


def _sensors(gauge_walk: _Walk | None, scalars: dict[Oid, Any]) -> tuple[HealthSensor, ...]:
    """mtxrGaugeTable rows, then the classic scalars for names the table does not have.

    Boards with both report the same reading twice (mtxrHlVoltage and the gauge
    "voltage"): one sensor per name, the table's, since it names its own sensors.
    """
    sensors = {sensor.name: sensor for sensor in _gauge_sensors(gauge_walk)}
    for scalar in _HEALTH_SCALARS:
        value = _int(scalars.get(scalar.oid))
        if value is not None and scalar.name not in sensors:
            sensors[scalar.name] = _scalar_sensor(scalar, value)
    return tuple(sensors.values())


def _gauge_sensors(walk: _Walk | None) -> list[HealthSensor]:
    if walk is None:
        return []
    cols = walk.columns
    out = []
    for index in sorted(cols["name"]):
        name, value, unit = _text(cols["name"][index]), _int(cols["value"].get(index)), _int(cols["unit"].get(index))
        if name and value is not None:
            out.append(_gauge_sensor(name, value, unit))
    return out


def _gauge_sensor(name: str, value: int, unit: int | None) -> HealthSensor:
    if unit == _GAUGE_STATUS:
        return HealthSensor(name, None, None, _GAUGE_STATES.get(value, str(value)))
    if unit not in _GAUGE_UNITS:
        return HealthSensor(name, float(value))  # a unit newer than this code: the raw number
    symbol, divisor = _GAUGE_UNITS[unit]
    if unit == _GAUGE_CELSIUS and value >= 2**31:
        # mtxrGaugeValue is an unsigned Gauge32: a sub-zero reading can only arrive as two's complement.
        value -= 2**32
    return HealthSensor(name, value / divisor, symbol)


def _scalar_sensor(scalar: _HealthScalar, value: int) -> HealthSensor:
    if scalar.unit is None:
        return HealthSensor(scalar.name, None, None, "ok" if value == 1 else "fail")
    return HealthSensor(scalar.name, value / scalar.divisor, scalar.unit)


# -- LLDP neighbours ------------------------------------------------------------


@dataclass(frozen=True)
class _PortNames:
    """The device's interfaces by ifIndex and by every label (ifName, ifDescr) LLDP may use."""

    by_index: dict[int, str]
    by_label: dict[str, str]

    @classmethod
    def of(cls, interfaces: tuple[InterfaceStat, ...], if_walk: _Walk | None) -> _PortNames:
        by_index = {itf.ifindex: itf.name for itf in interfaces if itf.ifindex is not None}
        by_label = {name: name for name in by_index.values()}
        for index, descr in (if_walk.columns["descr"] if if_walk else {}).items():
            label = _text(descr)
            if label and len(index) == 1 and index[0] in by_index:
                by_label.setdefault(label, by_index[index[0]])
        return cls(by_index, by_label)


def _lldp_neighbors(walk: _Walk, ports: _PortNames) -> tuple[Neighbor, ...]:
    cols = walk.columns
    addresses = _lldp_addresses(cols)
    rows = sorted({index for name in _LLDP_REM_COLUMNS for index in cols[name]})
    found = (_lldp_neighbor(index, cols, addresses.get(index, []), ports) for index in rows)
    # Agents list one neighbour more than once (RouterOS 6 does, per bridge port and VLAN):
    # identical rows carry nothing new.
    return tuple(dict.fromkeys(n for n in found if n is not None))


def _lldp_neighbor(
    index: Oid, cols: dict[str, dict[Oid, Any]], addresses: list[str], ports: _PortNames
) -> Neighbor | None:
    def get(column: str) -> Any:
        return cols[column].get(index)

    mac = _chassis_mac(_int(get("chassis_subtype")), get("chassis_id"))
    identity = _lldp_text(get("sys_name"))
    remote_port = _remote_port(_int(get("port_subtype")), get("port_id"), _lldp_text(get("port_desc")))
    address = next((a for a in addresses if ipaddress.ip_address(a).version == 4), next(iter(addresses), None))
    if not (mac or identity or remote_port or address):
        return None  # rows of nothing (all empty, null MAC) are seen on RouterOS 6
    # lldpRemTable is indexed (time mark, local port, index). RouterOS 6 uses a single
    # index and RouterOS 7.1 reports port 0: then the local port is unknown ("").
    port = index[1] if len(index) == 3 else 0
    return Neighbor(
        local_interface=_local_port(port, cols, ports),
        remote_identity=identity,
        remote_interface=remote_port,
        remote_address=address,
        remote_mac=mac,
        platform=_lldp_text(get("sys_desc")),
        protocol="lldp",
    )


def _local_port(port: int, cols: dict[str, dict[Oid, Any]], ports: _PortNames) -> str:
    """Our name for LLDP port ``port``: lldpLocPortTable where it names an interface, else the ifIndex.

    LLDP-MIB port numbers need not be ifIndexes (they are on RouterOS and most
    agents); an id or description naming a known interface is the surer match.
    """
    if port <= 0:
        return ""
    row = {name: cols.get(name, {}).get((port,)) for name in _LLDP_LOC_COLUMNS}
    labels: list[str | None] = [_lldp_text(row["loc_desc"])]
    if _int(row["loc_subtype"]) in _PORT_NAMING_SUBTYPES:
        labels.insert(0, _lldp_text(row["loc_id"]))
    for label in labels:
        if label and label in ports.by_label:
            return ports.by_label[label]
    return ports.by_index.get(port) or next((label for label in labels if label), "")


def _lldp_text(value: Any) -> str | None:
    """A display string as agents really send it: cut at a NUL, first line only."""
    lines = (_text(value) or "").split("\x00", 1)[0].strip().splitlines()
    return (lines[0].strip() or None) if lines else None


def _chassis_mac(subtype: int | None, value: Any) -> str | None:
    if subtype not in (None, _CHASSIS_MAC):
        return None
    return _any_mac(value)


def _any_mac(value: Any) -> str | None:
    """A MAC sent as 6 bytes or, as RouterOS does, as its text; None for the null MAC."""
    raw = _octets(value)
    if len(raw) != 6:
        text = raw.decode("ascii", errors="replace").strip()
        raw = bytes.fromhex(re.sub("[:-]", "", text)) if _MAC_TEXT.fullmatch(text) else b""
    return ":".join(f"{b:02X}" for b in raw) if any(raw) else None


def _remote_port(subtype: int | None, port_id: Any, desc: str | None) -> str | None:
    # An interfaceName id is what the neighbour calls its port (RouterOS: "ether1");
    # other subtypes (Cisco "local" Gi1/0/1, MACs) read better from the description.
    text = _lldp_text(port_id)
    if subtype == _PORT_INTERFACE_NAME and text:
        return text
    if desc:
        return desc
    if subtype == _PORT_MAC:
        return _any_mac(port_id)
    return text


def _lldp_addresses(cols: dict[str, dict[Oid, Any]]) -> dict[Oid, list[str]]:
    """Management addresses per lldpRemTable index, in both layouts agents use."""
    out: dict[Oid, list[str]] = {}
    for index, value in cols["man_addr"].items():  # RouterOS: readable index columns
        address = _man_address(_int(cols["man_subtype"].get(index)), value)
        if address and len(index) == 3:
            out.setdefault(index, []).append(address)
    for index in cols["man_if_subtype"]:  # LLDP-MIB: (..., subtype, length, address octets)
        if len(index) > 5 and index[4] == len(index) - 5:
            address = _man_address(index[3], bytes(index[5:]))
            if address:
                out.setdefault(index[:3], []).append(address)
    return out


def _man_address(subtype: int | None, value: Any) -> str | None:
    if isinstance(value, str):  # an IpAddress
        return value
    raw = _octets(value)
    if subtype == _ADDRESS_IPV4 and len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if subtype == _ADDRESS_IPV6 and len(raw) == 16:
        return str(ipaddress.IPv6Address(raw))
    try:  # RouterOS sends the address as text ("169.254.9.11")
        return str(ipaddress.ip_address(raw.decode("ascii").strip()))
    except (UnicodeDecodeError, ValueError):
        return None


# -- wireless registrations -----------------------------------------------------


def _wireless_clients(walk: _Walk, ports: _PortNames) -> tuple[WirelessClient, ...]:
    cols = walk.columns
    rows = sorted({index for values in cols.values() for index in values})
    return tuple(_wireless_client(index, cols, ports) for index in rows if len(index) == 7)


def _wireless_client(index: Oid, cols: dict[str, dict[Oid, Any]], ports: _PortNames) -> WirelessClient:
    def get(column: str) -> int | None:
        return _int(cols[column].get(index))

    # The index is (MAC octets, ifIndex): mtxrWlRtabAddr and mtxrWlRtabIface repeat it,
    # and agents (see the recordings) may serve only some columns.
    ifindex = get("iface") or index[6]
    strength, uptime = get("strength"), get("uptime")
    return WirelessClient(
        interface=ports.by_index.get(ifindex, f"ifIndex {ifindex}"),
        mac=":".join(f"{b:02X}" for b in index[:6]),
        # mtxrWlRtabStrength is an Integer32 in dBm; a Gauge-typed agent sends it unsigned.
        signal_dbm=float(strength - 2**32 if strength >= 2**31 else strength) if strength is not None else None,
        tx_rate_bps=get("tx_rate"),
        rx_rate_bps=get("rx_rate"),
        uptime_s=uptime / 100 if uptime is not None else None,
    )


# -- optics (SFP DOM) -------------------------------------------------------------


def _optics(walk: _Walk, ports: _PortNames) -> tuple[OpticalModule, ...]:
    cols = walk.columns
    rows = sorted({index for values in cols.values() for index in values if len(index) == 1})
    return tuple(_optical_module(index, cols, ports) for index in rows)


def _signed32(value: int | None) -> int | None:
    # An Integer32 column that an agent types as Gauge32 arrives unsigned.
    return value - 2**32 if value is not None and value >= 2**31 else value


def _optical_module(index: Oid, cols: dict[str, dict[Oid, Any]], ports: _PortNames) -> OpticalModule:
    def get(column: str) -> int | None:
        return _int(cols[column].get(index))

    name = ports.by_index.get(index[0]) or _text(cols["name"].get(index)) or f"ifIndex {index[0]}"
    wavelength, temperature, supply = get("wavelength"), get("temperature"), get("supply")
    # An empty cage answers zeros in every column (see the recordings): a module always reports a
    # supply voltage, so none at all is no module rather than 0 dBm of light.
    if not supply and not temperature and not wavelength:
        return OpticalModule(name, present=False)
    rx_loss, tx_fault = get("rx_loss"), get("tx_fault")
    tx_power, rx_power, bias = _signed32(get("tx_power")), _signed32(get("rx_power")), get("bias")
    return OpticalModule(
        interface=name,
        rx_loss=None if rx_loss is None else bool(rx_loss),
        tx_fault=None if tx_fault is None else bool(tx_fault),
        rx_power_dbm=None if rx_power is None else rx_power / 1000,
        tx_power_dbm=None if tx_power is None else tx_power / 1000,
        temperature_c=None if temperature is None else float(_signed32(temperature) or 0),
        supply_v=None if supply is None else supply / 1000,
        tx_bias_ma=None if bias is None else float(bias),
        wavelength_nm=wavelength / 100 if wavelength else None,
    )


# -- LTE --------------------------------------------------------------------------


def _lte(walk: _Walk, ports: _PortNames) -> tuple[LteSignal, ...]:
    cols = walk.columns
    rows = sorted({index for values in cols.values() for index in values if len(index) == 1})
    return tuple(_lte_signal(index, cols, ports) for index in rows)


def _lte_signal(index: Oid, cols: dict[str, dict[Oid, Any]], ports: _PortNames) -> LteSignal:
    def get(column: str) -> float | None:
        value = _signed32(_int(cols[column].get(index)))
        return None if value is None else float(value)

    rssi = get("rssi")
    cell = _int(cols["cell_id"].get(index))
    return LteSignal(
        interface=ports.by_index.get(index[0]) or f"ifIndex {index[0]}",
        rssi_dbm=rssi if rssi else None,  # 0: the modem does not report it (see the LtAP recording)
        rsrp_dbm=get("rsrp"), rsrq_db=get("rsrq"), sinr_db=get("sinr"),
        cell_id=None if not cell else str(cell),
        technology=_text(cols["technology"].get(index)) or None,
    )


# -- BGP and OSPF ---------------------------------------------------------------


def _bgp_sessions(walk: _Walk) -> tuple[BgpSession, ...]:
    cols = walk.columns
    local_as = next((v for v in map(_int, cols["local_as"].values()) if v), None)  # 0: BGP not running
    peers = sorted({index for name in ("state", "admin", "remote_as") for index in cols[name]})
    return tuple(_bgp_session(index, cols, local_as) for index in peers if len(index) == 4)


def _bgp_session(index: Oid, cols: dict[str, dict[Oid, Any]], local_as: int | None) -> BgpSession:
    state = _int(cols["state"].get(index))
    established = state == _BGP_ESTABLISHED
    uptime = _int(cols["established_time"].get(index))
    address = _dotted(index)  # bgpPeerRemoteAddr is the index
    return BgpSession(
        # BGP4-MIB has no peer names (only RouterOS has them, over its API): the address names the peer.
        name=address,
        remote_address=address,
        remote_as=_int(cols["remote_as"].get(index)),
        state=_BGP_STATES.get(state, "unknown") if state is not None else "unknown",
        established=established,
        local_as=local_as,
        # bgpPeerFsmEstablishedTime counts since the last change either way: an uptime only while up.
        uptime_s=float(uptime) if established and uptime is not None else None,
        prefixes=None,  # BGP4-MIB counts update messages, not prefixes
        disabled=_int(cols["admin"].get(index)) == _BGP_ADMIN_STOP,
    )


def _ospf_neighbors(walk: _Walk, ports: _PortNames) -> tuple[OspfNeighbor, ...]:
    cols = walk.columns
    rows = sorted({index for name in cols for index in cols[name]})
    return tuple(_ospf_neighbor(index, cols, ports) for index in rows if len(index) == 5)


def _ospf_neighbor(index: Oid, cols: dict[str, dict[Oid, Any]], ports: _PortNames) -> OspfNeighbor:
    # Indexed (ospfNbrIpAddr, ospfNbrAddressLessIndex); the latter is an ifIndex for
    # unnumbered links and 0 otherwise, where OSPF-MIB names no interface.
    address, addressless = _dotted(index[:4]), index[4]
    state = _int(cols["state"].get(index))
    return OspfNeighbor(
        router_id=_ipv4(cols["router_id"].get(index)) or address,
        address=None if addressless else address,
        interface=ports.by_index.get(addressless) if addressless else None,
        state=_OSPF_STATES.get(state, "unknown") if state is not None else "unknown",
        full=state == _OSPF_FULL,
    )
