"""The control channel: the CLI talks to a running engine over a Unix socket.

DuckDB lets one process open a database file for writing, and the running
engine is that process; so a CLI writer (``ispvm maint add``, ``ispvm
deliveries resend``) asks the engine instead. The engine serves a socket
next to its database (``<db>.ctl``; a short path under ``$XDG_RUNTIME_DIR``
or ``/tmp/ispvm-<uid>`` when that is too long for AF_UNIX), mode 0600, and
answers only peers of its own uid (SO_PEERCRED, where the OS has it).

Protocol: one JSON object per line, ``{"op": "maint.add", "args": {...},
"actor": "alice"}``, answered by ``{"ok": true, "result": ...}`` or ``{"ok":
false, "error": "...", "kind": "invalid" | "failed"}`` ("invalid": the
request or its fields were refused; "failed": it could not be done). Requests
are bounded in size and time and a bad one only ever costs its own connection.

``call`` is what the CLI uses: the engine when one answers, else the given
direct function on the database file (the same calendar code: calendar.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import grp
import hashlib
import json
import logging
import os
import pwd
import socket
import stat
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024  # bytes in one request line
MAX_RESPONSE = 32 * 1024 * 1024  # a long list of windows or changes
REQUEST_TIMEOUT_S = 30.0  # real seconds one request may take on the engine
IDLE_TIMEOUT_S = 60.0  # a connection that sends nothing for this long is closed
MAX_CONNECTIONS = 64  # an attached console keeps two open (its snapshot poll and its event stream)
CLIENT_TIMEOUT_S = REQUEST_TIMEOUT_S + 10
# sun_path is 108 bytes on Linux and 104 on the BSDs and macOS, the terminating NUL included.
MAX_SOCKET_PATH = 103

Handler = Callable[[dict[str, Any], str], Awaitable[Any]]


class NoEngine(Exception):
    """No engine answered on any of the database's control sockets."""


class Refused(ValueError):
    """The engine refused the request or its fields (bad input)."""


class ControlError(Exception):
    """The engine could not do it, or the channel broke."""


@dataclasses.dataclass(frozen=True)
class Encoded:
    """A handler's result already encoded as JSON (a cached snapshot): sent as it is."""

    json: bytes


@dataclasses.dataclass
class Stream:
    """A handler's result that is a stream: after ``{"ok": true, "result": {"streaming": true}}`` each item
    goes out as one JSON line until the iterator ends or the peer closes or sends anything."""

    items: AsyncIterator[Any]


# Exception types an answer names so that a client can raise the same kind (a screen catches KeyError).
ERROR_TYPES = ("KeyError", "LookupError", "ValueError", "TimeoutError")


# ---- where the socket is -----------------------------------------------------------

def _fits(path: Path) -> bool:
    return len(os.fsencode(str(path))) <= MAX_SOCKET_PATH


def _short_name(db: Path) -> str:
    return hashlib.sha256(os.fsencode(str(db.resolve()))).hexdigest()[:20] + ".ctl"


def _private_dirs() -> list[Path]:
    dirs = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        dirs.append(Path(runtime) / "ispvm")
    dirs.append(Path("/tmp") / f"ispvm-{os.getuid()}")
    return dirs


def socket_paths(db: Path) -> list[Path]:
    """Where the engine of database ``db`` may serve, in the order it tries them: next to the file, then a
    short name in a private directory (the CLI's environment may differ from the engine's: it tries all)."""
    db = Path(os.path.abspath(db))
    out = [db.with_name(db.name + ".ctl")] if _fits(db.with_name(db.name + ".ctl")) else []
    out += [d / _short_name(db) for d in _private_dirs() if _fits(d / _short_name(db))]
    return out


def _private_dir(path: Path) -> None:
    """Create (0700) or accept a directory that is ours alone: never a symlink, another's, or open to others."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=False)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise ControlError(f"{path} is not a private directory of this user: not serving a control socket there")


def _clear_stale(path: Path) -> None:
    """A socket file left by an engine that crashed is replaced. The engine holds the database's lock, so no
    live engine of the same database can be behind it; anything that is not a socket is left alone."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlError(f"{path} exists and is not a socket: not replacing it (remove it by hand)")
    path.unlink()
    log.info("replaced a stale control socket %s", path)


