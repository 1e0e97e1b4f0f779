"""Run RouterOS ``/ping`` and ``/tool/traceroute`` from a router over its API, one reply row at a time.

Both commands stream ``!re`` sentences until ``!done``. Each run opens its own
session (never the poller's connection, so polls go on beside it), logs in
with the device's API credential, and is bounded three ways: a total
deadline over connect, login and every read; at most ``max_rows`` rows; and
the wire reader's byte limits (``routeros_wire``). A reply that is not a
RouterOS API sentence, a ``!trap`` or a peer that never finishes ends the run
with a ``ToolError`` whose text never holds the password.

Reply shapes: ``/ping`` rows carry ``seq``, ``host``, ``time`` (v7
``9ms445us``, v6 ``12ms``) or ``status=timeout``, and running totals
(``sent``, ``received``, ``packet-loss``, ``min/avg/max-rtt``). Traceroute
rows carry ``address``, ``loss``, ``sent``, ``last``, ``avg``, ``best``,
``worst`` and ``status``; RouterOS may send the hop table again and again
(one ``.section`` per round, every hop so far in each), or one row per hop:
``traceroute`` yields each hop once, the first time it is seen finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from librouteros.api import AsyncApi
from librouteros.exceptions import ConnectionClosed, FatalError, ProtocolError, TrapError
from librouteros.login import async_plain

from ispvm_tui.collectors.neterrors import os_error_text
from ispvm_tui.collectors.routeros import ApiTarget, parse_ros_duration
from ispvm_tui.collectors.routeros_wire import ReplyBudget, ReplyTooLarge, open_api

COUNT_RANGE = (1, 20)
SIZE_RANGE = (14, 10_000)
MAX_HOPS_RANGE = (1, 64)
MAX_ROWS = 2_000  # a sectioned traceroute of 30 hops sends ~465 rows; a ping of 20, 20
TRACEROUTE_DEADLINE_S = 30.0
PING_SLACK_S = 5.0  # beyond count * interval: connect, login and the last echo's wait
REPLY_BUDGET = 4 << 20  # bytes of replies one run may read (rows are ~200 bytes)
GIVE_UP_AFTER = 3  # silent hops in a row after which a traceroute is stopped

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_INTERFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,63}$")
_TIME = re.compile(r"(\d+(?:\.\d+)?)(ms|us|s)")
_TIME_MS = {"s": 1000.0, "ms": 1.0, "us": 0.001}


class ToolError(Exception):
    """The run could not be done or did not finish; the text says why and never carries a secret."""


@dataclass(frozen=True)
class PingReply:
    """One ``/ping`` row: an echo (``seq`` set) with the totals so far."""

    seq: int | None
    host: str | None
    time_ms: float | None  # None: no reply to this echo (``status`` says why)
    status: str | None = None
    size: int | None = None
    ttl: int | None = None
    sent: int | None = None
    received: int | None = None
    loss_pct: float | None = None
    min_ms: float | None = None
    avg_ms: float | None = None
    max_ms: float | None = None


@dataclass(frozen=True)
class Hop:
    """One traceroute hop (``index`` from 1) as the router measured it."""

    index: int
    address: str | None
    last_ms: float | None  # None: no answer from this hop
    loss_pct: float | None = None
    sent: int | None = None
    avg_ms: float | None = None
    best_ms: float | None = None
    worst_ms: float | None = None
    status: str | None = None

    @property
    def silent(self) -> bool:
        return self.last_ms is None


# ---- input ----------------------------------------------------------------------------------


def check_target(target: str) -> str:
    """An IPv4/IPv6 address or a hostname of letters, digits, dots and dashes; else ValueError."""
    text = target.strip() if isinstance(target, str) else ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if text and _HOSTNAME.match(text) and not text.replace(".", "").isdigit():
        return text
    shown = text[:60] if isinstance(target, str) else type(target).__name__
    raise ValueError(f"target {shown!r}: expected an IPv4 or IPv6 address or a host name")


def check_range(value: object, what: str, bounds: tuple[int, int]) -> int:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what}: expected a whole number from {low} to {high}, not {value!r}")
    return value


def _check_interface(name: str) -> str:
    if not _INTERFACE.match(name):
        raise ValueError(f"interface {name[:40]!r}: expected an interface name")
    return name


def _check_address(text: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValueError(f"{what} {text[:40]!r}: expected an IPv4 or IPv6 address") from None


# ---- the commands ---------------------------------------------------------------------------


async def ping(api: ApiTarget, address: str, *, count: int = 5, size: int | None = None,
               src_address: str | None = None, interface: str | None = None, interval_s: float = 1.0,
               connect_timeout_s: float = 5.0, deadline_s: float | None = None,
               max_rows: int = MAX_ROWS) -> AsyncIterator[PingReply]:
    """``/ping`` from the router: each echo row as it arrives (a total deadline of count * interval + 5 s)."""
    words = [f"=address={check_target(address)}", f"=count={check_range(count, 'count', COUNT_RANGE)}",
             f"=interval={round(interval_s * 1000)}ms"]
    if size is not None:
        words.append(f"=size={check_range(size, 'size', SIZE_RANGE)}")
    if src_address:
        words.append(f"=src-address={_check_address(src_address, 'src-address')}")
    if interface:
        words.append(f"=interface={_check_interface(interface)}")
    deadline = deadline_s if deadline_s is not None else count * interval_s + PING_SLACK_S
    stream = _stream(api, "/ping", words, deadline, connect_timeout_s, max_rows)
    async with contextlib.aclosing(stream):
        async for _, row in stream:
            yield _ping_reply(row)


async def traceroute(api: ApiTarget, address: str, *, max_hops: int = 15, timeout_s: float = 1.0,
                     connect_timeout_s: float = 5.0, deadline_s: float = TRACEROUTE_DEADLINE_S,
                     give_up_after: int = GIVE_UP_AFTER, max_rows: int = MAX_ROWS) -> AsyncIterator[Hop]:
    """``/tool/traceroute count=1`` from the router: each hop once, in order, as soon as it is measured.

    After ``give_up_after`` silent hops in a row the run stops (the session is closed, which ends the
    command on the router): past a dead hop every later one stays silent up to ``max-hops``.
    """
    words = [f"=address={check_target(address)}", "=count=1",
             f"=max-hops={check_range(max_hops, 'max-hops', MAX_HOPS_RANGE)}",
             f"=timeout={round(timeout_s * 1000)}ms"]
    emitted = 0
    silent_run = 0
    section: str | None = None
    position = 0
    stream = _stream(api, "/tool/traceroute", words, deadline_s, connect_timeout_s, max_rows)
    async with contextlib.aclosing(stream):  # stopping early closes the session at once
        async for sect, row in stream:
            if sect is None:
                position = emitted  # one row per hop: each row is the next hop
            elif sect != section:
                section, position = sect, 0
            index, position = position, position + 1
            if index < emitted or not _hop_finished(row):
                continue  # a hop already given (the table sent again), or one still waiting for its answer
            if index > emitted:
                raise ToolError(f"traceroute reply skipped hop {emitted + 1} (row {index + 1} came first)")
            hop = _hop(index + 1, row)
            emitted += 1
            yield hop
            silent_run = silent_run + 1 if hop.silent else 0
            if silent_run >= give_up_after or emitted >= max_hops:
                return


# ---- the session ----------------------------------------------------------------------------


async def _stream(api: ApiTarget, command: str, words: list[str], deadline_s: float, connect_timeout_s: float,
                  max_rows: int) -> AsyncIterator[tuple[str | None, dict[str, str]]]:
    """(``.section`` or None, attributes) of each ``!re`` until ``!done``; every wait is inside the deadline."""
    end = time.monotonic() + deadline_s
    where = f"{api.address}:{api.port}"
    stage = "connect"
    session: AsyncApi | None = None

    def left() -> float:
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    try:
        try:
            # The session's own read timeout is the whole deadline: echoes come a second apart, far slower
            # than a poll's replies; connecting gets the poll timeout.
            session = await asyncio.wait_for(
                open_api(api.address, api.port, timeout=left(),
                         ssl_context=_ssl_context(api) if api.tls else None, budget=ReplyBudget(REPLY_BUDGET)),
                min(connect_timeout_s, left()))
            stage = "login"
            await asyncio.wait_for(async_plain(session, api.username, api.password), left())
            stage = command
            await session.protocol.writeSentence(command, *words)
            rows = 0
            while True:
                reply, raw = await asyncio.wait_for(session.protocol.readSentence(), left())
                section, attrs = _attrs(raw)
                if reply == "!re":
                    rows += 1
                    if rows > max_rows:
                        raise ToolError(f"{where} sent more than {max_rows} rows for {command}: stopped")
                    yield section, attrs
                elif reply == "!trap":
                    raise ToolError(f"{command} refused by {where}: {attrs.get('message', 'unknown error')}")
                elif reply == "!done":
                    return
                elif reply != "!empty":
                    raise ToolError(f"bad reply from {where} to {command}: unexpected {reply[:40]!r}")
        except ToolError as exc:
            raise ToolError(_scrub(str(exc), api.password)) from None
        except TimeoutError:
            waiting = {"connect": f"no connection to {where}", "login": f"no login reply from {where}"}.get(
                stage, f"no end of {command} from {where}")
            raise ToolError(f"{waiting} within {deadline_s:g}s: stopped") from None
        except TrapError as exc:  # at login
            raise ToolError(_scrub(f"login as {api.username!r} rejected by {where}: {exc}", api.password)) from None
        except ConnectionRefusedError:
            raise ToolError(f"connection refused by {where} (API service disabled or wrong port?)") from None
        except (ReplyTooLarge, ProtocolError, FatalError, ConnectionClosed, asyncio.IncompleteReadError,
                ssl.SSLError, IndexError, KeyError, TypeError, ValueError, UnicodeError) as exc:
            text = f"bad reply from {where} during {stage}: {type(exc).__name__}: {exc}"
            raise ToolError(_scrub(text, api.password)[:300]) from None
        except OSError as exc:
            raise ToolError(_scrub(f"{where}: {os_error_text(exc)} (during {stage})", api.password)) from None
    finally:
        if session is not None:
            # No goodbye: closing the session ends the command on the router, and a hostile peer gets no wait.
            session.protocol.transport.writer.transport.abort()


def _attrs(words: tuple[str, ...]) -> tuple[str | None, dict[str, str]]:
    section: str | None = None
    row: dict[str, str] = {}
    for word in words:
        if word.startswith("="):
            key, sep, value = word[1:].partition("=")
            if not sep or not key:
                raise ProtocolError(f"attribute word without value: {word[:40]!r}")
            row[key] = value
        elif word.startswith(".section="):
            section = word[len(".section="):]
    return section, row


def _ssl_context(api: ApiTarget) -> ssl.SSLContext:
    if api.tls_verify:
        return ssl.create_default_context(cafile=api.ca_file)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _scrub(text: str, password: str) -> str:
    return text.replace(password, "***") if password else text


# ---- rows -----------------------------------------------------------------------------------


def time_ms(text: str | None) -> float | None:
    """``9ms445us``, ``12ms``, ``1s2ms``, ``0.4ms`` or a bare number of ms (traceroute's avg) -> ms."""
    if not text:
        return None
    try:
        return round(float(text), 3)
    except ValueError:
        pass
    parts = _TIME.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        seconds = parse_ros_duration(text)  # 00:00:01 style
        return None if seconds is None else round(seconds * 1000, 3)
    return round(sum(float(n) * _TIME_MS[u] for n, u in parts), 3)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def _pct(text: str | None) -> float | None:
    try:
        return float(text.rstrip("%")) if text else None
    except ValueError:
        return None


def _ping_reply(row: dict[str, str]) -> PingReply:
    status = row.get("status") or None
    return PingReply(
        seq=_int(row.get("seq")), host=row.get("host") or None,
        time_ms=None if status else time_ms(row.get("time")), status=status,
        size=_int(row.get("size")), ttl=_int(row.get("ttl")), sent=_int(row.get("sent")),
        received=_int(row.get("received")), loss_pct=_pct(row.get("packet-loss")),
        min_ms=time_ms(row.get("min-rtt")), avg_ms=time_ms(row.get("avg-rtt")), max_ms=time_ms(row.get("max-rtt")),
    )


def _hop_finished(row: dict[str, str]) -> bool:
    """A hop row is final once a probe went out; before that RouterOS prints it with ``sent=0``."""
    sent = _int(row.get("sent"))
    return sent is None or sent > 0


def _hop(index: int, row: dict[str, str]) -> Hop:
    status = row.get("status") or None
    last = row.get("last") or ""
    answered = last not in ("", "timeout") and (status is None or "timeout" not in status)
    return Hop(
        index=index, address=row.get("address") or None, last_ms=time_ms(last) if answered else None,
        loss_pct=_pct(row.get("loss")), sent=_int(row.get("sent")), avg_ms=time_ms(row.get("avg")),
        best_ms=time_ms(row.get("best")), worst_ms=time_ms(row.get("worst")),
        status=status or (None if answered else "timeout"),
    )
