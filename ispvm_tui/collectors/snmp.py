"""SNMP poller: system (with CPU, RAM and MikroTik health) and interfaces of one device.

Built on pysnmp 7's asyncio high-level API. One ``SnmpEngine`` should be
shared by all collectors of a process (pass ``engine=``): an engine owns a
socket, a request-id space and its configuration tables, so one per device
does not scale.

Tables are read with multi-column GETBULK walks: each request carries the
next OID of every column still in progress, so a table costs about
``rows * columns / varbinds-per-reply`` round trips instead of one walk per
column (GETNEXT on SNMPv1). The system scalars come first in one GET: if the
device does not answer that, the poll stops there (``ok=False``) instead of
waiting for every table to time out too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
from pysnmp.proto import errind, rfc1905
from pysnmp.proto.rfc1902 import ObjectName

from ispvm_tui.clock import Clock
from ispvm_tui.collectors.results import ErrorKind, InterfaceStat, PollResult, SystemInfo

Oid = tuple[int, ...]


_IF_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 2, 2, 1)
_IFX_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
_HR_STORAGE_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 25, 2, 3, 1)
_MTXR_HEALTH: Oid = (1, 3, 6, 1, 4, 1, 14988, 1, 1, 3)
_MTXR_GAUGE_ENTRY: Oid = (*_MTXR_HEALTH, 100, 1)
_HR_STORAGE_RAM = "1.3.6.1.2.1.25.2.1.2"
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

_NO_SUCH_NAME = "noSuchName"
_EXCEPTION_VALUES = (rfc1905.NoSuchObject, rfc1905.NoSuchInstance, rfc1905.EndOfMibView)


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

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message


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


class SnmpCollector:
    """Polls one SNMP target; ``poll()`` reports every failure in its PollResult."""

    def __init__(self, target: SnmpTarget, *, clock: Clock, engine: SnmpEngine | None = None) -> None:
        self.target = target
        self._clock = clock
        self._engine = engine
        self._owns_engine = engine is None
        self._transport: UdpTransportTarget | None = None
        self._auth = _auth_data(target)
        self._context = ContextData(contextName=target.context.encode()) if target.context else ContextData()

    async def close(self) -> None:
        """Release the engine this collector created for itself (a shared one is left alone)."""
        if self._owns_engine and self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None
        self._transport = None

    async def poll(self) -> PollResult:
        started_at = self._clock.now()
        t0 = time.monotonic()
        try:
            fields = await self._collect()
        except asyncio.CancelledError:
            raise
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

    # -- one poll ---------------------------------------------------------

    async def _collect(self) -> dict[str, Any]:
        stale: dict[str, str] = {}
        try:
            scalars = await self._get(list(_SYSTEM_OIDS.values()))
        except _SnmpFailure as exc:
            if exc.kind != "protocol":
                raise  # silent or refusing device: nothing else will work either
            stale["system"], scalars = self._scrub(exc.message), {}

        tables = [_IF_TABLE, _IFX_TABLE, _HR_PROCESSOR_TABLE, _HR_STORAGE_TABLE]
        if str(scalars.get(_SYSTEM_OIDS["object_id"], "")).startswith(_MIKROTIK_ENTERPRISE):
            tables.append(_MTXR_GAUGE_TABLE)
        interfaces_hint = _int(scalars.get(_SYSTEM_OIDS["if_number"]))
        walked = await asyncio.gather(*(self._walk_table(table, stale, interfaces_hint) for table in tables))
        got = {table.label: walk for table, walk in zip(tables, walked, strict=True)}
        if_walk, ifx_walk = got["ifTable"], got["ifXTable"]
        if _lacks_64bit_counters(if_walk, ifx_walk):
            got["ifTable counters"] = await self._walk_table(_IF32_TABLE, stale, interfaces_hint)

        system = None
        if scalars or got["hrProcessorTable"] or got["hrStorageTable"]:
            system = _system_info(scalars, got)
        interfaces = _interfaces(if_walk, ifx_walk, got.get("ifTable counters"))
        return {"ok": True, "system": system, "interfaces": interfaces, "stale": stale}

    async def _walk_table(self, table: _Table, stale: dict[str, str], interfaces: int | None) -> _Walk | None:
        """Walk one table; a failure marks its family stale instead of failing the poll."""
        try:
            walk = await self._walk(table.columns, table.rows if table.rows is not None else interfaces)
        except asyncio.CancelledError:
            raise
        except _SnmpFailure as exc:
            _add_stale(stale, table.family, f"{table.label}: {self._scrub(exc.message)}")
            return None
        except Exception as exc:
            _add_stale(stale, table.family, f"{table.label}: {self._scrub(f'{type(exc).__name__}: {exc}')}")
            return None
        for error in walk.errors:
            _add_stale(stale, table.family, f"{table.label}: {error}")
        return walk

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

    async def _get(self, oids: list[Oid]) -> dict[Oid, Any]:
        """GET scalars; objects the agent does not have are left out."""
        engine, transport = await self._session()
        pending = list(oids)
        values: dict[Oid, Any] = {}
        while pending:
            reply = await get_cmd(engine, self._auth, transport, self._context, *_request(pending), lookupMib=False)
            self._tune_engine_socket(engine)
            refused = self._check(*reply[:3], len(pending))
            if refused is not None:
                # SNMPv1 refuses the whole GET for one unknown object: drop it, ask again.
                del pending[refused.position]
                continue
            for name, value in reply[3]:
                if not isinstance(value, _EXCEPTION_VALUES):
                    values[tuple(name)] = value
            break
        return values

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
        engine, transport = await self._session()
        if self.target.version == "1":
            reply = await next_cmd(engine, self._auth, transport, self._context, *_request(oids), lookupMib=False)
        else:
            repetitions = max(1, min(self.target.max_repetitions, _VARBINDS_PER_REQUEST // len(oids), rows or 1 << 30))
            reply = await bulk_cmd(
                engine, self._auth, transport, self._context, 0, repetitions, *_request(oids), lookupMib=False
            )
        refused = self._check(*reply[:3], len(oids), bulk=self.target.version != "1")
        return reply[3] if refused is None else refused

    def _check(self, indication: Any, status: Any, index: Any, sent: int, bulk: bool = False) -> _Refused | None:
        """Raise for a failed request; for an error status naming one varbind, which one."""
        if indication:
            raise _SnmpFailure(*self._describe(indication))
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

    def _describe(self, indication: Any) -> tuple[ErrorKind, str]:
        where = f"{self.target.address}:{self.target.port}"
        if isinstance(indication, errind.RequestTimedOut):
            tries = self.target.retries + 1
            return "timeout", f"no SNMP response from {where} within {self.target.timeout:g} s ({tries} tries)"
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


def _request(oids: Sequence[Oid]) -> list[tuple[ObjectName, univ.Null]]:
    return [(ObjectName(oid), univ.Null("")) for oid in oids]


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
    for position, (name, value) in enumerate(reply):
        column = active[position % width]
        if column in done:
            continue
        oid = tuple(name)
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
    if isinstance(value, univ.Integer):
        return int(value)
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, univ.OctetString):
        return bytes(value).decode("utf-8", errors="replace")
    return None if value is None else str(value)


def _mac(value: Any) -> str | None:
    raw = bytes(value) if isinstance(value, univ.OctetString) else b""
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
