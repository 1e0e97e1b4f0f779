"""EngineAPI over the control socket: a console attached to an engine running in another process.

``AttachedEngine(database)`` is what ``ispvm attach`` hands the console instead of an in-process engine.
It keeps the last snapshot in memory, so ``snapshot()`` never blocks: a background thread asks
``api.snapshot`` with the version it holds about once a second, and at once after an event, and decodes
a new one only when the engine has a new one. ``subscribe`` keeps one connection reading ``api.events``
(reconnecting with backoff when the engine restarts). Every action is ``api.call`` on a small thread pool,
its result rebuilt from the Protocol's annotation (``Future[X]`` -> X) by ``wire_types.from_jsonable``:
the actions are generated from the EngineAPI Protocol, so a method added there later works here as it is.

The actor of every request is this console's; the engine records it for the actions it does (an ack).
Never imports Textual.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ispvm_tui.engine import control
from ispvm_tui.engine.api import EngineAPI, EngineEvent, Snapshot
from ispvm_tui.engine.api_ops import callable_methods
from ispvm_tui.engine.calendar import check_actor
from ispvm_tui.engine.wire_types import from_jsonable, future_result_type

log = logging.getLogger(__name__)

REFRESH_S = 1.0  # how often the snapshot is asked for when no event says it changed
CALL_WORKERS = 4  # actions at once (each its own short connection)
BACKOFF_MAX_S = 5.0
EVENT_REFRESH_WAIT_S = 1.0  # an event waits at most this long for the snapshot that shows it
# What an engine's error names -> what is raised here (the screens catch KeyError and ValueError).
RAISED: dict[str, type[Exception]] = {"KeyError": KeyError, "LookupError": LookupError, "ValueError": ValueError}


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry / no USER in a bare container
        return "unknown"


def raised_for(answer: dict[str, Any]) -> Exception:
    """The exception an ``{"ok": false, ...}`` answer stands for."""
    message = str(answer.get("error") or "refused by the engine")
    kind = RAISED.get(str(answer.get("type")))
    if kind is None and answer.get("kind") == "invalid":
        kind = ValueError
    return kind(message) if kind is not None else control.ControlError(message)


class _Channel:
    """One connection to the engine of a database, kept open between requests; reopened when it breaks."""

    def __init__(self, db: Path, actor: str, timeout: float) -> None:
        self.db, self.actor, self.timeout = db, actor, timeout
        self.sock: socket.socket | None = None
        self.path = db
        self._buf = b""

    def open(self) -> None:
        self.close()
        for path in control.socket_paths(self.db):
            sock = control.connect(path, self.timeout, self.db)
            if sock is not None:
                self.sock, self.path = sock, path
                return
        raise control.NoEngine(str(self.db))

    def send(self, op: str, args: dict[str, Any]) -> None:
        if self.sock is None:
            self.open()
        assert self.sock is not None
        try:
            self.sock.sendall(control.request_line(op, args, self.actor))
        except OSError as exc:
            self.close()
            raise control.ControlError(f"the engine's control connection broke: {exc}") from None

    def has_line(self) -> bool:
        return b"\n" in self._buf

    def read_answer(self, timeout: float | None) -> dict[str, Any]:
        """The next line as an object; ControlError (and closed) when the connection ends or breaks."""
        sock = self.sock
        if sock is None:
            raise control.ControlError("not connected")
        try:
            sock.settimeout(timeout)
            while b"\n" not in self._buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise control.ControlError("the engine closed the control connection")
                self._buf += chunk
                if len(self._buf) > control.MAX_RESPONSE:
                    raise control.ControlError("the engine's answer is too large")
        except (OSError, control.ControlError) as exc:
            self.close()
            if isinstance(exc, TimeoutError):
                raise control.ControlError(f"the engine did not answer within {timeout:.0f}s") from None
            raise control.ControlError(str(exc) if isinstance(exc, control.ControlError)
                                       else f"the engine's control connection broke: {exc}") from None
        line, self._buf = self._buf.split(b"\n", 1)
        return control.decode_answer(line, self.path)

    def ask(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        self.send(op, args)
        return self.read_answer(self.timeout)

    def shutdown(self) -> None:
        """Wake a thread blocked reading (from another thread); close() is then the reader's."""
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        sock, self.sock, self._buf = self.sock, None, b""
        if sock is not None:
            sock.close()


