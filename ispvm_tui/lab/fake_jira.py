"""A small Jira Cloud REST v3 server for the lab and the tests (../shared/spec/integrations.md).

It listens on a loopback port in a background thread and keeps issues, comments and a simple
workflow in memory. It checks the ``Authorization`` header (Basic ``email:token`` or ``Bearer
token``) and answers the way Jira does: 201 with ``{"id", "key", "self"}`` for a new issue, 204 for
a transition and for an edit (``PUT /rest/api/3/issue/{key}``: summary, description, labels,
priority; 400 for an unknown priority or a field it cannot set), ``{"errorMessages": [...],
"errors": {...}}`` for 400/401/404, 410 for the retired ``/rest/api/3/search``. Its workflow is
To Do -> In Progress -> Done, with "Reopen" (Done -> To Do) offered only from Done. It can be
scripted per method and path to fail (a status with headers), to answer slowly, to do the work and
then drop the connection without a reply ("lose"), or to do it and stall past the client's timeout
("stall"); its search can lag behind creates like Jira's index does.
"""

from __future__ import annotations

import base64
import fnmatch
import itertools
import json
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ispvm_tui.lab.webhook_sink import _BodyError, _read_body

API = "/rest/api/3"
ISSUE_TYPES = ("Task", "Bug", "Incident")
PRIORITIES = ("Highest", "High", "Medium", "Low", "Lowest")
# A transition is offered from every status but its own target, or only from those in "from".
WORKFLOW = ({"id": "11", "name": "To Do", "to": "To Do"}, {"id": "21", "name": "Start work", "to": "In Progress"},
            {"id": "31", "name": "Done", "to": "Done"}, {"id": "41", "name": "Reopen", "to": "To Do", "from": ["Done"]})
STATUS_CATEGORY = {"To Do": "new", "In Progress": "indeterminate", "Done": "done"}
EDITABLE = ("summary", "description", "labels", "priority")
SUMMARY_MAX = 255

# A scripted step: a status, (status, headers), (status, headers, body), ("delay", s) then the normal answer,
# "lose" (do the work, then close the connection with no reply), "stall" (do it, answer after ``stall_s``),
# or "drop" (close the connection without doing anything).
Step = int | str | tuple[Any, ...]


@dataclass(frozen=True)
class JiraRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    json: Any
    status: int  # what was answered (0: the connection was dropped)
    at: float

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Issue:
    id: str
    key: str
    fields: dict[str, Any]
    status: str = "To Do"
    created: float = field(default_factory=time.monotonic)
    comments: list[dict[str, Any]] = field(default_factory=list)
    edits: list[dict[str, Any]] = field(default_factory=list)  # the fields of every accepted PUT, in order


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeJira

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _errors(*messages: str, **errors: str) -> dict[str, Any]:
    return {"errorMessages": list(messages), "errors": errors}


