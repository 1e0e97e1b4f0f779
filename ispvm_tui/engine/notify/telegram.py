"""Telegram (kind ``telegram``): one chat message per incident event, one reply thread per incident.

The first message delivered for an incident is its thread root: its ``message_id`` is kept through
``Refs`` and every later event of the incident replies to it (``reply_parameters``, sent even if
someone deleted the root), so an incident reads as one thread on a phone, across restarts.

Wire: ``POST {api_url}/bot<TOKEN>/sendMessage`` with JSON, HTML parse mode. Replies carry
``{"ok": ...}``; an error's HTTP status equals its ``error_code`` and ``description`` says why.
429 carries ``parameters.retry_after``: that attempt is retried after it, and until then no other
event is sent to the chat (Telegram would refuse it and may extend the hold).

Pace: Telegram allows about one message a second per chat, and 20 a minute per group. Sends to the
chat go one at a time, at least ``min_interval_s`` apart, and to a group, supergroup or channel
(any chat but a private one, whose id is positive) at most ``group_max`` in any ``group_window_s``:
a sliding window over the ends of the last sends, so an outage storm queues here instead of
drawing 429s. Both are real (monotonic) time, whatever clock the engine runs on, and measured from
the end of each send, so no two sends can arrive at Telegram closer than that. A send waiting for
its turn holds only this target's queue for this chat: other targets, and the outbox's other work,
go on. The window lives in memory: a restarted process starts with an empty one, and should the
group's budget still be spent, Telegram's 429 is honoured as below.

Sound: ``disable_notification`` is set for severities in ``quiet_severities`` and for
updates and acknowledgements of incidents that are not critical: an opened or resolved incident
(and anything about a critical one) buzzes the phone, routine progress does not.

Idempotency: Telegram has no idempotency key. When a reply is lost after Telegram posted the
message, the retry posts it again: a duplicate line in the chat, accepted for chat. A thread root
is stored as soon as its reply arrives, and a root is only ever sent when none is stored, so a
retry or a restart never starts a second thread for an incident once the first one was recorded.
An incident whose first event here is its close posts nothing (nobody in the chat heard of it).

The token is part of every URL: it is registered with ``redact`` and the URL is never put in an
error, an exception or ``repr``; the HTTP libraries' log records are scrubbed where they are made.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ispvm_tui import redact
from ispvm_tui.clock import Clock, SystemClock
from ispvm_tui.config import TelegramConfig
from ispvm_tui.engine.notify import http, render
from ispvm_tui.engine.notify.http import AttemptTimer, CallFailed
from ispvm_tui.engine.notify.logguard import guard_http_loggers
from ispvm_tui.engine.targets import Notice, ProbeFailed, Refs
from ispvm_tui.engine.webhooks import RETRY_AFTER_MAX_S, AttemptOutcome

log = logging.getLogger(__name__)

MAX_TEXT = 4096  # Telegram's limit for one message (UTF-16 code units); the HTML source is kept within it
MIN_INTERVAL_S = 1.0  # between two sends to one chat
GROUP_MAX = 20  # sends to one group ...
GROUP_WINDOW_S = 60.0  # ... in any window this long
HEADLINE_CHARS = 300
LINE_CHARS = 400
SECTION_LINES = 5
CUT_MARK = "…"
LINK_TEXT = "Open incident"
# Every status is handed back by http.call so Telegram's own description can be put in the error.
_ALL_ERRORS = tuple(range(300, 600))


def units(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP is two)."""
    return len(text.encode("utf-16-le")) // 2


def is_group_chat(chat_id: int | str) -> bool:
    """Groups, supergroups and channels have negative ids (or an @username); a private chat's id is positive."""
    return not str(chat_id).strip().isdigit()


class ChatPace:
    """When the next send to one chat may start: ``min_interval_s`` after the last one ended and, with a
    ``window_max``, no sooner than ``window_s`` after the send ``window_max`` sends ago ended."""

    def __init__(self, min_interval_s: float, window_max: int | None = None, window_s: float = 0.0) -> None:
        self.min_interval_s = max(0.0, min_interval_s)
        self.window_max = window_max if window_max and window_max > 0 else None
        self.window_s = max(0.0, window_s)
        self._ends: deque[float] = deque(maxlen=self.window_max or 1)

    def wait_s(self, now: float) -> float:
        if not self._ends:
            return 0.0
        wait = self._ends[-1] + self.min_interval_s - now
        if self.window_max is not None and len(self._ends) >= self.window_max:
            wait = max(wait, self._ends[0] + self.window_s - now)
        return max(0.0, wait)

    def sent(self, now: float) -> None:
        """A send ended (whatever its outcome: a refused or lost one may still have counted at Telegram)."""
        self._ends.append(now)


def esc(text: str) -> str:
    return html.escape(text, quote=False)


