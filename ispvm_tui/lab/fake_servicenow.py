"""A small ServiceNow Table API on loopback, for tests and the lab.

It speaks the shapes in ../shared/spec/integrations.md: ``/api/now/table/incident`` (create, read,
update, look up by encoded query; a Resolved record set back to an active state counts a
``reopen_count``), ``sys_journal_field`` (the work notes each record collected) and
``sys_user_group``; Basic, Bearer or ``x-sn-apikey`` auth; errors as
``{"error": {"message", "detail"}, "status": "failure"}``. Records live in memory. Each method and
path can be scripted to fail (``Fail``), to answer slowly (``Slow``) or to do the work and then lose
the answer (``Lose``: the connection is dropped, or stalls past the client's timeout first).
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

TABLE_PREFIX = "/api/now/table/"
MAX_BODY_BYTES = 1 << 20
_PRIORITY = {("1", "1"): "1", ("1", "2"): "2", ("2", "1"): "2", ("1", "3"): "3", ("2", "2"): "3", ("3", "1"): "3",
             ("2", "3"): "4", ("3", "2"): "4", ("3", "3"): "5"}
_TERM = re.compile(r"^(?P<field>[a-z_][a-z0-9_.]*?)(?P<op>!=|=|LIKE|STARTSWITH)(?P<value>.*)$", re.S)
_JOURNAL_FIELDS = ("work_notes", "comments")
_ACTIVE_STATES = ("1", "2", "3")  # New, In Progress, On Hold; 6 Resolved, 7 Closed, 8 Canceled


@dataclass(frozen=True)
class Fail:
    """Answer with this status and a ServiceNow error body (without touching any record)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    message: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Slow:
    """Wait this long, then handle the request as usual (a client with a shorter timeout gives up first)."""

    seconds: float


@dataclass(frozen=True)
class Lose:
    """Do the work, then lose the answer: stall ``stall_s`` seconds, then drop the connection."""

    stall_s: float = 0.0


Action = int | Fail | Slow | Lose


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    json: Any
    status: int  # what the fake answered (0: it lost the answer)
    at: float

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


_DEFAULT_MESSAGES = {
    400: ("Bad Request", "The request could not be processed"),
    401: ("User Not Authenticated", "Required to provide Auth information"),
    403: ("Operation Failed", "ACL Exception Insert Failed due to security constraints"),
    404: ("No Record found", "Record doesn't exist or ACL restricts the record retrieval"),
    429: ("Rate limit exceeded", "Too many requests for this user; retry later"),
    500: ("Internal Server Error", "Transaction cancelled"),
    503: ("Service Unavailable", "The instance is unavailable"),
}


def error_body(status: int, message: str | None = None, detail: str | None = None) -> dict[str, Any]:
    default = _DEFAULT_MESSAGES.get(status, ("Error", None))
    return {"error": {"message": message or default[0], "detail": detail if detail is not None else default[1]},
            "status": "failure"}


def split_query(query: str) -> list[tuple[str, str, str]]:
    """``a=1^bLIKEx`` as [(field, op, value)]; ``^^`` is a literal caret; ORDERBY terms are ignored."""
    terms, current, i = [], "", 0
    while i < len(query):
        if query.startswith("^^", i):
            current, i = current + "^", i + 2
        elif query[i] == "^":
            terms.append(current)
            current, i = "", i + 1
        else:
            current, i = current + query[i], i + 1
    terms.append(current)
    out = []
    for term in terms:
        if not term or term.startswith(("ORDERBY", "ORDERBYDESC")):
            continue
        m = _TERM.match(term)
        if m is None:
            raise ValueError(f"unsupported query term {term!r}")
        out.append((m["field"], m["op"], m["value"]))
    return out


