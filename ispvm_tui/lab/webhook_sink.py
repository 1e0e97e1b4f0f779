"""A real HTTP webhook receiver for the lab, demos and tests.

It listens on a loopback port in a background thread, records every request
(including the ones it answers with errors), checks ``X-ISPVM-Signature``
when given the shared secret, and can be scripted to fail or to answer
slowly, so the delivery code is exercised against a genuine socket rather
than a mocked transport.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ispvm_tui.engine.webhooks import verify

HOOK_PATH = "/hook"
MAX_BODY_BYTES = 1 << 20  # a webhook body is a few KiB; refuse anything absurd

Scripted = int | tuple[int, dict[str, str]]


@dataclass(frozen=True)
class ReceivedWebhook:
    headers: dict[str, str]  # names lower-cased: HTTP header names are case-insensitive
    body: bytes
    json: dict[str, Any]  # {} when the body is not a JSON object
    signature_ok: bool | None  # None when the sink has no secret
    received_at: float
    method: str = "POST"
    path: str = HOOK_PATH
    response_status: int = 200  # what the sink answered

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a delayed handler must never block interpreter exit
    sink: WebhookSink

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) closes the socket under a slow
        # handler; that is the point of the test, not an error worth a trace.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        self.server.sink._handle(self)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and the console own stderr


class _BodyError(ValueError):
    def __init__(self, status: int) -> None:
        super().__init__(f"unreadable body (HTTP {status})")
        self.status = status


def _read_chunked(rfile: Any, limit: int) -> bytes:
    body = bytearray()
    while True:
        try:
            size = int(rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
        except ValueError:
            raise _BodyError(400) from None
        if size == 0:
            while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(body)
        if len(body) + size > limit:
            raise _BodyError(413)
        body += rfile.read(size)
        rfile.readline(1024)  # CRLF after each chunk


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        return _read_chunked(handler.rfile, MAX_BODY_BYTES)
    try:
        length = int(handler.headers.get("Content-Length") or 0)
    except ValueError:
        raise _BodyError(400) from None
    if length < 0:
        raise _BodyError(400)
    if length > MAX_BODY_BYTES:
        raise _BodyError(413)
    return handler.rfile.read(length) if length else b""


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


class WebhookSink:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, secret: str | None = None) -> None:
        self.host = host
        self.port = port
        self.secret = secret
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._received: list[ReceivedWebhook] = []
        self._script: deque[Scripted] = deque()
        self._delay = 0.0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.sink = self
        self.port = server.server_address[1]  # the real port when 0 was asked for
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="webhook-sink", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening; the port then refuses connections. ``url`` stays valid."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # cut short any scripted delay
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> WebhookSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("sink not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{HOOK_PATH}"

    # --- scripting and inspection -------------------------------------------

    def received(self) -> list[ReceivedWebhook]:
        with self._lock:
            return list(self._received)

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    def set_responses(self, statuses: list[Scripted]) -> None:
        """Answer the next requests with these statuses, then 200 again."""
        with self._lock:
            self._script = deque(statuses)

    def set_delay(self, seconds: float) -> None:
        """Wait this long before answering each request (a slow receiver)."""
        with self._lock:
            self._delay = max(0.0, seconds)

    def wait_for(self, predicate: Callable[[list[ReceivedWebhook]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self._received)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    # --- request handling (server threads) ----------------------------------

    def _next_response(self, method: str, path: str) -> tuple[int, dict[str, str], float]:
        with self._lock:
            delay = self._delay
            if method != "POST":
                return 405, {"Allow": "POST"}, delay
            if path != HOOK_PATH:
                return 404, {}, delay
            scripted = self._script.popleft() if self._script else 200
        if isinstance(scripted, tuple):
            return scripted[0], dict(scripted[1]), delay
        return scripted, {}, delay

    def _signature_ok(self, headers: dict[str, str], body: bytes) -> bool | None:
        if self.secret is None:
            return None
        header = headers.get("x-ispvm-signature")
        return header is not None and verify(body, self.secret, header)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        received_at = time.time()
        body_error: int | None = None
        try:
            body = _read_body(handler)
        except _BodyError as exc:
            body, body_error = b"", exc.status
        headers: dict[str, str] = {}
        for name, value in handler.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        path = handler.path.split("?", 1)[0]
        status, extra, delay = self._next_response(handler.command, path)
        if body_error is not None:
            status, extra = body_error, {}
        record = ReceivedWebhook(
            headers=headers,
            body=body,
            json=_parse_json(body),
            signature_ok=self._signature_ok(headers, body),
            received_at=received_at,
            method=handler.command,
            path=path,
            response_status=status,
        )
        with self._changed:
            self._received.append(record)
            self._changed.notify_all()
        if delay:
            self._stopping.wait(delay)
        self._respond(handler, status, extra)

    @staticmethod
    def _respond(handler: BaseHTTPRequestHandler, status: int, extra: dict[str, str]) -> None:
        payload = json.dumps({"ok": 200 <= status < 300, "status": status}).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            # One request per connection: a stopped sink must refuse at once,
            # not keep serving a pooled keep-alive connection.
            handler.send_header("Connection", "close")
            for name, value in extra.items():
                handler.send_header(name, value)
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout); nothing left to tell it
        handler.close_connection = True