@dataclass(frozen=True, slots=True)
class _Line:
    """One line of the message: an optional bold label, then text; rendered escaped."""

    label: str = ""
    text: str = ""
    bold: bool = False  # the whole text in bold (the headline)

    def html(self, text: str | None = None) -> str:
        body = esc(self.text if text is None else text)
        if self.bold:
            body = f"<b>{body}</b>"
        return (f"<b>{esc(self.label)}</b> " if self.label else "") + body


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + CUT_MARK


def message_html(notice: Notice, *, limit: int = MAX_TEXT) -> str:
    """The message in Telegram HTML: bold headline, short sections, the incident link.

    Cut to ``limit`` at a line (or inside a line's text, before escaping), never inside a tag or an
    entity; the headline and the link are always kept.
    """
    inc = notice.incident
    link = ""
    url = str(inc.get("url") or "")
    if url.startswith(("http://", "https://")):
        link = f'<a href="{html.escape(url, quote=True)}">{LINK_TEXT}</a>'
        if units(link) > limit // 2:
            link = ""  # an absurd URL: the words matter more
    room = limit - (units(link) + 2 if link else 0)  # the link after a blank line
    head = _fit(_Line(text=_cut(render.headline(notice), HEADLINE_CHARS), bold=True), room) or ""
    room -= units(head) + 1
    body: list[_Line] = []
    for title, lines in render.sections(notice):
        shown = [_cut(x, LINE_CHARS) for x in lines[:SECTION_LINES]]
        if len(lines) > SECTION_LINES:
            shown.append(f"and {len(lines) - SECTION_LINES} more")
        if len(shown) == 1:
            body.append(_Line(label=f"{title}:", text=shown[0]))
        else:
            body.append(_Line(label=f"{title}:"))
            body.extend(_Line(text=f"• {x}") for x in shown)
    out: list[str] = []
    for line in body:
        rendered = line.html()
        if units(rendered) + 1 <= room:
            out.append(rendered)
            room -= units(rendered) + 1
            continue
        # The first line that does not fit: its text cut so it does, if enough is left to say something.
        cut = _fit(line, room - 1, min_chars=10)
        if cut is not None:
            out.append(cut)
        elif units(CUT_MARK) + 1 <= room:
            out.append(CUT_MARK)
        break
    parts = [head, *([""] if out else []), *out]
    if link:
        parts += ["", link]
    return "\n".join(parts)


