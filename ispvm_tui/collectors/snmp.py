"""SNMP poller: system, interfaces, storage, health, LLDP, BGP, OSPF and wireless registrations.

SNMPv1 and v2c requests go through ``snmp_wire``: a hand BER codec and one
shared UDP socket per event loop, decoding a varbind in a couple of
microseconds where pysnmp/pyasn1 take tens. SNMPv3 (USM) stays on pysnmp 7's
asyncio high-level API, its values converted to the same plain ones. One
``SnmpEngine`` should be shared by all collectors of a process (pass
``engine=``): an engine owns a socket, a request-id space and its
configuration tables, so one per device does not scale.

Tables are read with multi-column GETBULK walks: each request carries the
next OID of every column still in progress, so a table costs about
``rows * columns / varbinds-per-reply`` round trips instead of one walk per
column (GETNEXT on SNMPv1). The system scalars come first in one GET: if the
device does not answer that, the poll stops there (``ok=False``) instead of
waiting for every table to time out too.

LLDP-MIB, BGP4-MIB and OSPF-MIB are optional: most devices implement one or
none of them. One GETNEXT probe, sent alongside the interface walks, asks for
the first object of each MIB and of each table; only tables with a row are
walked, so a device without them costs that single request (which also
carries the MikroTik health scalars the system GET leaves out).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pyasn1.type import univ
from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config as snmp_config
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
    next_cmd,
)
from pysnmp.proto import errind, rfc1902, rfc1905
from pysnmp.proto.rfc1902 import ObjectName

from ispvm_tui.clock import Clock
from ispvm_tui.collectors import snmp_wire as wire
from ispvm_tui.collectors.neterrors import os_error_kind, os_error_text
from ispvm_tui.collectors.results import (
    BgpSession,
    ConfigRead,
    ErrorKind,
    HealthSensor,
    InterfaceStat,
    Neighbor,
    OspfNeighbor,
    PollResult,
    StorageUse,
    SystemInfo,
    WirelessClient,
)

Oid = tuple[int, ...]


_IF_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 2, 2, 1)
_IFX_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
_HR_STORAGE_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 25, 2, 3, 1)
_MTXR_HEALTH: Oid = (1, 3, 6, 1, 4, 1, 14988, 1, 1, 3)
_MTXR_GAUGE_ENTRY: Oid = (*_MTXR_HEALTH, 100, 1)
_HR_STORAGE_TYPES = (1, 3, 6, 1, 2, 1, 25, 2, 1)
_HR_STORAGE_RAM = "1.3.6.1.2.1.25.2.1.2"
# hrStorageType -> StorageUse.kind: hrStorageRam(2), hrStorageFixedDisk(4); the rest is "other".
_STORAGE_KINDS = {(*_HR_STORAGE_TYPES, 2): "ram", (*_HR_STORAGE_TYPES, 4): "disk"}
_MIKROTIK_ENTERPRISE = "1.3.6.1.4.1.14988."

_SYSTEM_OIDS: dict[str, Oid] = {
    "descr": (1, 3, 6, 1, 2, 1, 1, 1, 0),
    "object_id": (1, 3, 6, 1, 2, 1, 1, 2, 0),
    "uptime": (1, 3, 6, 1, 2, 1, 1, 3, 0),
    "name": (1, 3, 6, 1, 2, 1, 1, 5, 0),
    "if_number": (1, 3, 6, 1, 2, 1, 2, 1, 0),  # sizes the interface walks
    # MIKROTIK-MIB mtxrLicVersion / mtxrBoardName: noSuchObject elsewhere, harmless.
    "version": (1, 3, 6, 1, 4, 1, 14988, 1, 1, 4, 4, 0),
    "board": (1, 3, 6, 1, 4, 1, 14988, 1, 1, 7, 9, 0),
    # Classic MIKROTIK-MIB health scalars, in tenths: mtxrHlVoltage, mtxrHlTemperature,
    # mtxrHlProcessorTemperature.
    "voltage": (*_MTXR_HEALTH, 8, 0),
    "temperature": (*_MTXR_HEALTH, 10, 0),
    "cpu_temperature": (*_MTXR_HEALTH, 11, 0),
}


@dataclass(frozen=True)
class _Table:
    """Columns walked together; ``family`` is the stale key when it fails.

    ``rows`` is the row count to expect (None: one per interface, from ifNumber):
    asking for just one more row than that ends most walks in a single request
    without fetching dozens of objects past the table's end.
    """

    label: str
    family: str
    columns: dict[str, Oid]
    rows: int | None = None


_IF_TABLE = _Table(
    "ifTable",
    "interfaces",
    {
        "descr": (*_IF_ENTRY, 2),
        "type": (*_IF_ENTRY, 3),
        "mtu": (*_IF_ENTRY, 4),
        "speed": (*_IF_ENTRY, 5),
        "mac": (*_IF_ENTRY, 6),
        "admin": (*_IF_ENTRY, 7),
        "oper": (*_IF_ENTRY, 8),
        # Counter32 in every agent (IF-MIB has no 64-bit errors or discards), walked with the rest
        # of the row so they cost no extra round trip.
        "in_discards": (*_IF_ENTRY, 13),
        "in_errors": (*_IF_ENTRY, 14),
        "out_discards": (*_IF_ENTRY, 19),
        "out_errors": (*_IF_ENTRY, 20),
    },
)
_IFX_TABLE = _Table(
    "ifXTable",
    "interfaces",
    {
        "name": (*_IFX_ENTRY, 1),
        "hc_in_octets": (*_IFX_ENTRY, 6),
        "hc_in_ucast": (*_IFX_ENTRY, 7),
        "hc_in_mcast": (*_IFX_ENTRY, 8),
        "hc_in_bcast": (*_IFX_ENTRY, 9),
        "hc_out_octets": (*_IFX_ENTRY, 10),
        "hc_out_ucast": (*_IFX_ENTRY, 11),
        "hc_out_mcast": (*_IFX_ENTRY, 12),
        "hc_out_bcast": (*_IFX_ENTRY, 13),
        "high_speed": (*_IFX_ENTRY, 15),
        "alias": (*_IFX_ENTRY, 18),
    },
)
# Only walked for interfaces without 64-bit counters (SNMPv1 never has them).
_IF32_TABLE = _Table(
    "ifTable counters",
    "interfaces",
    {
        "in_octets": (*_IF_ENTRY, 10),
        "in_ucast": (*_IF_ENTRY, 11),
        "in_nucast": (*_IF_ENTRY, 12),
        "out_octets": (*_IF_ENTRY, 16),
        "out_ucast": (*_IF_ENTRY, 17),
        "out_nucast": (*_IF_ENTRY, 18),
        "in_mcast": (*_IFX_ENTRY, 2),
        "in_bcast": (*_IFX_ENTRY, 3),
        "out_mcast": (*_IFX_ENTRY, 4),
        "out_bcast": (*_IFX_ENTRY, 5),
    },
)
_HR_PROCESSOR_TABLE = _Table("hrProcessorTable", "cpu", {"load": (1, 3, 6, 1, 2, 1, 25, 3, 3, 1, 2)}, rows=4)
_HR_STORAGE_TABLE = _Table(
    "hrStorageTable",
    "memory",
    {
        "type": (*_HR_STORAGE_ENTRY, 2),
        "descr": (*_HR_STORAGE_ENTRY, 3),
        "units": (*_HR_STORAGE_ENTRY, 4),
        "size": (*_HR_STORAGE_ENTRY, 5),
        "used": (*_HR_STORAGE_ENTRY, 6),
    },
    rows=3,  # RouterOS: main memory, system disk, tmpfs
)
# MIKROTIK-MIB mtxrGaugeTable (name, value, unit): newer devices report health here.
_MTXR_GAUGE_TABLE = _Table(
    "mtxrGaugeTable",
    "health",
    {"name": (*_MTXR_GAUGE_ENTRY, 2), "value": (*_MTXR_GAUGE_ENTRY, 3), "unit": (*_MTXR_GAUGE_ENTRY, 4)},
    rows=8,
)
_GAUGE_CELSIUS = 1
_GAUGE_DECIVOLT = 3
# mtxrGaugeUnit -> (our unit, divisor): celsius(1), rpm(2), dV(3), dA(4), dW(5); status(6) is a state.
_GAUGE_UNITS: dict[int, tuple[str, int]] = {1: ("C", 1), 2: ("RPM", 1), 3: ("V", 10), 4: ("A", 10), 5: ("W", 10)}
_GAUGE_STATUS = 6
_GAUGE_STATES = {0: "ok", 1: "fail"}


@dataclass(frozen=True)
class _HealthScalar:
    """A classic mtxrHealth scalar, named as RouterOS v6 /system/health names it."""

    name: str
    number: int  # the object is mtxrHealth.<number>.0
    unit: str | None  # None: a MIKROTIK-MIB BoolValue, true(1) meaning the PSU is ok
    divisor: int = 1

    @property
    def oid(self) -> Oid:
        return (*_MTXR_HEALTH, self.number, 0)


# Voltage, Temperature and Power are "d-1" (tenths) in MIKROTIK-MIB, mtxrHlCurrent is mA.
# mtxrHlProcessorFrequency (14) is no health reading; 1-7 are from RouterOS 2/3 era boards.
_HEALTH_SCALARS = (
    _HealthScalar("voltage", 8, "V", 10),
    _HealthScalar("temperature", 10, "C", 10),
    _HealthScalar("cpu-temperature", 11, "C", 10),
    _HealthScalar("power-consumption", 12, "W", 10),
    _HealthScalar("current", 13, "A", 1000),
    _HealthScalar("psu1-state", 15, None),
    _HealthScalar("psu2-state", 16, None),
    _HealthScalar("fan1-speed", 17, "RPM"),
    _HealthScalar("fan2-speed", 18, "RPM"),
)
# The probe fetches the scalars the system GET does not: a GETNEXT costs nothing on
# boards without them, where SNMPv1 refuses a GET and needs a retry per missing object.
_PROBED_HEALTH = tuple(h for h in _HEALTH_SCALARS if h.oid not in _SYSTEM_OIDS.values())

# -- optional discovery and routing MIBs ----------------------------------------
_LLDP_MIB: Oid = (1, 0, 8802, 1, 1, 2)
_LLDP_LOC_PORT_ENTRY: Oid = (*_LLDP_MIB, 1, 3, 7, 1)
_LLDP_REM_TABLE: Oid = (*_LLDP_MIB, 1, 4, 1)
_LLDP_REM_ENTRY: Oid = (*_LLDP_REM_TABLE, 1)
_LLDP_MAN_ADDR_ENTRY: Oid = (*_LLDP_MIB, 1, 4, 2, 1)
_BGP_MIB: Oid = (1, 3, 6, 1, 2, 1, 15)
_BGP_PEER_TABLE: Oid = (*_BGP_MIB, 3)
_BGP_PEER_ENTRY: Oid = (*_BGP_PEER_TABLE, 1)
_OSPF_MIB: Oid = (1, 3, 6, 1, 2, 1, 14)
_OSPF_NBR_TABLE: Oid = (*_OSPF_MIB, 10)
_OSPF_NBR_ENTRY: Oid = (*_OSPF_NBR_TABLE, 1)
_MTXR_WIRELESS: Oid = (1, 3, 6, 1, 4, 1, 14988, 1, 1, 1)
_MTXR_WL_RTAB_TABLE: Oid = (*_MTXR_WIRELESS, 2)
_MTXR_WL_RTAB_ENTRY: Oid = (*_MTXR_WL_RTAB_TABLE, 1)


@dataclass(frozen=True)
class _Optional:
    """A family read only when the probe finds a row in its table.

    ``mib`` tells "implemented, nothing to report" (an empty tuple) from "not
    implemented" (None): an agent with LLDP but no neighbours still answers
    something under the LLDP-MIB root.
    """

    mib: Oid
    table: Oid
    walk: _Table


# One walk per family even where its columns belong to different tables: a walk
# advances every column on its own, so each family costs a request or two.
# ``rows`` sizes the first walk only: later ones expect as many rows as the last.
_LLDP = _Optional(
    _LLDP_MIB,
    _LLDP_REM_TABLE,
    _Table(
        "LLDP-MIB",
        "neighbors",
        {
            "chassis_subtype": (*_LLDP_REM_ENTRY, 4),
            "chassis_id": (*_LLDP_REM_ENTRY, 5),
            "port_subtype": (*_LLDP_REM_ENTRY, 6),
            "port_id": (*_LLDP_REM_ENTRY, 7),
            "port_desc": (*_LLDP_REM_ENTRY, 8),
            "sys_name": (*_LLDP_REM_ENTRY, 9),
            "sys_desc": (*_LLDP_REM_ENTRY, 10),
            # lldpRemManAddrTable keeps the address in its index (read through the
            # lldpRemManAddrIfSubtype rows); RouterOS instead serves the two index
            # columns as readable objects, indexed like lldpRemTable.
            "man_subtype": (*_LLDP_MAN_ADDR_ENTRY, 1),
            "man_addr": (*_LLDP_MAN_ADDR_ENTRY, 2),
            "man_if_subtype": (*_LLDP_MAN_ADDR_ENTRY, 3),
        },
        rows=8,
    ),
)
_BGP = _Optional(
    _BGP_MIB,
    _BGP_PEER_TABLE,
    _Table(
        "bgpPeerTable",
        "bgp",
        {
            "local_as": (*_BGP_MIB, 2),  # bgpLocalAs.0: a scalar, so its "column" ends after one value
            "state": (*_BGP_PEER_ENTRY, 2),
            "admin": (*_BGP_PEER_ENTRY, 3),
            "remote_as": (*_BGP_PEER_ENTRY, 9),
            "established_time": (*_BGP_PEER_ENTRY, 16),
        },
        rows=4,
    ),
)
_OSPF = _Optional(
    _OSPF_MIB,
    _OSPF_NBR_TABLE,
    _Table("ospfNbrTable", "ospf", {"router_id": (*_OSPF_NBR_ENTRY, 3), "state": (*_OSPF_NBR_ENTRY, 6)}, rows=4),
)
# MIKROTIK-MIB mtxrWlRtabTable, indexed (MAC, ifIndex): the stations registered to
# the device's access points. mtxrWireless itself tells "wireless, no station"
# (an empty tuple) from a board without the wireless package (None). Walked
# only on MikroTik devices. Newer RouterOS also has signal-to-noise and tx
# strength columns; WirelessClient has no field for them, so they are not fetched.
_WIRELESS = _Optional(
    _MTXR_WIRELESS,
    _MTXR_WL_RTAB_TABLE,
    _Table(
        "mtxrWlRtabTable",
        "wireless",
        {
            "iface": (*_MTXR_WL_RTAB_ENTRY, 2),  # mtxrWlRtabIface: an ifIndex, also the index's last part
            "strength": (*_MTXR_WL_RTAB_ENTRY, 3),  # dBm
            "tx_rate": (*_MTXR_WL_RTAB_ENTRY, 8),  # bps
            "rx_rate": (*_MTXR_WL_RTAB_ENTRY, 9),
            "uptime": (*_MTXR_WL_RTAB_ENTRY, 11),  # TimeTicks
        },
        rows=16,
    ),
)
_OPTIONALS = (_LLDP, _BGP, _OSPF, _WIRELESS)
# lldpLocPortTable: how the device itself names a port. Read only for the ports
# neighbours were seen on: a switch has dozens of rows, nearly all unneeded.
_LLDP_LOC_COLUMNS = {
    "loc_subtype": (*_LLDP_LOC_PORT_ENTRY, 2),
    "loc_id": (*_LLDP_LOC_PORT_ENTRY, 3),
    "loc_desc": (*_LLDP_LOC_PORT_ENTRY, 4),
}

# bgpPeerState and ospfNbrState as the words the RouterOS collector reports, so both agree.
_BGP_STATES = {1: "idle", 2: "connect", 3: "active", 4: "opensent", 5: "openconfirm", 6: "established"}
_BGP_ESTABLISHED = 6
_BGP_ADMIN_STOP = 1
_OSPF_STATES = {1: "down", 2: "attempt", 3: "init", 4: "2-way", 5: "exstart", 6: "exchange", 7: "loading", 8: "full"}
_OSPF_FULL = 8
# LLDP-MIB LldpChassisIdSubtype / LldpPortIdSubtype values that change how an id reads.
_CHASSIS_MAC = 4
_PORT_MAC = 3
_PORT_INTERFACE_NAME = 5
_PORT_NAMING_SUBTYPES = (1, 5, 7)  # interfaceAlias, interfaceName, local
_ADDRESS_IPV4, _ADDRESS_IPV6 = 1, 2  # IANA AddressFamilyNumbers (lldpRemManAddrSubtype)
_MAC_TEXT = re.compile(r"[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}")

# Varbinds asked for per GETBULK: replies of a few KB, near what common agents
# return anyway. Decoding replies is most of a poll's CPU, so walks also avoid
# asking for rows past a table's end (see _Table.rows).
_VARBINDS_PER_REQUEST = 128
# One engine socket receives the replies of every device: a burst of bulk replies
# from a few dozen devices overflows the kernel default (~208 KB) and the drops
# look exactly like timeouts. The kernel caps this at net.core.rmem_max.
_RECEIVE_BUFFER_BYTES = 8 * 1024 * 1024
_TUNED_KEY = "ispvm.receive_buffer"  # marker in SnmpEngine.cache
# A walk that needs more requests than this is looping on a broken agent.
_MAX_REQUESTS_PER_WALK = 2000

# IANA ifType -> the RouterOS interface type word, so SNMP and API agree.
_IF_TYPE_NAMES: dict[int, str] = {
    1: "other",
    6: "ether",
    23: "ppp",
    24: "loopback",
    53: "virtual",
    71: "wlan",
    131: "tunnel",
    135: "vlan",
    161: "bond",
    209: "bridge",
}

_AUTH_PROTOCOLS: dict[str, Any] = {
    "NONE": snmp_config.USM_AUTH_NONE,
    "MD5": snmp_config.USM_AUTH_HMAC96_MD5,
    "SHA": snmp_config.USM_AUTH_HMAC96_SHA,
    "SHA224": snmp_config.USM_AUTH_HMAC128_SHA224,
    "SHA256": snmp_config.USM_AUTH_HMAC192_SHA256,
    "SHA384": snmp_config.USM_AUTH_HMAC256_SHA384,
    "SHA512": snmp_config.USM_AUTH_HMAC384_SHA512,
}
_PRIV_PROTOCOLS: dict[str, Any] = {
    "NONE": snmp_config.USM_PRIV_NONE,
    "DES": snmp_config.USM_PRIV_CBC56_DES,
    "3DES": snmp_config.USM_PRIV_CBC168_3DES,
    "AES": snmp_config.USM_PRIV_CFB128_AES,
    "AES128": snmp_config.USM_PRIV_CFB128_AES,
    "AES192": snmp_config.USM_PRIV_CFB192_AES,
    "AES256": snmp_config.USM_PRIV_CFB256_AES,
}

_AUTH_ERRORS = (
    errind.UnknownUserName,
    errind.UnknownSecurityName,
    errind.WrongDigest,
    errind.AuthenticationError,
    errind.AuthenticationFailure,
    errind.DecryptionError,
    errind.NoEncryption,
    errind.NoAuthentication,
    errind.UnsupportedSecurityLevel,
    errind.UnsupportedAuthProtocol,
    errind.UnsupportedPrivProtocol,
    errind.UnknownCommunityName,
)

# What SNMP exposes of a device's configuration (SnmpCollector.read_config), as pseudo menus that
# engine/config_normalise.py files under "system" and "interfaces".
_CONFIG_SYSTEM_OIDS: dict[str, Oid] = {
    "name": _SYSTEM_OIDS["name"],
    "contact": (1, 3, 6, 1, 2, 1, 1, 4, 0),
    "location": (1, 3, 6, 1, 2, 1, 1, 6, 0),
}
_CONFIG_IF_COLUMNS: dict[str, Oid] = {
    "descr": (*_IF_ENTRY, 2),
    "mtu": (*_IF_ENTRY, 4),
    "admin": (*_IF_ENTRY, 7),
    "alias": (*_IFX_ENTRY, 18),
}
_ADMIN_STATUS = {1: "up", 2: "down", 3: "testing"}

_NO_SUCH_NAME = "noSuchName"
_EXCEPTION_VALUES = wire.VarBindException
_VarBinds = list[tuple[Oid, Any]]


@dataclass(frozen=True)
class SnmpTarget:
    name: str
    address: str
    port: int = 161
    version: Literal["1", "2c", "3"] = "2c"
    community: str = field(default="public", repr=False)
    v3_user: str | None = None
    v3_auth_key: str | None = field(default=None, repr=False)
    v3_auth_proto: str = "SHA"
    v3_priv_key: str | None = field(default=None, repr=False)
    v3_priv_proto: str = "AES"
    context: str = ""  # SNMPv3 context name
    timeout: float = 2.0  # seconds per try
    retries: int = 1
    max_repetitions: int = 25

    def __post_init__(self) -> None:
        # Configuration mistakes fail here, at load time, not as poll errors later.
        if self.version not in ("1", "2c", "3"):
            raise ValueError(f"{self.name}: unsupported SNMP version {self.version!r}")
        if self.version == "3":
            if not self.v3_user:
                raise ValueError(f"{self.name}: SNMPv3 needs v3_user")
            if self.v3_auth_proto.upper() not in _AUTH_PROTOCOLS:
                raise ValueError(f"{self.name}: unknown SNMPv3 auth protocol {self.v3_auth_proto!r}")
            if self.v3_priv_proto.upper() not in _PRIV_PROTOCOLS:
                raise ValueError(f"{self.name}: unknown SNMPv3 privacy protocol {self.v3_priv_proto!r}")
            if self.v3_priv_key and not self.v3_auth_key:
                raise ValueError(f"{self.name}: SNMPv3 privacy needs an auth key too")

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in an error message."""
        values = (self.community, self.v3_auth_key, self.v3_priv_key)
        return tuple(v for v in values if v)


