"""Jira Cloud as an outbox target (kind ``jira``): one issue per incident, a comment per change.

The life of an incident on the far side:

* The first event this target sees for an incident (opened, or updated/acked when routing starts
  the target mid-incident) creates an issue: ``[ISPVM] <title>``, the priority mapped from the
  severity, labels ``ispvm``, ``ispvm-<incident id>``, the configured labels and the incident's
  site and provider tags (``site-POP-A``, ``provider-UPSTREAM1``), and an ADF description made from
  render.sections with a link to the incident. The issue key is kept with ``refs.put(name,
  incident_id, key)``. A closed incident the target never saw opened creates nothing.
* updated / acked: a comment with the headline, what changed since the last event delivered (kept
  in refs as ``<incident>#seen``) and the marker ``ispvm event <event_id>``. When the severity maps
  to another priority than the one the issue was last given (``<incident>#priority``; before the
  first change, the one the last delivered event's severity maps to), the issue's priority is set
  too (PUT /rest/api/3/issue/{key}). A priority someone changed by hand is left alone until the
  severity changes again.
* closed: the same comment, then the ``close_transition`` (looked up by name, or by the status it
  leads to, case-insensitively, since transition ids differ per workflow).
* reopened (the first event after a delivered close whose incident is open again: the same root
  failed within ``reopen_window_s``): the comment says so, then the ``reopen_transition`` if one is
  configured. It is looked up like the close's; when none of that name is available and the issue
  is no longer in a done status (an earlier attempt's answer was lost, someone reopened it, or the
  close never transitioned it), there is nothing to do.

Never twice:

* Before every create the issue is searched for by its ``ispvm-<incident id>`` label (POST
  /rest/api/3/search/jql). That is one extra call per incident, only while no key is known, and it
  also recovers a mapping lost with the database. Jira's search is eventually consistent: an issue
  whose create answer was lost may not be found for a few seconds. So the time of every create
  whose outcome is unknown (timeout, dropped connection) is written to refs (``<incident>#create``)
  *before* the request goes out; while the search misses and that create is younger than
  ``create_settle_s`` (30 s) the attempt returns "retry" a few seconds later instead of creating
  again. A restarted process reads the same timestamp. A create Jira refused with an HTTP status
  is known not to exist and clears it.
* Before a comment is posted ``<incident>#commenting`` names the event; a retry (``attempt > 1``)
  or an attempt that finds its own event there (the process stopped before the outcome was stored)
  first reads the issue's latest comments and posts nothing if the marker is there already.
* A closed event records ``<incident>#closed-comment`` once its comment is in, so a retry only
  does the transition; an update with a step after its comment (a priority, a reopen transition)
  records ``<incident>#step-comment`` the same way. A transition whose 204 was lost is recognised by
  the issue's status; setting a priority twice changes nothing.

Outcomes: Jira's 400 ``errorMessages`` and ``errors`` are quoted in the error; 429 waits for
``Retry-After``, else ``X-RateLimit-Reset``; 404 on the issue key (deleted or moved) is permanent.
When the closing comment is in but no transition of that name is available from the issue's
status, the outcome is "permanent" with the names that are available: the issue is still open and
someone has to fix the config (or close it by hand), which a dead letter shows and a delivered row
would hide; a resend after the fix does only the transition, never a second comment. A priority
Jira refuses (400: no such priority) and a missing reopen transition end the same way.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx

from ispvm_tui import redact
from ispvm_tui.clock import Clock, SystemClock
from ispvm_tui.config import JiraConfig
from ispvm_tui.engine.notify import render
from ispvm_tui.engine.notify.http import AttemptTimer, CallFailed, Reply, call, classify, retry_after
from ispvm_tui.engine.notify.routing import label_values
from ispvm_tui.engine.targets import Notice, ProbeFailed, Refs
from ispvm_tui.engine.webhooks import RETRY_AFTER_MAX_S, AttemptOutcome

log = logging.getLogger(__name__)

API = "/rest/api/3"
SUMMARY_MAX = 255
LABEL_MAX = 255
CREATE_SETTLE_S = 30.0  # after a create with no answer, how long a search miss is not taken as "absent"
SEARCH_RETRY_S = 3.0  # how soon to search again while waiting for such a create to show up
COMMENTS_CHECKED = 50  # latest comments read to find a retried event's marker
ERROR_DETAIL_CHARS = 400
_ANY_ERROR = tuple(range(300, 600))  # every non-2xx reply comes back to be classified here
_UNSAFE_LABEL = re.compile(r"\s+")


def jira_label(text: str) -> str:
    """Jira labels hold no spaces (and at most 255 characters)."""
    return _UNSAFE_LABEL.sub("-", text.strip())[:LABEL_MAX]


def marker(event_id: str) -> str:
    return f"ispvm event {event_id}"


# --- ADF (Atlassian Document Format) -------------------------------------------------------------


def _text(text: str, *marks: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": text}
    if marks:
        node["marks"] = list(marks)
    return node


def _para(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"type": "paragraph", "content": [n for n in nodes if n.get("text")]}


def _heading(text: str, level: int = 3) -> dict[str, Any]:
    return {"type": "heading", "attrs": {"level": level}, "content": [_text(text)]}


def _bullets(items: list[str]) -> dict[str, Any]:
    return {"type": "bulletList", "content": [{"type": "listItem", "content": [_para(_text(i))]} for i in items]}


def _link(url: str, label: str = "Open the incident in ispvm") -> dict[str, Any] | None:
    if not url.startswith(("http://", "https://")):
        return None
    return _para(_text(label, {"type": "link", "attrs": {"href": url}}))


def _doc(content: list[dict[str, Any] | None]) -> dict[str, Any]:
    return {"type": "doc", "version": 1, "content": [c for c in content if c and c.get("content", True)]}


def _adf_text(node: Any) -> str:
    """All the text in an ADF tree (a comment body as Jira returns it), for finding a marker."""
    if isinstance(node, dict):
        return (node.get("text") or "") + " ".join(_adf_text(c) for c in node.get("content") or [])
    if isinstance(node, list):
        return " ".join(_adf_text(c) for c in node)
    return str(node) if node else ""


# --- what changed --------------------------------------------------------------------------------


def snapshot(inc: dict[str, Any]) -> dict[str, Any]:
    ack = inc.get("ack") or {}
    return {"status": inc.get("status"), "severity": inc.get("severity"), "impact": render.impact_line(inc),
            "root": render.root_cause_lines(inc), "evidence": [str(e) for e in inc.get("evidence_top") or []],
            "acked_by": ack.get("acked_by"), "ends_at": inc.get("ends_at")}


def reopened(before: dict[str, Any] | None, inc: dict[str, Any]) -> bool:
    """The last event delivered closed the incident, and this one has it open again."""
    return before is not None and before.get("status") == "closed" and inc.get("status") != "closed"


def changes(before: dict[str, Any] | None, notice: Notice, extra: list[str] | None = None) -> list[str]:
    """Short lines saying what is new since the last event this target delivered."""
    inc = notice.incident
    now = snapshot(inc)
    if not before:
        return [render.status_line(notice), f"Impact: {now['impact']}"]
    out = []
    if reopened(before, inc):
        out.append(f"Reopened: failing again after it was resolved at {render.when(before.get('ends_at'))}")
    if now["severity"] != before.get("severity"):
        out.append(f"Severity: {before.get('severity')} → {now['severity']}")
    if now["acked_by"] and now["acked_by"] != before.get("acked_by"):
        out.append(f"Acknowledged by {now['acked_by']} at {render.when((inc.get('ack') or {}).get('acked_at'))}")
    if now["ends_at"] and now["ends_at"] != before.get("ends_at"):
        out.append(f"Resolved at {render.when(now['ends_at'])}")
    if now["status"] != before.get("status") and not out:
        out.append(f"Status: {before.get('status')} → {now['status']}")
    if now["impact"] != before.get("impact"):
        out.append(f"Impact: {now['impact']} (was {before.get('impact')})")
    if now["root"] != before.get("root") and now["root"]:
        out.append("Root cause: " + "; ".join(now["root"]))
    seen = set(before.get("evidence") or [])
    out += [f"New evidence: {e}" for e in now["evidence"] if e not in seen][:5]
    out += extra or []
    return out or [render.status_line(notice)]


# --- the target ----------------------------------------------------------------------------------


class _Stop(Exception):
    """Ends an attempt early with this outcome (not a far-side error: a decision)."""

    def __init__(self, status: Literal["delivered", "retry", "permanent"], error: str | None = None, *,
                 http_status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(error or status)
        self.status, self.error, self.http_status, self.retry_after_s = status, error, http_status, retry_after_s


class JiraTarget:
    kind = "jira"
    create_settle_s = CREATE_SETTLE_S
    search_retry_s = SEARCH_RETRY_S

    def __init__(self, cfg: JiraConfig, secret: str | None, *, clock: Clock | None = None,
                 base_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.events = frozenset(cfg.events)
        self.max_attempts = cfg.max_attempts
        self.max_age_s = cfg.max_age_s
        self.clock = clock or SystemClock()
        self.base = cfg.url.rstrip("/")
        token = secret or ""
        redact.register(token)
        if cfg.email:
            basic = base64.b64encode(f"{cfg.email}:{token}".encode()).decode()
            redact.register(basic)
            self._auth = f"Basic {basic}"
        else:
            self._auth = f"Bearer {token}"
        redact.register(self._auth)

    def __repr__(self) -> str:
        return f"JiraTarget(name={self.name!r}, url={self.base!r}, project={self.cfg.project!r})"

    # --- HTTP -------------------------------------------------------------------------------------

    async def _call(self, client: httpx.AsyncClient, method: str, path: str, *, what: str, body: Any = None,
                    params: dict[str, Any] | None = None, ok_404: bool = False) -> Reply:
        url = self.base + API + path
        if params:
            url += "?" + str(httpx.QueryParams(params))
        reply = await call(client, method, url, timeout_s=self.cfg.timeout_s, what=what, body=body,
                           headers={"Authorization": self._auth}, clock=self.clock, expect=_ANY_ERROR)
        outcome = classify(reply.status)
        if outcome == "delivered" or (ok_404 and reply.status == 404):
            return reply
        raise CallFailed(outcome, f"{what}: HTTP {reply.status}{self._detail(reply)}", http_status=reply.status,
                         retry_after_s=self._retry_after(reply) if outcome == "retry" else None)

    @staticmethod
    def _detail(reply: Reply) -> str:
        """Jira's own words: ``errorMessages`` and ``errors`` of its error body, else the body's start."""
        data = reply.data
        parts: list[str] = []
        if isinstance(data, dict):
            parts += [str(m) for m in data.get("errorMessages") or [] if m]
            errors = data.get("errors")
            if isinstance(errors, dict):
                parts += [f"{k}: {v}" for k, v in errors.items()]
            if not parts and data.get("message"):
                parts.append(str(data["message"]))
        text = "; ".join(parts) if parts else " ".join(reply.text.split())
        return f": {text[:ERROR_DETAIL_CHARS]}" if text else ""

    def _retry_after(self, reply: Reply) -> float | None:
        after = retry_after(reply.headers, self.clock.now())
        if after is not None:
            return after
        reset = reply.headers.get("X-RateLimit-Reset")
        if not reset:
            return None
        try:
            at = datetime.fromisoformat(reset.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        if at.tzinfo is None:
            return None
        return min(max(0.0, at.timestamp() - self.clock.now()), RETRY_AFTER_MAX_S)

    def _missing(self, key: str, exc: CallFailed) -> CallFailed:
        if exc.http_status == 404:
            return CallFailed("permanent", f"issue {key} not found in Jira (deleted, moved or no longer visible "
                                           f"to this account): {exc.error}", http_status=404)
        return exc

    # --- send -------------------------------------------------------------------------------------

    async def send(self, notice: Notice, client: httpx.AsyncClient, refs: Refs) -> AttemptOutcome:
        timer = AttemptTimer()
        try:
            await self._send(notice, client, refs)
        except CallFailed as exc:
            log.debug("jira %s: %s for %s failed: %s", self.name, notice.event_type, notice.incident_id, exc.error)
            return timer.failed(exc)
        except _Stop as stop:
            return timer.outcome(stop.status, error=stop.error, http_status=stop.http_status,
                                 retry_after_s=stop.retry_after_s)
        return timer.outcome("delivered")

    async def _send(self, notice: Notice, client: httpx.AsyncClient, refs: Refs) -> None:
        iid = notice.incident_id
        key = await refs.get(self.name, iid)
        if key is None:
            if notice.event_type == "incident.closed":
                key = await self._find_pending(notice, client, refs)
                if key is None:
                    return  # never opened here: nothing to close
            else:
                await self._create(notice, client, refs)
                return
        if notice.event_type == "incident.opened":
            return  # the issue exists: that is what "opened" asks for
        before = await self._seen(refs, iid)
        if notice.event_type == "incident.closed":
            await self._close(notice, client, refs, key, before)
        else:
            await self._update(notice, client, refs, key, before)
        await refs.put(self.name, f"{iid}#seen", json.dumps(snapshot(notice.incident)))

    async def _seen(self, refs: Refs, iid: str) -> dict[str, Any] | None:
        raw = await refs.get(self.name, f"{iid}#seen")
        try:
            before = json.loads(raw) if raw else None
        except ValueError:
            return None
        return before if isinstance(before, dict) else None

    # --- create -----------------------------------------------------------------------------------

    def labels(self, inc: dict[str, Any]) -> list[str]:
        out = ["ispvm", jira_label(f"ispvm-{inc.get('id', '')}"), *(jira_label(x) for x in self.cfg.labels)]
        out += [jira_label(f"site-{s}") for s in sorted(label_values(inc, "site"))]
        out += [jira_label(f"provider-{p}") for p in sorted(label_values(inc, "provider"))]
        return list(dict.fromkeys(x for x in out if x))

    def summary(self, inc: dict[str, Any]) -> str:
        text = " ".join(f"[ISPVM] {inc.get('title', '')}".split())
        return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"

    def description(self, notice: Notice) -> dict[str, Any]:
        inc = notice.incident
        content: list[dict[str, Any] | None] = [_para(_text(render.headline(notice), {"type": "strong"}))]
        for title, lines in render.sections(notice):
            content.append(_heading(title))
            content.append(_para(_text(lines[0])) if len(lines) == 1 else _bullets(lines))
        content.append(_link(str(inc.get("url") or "")))
        content.append(_para(_text(f"ispvm incident {notice.incident_id}; created by {marker(notice.event_id)}")))
        return _doc(content)

    def issue_fields(self, notice: Notice) -> dict[str, Any]:
        inc = notice.incident
        fields: dict[str, Any] = {
            "project": {"key": self.cfg.project}, "issuetype": {"name": self.cfg.issue_type},
            "summary": self.summary(inc), "description": self.description(notice), "labels": self.labels(inc)}
        priority = self.cfg.priorities.get(inc.get("severity"))  # type: ignore[arg-type]
        if priority:
            fields["priority"] = {"name": priority}
        return fields

    async def _search(self, notice: Notice, client: httpx.AsyncClient) -> str | None:
        label = jira_label(f"ispvm-{notice.incident_id}").replace("\\", "\\\\").replace('"', '\\"')
        project = self.cfg.project.replace("\\", "\\\\").replace('"', '\\"')
        reply = await self._call(client, "POST", "/search/jql", what="search for the incident's issue", body={
            "jql": f'project = "{project}" AND labels = "{label}" ORDER BY created ASC',
            "fields": ["key"], "maxResults": 1})
        issues = (reply.data or {}).get("issues") if isinstance(reply.data, dict) else None
        if issues and isinstance(issues[0], dict) and issues[0].get("key"):
            return str(issues[0]["key"])
        return None

    async def _pending_since(self, refs: Refs, iid: str) -> float | None:
        raw = await refs.get(self.name, f"{iid}#create")
        try:
            return float(raw) if raw else None
        except ValueError:
            return None

    async def _find_pending(self, notice: Notice, client: httpx.AsyncClient, refs: Refs) -> str | None:
        """Closed with no key: only a create whose answer was lost can have left an issue behind."""
        if await self._pending_since(refs, notice.incident_id) is None:
            return None
        return await self._found_or_wait(notice, client, refs)

    async def _found_or_wait(self, notice: Notice, client: httpx.AsyncClient, refs: Refs) -> str | None:
        """The issue's key if the search finds it; None if it surely does not exist; _Stop("retry") while
        a create with no answer is too recent for the search to be trusted."""
        iid = notice.incident_id
        found = await self._search(notice, client)
        if found:
            await refs.put(self.name, iid, found)
            log.info("jira %s: incident %s already has issue %s", self.name, iid, found)
            return found
        since = await self._pending_since(refs, iid)
        if since is not None:
            left = self.create_settle_s - (self.clock.now() - since)
            if left > 0:
                raise _Stop("retry", f"create issue: an earlier create got no answer and Jira's search does not "
                                     f"show it yet; searching again before creating ({left:.0f}s left)",
                            retry_after_s=min(self.search_retry_s, left))
        return None

    async def _create(self, notice: Notice, client: httpx.AsyncClient, refs: Refs) -> None:
        iid = notice.incident_id
        if await self._found_or_wait(notice, client, refs):
            return
        await refs.put(self.name, f"{iid}#create", repr(self.clock.now()))  # before: an answer may never come
        try:
            reply = await self._call(client, "POST", "/issue", what="create issue",
                                     body={"fields": self.issue_fields(notice)})
        except CallFailed as exc:
            if exc.http_status is not None:  # Jira answered: nothing was created
                await refs.put(self.name, f"{iid}#create", "")
            raise
        key = reply.data.get("key") if isinstance(reply.data, dict) else None
        if not key:  # created, but we cannot tell which: the search will find it
            raise CallFailed("retry", f"create issue: HTTP {reply.status} without an issue key")
        await refs.put(self.name, iid, str(key))
        await refs.put(self.name, f"{iid}#seen", json.dumps(snapshot(notice.incident)))
        log.info("jira %s: created %s for incident %s", self.name, key, iid)

    # --- comments, the priority and transitions --------------------------------------------------

    def comment_body(self, notice: Notice, before: dict[str, Any] | None,
                     extra: list[str] | None = None) -> dict[str, Any]:
        content: list[dict[str, Any] | None] = [_para(_text(render.headline(notice), {"type": "strong"})),
                                                 _bullets(changes(before, notice, extra))]
        if notice.superseded:
            content.append(_para(_text("Resent by hand: a later update of this incident was already delivered.")))
        content.append(_link(str(notice.incident.get("url") or "")))
        content.append(_para(_text(marker(notice.event_id), {"type": "em"})))
        return _doc(content)

    async def _has_marker(self, client: httpx.AsyncClient, key: str, event_id: str) -> bool:
        try:
            reply = await self._call(client, "GET", f"/issue/{key}/comment", what="read comments",
                                     params={"orderBy": "-created", "maxResults": COMMENTS_CHECKED})
        except CallFailed as exc:
            raise self._missing(key, exc) from None
        comments = reply.data.get("comments") if isinstance(reply.data, dict) else None
        mark = marker(event_id)
        return any(mark in _adf_text(c.get("body")) for c in comments or [] if isinstance(c, dict))

    async def _comment(self, notice: Notice, client: httpx.AsyncClient, refs: Refs, key: str,
                       before: dict[str, Any] | None, extra: list[str] | None = None) -> None:
        iid = notice.incident_id
        maybe_sent = notice.attempt > 1 or await refs.get(self.name, f"{iid}#commenting") == notice.event_id
        if maybe_sent and await self._has_marker(client, key, notice.event_id):
            return
        await refs.put(self.name, f"{iid}#commenting", notice.event_id)
        try:
            await self._call(client, "POST", f"/issue/{key}/comment", what=f"comment on {key}",
                             body={"body": self.comment_body(notice, before, extra)})
        except CallFailed as exc:
            raise self._missing(key, exc) from None

    async def _comment_once(self, notice: Notice, client: httpx.AsyncClient, refs: Refs, key: str,
                            before: dict[str, Any] | None, done: str, extra: list[str] | None = None) -> None:
        """The comment of an event with a step after it: recorded under ``done`` once it is in, so a retry
        or a resend after that step failed does only the step."""
        iid = notice.incident_id
        if await refs.get(self.name, f"{iid}#{done}") != notice.event_id:
            await self._comment(notice, client, refs, key, before, extra)
            await refs.put(self.name, f"{iid}#{done}", notice.event_id)

    def _last_priority(self, stored: str | None, before: dict[str, Any] | None) -> str | None:
        """The priority this target last gave the issue: the stored one, else (rows kept before priorities
        were remembered) the one the last delivered event's severity maps to."""
        if stored:
            return stored
        if before and before.get("severity"):
            return self.cfg.priorities.get(before["severity"])
        return None

    async def _update(self, notice: Notice, client: httpx.AsyncClient, refs: Refs, key: str,
                      before: dict[str, Any] | None) -> None:
        iid = notice.incident_id
        wanted = self.cfg.priorities.get(notice.incident.get("severity"))  # type: ignore[arg-type]
        last = self._last_priority(await refs.get(self.name, f"{iid}#priority"), before)
        new_priority = wanted if wanted and wanted != last else None
        reopening = reopened(before, notice.incident)
        if new_priority is None and not reopening:
            await self._comment(notice, client, refs, key, before)
            return
        extra = [f"Priority: {last or 'unset'} → {new_priority}"] if new_priority else []
        await self._comment_once(notice, client, refs, key, before, "step-comment", extra)
        if new_priority:
            try:
                await self._call(client, "PUT", f"/issue/{key}", what=f"set priority of {key} to {new_priority!r}",
                                 body={"fields": {"priority": {"name": new_priority}}})
            except CallFailed as exc:
                failed = self._missing(key, exc)
                if failed.http_status == 400:  # e.g. no such priority: the config needs fixing, then a resend
                    failed.error = f"comment posted on {key}, but {failed.error}"
                raise failed from None
            await refs.put(self.name, f"{iid}#priority", new_priority)
        reopen = (self.cfg.reopen_transition or "").strip()
        if reopening and reopen:
            await self._transition(client, key, reopen, "reopen comment",
                                   already=lambda status, category: category != "done")
            log.info("jira %s: reopened %s for incident %s", self.name, key, iid)

    async def _close(self, notice: Notice, client: httpx.AsyncClient, refs: Refs, key: str,
                     before: dict[str, Any] | None) -> None:
        await self._comment_once(notice, client, refs, key, before, "closed-comment")
        wanted = (self.cfg.close_transition or "").strip()
        if wanted:
            await self._transition(client, key, wanted, "closing comment",
                                   already=lambda status, category: status.casefold() == wanted.casefold())

    async def _transition(self, client: httpx.AsyncClient, key: str, wanted: str, comment: str, *,
                          already: Callable[[str, str], bool]) -> None:
        """Take the transition named ``wanted`` (or leading to a status of that name). When none is
        available, ``already(status, category)`` says whether the issue is where it would lead anyway
        (an earlier attempt whose 204 was lost, or a person); if not, the outcome is permanent."""
        try:
            reply = await self._call(client, "GET", f"/issue/{key}/transitions", what=f"list transitions of {key}")
            transitions = [t for t in (reply.data or {}).get("transitions") or [] if isinstance(t, dict)]
            chosen = (next((t for t in transitions if str(t.get("name", "")).casefold() == wanted.casefold()), None)
                      or next((t for t in transitions
                               if str((t.get("to") or {}).get("name", "")).casefold() == wanted.casefold()), None))
            if chosen is None:
                status, category = await self._status(client, key)
                if already(status, category):
                    return
                names = ", ".join(repr(str(t.get("name"))) for t in transitions) or "none"
                raise _Stop("permanent", f"{comment} posted on {key}, but no transition {wanted!r} from "
                                         f"status {status!r}; available: {names}")
            await self._call(client, "POST", f"/issue/{key}/transitions", what=f"transition {key} to {wanted!r}",
                             body={"transition": {"id": str(chosen.get("id"))}})
        except CallFailed as exc:
            raise self._missing(key, exc) from None

    async def _status(self, client: httpx.AsyncClient, key: str) -> tuple[str, str]:
        """The issue's status name and its category's key (new, indeterminate, done)."""
        reply = await self._call(client, "GET", f"/issue/{key}", what=f"read {key}", params={"fields": "status"})
        fields = reply.data.get("fields") if isinstance(reply.data, dict) else None
        status = (fields or {}).get("status") or {}
        return str(status.get("name") or "?"), str((status.get("statusCategory") or {}).get("key") or "?")

    # --- probe ------------------------------------------------------------------------------------

    async def probe(self, client: httpx.AsyncClient) -> str:
        project = self.cfg.project
        try:
            me = await self._call(client, "GET", "/myself", what="check credentials")
            who = str((me.data or {}).get("displayName") or (me.data or {}).get("accountId") or "?")
            found = await self._call(client, "GET", f"/project/{project}", what=f"look up project {project}")
        except CallFailed as exc:
            raise ProbeFailed(redact.scrub(self._probe_reason(exc))) from None
        name = str((found.data or {}).get("name") or "?")
        return f"{self.base}: authenticated as {who}; project {project} ({name}) found"

    def _probe_reason(self, exc: CallFailed) -> str:
        auth = "email and API token" if self.cfg.email else "OAuth token"
        if exc.http_status == 401:
            return f"Jira at {self.base} refused the credentials (HTTP 401): check the {auth}"
        if exc.http_status == 403:
            return f"Jira at {self.base} forbids this account (HTTP 403): {exc.error}"
        if exc.http_status == 404:
            return (f"project {self.cfg.project} not found at {self.base}, or this account cannot see it "
                    f"(HTTP 404): {exc.error}")
        if exc.http_status is None:
            return f"cannot reach Jira at {self.base}: {exc.error}"
        return f"Jira at {self.base} answered {exc.error}"