class _EventStream:
    """One subscription: a thread reading ``api.events`` and calling ``callback`` for each event."""

    def __init__(self, owner: AttachedEngine, callback: Callable[[EngineEvent], None]) -> None:
        self.owner, self.callback = owner, callback
        self.stopped = threading.Event()
        self.channel = _Channel(owner.database, owner.actor, owner.timeout)
        self.thread = threading.Thread(target=self._run, name="ispvm-attach-events", daemon=True)
        self.connected = threading.Event()  # the stream is open now (tests wait for it)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.channel.shutdown()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=2)

    def _run(self) -> None:
        backoff = 0.0
        while not self.stopped.is_set():
            try:
                self._read()
                backoff = 0.0  # a stream that was open and ended: the engine stopped; try again soon
            except (control.NoEngine, control.ControlError, OSError, ValueError) as exc:
                log.debug("event stream: %s", exc)
            finally:
                self.connected.clear()
                self.channel.close()
            if self.stopped.wait(backoff):
                break
            backoff = min(BACKOFF_MAX_S, max(0.2, backoff * 2))

    def _read(self) -> None:
        self.channel.open()
        self.channel.send("api.events", {})
        first = self.channel.read_answer(self.owner.timeout)
        if not first.get("ok"):
            raise raised_for(first)
        self.connected.set()
        self.owner.refresh_soon()  # what happened while it was away is in the next snapshot
        while not self.stopped.is_set():
            raw = self.channel.read_answer(None)
            event = from_jsonable(EngineEvent, raw, "event")
            if not self.channel.has_line():  # a burst: one refresh for all of it
                self.owner.refresh_and_wait(EVENT_REFRESH_WAIT_S)
            try:
                self.callback(event)
            except Exception:  # a front-end's bug must not stop the stream
                log.exception("event subscriber failed")


