"""SNMP v1/v2c on the wire: BER encoding of requests, decoding of replies, a shared UDP client.

pysnmp decodes a reply through pyasn1's generic machinery at tens of
microseconds per varbind, which is most of an SNMP poll's CPU. Community-based
SNMP needs only a handful of BER types, decoded here directly into plain
Python values:

* Integer32, Counter32, Gauge32, TimeTicks, Counter64: ``int`` subclasses
  named after the type (``isinstance(v, int)`` holds, the class is the tag);
* OCTET STRING and Opaque: ``bytes``; OBJECT IDENTIFIER: :class:`ObjectId`
  (a tuple whose ``str()`` is dotted); IpAddress: ``str`` ("192.0.2.1");
* noSuchObject, noSuchInstance, endOfMibView: the :class:`VarBindException`
  sentinels below.

SNMPv3 (USM, encryption) stays with pysnmp.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import socket
import struct
import sys
import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

Oid = tuple[int, ...]

VERSION_1 = 0
VERSION_2C = 1

GET = 0xA0
GET_NEXT = 0xA1
RESPONSE = 0xA2
GET_BULK = 0xA5

_INTEGER = 0x02
_OCTET_STRING = 0x04
_NULL = 0x05
_OBJECT_ID = 0x06
_SEQUENCE = 0x30
_IP_ADDRESS = 0x40
_COUNTER32 = 0x41
_GAUGE32 = 0x42
_TIME_TICKS = 0x43
_OPAQUE = 0x44
_COUNTER64 = 0x46
_NO_SUCH_OBJECT = 0x80
_NO_SUCH_INSTANCE = 0x81
_END_OF_MIB_VIEW = 0x82

_MAX_REQUEST_ID = 2**31 - 1


class DecodeError(ValueError):
    """A datagram that is not a well-formed SNMP v1/v2c message."""


class Integer32(int):
    __slots__ = ()


class Counter32(int):
    __slots__ = ()


class Gauge32(int):
    __slots__ = ()


class TimeTicks(int):
    __slots__ = ()


class Counter64(int):
    __slots__ = ()


class ObjectId(tuple[int, ...]):
    """An OBJECT IDENTIFIER value; ``str()`` gives the dotted form."""

    __slots__ = ()

    def __str__(self) -> str:
        return ".".join(map(str, self))


class VarBindException:
    """noSuchObject / noSuchInstance / endOfMibView: a varbind without a value."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__


NO_SUCH_OBJECT = VarBindException("noSuchObject")
NO_SUCH_INSTANCE = VarBindException("noSuchInstance")
END_OF_MIB_VIEW = VarBindException("endOfMibView")

_INT_TYPES: dict[int, type[int]] = {
    _COUNTER32: Counter32,
    _GAUGE32: Gauge32,
    _TIME_TICKS: TimeTicks,
    _COUNTER64: Counter64,
}
_EXCEPTIONS = {_NO_SUCH_OBJECT: NO_SUCH_OBJECT, _NO_SUCH_INSTANCE: NO_SUCH_INSTANCE, _END_OF_MIB_VIEW: END_OF_MIB_VIEW}


class Response(NamedTuple):
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[tuple[Oid, Any]]


# -- encoding -------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _length(len(body)) + body


