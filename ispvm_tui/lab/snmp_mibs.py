"""The MIB view of one simulated router, shaped like a real RouterOS agent.

Only what a NOC poller reads is rendered: SNMPv2-MIB system, IF-MIB ifTable and
ifXTable, HOST-RESOURCES-MIB processor load and RAM, and the MIKROTIK-MIB
health/identity scalars. Column sets, index choices and oddities follow the
LibreNMS recordings of real RouterOS devices in ``shared/fixtures`` (e.g. the
loopback is ifType "other", an interface without link reports speed 0, RAM is
hrStorage row 65536), so the lab and the recordings exercise the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pysnmp.proto.rfc1902 import (
    Counter32,
    Counter64,
    Gauge32,
    Integer32,
    ObjectIdentifier,
    OctetString,
    TimeTicks,
)

from ispvm_tui.lab.sim import SimDevice, SimInterface

Oid = tuple[int, ...]
OidRow = tuple[Oid, Any]

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


def render_oids(device: SimDevice, now: float) -> list[OidRow]:
    """Every managed object of ``device`` at ``now``, sorted by OID."""
    interfaces = sorted(device.interfaces.values(), key=lambda itf: itf.ifindex)
    rows: list[OidRow] = [
        *_system_group(device, now),
        (IF_NUMBER, Integer32(len(interfaces))),
        *_table(IF_ENTRY, _IF_COLUMNS, interfaces, device, now),
        *_table(IFX_ENTRY, _IFX_COLUMNS, interfaces, device, now),
        *_host_resources(device, now),
        *_mikrotik(device),
    ]
    rows.sort(key=lambda row: row[0])
    return rows


def _timeticks(seconds: float) -> TimeTicks:
    # TimeTicks is an unsigned 32-bit count of centiseconds: it wraps after ~497 days.
    return TimeTicks(int(max(0.0, seconds) * 100) % _U32)


def _text(value: str) -> OctetString:
    # Explicit UTF-8: pyasn1 would encode a str as latin-1 and fail on other characters.
    return OctetString(value.encode("utf-8"))


def _system_group(device: SimDevice, now: float) -> list[OidRow]:
    # RouterOS leaves sysContact and sysLocation empty unless configured.
    return [
        ((*SYSTEM, 1, 0), _text(f"RouterOS {device.board}")),
        ((*SYSTEM, 2, 0), ObjectIdentifier(MIKROTIK)),
        ((*SYSTEM, 3, 0), _timeticks(device.uptime(now))),
        ((*SYSTEM, 4, 0), _text("")),
        ((*SYSTEM, 5, 0), _text(device.name)),
        ((*SYSTEM, 6, 0), _text("")),
    ]


Column = Callable[[SimInterface, SimDevice, float], Any]


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


def _last_change(itf: SimInterface, device: SimDevice, now: float) -> TimeTicks:
    # ifLastChange is sysUpTime at the last oper change; 0 if it predates the boot.
    return _timeticks(itf.last_change - device.boot_time)


def _c32(value: int) -> Counter32:
    return Counter32(value % _U32)


def _c64(value: int) -> Counter64:
    return Counter64(value % _U64)


# The model does not simulate errors, discards or non-unicast traffic: those
# columns exist on real devices, so they are served with the model's value, 0.
_IF_COLUMNS: dict[int, Column] = {
    1: lambda i, d, n: Integer32(i.ifindex),
    2: lambda i, d, n: _text(i.name),
    3: lambda i, d, n: Integer32(if_type_number(i.type)),
    4: lambda i, d, n: Integer32(i.mtu),
    5: lambda i, d, n: Gauge32(min(_link_speed(i), _U32 - 1)),
    6: lambda i, d, n: OctetString(_mac_bytes(i.mac)),
    7: lambda i, d, n: Integer32(2 if i.disabled else 1),
    8: lambda i, d, n: Integer32(1 if i.running else 2),
    9: _last_change,
    10: lambda i, d, n: _c32(i.rx_bytes),
    11: lambda i, d, n: _c32(i.rx_packets),
    13: lambda i, d, n: Counter32(0),
    14: lambda i, d, n: Counter32(0),
    16: lambda i, d, n: _c32(i.tx_bytes),
    17: lambda i, d, n: _c32(i.tx_packets),
    19: lambda i, d, n: Counter32(0),
    20: lambda i, d, n: Counter32(0),
}

_IFX_COLUMNS: dict[int, Column] = {
    1: lambda i, d, n: _text(i.name),
    2: lambda i, d, n: Counter32(0),
    3: lambda i, d, n: Counter32(0),
    4: lambda i, d, n: Counter32(0),
    5: lambda i, d, n: Counter32(0),
    6: lambda i, d, n: _c64(i.rx_bytes),
    7: lambda i, d, n: _c64(i.rx_packets),
    8: lambda i, d, n: Counter64(0),
    9: lambda i, d, n: Counter64(0),
    10: lambda i, d, n: _c64(i.tx_bytes),
    11: lambda i, d, n: _c64(i.tx_packets),
    12: lambda i, d, n: Counter64(0),
    13: lambda i, d, n: Counter64(0),
    15: lambda i, d, n: Gauge32(min(_link_speed(i) // 1_000_000, _U32 - 1)),
    18: lambda i, d, n: _text(i.comment),
}


def _host_resources(device: SimDevice, now: float) -> list[OidRow]:
    kib = 1024
    total = device.total_memory // kib
    used = max(0, device.total_memory - device.free_memory) // kib
    ram = RAM_STORAGE_INDEX
    return [
        (HR_SYSTEM_UPTIME, _timeticks(device.uptime(now))),
        (HR_MEMORY_SIZE, Integer32(total)),
        ((*HR_STORAGE_ENTRY, 1, ram), Integer32(ram)),
        ((*HR_STORAGE_ENTRY, 2, ram), ObjectIdentifier(HR_STORAGE_RAM)),
        ((*HR_STORAGE_ENTRY, 3, ram), _text("main memory")),
        ((*HR_STORAGE_ENTRY, 4, ram), Integer32(kib)),
        ((*HR_STORAGE_ENTRY, 5, ram), Integer32(total)),
        ((*HR_STORAGE_ENTRY, 6, ram), Integer32(used)),
        ((*HR_STORAGE_ENTRY, 7, ram), Counter32(0)),
        # The model has one CPU load figure: one processor row, hrDeviceIndex 1.
        ((*HR_PROCESSOR_ENTRY, 1, 1), ObjectIdentifier((0, 0))),
        ((*HR_PROCESSOR_ENTRY, 2, 1), Integer32(device.cpu_load)),
    ]


def _mikrotik(device: SimDevice) -> list[OidRow]:
    # Classic health scalars are in tenths (volts, degrees C) on every version.
    voltage = round(device.voltage_v * 10)
    rows: list[OidRow] = [
        ((*MTXR_HEALTH, 8, 0), Integer32(voltage)),
        ((*MTXR_HEALTH, 10, 0), Integer32(round(device.temperature_c * 10))),
        (MTXR_LIC_VERSION, _text(device.version)),
        (MTXR_SERIAL, _text(device.serial)),
    ]
    if device.ros_major >= 7:
        # v7 adds mtxrBoardName and the gauge table (name, value, unit); there
        # voltage stays in tenths but temperature is whole degrees (unit 1 = celsius, 3 = volt).
        rows.append((MTXR_BOARD_NAME, _text(device.board)))
        gauges = ((13, "voltage", voltage, 3), (14, "temperature", round(device.temperature_c), 1))
        for index, name, value, unit in gauges:
            rows.append(((*MTXR_GAUGE_ENTRY, 2, index), _text(name)))
            rows.append(((*MTXR_GAUGE_ENTRY, 3, index), Integer32(value)))
            rows.append(((*MTXR_GAUGE_ENTRY, 4, index), Integer32(unit)))
    return rows
