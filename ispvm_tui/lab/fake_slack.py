"""A local Slack incoming-webhook server for the lab and the tests.

One webhook path ``/services/T.../B.../<secret>`` (any other path: 404 ``no_service``). Replies are
plain text like Slack's: ``200 ok``, ``400 invalid_payload`` (not JSON), ``400 no_text`` (neither text
nor blocks), ``400 invalid_blocks`` (a block Slack would refuse: unknown type, a header over 150
characters, a section over 3000, a button without text or URL, more than 50 blocks). It records
every request and every posted message, and can be scripted to fail (any status, text and headers),
to answer slowly, or to post a message and then lose the reply.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

BLOCK_TYPES = {"header", "section", "actions", "context", "divider", "image"}


@dataclass(frozen=True)
class Fail:
    status: int = 500
    text: str = "internal_error"
    headers: dict[str, str] = field(default_factory=dict)
    lose: Literal["drop", "stall"] | None = None  # post the message, then drop the connection or never answer


@dataclass(frozen=True)
class Posted:
    path: str
    json: dict[str, Any]
    status: int  # what the server answered (0: no answer)
    at: float


def _block_error(block: Any) -> str | None:
    if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
        return "unknown block type"
    kind = block["type"]
    if kind == "header":
        text = block.get("text") or {}
        if text.get("type") != "plain_text" or not 0 < len(text.get("text", "")) <= 150:
            return "header text must be plain_text of 1..150 characters"
    if kind == "section":
        text, fields = block.get("text"), block.get("fields")
        if text is None and not fields:
            return "section needs text or fields"
        if text is not None and (text.get("type") not in ("mrkdwn", "plain_text")
                                 or not 0 < len(text.get("text", "")) <= 3000):
            return "section text must be 1..3000 characters"
        if fields and (len(fields) > 10 or any(not 0 < len(f.get("text", "")) <= 2000 for f in fields)):
            return "section fields: at most 10, each 1..2000 characters"
    if kind == "actions":
        for element in block.get("elements") or [None]:
            if not isinstance(element, dict) or element.get("type") != "button":
                return "actions: unsupported element"
            label = (element.get("text") or {}).get("text", "")
            if not 0 < len(label) <= 75 or ("url" in element and not 0 < len(element["url"]) <= 3000):
                return "button needs text of 1..75 characters and a URL of at most 3000"
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeSlack

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_PUT = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeSlack:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        team, bot = secrets.token_hex(4).upper(), secrets.token_hex(4).upper()
        self.path = f"/services/T{team}/B{bot}/{secrets.token_urlsafe(18)}"
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[Posted] = []
        self._messages: list[dict[str, Any]] = []
        self._script: deque[Fail] = deque()
        self._delay = 0.0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.fake = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-slack", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSlack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The webhook URL: the secret a Slack target is configured with."""
        if not self.port:
            raise RuntimeError("fake Slack not started")
        return f"http://{self.host}:{self.port}{self.path}"

    # --- scripting and inspection -------------------------------------------

    def fail_next(self, *answers: Fail | tuple[int, str]) -> None:
        with self._lock:
            self._script.extend(a if isinstance(a, Fail) else Fail(a[0], a[1]) for a in answers)

    def set_delay(self, seconds: float) -> None:
        with self._lock:
            self._delay = max(0.0, seconds)

    def messages(self) -> list[dict[str, Any]]:
        """Bodies of the messages posted to the channel."""
        with self._lock:
            return list(self._messages)

    def requests(self) -> list[Posted]:
        with self._lock:
            return list(self._requests)

    def wait_for(self, predicate: Callable[[FakeSlack], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.1))
            return True

    # --- the webhook -----------------------------------------------------------

    def _answer(self, method: str, path: str, raw: bytes) -> tuple[int, str, dict[str, str], str | None, Any]:
        if method != "POST" or path != self.path:
            return 404, "no_service", {}, None, None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return 400, "invalid_payload", {}, None, None
        if not isinstance(body, dict):
            return 400, "invalid_payload", {}, None, None
        fail = self._script.popleft() if self._script else None
        if fail is not None and fail.lose is None:
            return fail.status, fail.text, dict(fail.headers), None, body
        if not body.get("text") and not body.get("blocks"):
            return 400, "no_text", {}, None, body
        chunks = body.get("blocks") or []
        if not isinstance(chunks, list) or len(chunks) > 50 or any(_block_error(b) for b in chunks):
            return 400, "invalid_blocks", {}, None, body
        self._messages.append(body)
        return 200, "ok", {}, fail.lose if fail is not None else None, body

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        at = time.monotonic()
        try:
            length = int(handler.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        raw = handler.rfile.read(length) if 0 < length <= 1 << 20 else b""
        path = handler.path.split("?", 1)[0]
        with self._changed:
            delay = self._delay
            status, text, headers, lose, body = self._answer(handler.command, path, raw)
            self._requests.append(Posted(path, body if isinstance(body, dict) else {}, 0 if lose else status, at))
            self._changed.notify_all()
        if lose == "stall":
            self._stopping.wait(3600)
            return
        if lose == "drop":
            handler.close_connection = True
            return
        if delay:
            self._stopping.wait(delay)
        payload = text.encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "text/plain; charset=utf-8")
            handler.send_header("Content-Length", str(len(payload)))
            handler.send_header("Connection", "close")
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        handler.close_connection = True