def _integer(value: int) -> bytes:
    bits = (~value).bit_length() if value < 0 else value.bit_length()
    return _tlv(_INTEGER, value.to_bytes(bits // 8 + 1, "big", signed=True))


def encode_oid(oid: Sequence[int]) -> bytes:
    """The BER body of an OBJECT IDENTIFIER (no tag, no length)."""
    if len(oid) < 2 or not 0 <= oid[0] <= 2 or (oid[0] < 2 and not 0 <= oid[1] < 40):
        raise ValueError(f"not an encodable OID: {oid!r}")
    out = bytearray()
    for arc in (oid[0] * 40 + oid[1], *oid[2:]):
        if arc < 0x80:
            if arc < 0:
                raise ValueError(f"negative OID arc in {oid!r}")
            out.append(arc)
            continue
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def encode_request(
    version: int,
    community: bytes,
    pdu_type: int,
    request_id: int,
    oids: Sequence[Sequence[int]],
    *,
    non_repeaters: int = 0,
    max_repetitions: int = 0,
) -> bytes:
    """A GetRequest, GetNextRequest or (v2c only) GetBulkRequest message asking for ``oids``."""
    if pdu_type not in (GET, GET_NEXT, GET_BULK):
        raise ValueError(f"unsupported PDU type {pdu_type:#x}")
    if pdu_type == GET_BULK and version == VERSION_1:
        raise ValueError("SNMPv1 has no GetBulkRequest")
    varbinds = b"".join(_tlv(_SEQUENCE, _tlv(_OBJECT_ID, encode_oid(oid)) + b"\x05\x00") for oid in oids)
    if pdu_type == GET_BULK:
        status, index = non_repeaters, max_repetitions
    else:
        status = index = 0
    pdu = _tlv(pdu_type, _integer(request_id) + _integer(status) + _integer(index) + _tlv(_SEQUENCE, varbinds))
    return _tlv(_SEQUENCE, _integer(version) + _tlv(_OCTET_STRING, community) + pdu)


def encode_v3_discovery(message_id: int) -> bytes:
    """An SNMPv3 engine-ID discovery request (RFC 3414 section 4): a reportable, unauthenticated GET with
    an empty engine ID and user. Every v3 agent answers it with a report, before any authentication."""
    max_size, flags_reportable, usm = 65507, b"\x04", 3
    global_data = _tlv(_SEQUENCE, _integer(message_id) + _integer(max_size) + _tlv(_OCTET_STRING, flags_reportable)
                       + _integer(usm))
    empty = _tlv(_OCTET_STRING, b"")
    security = _tlv(_SEQUENCE, empty + _integer(0) + _integer(0) + empty + empty + empty)
    pdu = _tlv(GET, _integer(message_id) + _integer(0) + _integer(0) + _tlv(_SEQUENCE, b""))
    scoped = _tlv(_SEQUENCE, empty + empty + pdu)
    return _tlv(_SEQUENCE, _integer(3) + global_data + _tlv(_OCTET_STRING, security) + scoped)


# -- decoding -------------------------------------------------------------------


def _header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the TLV at ``pos``."""
    if pos + 2 > end:
        raise DecodeError("truncated message")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4:
            raise DecodeError("unsupported BER length")
        if pos + n > end:
            raise DecodeError("truncated length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise DecodeError("value runs past the end of its container")
    return tag, pos, pos + length


def _expect(data: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    got, start, stop = _header(data, pos, end)
    if got != tag:
        raise DecodeError(f"expected {what}, got tag {got:#04x}")
    return start, stop


def _decode_int(data: bytes, pos: int, end: int) -> tuple[int, int]:
    start, stop = _expect(data, pos, end, _INTEGER, "INTEGER")
    if start == stop:
        raise DecodeError("empty INTEGER")
    return int.from_bytes(data[start:stop], "big", signed=True), stop


def decode_oid(body: bytes) -> Oid:
    """An OBJECT IDENTIFIER from its BER body."""
    if not body:
        raise DecodeError("empty OBJECT IDENTIFIER")
    if body[-1] & 0x80:
        raise DecodeError("truncated OBJECT IDENTIFIER")
    first = body[0]
    if first < 0x80 and max(body) < 0x80:  # no arc above 127: the common case
        rest = tuple(body[1:])
        head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
        return head + rest
    arcs: list[int] = []
    arc = 0
    for byte in body:
        arc = (arc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(arc)
            arc = 0
    first = arcs[0]
    head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
    return (*head, *arcs[1:])


def _decode_value(tag: int, data: bytes, start: int, stop: int) -> Any:
    if tag in (_OCTET_STRING, _OPAQUE):
        return data[start:stop]
    if tag == _INTEGER:
        if start == stop:
            raise DecodeError("empty INTEGER")
        return Integer32(int.from_bytes(data[start:stop], "big", signed=True))
    kind = _INT_TYPES.get(tag)
    if kind is not None:
        if start == stop:
            raise DecodeError("empty unsigned integer")
        return kind(int.from_bytes(data[start:stop], "big"))
    if tag == _OBJECT_ID:
        return ObjectId(decode_oid(data[start:stop]))
    if tag == _IP_ADDRESS:
        if stop - start != 4:
            raise DecodeError("IpAddress is not 4 octets")
        return str(ipaddress.IPv4Address(data[start:stop]))
    exception = _EXCEPTIONS.get(tag)
    if exception is not None:
        return exception
    if tag == _NULL:
        return None
    raise DecodeError(f"unsupported value type {tag:#04x}")


def decode_message(data: bytes) -> tuple[int, bytes, Response]:
    """(version, community, response) of a v1/v2c Response message; DecodeError otherwise."""
    try:
        return _decode_message(bytes(data))
    except DecodeError:
        raise
    except (IndexError, ValueError) as exc:  # defensive: any slip reads as a malformed message
        raise DecodeError(f"malformed message: {exc}") from None


def _decode_message(data: bytes) -> tuple[int, bytes, Response]:
    end = len(data)
    start, stop = _expect(data, 0, end, _SEQUENCE, "message SEQUENCE")
    version, pos = _decode_int(data, start, stop)
    if version not in (VERSION_1, VERSION_2C):
        raise DecodeError(f"not an SNMP v1/v2c message (version {version})")
    c_start, pos = _expect(data, pos, stop, _OCTET_STRING, "community")
    community = data[c_start:pos]
    tag, p_start, p_stop = _header(data, pos, stop)
    if tag != RESPONSE:
        raise DecodeError(f"not a Response PDU (tag {tag:#04x})")
    request_id, pos = _decode_int(data, p_start, p_stop)
    error_status, pos = _decode_int(data, pos, p_stop)
    error_index, pos = _decode_int(data, pos, p_stop)
    pos, v_stop = _expect(data, pos, p_stop, _SEQUENCE, "varbind list")
    varbinds: list[tuple[Oid, Any]] = []
    append = varbinds.append
    while pos < v_stop:
        b_start, b_stop = _expect(data, pos, v_stop, _SEQUENCE, "varbind")
        o_start, o_stop = _expect(data, b_start, b_stop, _OBJECT_ID, "OBJECT IDENTIFIER")
        tag, start, vstop = _header(data, o_stop, b_stop)
        if vstop != b_stop:
            raise DecodeError("trailing data in a varbind")
        append((decode_oid(data[o_start:o_stop]), _decode_value(tag, data, start, vstop)))
        pos = b_stop
    return version, community, Response(request_id, error_status, error_index, varbinds)


def decode_response(data: bytes) -> Response:
    """(request_id, error_status, error_index, [(oid, value)]) of a v1/v2c Response message."""
    return decode_message(data)[2]


# -- transport ------------------------------------------------------------------


class SnmpTimeout(TimeoutError):
    """No reply within the timeout, after every retry."""


class SnmpGarbage(Exception):
    """No usable reply, but the target's address sent datagrams that are not SNMP: a protocol error."""


# Linux: ask for ICMP errors (port/host/net unreachable) on the unconnected socket, queued with
# the destination they were for, so a request fails at once with why instead of timing out.
_RECVERR = {socket.AF_INET: (socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11)),
            socket.AF_INET6: (socket.IPPROTO_IPV6, getattr(socket, "IPV6_RECVERR", 25))}
_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)