def _fit(line: _Line, room: int, *, min_chars: int = 1) -> str | None:
    """The line rendered within ``room`` units, its text cut (before escaping) if need be; None if it cannot be."""
    rendered = line.html()
    text = line.text
    while units(rendered) > room:
        if len(text) < min_chars:
            return None
        over = units(rendered) - room
        text = text[: max(0, len(text) - max(1, over // 5) - 1)]
        rendered = line.html(text + CUT_MARK)
    return rendered


class TelegramTarget:
    kind = "telegram"

    def __init__(self, cfg: TelegramConfig, secret: str | None, *, clock: Clock | None = None,
                 base_dir: Path | None = None, min_interval_s: float = MIN_INTERVAL_S,
                 group_max: int = GROUP_MAX, group_window_s: float = GROUP_WINDOW_S) -> None:
        if not secret:
            raise ValueError(f"telegram target {cfg.name}: the bot token ({cfg.token_secret}) is empty")
        redact.register(secret)
        guard_http_loggers()
        self.cfg = cfg
        self._token = secret
        self.clock = clock or SystemClock()
        self.name = cfg.name
        self.events = frozenset(cfg.events)
        self.max_attempts = cfg.max_attempts
        self.max_age_s = cfg.max_age_s
        group = is_group_chat(cfg.chat_id)
        self.pace = ChatPace(min_interval_s, group_max if group else None, group_window_s)
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._hold_until = 0.0  # clock time before which Telegram asked not to send (429 retry_after)

    def __repr__(self) -> str:
        return f"TelegramTarget(name={self.name!r}, chat_id={self.cfg.chat_id!r})"

    # --- wire ---------------------------------------------------------------------------------

    def _url(self, method: str) -> str:
        return f"{self.cfg.api_url.rstrip('/')}/bot{self._token}/{method}"

    async def _api(self, client: httpx.AsyncClient, method: str, body: dict[str, Any] | None = None) -> Any:
        """One Bot API call; its ``result`` or ``CallFailed`` with Telegram's description."""
        reply = await http.call(client, "POST" if body is not None else "GET", self._url(method),
                                timeout_s=self.cfg.timeout_s, body=body, what=method, clock=self.clock,
                                expect=_ALL_ERRORS)
        data = reply.data if isinstance(reply.data, dict) else {}
        if 200 <= reply.status < 300:
            if data.get("ok") is True:
                return data.get("result")
            raise CallFailed("retry", f"{method}: HTTP {reply.status}: not a Bot API reply", http_status=reply.status)
        description = str(data.get("description") or " ".join(reply.text[:http.ERROR_SNIPPET_CHARS].split())
                          or "no description")
        params = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
        if isinstance(params.get("migrate_to_chat_id"), int):
            description += f" (the group is now the supergroup {params['migrate_to_chat_id']}: set chat_id to it)"
        outcome = http.classify(reply.status)
        after: float | None = None
        if outcome == "retry":
            hint = params.get("retry_after")
            after = (min(float(hint), RETRY_AFTER_MAX_S) if isinstance(hint, int | float) and hint >= 0
                     else http.retry_after(reply.headers, self.clock.now()))
        status = "retry" if outcome == "retry" else "permanent"
        raise CallFailed(status, f"{method}: HTTP {reply.status}: {description}", http_status=reply.status,
                         retry_after_s=after)

    def _chat_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def _paced(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run one send to the chat: one at a time, within ``pace``, none while Telegram holds us off."""
        async with self._chat_lock():  # asyncio.Lock is FIFO: sends keep the order they asked in
            held = self._hold_until - self.clock.now()
            if held > 0:
                raise CallFailed("retry", f"sendMessage: Telegram asked to wait {held:.0f}s more (flood control)",
                                 retry_after_s=held)
            wait = self.pace.wait_s(time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                return await call()
            except CallFailed as exc:
                if exc.http_status == 429 and exc.retry_after_s:
                    self._hold_until = max(self._hold_until, self.clock.now() + exc.retry_after_s)
                raise
            finally:
                self.pace.sent(time.monotonic())

    def _quiet(self, notice: Notice) -> bool:
        severity = str(notice.incident.get("severity", "info"))
        if severity in self.cfg.quiet_severities:
            return True
        return notice.event_type in ("incident.updated", "incident.acked") and severity != "critical"

    def message(self, notice: Notice, reply_to: str | None) -> dict[str, Any]:
        """The sendMessage body for this event."""
        body: dict[str, Any] = {"chat_id": self.cfg.chat_id, "text": message_html(notice), "parse_mode": "HTML",
                                "disable_notification": self._quiet(notice),
                                "link_preview_options": {"is_disabled": True}}
        if self.cfg.message_thread_id is not None:
            body["message_thread_id"] = self.cfg.message_thread_id
        if reply_to is not None:
            try:
                root: int | str = int(reply_to)
            except ValueError:
                root = reply_to
            body["reply_parameters"] = {"message_id": root, "allow_sending_without_reply": True}
        return body

    # --- Target -------------------------------------------------------------------------------

    async def send(self, notice: Notice, client: httpx.AsyncClient, refs: Refs) -> AttemptOutcome:
        timer = AttemptTimer()
        root = await refs.get(self.name, notice.incident_id)
        if root is None and notice.event_type == "incident.closed":
            return timer.outcome("delivered")  # nothing was ever posted about it here: no thread to close
        body = self.message(notice, root)
        try:
            try:
                result = await self._paced(lambda: self._api(client, "sendMessage", body))
            except CallFailed as exc:
                if exc.status != "permanent" or "can't parse entities" not in exc.error:
                    raise
                # Telegram refused the markup: the same words as plain text are better than nothing.
                log.warning("telegram %s: %s; sending plain text", self.name, exc.error)
                plain = {k: v for k, v in body.items() if k != "parse_mode"}
                plain["text"] = render.plain_text(notice, limit=MAX_TEXT // 2)
                result = await self._paced(lambda: self._api(client, "sendMessage", plain))
        except CallFailed as exc:
            return timer.failed(exc)
        message_id = result.get("message_id") if isinstance(result, dict) else None
        if root is None:
            if message_id is None:
                log.warning("telegram %s: sendMessage returned no message_id; the next event starts a new thread",
                            self.name)
            else:
                await refs.put(self.name, notice.incident_id, str(message_id))
        return timer.outcome("delivered", http_status=200)

    async def probe(self, client: httpx.AsyncClient) -> str:
        """``ispvm notify test``: the token (getMe), then a short test message to the chat."""
        try:
            me = await self._api(client, "getMe")
            bot = f"@{me.get('username')}" if isinstance(me, dict) and me.get("username") else "(no username)"
            body: dict[str, Any] = {
                "chat_id": self.cfg.chat_id, "parse_mode": "HTML", "disable_notification": True,
                "text": f"<b>ispvm test</b>: notification target {esc(self.name)} can post here.",
                "link_preview_options": {"is_disabled": True}}
            if self.cfg.message_thread_id is not None:
                body["message_thread_id"] = self.cfg.message_thread_id
            sent = await self._paced(lambda: self._api(client, "sendMessage", body))
        except CallFailed as exc:
            raise ProbeFailed(exc.error) from None
        message_id = sent.get("message_id") if isinstance(sent, dict) else None
        return f"bot {bot}: sent test message {message_id} to {self.cfg.chat_id}"
