"""A local Telegram Bot API server for the lab and the tests (sendMessage and getMe).

It listens on a loopback port in a background thread and answers the way api.telegram.org does:
``/bot<TOKEN>/<method>``, a wrong token is 401 Unauthorized, an unknown chat 400 "chat not found",
an error's HTTP status equals its ``error_code``, 429 carries ``parameters.retry_after``. It checks
the HTML the way Telegram parses it (allowed tags, balanced, entities) and the 4096-character limit,
optionally enforces the per-chat rate and the per-group limit (20 a minute by default, smaller
for a test), records every request and every message it posted, and can
be scripted to fail, to answer slowly, or to post a message and then lose the reply.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

MAX_TEXT = 4096
ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "span",
                "tg-spoiler", "tg-emoji", "blockquote"}
NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
DESCRIPTIONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden: bot was blocked by the user",
                404: "Not Found", 409: "Conflict", 429: "Too Many Requests: retry after {n}",
                500: "Internal Server Error", 502: "Bad Gateway"}


@dataclass(frozen=True)
class Fail:
    """One scripted answer. ``lose``: post the message, then ``drop`` the connection or ``stall`` past any timeout."""

    status: int = 500
    description: str | None = None
    retry_after: int | None = None
    lose: Literal["drop", "stall"] | None = None


@dataclass(frozen=True)
class Request:
    method: str  # the Bot API method (sendMessage, getMe, ...), "" when the path was not /bot<token>/<method>
    token_ok: bool
    http_method: str
    json: dict[str, Any]
    status: int  # what the server answered (0: no answer, the connection was dropped)
    at: float  # monotonic time the request was read


@dataclass(frozen=True)
class Message:
    message_id: int
    chat_id: int | str
    text: str  # as sent (HTML source when parse_mode is HTML)
    visible: str  # the text a person sees
    parse_mode: str | None
    disable_notification: bool
    message_thread_id: int | None
    reply_to: int | None
    body: dict[str, Any] = field(default_factory=dict)


class _EntityError(ValueError):
    pass


class _TelegramHTML(HTMLParser):
    """Parses a message the way Telegram does, or raises _EntityError with its kind of description."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.visible: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            raise _EntityError(f"can't parse entities: unsupported start tag \"{tag}\"")
        if tag == "a" and not any(k == "href" and v for k, v in attrs):
            raise _EntityError("can't parse entities: a link without href")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            raise _EntityError(f"can't parse entities: unmatched end tag \"{tag}\"")
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        for ch in "<>&":
            if ch in data:
                raise _EntityError(f"can't parse entities: unescaped \"{ch}\"")
        self.visible.append(data)

    def handle_entityref(self, name: str) -> None:
        if name not in NAMED_ENTITIES:
            raise _EntityError(f"can't parse entities: unsupported entity \"&{name};\"")
        self.visible.append(NAMED_ENTITIES[name])

    def handle_charref(self, name: str) -> None:
        self.visible.append(html.unescape(f"&#{name};"))

    def close(self) -> None:
        super().close()
        if self.rawdata:
            raise _EntityError("can't parse entities: unfinished tag or entity")
        if self.stack:
            raise _EntityError("can't parse entities: can't find end tag corresponding to start tag "
                               f"\"{self.stack[-1]}\"")


