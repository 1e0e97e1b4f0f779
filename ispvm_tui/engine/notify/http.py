"""One HTTP call of a ticket or chat target, classified the way the outbox needs it.

Jira, ServiceNow, Telegram and Slack differ in paths and bodies, not in what a
failure means: a transport error, a timeout, 408/425/429 and 5xx are worth a
retry (``Retry-After`` honoured, bounded), other 4xx are permanent. Every
error text is scrubbed of registered secrets (tokens live in URLs and
headers) before it can reach the delivery log, the console or a log line.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from ispvm_tui import redact
from ispvm_tui.clock import Clock, SystemClock
from ispvm_tui.engine.webhooks import RETRY_AFTER_MAX_S, RETRYABLE_4XX, USER_AGENT, AttemptOutcome, parse_retry_after

MAX_REPLY_BYTES = 1 << 20  # a ticket API's answer is a few KiB; a bigger one is not read to its end
ERROR_SNIPPET_CHARS = 300


class CallFailed(Exception):
    """The far side gave no usable answer; ``status`` says whether the outbox should try again."""

    def __init__(self, status: Literal["retry", "permanent"], error: str, *, http_status: int | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = redact.scrub(error)
        self.http_status = http_status
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: httpx.Headers
    text: str
    data: Any = None  # the parsed JSON body, when there was one


def classify(status: int) -> Literal["delivered", "retry", "permanent"]:
    if 200 <= status < 300:
        return "delivered"
    if status in RETRYABLE_4XX or 500 <= status < 600:
        return "retry"
    return "permanent"


def retry_after(headers: httpx.Headers, now: float, *, cap_s: float = RETRY_AFTER_MAX_S) -> float | None:
    value = parse_retry_after(headers.get("Retry-After"), now)
    return None if value is None else min(value, cap_s)


async def call(client: httpx.AsyncClient, method: str, url: str, *, timeout_s: float,
               headers: dict[str, str] | None = None, body: Any = None, what: str = "",
               clock: Clock | None = None, expect: tuple[int, ...] = ()) -> Reply:
    """Send one request with an overall deadline; return the reply for 2xx (or a status in ``expect``),
    raise ``CallFailed`` for anything else. ``what`` names the step in errors ("create issue")."""
    clock = clock or SystemClock()
    sent = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
    content = None
    if body is not None:
        content = json.dumps(body, ensure_ascii=False).encode()
        sent["Content-Type"] = "application/json"
    prefix = f"{what}: " if what else ""
    try:
        async with asyncio.timeout(timeout_s):  # bounds a far side that trickles bytes
            async with client.stream(method, url, content=content, headers=sent, timeout=timeout_s,
                                     follow_redirects=False) as response:
                raw = bytearray()
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) > MAX_REPLY_BYTES:
                        break
    except (TimeoutError, httpx.TimeoutException):
        raise CallFailed("retry", f"{prefix}timeout after {timeout_s:g}s") from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise CallFailed("permanent", f"{prefix}invalid URL: {type(exc).__name__}") from None
    except (httpx.TransportError, OSError) as exc:
        # The exception text may quote the URL, and a Telegram URL holds the bot token: scrubbed below.
        raise CallFailed("retry", f"{prefix}{type(exc).__name__}: {str(exc) or 'connection failed'}") from None
    text = raw.decode("utf-8", errors="replace")
    data = None
    if text and "json" in response.headers.get("Content-Type", ""):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
    reply = Reply(response.status_code, response.headers, text, data)
    outcome = classify(response.status_code)
    if outcome == "delivered" or response.status_code in expect:
        return reply
    snippet = " ".join(text[:ERROR_SNIPPET_CHARS].split())
    error = f"{prefix}HTTP {response.status_code}" + (f": {snippet}" if snippet else "")
    after = retry_after(response.headers, clock.now()) if outcome == "retry" else None
    raise CallFailed(outcome, error, http_status=response.status_code, retry_after_s=after)


@dataclass
class AttemptTimer:
    """Times one delivery attempt (which may be several calls) and turns its end into an outcome."""

    delivery_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    def outcome(self, status: Literal["delivered", "retry", "permanent"], *, http_status: int | None = None,
                error: str | None = None, retry_after_s: float | None = None) -> AttemptOutcome:
        return AttemptOutcome(self.delivery_id, status, http_status, None if error is None else redact.scrub(error),
                              retry_after_s, time.monotonic() - self.started)

    def failed(self, exc: CallFailed) -> AttemptOutcome:
        return self.outcome(exc.status, http_status=exc.http_status, error=exc.error, retry_after_s=exc.retry_after_s)
