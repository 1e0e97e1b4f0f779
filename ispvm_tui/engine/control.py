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
import hashlib
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024  # bytes in one request line
MAX_RESPONSE = 32 * 1024 * 1024  # a long list of windows or changes
REQUEST_TIMEOUT_S = 30.0  # real seconds one request may take on the engine
IDLE_TIMEOUT_S = 60.0  # a connection that sends nothing for this long is closed
MAX_CONNECTIONS = 16
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


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (None where the OS cannot say)."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return None
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i")))
    return uid


# ---- the server (engine side) ----------------------------------------------------------

def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


def _reply(ok: bool, value: Any = None, *, kind: str = "failed") -> bytes:
    body = {"ok": True, "result": jsonable(value)} if ok else {"ok": False, "error": str(value), "kind": kind}
    return (json.dumps(body, ensure_ascii=False) + "\n").encode()


class ControlServer:
    """Serves ``ops`` (name -> coroutine of (args, actor)) on a Unix socket, on the engine's loop."""

    def __init__(self, db: Path, ops: dict[str, Handler], *, check_actor: Callable[[Any], str] | None = None) -> None:
        self.db = Path(db)
        self.ops = ops
        self.check_actor = check_actor
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
        uid = peer_uid(sock) if sock is not None else None
        if uid is not None and uid != os.getuid():
            self.refused += 1
            log.warning("control socket: refused a peer of uid %d", uid)
            writer.write(_reply(False, "refused: not this engine's user", kind="invalid"))
            await writer.drain()
            return
        if len(self._conns) > MAX_CONNECTIONS:
            writer.write(_reply(False, "busy: too many control connections, try again"))
            await writer.drain()
            return
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
            writer.write(await self._answer(line))
            await writer.drain()

    async def _answer(self, line: bytes) -> bytes:
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
        handler = self.ops.get(op)
        if handler is None:
            self.refused += 1
            return _reply(False, f"unknown op {op!r} (ops: {', '.join(sorted(self.ops))})", kind="invalid")
        if not isinstance(args, dict):
            self.refused += 1
            return _reply(False, "args: expected an object", kind="invalid")
        try:
            actor = self.check_actor(actor) if self.check_actor is not None else str(actor)
            result = await asyncio.wait_for(handler(args, actor), REQUEST_TIMEOUT_S)
        except (ValueError, LookupError) as exc:
            return _reply(False, str(exc).strip("'\""), kind="invalid")
        except TimeoutError:
            return _reply(False, f"{op} took longer than {REQUEST_TIMEOUT_S:.0f}s (it may still complete: look "
                                 "before trying again)")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            from ispvm_tui import redact

            log.exception("control op %s failed", op)
            return _reply(False, redact.scrub(f"{op} failed: {type(exc).__name__}: {exc}"))
        try:
            return _reply(True, result)
        except (TypeError, ValueError) as exc:
            log.error("control op %s: result not JSON: %s", op, exc)
            return _reply(False, f"{op}: the result could not be encoded")


# ---- the client (CLI side) ---------------------------------------------------------------

def _connect(path: Path, timeout: float) -> socket.socket | None:
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
    if uid is not None and uid != os.getuid():
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


def request(db: Path, op: str, args: dict[str, Any], actor: str, *, timeout: float = CLIENT_TIMEOUT_S) -> Any:
    """Ask the engine serving ``db``. Raises NoEngine when none answers, Refused for bad input, ControlError."""
    line = (json.dumps({"op": op, "args": args, "actor": actor}) + "\n").encode()
    if len(line) > MAX_REQUEST:
        raise Refused(f"request too large (at most {MAX_REQUEST} bytes)")
    for path in socket_paths(db):
        sock = _connect(path, timeout)
        if sock is None:
            continue
        with sock:
            try:
                sock.sendall(line)
            except OSError as exc:
                raise ControlError(f"control socket {path}: {exc}") from None
            raw = _read_line(sock, path)
        try:
            answer = json.loads(raw)
        except ValueError:
            raise ControlError(f"the engine's answer is not JSON ({path})") from None
        if answer.get("ok"):
            return answer.get("result")
        message = str(answer.get("error") or "refused")
        if answer.get("kind") == "invalid":
            raise Refused(message)
        raise ControlError(message)
    raise NoEngine(str(db))


def call(db: Path, op: str, args: dict[str, Any], actor: str, direct: Callable[[], Any]) -> tuple[Any, bool]:
    """The engine's answer when one serves ``db``, else ``direct()`` (run on the database file), as plain
    JSON-shaped data either way; and whether the engine answered."""
    try:
        return request(db, op, args, actor), True
    except NoEngine:
        return jsonable(direct()), False