def peer_creds(sock: socket.socket) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of the process at the other end of a Unix socket (None where the OS cannot say)."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return None
    pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i")))
    return pid, uid, gid


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (None where the OS cannot say)."""
    creds = peer_creds(sock)
    return None if creds is None else creds[1]


def peer_groups(pid: int, uid: int, gid: int) -> set[int]:
    """The peer process's groups: its own list in /proc (what it really holds), else its user's groups."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                return {gid, *(int(g) for g in line.split()[1:])}
    try:
        return set(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    except (KeyError, OSError):
        return {gid}


def group_id(name: str) -> int:
    """The gid of ``[console].control_group``; a clear error when the group does not exist."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ControlError(f"[console].control_group: no group named {name!r} on this host") from None


# ---- the server (engine side) ----------------------------------------------------------

_PLAIN = frozenset({str, int, float, bool, type(None)})
_FIELDS: dict[type, tuple[str, ...]] = {}  # a dataclass's field names, read once (a snapshot holds thousands)


def jsonable(value: Any) -> Any:
    kind = type(value)
    if kind in _PLAIN:
        return value
    names = _FIELDS.get(kind)
    if names is None and dataclasses.is_dataclass(kind):
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(kind))
    if names is not None:
        return {name: jsonable(getattr(value, name)) for name in names}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


def _error_type(exc: BaseException) -> str | None:
    """The most specific of ERROR_TYPES the exception is (Refused is a ValueError), else None."""
    return next((c.__name__ for c in type(exc).__mro__ if c.__name__ in ERROR_TYPES), None)


def _reply(ok: bool, value: Any = None, *, kind: str = "failed", error_type: str | None = None) -> bytes:
    if ok and isinstance(value, Encoded):
        return b'{"ok": true, "result": ' + value.json + b"}\n"
    body = {"ok": True, "result": jsonable(value)} if ok else {"ok": False, "error": str(value), "kind": kind}
    if not ok and error_type is not None:
        body["type"] = error_type
    return (json.dumps(body, ensure_ascii=False) + "\n").encode()


Authorize = Callable[[str, dict[str, Any], Any, Any], tuple[str | None, str | None]]


class ControlServer:
    """Serves ``ops`` (name -> coroutine of (args, actor)) on a Unix socket, on the engine's loop."""

    def __init__(self, db: Path, ops: dict[str, Handler], *, check_actor: Callable[[Any], str] | None = None,
                 group: str | None = None, authorize: Authorize | None = None,
                 role_of: Callable[[Any], str] | None = None) -> None:
        self.db = Path(os.path.abspath(db))  # a relative path would never be "next to the database"
        self.ops = ops
        self.check_actor = check_actor
        # [roles] (engine/roles.py): (op, args, actor, peer) -> (refusal, the actor to record instead)
        self.authorize = authorize
        self.role_of = role_of  # the role a peer holds, for ``whoami``
        self.group = group  # [console].control_group: its members may use the socket too
        self._gid: int | None = None
        self.path: Path | None = None
        self._server: asyncio.AbstractServer | None = None
        self._inode: tuple[int, int] | None = None
        self._conns: set[asyncio.Task[Any]] = set()
        self.requests = 0
        self.refused = 0

    async def start(self) -> Path:
        candidates = socket_paths(self.db)
        if not candidates:
            raise ControlError(f"no usable control socket path for {self.db}")
        self._gid = group_id(self.group) if self.group else None
        last: Exception | None = None
        for path in candidates:
            try:
                if path.parent != self.db.parent:
                    _private_dir(path.parent)
                _clear_stale(path)
                self._server = await asyncio.start_unix_server(self._serve, path=str(path), limit=MAX_REQUEST)
            except (OSError, ControlError) as exc:
                last = exc
                log.warning("control socket %s: %s", path, exc)
                continue
            if self._gid is not None:
                try:
                    os.chown(path, -1, self._gid)  # allowed when this user is a member of the group
                except OSError as exc:
                    self._server.close()
                    raise ControlError(f"[console].control_group {self.group!r}: cannot give the control socket "
                                       f"to that group ({exc.strerror}): is this user a member?") from None
                os.chmod(path, 0o660)
            else:
                os.chmod(path, 0o600)  # the umask is 077 under `ispvm` already; this holds under any caller
            st = os.lstat(path)
            self._inode = (st.st_dev, st.st_ino)
            self.path = path
            return path
        raise ControlError(f"cannot serve a control socket for {self.db}: {last}")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.wait(self._conns, timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:  # ours: never remove another process's socket
                    self.path.unlink()
            self.path = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            await self._conversation(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # never let one connection's trouble reach the engine
            log.exception("control connection failed")
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)

    async def _conversation(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        creds = peer_creds(sock) if sock is not None else None
        if creds is not None and not self._admits(*creds):
            self.refused += 1
            log.warning("control socket: refused a peer of uid %d", creds[1])
            writer.write(_reply(False, "refused: not this engine's user", kind="invalid"))
            await writer.drain()
            return
        if len(self._conns) > MAX_CONNECTIONS:
            writer.write(_reply(False, "busy: too many control connections, try again"))
            await writer.drain()
            return
        who = None
        if self.authorize is not None:
            if creds is None:  # roles need to know who is asking: fail closed
                writer.write(_reply(False, "refused: this system cannot tell who is asking", kind="forbidden"))
                await writer.drain()
                return
            from ispvm_tui.engine.roles import peer

            who = await asyncio.to_thread(peer, *creds)  # user and group names: NSS may be slow
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT_S)
            except TimeoutError:
                return
            except (ValueError, asyncio.LimitOverrunError):  # longer than MAX_REQUEST: cannot resynchronise
                self.refused += 1
                writer.write(_reply(False, f"request too large (at most {MAX_REQUEST} bytes a line)",
                                    kind="invalid"))
                await writer.drain()
                return
            if not line:
                return
            if not line.strip():
                continue
            answer = await self._answer(line, who)
            if isinstance(answer, Stream):
                await self._stream(answer, reader, writer)
                return
            writer.write(answer)
            await writer.drain()

    def _admits(self, pid: int, uid: int, gid: int) -> bool:
        if uid == os.getuid():
            return True
        return self._gid is not None and self._gid in peer_groups(pid, uid, gid)

    async def _stream(self, stream: Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Send the stream's items until it ends or the peer closes (or sends anything: a stream is one-way).
        ``drain`` waits for a slow peer, so what piles up is the stream's own (bounded) backlog."""
        async def pump() -> None:
            writer.write(_reply(True, {"streaming": True}))
            await writer.drain()
            async for item in stream.items:
                writer.write((json.dumps(jsonable(item), ensure_ascii=False) + "\n").encode())
                await writer.drain()

        sending = asyncio.ensure_future(pump())
        closing = asyncio.ensure_future(reader.read(1))
        try:
            await asyncio.wait({sending, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sending, closing):
                task.cancel()
            for outcome in await asyncio.gather(sending, closing, return_exceptions=True):
                if isinstance(outcome, Exception) and not isinstance(outcome, ConnectionError):
                    log.error("control stream failed: %s: %s", type(outcome).__name__, outcome)
            aclose = getattr(stream.items, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _answer(self, line: bytes, who: Any = None) -> bytes | Stream:
        self.requests += 1
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            self.refused += 1
            return _reply(False, f"not a JSON line: {exc}", kind="invalid")
        if not isinstance(req, dict) or not isinstance(req.get("op"), str):
            self.refused += 1
            return _reply(False, 'expected {"op": NAME, "args": {...}, "actor": NAME}', kind="invalid")
        op, args, actor = req["op"], req.get("args", {}), req.get("actor")
        if op == "whoami":  # who the engine takes this peer for, and with which role (an attached console asks)
            user = who.user if who is not None else str(actor)
            role = self.role_of(who) if self.role_of is not None and who is not None else "admin"
            return _reply(True, {"user": user, "role": role})
        handler = self.ops.get(op)
        if handler is None:
            self.refused += 1
            return _reply(False, f"unknown op {op!r} (ops: {', '.join(sorted(self.ops))})", kind="invalid")
        if not isinstance(args, dict):
            self.refused += 1
            return _reply(False, "args: expected an object", kind="invalid")
        if self.authorize is not None:
            refusal, recorded = self.authorize(op, args, actor, who)
            if refusal is not None:
                self.refused += 1
                log.warning("control socket: %s", refusal)
                return _reply(False, refusal, kind="forbidden")
            if recorded is not None:
                actor = recorded
        try:
            actor = self.check_actor(actor) if self.check_actor is not None else str(actor)
            result = await asyncio.wait_for(handler(args, actor), REQUEST_TIMEOUT_S)
        except (ValueError, LookupError) as exc:
            return _reply(False, str(exc).strip("'\""), kind="invalid", error_type=_error_type(exc))
        except TimeoutError:
            return _reply(False, f"{op} took longer than {REQUEST_TIMEOUT_S:.0f}s (it may still complete: look "
                                 "before trying again)")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            from ispvm_tui import redact

            log.exception("control op %s failed", op)
            return _reply(False, redact.scrub(f"{op} failed: {type(exc).__name__}: {exc}"),
                          error_type=_error_type(exc))
        if isinstance(result, Stream):
            return result
        try:
            return _reply(True, result)
        except (TypeError, ValueError) as exc:
            log.error("control op %s: result not JSON: %s", op, exc)
            return _reply(False, f"{op}: the result could not be encoded")


# ---- the client (CLI side) ---------------------------------------------------------------

def _server_uids(db: Path) -> set[int]:
    """Whom a client believes: itself, and the owner of the database (an engine run under a service user,
    reached through [console].control_group)."""
    uids = {os.getuid()}
    with contextlib.suppress(OSError):
        uids.add(os.stat(db).st_uid)
    return uids


def connect(path: Path, timeout: float, db: Path | None = None) -> socket.socket | None:
    """A connection to the engine at ``path`` (None: nobody there), refusing one served by a stranger."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        sock.close()
        return None  # nobody there (a stale file from a crashed engine counts as nobody)
    except OSError as exc:
        sock.close()
        raise ControlError(f"control socket {path}: {exc}") from None
    uid = peer_uid(sock)
    if uid is not None and uid not in (_server_uids(db) if db is not None else {os.getuid()}):
        sock.close()
        raise ControlError(f"control socket {path} is served by uid {uid}, not by you: not talking to it")
    return sock


def _read_line(sock: socket.socket, path: Path) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise ControlError(f"the engine did not answer within {sock.gettimeout():.0f}s ({path})") from None
        if not chunk:
            raise ControlError(f"the engine closed the control connection without an answer ({path})")
        chunks.append(chunk)
        size += len(chunk)
        if b"\n" in chunk:
            return b"".join(chunks).split(b"\n", 1)[0]
        if size > MAX_RESPONSE:
            raise ControlError("the engine's answer is too large")


def request_line(op: str, args: dict[str, Any], actor: str) -> bytes:
    line = (json.dumps({"op": op, "args": args, "actor": actor}, ensure_ascii=False) + "\n").encode()
    if len(line) > MAX_REQUEST:
        raise Refused(f"request too large (at most {MAX_REQUEST} bytes)")
    return line


def decode_answer(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        answer = json.loads(raw)
    except ValueError:
        raise ControlError(f"the engine's answer is not JSON ({path})") from None
    if not isinstance(answer, dict):
        raise ControlError(f"the engine's answer is not an object ({path})")
    return answer


def ask(db: Path, op: str, args: dict[str, Any], actor: str, *, timeout: float = CLIENT_TIMEOUT_S) -> dict[str, Any]:
    """The engine's whole answer (``ok``, ``result`` or ``error``/``kind``/``type``); NoEngine, ControlError."""
    line = request_line(op, args, actor)
    for path in socket_paths(db):
        sock = connect(path, timeout, db)
        if sock is None:
            continue
        with sock:
            try:
                sock.sendall(line)
            except OSError as exc:
                raise ControlError(f"control socket {path}: {exc}") from None
            raw = _read_line(sock, path)
        return decode_answer(raw, path)
    raise NoEngine(str(db))


def request(db: Path, op: str, args: dict[str, Any], actor: str, *, timeout: float = CLIENT_TIMEOUT_S) -> Any:
    """Ask the engine serving ``db``. Raises NoEngine when none answers, Refused for bad input, ControlError."""
    answer = ask(db, op, args, actor, timeout=timeout)
    if answer.get("ok"):
        return answer.get("result")
    message = str(answer.get("error") or "refused")
    if answer.get("kind") == "invalid":
        raise Refused(message)
    raise ControlError(message)


def call(db: Path, op: str, args: dict[str, Any], actor: str, direct: Callable[[], Any]) -> tuple[Any, bool]:
    """The engine's answer when one serves ``db``, else ``direct()`` (run on the database file), as plain
    JSON-shaped data either way; and whether the engine answered."""
    try:
        return request(db, op, args, actor), True
    except NoEngine:
        return jsonable(direct()), False