def parse_html(text: str) -> str:
    """The visible text of a Telegram HTML message; _EntityError when Telegram would refuse it."""
    parser = _TelegramHTML()
    parser.feed(text)
    parser.close()
    return "".join(parser.visible)


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeTelegram

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Failed(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters


class FakeTelegram:
    def __init__(self, token: str, *, chats: tuple[int | str, ...] = (-1001234567890,), username: str = "ispvm_noc_bot",
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.token = token
        self.chats = set(chats)
        self.username = username
        self.host = host
        self.port = port
        self._lock = threading.RLock()  # wait_for predicates read through the public accessors
        self._changed = threading.Condition(self._lock)
        self._requests: list[Request] = []
        self._messages: list[Message] = []
        self._script: deque[Fail] = deque()
        self._delay = 0.0
        self._rate_s: float | None = None  # per-chat minimum interval between messages, when enforced
        self._last_at: dict[int | str, float] = {}
        self._group_limit: tuple[int, float] | None = None  # (messages, window_s) per group chat, when enforced
        self._group_sent: dict[int | str, deque[float]] = {}  # arrival times of the messages each group took
        self._ids = itertools.count(101)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.fake = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-telegram", daemon=True)
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

    def __enter__(self) -> FakeTelegram:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        if not self.port:
            raise RuntimeError("fake Telegram not started")
        return f"http://{self.host}:{self.port}"

    # --- scripting and inspection -------------------------------------------

    def fail_next(self, *answers: Fail | int) -> None:
        """Answer the next sendMessage/getMe calls so, then normally again."""
        with self._lock:
            self._script.extend(a if isinstance(a, Fail) else Fail(a) for a in answers)

    def set_delay(self, seconds: float) -> None:
        with self._lock:
            self._delay = max(0.0, seconds)

    def enforce_rate(self, min_interval_s: float | None) -> None:
        """Refuse (429, retry_after 1) a message to a chat sooner than this after the last one."""
        with self._lock:
            self._rate_s = min_interval_s

    def enforce_group_limit(self, messages: int | None = 20, window_s: float = 60.0) -> None:
        """Refuse (429, retry_after until the oldest leaves the window) a message to a group (a negative id or
        an @username) that already took ``messages`` within the last ``window_s``; None stops enforcing."""
        with self._lock:
            self._group_limit = (messages, window_s) if messages else None

    def group_room(self, chat_id: int | str, at: float | None = None) -> int | None:
        """How many more messages the group would take now (None: not limited)."""
        with self._lock:
            return self._room(chat_id, time.monotonic() if at is None else at)

    def _room(self, chat_id: int | str, at: float) -> int | None:
        if self._group_limit is None or str(chat_id).strip().isdigit():
            return None
        limit, window = self._group_limit
        sent = self._group_sent.setdefault(chat_id, deque())
        while sent and at - sent[0] >= window:
            sent.popleft()
        return max(0, limit - len(sent))

    def messages(self, chat_id: int | str | None = None) -> list[Message]:
        with self._lock:
            return [m for m in self._messages if chat_id is None or m.chat_id == chat_id]

    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def wait_for(self, predicate: Callable[[FakeTelegram], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.1))
            return True

    # --- the Bot API -----------------------------------------------------------

    def _send_message(self, body: dict[str, Any], at: float) -> dict[str, Any]:
        chat = body.get("chat_id")
        if chat not in self.chats:
            raise _Failed(400, "Bad Request: chat not found")
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _Failed(400, "Bad Request: message text is empty")
        mode = body.get("parse_mode")
        visible = text
        if mode == "HTML":
            try:
                visible = parse_html(text)
            except _EntityError as exc:
                raise _Failed(400, f"Bad Request: {exc}") from None
        elif mode is not None:
            raise _Failed(400, f"Bad Request: unsupported parse_mode {mode!r} in this fake")
        if units(visible) > MAX_TEXT:
            raise _Failed(400, "Bad Request: message is too long")
        reply = body.get("reply_parameters") or {}
        reply_to = reply.get("message_id") if isinstance(reply, dict) else None
        if reply_to is not None and not reply.get("allow_sending_without_reply") and not any(
                m.message_id == reply_to and m.chat_id == chat for m in self._messages):
            raise _Failed(400, "Bad Request: message to be replied not found")
        if self._rate_s is not None:
            last = self._last_at.get(chat)
            if last is not None and at - last < self._rate_s:
                raise _Failed(429, "Too Many Requests: retry after 1", {"retry_after": 1})
        room = self._room(chat, at)
        if room == 0:
            assert self._group_limit is not None
            wait = max(1, math.ceil(self._group_sent[chat][0] + self._group_limit[1] - at))
            raise _Failed(429, f"Too Many Requests: retry after {wait}", {"retry_after": wait})
        if room is not None:
            self._group_sent[chat].append(at)
        self._last_at[chat] = at
        message = Message(next(self._ids), chat, text, visible, mode, bool(body.get("disable_notification")),
                          body.get("message_thread_id"), reply_to, body)
        self._messages.append(message)
        return {"message_id": message.message_id, "date": int(time.time()),
                "chat": {"id": chat if isinstance(chat, int) else -1009999, "type": "supergroup"}, "text": visible}

    def _dispatch(self, method: str, body: dict[str, Any], at: float) -> tuple[int, dict[str, Any], str | None]:
        """(status, reply, lose) for one well-addressed request; runs under the lock."""
        fail = self._script.popleft() if self._script and method in ("sendMessage", "getMe") else None
        if fail is not None and fail.lose is None:
            description = fail.description or DESCRIPTIONS.get(fail.status, "Error").format(n=fail.retry_after or 1)
            reply: dict[str, Any] = {"ok": False, "error_code": fail.status, "description": description}
            if fail.status == 429 or fail.retry_after is not None:
                reply["parameters"] = {"retry_after": fail.retry_after if fail.retry_after is not None else 1}
            return fail.status, reply, None
        try:
            if method == "getMe":
                result: Any = {"id": 7000001, "is_bot": True, "first_name": "ISPVM", "username": self.username}
            elif method == "sendMessage":
                result = self._send_message(body, at)
            else:
                raise _Failed(404, "Not Found")
        except _Failed as exc:
            reply = {"ok": False, "error_code": exc.status, "description": exc.description}
            if exc.parameters:
                reply["parameters"] = exc.parameters
            return exc.status, reply, None
        return 200, {"ok": True, "result": result}, fail.lose if fail is not None else None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        at = time.monotonic()
        try:
            length = int(handler.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        raw = handler.rfile.read(length) if 0 < length <= 1 << 20 else b""
        path = handler.path.split("?", 1)[0]
        parts = path.split("/")
        method, token_ok = "", False
        if len(parts) == 3 and parts[0] == "" and parts[1].startswith("bot"):
            method, token_ok = parts[2], parts[1][3:] == self.token
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        with self._changed:
            delay = self._delay
            lose: str | None = None
            if not method:
                status, reply = 404, {"ok": False, "error_code": 404, "description": "Not Found"}
            elif not token_ok:
                status, reply = 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            elif not isinstance(body, dict):
                status, reply = 400, {"ok": False, "error_code": 400,
                                      "description": "Bad Request: can't parse JSON object"}
            else:
                status, reply, lose = self._dispatch(method, body, at)
            self._requests.append(Request(method, token_ok, handler.command,
                                          body if isinstance(body, dict) else {}, 0 if lose else status, at))
            self._changed.notify_all()
        if lose == "stall":
            self._stopping.wait(3600)
            return
        if lose == "drop":
            handler.close_connection = True
            return
        if delay:
            self._stopping.wait(delay)
        payload = json.dumps(reply).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.send_header("Connection", "close")
            if status == 429:
                handler.send_header("Retry-After", str(reply.get("parameters", {}).get("retry_after", 1)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        handler.close_connection = True
