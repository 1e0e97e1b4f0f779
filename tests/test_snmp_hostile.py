"""The SNMP v1/v2c client against hostile or absent agents on loopback: a clear error kind, in bounded time."""

from __future__ import annotations

import asyncio
import errno
import random
import socket
import time

import pytest

from ispvm_tui.clock import ScaledClock
from ispvm_tui.collectors import snmp_wire as wire
from ispvm_tui.collectors.snmp import SnmpCollector, SnmpTarget

SLACK = 4.0  # a loaded host is slow to schedule us; the point is "bounded"


class _Babbler(asyncio.DatagramProtocol):
    """Answers every request with random bytes; or, once ``answer_first`` requests were answered, with nothing."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.rng = random.Random(11)
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        assert self.transport is not None
        self.transport.sendto(bytes(self.rng.randrange(256) for _ in range(200)), addr)


class _Slowpoke(asyncio.DatagramProtocol):
    """Answers the first request properly (sysUpTime only), then goes silent: each later request times out."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        if self.received > 1:
            return
        from pysnmp.proto import rfc1902

        from tests.test_snmp_wire import V2C, _pysnmp_request, _pysnmp_response

        _, pdu = _pysnmp_request(data)
        request_id = int(V2C.apiPDU.get_request_id(pdu))
        assert self.transport is not None
        self.transport.sendto(_pysnmp_response([((1, 3, 6, 1, 2, 1, 1, 3, 0), rfc1902.TimeTicks(42))],
                                               request_id=request_id), addr)


async def _serve(factory) -> tuple[asyncio.DatagramProtocol, int]:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    transport, agent = await loop.create_datagram_endpoint(factory, local_addr=("127.0.0.1", 0))
    return agent, transport.get_extra_info("sockname")[1]


def _collector(port: int, *, timeout: float = 0.3, retries: int = 1, poll_timeout: float | None = None,
               ) -> SnmpCollector:
    target = SnmpTarget(name="HOSTILE", address="127.0.0.1", port=port, community="c0mm-9921", timeout=timeout,
                        retries=retries)
    return SnmpCollector(target, clock=ScaledClock(1.0), poll_timeout=poll_timeout)


def _closed_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


async def test_garbage_replies_are_a_protocol_error_not_a_timeout() -> None:
    agent, port = await _serve(_Babbler)
    collector = _collector(port)
    try:
        t0 = time.monotonic()
        result = await collector.poll()
    finally:
        agent.transport.close()  # type: ignore[attr-defined]
        await collector.close()
    assert not result.ok and result.error_kind == "protocol", result.error
    assert result.error is not None and "undecodable" in result.error and "c0mm-9921" not in result.error
    assert time.monotonic() - t0 < 0.3 * 2 + SLACK


async def test_a_closed_port_is_refused_at_once() -> None:
    client = await wire.SnmpV2Transport.shared()
    t0 = time.monotonic()
    with pytest.raises(OSError) as exc:
        await client.request(("127.0.0.1", _closed_port()), wire.VERSION_2C, b"public", wire.GET, [(1, 3, 6)],
                             timeout=5.0, retries=2)
    assert exc.value.errno == errno.ECONNREFUSED
    assert time.monotonic() - t0 < 5.0  # well before the first try's timeout
    assert not client._pending


async def test_collector_names_a_closed_port_refused() -> None:
    collector = _collector(_closed_port(), timeout=2.0)
    try:
        result = await collector.poll()
    finally:
        await collector.close()
    assert not result.ok and result.error_kind == "refused", result.error


async def test_a_refused_target_does_not_fail_another_targets_request() -> None:
    """The shared socket's ICMP error for one target is never charged to another."""
    agent, port = await _serve(_Slowpoke)
    client = await wire.SnmpV2Transport.shared()
    try:
        refused = asyncio.ensure_future(client.request(("127.0.0.1", _closed_port()), wire.VERSION_2C, b"public",
                                                       wire.GET, [(1, 3, 6)], timeout=2.0, retries=0))
        await asyncio.wait((refused,), timeout=3)
        good = await client.request(("127.0.0.1", port), wire.VERSION_2C, b"public", wire.GET,
                                    [(1, 3, 6, 1, 2, 1, 1, 3, 0)], timeout=2.0, retries=0)
        assert good.varbinds == [((1, 3, 6, 1, 2, 1, 1, 3, 0), 42)]
        assert isinstance(refused.exception(), ConnectionRefusedError | OSError)
    finally:
        agent.transport.close()  # type: ignore[attr-defined]


async def test_the_poll_ends_at_its_own_timeout_whatever_the_tries() -> None:
    """3 tries of 1 s per request, many requests: without the poll's limit this poll runs for many seconds."""
    agent, port = await _serve(_Slowpoke)
    collector = _collector(port, timeout=1.0, retries=2, poll_timeout=0.8)
    try:
        t0 = time.monotonic()
        result = await collector.poll()
        elapsed = time.monotonic() - t0
    finally:
        agent.transport.close()  # type: ignore[attr-defined]
        await collector.close()
    assert not result.ok and result.error_kind == "timeout", result
    assert result.error is not None and "poll timeout" in result.error
    assert elapsed < 0.8 + SLACK