class AttachedEngine:
    """EngineAPI of the engine serving ``database``, over its control socket. Call ``detach()`` when done."""

    def __init__(self, database: Path, *, actor: str | None = None, refresh_s: float = REFRESH_S,
                 workers: int = CALL_WORKERS, timeout: float = control.CLIENT_TIMEOUT_S) -> None:
        self.database = Path(database)
        self.actor = check_actor(actor if actor is not None else os_user())
        self.refresh_s = refresh_s
        self.timeout = timeout
        self._lock = threading.Condition()
        self._snapshot: Snapshot | None = None
        self._version: str | None = None
        self._error: str | None = None
        self._lost_at: float | None = None
        self._asked = 0  # refresh_and_wait's requests, numbered
        self._served = 0  # the last request a finished snapshot round began after
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._streams: list[_EventStream] = []
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ispvm-attach-call")
        self._thread = threading.Thread(target=self._snapshot_loop, name="ispvm-attach-snapshot", daemon=True)
        self._thread.start()

    # ---- snapshots ------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The last snapshot received; raises while none has arrived yet or while the engine is lost (the
        console shows that in its status line and keeps showing the last state)."""
        with self._lock:
            snap, error, lost_at = self._snapshot, self._error, self._lost_at
        if snap is None:
            raise control.ControlError(f"connecting to the engine of {self.database}…" +
                                       (f" ({error})" if error else ""))
        if error is not None:
            when = time.strftime("%H:%M:%S", time.localtime(lost_at)) if lost_at else "?"
            raise control.ControlError(f"engine lost at {when}: {error}; reconnecting (showing its last state)")
        return snap

    @property
    def last_snapshot(self) -> Snapshot | None:
        """The last snapshot received, whether or not the engine still answers."""
        with self._lock:
            return self._snapshot

    @property
    def error(self) -> str | None:
        """Why the engine does not answer now (None while it does)."""
        with self._lock:
            return self._error

    def refresh_soon(self) -> None:
        self._wake.set()

    def refresh_and_wait(self, timeout: float) -> None:
        """Ask for the snapshot now and wait (at most ``timeout``) until that has been answered."""
        with self._lock:
            self._asked += 1
            asked = self._asked
            self._wake.set()
            self._lock.wait_for(lambda: self._served >= asked or self._closed.is_set(), timeout)

    def _snapshot_loop(self) -> None:
        channel = _Channel(self.database, self.actor, self.timeout)
        backoff = 0.0
        try:
            while not self._closed.is_set():
                with self._lock:
                    serving = self._asked  # a request made before this round began is answered by it
                try:
                    self._fetch(channel)
                    backoff, pause = 0.0, self.refresh_s
                except control.NoEngine:
                    self._failed(f"no engine answers on the control socket of {self.database}")
                    backoff = pause = min(BACKOFF_MAX_S, max(0.2, backoff * 2))
                except (control.ControlError, ValueError, LookupError, OSError) as exc:
                    channel.close()
                    self._failed(str(exc) or type(exc).__name__)
                    backoff = pause = min(BACKOFF_MAX_S, max(0.2, backoff * 2))
                with self._lock:
                    self._served = serving
                    self._lock.notify_all()
                self._wake.wait(pause)
                self._wake.clear()
        finally:
            channel.close()

    def _fetch(self, channel: _Channel) -> None:
        with self._lock:
            version = self._version
        answer = channel.ask("api.snapshot", {"version": version})
        if not answer.get("ok"):
            raise raised_for(answer)
        result = answer.get("result") or {}
        snap = None if result.get("unchanged") else from_jsonable(Snapshot, result.get("snapshot"), "snapshot")
        with self._lock:
            if snap is not None:
                self._snapshot, self._version = snap, str(result.get("version"))
            self._error = self._lost_at = None

    def _failed(self, error: str) -> None:
        with self._lock:
            if self._error is None:
                self._lost_at = time.time()
                log.warning("attached engine: %s", error)
            self._error = error

    # ---- events ---------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[EngineEvent], None]) -> Callable[[], None]:
        """``callback`` for every event, called on this subscription's own thread; returns an unsubscribe."""
        stream = _EventStream(self, callback)
        with self._lock:
            self._streams.append(stream)
        stream.start()

        def unsubscribe() -> None:
            with self._lock:
                if stream in self._streams:
                    self._streams.remove(stream)
            stream.stop()

        return unsubscribe

    # ---- actions --------------------------------------------------------------------------------
    def call(self, method: str, kwargs: dict[str, Any], result_type: Any = Any) -> Future[Any]:
        """``api.call`` of ``method`` on the pool; its result decoded as ``result_type``."""
        if self._closed.is_set():
            done: Future[Any] = Future()
            done.set_exception(control.ControlError("the console has detached from the engine"))
            return done
        return self._executor.submit(self._call, method, kwargs, result_type)

    def _call(self, method: str, kwargs: dict[str, Any], result_type: Any) -> Any:
        try:
            answer = control.ask(self.database, "api.call", {"method": method, "kwargs": control.jsonable(kwargs)},
                                 self.actor, timeout=self.timeout)
        except control.NoEngine:
            raise control.ControlError(f"no engine answers on the control socket of {self.database}") from None
        if not answer.get("ok"):
            raise raised_for(answer)
        try:
            return from_jsonable(result_type, answer.get("result"))
        except ValueError as exc:  # not the caller's bad input: the two sides disagree
            raise control.ControlError(f"{method}: the engine's answer does not fit: {exc}") from None

    def detach(self) -> None:
        """Stop the snapshot thread, the event streams and the pool (``close`` is EngineAPI's: an incident)."""
        self._closed.set()
        self._wake.set()
        with self._lock:
            streams, self._streams = list(self._streams), []
            self._lock.notify_all()
        for stream in streams:
            stream.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def __enter__(self) -> AttachedEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()


def _action(name: str) -> Callable[..., Future[Any]]:
    """The AttachedEngine method for EngineAPI method ``name``: same signature, same result type."""
    protocol_method = getattr(EngineAPI, name)
    signature = callable_methods()[name]
    result_type = future_result_type(protocol_method)

    def method(self: AttachedEngine, *args: Any, **kwargs: Any) -> Future[Any]:
        bound = signature.bind(self, *args, **kwargs)  # a wrong call fails here, as on the engine
        return self.call(name, {k: v for k, v in bound.arguments.items() if k != "self"}, result_type)

    method.__name__, method.__qualname__ = name, f"AttachedEngine.{name}"
    method.__doc__ = protocol_method.__doc__
    method.__signature__ = signature  # type: ignore[attr-defined]
    return method


for _name in callable_methods():
    if _name in vars(AttachedEngine):  # an EngineAPI method named like one of the client's own
        raise TypeError(f"AttachedEngine.{_name} would hide EngineAPI.{_name}: rename the client's")
    setattr(AttachedEngine, _name, _action(_name))