def _is_adf(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "doc" and value.get("version") == 1 and isinstance(
        value.get("content"), list)


def _field_errors(fields: dict[str, Any]) -> dict[str, str]:
    """Jira's complaints about the values of summary, priority, labels and description, as given."""
    errors: dict[str, str] = {}
    if "summary" in fields:
        summary = fields["summary"]
        if not summary or not isinstance(summary, str):
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > SUMMARY_MAX or "\n" in summary:
            errors["summary"] = "Summary must be less than 255 characters."
    if "priority" in fields:
        priority = fields["priority"]
        name = priority.get("name") if isinstance(priority, dict) else None
        if name not in PRIORITIES:
            errors["priority"] = f"Specify a valid value for priority: {name!r}"
    labels = fields.get("labels") or []
    if not isinstance(labels, list) or any(not isinstance(x, str) or not x or " " in x or len(x) > 255
                                           for x in labels):
        errors["labels"] = "The label can't contain spaces."
    if "description" in fields and not _is_adf(fields["description"]):
        errors["description"] = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
    return errors


class FakeJira:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, email: str | None = "noc@example.net",
                 token: str = "jira-api-token", project: str = "NOC", project_name: str = "Network Operations",
                 display_name: str = "ISPVM Bot", search_lag_s: float = 0.0, stall_s: float = 5.0) -> None:
        self.host, self.port = host, port
        self.email, self.token = email, token
        self.project, self.project_name, self.display_name = project, project_name, display_name
        self.search_lag_s = search_lag_s  # an issue shows in search this long after its create
        self.search_paused = False  # True: search finds nothing created from now on, until set back
        self.stall_s = stall_s
        self.workflow = [dict(t) for t in WORKFLOW]
        self._lock = threading.RLock()  # wait_for predicates read through the public accessors
        self._changed = threading.Condition(self._lock)
        self._requests: list[JiraRequest] = []
        self._issues: dict[str, Issue] = {}
        self._hidden: set[str] = set()  # created while search was paused
        self._ids = itertools.count(10001)
        self._numbers = itertools.count(1)
        self._comment_ids = itertools.count(20001)
        self._scripts: list[tuple[str, str, deque[Step]]] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.fake = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-jira", daemon=True)
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

    def __enter__(self) -> FakeJira:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("fake Jira not started")
        return f"http://{self.host}:{self.port}"

    # --- scripting and inspection --------------------------------------------------------------

    def script(self, method: str, path: str, *steps: Step) -> None:
        """The next requests matching ``method`` and ``path`` (a glob such as ``/rest/api/3/issue/*/comment``)
        get these steps, one each, then the normal answer again."""
        with self._lock:
            self._scripts.append((method.upper(), path, deque(steps)))

    def requests(self, method: str | None = None, path: str | None = None) -> list[JiraRequest]:
        with self._lock:
            return [r for r in self._requests if (method is None or r.method == method.upper())
                    and (path is None or fnmatch.fnmatchcase(r.path, path))]

    def issues(self) -> list[Issue]:
        with self._lock:
            return [Issue(i.id, i.key, json.loads(json.dumps(i.fields)), i.status, i.created, list(i.comments),
                          json.loads(json.dumps(i.edits))) for i in self._issues.values()]

    def issue(self, key: str) -> Issue | None:
        return next((i for i in self.issues() if i.key == key), None)

    def delete_issue(self, key: str) -> None:
        with self._lock:
            self._issues.pop(key, None)

    def resume_search(self) -> None:
        with self._lock:
            self.search_paused = False
            self._hidden.clear()

    def wait_for(self, predicate: Callable[[FakeJira], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.1))
            return True

    # --- request handling (server threads) -----------------------------------------------------

    def _step(self, method: str, path: str) -> Step | None:
        with self._lock:
            for m, pattern, steps in self._scripts:
                if m == method and fnmatch.fnmatchcase(path, pattern) and steps:
                    return steps.popleft()
        return None

    def _authorized(self, headers: dict[str, str]) -> bool:
        value = headers.get("authorization", "")
        if self.email is not None:
            want = base64.b64encode(f"{self.email}:{self.token}".encode()).decode()
            return value == f"Basic {want}"
        return value == f"Bearer {self.token}"

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        try:
            raw = _read_body(handler)
        except _BodyError as exc:
            self._reply(handler, exc.status, {}, _errors("unreadable body"))
            return
        parts = urlsplit(handler.path)
        path, query = parts.path, parse_qs(parts.query)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            body = ...
        method = handler.command
        step = self._step(method, path)
        lose = stall = False
        if isinstance(step, tuple) and step and step[0] == "delay":
            self._stopping.wait(float(step[1]))
            step = None
        if step == "drop":
            with self._changed:
                self._requests.append(JiraRequest(method, path, query, headers, None if body is ... else body, 0,
                                                  time.time()))
                self._changed.notify_all()
            handler.close_connection = True
            return
        if step == "lose":
            lose, step = True, None
        elif step == "stall":
            stall, step = True, None
        if step is not None:
            status, extra, payload = self._scripted(step)
        elif not self._authorized(headers):
            status, extra, payload = 401, {"WWW-Authenticate": 'Basic realm="protected-area"'}, _errors(
                "Client must be authenticated to access this resource.")
        elif body is ...:
            status, extra, payload = 400, {}, _errors("Unexpected character in the request body: not JSON.")
        else:
            status, extra, payload = self._route(method, path, query, body)
        record = JiraRequest(method, path, query, headers, None if body is ... else body, 0 if lose else status,
                             time.time())
        with self._changed:
            self._requests.append(record)
            self._changed.notify_all()
        if lose:
            handler.close_connection = True  # the work is done; the answer never leaves
            return
        if stall:
            self._stopping.wait(self.stall_s)
        self._reply(handler, status, extra, payload)

    @staticmethod
    def _scripted(step: Step) -> tuple[int, dict[str, str], Any]:
        if isinstance(step, int):
            status, extra, payload = step, {}, None
        else:
            status, extra = int(step[0]), dict(step[1]) if len(step) > 1 else {}
            payload = step[2] if len(step) > 2 else None
        if payload is None:
            payload = {429: _errors("Rate limit exceeded."), 401: _errors(
                "Client must be authenticated to access this resource."), 403: _errors(
                "You do not have permission to do this."), 404: _errors(
                "Issue does not exist or you do not have permission to see it.")}.get(
                status, _errors(f"Internal server error (HTTP {status})") if status >= 500 else _errors("Bad request"))
        return status, extra, payload

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, dict[str, str], Any]:
        if not path.startswith(API + "/"):
            return 404, {}, _errors("Not found")
        rest = path[len(API):]
        with self._changed:
            try:
                return self._route_locked(method, rest, query, body)
            finally:
                self._changed.notify_all()

    def _route_locked(self, method: str, rest: str, query: dict[str, list[str]],
                      body: Any) -> tuple[int, dict[str, str], Any]:
        if rest == "/myself" and method == "GET":
            return 200, {}, {"accountId": "5b10a2844c20165700ede21g", "displayName": self.display_name,
                             "emailAddress": self.email, "active": True, "accountType": "atlassian"}
        if m := re.fullmatch(r"/project/([^/]+)", rest):
            if method != "GET":
                return 405, {}, _errors("Method not allowed")
            if m[1] != self.project:
                return 404, {}, _errors(f"No project could be found with key '{m[1]}'.")
            return 200, {}, {"id": "10000", "key": self.project, "name": self.project_name,
                             "projectTypeKey": "software"}
        if rest == "/search":
            return 410, {}, _errors("The requested API has been removed. Please migrate to the /rest/api/3/search/jql "
                                    "API. A full migration guideline is available at "
                                    "https://developer.atlassian.com/changelog/#CHANGE-2046")
        if rest == "/search/jql" and method in ("POST", "GET"):
            return self._search(body if method == "POST" else {"jql": (query.get("jql") or [""])[0]})
        if rest == "/issue" and method == "POST":
            return self._create(body)
        if not (m := re.fullmatch(r"/issue/([^/]+)(/comment|/transitions)?", rest)):
            return 404, {}, _errors("Not found")
        issue = self._issues.get(m[1])
        if issue is None:
            return 404, {}, _errors("Issue does not exist or you do not have permission to see it.")
        if m[2] is None and method == "GET":
            return 200, {}, {"id": issue.id, "key": issue.key, "fields": {
                **issue.fields, "status": {"name": issue.status,
                                           "statusCategory": {"key": STATUS_CATEGORY.get(issue.status, "new")}}}}
        if m[2] is None and method == "PUT":
            return self._edit(issue, body)
        if m[2] == "/comment":
            return self._comments(issue, method, query, body)
        if m[2] == "/transitions":
            return self._transitions(issue, method, body)
        return 405, {}, _errors("Method not allowed")

    def _create(self, body: Any) -> tuple[int, dict[str, str], Any]:
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, dict):
            return 400, {}, _errors("Field 'fields' is required.")
        errors: dict[str, str] = {}
        if (fields.get("project") or {}).get("key") != self.project:
            errors["project"] = "Specify a valid project ID or key"
        if (fields.get("issuetype") or {}).get("name") not in ISSUE_TYPES:
            errors["issuetype"] = "Specify an issue type"
        if "summary" not in fields:
            errors["summary"] = "You must specify a summary of the issue."
        errors.update(_field_errors(fields))
        if errors:
            return 400, {}, _errors(**errors)
        issue_id, key = str(next(self._ids)), f"{self.project}-{next(self._numbers)}"
        self._issues[key] = Issue(issue_id, key, fields)
        if self.search_paused:
            self._hidden.add(key)
        return 201, {}, {"id": issue_id, "key": key, "self": f"{self.url}{API}/issue/{issue_id}"}

    def _edit(self, issue: Issue, body: Any) -> tuple[int, dict[str, str], Any]:
        """PUT /issue/{key}: set the given fields; 204 with no body, or 400 and nothing changed."""
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, dict) or not fields:
            return 400, {}, _errors("No fields were given to edit.")
        errors = {name: f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
                  for name in fields if name not in EDITABLE}
        errors.update(_field_errors(fields))
        if errors:
            return 400, {}, _errors(**errors)
        issue.fields.update(json.loads(json.dumps(fields)))
        issue.edits.append(json.loads(json.dumps(fields)))
        return 204, {}, None

    def _search(self, body: Any) -> tuple[int, dict[str, str], Any]:
        jql = str((body or {}).get("jql") or "") if isinstance(body, dict) else ""
        project = re.search(r'project\s*=\s*"?([A-Za-z0-9_]+)"?', jql)
        label = re.search(r'labels\s*=\s*"((?:\\.|[^"\\])*)"', jql)
        if not jql or (project is None and label is None):
            return 400, {}, _errors(f"Error in the JQL Query: unsupported query {jql!r}.")
        wanted = label[1].replace('\\"', '"').replace("\\\\", "\\") if label else None
        now = time.monotonic()
        found = [i for i in sorted(self._issues.values(), key=lambda i: i.created)
                 if (project is None or project[1] == self.project) and (wanted is None or wanted in (
                     i.fields.get("labels") or [])) and now - i.created >= self.search_lag_s
                 and i.key not in self._hidden]
        limit = int(body.get("maxResults") or 50)
        return 200, {}, {"issues": [{"id": i.id, "key": i.key, "fields": {}} for i in found[:limit]],
                         "isLast": len(found) <= limit}

    def _comments(self, issue: Issue, method: str, query: dict[str, list[str]],
                  body: Any) -> tuple[int, dict[str, str], Any]:
        if method == "GET":
            comments = list(issue.comments)
            if (query.get("orderBy") or [""])[0] == "-created":
                comments.reverse()
            limit = int((query.get("maxResults") or ["5000"])[0])
            return 200, {}, {"startAt": 0, "maxResults": limit, "total": len(comments), "comments": comments[:limit]}
        if method != "POST":
            return 405, {}, _errors("Method not allowed")
        if not isinstance(body, dict) or not _is_adf(body.get("body")):
            if not isinstance(body, dict) or not body.get("body"):
                return 400, {}, _errors(body="Comment body can not be empty!")
            return 400, {}, _errors("Operation value must be an Atlassian Document")
        comment = {"id": str(next(self._comment_ids)), "body": body["body"],
                   "created": time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime()),
                   "author": {"displayName": self.display_name}}
        issue.comments.append(comment)
        return 201, {}, comment

    def _transitions(self, issue: Issue, method: str, body: Any) -> tuple[int, dict[str, str], Any]:
        available = [t for t in self.workflow if t["to"] != issue.status and issue.status in t.get("from", [
            issue.status])]
        if method == "GET":
            return 200, {}, {"expand": "transitions", "transitions": [
                {"id": t["id"], "name": t["name"], "to": {"name": t["to"]}, "hasScreen": False} for t in available]}
        if method != "POST":
            return 405, {}, _errors("Method not allowed")
        wanted = str(((body or {}).get("transition") or {}).get("id") or "") if isinstance(body, dict) else ""
        chosen = next((t for t in available if t["id"] == wanted), None)
        if chosen is None:
            return 400, {}, _errors(f"Transition id '{wanted}' is not valid for this issue.")
        issue.status = chosen["to"]
        return 204, {}, None

    def _reply(self, handler: BaseHTTPRequestHandler, status: int, extra: dict[str, str], payload: Any) -> None:
        data = b"" if payload is None or status == 204 else json.dumps(payload).encode()
        try:
            handler.send_response(status)
            if data:
                handler.send_header("Content-Type", "application/json;charset=UTF-8")
            handler.send_header("Content-Length", str(len(data)))
            handler.send_header("Connection", "close")
            for name, value in extra.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        handler.close_connection = True
