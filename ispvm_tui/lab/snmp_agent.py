"""A small SNMP v1/v2c agent for one lab router.

It speaks the real wire protocol (BER via pysnmp's message API and pyasn1)
but skips pysnmp's SnmpEngine, whose per-instance MIB and LCD machinery is far
too heavy for a lab of a thousand routers: each agent is one UDP socket, one
cached sorted OID table and a few bisects per request.

Behaviour a poller can observe, as on a real RouterOS agent:

* wrong community, SNMPv3, or router not answering: no reply at all;
* GET: value, or noSuchObject / noSuchInstance (v2c), noSuchName (v1);
* GETNEXT / GETBULK: lexicographic successors, endOfMibView at the end;
  GETBULK honours non-repeaters and max-repetitions, capped by count and size;
* SNMPv1 never sees Counter64 objects (RFC 3584 section 4.1.2.1);
* SET: notWritable (v2c) / noSuchName (v1): the lab is read-only.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from dataclasses import dataclass
from typing import Any, cast

from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pysnmp.proto import api
from pysnmp.proto.error import ProtocolError
from pysnmp.proto.rfc1902 import Counter64
from pysnmp.proto.rfc1905 import endOfMibView, noSuchInstance, noSuchObject

from ispvm_tui.lab.sim import RouterHandle
from ispvm_tui.lab.snmp_mibs import Oid, render_oids

log = logging.getLogger(__name__)

_ERR_TOO_BIG = 1
_ERR_NO_SUCH_NAME = 2
_ERR_NOT_WRITABLE = 17


@dataclass(frozen=True)
class _View:
    """One rendering of the router's MIB, ready for bisecting."""

    oids: list[Oid]
    values: list[Any]
    objects: frozenset[Oid]  # OIDs of the object types (instance stripped)

    @classmethod
    def build(cls, rows: list[tuple[Oid, Any]]) -> _View:
        oids = [oid for oid, _ in rows]
        # Every rendered object has a one-component instance (".0" or a single index).
        return cls(oids, [value for _, value in rows], frozenset(oid[:-1] for oid in oids))


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, agent: SnmpAgent) -> None:
        self._agent = agent
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self._agent.handle_datagram(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class SnmpAgent:
    """SNMP v1/v2c command responder for one lab router on ``host:port``."""

    # A walk arrives as a burst of requests a few ms apart: one rendering serves
    # the whole burst, and a pause or this age forces a fresh one so counters move.
    cache_max_age = 1.0  # real seconds
    cache_idle_gap = 0.25  # real seconds without requests that ends a burst
    # Bulk replies stay well under the loopback/UDP limit and near what routers send.
    max_bulk_varbinds = 250
    max_message_bytes = 16384

    def __init__(self, router: RouterHandle, host: str, port: int = 1161, community: str = "public") -> None:
        self.router = router
        self.host = host
        self._requested_port = port
        self._community = community.encode()
        self._protocol: _Protocol | None = None
        self._view: _View | None = None
        self._view_v1: _View | None = None
        self._rendered_at = 0.0
        self._last_request = 0.0

    @property
    def port(self) -> int:
        if self._protocol is None or self._protocol.transport is None:
            return self._requested_port
        return int(self._protocol.transport.get_extra_info("sockname")[1])

    async def start(self) -> None:
        if self._protocol is not None:
            return
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self._requested_port)
        )
        self._protocol = protocol

    async def stop(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
        self._view = self._view_v1 = None

    # -- request handling -------------------------------------------------

    def handle_datagram(self, data: bytes) -> bytes | None:
        """The encoded reply to one datagram, or None to stay silent."""
        if not self.router.answering():
            return None  # black hole: a dead path never answers
        try:
            return self._respond(data)
        except (PyAsn1Error, ProtocolError, ValueError, TypeError, IndexError) as exc:
            log.debug("%s: dropped malformed SNMP datagram: %s", self.router.name, exc)
        except Exception:  # one bad request must not take the router's agent down
            log.exception("%s: SNMP request failed", self.router.name)
        return None

    def _respond(self, data: bytes) -> bytes | None:
        version = int(api.decodeMessageVersion(data))
        p_mod = api.PROTOCOL_MODULES.get(version)
        if p_mod is None:
            return None  # SNMPv3 is not served by the lab agent
        request, _ = decoder.decode(data, asn1Spec=p_mod.Message())
        if bytes(p_mod.apiMessage.get_community(request)) != self._community:
            return None  # like real agents: a wrong community gets no answer
        pdu = p_mod.apiMessage.get_pdu(request)
        response = p_mod.apiMessage.get_response(request)
        rsp_pdu = p_mod.apiMessage.get_pdu(response)
        if not self._fill(p_mod, version, pdu, rsp_pdu):
            return None
        encoded = encoder.encode(response)
        if len(encoded) > self.max_message_bytes:
            encoded = self._too_big(p_mod, pdu, rsp_pdu, response)
        return encoded

    def _fill(self, p_mod: Any, version: int, pdu: Any, rsp_pdu: Any) -> bool:
        """Put the answer to ``pdu`` into ``rsp_pdu``; False for PDUs we ignore."""
        v1 = version == api.SNMP_VERSION_1
        requested = [tuple(oid) for oid, _ in p_mod.apiPDU.get_varbinds(pdu)]
        tag = pdu.tagSet
        if tag == p_mod.GetRequestPDU.tagSet:
            varbinds, error = self._get(requested, v1)
        elif tag == p_mod.GetNextRequestPDU.tagSet:
            varbinds, error = self._get_next(requested, v1)
        elif not v1 and tag == p_mod.GetBulkRequestPDU.tagSet:
            non_repeaters = int(p_mod.apiBulkPDU.get_non_repeaters(pdu))
            max_repetitions = int(p_mod.apiBulkPDU.get_max_repetitions(pdu))
            varbinds, error = self._get_bulk(requested, non_repeaters, max_repetitions), None
        elif tag == p_mod.SetRequestPDU.tagSet:
            # Read-only lab: refuse the first binding the way net-snmp-style agents do.
            varbinds, error = None, (_ERR_NO_SUCH_NAME if v1 else _ERR_NOT_WRITABLE, 1)
        else:
            return False  # traps, responses, reports: nothing to answer
        if error is not None:
            status, index = error
            p_mod.apiPDU.set_error_status(rsp_pdu, status)
            p_mod.apiPDU.set_error_index(rsp_pdu, index)
            # On error the request's bindings are echoed back unchanged.
            p_mod.apiPDU.set_varbinds(rsp_pdu, p_mod.apiPDU.get_varbinds(pdu))
        else:
            p_mod.apiPDU.set_varbinds(rsp_pdu, varbinds)
        return True

    def _too_big(self, p_mod: Any, pdu: Any, rsp_pdu: Any, response: Any) -> bytes:
        # Bulk replies are trimmed before encoding, so only GET/GETNEXT land here.
        p_mod.apiPDU.set_error_status(rsp_pdu, _ERR_TOO_BIG)
        p_mod.apiPDU.set_error_index(rsp_pdu, 0)
        p_mod.apiPDU.set_varbinds(rsp_pdu, [])
        return encoder.encode(response)

    # -- MIB view ---------------------------------------------------------

    def _current_view(self, v1: bool) -> _View:
        now = time.monotonic()
        stale = (
            self._view is None
            or now - self._rendered_at > self.cache_max_age
            or now - self._last_request > self.cache_idle_gap
        )
        self._last_request = now
        if stale:
            self._view = _View.build(render_oids(self.router.state(), self.router.now()))
            self._view_v1 = None
            self._rendered_at = now
        assert self._view is not None
        if not v1:
            return self._view
        if self._view_v1 is None:
            rows = zip(self._view.oids, self._view.values, strict=True)
            self._view_v1 = _View.build([(o, v) for o, v in rows if not isinstance(v, Counter64)])
        return self._view_v1

    def _get(self, oids: list[Oid], v1: bool) -> tuple[list[tuple[Oid, Any]], tuple[int, int] | None]:
        view = self._current_view(v1)
        out: list[tuple[Oid, Any]] = []
        for position, oid in enumerate(oids, start=1):
            i = bisect.bisect_left(view.oids, oid)
            if i < len(view.oids) and view.oids[i] == oid:
                out.append((oid, view.values[i]))
            elif v1:
                return [], (_ERR_NO_SUCH_NAME, position)
            elif any(oid[:k] in view.objects for k in range(1, len(oid) + 1)):
                out.append((oid, noSuchInstance))
            else:
                out.append((oid, noSuchObject))
        return out, None

    def _get_next(self, oids: list[Oid], v1: bool) -> tuple[list[tuple[Oid, Any]], tuple[int, int] | None]:
        view = self._current_view(v1)
        out: list[tuple[Oid, Any]] = []
        for position, oid in enumerate(oids, start=1):
            found = _successor(view, oid)
            if found is not None:
                out.append(found)
            elif v1:
                return [], (_ERR_NO_SUCH_NAME, position)
            else:
                out.append((oid, endOfMibView))
        return out, None

    def _get_bulk(self, oids: list[Oid], non_repeaters: int, max_repetitions: int) -> list[tuple[Oid, Any]]:
        view = self._current_view(False)
        n = min(max(non_repeaters, 0), len(oids))
        repeaters = oids[n:]
        out = [_successor(view, oid) or (oid, endOfMibView) for oid in oids[:n]]
        # Reserve room for the message and PDU headers around the varbinds.
        budget = _Budget(self.max_bulk_varbinds, self.max_message_bytes - 64 - len(self._community))
        if not budget.take(out):
            return out  # even the non-repeaters do not fit: send what we have
        cursors = list(repeaters)
        for _ in range(max(max_repetitions, 0) if repeaters else 0):
            row: list[tuple[Oid, Any]] = []
            for oid in cursors:
                row.append(_successor(view, oid) or (oid, endOfMibView))
            # Only whole rows go out, so the manager's table stays rectangular.
            if not budget.take(row):
                break
            out.extend(row)
            cursors = [oid for oid, _ in row]
            if all(value is endOfMibView for _, value in row):
                break
        return out


def _successor(view: _View, oid: Oid) -> tuple[Oid, Any] | None:
    i = bisect.bisect_right(view.oids, oid)
    if i >= len(view.oids):
        return None
    return view.oids[i], view.values[i]


class _Budget:
    """Varbind count and an upper estimate of encoded bytes left in a reply."""

    def __init__(self, varbinds: int, size: int) -> None:
        self.varbinds = varbinds
        self.size = size

    def take(self, row: list[tuple[Oid, Any]]) -> bool:
        cost = sum(_varbind_size(oid, value) for oid, value in row)
        if len(row) > self.varbinds or cost > self.size:
            return False
        self.varbinds -= len(row)
        self.size -= cost
        return True


def _varbind_size(oid: Oid, value: Any) -> int:
    """Upper bound of the BER size of one varbind, without encoding it."""
    oid_bytes = 2 + sum(_subid_size(c) for c in oid)
    if isinstance(value, univ.ObjectIdentifier):
        payload = 2 + sum(_subid_size(c) for c in value)
    elif isinstance(value, univ.OctetString):  # also IpAddress and the Null-based exceptions
        payload = 4 + len(value)
    else:
        payload = 11  # integers and counters: at most 9 content bytes
    return 4 + oid_bytes + payload


def _subid_size(component: int) -> int:
    return max(1, (int(component).bit_length() + 6) // 7)
