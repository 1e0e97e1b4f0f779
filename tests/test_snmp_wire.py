"""snmp_wire against pysnmp's own codec, on malformed input, and over a lossy UDP socket."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api, rfc1902, rfc1905

from ispvm_tui.collectors import snmp_wire as wire

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
V1 = api.PROTOCOL_MODULES[api.SNMP_VERSION_1]

LONG_OID = (1, 3, 6, 1, 4, 1, 14988, 2**32 - 1, 0, 127, 128, 16383, 16384, 2**31, *range(100), 9)


def _pysnmp_request(data: bytes, module: Any = V2C) -> tuple[Any, Any]:
    message, rest = decoder.decode(data, asn1Spec=module.Message())
    assert rest == b""
    return message, module.apiMessage.get_pdu(message)


@pytest.mark.parametrize(
    ("pdu_type", "pysnmp_class"),
    [(wire.GET, V2C.GetRequestPDU), (wire.GET_NEXT, V2C.GetNextRequestPDU), (wire.GET_BULK, V2C.GetBulkRequestPDU)],
)
def test_requests_decode_with_pysnmp(pdu_type: int, pysnmp_class: type) -> None:
    oids = [(1, 3, 6, 1, 2, 1, 1, 1, 0), LONG_OID, (2, 999, 1), (0, 0)]
    data = wire.encode_request(wire.VERSION_2C, b"s3cret", pdu_type, 2**31 - 1, oids, max_repetitions=25)
    message, pdu = _pysnmp_request(data)
    assert isinstance(pdu, pysnmp_class)
    assert bytes(V2C.apiMessage.get_community(message)) == b"s3cret"
    assert int(V2C.apiPDU.get_request_id(pdu)) == 2**31 - 1
    assert [tuple(oid) for oid, _ in V2C.apiPDU.get_varbinds(pdu)] == oids
    if pdu_type == wire.GET_BULK:
        assert int(V2C.apiBulkPDU.get_non_repeaters(pdu)) == 0
        assert int(V2C.apiBulkPDU.get_max_repetitions(pdu)) == 25


@pytest.mark.parametrize("request_id", [0, 1, 127, 128, 255, 256, 65535, 2**31 - 1])
def test_v1_request_ids_decode_with_pysnmp(request_id: int) -> None:
    data = wire.encode_request(wire.VERSION_1, b"", wire.GET_NEXT, request_id, [(1, 3, 6)])
    message, pdu = _pysnmp_request(data, V1)
    assert int(V1.apiMessage.get_version(message)) == 0
    assert int(V1.apiPDU.get_request_id(pdu)) == request_id


def test_v1_has_no_bulk() -> None:
    with pytest.raises(ValueError, match="GetBulk"):
        wire.encode_request(wire.VERSION_1, b"public", wire.GET_BULK, 1, [(1, 3)])


def _pysnmp_response(
    varbinds: list[tuple[Any, Any]], *, request_id: int = 77, status: int = 0, index: int = 0
) -> bytes:
    pdu = V2C.GetResponsePDU()
    V2C.apiPDU.set_defaults(pdu)
    V2C.apiPDU.set_request_id(pdu, request_id)
    V2C.apiPDU.set_error_status(pdu, status)
    V2C.apiPDU.set_error_index(pdu, index)
    V2C.apiPDU.set_varbinds(pdu, varbinds)
    message = V2C.Message()
    V2C.apiMessage.set_defaults(message)
    V2C.apiMessage.set_community(message, "public")
    V2C.apiMessage.set_pdu(message, pdu)
    return bytes(encoder.encode(message))


VALUES: list[tuple[Any, type, Any]] = [
    (rfc1902.Integer32(-(2**31)), wire.Integer32, -(2**31)),
    (rfc1902.Integer32(-1), wire.Integer32, -1),
    (rfc1902.Integer32(-128), wire.Integer32, -128),
    (rfc1902.Integer32(0), wire.Integer32, 0),
    (rfc1902.Integer32(2**31 - 1), wire.Integer32, 2**31 - 1),
    (rfc1902.Counter32(2**32 - 1), wire.Counter32, 2**32 - 1),
    (rfc1902.Counter32(128), wire.Counter32, 128),
    (rfc1902.Gauge32(2**31), wire.Gauge32, 2**31),
    (rfc1902.Unsigned32(7), wire.Gauge32, 7),
    (rfc1902.TimeTicks(123456), wire.TimeTicks, 123456),
    (rfc1902.Counter64(2**64 - 1), wire.Counter64, 2**64 - 1),
    (rfc1902.Counter64(0), wire.Counter64, 0),
    (rfc1902.OctetString(b""), bytes, b""),
    (rfc1902.OctetString(b"RouterOS \xff\x00"), bytes, b"RouterOS \xff\x00"),
    (rfc1902.OctetString(b"x" * 1000), bytes, b"x" * 1000),
    (rfc1902.ObjectIdentifier(LONG_OID), wire.ObjectId, LONG_OID),
    (rfc1902.IpAddress("192.0.2.254"), str, "192.0.2.254"),
    (rfc1902.Opaque(b"\x9f\x78\x04"), bytes, b"\x9f\x78\x04"),
    (rfc1905.noSuchObject, wire.VarBindException, wire.NO_SUCH_OBJECT),
    (rfc1905.noSuchInstance, wire.VarBindException, wire.NO_SUCH_INSTANCE),
    (rfc1905.endOfMibView, wire.VarBindException, wire.END_OF_MIB_VIEW),
]


@pytest.mark.parametrize(("value", "kind", "expected"), VALUES, ids=[repr(v[2])[:30] for v in VALUES])
def test_pysnmp_responses_decode(value: Any, kind: type, expected: Any) -> None:
    oid = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 2**31)
    response = wire.decode_response(_pysnmp_response([(oid, value)], request_id=2**31 - 1))
    assert response.request_id == 2**31 - 1
    assert (response.error_status, response.error_index) == (0, 0)
    [(got_oid, got)] = response.varbinds
    assert got_oid == oid
    assert type(got) is kind
    assert got == expected


def test_every_value_in_one_response_and_error_fields() -> None:
    varbinds = [((1, 3, 6, 1, 9, i), value) for i, (value, _, _) in enumerate(VALUES)]
    data = _pysnmp_response(varbinds, request_id=5, status=2, index=3)
    version, community, response = wire.decode_message(data)
    assert (version, community) == (wire.VERSION_2C, b"public")
    assert response[:3] == (5, 2, 3)
    assert [value for _, value in response.varbinds] == [expected for _, _, expected in VALUES]
    assert str(response.varbinds[VALUES.index(VALUES[15])][1]) == ".".join(map(str, LONG_OID))


def test_empty_varbind_list() -> None:
    assert wire.decode_response(_pysnmp_response([])).varbinds == []


def test_long_form_lengths() -> None:
    # A reply over 64 KB needs 3-octet lengths.
    varbinds = [((1, 3, 6, 1, 2, 1, 2, 2, 1, 2, i), rfc1902.OctetString(b"e" * 200)) for i in range(400)]
    response = wire.decode_response(_pysnmp_response(varbinds))
    assert len(response.varbinds) == 400
    assert response.varbinds[-1] == ((1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 399), b"e" * 200)


MALFORMED = {
    "empty": b"",
    "not a sequence": b"\x02\x01\x00",
    "truncated": _pysnmp_response([((1, 3, 6), rfc1902.Counter64(5))])[:-3],
    "length past end": b"\x30\x84\x7f\xff\xff\xff\x02\x01\x01",
    "indefinite length": b"\x30\x80\x02\x01\x01\x00\x00",
    "v3 message": b"\x30\x03\x02\x01\x03",
    "request PDU": wire.encode_request(wire.VERSION_2C, b"public", wire.GET, 1, [(1, 3, 6)]),
    "empty integer": b"\x30\x0c\x02\x01\x01\x04\x00\xa2\x05\x02\x00\x02\x00\x02",
    "unknown value type": b"\x30\x15\x02\x01\x01\x04\x00\xa2\x0e\x02\x01\x01\x02\x01\x00\x02\x01\x00"
    b"\x30\x03\x30\x01\x06",
    "unterminated oid": _pysnmp_response([((1, 3, 6, 200), rfc1902.Integer32(1))]).replace(
        b"\x06\x04\x2b\x06\x81\x48", b"\x06\x04\x2b\x06\x81\xc8"
    ),
    "short ip address": _pysnmp_response([((1, 3), rfc1902.IpAddress("1.2.3.4"))]).replace(
        b"\x40\x04\x01\x02\x03\x04", b"\x40\x03\x01\x02\x03\x04"
    ),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(wire.DecodeError):
        wire.decode_response(data)


def test_random_corruption_never_escapes_as_another_error() -> None:
    good = _pysnmp_response([((1, 3, 6, 1, 2, 1, 1, i), value) for i, (value, _, _) in enumerate(VALUES)])
    for position in range(len(good)):
        for byte in (0x00, 0x7F, 0x80, 0xFF):
            data = good[:position] + bytes((byte,)) + good[position + 1 :]
            with contextlib.suppress(wire.DecodeError):
                wire.decode_response(data)
        with pytest.raises(wire.DecodeError):
            wire.decode_response(good[:position])


# -- transport ------------------------------------------------------------------


class _Agent(asyncio.DatagramProtocol):
    """Answers GETs with sysUpTime after dropping the first ``drop`` requests."""

    def __init__(self, drop: int) -> None:
        self.drop = drop
        self.received = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        if self.received <= self.drop:
            return
        _, pdu = _pysnmp_request(data)
        request_id = int(V2C.apiPDU.get_request_id(pdu))
        assert self.transport is not None
        self.transport.sendto(b"\x30\x02garbage", addr)  # dropped by the client, not fatal
        self.transport.sendto(
            _pysnmp_response([((1, 3, 6, 1, 2, 1, 1, 3, 0), rfc1902.TimeTicks(42))], request_id=request_id + 1), addr
        )
        self.transport.sendto(
            _pysnmp_response([((1, 3, 6, 1, 2, 1, 1, 3, 0), rfc1902.TimeTicks(42))], request_id=request_id), addr
        )


async def _agent(drop: int) -> tuple[_Agent, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, agent = await loop.create_datagram_endpoint(lambda: _Agent(drop), local_addr=("127.0.0.1", 0))
    return agent, transport.get_extra_info("sockname")[:2]


async def test_retry_after_a_dropped_request() -> None:
    agent, address = await _agent(drop=1)
    client = await wire.SnmpV2Transport.shared()
    try:
        response = await client.request(
            address, wire.VERSION_2C, b"public", wire.GET, [(1, 3, 6, 1, 2, 1, 1, 3, 0)], timeout=0.2, retries=1
        )
        assert response.varbinds == [((1, 3, 6, 1, 2, 1, 1, 3, 0), 42)]
        assert type(response.varbinds[0][1]) is wire.TimeTicks
        assert agent.received == 2
        assert client.dropped >= 2  # the garbage and the reply to a request id nobody waits for
    finally:
        assert agent.transport is not None
        agent.transport.close()


async def test_timeout_after_every_try() -> None:
    agent, address = await _agent(drop=10)
    client = await wire.SnmpV2Transport.shared()
    assert client is await wire.SnmpV2Transport.shared()  # one socket per loop
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(wire.SnmpTimeout):
            await client.request(address, wire.VERSION_2C, b"public", wire.GET, [(1, 3, 6)], timeout=0.1, retries=2)
        assert agent.received == 3
        assert 0.29 <= loop.time() - started < 1
        assert not client._pending
    finally:
        assert agent.transport is not None
        agent.transport.close()


async def test_reply_from_another_address_is_ignored() -> None:
    client = await wire.SnmpV2Transport.shared()
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    try:
        task = asyncio.ensure_future(
            client.request(
                stranger.getsockname(), wire.VERSION_2C, b"public", wire.GET, [(1, 3, 6)], timeout=0.3, retries=0
            )
        )
        await asyncio.sleep(0.05)
        [(request_id, _)] = list(client._pending)
        impostor = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        impostor.sendto(
            _pysnmp_response([((1, 3, 6), rfc1902.Integer32(1))], request_id=request_id),
            client.transport.get_extra_info("sockname"),  # type: ignore[union-attr]
        )
        impostor.close()
        with pytest.raises(wire.SnmpTimeout):
            await task
    finally:
        stranger.close()
