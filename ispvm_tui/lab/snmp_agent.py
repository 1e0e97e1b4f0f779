"""A small SNMP v1/v2c agent for one lab router.

It speaks the real wire protocol (BER by hand, lab/ber.py) but skips pysnmp's
SnmpEngine, whose per-instance MIB and LCD machinery is far too heavy for a lab
of a thousand routers: each agent is one UDP socket, one cached sorted table of
pre-encoded values and a few bisects per request.

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
from dataclasses import dataclass, field
from typing import cast

from ispvm_tui.lab import ber
from ispvm_tui.lab.sim import RouterHandle
from ispvm_tui.lab.snmp_mibs import Oid, object_type, render_oids

log = logging.getLogger(__name__)

_ERR_TOO_BIG = 1
_ERR_NO_SUCH_NAME = 2
_ERR_NOT_WRITABLE = 17


@dataclass
class _View:
    """One rendering of the router's MIB, ready for bisecting."""

    oids: list[Oid]
    values: list[bytes]  # BER-encoded
    objects: frozenset[Oid]  # OIDs of the object types (instance stripped)
    encoded: dict[int, bytes] = field(default_factory=dict)  # BER varbinds, made on first use

    @classmethod
    def build(cls, rows: list[tuple[Oid, bytes]]) -> _View:
        oids = [oid for oid, _ in rows]
        return cls(oids, [value for _, value in rows], frozenset(object_type(oid) for oid in oids))

    def varbind(self, i: int) -> bytes:
        cached = self.encoded.get(i)
        if cached is None:
            cached = self.encoded[i] = ber.varbind(self.oids[i], self.values[i])
        return cached

    def successor(self, oid: Oid) -> int | None:
        i = bisect.bisect_right(self.oids, oid)
        return i if i < len(self.oids) else None


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
        except (ValueError, TypeError, IndexError) as exc:  # ber.BerError is a ValueError
            log.debug("%s: dropped malformed SNMP datagram: %s", self.router.name, exc)
        except Exception:  # one bad request must not take the router's agent down
            log.exception("%s: SNMP request failed", self.router.name)
        return None

    def _respond(self, data: bytes) -> bytes | None:
        if ber.version_of(data) not in (0, 1):
            return None  # SNMPv3 is not served by the lab agent
        request = ber.decode_request(data)
        if request.community != self._community:
            return None  # like real agents: a wrong community gets no answer
        answer = self._answer(request)
        if answer is None:
            return None
        status, index, varbinds = answer
        if status:
            varbinds = request.varbinds  # on error the request's bindings go back unchanged
        encoded = ber.encode_response(request.version, self._community, request.request_id, status, index, varbinds)
        if len(encoded) > self.max_message_bytes:
            # Bulk replies are trimmed to fit, so only GET/GETNEXT can end up here.
            encoded = ber.encode_response(request.version, self._community, request.request_id, _ERR_TOO_BIG, 0, [])
        return encoded

    def _answer(self, request: ber.Request) -> tuple[int, int, list[bytes]] | None:
        """(error status, error index, encoded varbinds) for the request; None for PDUs we ignore."""
        v1 = request.version == 0
        if request.pdu == ber.GET_REQUEST:
            return self._get(request.oids, v1)
        if request.pdu == ber.GET_NEXT_REQUEST:
            return self._get_next(request.oids, v1)
        if not v1 and request.pdu == ber.GET_BULK_REQUEST:
            return 0, 0, self._get_bulk(request.oids, request.a, request.b)
        if request.pdu == ber.SET_REQUEST:
            # Read-only lab: refuse the first binding the way net-snmp-style agents do.
            return (_ERR_NO_SUCH_NAME if v1 else _ERR_NOT_WRITABLE), 1, []
        return None  # traps, responses, reports: nothing to answer

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
            self._view_v1 = _View.build([(o, v) for o, v in rows if not ber.is_counter64(v)])
        return self._view_v1

    def _get(self, oids: list[Oid], v1: bool) -> tuple[int, int, list[bytes]]:
        view = self._current_view(v1)
        out: list[bytes] = []
        for position, oid in enumerate(oids, start=1):
            i = bisect.bisect_left(view.oids, oid)
            if i < len(view.oids) and view.oids[i] == oid:
                out.append(view.varbind(i))
            elif v1:
                return _ERR_NO_SUCH_NAME, position, []
            elif any(oid[:k] in view.objects for k in range(1, len(oid) + 1)):
                out.append(ber.varbind(oid, ber.NO_SUCH_INSTANCE))
            else:
                out.append(ber.varbind(oid, ber.NO_SUCH_OBJECT))
        return 0, 0, out

    def _get_next(self, oids: list[Oid], v1: bool) -> tuple[int, int, list[bytes]]:
        view = self._current_view(v1)
        out: list[bytes] = []
        for position, oid in enumerate(oids, start=1):
            i = view.successor(oid)
            if i is not None:
                out.append(view.varbind(i))
            elif v1:
                return _ERR_NO_SUCH_NAME, position, []
            else:
                out.append(ber.varbind(oid, ber.END_OF_MIB_VIEW))
        return 0, 0, out

    def _get_bulk(self, oids: list[Oid], non_repeaters: int, max_repetitions: int) -> list[bytes]:
        view = self._current_view(False)
        n = min(max(non_repeaters, 0), len(oids))
        out = [encoded for _, encoded, _ in (_next(view, oid) for oid in oids[:n])]
        # Reserve room for the message and PDU headers around the varbinds.
        budget = _Budget(self.max_bulk_varbinds, self.max_message_bytes - 64 - len(self._community))
        if not budget.take(out):
            return out  # even the non-repeaters do not fit: too big, say so
        cursors = oids[n:]
        for _ in range(max(max_repetitions, 0) if cursors else 0):
            row = [_next(view, oid) for oid in cursors]
            encoded = [varbind for _, varbind, _ in row]
            # Only whole rows go out, so the manager's table stays rectangular.
            if not budget.take(encoded):
                break
            out.extend(encoded)
            if all(at_end for _, _, at_end in row):
                break
            cursors = [oid for oid, _, _ in row]
        return out


def _next(view: _View, oid: Oid) -> tuple[Oid, bytes, bool]:
    """(next OID, its encoded varbind, whether the MIB ended) for GETBULK."""
    i = view.successor(oid)
    if i is None:
        return oid, ber.varbind(oid, ber.END_OF_MIB_VIEW), True
    return view.oids[i], view.varbind(i), False


class _Budget:
    """Varbinds and encoded bytes still allowed in a reply."""

    def __init__(self, varbinds: int, size: int) -> None:
        self.varbinds = varbinds
        self.size = size

    def take(self, encoded: list[bytes]) -> bool:
        cost = sum(len(varbind) for varbind in encoded)
        if len(encoded) > self.varbinds or cost > self.size:
            return False
        self.varbinds -= len(encoded)
        self.size -= cost
        return True
