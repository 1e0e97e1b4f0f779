"""A console's EngineAPI over the control socket (engine/attached.py, engine/api_ops.py): a real engine on the
lab in this process, AttachedEngines on its database talking to it over its real Unix socket."""

from __future__ import annotations

import asyncio
import dataclasses
import grp
import inspect
import json
import os
import stat
import threading
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
from typer.testing import CliRunner

from ispvm_tui.cli import app as cli_app
from ispvm_tui.demo import DemoRun, start_demo
from ispvm_tui.engine import api, control
from ispvm_tui.engine.api import EngineAPI, EngineEvent, Snapshot
from ispvm_tui.engine.api_ops import EVENTS_KEPT, ApiOps, callable_methods
from ispvm_tui.engine.attached import AttachedEngine
from ispvm_tui.engine.core import Engine
from ispvm_tui.engine.wire_types import decodable, from_jsonable, future_result_type
from ispvm_tui.lab.scenario import Scenario, TimelineEntry
from tests.held_faults import held
from tests.waiting import wait_for

LINK = "CORE1:ether2--POPA-AGG:ether1"


def two_faults() -> Scenario:
    """The core fibre cut and, at the same time, a transit session lost: two incidents, neither repaired."""
    sc = held("core-link-cut")
    return sc.model_copy(update={"timeline": [*sc.timeline, TimelineEntry(at=60, action="bgp_down",
                                                                          peer="EDGE1:UPSTREAM1")]})


@pytest.fixture
def live(tmp_path: Path, address_base: str):
    run = start_demo(two_faults(), speed=10.0, database=tmp_path / "ispvm.duckdb", address_base=address_base)
    try:
        assert wait_for(lambda: run.engine.snapshot().incidents, 60), "the cut should open an incident"
        yield run
    finally:
        run.stop()


def _view(snap: Snapshot) -> tuple[Any, ...]:
    return (sorted((i.id, i.status, i.acked_by) for i in snap.incidents), sorted(d.name for d in snap.devices),
            sorted((d.name, d.state) for d in snap.devices))


def _matches(attached: AttachedEngine, engine: Engine) -> bool:
    try:
        return _view(attached.snapshot()) == _view(engine.snapshot())
    except control.ControlError:
        return False


def test_snapshot_events_and_actions_through_the_socket(live: DemoRun) -> None:
    db, engine = live.store.path, live.engine
    with AttachedEngine(db, actor="alice") as attached:
        assert wait_for(lambda: _matches(attached, engine), 30), (attached.error, _view(engine.snapshot()))
        incident = next(i for i in attached.snapshot().incidents if i.status == "open")
        assert isinstance(incident, api.IncidentView) and isinstance(incident.impact, api.Impact)
        assert attached.snapshot() is attached.snapshot()  # the console compares by identity: same when unchanged

        events: list[EngineEvent] = []
        unsubscribe = attached.subscribe(events.append)
        try:
            assert wait_for(lambda: attached._streams and attached._streams[0].connected.is_set(), 20)
            acked = attached.acknowledge(incident.id, "alice").result(60)
            assert isinstance(acked, api.IncidentView) and acked.acked_by == "alice"
            assert engine.snapshot().incident(incident.id).acked_by == "alice"
            assert wait_for(lambda: any(e.kind == "incident.acked" and e.incident_id == incident.id
                                        for e in events), 30), [e.kind for e in events]
            assert wait_for(lambda: attached.snapshot().incident(incident.id).status == "acked", 10)
        finally:
            unsubscribe()
        assert not attached._streams

        with pytest.raises(KeyError, match="NOPE"):
            attached.device_detail("NOPE").result(30)
        detail = attached.device_detail("CORE1").result(30)
        assert isinstance(detail, api.DeviceDetail) and detail.device.name == "CORE1"
        assert all(isinstance(i, api.InterfaceRow) for i in detail.interfaces) and detail.interfaces
        windows = attached.maintenance_list().result(30)
        assert isinstance(windows, list)
        with pytest.raises(ValueError, match=r"starts_at|ends_at|name|scope"):
            attached.maintenance_add({"name": "x", "starts_at": "not a time"}, "alice").result(30)
        with pytest.raises(TypeError):
            attached.device_detail()  # type: ignore[call-arg]  # wrong call: fails at once, as on the engine


def test_two_consoles_act_as_their_own_actors(live: DemoRun) -> None:
    db, engine = live.store.path, live.engine
    assert wait_for(lambda: len([i for i in engine.snapshot().incidents if i.status == "open"]) >= 2, 90), \
        [i.title for i in engine.snapshot().incidents]
    first, second = [i.id for i in engine.snapshot().incidents if i.status == "open"][:2]
    with AttachedEngine(db, actor="alice") as alice, AttachedEngine(db, actor="bob") as bob:
        # The actor argument is the console's own: the engine records who the request says it is.
        alice.acknowledge(first, "alice").result(60)
        bob.acknowledge(second, "bob").result(60)
    snap = engine.snapshot()
    assert (snap.incident(first).acked_by, snap.incident(second).acked_by) == ("alice", "bob")
    rows = live.store.query("SELECT actor, target FROM audit WHERE action = 'incident.ack' ORDER BY actor")
    assert rows == [("alice", first), ("bob", second)]


