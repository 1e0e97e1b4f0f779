"""Alerts from other systems over HTTP ([inbound], docs/inbound.md): ``POST /inbound/SOURCE``.

Served by the standard library's threading HTTP server on its own thread, bound to 127.0.0.1 unless
``[inbound].address`` says otherwise. Each request is checked in this order, and a refused one stores
nothing and costs the engine nothing:

1. the method (405), the source named in the path (404), a JSON content type (415), a Content-Length
   (411) no larger than ``max_body_bytes`` (413, before reading anything), the body read within 10 s;
2. ``Authorization: Bearer KEY``, the source's API key (401);
3. ``X-Ispvm-Timestamp`` (Unix seconds) within ``max_age_s`` of this host's clock (401), and
   ``X-Ispvm-Signature: sha256=HEX``, the HMAC-SHA256 under the source's HMAC key of
   ``TIMESTAMP + "." + body`` (401); both compared in constant time;
4. ``X-Ispvm-Delivery``, the request's unique id (400 when missing);
5. the source's rate: a token bucket of ``rate_per_s`` with ``burst`` (429 with Retry-After);
6. the body, read as the source's kind (400 naming the field);
7. the delivery id recorded in the database, in the engine: one seen before is a replay (409).

Then the engine takes the alerts through its rules and correlation (``Engine.accept_inbound``) and the
sender gets 202. At most 16 requests are handled at once (503 beyond: a flood cannot pile up threads).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ispvm_tui.engine.inbound_formats import InboundError, Incoming, read

log = logging.getLogger(__name__)

MAX_AT_ONCE = 16
READ_TIMEOUT_S = 10.0
ENGINE_TIMEOUT_S = 15.0
_DELIVERY = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class Replayed(Exception):
    """That delivery id was accepted before."""


@dataclass(frozen=True)
class SourceKeys:
    kind: str
    api_key: str
    hmac_key: str
    rate_per_s: float
    burst: int


class Bucket:
    """Token bucket: ``rate`` a second, up to ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0 when a token was taken; else the seconds until one is there."""
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate


Submit = Callable[[str, list[Incoming], str], "Future[dict[str, Any]]"]


class InboundServer:
    def __init__(self, address: str, port: int, sources: dict[str, SourceKeys], submit: Submit, *,
                 max_body_bytes: int, max_alerts: int, max_age_s: float) -> None:
        self.sources = sources
        self.buckets = {name: Bucket(k.rate_per_s, k.burst) for name, k in sources.items()}
        self.submit = submit
        self.max_body_bytes, self.max_alerts, self.max_age_s = max_body_bytes, max_alerts, max_age_s
        self.slots = threading.BoundedSemaphore(MAX_AT_ONCE)
        self.answered: dict[int, int] = {}  # status -> count (tests, metrics)
        self._counts_lock = threading.Lock()
        self.server = ThreadingHTTPServer((address, port), _handler(self))
        self.server.daemon_threads = True
        self.address, self.port = address, self.server.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="ispvm-inbound", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def count(self, status: int) -> None:
        with self._counts_lock:
            self.answered[status] = self.answered.get(status, 0) + 1

    def check(self, name: str, headers: Any, body: bytes) -> tuple[int, str, dict[str, str]] | tuple[
            list[Incoming], str]:
        """Steps 2-6: (status, message, extra headers) when refused, else (alerts, delivery id)."""
        keys = self.sources[name]
        given = headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {keys.api_key}".encode()):
            return 401, "bad or missing API key (Authorization: Bearer KEY)", {}
        stamp = headers.get("X-Ispvm-Timestamp", "")
        try:
            sent_at = float(stamp)
        except ValueError:
            return 401, "X-Ispvm-Timestamp: Unix seconds expected", {}
        if abs(time.time() - sent_at) > self.max_age_s:
            return 401, f"X-Ispvm-Timestamp is more than {self.max_age_s:.0f} s from this host's clock", {}
        want = hmac.new(keys.hmac_key.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(headers.get("X-Ispvm-Signature", "").encode(), f"sha256={want}".encode()):
            return 401, "bad signature (X-Ispvm-Signature: sha256=HMAC-SHA256 of TIMESTAMP.BODY)", {}
        delivery = headers.get("X-Ispvm-Delivery", "")
        if not _DELIVERY.match(delivery):
            return 400, "X-Ispvm-Delivery: a unique id per request, 1-128 of A-Z a-z 0-9 . _ : -", {}
        wait = self.buckets[name].take()
        if wait:
            return 429, "too many requests from this source", {"Retry-After": str(max(1, round(wait)))}
        try:
            alerts = read(keys.kind, body, self.max_alerts)
        except InboundError as exc:
            return 400, str(exc), {}
        return alerts, delivery


def _handler(owner: InboundServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ispvm-inbound"
        sys_version = ""
        timeout = READ_TIMEOUT_S  # per socket operation: a sender that stalls mid-body is cut off

        def log_message(self, fmt: str, *args: Any) -> None:  # no headers, no keys: one line of what happened
            log.debug("inbound %s: %s", self.client_address[0], fmt % args)

        def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            owner.count(status)
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def _refuse(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
            if status >= 400:
                self.close_connection = True
            self._answer(status, {"error": message}, headers)

        def do_GET(self) -> None:  # the standard library's names
            self._refuse(405, "POST alerts to /inbound/SOURCE", {"Allow": "POST"})

        do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

        def do_POST(self) -> None:
            if not owner.slots.acquire(blocking=False):
                self._refuse(503, "busy: too many requests at once", {"Retry-After": "1"})
                return
            try:
                self._post()
            finally:
                owner.slots.release()

        def _post(self) -> None:
            prefix, _, name = self.path.partition("/inbound/")
            if prefix or name not in owner.sources:
                self._refuse(404, "no such source: POST to /inbound/SOURCE, a [[inbound.sources]] name")
                return
            if self.headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json":
                self._refuse(415, "Content-Type: application/json expected")
                return
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self._refuse(411, "Content-Length required")
                return
            if int(length) > owner.max_body_bytes:
                self._refuse(413, f"body over {owner.max_body_bytes} bytes")
                return
            body = self.rfile.read(int(length))
            if len(body) != int(length):
                self._refuse(400, "body shorter than its Content-Length")
                return
            checked = owner.check(name, self.headers, body)
            if isinstance(checked[0], int):
                status, message, extra = checked  # type: ignore[misc]
                log.info("inbound %s from %s refused: %d %s", name, self.client_address[0], status, message)
                self._refuse(status, message, extra)
                return
            alerts, delivery = checked  # type: ignore[misc]
            try:
                result = owner.submit(name, alerts, delivery).result(ENGINE_TIMEOUT_S)
            except Replayed:
                self._refuse(409, f"delivery {delivery} was accepted before: not taken again")
                return
            except Exception as exc:  # the engine could not take it now: the sender retries later
                log.error("inbound %s: not taken: %s", name, exc)
                self._refuse(503, "the engine could not take it now: retry", {"Retry-After": "5"})
                return
            self._answer(202, {"accepted": len(alerts), "delivery": delivery, **result})

    return Handler
