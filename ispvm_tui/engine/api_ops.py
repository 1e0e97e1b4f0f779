"""The control socket's ``api.*`` ops: the EngineAPI of a running engine for a console attached over the socket.

* ``api.call`` ``{"method": NAME, "kwargs": {...}}``: calls the engine's EngineAPI method of that name (only
  the Protocol's own methods, minus snapshot and subscribe), awaits its Future and answers its result. A
  method's ``actor`` is the request's actor: what the attached console says it is, what the audit records.
* ``api.snapshot`` ``{"version": V}``: the current snapshot and its version, or ``{"unchanged": true}`` when
  the engine still holds the snapshot of version V. It is encoded once per snapshot, in a thread (a few
  hundred KB at 1,000 devices): five consoles cost one encoding, and the engine's loop none.
* ``api.events``: a stream of EngineEvents, one per line, bounded per connection: a console that reads too
  slowly loses the oldest and is told so by an ``events.dropped`` event (it then refreshes).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from ispvm_tui.engine import control
from ispvm_tui.engine.api import EngineAPI, EngineEvent, Snapshot

EVENTS_KEPT = 1000  # per connection: beyond this the oldest events are dropped
NOT_CALLABLE = frozenset({"snapshot", "subscribe"})  # served by api.snapshot and api.events instead


def callable_methods() -> dict[str, inspect.Signature]:
    """The EngineAPI methods ``api.call`` may call, by name, with their signatures (self first)."""
    return {name: inspect.signature(fn) for name, fn in vars(EngineAPI).items()
            if inspect.isfunction(fn) and not name.startswith("_") and name not in NOT_CALLABLE}


class ApiOps:
    def __init__(self, engine: EngineAPI) -> None:
        self.engine = engine
        self.methods = callable_methods()
        self._lock = threading.Lock()
        self._epoch = secrets.token_hex(4)  # versions of another engine (a restart) never match
        self._count = 0
        self._encoded: tuple[Snapshot, str, bytes] | None = None
        self.encodings = 0  # snapshots encoded (tests: one per snapshot, whatever the number of consoles)

    def ops(self) -> dict[str, control.Handler]:
        return {"api.call": self.call, "api.snapshot": self.snapshot, "api.events": self.events}

    async def call(self, args: dict[str, Any], actor: str) -> Any:
        name, kwargs = args.get("method"), args.get("kwargs", {})
        if not isinstance(name, str) or name not in self.methods:
            raise control.Refused(f"method: one of {', '.join(sorted(self.methods))}; not {name!r}")
        if not isinstance(kwargs, dict):
            raise control.Refused("kwargs: expected an object")
        signature = self.methods[name]
        if "actor" in signature.parameters:
            kwargs = {**kwargs, "actor": actor}
        try:
            signature.bind(None, **kwargs)
        except TypeError as exc:
            raise control.Refused(f"{name}: {exc}") from None
        return await asyncio.wrap_future(getattr(self.engine, name)(**kwargs))

    def _current(self) -> tuple[str, bytes]:
        """The engine's current snapshot's version and JSON. Called off the loop: there ``snapshot()`` gives
        the last one built and never rebuilds it (the engine's snapshot loop paces rebuilds)."""
        snap = self.engine.snapshot()
        with self._lock:
            if self._encoded is None or self._encoded[0] is not snap:
                self._count += 1
                version = f"{self._epoch}.{self._count}"
                self._encoded = (snap, version, json.dumps(control.jsonable(snap), ensure_ascii=False).encode())
                self.encodings += 1
            return self._encoded[1], self._encoded[2]

    async def snapshot(self, args: dict[str, Any], actor: str) -> Any:
        version, encoded = await asyncio.to_thread(self._current)
        if args.get("version") == version:
            return {"unchanged": True, "version": version}
        return control.Encoded(b'{"version": ' + json.dumps(version).encode() + b', "snapshot": ' + encoded + b"}")

    def _now(self) -> float:
        clock = getattr(self.engine, "clock", None)  # the engine's (scaled in the lab), as its events carry
        return clock.now() if clock is not None else time.time()

    async def events(self, args: dict[str, Any], actor: str) -> control.Stream:
        return control.Stream(self._stream(asyncio.get_running_loop()))

    async def _stream(self, loop: asyncio.AbstractEventLoop) -> AsyncIterator[EngineEvent]:
        backlog: collections.deque[EngineEvent] = collections.deque()
        ready = asyncio.Event()
        dropped = 0

        def push(event: EngineEvent) -> None:  # on the loop
            nonlocal dropped
            if len(backlog) >= EVENTS_KEPT:
                backlog.popleft()
                dropped += 1
            backlog.append(event)
            ready.set()

        def on_event(event: EngineEvent) -> None:  # on the engine's thread (or any other)
            with contextlib.suppress(RuntimeError):  # the loop closed: the connection is gone with it
                loop.call_soon_threadsafe(push, event)

        unsubscribe = self.engine.subscribe(on_event)
        try:
            while True:
                if dropped:  # first: the console refreshes, and what it missed is in the snapshot
                    n, dropped = dropped, 0
                    yield EngineEvent(kind="events.dropped", at=self._now(),
                                      summary=f"{n} events dropped: the console read too slowly (refreshing)",
                                      data={"dropped": n})
                elif backlog:
                    yield backlog.popleft()
                else:
                    ready.clear()
                    await ready.wait()
        finally:
            unsubscribe()
