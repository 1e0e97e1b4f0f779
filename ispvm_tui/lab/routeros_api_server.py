"""A RouterOS API server (TCP 8728, API-SSL 8729) for one lab router.

It speaks the real wire protocol, so ``librouteros`` and any other RouterOS
API client talk to it unchanged: words are length-prefixed, a sentence ends
with a zero-length word, replies are ``!re`` rows then ``!done`` (``!trap``
for errors, ``!fatal`` before closing). The rows come from
``routeros_menus.render_menu`` over the live lab model, so counters and
protocol states move with the scenario.

Supported: plain login (6.43+) and the older MD5 challenge login, ``print``
with ``.proplist``, ``?`` queries (equality, presence, ``<``/``>`` and the
``?#`` stack operations), ``count-only``, ``.tag``, ``!empty`` on empty v7
prints, ``/cancel`` and ``/quit``.

``/ping``, ``/tool/traceroute`` and ``/interface/ethernet/monitor`` (without
``once``) run beside other commands on the same connection, as on a real
router: ping sends one ``!re`` per echo, ``interval`` apart, each echo
answered by the lab model (``RouterHandle.ping``), until ``count`` is reached
or ``/cancel`` stops it with ``!trap`` "interrupted". Traceroute walks the lab
path (``RouterHandle.traceroute``): as each hop is measured (its RTT, or
``timeout`` of waiting for a silent one) it sends the whole hop table so far
as one ``.section``, like RouterOS, and ends at the target or ``max-hops``
after ``count`` rounds.

While the router is not answering (powered off, cut off or hung) the server
is a black hole: it accepts and reads but never replies, which is what a
poller sees across a dead path. In a routed lab (``[lab] unreachable =
"reject"``) a router that is cut off or powered off instead has its
connections reset at once (SO_LINGER 0, so the close sends RST): the client
sees "connection reset", the quick failure a routed network gives after an
ICMP unreachable or a firewall reject. (A real EHOSTUNREACH on loopback would
need host routing or firewall changes, which the lab never makes.) ``Misbehaviour`` adds the faults a collector must
survive: slow replies, connections dropped mid-reply, traps and malformed
sentences (``/ping`` included).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import re
import secrets
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ispvm_tui.lab.routeros_menus import (
    count_menu,
    ethernet_monitor,
    lte_monitor,
    ping_row,
    render_menu,
    traceroute_row,
)
from ispvm_tui.lab.sim import RouterHandle, SimDevice

_LOG = logging.getLogger(__name__)

_MAX_WORD = 1 << 20  # a command word longer than this is an attack, not a command
_PRINT_VERBS = frozenset({"print", "getall"})
_WRITE_VERBS = frozenset({"add", "set", "unset", "remove", "enable", "disable", "move", "edit", "reset-counters"})
# What RouterOS answers when a routing process does not respond in time.
_BUSY_MESSAGE = "action timed out - try again, if error continues contact MikroTik support and send a supout file (13)"
_BAD_LOGIN = "invalid user name or password (6)"
_BOOL = {"true": True, "yes": True, "false": False, "no": False}
_INTERRUPTED = "interrupted"  # what a command stopped by /cancel ends with (category 2)
_MONITOR = "/interface/ethernet/monitor"
_LTE_MONITOR, _LTE_INFO = "/interface/lte/monitor", "/interface/lte/info"  # v7, v6
_MONITOR_PERIOD_S = 1.0  # a monitor without ``once`` repeats every second, like RouterOS
_PING_INTERVAL = (0.01, 5.0)  # RouterOS accepts 10ms..5s
_TRACEROUTE = "/tool/traceroute"
_TRACE_TIMEOUT = (0.01, 5.0)  # seconds a silent hop is waited for (RouterOS: timeout, default 1s)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|us|s)?$")


@dataclass
class Misbehaviour:
    """Knobs for tests of a misbehaving router (read on every request, so they can change live)."""

    reply_delay_s: float = 0.0  # sleep before every reply
    # close the TCP connection mid-reply after N reply sentences (counted per connection, after login)
    drop_after_sentences: int | None = None
    trap_paths: frozenset[str] = frozenset()  # these menus answer !trap
    garbage_paths: frozenset[str] = frozenset()  # these menus answer a malformed sentence


class WireError(Exception):
    """The peer sent bytes that are not a RouterOS API sentence."""


class _QueryError(Exception):
    """A ``?#`` operation needed more values than the query stack held."""


