"""Is anything answering at that address? A check that costs a round trip, not a poll's timeout.

A dead router costs a full poll timeout, and while a poll waits it holds one of
the poller's slots: in a storm, hundreds of dead routers queue the live ones
behind them and detection time grows with the fleet. A device that just failed,
or sits behind something that did, is first checked here with a short timeout,
in a pool of its own (waiting costs a socket, not CPU); only if it answers does
it get a full poll.

Every protocol the device is polled with is tried at once; any answer counts,
an error reply included, since it proves the path and the service:

* RouterOS API: a TCP connect, then one command sent before login. A router
  answers that with a trap ("not logged in"); a black hole accepts the
  connection (a firewall, a NAT, a half-dead router) and never replies. Over
  TLS, a completed handshake counts.
* SNMP v2c: a GET of sysUpTime.0 with the profile's community (an agent drops
  a wrong community silently, so only the right one proves anything).
* SNMP v3: an engine-ID discovery request (no user, no keys). Every v3 agent
  answers it with a report, before any authentication.

ICMP is not used: on loopback (the lab) it always answers, and elsewhere it
needs privileges the jump host may not grant; the protocols that will be
polled are the better question anyway. No secret is sent except the v2c
community the poll would send next.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import ssl
import time
from dataclasses import dataclass, field

from ispvm_tui.collectors.results import ErrorKind
from ispvm_tui.collectors.snmp_wire import GET, VERSION_2C, encode_request, encode_v3_discovery

SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
_PROBE_WORD = b"/system/identity/print"
_API_PROBE = bytes((len(_PROBE_WORD),)) + _PROBE_WORD + b"\x00"  # one length-prefixed word, then the empty word
_UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET, errno.ECONNABORTED}
_request_ids = itertools.count(0x5EED)


@dataclass(frozen=True)
class ReachTarget:
    name: str
    address: str
    api_port: int | None = None
    api_tls: bool = False
    snmp_port: int | None = None
    snmp_version: str = "2c"
    community: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Reach:
    ok: bool
    kind: ErrorKind | None = None  # why not, when not ok: timeout, refused or unreachable
    detail: str = ""
    seconds: float = 0.0


async def check(target: ReachTarget, timeout: float) -> Reach:
    """Whether any of the device's protocols answers within ``timeout`` seconds. Never raises."""
    started = time.monotonic()
    probes = []
    if target.api_port is not None:
        probes.append(asyncio.ensure_future(_api(target, timeout)))
    if target.snmp_port is not None:
        probes.append(asyncio.ensure_future(_snmp(target, timeout)))
    if not probes:
        return Reach(ok=True, detail="nothing to check")
    failures: list[tuple[ErrorKind, str]] = []
    try:
        for next_done in asyncio.as_completed(probes):
            outcome = await next_done
            if outcome is None:
                return Reach(ok=True, seconds=time.monotonic() - started)
            failures.append(outcome)
    finally:
        for probe in probes:
            probe.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
    # One clear reason, the most telling first: a refusal or a reset proves the path to the host.
    order: list[ErrorKind] = ["refused", "unreachable", "timeout", "error"]
    kind, _ = min(failures, key=lambda f: order.index(f[0]) if f[0] in order else len(order))
    detail = "; ".join(text for _, text in failures)
    return Reach(ok=False, kind=kind, detail=f"reachability check: {detail}", seconds=time.monotonic() - started)


def _os_error(exc: OSError, what: str) -> tuple[ErrorKind, str]:
    if isinstance(exc, ConnectionRefusedError):
        return "refused", f"{what} refused"
    if exc.errno in _UNREACHABLE_ERRNOS or isinstance(exc, ConnectionResetError | ConnectionAbortedError):
        return "unreachable", f"{what}: {exc.strerror or type(exc).__name__}"
    return "error", f"{what}: {exc.strerror or type(exc).__name__}"


async def _api(target: ReachTarget, timeout: float) -> tuple[ErrorKind, str] | None:
    what = f"API {target.address}:{target.api_port}"
    writer = None
    try:
        async with asyncio.timeout(timeout):
            context = None
            if target.api_tls:
                # Only the handshake matters here; the poll itself verifies the certificate.
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            reader, writer = await asyncio.open_connection(target.address, target.api_port, ssl=context)
            if context is not None:
                return None
            writer.write(_API_PROBE)
            await writer.drain()
            if await reader.read(1):
                return None
            return "unreachable", f"{what} closed the connection without a word"
    except TimeoutError:
        return "timeout", f"no answer from {what} within {timeout:g}s"
    except ssl.SSLError:
        return None  # whatever went wrong, something at that address spoke TLS back
    except OSError as exc:
        return _os_error(exc, what)
    finally:
        if writer is not None:
            writer.transport.abort()  # no goodbye: nothing to say to a router we only asked one question


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.answer.done():
            self.answer.set_result(None)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable on a connected socket
        if not self.answer.done():
            self.answer.set_exception(exc)


async def _snmp(target: ReachTarget, timeout: float) -> tuple[ErrorKind, str] | None:
    what = f"SNMP {target.address}:{target.snmp_port}"
    loop = asyncio.get_running_loop()
    transport = None
    try:
        async with asyncio.timeout(timeout):
            transport, proto = await loop.create_datagram_endpoint(
                _Datagram, remote_addr=(target.address, target.snmp_port))
            request_id = next(_request_ids) & 0x7FFFFFFF
            if target.snmp_version == "3":
                transport.sendto(encode_v3_discovery(request_id))
            else:
                transport.sendto(encode_request(VERSION_2C, (target.community or "").encode(), GET, request_id,
                                                [SYS_UPTIME]))
            await proto.answer
            return None
    except TimeoutError:
        return "timeout", f"no answer from {what} within {timeout:g}s"
    except OSError as exc:
        return _os_error(exc, what)
    finally:
        if transport is not None:
            answer = proto.answer
            if answer.done() and not answer.cancelled():
                answer.exception()  # an ICMP error that came as the check was cancelled: read, not logged
            with contextlib.suppress(Exception):
                transport.close()
