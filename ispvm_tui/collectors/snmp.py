"""SNMP poller: system, interfaces, storage, health, LLDP, BGP, OSPF and wireless registrations.

This module holds the targets and the orchestration of a poll (requests,
walks, the probe, the configuration read); what it asks for is in
``snmp_mibs``, how replies become results in ``snmp_decode``.

SNMPv1 and v2c requests go through ``snmp_wire``: a hand BER codec and one
shared UDP socket per event loop, decoding a varbind in a couple of
microseconds where pysnmp/pyasn1 take tens. SNMPv3 (USM) stays on pysnmp 7's
asyncio high-level API (``snmp_v3``, imported only when a collector is given
a v3 target, so a fleet without v3 never loads pysnmp), its values converted
to the same plain ones. One ``SnmpEngine`` (``snmp_v3.new_engine()``) should
be shared by all v3 collectors of a process (pass ``engine=``): an engine owns
a socket, a request-id space and its configuration tables, so one per device
does not scale.

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
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from ispvm_tui.clock import Clock
from ispvm_tui.collectors import snmp_wire as wire
from ispvm_tui.collectors.neterrors import os_error_kind, os_error_text
from ispvm_tui.collectors.results import ALL_SERVERS, ConfigRead, DhcpServer, ErrorKind, PollResult
from ispvm_tui.collectors.snmp_decode import (
    _admin_status,
    _bgp_sessions,
    _dotted,
    _int,
    _interfaces,
    _lacks_64bit_counters,
    _lldp_neighbors,
    _lte,
    _number,
    _optics,
    _ospf_neighbors,
    _PortNames,
    _sensors,
    _storage,
    _system_info,
    _text,
    _Walk,
    _wireless_clients,
)
from ispvm_tui.collectors.snmp_mibs import (
    _CONFIG_IF_COLUMNS,
    _CONFIG_SYSTEM_OIDS,
    _HR_PROCESSOR_TABLE,
    _HR_STORAGE_TABLE,
    _IF32_TABLE,
    _IF_TABLE,
    _IFX_TABLE,
    _LLDP,
    _LLDP_LOC_COLUMNS,
    _LLDP_REM_COLUMNS,
    _MIKROTIK_ENTERPRISE,
    _MIKROTIK_ONLY,
    _MTXR_DHCP_LEASES,
    _MTXR_GAUGE_TABLE,
    _OPTIONALS,
    _PROBED_HEALTH,
    _SYSTEM_OIDS,
    Oid,
    _Optional,
    _Table,
)

if TYPE_CHECKING:  # the annotation only: pysnmp is imported with snmp_v3, for v3 targets
    from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

    from ispvm_tui.collectors.snmp_v3 import V3Session

__all__ = ["AUTH_PROTOCOLS", "PRIV_PROTOCOLS", "Oid", "SnmpCollector", "SnmpTarget"]

# SNMPv3 protocol names SnmpTarget accepts (snmp_v3 maps each to pysnmp's).
AUTH_PROTOCOLS = frozenset({"NONE", "MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"})
PRIV_PROTOCOLS = frozenset({"NONE", "DES", "3DES", "AES", "AES128", "AES192", "AES256"})


# Varbinds asked for per GETBULK: replies of a few KB, near what common agents
# return anyway. Decoding replies is most of a poll's CPU, so walks also avoid
# asking for rows past a table's end (see _Table.rows).
_VARBINDS_PER_REQUEST = 128
# A walk that needs more requests than this is looping on a broken agent.
_MAX_REQUESTS_PER_WALK = 2000

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
            if self.v3_auth_proto.upper() not in AUTH_PROTOCOLS:
                raise ValueError(f"{self.name}: unknown SNMPv3 auth protocol {self.v3_auth_proto!r}")
            if self.v3_priv_proto.upper() not in PRIV_PROTOCOLS:
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
class _Extras:
    """What the probe and the optional walks found.

    ``walks`` maps a family to its walk: an empty walk for a MIB without rows,
    None for a MIB the device lacks or a family that failed (then it is stale).
    """

    health: dict[Oid, Any] = field(default_factory=dict)
    walks: dict[str, _Walk | None] = field(default_factory=dict)
    dhcp_leases: int | None = None


class SnmpCollector:
    """Polls one SNMP target; ``poll()`` reports every failure in its PollResult."""

    def __init__(self, target: SnmpTarget, *, clock: Clock, engine: SnmpEngine | None = None,
                 poll_timeout: float | None = None) -> None:
        self.target = target
        # The whole poll's limit ([polling].timeout_s): every request has its own tries of
        # target.timeout, and a poll makes many requests, one after another.
        self._poll_timeout = poll_timeout
        self._clock = clock
        self._wire: wire.SnmpV2Transport | None = None  # v1/v2c: our own client, not pysnmp
        self._wire_address: tuple[str, int] | None = None
        self._v3: V3Session | None = None
        if target.version == "3":
            # Only here is pysnmp imported: v1/v2c collectors never load it (~24 MB of RSS).
            from ispvm_tui.collectors.snmp_v3 import V3Session

            self._v3 = V3Session(target, engine)
        # Rows of each optional table at the last poll: neighbour and peer counts rarely
        # change, so asking for one row more than that ends the walk without wasted rows.
        self._rows_seen: dict[str, int] = {}

    async def close(self) -> None:
        """Release the engine this collector created for itself (a shared one is left alone)."""
        if self._v3 is not None:
            self._v3.close()
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
        lldp, bgp, ospf, wireless, optics, lte = (extras.walks.get(opt.walk.family) for opt in _OPTIONALS)
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
            "optics": _optics(optics, ports) if optics is not None else None,
            "lte": _lte(lte, ports) if lte is not None else None,
            "dhcp": None if extras.dhcp_leases is None else (DhcpServer(ALL_SERVERS, leases=extras.dhcp_leases),),
            "stale": stale,
        }

    async def _extras(self, stale: dict[str, str], mikrotik: bool) -> _Extras:
        """Probe for the optional families (and MikroTik health scalars), then walk what is there."""
        # A GETNEXT from the object (no ".0") returns the scalar if the board has it.
        health = [*(h.oid[:-1] for h in _PROBED_HEALTH), _MTXR_DHCP_LEASES[:-1]] if mikrotik else []
        optionals = [opt for opt in _OPTIONALS if mikrotik or opt not in _MIKROTIK_ONLY]
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
        if mikrotik:
            oid, value = found.get(_MTXR_DHCP_LEASES[:-1], ((), None))
            extras.dhcp_leases = _int(value) if oid == _MTXR_DHCP_LEASES else None
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

    async def _request(self, pdu: int, oids: list[Oid], repetitions: int = 0) -> tuple[int, int, _VarBinds]:
        """One GET / GETNEXT / GETBULK: (error status, error index, [(oid, plain value)]).

        SNMPv1 and v2c go through the light client in ``snmp_wire``; v3 through
        pysnmp, its values converted to the same plain ones. A request without a
        usable reply raises _SnmpFailure.
        """
        if self._v3 is not None:
            return await self._v3_request(self._v3, pdu, oids, repetitions)
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

    async def _v3_request(self, session: V3Session, pdu: int, oids: list[Oid],
                          repetitions: int) -> tuple[int, int, _VarBinds]:
        from ispvm_tui.collectors.snmp_v3 import V3Failure

        try:
            return await session.request(pdu, oids, repetitions)
        except V3Failure as exc:
            if exc.kind == "timeout":
                raise _SnmpFailure(*self._timed_out()) from None
            where = f"{self.target.address}:{self.target.port}"
            raise _SnmpFailure(exc.kind, f"SNMP request to {where} failed: {exc.detail}") from None

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


# RFC 3416 error-status names, by code (the words pysnmp's rfc1905.errorStatus prints).
_ERROR_STATUS_NAMES = (
    "noError", "tooBig", "noSuchName", "badValue", "readOnly", "genErr", "noAccess", "wrongType",
    "wrongLength", "wrongEncoding", "wrongValue", "noCreation", "inconsistentValue", "resourceUnavailable",
    "commitFailed", "undoFailed", "authorizationError", "notWritable", "inconsistentName",
)


def _status_name(status: Any) -> str:
    try:
        code = int(status)
    except (TypeError, ValueError):
        return str(status)
    # An out-of-range code from a broken agent reads as its number.
    return _ERROR_STATUS_NAMES[code] if 0 <= code < len(_ERROR_STATUS_NAMES) else str(status)


def _under(found: tuple[Oid, Any] | None, prefix: Oid) -> bool:
    return found is not None and found[0][: len(prefix)] == prefix