# ---- wire format -------------------------------------------------------------------


def encode_length(length: int) -> bytes:
    """RouterOS word length prefix: 1 to 5 bytes, the top bits of the first byte tell how many."""
    if length < 0x80:
        return bytes([length])
    if length < 0x4000:
        return (length | 0x8000).to_bytes(2, "big")
    if length < 0x200000:
        return (length | 0xC00000).to_bytes(3, "big")
    if length < 0x10000000:
        return (length | 0xE0000000).to_bytes(4, "big")
    return b"\xf0" + length.to_bytes(4, "big")


def encode_sentence(words: list[str]) -> bytes:
    out = bytearray()
    for word in words:
        raw = word.encode("utf-8")
        out += encode_length(len(raw)) + raw
    out += b"\x00"
    return bytes(out)


async def _read_length(reader: asyncio.StreamReader) -> int:
    first = (await reader.readexactly(1))[0]
    if first < 0x80:
        return first
    if first < 0xC0:
        extra, mask = 1, 0x3F
    elif first < 0xE0:
        extra, mask = 2, 0x1F
    elif first < 0xF0:
        extra, mask = 3, 0x0F
    elif first == 0xF0:
        return int.from_bytes(await reader.readexactly(4), "big")
    else:
        raise WireError(f"reserved control byte 0x{first:02x}")
    rest = await reader.readexactly(extra)
    return int.from_bytes(bytes([first & mask]) + rest, "big")


async def read_sentence(reader: asyncio.StreamReader) -> list[str]:
    """Read words up to the zero-length word that ends a sentence."""
    words: list[str] = []
    while True:
        length = await _read_length(reader)
        if length == 0:
            return words
        if length > _MAX_WORD:
            raise WireError(f"word of {length} bytes")
        words.append((await reader.readexactly(length)).decode("utf-8", "replace"))


def _garbage_sentence() -> bytes:
    # "!re" then a reserved length byte: no client can parse past it.
    return encode_sentence(["!re"])[:-1] + b"\xf8\x01\x02\x03\x00"


# ---- requests and queries ----------------------------------------------------------


@dataclass
class _Request:
    command: str
    attrs: dict[str, str] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)
    tag: str | None = None

    @classmethod
    def parse(cls, words: list[str]) -> _Request:
        req = cls(command=words[0])
        for word in words[1:]:
            if word.startswith("="):
                key, _, value = word[1:].partition("=")
                req.attrs[key] = value
            elif word.startswith(".tag="):
                req.tag = word[5:]
            elif word.startswith(".proplist="):
                req.attrs[".proplist"] = word[10:]
            elif word.startswith("?"):
                req.queries.append(word[1:])
        return req


def _as_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _equal(actual: str | None, expected: str) -> bool:
    if actual is None:
        return expected == ""  # an unset property matches an empty value
    if actual in _BOOL and expected in _BOOL:
        return _BOOL[actual] == _BOOL[expected]
    a, b = _as_int(actual), _as_int(expected)
    if a is not None and b is not None:
        return a == b
    return actual == expected


def _less(actual: str | None, expected: str) -> bool:
    if actual is None:
        return False
    a, b = _as_int(actual), _as_int(expected)
    return a < b if a is not None and b is not None else actual < expected


