"""The MIB view of one simulated router, shaped like a real RouterOS agent.

Only what a NOC poller reads is rendered: SNMPv2-MIB system, IF-MIB ifTable and
ifXTable, HOST-RESOURCES-MIB processor load and RAM, the MIKROTIK-MIB
health/identity objects and the LLDP-MIB neighbour tables. Column sets, index
choices and oddities follow the LibreNMS recordings of real RouterOS devices in
``shared/fixtures`` (e.g. the loopback is ifType "other", an interface without
link reports speed 0, RAM is hrStorage row 65536, LLDP MACs are sent as text),
so the lab and the recordings exercise the same code.

RouterOS implements neither BGP4-MIB nor OSPF-MIB (MikroTik's list of MIBs has
neither, and no recording holds them), so the lab's BGP peers and OSPF
neighbours are only visible through the API, as on real routers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ispvm_tui.lab import ber
from ispvm_tui.lab.sim import NO_LIGHT_DBM, SimDevice, SimInterface, SimNeighbor, SimSensor

Oid = tuple[int, ...]
OidRow = tuple[Oid, bytes]  # OID and its value, BER-encoded (lab/ber.py)

_U32 = 2**32
_U64 = 2**64

SYSTEM: Oid = (1, 3, 6, 1, 2, 1, 1)
IF_NUMBER: Oid = (1, 3, 6, 1, 2, 1, 2, 1, 0)
IF_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IFX_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
HR_SYSTEM_UPTIME: Oid = (1, 3, 6, 1, 2, 1, 25, 1, 1, 0)
HR_MEMORY_SIZE: Oid = (1, 3, 6, 1, 2, 1, 25, 2, 2, 0)
HR_STORAGE_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 25, 2, 3, 1)
HR_STORAGE_RAM: Oid = (1, 3, 6, 1, 2, 1, 25, 2, 1, 2)
HR_PROCESSOR_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 25, 3, 3, 1)
MIKROTIK: Oid = (1, 3, 6, 1, 4, 1, 14988, 1)
MTXR_HEALTH: Oid = (*MIKROTIK, 1, 3)
MTXR_GAUGE_ENTRY: Oid = (*MTXR_HEALTH, 100, 1)
MTXR_LIC_VERSION: Oid = (*MIKROTIK, 1, 4, 4, 0)
MTXR_SERIAL: Oid = (*MIKROTIK, 1, 7, 3, 0)
MTXR_BOARD_NAME: Oid = (*MIKROTIK, 1, 7, 9, 0)
MTXR_OPTICAL_ENTRY: Oid = (*MIKROTIK, 1, 19, 1, 1)
MTXR_LTE_ENTRY: Oid = (*MIKROTIK, 1, 16, 1, 1)
LLDP_MIB: Oid = (1, 0, 8802, 1, 1, 2)
LLDP_LOC_PORT_ENTRY: Oid = (*LLDP_MIB, 1, 3, 7, 1)
LLDP_REM_ENTRY: Oid = (*LLDP_MIB, 1, 4, 1, 1)
LLDP_REM_MAN_ADDR_ENTRY: Oid = (*LLDP_MIB, 1, 4, 2, 1)

# Tables whose instances have more than one sub-identifier, e.g. lldpRemTable's
# (time mark, local port, index): the agent needs them to tell an unknown
# instance (noSuchInstance) from an unknown object (noSuchObject).
_MULTI_INDEX_ENTRIES = (LLDP_REM_ENTRY, LLDP_REM_MAN_ADDR_ENTRY)

# RouterOS reports main memory as hrStorage row 65536 (see the recordings).
RAM_STORAGE_INDEX = 65536

# IANA ifType as RouterOS reports it per interface type. Anything not listed
# (loopback, lte, wireguard, ...) is "other" (1) on real devices, not the
# softwareLoopback/propVirtual one might expect.
_IF_TYPES: dict[str, int] = {
    "ether": 6,
    "wlan": 71,
    "wifi": 71,
    "wireless": 71,
    "bridge": 209,
    "vlan": 135,
    "bond": 161,
    "bonding": 161,
    "eoip": 131,
    "eoipv6": 131,
    "gre": 131,
    "gre-tunnel": 131,
    "ipip": 131,
    "ipip-tunnel": 131,
    "6to4": 131,
    "6to4-tunnel": 131,
    "ppp": 23,
    "pppoe-out": 23,
    "pppoe-in": 23,
    "l2tp-out": 23,
    "l2tp-in": 23,
    "sstp-out": 23,
    "sstp-in": 23,
    "ovpn-out": 23,
    "ovpn-in": 23,
}


def if_type_number(kind: str) -> int:
    return _IF_TYPES.get(kind.lower(), 1)


def object_type(oid: Oid) -> Oid:
    """The object-type OID of a rendered instance ``oid`` (its column or scalar)."""
    for entry in _MULTI_INDEX_ENTRIES:
        if oid[: len(entry)] == entry:
            return oid[: len(entry) + 1]
    return oid[:-1]


def render_oids(device: SimDevice, now: float) -> list[OidRow]:
    """Every managed object of ``device`` at ``now``, sorted by OID."""
    interfaces = sorted(device.interfaces.values(), key=lambda itf: itf.ifindex)
    rows: list[OidRow] = [
        *_system_group(device, now),
        (IF_NUMBER, ber.integer32(len(interfaces))),
        *_table(IF_ENTRY, _IF_COLUMNS, interfaces, device, now),
        *_table(IFX_ENTRY, _IFX_COLUMNS, interfaces, device, now),
        *_host_resources(device, now),
        *_mikrotik(device),
        *_optics(interfaces),
        *_lte(interfaces),
        *_lldp(device),
    ]
    rows.sort(key=lambda row: row[0])
    return rows


def _timeticks(seconds: float) -> bytes:
    # TimeTicks is an unsigned 32-bit count of centiseconds: it wraps after ~497 days.
    return ber.timeticks(int(max(0.0, seconds) * 100) % _U32)


def _text(value: str) -> bytes:
    return ber.text(value)


def _system_group(device: SimDevice, now: float) -> list[OidRow]:
    # RouterOS leaves sysContact and sysLocation empty unless configured.
    return [
        ((*SYSTEM, 1, 0), _text(f"RouterOS {device.board}")),
        ((*SYSTEM, 2, 0), ber.object_id(MIKROTIK)),
        ((*SYSTEM, 3, 0), _timeticks(device.uptime(now))),
        ((*SYSTEM, 4, 0), _text("")),
        ((*SYSTEM, 5, 0), _text(device.name)),
        ((*SYSTEM, 6, 0), _text("")),
    ]


Column = Callable[[SimInterface, SimDevice, float], bytes]


def _table(
    entry: Oid,
    columns: dict[int, Column],
    interfaces: Iterable[SimInterface],
    device: SimDevice,
    now: float,
) -> list[OidRow]:
    return [
        ((*entry, col, itf.ifindex), render(itf, device, now)) for col, render in columns.items() for itf in interfaces
    ]


def _mac_bytes(mac: str) -> bytes:
    digits = mac.replace(":", "").replace("-", "").replace(".", "")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        return b""


def _link_speed(itf: SimInterface) -> int:
    # A real RouterOS port without link reports speed 0, not its configured rate.
    return itf.speed_bps if itf.running else 0


def _last_change(itf: SimInterface, device: SimDevice, now: float) -> bytes:
    # ifLastChange is sysUpTime at the last oper change; 0 if it predates the boot.
    return _timeticks(itf.last_change - device.boot_time)


def _c32(value: int) -> bytes:
    return ber.counter32(value % _U32)


def _c64(value: int) -> bytes:
    return ber.counter64(value % _U64)


# The model does not simulate non-unicast traffic: those columns exist on real
# devices, so they are served with the model's value, 0. ifOutDiscards counts
# what RouterOS splits into tx-drop and tx-queue-drop, so both collectors agree.
_IF_COLUMNS: dict[int, Column] = {
    1: lambda i, d, n: ber.integer32(i.ifindex),
    2: lambda i, d, n: _text(i.name),
    3: lambda i, d, n: ber.integer32(if_type_number(i.type)),
    4: lambda i, d, n: ber.integer32(i.mtu),
    5: lambda i, d, n: ber.gauge32(min(_link_speed(i), _U32 - 1)),
    6: lambda i, d, n: ber.octets(_mac_bytes(i.mac)),
    7: lambda i, d, n: ber.integer32(2 if i.disabled else 1),
    8: lambda i, d, n: ber.integer32(1 if i.running else 2),
    9: _last_change,
    10: lambda i, d, n: _c32(i.rx_bytes),
    11: lambda i, d, n: _c32(i.rx_packets),
    13: lambda i, d, n: _c32(i.rx_drops),
    14: lambda i, d, n: _c32(i.rx_errors),
    16: lambda i, d, n: _c32(i.tx_bytes),
    17: lambda i, d, n: _c32(i.tx_packets),
    19: lambda i, d, n: _c32(i.tx_drops + i.tx_queue_drops),
    20: lambda i, d, n: _c32(i.tx_errors),
}

_IFX_COLUMNS: dict[int, Column] = {
    1: lambda i, d, n: _text(i.name),
    2: lambda i, d, n: ber.counter32(0),
    3: lambda i, d, n: ber.counter32(0),
    4: lambda i, d, n: ber.counter32(0),
    5: lambda i, d, n: ber.counter32(0),
    6: lambda i, d, n: _c64(i.rx_bytes),
    7: lambda i, d, n: _c64(i.rx_packets),
    8: lambda i, d, n: ber.counter64(0),
    9: lambda i, d, n: ber.counter64(0),
    10: lambda i, d, n: _c64(i.tx_bytes),
    11: lambda i, d, n: _c64(i.tx_packets),
    12: lambda i, d, n: ber.counter64(0),
    13: lambda i, d, n: ber.counter64(0),
    15: lambda i, d, n: ber.gauge32(min(_link_speed(i) // 1_000_000, _U32 - 1)),
    18: lambda i, d, n: _text(i.comment),
}


def _host_resources(device: SimDevice, now: float) -> list[OidRow]:
    kib = 1024
    total = device.total_memory // kib
    used = max(0, device.total_memory - device.free_memory) // kib
    ram = RAM_STORAGE_INDEX
    return [
        (HR_SYSTEM_UPTIME, _timeticks(device.uptime(now))),
        (HR_MEMORY_SIZE, ber.integer32(total)),
        ((*HR_STORAGE_ENTRY, 1, ram), ber.integer32(ram)),
        ((*HR_STORAGE_ENTRY, 2, ram), ber.object_id(HR_STORAGE_RAM)),
        ((*HR_STORAGE_ENTRY, 3, ram), _text("main memory")),
        ((*HR_STORAGE_ENTRY, 4, ram), ber.integer32(kib)),
        ((*HR_STORAGE_ENTRY, 5, ram), ber.integer32(total)),
        ((*HR_STORAGE_ENTRY, 6, ram), ber.integer32(used)),
        ((*HR_STORAGE_ENTRY, 7, ram), ber.counter32(0)),
        # The model has one CPU load figure: one processor row, hrDeviceIndex 1.
        ((*HR_PROCESSOR_ENTRY, 1, 1), ber.object_id((0, 0))),
        ((*HR_PROCESSOR_ENTRY, 2, 1), ber.integer32(device.cpu_load)),
    ]


def _mikrotik(device: SimDevice) -> list[OidRow]:
    # Classic health scalars are in tenths (volts, degrees C) on every version.
    voltage = round(device.voltage_v * 10)
    rows: list[OidRow] = [
        ((*MTXR_HEALTH, 8, 0), ber.integer32(voltage)),
        ((*MTXR_HEALTH, 10, 0), ber.integer32(round(device.temperature_c * 10))),
        ((*MIKROTIK, 1, 6, 1, 0), ber.gauge32(sum(d.leases for d in device.dhcp_servers))),  # mtxrDHCPLeaseCount
        (MTXR_LIC_VERSION, _text(device.version)),
        (MTXR_SERIAL, _text(device.serial)),
    ]
    if device.ros_major >= 7:
        # v7 adds mtxrBoardName and the gauge table (name, value, unit); there
        # voltage stays in tenths but temperature is whole degrees.
        rows.append((MTXR_BOARD_NAME, _text(device.board)))
        gauges = [(13, "voltage", voltage, _GAUGE_DECIVOLT), (14, "temperature", round(device.temperature_c), 1)]
        gauges += _sensor_gauges(device.sensors)
        for index, name, value, unit in gauges:
            rows.append(((*MTXR_GAUGE_ENTRY, 2, index), _text(name)))
            rows.append(((*MTXR_GAUGE_ENTRY, 3, index), ber.integer32(value)))  # v7 sends Integer32, not Gauge32
            rows.append(((*MTXR_GAUGE_ENTRY, 4, index), ber.integer32(unit)))
    else:
        rows += _classic_sensors(device.sensors)
    return rows


def _optics(interfaces: list[SimInterface]) -> list[OidRow]:
    """mtxrOpticalTable, indexed by ifIndex, one row per SFP cage in the MIB's units (hundredths of a nm,
    mV, mA, thousandths of a dBm). An empty cage answers zeros, as RouterOS does."""
    rows: list[OidRow] = []
    for itf in interfaces:
        module = itf.sfp
        if module is None:
            continue
        rx = itf.sfp_rx_dbm()
        present = module.present
        values = (
            (2, _text(itf.name)),
            (3, ber.integer32(int(present and (rx is None or rx <= NO_LIGHT_DBM)))),  # rx loss
            (4, ber.integer32(0)),  # tx fault
            (5, ber.gauge32(round(module.wavelength_nm * 100) if present else 0)),
            (6, ber.gauge32(round(module.temperature_c) if present else 0)),
            (7, ber.gauge32(round(module.supply_v * 1000) if present else 0)),
            (8, ber.gauge32(round(module.tx_bias_ma) if present else 0)),
            (9, ber.integer32(round(module.tx_power_dbm * 1000) if present else 0)),
            (10, ber.integer32(round((rx if rx is not None else NO_LIGHT_DBM) * 1000) if present else 0)),
        )
        rows += [((*MTXR_OPTICAL_ENTRY, column, itf.ifindex), value) for column, value in values]
    return rows


def _lte(interfaces: list[SimInterface]) -> list[OidRow]:
    """mtxrLTEModemTable, indexed by ifIndex: RSSI, RSRQ, RSRP, cell id, SINR, technology (signed Integer32)."""
    rows: list[OidRow] = []
    for itf in interfaces:
        modem = itf.lte
        if modem is None:
            continue
        values = ((2, ber.integer32(round(modem.rssi_dbm))), (3, ber.integer32(round(modem.rsrq_db))),
                  (4, ber.integer32(round(modem.rsrp_dbm))), (5, ber.integer32(int(modem.cell_id))),
                  (7, ber.integer32(round(modem.sinr_db))), (14, _text(modem.technology)))
        rows += [((*MTXR_LTE_ENTRY, column, itf.ifindex), value) for column, value in values]
    return rows


# mtxrGaugeUnit per /system/health unit: celsius(1), rpm(2), dV(3), dA(4), dW(5), status(6).
_GAUGE_DECIVOLT = 3
_GAUGE_STATUS = 6
_GAUGE_UNITS: dict[str, tuple[int, int]] = {"C": (1, 1), "RPM": (2, 1), "V": (3, 10), "A": (4, 10), "W": (5, 10)}
# Gauge indexes RouterOS uses for these names (CRS317 recording); others get 8000 + position.
_GAUGE_INDEXES = {
    "cpu-temperature": 17,
    "sfp-temperature": 50,
    "fan1-speed": 7001,
    "fan2-speed": 7002,
    "psu1-state": 7401,
    "psu2-state": 7402,
}
# RouterOS 6 has no gauge table: what it can say goes into the classic scalars,
# name -> (mtxrHealth.<n>.0, multiplier); BoolValue true(1) for a PSU that is ok.
_CLASSIC_SCALARS: dict[str, tuple[int, int]] = {
    "cpu-temperature": (11, 10),
    "power-consumption": (12, 10),
    "current": (13, 1000),
    "psu1-state": (15, 1),
    "psu2-state": (16, 1),
    "fan1-speed": (17, 1),
    "fan2-speed": (18, 1),
}


def _sensor_gauges(sensors: Iterable[SimSensor]) -> list[tuple[int, str, int, int]]:
    """(index, name, raw value, mtxrGaugeUnit) per extra sensor, as a v7 gauge row."""
    out = []
    for position, sensor in enumerate(sensors):
        index = _GAUGE_INDEXES.get(sensor.name, 8000 + position)
        if sensor.value is None:
            out.append((index, sensor.name, 0 if sensor.state == "ok" else 1, _GAUGE_STATUS))
        elif sensor.unit in _GAUGE_UNITS:
            unit, scale = _GAUGE_UNITS[sensor.unit]
            out.append((index, sensor.name, round(sensor.value * scale), unit))
    return sorted(out)


def _classic_sensors(sensors: Iterable[SimSensor]) -> list[OidRow]:
    rows: list[OidRow] = []
    for sensor in sensors:
        if sensor.name not in _CLASSIC_SCALARS:
            continue  # no v6 object for it: RouterOS 6 shows it only in /system/health
        number, scale = _CLASSIC_SCALARS[sensor.name]
        oid = (*MTXR_HEALTH, number, 0)
        if sensor.value is None:
            rows.append((oid, ber.integer32(1 if sensor.state == "ok" else 0)))
        elif number in (17, 18):
            rows.append((oid, ber.gauge32(round(sensor.value))))  # mtxrHlFanSpeed is a Gauge32
        else:
            rows.append((oid, ber.integer32(round(sensor.value * scale))))
    return rows


# -- LLDP-MIB -----------------------------------------------------------------
# As RouterOS serves it (see the recordings): MACs and management addresses as
# text, chassis id subtype macAddress(4), port id subtype interfaceName(5), the
# management address in the two "index" columns readable per lldpRemTable row.
# RouterOS 7 indexes rows (time mark 0, local ifIndex, n) and lists its ports in
# lldpLocPortTable by MAC; RouterOS 6 indexes them by n alone, with no local port.
_CHASSIS_MAC = 4
_PORT_INTERFACE_NAME = 5
_ADDRESS_IPV4, _ADDRESS_IPV6 = 1, 2


def _lldp(device: SimDevice) -> list[OidRow]:
    rows: list[OidRow] = []
    if device.ros_major >= 7:
        for itf in device.interfaces.values():
            rows.append(((*LLDP_LOC_PORT_ENTRY, 3, itf.ifindex), _text(itf.mac.upper())))
    for n, neighbor in enumerate(device.neighbors, start=1):
        rows += _lldp_neighbor(_lldp_index(device, neighbor, n), neighbor)
    return rows


def _lldp_index(device: SimDevice, neighbor: SimNeighbor, n: int) -> Oid:
    if device.ros_major < 7:
        return (n,)
    local = device.interfaces.get(neighbor.interface)
    return (0, local.ifindex if local else 0, n)


def _lldp_neighbor(index: Oid, neighbor: SimNeighbor) -> list[OidRow]:
    description = neighbor.platform
    if neighbor.platform == "MikroTik":
        description = " ".join(part for part in ("MikroTik RouterOS", neighbor.version, neighbor.board) if part)
    rows: list[OidRow] = [
        ((*LLDP_REM_ENTRY, 4, *index), ber.integer32(_CHASSIS_MAC)),
        ((*LLDP_REM_ENTRY, 5, *index), _text(neighbor.mac.upper())),
        ((*LLDP_REM_ENTRY, 6, *index), ber.integer32(_PORT_INTERFACE_NAME)),
        ((*LLDP_REM_ENTRY, 7, *index), _text(neighbor.interface_name)),
        ((*LLDP_REM_ENTRY, 9, *index), _text(neighbor.identity)),
        ((*LLDP_REM_ENTRY, 10, *index), _text(description)),
    ]
    if neighbor.address and len(index) == 3:
        family = _ADDRESS_IPV6 if ":" in neighbor.address else _ADDRESS_IPV4
        rows.append(((*LLDP_REM_MAN_ADDR_ENTRY, 1, *index), ber.integer32(family)))
        rows.append(((*LLDP_REM_MAN_ADDR_ENTRY, 2, *index), _text(neighbor.address)))
    return rows