class _SnmpFailure(Exception):
    """A request failed as a whole (no usable reply)."""

    def __init__(self, kind: ErrorKind, message: str, *, garbage: bool = False) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.garbage = garbage  # only undecodable datagrams came back: nothing else will work either


@dataclass(frozen=True)
class _Refused:
    """The agent answered with an error status naming one requested varbind."""

    position: int
    status: str


@dataclass
class _Walk:
    """Columns of one table walk: column name -> {instance suffix: value}."""

    columns: dict[str, dict[Oid, Any]]
    errors: list[str] = field(default_factory=list)  # columns the agent refused

    @classmethod
    def empty(cls, table: _Table) -> _Walk:
        return cls({name: {} for name in table.columns})


@dataclass
class _Extras:
    """What the probe and the optional walks found.

    ``walks`` maps a family to its walk: an empty walk for a MIB without rows,
    None for a MIB the device lacks or a family that failed (then it is stale).
    """

    health: dict[Oid, Any] = field(default_factory=dict)
    walks: dict[str, _Walk | None] = field(default_factory=dict)


class SnmpCollector:
    """Polls one SNMP target; ``poll()`` reports every failure in its PollResult."""

    def __init__(self, target: SnmpTarget, *, clock: Clock, engine: SnmpEngine | None = None,
                 poll_timeout: float | None = None) -> None:
        self.target = target
        # The whole poll's limit ([polling].timeout_s): every request has its own tries of
        # target.timeout, and a poll makes many requests, one after another.
        self._poll_timeout = poll_timeout
        self._clock = clock
        self._engine = engine
        self._owns_engine = engine is None
        self._transport: UdpTransportTarget | None = None
        self._wire: wire.SnmpV2Transport | None = None  # v1/v2c: our own client, not pysnmp
        self._wire_address: tuple[str, int] | None = None
        self._auth = _auth_data(target)
        self._context = ContextData(contextName=target.context.encode()) if target.context else ContextData()
        # Rows of each optional table at the last poll: neighbour and peer counts rarely
        # change, so asking for one row more than that ends the walk without wasted rows.
        self._rows_seen: dict[str, int] = {}

    async def close(self) -> None:
        """Release the engine this collector created for itself (a shared one is left alone)."""
        if self._owns_engine and self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None
        self._transport = None
        self._wire = None  # shared by every collector of the loop: left open

    async def poll(self) -> PollResult:
        started_at = self._clock.now()
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(self._poll_timeout):
                fields = await self._collect()
        except asyncio.CancelledError:
            raise
        except TimeoutError:  # only the poll's own limit: request timeouts are _SnmpFailure
            where = f"{self.target.address}:{self.target.port}"
            fields = {"ok": False, "error_kind": "timeout",
                      "error": f"SNMP poll of {where} did not finish within {self._poll_timeout:g} s "
                               f"(the poll timeout)"}
        except _SnmpFailure as exc:
            fields = {"ok": False, "error": self._scrub(exc.message), "error_kind": exc.kind}
        except Exception as exc:  # a bug or an unexpected library error must not stop the poller
            fields = {"ok": False, "error": self._scrub(f"{type(exc).__name__}: {exc}"), "error_kind": "error"}
        return PollResult(
            device=self.target.name,
            collector="snmp",
            started_at=started_at,
            duration_s=time.monotonic() - t0,
            **fields,
        )

    async def read_config(self) -> ConfigRead:
        """What the device exposes of its configuration over SNMP; never raises (except cancellation).

        sysName, sysContact and sysLocation become the ``/snmp:system`` row;
        ifDescr, ifAlias, ifAdminStatus and ifMtu one ``/snmp:interfaces`` row
        per interface (named by ifDescr: ifIndex may renumber after a reboot).
        A table walk the agent refuses in part leaves the interfaces out rather
        than half read.
        """
        started_at = self._clock.now()
        try:
            async with asyncio.timeout(self._poll_timeout):
                menus = await self._read_config()
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            where = f"{self.target.address}:{self.target.port}"
            return ConfigRead(device=self.target.name, collector="snmp", started_at=started_at, ok=False,
                              error=f"SNMP configuration read of {where} did not finish within "
                                    f"{self._poll_timeout:g} s (the poll timeout)")
        except Exception as exc:
            return ConfigRead(device=self.target.name, collector="snmp", started_at=started_at, ok=False,
                              error=self._reason(exc))
        return ConfigRead(device=self.target.name, collector="snmp", started_at=started_at, ok=True, menus=menus)

    async def _read_config(self) -> dict[str, list[dict[str, str]]]:
        scalars = await self._get([*_CONFIG_SYSTEM_OIDS.values(), _SYSTEM_OIDS["if_number"]])
        menus: dict[str, list[dict[str, str]]] = {}
        if any(oid in scalars for oid in _CONFIG_SYSTEM_OIDS.values()):
            menus["/snmp:system"] = [{name: _text(scalars[oid]) or "" for name, oid in _CONFIG_SYSTEM_OIDS.items()
                                      if oid in scalars}]
        walk = await self._walk(_CONFIG_IF_COLUMNS, _int(scalars.get(_SYSTEM_OIDS["if_number"])))
        if not walk.errors:
            cols = walk.columns
            menus["/snmp:interfaces"] = [
                {"descr": _text(descr) or "", "alias": _text(cols["alias"].get(index)) or "",
                 "admin-status": _admin_status(cols["admin"].get(index)), "mtu": _number(cols["mtu"].get(index))}
                for index, descr in sorted(cols["descr"].items())
            ]
        return menus

    # -- one poll ---------------------------------------------------------

    async def _collect(self) -> dict[str, Any]:
        stale: dict[str, str] = {}
        try:
            scalars = await self._get(list(_SYSTEM_OIDS.values()))
        except _SnmpFailure as exc:
            if exc.kind != "protocol" or exc.garbage:
                raise  # silent, refusing or babbling device: nothing else will work either
            stale["system"], scalars = self._scrub(exc.message), {}

        tables = [_IF_TABLE, _IFX_TABLE, _HR_PROCESSOR_TABLE, _HR_STORAGE_TABLE]
        mikrotik = str(scalars.get(_SYSTEM_OIDS["object_id"], "")).startswith(_MIKROTIK_ENTERPRISE)
        if mikrotik:
            tables.append(_MTXR_GAUGE_TABLE)
        interfaces_hint = _int(scalars.get(_SYSTEM_OIDS["if_number"]))
        walked, extras = await asyncio.gather(
            asyncio.gather(*(self._walk_table(table, stale, interfaces_hint) for table in tables)),
            self._extras(stale, mikrotik),
        )
        got = {table.label: walk for table, walk in zip(tables, walked, strict=True)}
        if_walk, ifx_walk = got["ifTable"], got["ifXTable"]
        if _lacks_64bit_counters(if_walk, ifx_walk):
            got["ifTable counters"] = await self._walk_table(_IF32_TABLE, stale, interfaces_hint)

        system = None
        if scalars or got["hrProcessorTable"] or got["hrStorageTable"]:
            system = _system_info(scalars, got)
        interfaces = _interfaces(if_walk, ifx_walk, got.get("ifTable counters"))
        sensors = None
        if mikrotik and "health" not in stale:
            sensors = _sensors(got.get("mtxrGaugeTable"), {**scalars, **extras.health})
        ports = _PortNames.of(interfaces, if_walk)
        lldp, bgp, ospf, wireless = (extras.walks.get(opt.walk.family) for opt in _OPTIONALS)
        return {
            "ok": True,
            "system": system,
            "interfaces": interfaces,
            "sensors": sensors,
            "neighbors": _lldp_neighbors(lldp, ports) if lldp is not None else None,
            "bgp": _bgp_sessions(bgp) if bgp is not None else None,
            "ospf": _ospf_neighbors(ospf, ports) if ospf is not None else None,
            "wireless": _wireless_clients(wireless, ports) if wireless is not None else None,
            "storage": _storage(got["hrStorageTable"]) if "memory" not in stale else None,
            "stale": stale,
        }

    async def _extras(self, stale: dict[str, str], mikrotik: bool) -> _Extras:
        """Probe for the optional families (and MikroTik health scalars), then walk what is there."""
        # A GETNEXT from the object (no ".0") returns the scalar if the board has it.
        health = [h.oid[:-1] for h in _PROBED_HEALTH] if mikrotik else []
        optionals = [opt for opt in _OPTIONALS if mikrotik or opt is not _WIRELESS]
        roots = [oid for opt in optionals for oid in (opt.mib, opt.table)]
        try:
            found = await self._probe([*roots, *health])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            for family in [opt.walk.family for opt in optionals] + (["health"] if mikrotik else []):
                _add_stale(stale, family, f"probe: {self._reason(exc)}")
            return _Extras()
        extras = _Extras()
        for h in _PROBED_HEALTH if mikrotik else ():
            oid, value = found.get(h.oid[:-1], ((), None))
            if oid == h.oid:  # the GETNEXT landed on the scalar itself, not on whatever follows
                extras.health[h.oid] = value
        walks = await asyncio.gather(*(self._optional(opt, found, stale, mikrotik) for opt in optionals))
        extras.walks = {opt.walk.family: walk for opt, walk in zip(optionals, walks, strict=True)}
        return extras

    async def _optional(
        self, opt: _Optional, found: dict[Oid, tuple[Oid, Any]], stale: dict[str, str], mikrotik: bool
    ) -> _Walk | None:
        """Walk one optional family if the probe saw a row; None if the MIB is absent or the walk failed."""
        table = opt.walk
        if not _under(found.get(opt.table), opt.table):
            return _Walk.empty(table) if _under(found.get(opt.mib), opt.mib) else None
        walk = await self._walk_table(replace(table, rows=self._rows_seen.get(table.label, table.rows)), stale, None)
        if walk is None or table.family in stale:
            return None  # a refused column leaves a partial family (neighbours without names...): report none
        self._rows_seen[table.label] = max(len(rows) for rows in walk.columns.values())
        # RouterOS numbers LLDP ports by ifIndex and lists only port MACs in lldpLocPortTable
        # (see the recordings): its rows would name nothing, so they are not fetched.
        if opt is _LLDP and not mikrotik:
            try:
                walk.columns.update(await self._lldp_local_ports(walk))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _add_stale(stale, table.family, f"lldpLocPortTable: {self._reason(exc)}")
                return None
        return walk

    async def _lldp_local_ports(self, walk: _Walk) -> dict[str, dict[Oid, Any]]:
        """lldpLocPortTable rows of the ports in ``walk``, by one GETNEXT per cell.

        A GETNEXT from the row before lands on the wanted row when it exists; a
        GET would cost SNMPv1 a retry for each object the agent lacks.
        """
        rows = {index for name in _LLDP_REM_COLUMNS for index in walk.columns[name]}
        ports = sorted({index[1] for index in rows if len(index) == 3 and index[1] > 0})
        wanted = {
            (*base, port - 1): (name, (*base, port)) for name, base in _LLDP_LOC_COLUMNS.items() for port in ports
        }
        columns: dict[str, dict[Oid, Any]] = {name: {} for name in _LLDP_LOC_COLUMNS}
        found = await self._probe(list(wanted)) if wanted else {}
        for request, (name, oid) in wanted.items():
            got, value = found.get(request, ((), None))
            if got == oid:
                columns[name][oid[-1:]] = value
        return columns

    async def _walk_table(self, table: _Table, stale: dict[str, str], interfaces: int | None) -> _Walk | None:
        """Walk one table; a failure marks its family stale instead of failing the poll."""
        try:
            walk = await self._walk(table.columns, table.rows if table.rows is not None else interfaces)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _add_stale(stale, table.family, f"{table.label}: {self._reason(exc)}")
            return None
        for error in walk.errors:
            _add_stale(stale, table.family, f"{table.label}: {error}")
        return walk

    def _reason(self, exc: Exception) -> str:
        """Why a request failed, fit for ``stale``: no secrets, library errors with their type."""
        return self._scrub(exc.message if isinstance(exc, _SnmpFailure) else f"{type(exc).__name__}: {exc}")

    def _scrub(self, text: str) -> str:
        for secret in self.target.secrets():
            text = text.replace(secret, "***")
        return text

    # -- SNMP requests ----------------------------------------------------

    async def _session(self) -> tuple[SnmpEngine, UdpTransportTarget]:
        if self._engine is None:
            # Created lazily so it binds to the running event loop.
            self._engine = SnmpEngine()
        if self._transport is None:
            self._transport = await UdpTransportTarget.create(
                (self.target.address, self.target.port), timeout=self.target.timeout, retries=self.target.retries
            )
        return self._engine, self._transport

    def _tune_engine_socket(self, engine: SnmpEngine) -> None:
        """Widen the engine's receive buffer once its socket exists (after a first request)."""
        if engine.cache.get(_TUNED_KEY):
            return
        carrier = snmp_config.get_transport(engine, udp.DOMAIN_NAME)
        datagram = getattr(carrier, "transport", None)
        sock = datagram.get_extra_info("socket") if datagram is not None else None
        if sock is None:
            return  # not connected yet: the next request tries again
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            # FORCE passes rmem_max but needs CAP_NET_ADMIN; plain RCVBUF is capped by it.
            with contextlib.suppress(OSError, TypeError):
                sock.setsockopt(socket.SOL_SOCKET, option, _RECEIVE_BUFFER_BYTES)
                break
        engine.cache[_TUNED_KEY] = True

    async def _request(self, pdu: int, oids: list[Oid], repetitions: int = 0) -> tuple[int, int, _VarBinds]:
        """One GET / GETNEXT / GETBULK: (error status, error index, [(oid, plain value)]).

        SNMPv1 and v2c go through the light client in ``snmp_wire``; v3 through
        pysnmp, its values converted to the same plain ones. A request without a
        usable reply raises _SnmpFailure.
        """
        if self.target.version == "3":
            return await self._pysnmp_request(pdu, oids, repetitions)
        client, address = await self._wire_session()
        version = wire.VERSION_1 if self.target.version == "1" else wire.VERSION_2C
        try:
            reply = await client.request(
                address,
                version,
                self.target.community.encode(),
                pdu,
                oids,
                timeout=self.target.timeout,
                retries=self.target.retries,
                max_repetitions=repetitions,
            )
        except wire.SnmpTimeout:
            raise _SnmpFailure(*self._timed_out()) from None
        except wire.SnmpGarbage as exc:
            where = f"{self.target.address}:{self.target.port}"
            raise _SnmpFailure("protocol", f"SNMP request to {where} failed: {exc}", garbage=True) from None
        except OSError as exc:  # an ICMP error for this target, or no route to it
            where = f"{self.target.address}:{self.target.port}"
            raise _SnmpFailure(os_error_kind(exc), f"SNMP request to {where} failed: {os_error_text(exc)}") from None
        varbinds = reply.varbinds
        if version == wire.VERSION_1 and any(type(v) is wire.Counter64 for _, v in varbinds):
            # SNMPv1 cannot carry Counter64 (RFC 3584): a reply with one is malformed.
            where = f"{self.target.address}:{self.target.port}"
            raise _SnmpFailure("protocol", f"SNMP request to {where} failed: Counter64 in an SNMPv1 reply")
        return reply.error_status, reply.error_index, varbinds

    async def _wire_session(self) -> tuple[wire.SnmpV2Transport, tuple[str, int]]:
        if self._wire_address is None:
            host, port = self.target.address, self.target.port
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
                if not infos:
                    raise _SnmpFailure("protocol", f"cannot resolve {host}") from None
                ip = ipaddress.ip_address(infos[0][4][0])
            self._wire_address = (str(ip), port)
        if self._wire is None or self._wire.transport is None or self._wire.transport.is_closing():
            family = socket.AF_INET6 if ":" in self._wire_address[0] else socket.AF_INET
            self._wire = await wire.SnmpV2Transport.shared(family)
        return self._wire, self._wire_address

    async def _pysnmp_request(self, pdu: int, oids: list[Oid], repetitions: int) -> tuple[int, int, _VarBinds]:
        engine, transport = await self._session()
        request = _pysnmp_varbinds(oids)
        if pdu == wire.GET:
            reply = await get_cmd(engine, self._auth, transport, self._context, *request, lookupMib=False)
        elif pdu == wire.GET_NEXT:
            reply = await next_cmd(engine, self._auth, transport, self._context, *request, lookupMib=False)
        else:
            reply = await bulk_cmd(
                engine, self._auth, transport, self._context, 0, repetitions, *request, lookupMib=False
            )
        self._tune_engine_socket(engine)
        indication, status, index, varbinds = reply
        if indication:
            raise _SnmpFailure(*self._describe(indication))
        return int(status or 0), int(index or 0), [(tuple(name), _plain(value)) for name, value in varbinds]

    async def _get(self, oids: list[Oid]) -> dict[Oid, Any]:
        """GET scalars; objects the agent does not have are left out."""
        pending = list(oids)
        values: dict[Oid, Any] = {}
        while pending:
            reply = await self._request(wire.GET, pending)
            refused = self._check(*reply[:2], len(pending))
            if refused is not None:
                # SNMPv1 refuses the whole GET for one unknown object: drop it, ask again.
                del pending[refused.position]
                continue
            for name, value in reply[2]:
                if not isinstance(value, _EXCEPTION_VALUES):
                    values[name] = value
            break
        return values

    async def _probe(self, oids: list[Oid]) -> dict[Oid, tuple[Oid, Any]]:
        """One GETNEXT for all ``oids``: requested OID -> (next OID, its value); nothing past the MIB's end."""
        pending = list(oids)
        while pending:
            reply = await self._request(wire.GET_NEXT, pending)
            refused = self._check(*reply[:2], len(pending))
            if refused is None:
                return {
                    oid: (name, value)
                    for oid, (name, value) in zip(pending, reply[2], strict=False)
                    if not isinstance(value, _EXCEPTION_VALUES)
                }
            if self.target.version != "1" or refused.status != _NO_SUCH_NAME:
                raise _SnmpFailure("protocol", f"agent refused {_dotted(pending[refused.position])} ({refused.status})")
            # SNMPv1's end of MIB: nothing follows that OID, nor any OID after it.
            last = pending[refused.position]
            pending = [oid for oid in pending if oid < last]
        return {}

    async def _walk(self, columns: dict[str, Oid], expected_rows: int | None = None) -> _Walk:
        """Walk several columns side by side until each leaves its subtree."""
        result = _Walk({name: {} for name in columns})
        cursor = dict(columns)
        active = list(columns)
        for _ in range(_MAX_REQUESTS_PER_WALK):
            if not active:
                return result
            wanted = None
            if expected_rows is not None:
                # One row past the expected end shows that the table really ended.
                seen = max((len(result.columns[name]) for name in active), default=0)
                wanted = expected_rows + 1 - seen if seen <= expected_rows else None
            reply = await self._next_rows([cursor[name] for name in active], wanted)
            if isinstance(reply, _Refused):
                # One column refused: v1 says noSuchName at its end of MIB; anything
                # else is a real error, and its partial rows would mislead (CPU average...).
                name = active.pop(reply.position)
                if self.target.version != "1" or reply.status != _NO_SUCH_NAME:
                    result.columns[name] = {}
                    result.errors.append(f"agent refused column {_dotted(columns[name])} ({reply.status})")
                continue
            active = _absorb(reply, active, columns, cursor, result)
        raise _SnmpFailure("protocol", "walk did not finish: agent keeps returning rows")

    async def _next_rows(self, oids: list[Oid], rows: int | None = None) -> Sequence[tuple[Any, Any]] | _Refused:
        """Up to ``rows`` rows by GETBULK (one by GETNEXT on v1) from ``oids``, or which one was refused."""
        if self.target.version == "1":
            reply = await self._request(wire.GET_NEXT, oids)
        else:
            repetitions = max(1, min(self.target.max_repetitions, _VARBINDS_PER_REQUEST // len(oids), rows or 1 << 30))
            reply = await self._request(wire.GET_BULK, oids, repetitions)
        refused = self._check(*reply[:2], len(oids), bulk=self.target.version != "1")
        return reply[2] if refused is None else refused

    def _check(self, status: int, index: int, sent: int, bulk: bool = False) -> _Refused | None:
        """For an error status naming one varbind, which one; raise for any other error status."""
        if not status:
            return None
        status_text = _status_name(status)
        position = int(index or 0) - 1
        if bulk and position >= sent:
            # Some agents count the failed binding in the reply, not the request:
            # with no non-repeaters that still maps onto one requested column.
            position %= sent
        if 0 <= position < sent:
            return _Refused(position, status_text)
        raise _SnmpFailure("protocol", f"agent answered with error status {status_text}")

    def _timed_out(self) -> tuple[ErrorKind, str]:
        where = f"{self.target.address}:{self.target.port}"
        tries = self.target.retries + 1
        return "timeout", f"no SNMP response from {where} within {self.target.timeout:g} s ({tries} tries)"

    def _describe(self, indication: Any) -> tuple[ErrorKind, str]:
        where = f"{self.target.address}:{self.target.port}"
        if isinstance(indication, errind.RequestTimedOut):
            return self._timed_out()
        kind: ErrorKind = "auth" if isinstance(indication, _AUTH_ERRORS) else "protocol"
        return kind, f"SNMP request to {where} failed: {indication}"


def _auth_data(target: SnmpTarget) -> CommunityData | UsmUserData:
    if target.version == "3":
        auth = _AUTH_PROTOCOLS[target.v3_auth_proto.upper()] if target.v3_auth_key else None
        priv = _PRIV_PROTOCOLS[target.v3_priv_proto.upper()] if target.v3_priv_key else None
        return UsmUserData(
            target.v3_user,
            authKey=target.v3_auth_key,
            privKey=target.v3_priv_key,
            authProtocol=auth,
            privProtocol=priv,
        )
    return CommunityData(target.community, mpModel=0 if target.version == "1" else 1)


def _pysnmp_varbinds(oids: Sequence[Oid]) -> list[tuple[ObjectName, univ.Null]]:
    return [(ObjectName(oid), univ.Null("")) for oid in oids]


# pysnmp value classes -> the plain values snmp_wire decodes to (most specific first).
_PYSNMP_INTEGERS: tuple[tuple[type, type[int]], ...] = (
    (rfc1902.Counter64, wire.Counter64),
    (rfc1902.Counter32, wire.Counter32),
    (rfc1902.Gauge32, wire.Gauge32),
    (rfc1902.TimeTicks, wire.TimeTicks),
)
_PYSNMP_EXCEPTIONS: tuple[tuple[type, wire.VarBindException], ...] = (
    (rfc1905.NoSuchObject, wire.NO_SUCH_OBJECT),
    (rfc1905.NoSuchInstance, wire.NO_SUCH_INSTANCE),
    (rfc1905.EndOfMibView, wire.END_OF_MIB_VIEW),
)


def _plain(value: Any) -> Any:
    """A pysnmp (SNMPv3) value as the plain value snmp_wire would give for it."""
    for cls, sentinel in _PYSNMP_EXCEPTIONS:
        if isinstance(value, cls):
            return sentinel
    if isinstance(value, rfc1902.IpAddress):
        raw = bytes(value)
        return str(ipaddress.IPv4Address(raw)) if len(raw) == 4 else raw
    if isinstance(value, univ.OctetString):
        return bytes(value)
    if isinstance(value, univ.ObjectIdentifier):
        return wire.ObjectId(tuple(value))
    if isinstance(value, univ.Integer):
        for cls, plain in _PYSNMP_INTEGERS:
            if isinstance(value, cls):
                return plain(int(value))
        return wire.Integer32(int(value))
    if isinstance(value, univ.Null):
        return None
    return value


def _absorb(
    reply: Sequence[tuple[Any, Any]],
    active: list[str],
    columns: dict[str, Oid],
    cursor: dict[str, Oid],
    result: _Walk,
) -> list[str]:
    """File one GETBULK/GETNEXT reply into ``result``; the columns still going."""
    done: set[str] = set()
    width = len(active)
    for position, (oid, value) in enumerate(reply):
        column = active[position % width]
        if column in done:
            continue
        base = columns[column]
        if (
            isinstance(value, _EXCEPTION_VALUES)  # endOfMibView (the others are not valid here)
            or oid[: len(base)] != base
            or oid <= cursor[column]  # a non-increasing agent would loop forever
        ):
            done.add(column)
            continue
        result.columns[column][oid[len(base) :]] = value
        cursor[column] = oid
    if not reply:
        return []  # an empty reply without an error: nothing more to get
    return [column for column in active if column not in done]


def _add_stale(stale: dict[str, str], family: str, reason: str) -> None:
    stale[family] = f"{stale[family]}; {reason}" if family in stale else reason


def _lacks_64bit_counters(if_walk: _Walk | None, ifx_walk: _Walk | None) -> bool:
    """True if some interface has no ifHCInOctets (32-bit agent, SNMPv1, odd row)."""
    indexes = {index for walk in (if_walk, ifx_walk) if walk for column in walk.columns.values() for index in column}
    hc = ifx_walk.columns["hc_in_octets"] if ifx_walk else {}
    return any(index not in hc for index in indexes)


def _status_name(status: Any) -> str:
    try:
        return str(rfc1905.errorStatus.clone(int(status)).prettyPrint())
    except Exception:  # out-of-range code from a broken agent
        return str(status)


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


def _under(found: tuple[Oid, Any] | None, prefix: Oid) -> bool:
    return found is not None and found[0][: len(prefix)] == prefix


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


_LLDP_REM_COLUMNS = ("chassis_id", "port_id", "port_desc", "sys_name", "sys_desc")


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