def test_engine_stopped_keeps_the_last_state_and_a_restart_reconnects(live: DemoRun) -> None:
    db = live.store.path
    with AttachedEngine(db, actor="alice") as attached:
        assert wait_for(lambda: _matches(attached, live.engine), 30)
        events: list[EngineEvent] = []
        attached.subscribe(events.append)
        assert wait_for(lambda: attached._streams[0].connected.is_set(), 20)
        last = attached.snapshot()

        old = live.engine
        live.loop.run(old.stop(), timeout=60)
        assert wait_for(lambda: attached.error is not None, 20)
        with pytest.raises(control.ControlError, match="reconnecting"):
            attached.snapshot()
        assert attached.last_snapshot is last  # what the console keeps showing
        with pytest.raises(control.ControlError, match="no engine answers"):
            attached.device_detail("CORE1").result(30)

        restarted = Engine(old.config, store=live.store, clock=live.clock, secrets=old.secrets)
        live.engine = restarted  # stopped with the demo
        live.loop.run(restarted.start(), timeout=60)
        assert wait_for(lambda: attached.error is None, 30), attached.error
        assert attached.snapshot() is not last
        assert {i.id for i in last.incidents} <= {i.id for i in attached.snapshot().incidents}
        assert wait_for(lambda: attached._streams[0].connected.is_set(), 30), "the event stream reconnects"
        assert attached.device_detail("CORE1").result(30).device.name == "CORE1"


# ---- the generic call: every method reachable, every view decodable ----------------------------

def _protocol_methods() -> list[str]:
    return [n for n, fn in vars(EngineAPI).items() if inspect.isfunction(fn) and not n.startswith("_")]


def test_every_engine_api_method_is_reachable_attached() -> None:
    methods = _protocol_methods()
    assert {"snapshot", "subscribe", "acknowledge", "device_detail"} <= set(methods)
    allowed = callable_methods()
    for name in methods:
        if name in ("snapshot", "subscribe"):
            assert name not in allowed  # served by api.snapshot and api.events
            continue
        assert name in allowed, name
        result = future_result_type(getattr(EngineAPI, name))
        assert decodable(result), f"{name} returns {result!r}, which the attached console cannot rebuild"
        ours = inspect.signature(getattr(AttachedEngine, name))
        assert ours == inspect.signature(getattr(EngineAPI, name)), name
    assert decodable(Snapshot) and decodable(EngineEvent)


