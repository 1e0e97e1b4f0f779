"""The lab agent's hand-written BER, checked against pyasn1/pysnmp (an independent implementation)."""

from __future__ import annotations

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api
from pysnmp.proto.rfc1902 import Counter32, Counter64, Gauge32, Integer32, ObjectIdentifier, OctetString, TimeTicks

from ispvm_tui.lab import ber


@pytest.mark.parametrize(("ours", "theirs"), [
    (ber.integer32(0), Integer32(0)),
    (ber.integer32(127), Integer32(127)),
    (ber.integer32(128), Integer32(128)),
    (ber.integer32(-1), Integer32(-1)),
    (ber.integer32(-129), Integer32(-129)),
    (ber.integer32(2**31 - 1), Integer32(2**31 - 1)),
    (ber.counter32(2**31), Counter32(2**31)),  # top bit set: needs a leading zero octet
    (ber.counter32(2**32 + 5), Counter32(5)),  # wraps like a real counter
    (ber.gauge32(4_294_967_295), Gauge32(4_294_967_295)),
    (ber.timeticks(255), TimeTicks(255)),
    (ber.counter64(2**64 - 1), Counter64(2**64 - 1)),
    (ber.counter64(0), Counter64(0)),
    (ber.text("ether1 — uplink"), OctetString("ether1 — uplink".encode())),
    (ber.octets(b"\x00" * 200), OctetString(b"\x00" * 200)),  # long-form length
    (ber.object_id((1, 3, 6, 1, 4, 1, 14988, 1)), ObjectIdentifier((1, 3, 6, 1, 4, 1, 14988, 1))),
    (ber.object_id((2, 999, 3)), ObjectIdentifier((2, 999, 3))),
])
def test_values_encode_as_pyasn1_does(ours: bytes, theirs: object) -> None:
    assert ours == encoder.encode(theirs)


def test_integer32_refuses_out_of_range() -> None:
    with pytest.raises(ValueError):
        ber.integer32(2**31)


def _request(version: int, pdu_kind: str, oids: list[tuple[int, ...]], **bulk: int) -> bytes:
    p_mod = api.PROTOCOL_MODULES[version]
    pdu = getattr(p_mod, pdu_kind)()
    p_mod.apiPDU.set_defaults(pdu)
    p_mod.apiPDU.set_request_id(pdu, 4242)
    p_mod.apiPDU.set_varbinds(pdu, [(oid, p_mod.Null("")) for oid in oids])
    if bulk:
        p_mod.apiBulkPDU.set_non_repeaters(pdu, bulk["non_repeaters"])
        p_mod.apiBulkPDU.set_max_repetitions(pdu, bulk["max_repetitions"])
    msg = p_mod.Message()
    p_mod.apiMessage.set_defaults(msg)
    p_mod.apiMessage.set_community(msg, "public")
    p_mod.apiMessage.set_pdu(msg, pdu)
    return encoder.encode(msg)


def test_requests_encoded_by_pysnmp_decode() -> None:
    oids = [(1, 3, 6, 1, 2, 1, 2, 2, 1, 10), (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 300000)]
    req = ber.decode_request(_request(api.SNMP_VERSION_2C, "GetBulkRequestPDU", oids,
                                      non_repeaters=1, max_repetitions=25))
    assert (req.version, req.community, req.pdu, req.a, req.b, req.oids) == (
        1, b"public", ber.GET_BULK_REQUEST, 1, 25, oids)
    v1 = ber.decode_request(_request(api.SNMP_VERSION_1, "GetRequestPDU", oids[:1]))
    assert (v1.version, v1.pdu, v1.oids) == (0, ber.GET_REQUEST, oids[:1])


def test_responses_decode_with_pysnmp() -> None:
    data = _request(api.SNMP_VERSION_2C, "GetRequestPDU", [(1, 3, 6, 1, 2, 1, 1, 5, 0)])
    req = ber.decode_request(data)
    reply = ber.encode_response(req.version, req.community, req.request_id, 0, 0,
                                [ber.varbind(req.oids[0], ber.text("CORE1")),
                                 ber.varbind((1, 3, 6, 1, 2, 1, 1, 9, 0), ber.NO_SUCH_OBJECT)])
    p_mod = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    msg, rest = decoder.decode(reply, asn1Spec=p_mod.Message())
    assert rest == b""
    pdu = p_mod.apiMessage.get_pdu(msg)
    assert int(p_mod.apiPDU.get_request_id(pdu)) == 4242
    (oid1, value1), (_, value2) = p_mod.apiPDU.get_varbinds(pdu)
    assert tuple(oid1) == (1, 3, 6, 1, 2, 1, 1, 5, 0) and bytes(value1) == b"CORE1"
    assert value2.tagSet == p_mod.NoSuchObject().tagSet


@pytest.mark.parametrize("cut", [1, 2, 5, 10, 20, -1])
def test_truncated_requests_are_refused(cut: int) -> None:
    data = _request(api.SNMP_VERSION_2C, "GetNextRequestPDU", [(1, 3, 6, 1, 2, 1, 1, 1, 0)])
    with pytest.raises(ber.BerError):
        ber.decode_request(data[:cut])


def test_garbage_is_refused() -> None:
    for junk in (b"", b"\x30", b"\x30\x84\xff\xff\xff\xff", b"\x04\x03abc", bytes(range(64))):
        with pytest.raises(ber.BerError):
            ber.decode_request(junk)
