"""State moves only after it is stored: a failed write loses no incident event, and a bad row never
stops the database writer (real DuckDB files throughout)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ispvm_tui.clock import ScaledClock
from ispvm_tui.config import Config
from ispvm_tui.engine.core import Engine
from ispvm_tui.engine.store import Store, StoreError
from ispvm_tui.secrets import StaticSecrets

CONFIG = Config.model_validate({
    "console": {"attach": ["CORE1"]},
    "sites": [{"name": "S"}],
    "credentials": {"c": {"username": "u", "password_secret": "x"}},
    "devices": [{"name": "CORE1", "site": "S", "role": "core", "address": "127.0.0.1", "credential": "c"},
                {"name": "A", "site": "S", "role": "access", "address": "127.0.0.2", "credential": "c"}],
    "links": [{"a": "CORE1:e1", "b": "A:e1"}],
    "notify": {"webhooks": [{"name": "hook", "url": "http://127.0.0.1:9/hook"}]},
})


def _down_alert(engine: Engine) -> None:
    from ispvm_tui.collectors.results import InterfaceStat, PollResult

    def polled(up: bool) -> list[PollResult]:
        return [PollResult(device="CORE1", collector="api", started_at=0, duration_s=0.01, ok=True,
                           interfaces=(InterfaceStat(name="e1", admin_up=True, oper_up=up),))]

    now = engine.clock.now()
    engine.rules.observe("CORE1", polled(True), now - 10)
    engine.runtime["CORE1"].ok = engine.runtime["A"].ok = True
    observed = engine.rules.observe("CORE1", polled(False), now)
    for t in observed.transitions:
        engine.alerts[t.alert.id] = t.alert


def test_a_failed_incident_write_changes_nothing_and_the_next_round_sends_the_event(tmp_path: Path) -> None:
    store = Store(tmp_path / "e.duckdb")
    engine = Engine(CONFIG, store=store, clock=ScaledClock(1.0), secrets=StaticSecrets({"x": "pw"}))
    try:
        _down_alert(engine)
        store.query("ALTER TABLE outbox RENAME TO outbox_gone")  # the next incident write fails for real
        with pytest.raises(Exception, match="outbox"):
            asyncio.run(engine.correlate_now())
        assert engine.book.open == {}  # nothing moved in memory
        assert store.query("SELECT count(*) FROM incidents")[0][0] == 0
        store.query("ALTER TABLE outbox_gone RENAME TO outbox")
        changes = asyncio.run(engine.correlate_now())
        assert [c.event for c in changes] == ["incident.opened"]
        (incident_id,) = engine.book.open
        rows = store.query("SELECT event_type, incident_id FROM outbox")
        assert rows == [("incident.opened", incident_id)]
        transitions = store.query("SELECT transition, actor FROM incident_events WHERE incident_id = ?",
                                  [incident_id])
        assert transitions == [("opened", "engine")]
        alert = store.query_dicts("SELECT incident_id, metric FROM alerts")
        assert alert == [{"incident_id": incident_id, "metric": "interface.down"}]
        assert asyncio.run(engine.correlate_now()) == []  # stored once, sent once
    finally:
        store.close()


def test_manual_close_is_stored_with_who_and_audited(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.duckdb")
    engine = Engine(CONFIG, store=store, clock=ScaledClock(1.0), secrets=StaticSecrets({"x": "pw"}))
    try:
        _down_alert(engine)
        asyncio.run(engine.correlate_now())
        (incident_id,) = engine.book.open
        view = asyncio.run(engine.close_incident(incident_id, "alice", "fibre crew on site"))
        assert view.status == "closed" and view.closed_by == "alice"
        assert asyncio.run(engine.correlate_now()) == []  # still failing: stays closed, pages nobody
        rows = store.query("SELECT transition, actor, detail FROM incident_events ORDER BY ts, transition DESC")
        assert rows[-1] == ("closed", "alice", "fibre crew on site")
        assert store.query("SELECT actor, action, target FROM audit") == [("alice", "incident.close", incident_id)]
        events = [r[0] for r in store.query("SELECT event_type FROM outbox ORDER BY seq")]
        assert events == ["incident.opened", "incident.closed"]
        payload = json.loads(store.query("SELECT incident FROM outbox ORDER BY seq DESC LIMIT 1")[0][0])
        assert payload["status"] == "closed"
    finally:
        store.close()


def test_a_bad_sample_row_never_stops_the_writer(tmp_path: Path) -> None:
    with Store(tmp_path / "w.duckdb", flush_s=0.05) as store:
        store.transaction(lambda con: con.execute("CREATE TABLE log_t (ts DOUBLE, actor VARCHAR, action VARCHAR, "
                                                  "target VARCHAR, detail VARCHAR)")).result(10)
        store.append("log_t", [(1.0, object(), "bad", None, None)])  # not a value DuckDB can store
        store.append("log_t", [(2.0, "ok", "good", None, None)])
        store.flush()
        assert store.query("SELECT actor FROM log_t") == [("ok",)]  # the good row is not held back
        assert store.transaction(lambda con: con.execute("SELECT 42").fetchone()[0]).result(10) == 42
        assert store.rows_dropped >= 1
        assert store.last_error and "log_t" in store.last_error


def test_a_job_raising_any_exception_fails_only_its_caller(tmp_path: Path) -> None:
    with Store(tmp_path / "j.duckdb") as store:
        def boom(con):
            raise KeyError("not a database error")

        with pytest.raises(KeyError):
            store.transaction(boom).result(10)
        assert store.transaction(lambda con: 7).result(10) == 7


def test_a_stopped_writer_fails_callers_at_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    try:
        def die(buffers: object) -> None:
            raise SystemExit("writer death")

        # Whatever ends the writer thread, later callers must get an error at once, not wait forever.
        store._flush_samples = die  # type: ignore[method-assign]
        store.append("audit", [(1.0, "a", "b", None, None)])
        store._writer.join(timeout=10)
        assert not store._writer.is_alive()
        with pytest.raises(StoreError, match="writer stopped"):
            store.transaction(lambda con: 1).result(1)
    finally:
        store._closed = True
        store._con.close()


def test_resolved_alerts_no_incident_shows_are_let_go_from_memory_but_stay_stored(tmp_path: Path) -> None:
    """A port flapping all night raises an alert per cycle: memory keeps what incidents show, the database all."""
    from ispvm_tui.collectors.results import InterfaceStat, PollResult
    store = Store(tmp_path / "e.duckdb")
    engine = Engine(CONFIG, store=store, clock=ScaledClock(1.0), secrets=StaticSecrets({"x": "pw"}))
    engine._alerts_cap = 50  # as if ALERTS_KEPT were small: the same path, reached sooner

    def poll(up: bool, at: float) -> list[PollResult]:
        return [PollResult(device="A", collector="api", started_at=at, duration_s=0.01, ok=True,
                           interfaces=(InterfaceStat(name="e1", admin_up=True, oper_up=up),))]  # a link end

    async def flap() -> int:
        raised = 0
        for cycle in range(120):
            observed = engine.rules.observe("A", poll(cycle % 2 == 1, cycle * 1000.0), cycle * 1000.0)
            raised += sum(t.fired for t in observed.transitions)
            await engine._persist_alerts(observed.transitions)
        return raised

    try:
        raised = asyncio.run(flap())
        store.flush()
        assert raised > 50, "the scenario must raise more alerts than the cap"
        assert len(engine.alerts) <= max(50, 2 * 50) + 2
        assert store.query("SELECT count(DISTINCT id) FROM alerts")[0][0] >= raised
    finally:
        store.close()


def test_an_ack_while_a_close_is_being_written_does_not_undo_it_in_memory(tmp_path: Path) -> None:
    """Each book change copies the book, writes, then adopts its copy. A second change made while the first is
    still being written must start from the first's result, or memory and the store disagree."""
    import threading

    store = Store(tmp_path / "e.duckdb")
    engine = Engine(CONFIG, store=store, clock=ScaledClock(1.0), secrets=StaticSecrets({"x": "pw"}))
    try:
        _down_alert(engine)
        asyncio.run(engine.correlate_now())
        (incident_id,) = engine.book.open
        gate = threading.Event()

        async def race() -> list[object]:
            blocked = store.transaction(lambda con: gate.wait(30))  # the writer is busy: commits queue behind
            closing = asyncio.ensure_future(engine.close_incident(incident_id, "bob", "fixed"))
            await asyncio.sleep(0)  # the close has copied the book and waits for its write
            acking = asyncio.ensure_future(engine.ack(incident_id, "alice"))
            await asyncio.sleep(0)
            gate.set()
            blocked.result(30)
            return await asyncio.gather(closing, acking, return_exceptions=True)

        closed, acked = asyncio.run(race())
        assert not isinstance(closed, BaseException)
        assert isinstance(acked, KeyError)  # the ack came after the close: nothing open to acknowledge
        assert engine.book.open == {}
        assert store.query("SELECT status, closed_by FROM incidents")[0] == ("closed", "bob")
    finally:
        store.close()