def _sample(tp: Any, depth: int = 0) -> Any:
    """A value of type ``tp`` with nothing left at its default (so a field the codec drops shows)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return {"nested": [1, "two", None, {"x": 1.5}]}
    if origin is Literal:
        return args[-1]
    if origin in (typing.Union, __import__("types").UnionType):
        return _sample(next(a for a in args if a is not type(None)), depth)
    if origin is tuple:
        return tuple(_sample(args[0], depth + 1) for _ in range(2))
    if origin is list:
        return [_sample(args[0], depth + 1) for _ in range(2)]
    if origin is dict:
        return {"k1": _sample(args[1], depth + 1), "k2": _sample(args[1], depth + 1)}
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _sample(hints[f.name], depth + 1) for f in dataclasses.fields(tp)})
    return {bool: True, int: 7, float: 2.5, str: "s"}[tp]


API_VIEWS = [c for _, c in inspect.getmembers(api, inspect.isclass)
             if dataclasses.is_dataclass(c) and c.__module__ == api.__name__]


@pytest.mark.parametrize("cls", API_VIEWS, ids=lambda c: c.__name__)
def test_the_decoder_round_trips_every_api_view(cls: type) -> None:
    value = _sample(cls)
    wire = json.loads(json.dumps(control.jsonable(value)))
    assert from_jsonable(cls, wire) == value
    defaults = cls(**{f.name: _sample(typing.get_type_hints(cls)[f.name]) for f in dataclasses.fields(cls)
                      if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING})
    assert from_jsonable(cls, json.loads(json.dumps(control.jsonable(defaults)))) == defaults


def test_the_decoder_refuses_what_does_not_fit() -> None:
    assert len(API_VIEWS) >= 20
    with pytest.raises(ValueError, match=r"result\.severity"):
        from_jsonable(api.AlertView, {**control.jsonable(_sample(api.AlertView)), "severity": "apocalyptic"})
    with pytest.raises(ValueError, match="expected an integer"):
        from_jsonable(list[int], [1, "2"])
    with pytest.raises(ValueError, match="expected an object"):
        from_jsonable(api.Impact, [1])
    assert from_jsonable(api.Impact, {"sites_affected": 2, "from_a_newer_engine": 1}) == api.Impact(sites_affected=2)
    assert from_jsonable(float, 3) == 3.0 and isinstance(from_jsonable(float, 3), float)
    with pytest.raises(ValueError):
        from_jsonable(int, True)


# ---- the server side: bounded streams, one encoding per snapshot, the control group ---------------

class HeldEngine:
    """Only what ApiOps needs of an engine: a fixed snapshot and subscribers to publish to."""

    def __init__(self) -> None:
        self.snap = _sample(Snapshot)
        self.subscribers: list[Any] = []
        self.lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        return self.snap

    def subscribe(self, callback: Any) -> Any:
        with self.lock:
            self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def publish(self, n: int) -> None:
        for k in range(n):
            for cb in list(self.subscribers):
                cb(EngineEvent(kind="alert.fired", at=float(k), summary=f"event {k} " + "x" * 200))


def test_a_slow_event_reader_is_bounded_and_told_and_snapshots_encode_once(tmp_path: Path) -> None:
    db = tmp_path / "e.duckdb"
    held_engine = HeldEngine()
    ops = ApiOps(held_engine)  # type: ignore[arg-type]

    async def main() -> None:
        server = control.ControlServer(db, ops.ops())
        path = await server.start()
        reader, writer = await asyncio.open_unix_connection(str(path), limit=control.MAX_RESPONSE)
        writer.write(control.request_line("api.events", {}, "slow"))
        await writer.drain()
        assert json.loads(await reader.readline()) == {"ok": True, "result": {"streaming": True}}
        assert wait_for(lambda: held_engine.subscribers, 5)
        # Published from another thread, as the engine's callbacks are, while this reader reads nothing.
        sent = EVENTS_KEPT * 20
        await asyncio.to_thread(held_engine.publish, sent)
        await asyncio.sleep(0.5)
        got = []
        while True:
            line = await asyncio.wait_for(reader.readline(), 10)
            got.append(json.loads(line))
            if got[-1]["summary"] == f"event {sent - 1} " + "x" * 200:
                break
        assert any(e["kind"] == "events.dropped" for e in got)
        assert len(got) < sent
        writer.close()
        assert await asyncio.to_thread(wait_for, lambda: not held_engine.subscribers, 10), "closing unsubscribes"

        first = await asyncio.to_thread(control.request, db, "api.snapshot", {}, "a")
        second = await asyncio.to_thread(control.request, db, "api.snapshot", {}, "b")
        assert first == second and from_jsonable(Snapshot, first["snapshot"]) == held_engine.snap
        same = await asyncio.to_thread(control.request, db, "api.snapshot", {"version": first["version"]}, "a")
        assert same == {"unchanged": True, "version": first["version"]}
        assert ops.encodings == 1
        held_engine.snap = dataclasses.replace(held_engine.snap, taken_at=1.0)
        newer = await asyncio.to_thread(control.request, db, "api.snapshot", {"version": first["version"]}, "a")
        assert newer["version"] != first["version"] and newer["snapshot"]["taken_at"] == 1.0
        with pytest.raises(control.Refused, match="method: one of"):
            await asyncio.to_thread(control.request, db, "api.call", {"method": "stop"}, "a")
        with pytest.raises(control.Refused, match="method: one of"):
            await asyncio.to_thread(control.request, db, "api.call", {"method": "snapshot"}, "a")
        await server.stop()

    asyncio.run(main())


def test_a_control_group_opens_the_socket_to_it(tmp_path: Path) -> None:
    db = tmp_path / "g.duckdb"
    own = grp.getgrgid(os.getgid()).gr_name

    async def echo(args: dict[str, Any], actor: str) -> str:
        return actor

    async def main() -> None:
        server = control.ControlServer(db, {"echo": echo}, group=own)
        path = await server.start()
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == os.getgid()
        assert await asyncio.to_thread(control.request, db, "echo", {}, "maria") == "maria"
        await server.stop()
        with pytest.raises(control.ControlError, match="no group named"):
            await control.ControlServer(db, {"echo": echo}, group="no-such-group-here").start()

    asyncio.run(main())


def test_attach_without_an_engine_says_so(tmp_path: Path) -> None:
    db = tmp_path / "none.duckdb"
    got = CliRunner().invoke(cli_app, ["attach", "--database", str(db)])
    assert got.exit_code == 1
    assert f"no engine is running on {db}" in got.output
    bad = CliRunner().invoke(cli_app, ["attach"])
    assert bad.exit_code == 2