def _matches(record: dict[str, Any], terms: list[tuple[str, str, str]]) -> bool:
    for name, op, value in terms:
        have = str(record.get(name, ""))
        if op == "=" and have != value:
            return False
        if op == "!=" and have == value:
            return False
        if op == "LIKE" and value.lower() not in have.lower():
            return False
        if op == "STARTSWITH" and not have.lower().startswith(value.lower()):
            return False
    return True


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeServiceNow

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client gave up under a slow answer: that is what the test wanted
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeServiceNow:
    def __init__(self, *, auth: Literal["basic", "bearer", "apikey"] = "basic", user: str | None = "ispvm",
                 secret: str = "sn-test-password", groups: list[str] | tuple[str, ...] = (),
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.auth = auth
        self.user = user
        self.secret = secret
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[Request] = []
        self._scripts: list[tuple[str, str, deque[Action]]] = []
        self._incidents: dict[str, dict[str, Any]] = {}
        self._journal: list[dict[str, Any]] = []
        self._groups: dict[str, dict[str, Any]] = {}
        self._next_number = 10001
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        for name in groups:
            self.add_group(name)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.fake = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-servicenow", daemon=True)
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

    def __enter__(self) -> FakeServiceNow:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("fake ServiceNow not started")
        return f"http://{self.host}:{self.port}"

    # --- scripting and inspection -------------------------------------------------------------

    def script(self, method: str, path: str, actions: list[Action]) -> None:
        """The next requests with this method and path get these actions, then normal answers again.

        ``path`` is exact, or ends with ``/`` to match anything below it (``/api/now/table/incident/``
        is every record)."""
        with self._lock:
            self._scripts.append((method.upper(), path, deque(actions)))

    def add_group(self, name: str) -> str:
        sys_id = uuid.uuid4().hex
        with self._lock:
            self._groups[sys_id] = {"sys_id": sys_id, "name": name, "active": "true"}
        return sys_id

    def delete_incident(self, sys_id: str) -> None:
        with self._lock:
            self._incidents.pop(sys_id, None)

    def requests(self, method: str | None = None, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self._requests if (method is None or r.method == method.upper())
                    and (path is None or r.path == path or (path.endswith("/") and r.path.startswith(path)))]

    def incidents(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._incidents.values()]

    def work_notes(self, sys_id: str) -> list[str]:
        with self._lock:
            return [j["value"] for j in self._journal if j["element_id"] == sys_id and j["element"] == "work_notes"]

    def wait_for(self, predicate: Callable[[FakeServiceNow], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            with self._changed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return predicate(self)
                self._changed.wait(min(remaining, 0.1))

    # --- request handling (server threads) ----------------------------------------------------

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.auth == "apikey":
            given = headers.get("x-sn-apikey", "")
            return hmac.compare_digest(given.encode(), self.secret.encode())
        given = headers.get("authorization", "")
        if self.auth == "bearer":
            wanted = f"Bearer {self.secret}"
        else:
            wanted = "Basic " + base64.b64encode(f"{self.user}:{self.secret}".encode()).decode()
        return hmac.compare_digest(given.encode(), wanted.encode())

    def _scripted(self, method: str, path: str) -> Action | None:
        with self._lock:
            for m, p, actions in self._scripts:
                if m == method and actions and (path == p or (p.endswith("/") and path.startswith(p))):
                    return actions.popleft()
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        try:
            length = int(handler.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        raw = handler.rfile.read(length) if 0 < length <= MAX_BODY_BYTES else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        parts = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        body: Any = None
        body_ok = True
        if raw:
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                body_ok = False
        method = handler.command
        lose: Lose | None = None
        if not self._authorized(headers):
            status, payload, extra = 401, error_body(401), {"WWW-Authenticate": 'Basic realm="Service-now"'}
        else:
            action = self._scripted(method, parts.path)
            if isinstance(action, Slow):
                self._stopping.wait(action.seconds)
                action = None
            if isinstance(action, Lose):
                lose, action = action, None
            if isinstance(action, int):
                action = Fail(action)
            if isinstance(action, Fail):
                status, payload, extra = action.status, error_body(action.status, action.message,
                                                                   action.detail), dict(action.headers)
            elif not body_ok or (raw and not isinstance(body, dict)):
                status, payload, extra = 400, error_body(400, "Exception while reading request",
                                                         "The payload is not valid JSON."), {}
            else:
                with self._lock:
                    status, payload, extra = self._route(method, parts.path, query, body or {})
        record = Request(method, parts.path, query, headers, body, 0 if lose else status, time.time())
        with self._changed:
            self._requests.append(record)
            self._changed.notify_all()
        if lose is not None:
            if lose.stall_s:
                self._stopping.wait(lose.stall_s)
            handler.close_connection = True  # no answer at all: the client sees the connection close
            return
        self._respond(handler, status, payload, extra)

    @staticmethod
    def _respond(handler: BaseHTTPRequestHandler, status: int, payload: Any, extra: dict[str, str]) -> None:
        data = b"" if status == 204 else json.dumps(payload).encode()
        try:
            handler.send_response(status)
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

    # The rest runs under self._lock.

    def _route(self, method: str, path: str, query: dict[str, str],
               body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if not path.startswith(TABLE_PREFIX):
            return 400, error_body(400, "Requested URI does not represent any resource", ""), {}
        table, _, sys_id = path[len(TABLE_PREFIX):].partition("/")
        rows: dict[str, dict[str, Any]]
        if table == "incident":
            rows = self._incidents
        elif table == "sys_journal_field":
            rows = {j["sys_id"]: j for j in self._journal}
        elif table == "sys_user_group":
            rows = self._groups
        else:
            return 400, error_body(400, f"Invalid table {table}", ""), {}
        writable = table == "incident"
        if not sys_id:
            if method == "GET":
                return self._list(rows, query)
            if method == "POST" and writable:
                return self._create(body)
            return 405, error_body(405, "Method not Supported", f"{method} is not supported here"), {}
        record = rows.get(sys_id)
        if record is None:
            return 404, error_body(404), {}
        if method == "GET":
            return 200, {"result": self._fields(record, query)}, {}
        if method in ("PATCH", "PUT") and writable:
            return self._update(record, body, query)
        if method == "DELETE" and writable:
            del rows[sys_id]
            return 204, None, {}
        return 405, error_body(405, "Method not Supported", f"{method} is not supported here"), {}

    @staticmethod
    def _fields(record: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        shown = {k: ("" if k in _JOURNAL_FIELDS else v) for k, v in record.items()}  # journal fields read empty
        wanted = [f.strip() for f in query.get("sysparm_fields", "").split(",") if f.strip()]
        return {k: shown.get(k, "") for k in wanted} if wanted else shown

    def _list(self, rows: dict[str, dict[str, Any]], query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        try:
            terms = split_query(query.get("sysparm_query", ""))
            limit = int(query.get("sysparm_limit") or 10000)
            offset = int(query.get("sysparm_offset") or 0)
        except ValueError as exc:
            return 400, error_body(400, "Invalid query", str(exc)), {}
        found = [r for r in rows.values() if _matches(r, terms)]
        page = found[offset: offset + limit]
        return 200, {"result": [self._fields(r, query) for r in page]}, {"X-Total-Count": str(len(found))}

    def _journal_add(self, sys_id: str, element: str, value: Any) -> None:
        if value in (None, ""):
            return
        self._journal.append({"sys_id": uuid.uuid4().hex, "element_id": sys_id, "element": element,
                              "name": "incident", "value": str(value), "sys_created_on": _stamp(),
                              "sys_created_by": self.user or "api"})

    def _create(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        sys_id = uuid.uuid4().hex
        number = f"INC{self._next_number:07d}"
        self._next_number += 1
        now = _stamp()
        record: dict[str, Any] = {
            "sys_id": sys_id, "number": number, "state": "1", "short_description": "", "description": "",
            "category": "inquiry", "subcategory": "", "urgency": "3", "impact": "3", "assignment_group": "",
            "caller_id": "", "correlation_id": "", "correlation_display": "", "close_code": "", "close_notes": "",
            "work_notes": "", "comments": "", "reopen_count": "0", "sys_created_on": now, "sys_updated_on": now,
        }
        for key, value in body.items():
            if key in ("sys_id", "number"):
                continue
            if key in _JOURNAL_FIELDS:
                self._journal_add(sys_id, key, value)
                continue
            record[key] = "" if value is None else str(value)
        record["priority"] = _PRIORITY.get((record["urgency"], record["impact"]), "5")
        self._incidents[sys_id] = record
        return 201, {"result": self._fields(record, {})}, {"Location": f"{self.url}{TABLE_PREFIX}incident/{sys_id}"}

    def _update(self, record: dict[str, Any], body: dict[str, Any],
                query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        merged = {**record, **{k: ("" if v is None else str(v)) for k, v in body.items() if k not in _JOURNAL_FIELDS}}
        if merged.get("state") in ("6", "7"):
            missing = [label for key, label in (("close_code", "Resolution code"), ("close_notes", "Resolution notes"))
                       if not merged.get(key)]
            if missing:
                return 403, error_body(403, "Operation Failed", "Data Policy Exception: \n\tThe following fields are "
                                       f"mandatory: {', '.join(missing)}\n"), {}
        for key in _JOURNAL_FIELDS:
            self._journal_add(record["sys_id"], key, body.get(key))
        if record.get("state") == "6" and merged.get("state") in _ACTIVE_STATES:
            merged["reopen_count"] = str(int(record.get("reopen_count") or 0) + 1)  # as the incident reopen rule does
        record.update({k: v for k, v in merged.items() if k not in ("sys_id", "number")})
        record["priority"] = _PRIORITY.get((record["urgency"], record["impact"]), "5")
        record["sys_updated_on"] = _stamp()
        return 200, {"result": self._fields(record, query)}, {}
