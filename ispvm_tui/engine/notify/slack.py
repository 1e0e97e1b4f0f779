"""Slack (kind ``slack``): each incident event as one message through an incoming webhook.

Wire: ``POST https://hooks.slack.com/services/T.../B.../...`` with ``{"text": fallback, "blocks": [...]}``;
Slack answers ``200 ok``. Errors are plain text: 400 ``invalid_payload`` / ``no_text`` /
``invalid_blocks``, 403 ``action_prohibited``, 404 ``channel_not_found`` / ``no_service``, 410
``channel_is_archived`` are permanent (the text is in the error); 429 (``Retry-After``), 408 and 5xx
are retried.

Blocks: a header with the headline, severity and incident status as fields, the shared sections
(status line, root cause, impact, evidence) in mrkdwn with ``&``, ``<`` and ``>`` escaped as Slack
asks, and a button to the incident. ``text`` is the headline: it is what a phone's notification shows.

An incoming webhook returns no message id, so events cannot be threaded: each message carries the
incident's headline. A reply lost after Slack posted the message is retried and posts it again (a
duplicate in the channel, accepted for chat). The first posting of an incident is remembered in
``Refs`` only so a close of an incident never posted here posts nothing.

The webhook URL is the secret: it is registered with ``redact`` (whole and its path) and never
appears in an error, an exception or ``repr``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ispvm_tui import redact
from ispvm_tui.clock import Clock, SystemClock
from ispvm_tui.config import SlackConfig
from ispvm_tui.engine.notify import http, render
from ispvm_tui.engine.notify.http import AttemptTimer, CallFailed
from ispvm_tui.engine.notify.logguard import guard_http_loggers
from ispvm_tui.engine.targets import Notice, ProbeFailed, Refs
from ispvm_tui.engine.webhooks import AttemptOutcome

HEADER_CHARS = 150  # Slack's limit for a header block's text
SECTION_CHARS = 3000  # for a section's text
BUTTON_URL_CHARS = 3000
FALLBACK_CHARS = 3000
LINE_CHARS = 400
SECTION_LINES = 5
POSTED = "posted"  # the Refs value: this incident has had a message here


def mrkdwn_escape(text: str) -> str:
    """Slack's control characters as entities; nothing else (Slack decodes only these three)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _cut_escaped(text: str, chars: int) -> str:
    """Escape, then keep within ``chars`` without splitting an entity."""
    out = mrkdwn_escape(text)
    while len(out) > chars:
        text = text[: max(0, len(text) - (len(out) - chars) // 5 - 2)]
        out = mrkdwn_escape(text) + "…"
    return out


def blocks(notice: Notice) -> list[dict[str, Any]]:
    inc = notice.incident
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(render.headline(notice), HEADER_CHARS),
                                    "emoji": True}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Severity*\n{mrkdwn_escape(str(inc.get('severity', 'info')).upper())}"},
            {"type": "mrkdwn", "text": f"*Incident*\n{mrkdwn_escape(str(inc.get('status', '-')))}"}]},
    ]
    for title, lines in render.sections(notice):
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": _section(title, lines)}})
    url = str(inc.get("url") or "")
    if url.startswith(("http://", "https://")) and len(url) <= BUTTON_URL_CHARS:
        out.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open incident"}, "url": url,
             "action_id": "open_incident"}]})
    return out


def _section(title: str, lines: list[str]) -> str:
    """``*Title*`` and its lines (bullets when several), escaped, within a section's 3000 characters."""
    head = f"*{mrkdwn_escape(title)}*\n"
    if len(lines) == 1:
        return head + _cut_escaped(_cut(lines[0], LINE_CHARS), SECTION_CHARS - len(head))
    room = SECTION_CHARS - len(head) - 40  # kept for "and N more"
    shown: list[str] = []
    for line in lines[:SECTION_LINES]:
        item = "• " + mrkdwn_escape(_cut(line, LINE_CHARS))
        if len(item) + 1 > room:
            if room > 20:
                shown.append("• " + _cut_escaped(line, room - 3))
            break
        shown.append(item)
        room -= len(item) + 1
    if len(shown) < len(lines):
        shown.append(f"and {len(lines) - len(shown)} more")
    return head + "\n".join(shown)


class SlackTarget:
    kind = "slack"

    def __init__(self, cfg: SlackConfig, secret: str | None, *, clock: Clock | None = None,
                 base_dir: Path | None = None) -> None:
        if not secret:
            raise ValueError(f"slack target {cfg.name}: the webhook URL ({cfg.url_secret}) is empty")
        redact.register(secret)
        try:
            path = urlsplit(secret).path
        except ValueError:
            path = ""
        if path.count("/") >= 2:  # /services/T.../B.../X...: a library may print only the path
            redact.register(path)
        guard_http_loggers()
        self.cfg = cfg
        self._url = secret
        self.clock = clock or SystemClock()
        self.name = cfg.name
        self.events = frozenset(cfg.events)
        self.max_attempts = cfg.max_attempts
        self.max_age_s = cfg.max_age_s

    def __repr__(self) -> str:
        return f"SlackTarget(name={self.name!r})"

    def payload(self, notice: Notice) -> dict[str, Any]:
        return {"text": _cut_escaped(render.headline(notice), FALLBACK_CHARS), "blocks": blocks(notice)}

    async def _post(self, client: httpx.AsyncClient, body: dict[str, Any], what: str) -> http.Reply:
        return await http.call(client, "POST", self._url, timeout_s=self.cfg.timeout_s, body=body, what=what,
                               clock=self.clock)

    async def send(self, notice: Notice, client: httpx.AsyncClient, refs: Refs) -> AttemptOutcome:
        timer = AttemptTimer()
        posted = await refs.get(self.name, notice.incident_id)
        if posted is None and notice.event_type == "incident.closed":
            return timer.outcome("delivered")  # the channel never heard of it: no news in its end
        try:
            reply = await self._post(client, self.payload(notice), "post message")
        except CallFailed as exc:
            return timer.failed(exc)
        if posted is None:
            await refs.put(self.name, notice.incident_id, POSTED)
        return timer.outcome("delivered", http_status=reply.status)

    async def probe(self, client: httpx.AsyncClient) -> str:
        text = f"ispvm test: notification target {self.name} can post here."
        body = {"text": mrkdwn_escape(text),
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{mrkdwn_escape(text)}*"}}]}
        try:
            reply = await self._post(client, body, "post test message")
        except CallFailed as exc:
            raise ProbeFailed(exc.error) from None
        answer = " ".join(reply.text.split())[:40] or "empty reply"
        return f"posted a test message to the Slack webhook (HTTP {reply.status}: {answer})"