def _stack_ops(ops: str, stack: list[bool]) -> None:
    """``?#`` operations: ``!`` negate top, ``&``/``|`` combine two, ``.`` duplicate top, digit copies index."""
    try:
        for op in ops:
            if op.isdigit():
                stack.append(stack[int(op)])
            elif op == "!":
                stack[-1] = not stack[-1]
            elif op == ".":
                stack.append(stack[-1])
            elif op in "&|":
                right, left = stack.pop(), stack.pop()
                stack.append(left and right if op == "&" else left or right)
            else:
                raise _QueryError(f"unknown query operation {op!r}")
    except IndexError as exc:
        raise _QueryError("query stack underflow") from exc


def _push_query(row: dict[str, str], query: str, stack: list[bool]) -> None:
    if query.startswith("#"):
        _stack_ops(query[1:], stack)
    elif query.startswith("-"):
        stack.append(query[1:] not in row)
    elif query[:1] in ("<", ">"):
        key, _, value = query[1:].partition("=")
        actual = row.get(key)
        if query[0] == "<":
            stack.append(_less(actual, value))
        else:
            stack.append(actual is not None and not _less(actual, value) and not _equal(actual, value))
    else:
        key, has_value, value = query.removeprefix("=").partition("=")
        stack.append(_equal(row.get(key), value) if has_value else key in row)


def _matches(row: dict[str, str], queries: list[str]) -> bool:
    """RouterOS evaluates query words on a stack; a row matches when every value left is true."""
    stack: list[bool] = []
    for query in queries:
        _push_query(row, query, stack)
    return all(stack)


def _row_words(row: dict[str, str], proplist: list[str] | None) -> list[str]:
    if proplist is None:
        return [f"={k}={v}" for k, v in row.items()]
    return [f"={k}={row[k]}" for k in proplist if k in row]


def _trap(message: str, category: int | None = None) -> list[list[str]]:
    words = ["!trap"]
    if category is not None:
        words.append(f"=category={category}")
    words.append(f"=message={message}")
    return [words, ["!done"]]


def _login_response(password: str, challenge: bytes) -> str:
    digest = hashlib.md5(b"\x00" + password.encode("utf-8") + challenge, usedforsecurity=False)
    return "00" + digest.hexdigest()


