"""ServiceNow as an outbox target (kind ``servicenow``): one incident record per ispvm incident.

Table API (``/api/now/table/incident``):

* the first event the target sees for an incident looks the record up by ``correlation_id`` (the
  ispvm incident id) and adopts it if it is there (a create whose answer was lost, or refs lost),
  else creates it; its ``sys_id`` is kept in ``Refs`` so a retry or a restart never creates a second;
* ``updated`` and ``acked`` append a work note; work notes append, so each event's note is written
  once: a ref ``<incident>#<event>`` is kept after success, and a retry first asks the record's
  journal (``sys_journal_field``) whether the note already landed (the note ends with the event id);
* ``closed`` resolves the record: state 6 (Resolved) with ``close_code`` and ``close_notes``, and
  keeps ``<incident>#resolved`` (when the incident ended). A ``closed`` with no record on the far
  side delivers nothing.
* reopened: ispvm reopens an incident whose root fails again within ``reopen_window_s`` and says so
  with an ``incident.updated`` whose status is open again. The first such event after a close this
  target delivered sets the record back to state 2 (In Progress) in the same PATCH as its work
  note, which says that it reopened and why; the note is written once like any other, and setting
  state 2 again on a retry changes nothing. A record someone resolved by hand is not reopened.

Urgency and impact come from the severity (``SEVERITY_URGENCY_IMPACT``); with the default priority
matrix critical is P1, major P3, minor P4, warning and info P5.
"""

from __future__ import annotations

import base64
import logging
import math
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from ispvm_tui import redact
from ispvm_tui.clock import Clock, SystemClock
from ispvm_tui.config import ServiceNowConfig
from ispvm_tui.engine.notify import http, render, routing
from ispvm_tui.engine.targets import Notice, ProbeFailed, Refs
from ispvm_tui.engine.webhooks import RETRY_AFTER_MAX_S, AttemptOutcome

log = logging.getLogger(__name__)

INCIDENT_TABLE = "/api/now/table/incident"
JOURNAL_TABLE = "/api/now/table/sys_journal_field"
GROUP_TABLE = "/api/now/table/sys_user_group"
# severity -> (urgency, impact); "1" is the highest on both.
SEVERITY_URGENCY_IMPACT: dict[str, tuple[str, str]] = {
    "critical": ("1", "1"),
    "major": ("2", "2"),
    "minor": ("2", "3"),
    "warning": ("3", "3"),
    "info": ("3", "3"),
}
SHORT_DESCRIPTION_MAX = 160
DESCRIPTION_MAX = 3800  # the field holds 4000 by default; room for the event line
WORK_NOTE_MAX = 3000
RESOLVED = "6"
IN_PROGRESS = "2"
_ERRORS = tuple(range(300, 600))  # every non-2xx answer is read here, to quote ServiceNow's own message


def severity_codes(severity: str | None) -> tuple[str, str]:
    return SEVERITY_URGENCY_IMPACT.get(str(severity or "info"), ("3", "3"))


def assignment_group(cfg: ServiceNowConfig, incident: dict[str, Any]) -> str | None:
    """The first rule whose every set field shares a value with the incident's tags; else the default."""
    for rule in cfg.assignment:
        wanted = {"site": rule.sites, "region": rule.regions, "provider": rule.providers, "role": rule.roles}
        if all(not values or routing.label_values(incident, key) & set(values) for key, values in wanted.items()):
            return rule.group
    return cfg.default_group


def short_description(incident: dict[str, Any]) -> str:
    text = " ".join(f"[ISPVM] {incident.get('title', '')}".split())
    return text if len(text) <= SHORT_DESCRIPTION_MAX else text[: SHORT_DESCRIPTION_MAX - 1] + "…"


def q(value: str) -> str:
    """A value inside an encoded query: ``^`` separates terms, so a literal one is doubled."""
    return value.replace("^", "^^")


def event_line(notice: Notice) -> str:
    return f"ispvm event {notice.event_id}"


