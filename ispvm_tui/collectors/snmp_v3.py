"""SNMPv3 (USM) requests through pysnmp 7's asyncio high-level API: the only module that imports pysnmp.

SNMPv1 and v2c never come here (``snmp_wire`` is their client), so a fleet
without v3 never loads pysnmp and pyasn1 (measured: about 24 MB of RSS and
the engine's construction, about a second of CPU). ``snmp.SnmpCollector``
imports this module when it is given a v3 target. Replies are converted to
the plain values ``snmp_wire`` decodes to, so the decoders see one kind of
value whatever the version.

One ``SnmpEngine`` should be shared by all v3 collectors of a process
(``new_engine()``, passed as ``engine=``): an engine owns a socket, a
request-id space and its configuration tables, so one per device does not
scale.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyasn1.type import univ
from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config as snmp_config
from pysnmp.hlapi.v3arch.asyncio import (
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

from ispvm_tui.collectors import snmp_wire as wire
from ispvm_tui.collectors.results import ErrorKind
from ispvm_tui.collectors.snmp_mibs import Oid

if TYPE_CHECKING:
    from ispvm_tui.collectors.snmp import SnmpTarget

# One engine socket receives the replies of every device: a burst of bulk replies
# from a few dozen devices overflows the kernel default (~208 KB) and the drops
# look exactly like timeouts. The kernel caps this at net.core.rmem_max.
_RECEIVE_BUFFER_BYTES = 8 * 1024 * 1024
_TUNED_KEY = "ispvm.receive_buffer"  # marker in SnmpEngine.cache

# Keys as snmp.AUTH_PROTOCOLS / PRIV_PROTOCOLS name them (SnmpTarget checks names without pysnmp).
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


class V3Failure(Exception):
    """A request without a usable reply: ``kind`` "timeout", "auth" or "protocol", ``detail`` pysnmp's words."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.kind: ErrorKind = kind
        self.detail = detail


def new_engine() -> SnmpEngine:
    """An engine to share between v3 collectors (building one costs about a second of CPU)."""
    return SnmpEngine()


class V3Session:
    """One v3 target's requests: its USM user and context, and the engine and transport they go through.

    The engine is ``engine`` (shared, left open by ``close``) or one made at the
    first request, so it binds to the running event loop (closed by ``close``).
    """

    def __init__(self, target: SnmpTarget, engine: SnmpEngine | None) -> None:
        self.target = target
        self._engine = engine
        self._owns_engine = engine is None
        self._transport: UdpTransportTarget | None = None
        self._auth = _auth_data(target)
        self._context = ContextData(contextName=target.context.encode()) if target.context else ContextData()

    def close(self) -> None:
        """Release the engine this session created for itself (a shared one is left alone)."""
        if self._owns_engine and self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None
        self._transport = None

    async def request(self, pdu: int, oids: list[Oid], repetitions: int) -> tuple[int, int, list[tuple[Oid, Any]]]:
        """One GET / GETNEXT / GETBULK (``snmp_wire`` PDU numbers): (error status, error index, plain varbinds).

        Raises V3Failure when no usable reply came back.
        """
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
        _tune_engine_socket(engine)
        indication, status, index, varbinds = reply
        if indication:
            if isinstance(indication, errind.RequestTimedOut):
                raise V3Failure("timeout", str(indication))
            raise V3Failure("auth" if isinstance(indication, _AUTH_ERRORS) else "protocol", str(indication))
        return int(status or 0), int(index or 0), [(tuple(name), _plain(value)) for name, value in varbinds]

    async def _session(self) -> tuple[SnmpEngine, UdpTransportTarget]:
        if self._engine is None:
            # Created lazily so it binds to the running event loop.
            self._engine = SnmpEngine()
        if self._transport is None:
            self._transport = await UdpTransportTarget.create(
                (self.target.address, self.target.port), timeout=self.target.timeout, retries=self.target.retries
            )
        return self._engine, self._transport


def _tune_engine_socket(engine: SnmpEngine) -> None:
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


def _auth_data(target: SnmpTarget) -> UsmUserData:
    auth = _AUTH_PROTOCOLS[target.v3_auth_proto.upper()] if target.v3_auth_key else None
    priv = _PRIV_PROTOCOLS[target.v3_priv_proto.upper()] if target.v3_priv_key else None
    return UsmUserData(
        target.v3_user,
        authKey=target.v3_auth_key,
        privKey=target.v3_priv_key,
        authProtocol=auth,
        privProtocol=priv,
    )


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