def _same(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


# ---- server ------------------------------------------------------------------------


@dataclass
class _Conn:
    writer: asyncio.StreamWriter
    logged_in: bool = False
    challenge: bytes | None = None
    sent: int = 0  # reply sentences after login, for Misbehaviour.drop_after_sentences
    closing: bool = False
    streams: dict[str | None, _Stream] = field(default_factory=dict)  # running commands by .tag


@dataclass
class _Stream:
    """A command that keeps answering (ping, monitor) until it ends or is cancelled."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class _PingArgs:
    address: str
    count: int | None  # None: until /cancel
    interval: float
    size: int


@dataclass(frozen=True)
class _TraceArgs:
    address: str
    count: int | None  # None: rounds until /cancel
    max_hops: int
    timeout: float


@dataclass
class _Reply:
    sentences: list[list[str]]
    garbage: bool = False  # replace the first sentence with a malformed one
    close: bool = False  # close the session after sending (/quit)
    counted: bool = True  # counts towards drop_after_sentences


class RouterOSApiServer:
    """RouterOS API endpoint of one lab router on ``host:port``."""

    def __init__(
        self,
        router: RouterHandle,
        host: str,
        port: int = 8728,
        *,
        ssl_context: ssl.SSLContext | None = None,
        misbehaviour: Misbehaviour | None = None,
    ) -> None:
        self.router = router
        self.host = host
        self._port = port
        self._ssl = ssl_context
        self.misbehaviour = misbehaviour or Misbehaviour()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        # TLS is started per connection (not by the listener) so a black-holed
        # router does not even complete the TLS handshake.
        self._server = await asyncio.start_server(self._handle, self.host, self._port)
        _LOG.debug("%s: RouterOS API on %s:%d%s", self.router.name, self.host, self.port,
                   " (TLS)" if self._ssl else "")

    async def stop(self) -> None:
        """Close the listener and every open client connection."""
        server, self._server = self._server, None
        if server is not None:
            self._port = int(server.sockets[0].getsockname()[1]) if server.sockets else self._port
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    # ---- connection ------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        conn = _Conn(writer)
        try:
            if self.router.rejecting():
                _reset(writer)
                return
            if not self.router.answering():
                await self._swallow(reader)
                return
            if self._ssl is not None:
                await writer.start_tls(self._ssl)
            await self._session(reader, conn)
        except asyncio.CancelledError:
            pass  # server stopping; the finally block closes the socket
        except (asyncio.IncompleteReadError, ConnectionError, WireError, ssl.SSLError, OSError) as exc:
            _LOG.debug("%s: client %s: %s", self.router.name, peer, exc)
        except Exception:
            _LOG.debug("%s: client %s failed", self.router.name, peer, exc_info=True)
        finally:
            for stream in list(conn.streams.values()):
                if stream.task is not None:
                    stream.task.cancel()  # the client is gone: nobody to tell
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()  # graceful: lets a final !fatal or partial reply reach the client

    @staticmethod
    async def _swallow(reader: asyncio.StreamReader) -> None:
        """Black hole: read whatever arrives, never answer, until the client gives up."""
        while await reader.read(65536):
            pass

    async def _session(self, reader: asyncio.StreamReader, conn: _Conn) -> None:
        while not conn.closing:
            words = await read_sentence(reader)
            if not words:
                continue  # RouterOS ignores empty sentences
            if self.router.rejecting():
                _reset(conn.writer)  # the path went away mid-session and the network says so
                return
            if not self.router.answering():
                continue  # path went dark mid-session: the request is lost
            await self._serve(conn, _Request.parse(words))

    async def _serve(self, conn: _Conn, req: _Request) -> None:
        delay = self.misbehaviour.reply_delay_s
        if delay > 0:
            await asyncio.sleep(delay)
        if conn.logged_in and req.command == "/cancel":
            await self._cancel(conn, req.attrs.get("tag"))
            reply = _Reply([["!done"]])
        elif conn.logged_in and _is_stream(req):
            started = self._start_stream(conn, req)
            if started is None:
                return  # the stream answers on its own
            reply = started
        else:
            reply = self._reply(conn, req)
        await self._send(conn, reply, req.tag)
        if reply.close:
            conn.closing = True

    async def _send(self, conn: _Conn, reply: _Reply, tag: str | None) -> None:
        if conn.writer.is_closing():
            return  # dropped by a misbehaviour knob or by the client; a stream may still be running
        limit = self.misbehaviour.drop_after_sentences
        for i, words in enumerate(reply.sentences):
            if reply.counted and limit is not None and conn.sent >= limit:
                conn.closing = True
                conn.writer.close()  # FIN after what was already written
                return
            tagged = [words[0], f".tag={tag}", *words[1:]] if tag is not None else words
            conn.writer.write(_garbage_sentence() if reply.garbage and i == 0 else encode_sentence(tagged))
            if reply.counted:
                conn.sent += 1
        await conn.writer.drain()

    # ---- commands --------------------------------------------------------------

    def _reply(self, conn: _Conn, req: _Request) -> _Reply:
        cmd = req.command
        if cmd == "/quit":
            return _Reply([["!fatal", "session terminated on request"]], close=True, counted=False)
        if cmd == "/login":
            return _Reply(self._login(conn, req), counted=False)
        if not conn.logged_in:
            return _Reply(_trap("not logged in"), counted=False)
        device = self.router.state()
        menu, _, verb = cmd.rpartition("/")
        if verb in _PRINT_VERBS:
            return self._print(device, menu or "/", req)
        if cmd == _MONITOR:
            return self._monitor_once(device, req)
        if cmd == (_LTE_MONITOR if device.ros_major >= 7 else _LTE_INFO):
            rows = lte_monitor(device, req.attrs.get("numbers", ""))
            if rows is None:
                return _Reply(_trap("no such item"))
            return _Reply([*(["!re", *_row_words(row, _proplist(req))] for row in rows), ["!done"]])
        if count_menu(device, menu, self.router.now()) is None:
            return _Reply(_trap("no such command prefix", 0))
        if verb in _WRITE_VERBS:
            return _Reply(_trap("not enough permissions (9)"))  # the lab user is read-only
        return _Reply(_trap("no such command", 0))

    def _login(self, conn: _Conn, req: _Request) -> list[list[str]]:
        name = req.attrs.get("name")
        if name is None:
            # pre-6.43: hand out a challenge for an MD5 response
            conn.challenge = secrets.token_bytes(16)
            return [["!done", f"=ret={conn.challenge.hex()}"]]
        expected_user, password = self.router.username, self.router.password
        if "response" in req.attrs:
            ok = conn.challenge is not None and _same(req.attrs["response"], _login_response(password, conn.challenge))
        else:
            ok = _same(req.attrs.get("password", ""), password)
        ok = ok and _same(name, expected_user)
        conn.challenge = None
        if not ok:
            return _trap(_BAD_LOGIN)
        conn.logged_in = True
        return [["!done"]]

    def _print(self, device: SimDevice, menu: str, req: _Request) -> _Reply:
        mis = self.misbehaviour
        if menu in mis.trap_paths:
            return _Reply(_trap(_BUSY_MESSAGE))
        now = self.router.now()
        count_only = "count-only" in req.attrs
        if count_only and not req.queries:
            total = count_menu(device, menu, now)
            if total is None:
                return _Reply(_trap("no such command prefix", 0))
            return _Reply([["!done", f"=ret={total}"]], garbage=menu in mis.garbage_paths)
        rows = render_menu(device, menu, now, req.queries)
        if rows is None:
            return _Reply(_trap("no such command prefix", 0))
        try:
            rows = [row for row in rows if _matches(row, req.queries)]
        except _QueryError as exc:
            return _Reply(_trap(f"invalid query: {exc}", 1))
        if count_only:
            return _Reply([["!done", f"=ret={len(rows)}"]], garbage=menu in mis.garbage_paths)
        return _Reply(self._rows(device, rows, req), garbage=menu in mis.garbage_paths)

    @staticmethod
    def _rows(device: SimDevice, rows: list[dict[str, str]], req: _Request) -> list[list[str]]:
        raw = req.attrs.get(".proplist")
        proplist = [p for p in raw.split(",") if p] if raw is not None else None
        sentences = [["!re", *_row_words(row, proplist)] for row in rows]
        if not sentences and device.ros_major >= 7:
            sentences.append(["!empty"])  # RouterOS 7.18+ marks an empty result
        sentences.append(["!done"])
        return sentences

    # ---- commands that keep answering --------------------------------------------

    def _start_stream(self, conn: _Conn, req: _Request) -> _Reply | None:
        """Start ``/ping`` or a repeating monitor as its own task; a reply when it fails at once."""
        mis = self.misbehaviour
        if req.command in mis.trap_paths:
            return _Reply(_trap(_BUSY_MESSAGE))
        device = self.router.state()
        body: Callable[[_Stream], Awaitable[None]]
        if req.command == "/ping":
            args = _ping_args(req.attrs)
            if isinstance(args, str):
                return _Reply(_trap(args))
            body = lambda stream: self._ping(conn, req, stream, args)  # noqa: E731
        elif req.command == _TRACEROUTE:
            trace = _trace_args(req.attrs)
            if isinstance(trace, str):
                return _Reply(_trap(trace))
            body = lambda stream: self._traceroute(conn, req, stream, trace)  # noqa: E731
        else:
            if ethernet_monitor(device, req.attrs.get("numbers", "")) is None:
                return _Reply(_trap("no such item"))
            body = lambda stream: self._monitor(conn, req, stream)  # noqa: E731
        stream = _Stream()
        conn.streams[req.tag] = stream
        stream.task = asyncio.create_task(self._run_stream(conn, req, stream, body))
        self._tasks.add(stream.task)
        stream.task.add_done_callback(self._tasks.discard)
        return None

    async def _run_stream(self, conn: _Conn, req: _Request, stream: _Stream,
                          body: Callable[[_Stream], Awaitable[None]]) -> None:
        try:
            await body(stream)
            if stream.stop.is_set():
                await self._send(conn, _Reply(_trap(_INTERRUPTED, 2)), req.tag)
            elif self.router.answering():
                await self._send(conn, _Reply([["!done"]]), req.tag)
        except (ConnectionError, OSError) as exc:
            _LOG.debug("%s: %s stopped: %s", self.router.name, req.command, exc)
        finally:
            if conn.streams.get(req.tag) is stream:
                del conn.streams[req.tag]

    async def _cancel(self, conn: _Conn, tag: str | None) -> None:
        """``/cancel`` (all) or ``/cancel =tag=N``: the stopped command ends before /cancel's own !done."""
        streams = list(conn.streams.values()) if tag is None else [s for t, s in conn.streams.items() if t == tag]
        for stream in streams:
            stream.stop.set()
        tasks = [s.task for s in streams if s.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    async def _ping(self, conn: _Conn, req: _Request, stream: _Stream, args: _PingArgs) -> None:
        """One echo per ``interval``; a reply slower than the interval is reported as a timeout."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        rtts: list[float] = []
        seq = 0
        while args.count is None or seq < args.count:
            if await _pause(stream, start + seq * args.interval - loop.time()):
                return
            rtt = self.router.ping(args.address)
            answered = rtt is not None and rtt / 1000 < args.interval
            if await _pause(stream, rtt / 1000 if answered and rtt is not None else args.interval):
                return
            if answered and rtt is not None:
                rtts.append(rtt)
            row = ping_row(self.router.device, seq, args.address, args.size, rtt if answered else None, rtts)
            if self.router.answering():  # across a dead path the row is lost
                garbage = seq == 0 and req.command in self.misbehaviour.garbage_paths
                await self._send(conn, _Reply([["!re", *_row_words(row, _proplist(req))]], garbage=garbage), req.tag)
            seq += 1

    async def _traceroute(self, conn: _Conn, req: _Request, stream: _Stream, args: _TraceArgs) -> None:
        """Hop by hop along the lab path: each hop takes its RTT (or the timeout when silent), then the table
        so far goes out as one section. A later round (``count`` > 1) measures every hop again."""
        section = 0
        rounds = 0
        while args.count is None or rounds < args.count:
            hops = self.router.traceroute(args.address, args.max_hops)
            rows: list[dict[str, str]] = []
            for address, rtt in hops:
                if await _pause(stream, args.timeout if rtt is None else rtt / 1000):
                    return
                rows.append(traceroute_row(address, rtt))
                if self.router.answering():  # across a dead path the table is lost
                    sentences = [["!re", f".section={section}", *_row_words(row, _proplist(req))] for row in rows]
                    garbage = section == 0 and req.command in self.misbehaviour.garbage_paths
                    await self._send(conn, _Reply(sentences, garbage=garbage), req.tag)
                section += 1
            rounds += 1

    async def _monitor(self, conn: _Conn, req: _Request, stream: _Stream) -> None:
        while True:
            rows = ethernet_monitor(self.router.state(), req.attrs.get("numbers", "")) or []
            if self.router.answering():
                sentences = [["!re", *_row_words(row, _proplist(req))] for row in rows]
                await self._send(conn, _Reply(sentences), req.tag)
            if await _pause(stream, _MONITOR_PERIOD_S):
                return

    def _monitor_once(self, device: SimDevice, req: _Request) -> _Reply:
        if _MONITOR in self.misbehaviour.trap_paths:
            return _Reply(_trap(_BUSY_MESSAGE))
        rows = ethernet_monitor(device, req.attrs.get("numbers", ""))
        if rows is None:
            return _Reply(_trap("no such item"))
        sentences = [["!re", *_row_words(row, _proplist(req))] for row in rows]
        return _Reply([*sentences, ["!done"]], garbage=_MONITOR in self.misbehaviour.garbage_paths)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN: linger on, timeout zero, then abort."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already gone: nothing left to reset
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _is_stream(req: _Request) -> bool:
    return req.command in ("/ping", _TRACEROUTE) or (req.command == _MONITOR and "once" not in req.attrs)


def _proplist(req: _Request) -> list[str] | None:
    raw = req.attrs.get(".proplist")
    return [p for p in raw.split(",") if p] if raw is not None else None


async def _pause(stream: _Stream, seconds: float) -> bool:
    """Sleep, waking early for /cancel; True when cancelled."""
    if stream.stop.is_set():
        return True
    try:
        await asyncio.wait_for(stream.stop.wait(), timeout=max(0.0, seconds))
    except TimeoutError:
        return False
    return True


def _seconds(text: str) -> float | None:
    """RouterOS time values: ``200ms``, ``1s``, ``0.5`` (seconds) or ``00:00:01``."""
    if ":" in text:
        try:
            total = 0.0
            for part in text.split(":"):
                total = total * 60 + float(part)
        except ValueError:
            return None
        return total
    m = _DURATION.match(text.strip())
    if m is None:
        return None
    scale = {"ms": 0.001, "us": 0.000001}.get(m.group(2) or "s", 1.0)
    return float(m.group(1)) * scale


def _ping_args(attrs: dict[str, str]) -> _PingArgs | str:
    """Arguments of ``/ping``, or the message RouterOS traps with."""
    address = attrs.get("address", "")
    if not address:
        return "missing value(s) of argument(s) address"
    try:
        ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return "invalid value for argument address"  # no DNS in the lab
    count = _as_int(attrs["count"]) if "count" in attrs else None
    if "count" in attrs and (count is None or count < 1):
        return "invalid value for argument count"
    interval = _seconds(attrs.get("interval", "1s"))
    if interval is None or not _PING_INTERVAL[0] <= interval <= _PING_INTERVAL[1]:
        return "value of interval out of range (00:00:00.010..00:00:05)"
    size = _as_int(attrs.get("size", "56"))
    if size is None or not 14 <= size <= 65535:
        return "value of size out of range (14..65535)"
    return _PingArgs(address=address, count=count, interval=interval, size=size)


def _trace_args(attrs: dict[str, str]) -> _TraceArgs | str:
    """Arguments of ``/tool/traceroute``, or the message RouterOS traps with."""
    address = attrs.get("address", "")
    if not address:
        return "missing value(s) of argument(s) address"
    try:
        ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return "invalid value for argument address"  # no DNS in the lab
    count = _as_int(attrs["count"]) if "count" in attrs else None
    if "count" in attrs and (count is None or count < 1):
        return "invalid value for argument count"
    max_hops = _as_int(attrs.get("max-hops", "30"))
    if max_hops is None or not 1 <= max_hops <= 255:
        return "value of max-hops out of range (1..255)"
    timeout = _seconds(attrs.get("timeout", "1s"))
    if timeout is None or not _TRACE_TIMEOUT[0] <= timeout <= _TRACE_TIMEOUT[1]:
        return "value of timeout out of range (00:00:00.010..00:00:05)"
    return _TraceArgs(address=address, count=count, max_hops=max_hops, timeout=timeout)