# Bulk replies of many devices arrive on one socket: the kernel default (~208 KB)
# drops a burst, which looks exactly like timeouts. Capped by net.core.rmem_max.
RECEIVE_BUFFER_BYTES = 8 * 1024 * 1024

_Key = tuple[int, int]  # (request id, version)


class SnmpV2Transport(asyncio.DatagramProtocol):
    """One UDP socket per event loop and address family, shared by every v1/v2c target.

    Replies are matched to requests by request id, source address and version;
    anything else (late duplicates, strangers, garbage) is dropped.
    """

    _shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, SnmpV2Transport]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self._pending: dict[_Key, tuple[tuple[str, int], asyncio.Future[Response]]] = {}
        self._next_id = random.randrange(1, _MAX_REQUEST_ID)
        self.dropped = 0  # datagrams that matched no request or did not decode
        self._garbage: dict[_Key, str] = {}  # pending requests whose address sent undecodable datagrams
        self._sending: _Key | None = None  # the request whose sendto() is running
        self._preempted = False  # that sendto() failed with an error queued for an earlier datagram
        self._errors: socket.socket | None = None  # a duplicate of the socket, to read its error queue

    @classmethod
    async def shared(cls, family: int = socket.AF_INET) -> SnmpV2Transport:
        loop = asyncio.get_running_loop()
        per_family = cls._shared.setdefault(loop, {})
        found = per_family.get(family)
        if found is not None and found.transport is not None and not found.transport.is_closing():
            return found
        host = "::" if family == socket.AF_INET6 else "0.0.0.0"
        _, protocol = await loop.create_datagram_endpoint(cls, local_addr=(host, 0), family=family)
        raced = per_family.get(family)
        if (
            raced is not None
            and raced is not found
            and raced.transport is not None
            and not raced.transport.is_closing()
        ):
            protocol.close()  # another caller created the socket meanwhile: one per loop
            return raced
        per_family[family] = protocol
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            # FORCE passes rmem_max but needs CAP_NET_ADMIN; plain RCVBUF is capped by it.
            if option is None or sock is None:
                continue
            with contextlib.suppress(OSError, TypeError):
                sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER_BYTES)
                break
        if sock is not None and sys.platform == "linux" and sock.family in _RECVERR:
            with contextlib.suppress(OSError):
                sock.setsockopt(*_RECVERR[sock.family], 1)
                # asyncio's socket wrapper has no recvmsg(); a duplicate shares the queue (and O_NONBLOCK)
                self._errors = socket.fromfd(sock.fileno(), sock.family, sock.type)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._errors is not None:
            self._errors.close()
            self._errors = None
        for _, future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("SNMP socket closed"))
        self._pending.clear()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            version, _, response = decode_message(data)
        except DecodeError as exc:
            self.dropped += 1
            source = (addr[0], addr[1])
            for key, (target, _) in self._pending.items():
                if target == source:
                    self._garbage[key] = str(exc)
            return
        entry = self._pending.get((response.request_id, version))
        if entry is None or entry[0] != (addr[0], addr[1]) or entry[1].done():
            self.dropped += 1
            return
        entry[1].set_result(response)

    def error_received(self, exc: Exception) -> None:
        """An ICMP error arrived, or a send failed at once (no route): fail the requests it was for.

        Queued ICMP errors name the destination they were for. The kernel may also hand one
        to the next sendto() of any target: then that send is repeated, not failed.
        """
        queued = self._queued_errors()
        for target, error in queued:
            self._fail(lambda key, dest, target=target: dest == target, error)
        sending = self._sending
        if sending is not None:
            if queued:
                self._preempted = True
            else:  # nothing queued: the send's own error (no route, network down)
                self._fail(lambda key, dest: key == sending, exc)

    def _queued_errors(self) -> list[tuple[tuple[str, int], OSError]]:
        """Drain the socket's error queue: (destination of the datagram that failed, its error)."""
        out: list[tuple[tuple[str, int], OSError]] = []
        if self._errors is None:
            return out
        for _ in range(256):  # bounded: a flood of ICMP cannot keep us here
            try:
                _, ancdata, _, addr = self._errors.recvmsg(1, 512, _ERRQUEUE)
            except OSError:  # BlockingIOError: the queue is empty
                break
            if addr is None:
                break
            for _, _, data in ancdata:
                if len(data) >= 4:
                    (code,) = struct.unpack_from("=I", data)
                    out.append(((addr[0], addr[1]), OSError(code, os.strerror(code))))
        return out

    def _fail(self, match: Any, exc: Exception) -> None:
        for key, (target, future) in self._pending.items():
            if match(key, target) and not future.done():
                future.set_exception(exc)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _send(self, key: _Key, future: asyncio.Future[Response], message: bytes, address: tuple[str, int]) -> None:
        for _ in range(2):
            if future.done() or self.transport is None:
                return
            self._sending, self._preempted = key, False
            try:
                self.transport.sendto(message, address)
            finally:
                self._sending = None
            if not self._preempted:
                return

    def _request_id(self) -> int:
        while True:
            self._next_id = self._next_id % _MAX_REQUEST_ID + 1
            if (self._next_id, VERSION_1) not in self._pending and (self._next_id, VERSION_2C) not in self._pending:
                return self._next_id

    async def request(
        self,
        address: tuple[str, int],
        version: int,
        community: bytes,
        pdu_type: int,
        oids: Sequence[Sequence[int]],
        *,
        timeout: float,
        retries: int,
        max_repetitions: int = 0,
    ) -> Response:
        """Send a request and wait for its reply: ``retries + 1`` tries of ``timeout`` seconds each.

        ``address`` must be a numeric address (replies are matched on it).
        Raises SnmpTimeout when every try went unanswered.
        """
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("SNMP socket closed")
        request_id = self._request_id()
        message = encode_request(version, community, pdu_type, request_id, oids, max_repetitions=max_repetitions)
        key = (request_id, version)
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[key] = ((address[0], address[1]), future)
        try:
            for _ in range(retries + 1):
                # One request id for every try: a late reply to an earlier try is as good.
                self._send(key, future, message, address)
                await asyncio.wait((future,), timeout=timeout)
                if future.done():
                    return future.result()
            if key in self._garbage:
                raise SnmpGarbage(f"no SNMP response, only undecodable datagrams ({self._garbage[key]})")
            raise SnmpTimeout(f"no response within {timeout:g} s ({retries + 1} tries)")
        finally:
            self._pending.pop(key, None)
            self._garbage.pop(key, None)
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                # Failed (port unreachable) just as this request was cancelled (the engine stopping): the
                # error is read here, else asyncio logs "exception was never retrieved" for each.
                future.exception()
