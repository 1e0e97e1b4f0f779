"""The few BER encodings the lab's SNMP agent needs, written out by hand.

Values are encoded once, when a router's MIB view is rendered, and kept as
bytes: a poll then only concatenates them. pyasn1's generic encoder and
decoder cost ~95 % of the lab's CPU at a thousand routers (request decoding
alone 35 %), enough to make the lab, not the poller, set the pace of a
whole-engine benchmark.

This module is the agent's, separate from the collector's decoder
(collectors/snmp_wire.py), so a slip in one is caught by the other; the lab's
tests also query the agent with pysnmp, an independent implementation.
"""

from __future__ import annotations

from typing import NamedTuple

Oid = tuple[int, ...]

SEQUENCE = 0x30
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_ID = 0x06
COUNTER32_TAG = 0x41
GAUGE32_TAG = 0x42
TIME_TICKS_TAG = 0x43
COUNTER64_TAG = 0x46

GET_REQUEST = 0xA0
GET_NEXT_REQUEST = 0xA1
GET_RESPONSE = 0xA2
SET_REQUEST = 0xA3
GET_BULK_REQUEST = 0xA5

_U32 = 2**32
_U64 = 2**64


class BerError(ValueError):
    """A datagram that is not a well-formed v1/v2c request."""


def tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes((tag, size)) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + body


def _signed(tag: int, value: int) -> bytes:
    bits = (~value).bit_length() if value < 0 else value.bit_length()
    return tlv(tag, value.to_bytes(bits // 8 + 1, "big", signed=True))


def _unsigned(tag: int, value: int, modulo: int) -> bytes:
    value %= modulo
    # A leading 0x00 keeps a value with its top bit set positive, as BER requires.
    return tlv(tag, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def integer32(value: int) -> bytes:
    if not -(2**31) <= value < 2**31:
        raise ValueError(f"Integer32 out of range: {value}")
    return _signed(INTEGER, value)


def octets(value: bytes) -> bytes:
    return tlv(OCTET_STRING, value)


def text(value: str) -> bytes:
    # Explicit UTF-8, as RouterOS sends it.
    return tlv(OCTET_STRING, value.encode("utf-8"))


def counter32(value: int) -> bytes:
    return _unsigned(COUNTER32_TAG, value, _U32)


def gauge32(value: int) -> bytes:
    return _unsigned(GAUGE32_TAG, min(max(value, 0), _U32 - 1), _U32)


def timeticks(value: int) -> bytes:
    return _unsigned(TIME_TICKS_TAG, value, _U32)


def counter64(value: int) -> bytes:
    return _unsigned(COUNTER64_TAG, value, _U64)


def oid_body(oid: Oid) -> bytes:
    if len(oid) < 2 or not 0 <= oid[0] <= 2 or (oid[0] < 2 and not 0 <= oid[1] < 40):
        raise ValueError(f"not an encodable OID: {oid!r}")
    out = bytearray()
    for arc in (oid[0] * 40 + oid[1], *oid[2:]):
        if arc < 0:
            raise ValueError(f"negative OID arc in {oid!r}")
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def object_id(oid: Oid) -> bytes:
    return tlv(OBJECT_ID, oid_body(oid))


NULL_VALUE = b"\x05\x00"
NO_SUCH_OBJECT = b"\x80\x00"
NO_SUCH_INSTANCE = b"\x81\x00"
END_OF_MIB_VIEW = b"\x82\x00"


def is_counter64(value: bytes) -> bool:
    return value[0] == COUNTER64_TAG


def varbind(oid: Oid, value: bytes) -> bytes:
    return tlv(SEQUENCE, object_id(oid) + value)


# -- requests ---------------------------------------------------------------------


class Request(NamedTuple):
    version: int  # 0 = v1, 1 = v2c
    community: bytes
    pdu: int  # GET_REQUEST, GET_NEXT_REQUEST, SET_REQUEST, GET_BULK_REQUEST, or another PDU tag
    request_id: bytes  # the INTEGER as received (TLV), echoed back unchanged
    a: int  # error-status, or non-repeaters in a GetBulk
    b: int  # error-index, or max-repetitions in a GetBulk
    oids: list[Oid]
    varbinds: list[bytes]  # each binding's whole TLV, for error replies that echo the request


def _header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    if pos + 2 > end:
        raise BerError("truncated")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > end:
            raise BerError("unsupported or truncated length")
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + length > end:
        raise BerError("value runs past its container")
    return tag, pos, pos + length


def _expect(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    got, start, stop = _header(data, pos, end)
    if got != tag:
        raise BerError(f"expected tag {tag:#04x}, got {got:#04x}")
    return start, stop


def _int(data: bytes, pos: int, end: int) -> tuple[int, int]:
    start, stop = _expect(data, pos, end, INTEGER)
    if start == stop or stop - start > 8:
        raise BerError("bad INTEGER")
    return int.from_bytes(data[start:stop], "big", signed=True), stop


def _oid(body: bytes) -> Oid:
    if not body or body[-1] & 0x80:
        raise BerError("bad OBJECT IDENTIFIER")
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


def version_of(data: bytes) -> int:
    """The message's version field (0 v1, 1 v2c, 3 v3); BerError if it is not an SNMP message."""
    start, stop = _expect(data, 0, len(data), SEQUENCE)
    return _int(data, start, stop)[0]


def decode_request(data: bytes) -> Request:
    """A v1/v2c message's fields; BerError for anything malformed or of another version."""
    try:
        start, stop = _expect(data, 0, len(data), SEQUENCE)
        version, pos = _int(data, start, stop)
        if version not in (0, 1):
            raise BerError(f"version {version}")
        c_start, pos = _expect(data, pos, stop, OCTET_STRING)
        community = data[c_start:pos]
        pdu, p_start, p_stop = _header(data, pos, stop)
        r_tag, _, r_stop = _header(data, p_start, p_stop)
        if r_tag != INTEGER:
            raise BerError("bad request-id")
        request_id = data[p_start:r_stop]
        a, pos = _int(data, r_stop, p_stop)
        b, pos = _int(data, pos, p_stop)
        pos, v_stop = _expect(data, pos, p_stop, SEQUENCE)
        oids: list[Oid] = []
        varbinds: list[bytes] = []
        while pos < v_stop:
            b_start, b_stop = _expect(data, pos, v_stop, SEQUENCE)
            o_start, o_stop = _expect(data, b_start, b_stop, OBJECT_ID)
            _header(data, o_stop, b_stop)  # the value (NULL in a read request) must be whole
            oids.append(_oid(data[o_start:o_stop]))
            varbinds.append(data[pos:b_stop])
            pos = b_stop
    except IndexError as exc:
        raise BerError(str(exc)) from None
    return Request(version, community, pdu, request_id, a, b, oids, varbinds)


def encode_response(version: int, community: bytes, request_id: bytes, status: int, index: int,
                    varbinds: list[bytes]) -> bytes:
    pdu = request_id + _signed(INTEGER, status) + _signed(INTEGER, index) + tlv(SEQUENCE, b"".join(varbinds))
    return tlv(SEQUENCE, _signed(INTEGER, version) + octets(community) + tlv(GET_RESPONSE, pdu))