def sn_error(reply: http.Reply) -> str:
    """``message (detail)`` from ServiceNow's error body, else the start of the body."""
    data = reply.data
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        message = str(data["error"].get("message") or "").strip()
        detail = str(data["error"].get("detail") or "").strip()
        if message or detail:
            return f"{message} ({detail})" if message and detail else (message or detail)
    return " ".join(reply.text[: http.ERROR_SNIPPET_CHARS].split())


class ServiceNowTarget:
    kind = "servicenow"

    def __init__(self, cfg: ServiceNowConfig, secret: str | None, *, clock: Clock | None = None,
                 base_dir: Path | None = None) -> None:
        if not secret:
            raise ValueError(f"servicenow target {cfg.name!r}: its secret {cfg.secret!r} has no value")
        self.cfg = cfg
        self.name = cfg.name
        self.events = frozenset(cfg.events)
        self.max_attempts = cfg.max_attempts
        self.max_age_s = cfg.max_age_s
        self.clock = clock or SystemClock()
        self.base_url = cfg.url.rstrip("/")
        self.where = redact.strip_userinfo(self.base_url)  # for messages
        redact.register_url(cfg.url)
        redact.register(secret)
        if cfg.auth == "basic":
            token = base64.b64encode(f"{cfg.user}:{secret}".encode()).decode()
            redact.register(token)
            self._auth = {"Authorization": f"Basic {token}"}
        elif cfg.auth == "bearer":
            self._auth = {"Authorization": f"Bearer {secret}"}
        else:
            self._auth = {"x-sn-apikey": secret}

    def __repr__(self) -> str:
        return f"ServiceNowTarget(name={self.name!r}, url={self.where!r}, auth={self.cfg.auth!r})"

    # --- HTTP -------------------------------------------------------------------------------

    async def _call(self, client: httpx.AsyncClient, method: str, path: str, *, query: dict[str, str] | None = None,
                    body: Any = None, what: str, not_found: str | None = None) -> http.Reply:
        """One Table API call; a non-2xx answer raises ``CallFailed`` quoting ServiceNow's message."""
        url = self.base_url + path + (f"?{urlencode(query, quote_via=quote)}" if query else "")
        reply = await http.call(client, method, url, timeout_s=self.cfg.timeout_s, headers=self._auth, body=body,
                                what=what, clock=self.clock, expect=_ERRORS)
        if 200 <= reply.status < 300:
            return reply
        outcome = http.classify(reply.status)
        reason = sn_error(reply)
        if reply.status == 404 and not_found:
            error = f"{what}: {not_found} (HTTP 404: {reason})"
        else:
            error = f"{what}: HTTP {reply.status}" + (f": {reason}" if reason else "")
            if reply.status == 401:
                error += f" [check auth = {self.cfg.auth!r}" + (f", user {self.cfg.user!r}" if self.cfg.auth == "basic"
                                                                else "") + " and its secret]"
        status = "permanent" if outcome == "delivered" else outcome  # 1xx cannot reach here; be safe
        raise http.CallFailed(status, error, http_status=reply.status,
                              retry_after_s=self._retry_after(reply.headers) if status == "retry" else None)

    def _retry_after(self, headers: httpx.Headers) -> float | None:
        after = http.retry_after(headers, self.clock.now())
        if after is not None:
            return after
        reset = headers.get("X-RateLimit-Reset")
        try:
            at = float(reset) if reset else math.nan
        except ValueError:
            return None
        if not math.isfinite(at):
            return None
        return min(max(0.0, at - self.clock.now()), RETRY_AFTER_MAX_S)

    @staticmethod
    def _result(reply: http.Reply, what: str) -> Any:
        data = reply.data
        if not isinstance(data, dict) or "result" not in data:
            # A hibernating developer instance answers 200 with an HTML page: not the Table API.
            raise http.CallFailed("retry", f"{what}: HTTP {reply.status} but not a Table API answer "
                                           f"({reply.headers.get('Content-Type', 'no content type')})",
                                  http_status=reply.status)
        return data["result"]

    # --- delivery ---------------------------------------------------------------------------

    async def send(self, notice: Notice, client: httpx.AsyncClient, refs: Refs) -> AttemptOutcome:
        timer = http.AttemptTimer()
        try:
            return await self._send(notice, client, refs, timer)
        except http.CallFailed as exc:
            log.debug("servicenow %s: %s for incident %s: %s", self.name, notice.event_type, notice.incident_id,
                      exc.error)
            return timer.failed(exc)

    async def _send(self, notice: Notice, client: httpx.AsyncClient, refs: Refs,
                    timer: http.AttemptTimer) -> AttemptOutcome:
        iid = notice.incident_id
        sys_id = await refs.get(self.name, iid)
        open_again = notice.event_type != "incident.closed" and notice.incident.get("status") != "closed"
        resolved = await refs.get(self.name, f"{iid}#resolved") if open_again and sys_id is not None else None
        if sys_id is None:
            if notice.event_type == "incident.closed":
                return timer.outcome("delivered")  # nothing was ever opened far side: nothing to resolve
            found = await self._find(client, notice.incident_id)
            if found is None:
                created = await self._create(client, notice)
                await refs.put(self.name, notice.incident_id, created)
                return timer.outcome("delivered", http_status=201)
            sys_id = str(found["sys_id"])
            await refs.put(self.name, notice.incident_id, sys_id)
            log.debug("servicenow %s: adopted %s for incident %s", self.name, found.get("number"), notice.incident_id)
            if notice.event_type == "incident.opened" or event_line(notice) in str(found.get("description") or ""):
                return timer.outcome("delivered", http_status=200)  # this event (or the opening) made the record
        if notice.event_type == "incident.opened":
            return timer.outcome("delivered")  # the record exists already
        if notice.event_type == "incident.closed":
            await self._call(client, "PATCH", f"{INCIDENT_TABLE}/{sys_id}", what="resolve incident",
                             not_found=f"incident record {sys_id} not found (deleted?)",
                             body={"state": RESOLVED, "close_code": self.cfg.close_code,
                                   "close_notes": self._note(notice)})
            await refs.put(self.name, f"{iid}#resolved", str(notice.incident.get("ends_at") or "?"))
            return timer.outcome("delivered", http_status=200)
        if resolved:
            outcome = await self._work_note(notice, client, refs, timer, sys_id, reopen_after=resolved)
            await refs.put(self.name, f"{iid}#resolved", "")
            log.info("servicenow %s: incident %s failed again; its record is In Progress again", self.name, iid)
            return outcome
        return await self._work_note(notice, client, refs, timer, sys_id)

    async def _find(self, client: httpx.AsyncClient, incident_id: str) -> dict[str, Any] | None:
        reply = await self._call(client, "GET", INCIDENT_TABLE, what="look up incident", query={
            "sysparm_query": f"correlation_id={q(incident_id)}", "sysparm_limit": "1",
            "sysparm_fields": "sys_id,number,state,description"})
        rows = self._result(reply, "look up incident")
        if isinstance(rows, list) and rows and isinstance(rows[0], dict) and rows[0].get("sys_id"):
            return rows[0]
        return None

    def create_body(self, notice: Notice) -> dict[str, str]:
        inc = notice.incident
        urgency, impact = severity_codes(inc.get("severity"))
        body = {
            "short_description": short_description(inc),
            "description": render.plain_text(notice, limit=DESCRIPTION_MAX) + f"\n\n{event_line(notice)}",
            "category": "Network",
            "subcategory": "Monitoring",
            "urgency": urgency,
            "impact": impact,
            "correlation_id": notice.incident_id,
            "correlation_display": "ispvm",
        }
        if group := assignment_group(self.cfg, inc):
            body["assignment_group"] = group
        if self.cfg.caller_id:
            body["caller_id"] = self.cfg.caller_id
        return body

    async def _create(self, client: httpx.AsyncClient, notice: Notice) -> str:
        reply = await self._call(client, "POST", INCIDENT_TABLE, body=self.create_body(notice),
                                 what="create incident")
        result = self._result(reply, "create incident")
        if not isinstance(result, dict) or not result.get("sys_id"):
            # Created or not, the next attempt's look-up by correlation_id tells.
            raise http.CallFailed("retry", "create incident: the answer has no sys_id", http_status=reply.status)
        log.debug("servicenow %s: created %s for incident %s", self.name, result.get("number"), notice.incident_id)
        return str(result["sys_id"])

    def _note(self, notice: Notice, first_line: str = "") -> str:
        head = f"{first_line}\n\n" if first_line else ""
        return head + render.plain_text(notice, limit=WORK_NOTE_MAX - len(head)) + f"\n\n{event_line(notice)}"

    @staticmethod
    def reopen_line(notice: Notice, resolved_at: str) -> str:
        roots = "; ".join(render.root_cause_lines(notice.incident)) or "its root cause"
        when = f" at {render.when(resolved_at)}" if resolved_at != "?" else ""
        return (f"Reopened by ispvm: the incident was resolved{when}, and {roots} failed again within the "
                f"reopen window. Set back to In Progress.")

    async def _work_note(self, notice: Notice, client: httpx.AsyncClient, refs: Refs, timer: http.AttemptTimer,
                         sys_id: str, *, reopen_after: str | None = None) -> AttemptOutcome:
        """One work note, written once; with ``reopen_after`` (when the incident had been resolved) the same
        PATCH sets the record In Progress again and the note says why."""
        done_key = f"{notice.incident_id}#{notice.event_id}"
        if await refs.get(self.name, done_key) is not None:
            return timer.outcome("delivered")
        if notice.attempt > 1 and await self._note_landed(client, sys_id, notice):
            await refs.put(self.name, done_key, sys_id)
            return timer.outcome("delivered", http_status=200)
        body = {"work_notes": self._note(notice)}
        if reopen_after is not None:
            body = {"state": IN_PROGRESS, "work_notes": self._note(notice, self.reopen_line(notice, reopen_after))}
        await self._call(client, "PATCH", f"{INCIDENT_TABLE}/{sys_id}", body=body,
                         what="reopen incident" if reopen_after is not None else "add work note",
                         not_found=f"incident record {sys_id} not found (deleted?)")
        await refs.put(self.name, done_key, sys_id)
        return timer.outcome("delivered", http_status=200)

    async def _note_landed(self, client: httpx.AsyncClient, sys_id: str, notice: Notice) -> bool:
        """Did an earlier attempt's work note reach the record? The journal is often behind an ACL: when it
        cannot be read, the note is sent (a duplicate note is better than a lost one)."""
        try:
            reply = await self._call(client, "GET", JOURNAL_TABLE, what="check work notes", query={
                "sysparm_query": f"element_id={q(sys_id)}^element=work_notes^valueLIKE{q(notice.event_id)}",
                "sysparm_limit": "1", "sysparm_fields": "sys_id"})
        except http.CallFailed as exc:
            if exc.http_status in (403, 404):
                log.debug("servicenow %s: journal not readable (%s); sending the note", self.name, exc.error)
                return False
            raise
        rows = self._result(reply, "check work notes")
        return isinstance(rows, list) and bool(rows)

    # --- ispvm notify test ------------------------------------------------------------------

    async def probe(self, client: httpx.AsyncClient) -> str:
        try:
            reply = await self._call(client, "GET", INCIDENT_TABLE, what="read incident table",
                                     query={"sysparm_limit": "1", "sysparm_fields": "sys_id"})
            self._result(reply, "read incident table")
            groups = list(dict.fromkeys([r.group for r in self.cfg.assignment] +
                                        ([self.cfg.default_group] if self.cfg.default_group else [])))
            missing = []
            for group in groups:
                reply = await self._call(client, "GET", GROUP_TABLE, what=f"look up group {group!r}", query={
                    "sysparm_query": f"name={q(group)}", "sysparm_limit": "1", "sysparm_fields": "sys_id,name"})
                if not self._result(reply, "look up group"):
                    missing.append(group)
        except http.CallFailed as exc:
            raise ProbeFailed(f"{self.where}: {exc.error}") from None
        line = "authenticated; incident table readable"
        if missing:
            raise ProbeFailed(f"{self.where}: {line}; assignment group(s) not found: {', '.join(missing)}")
        if groups:
            line += f"; assignment group(s) found: {', '.join(groups)}"
        return line
