"""Pilot tests for the Deliveries tab: circuits, dead letters, attempts, resending."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, TypeVar

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from ispvm_tui.app import IspvmApp
from ispvm_tui.demo import start_demo
from ispvm_tui.engine.api import AttemptView, DeliveryReport, DeliveryView, EndpointView, EngineEvent
from ispvm_tui.screens.confirm import ConfirmScreen
from tests.held_faults import held
from tests.test_console import NOW, SnapshotEngine, build_snapshot, plain, row_keys
from tests.waiting import wait_for

T = TypeVar("T")
SIZES = [(80, 24), (140, 45)]
DEAD_1 = "3f2a9c1e-0000-4000-8000-000000000001"
DEAD_2 = "7b41d2aa-0000-4000-8000-000000000002"


def _dead(event_id: str, target: str, *, sequence: int, error: str, superseded: bool = False) -> DeliveryView:
    return DeliveryView(
        event_id=event_id, target=target, incident_id="INC-1", event_type="incident.opened", sequence=sequence,
        status="dead", attempts=5, created_at=NOW - 900, next_attempt_at=None, finished_at=NOW - 60,
        last_error=error, superseded=superseded, last_http_status=400, last_latency_s=0.012)


def build_report(*, taken_at: float = NOW, dead: tuple[DeliveryView, ...] | None = None) -> DeliveryReport:
    if dead is None:
        dead = (_dead(DEAD_1, "noc-hook", sequence=1, error="HTTP 400: bad payload"),
                _dead(DEAD_2, "ticketing", sequence=2, error="HTTP 410: gone"))
    endpoints = (
        EndpointView("noc-hook", "closed", 0, None, None, None, pending=1, dead=1),
        EndpointView("ticketing", "open", 5, NOW - 120, NOW + 60, "HTTP 503: maintenance", pending=3, dead=1),
        EndpointView("chat", "half-open", 5, NOW - 300, None, "timed out after 10 s", pending=0, dead=0),
    )
    recent = tuple(
        AttemptView(delivery_id=f"D{i}", event_id=DEAD_1, target="noc-hook", attempt=i, attempted_at=NOW - 10 * i,
                    http_status=400 if i % 2 else None, outcome="permanent" if i % 2 else "retry",
                    error="HTTP 400: bad payload" if i % 2 else "connection refused", latency_s=0.012,
                    event_type="incident.opened", incident_id="INC-1")
        for i in range(1, 8))
    return DeliveryReport(taken_at, endpoints, dead, recent)


class DeliveryEngine(SnapshotEngine):
    """Adds the delivery calls; their futures complete on another thread, as the real engine's do."""

    def __init__(self) -> None:
        super().__init__(build_snapshot())
        self.report = build_report()
        self.report_error: Exception | None = None
        self.report_calls = 0
        self.resends: list[tuple[str, str]] = []
        self.resend_alls: list[str] = []
        self.superseded = False

    def _later(self, produce: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(produce())
            except Exception as exc:
                future.set_exception(exc)

        threading.Thread(target=run, daemon=True).start()
        return future

    def delivery_report(self, limit: int = 200) -> Future[DeliveryReport]:
        with self._lock:
            self.report_calls += 1

        def produce() -> DeliveryReport:
            with self._lock:
                if self.report_error is not None:
                    raise self.report_error
                return self.report

        return self._later(produce)

    def resend(self, event_id: str, actor: str) -> Future[bool]:
        with self._lock:
            self.resends.append((event_id, actor))
        return self._later(lambda: self.superseded)

    def resend_all_dead(self, actor: str) -> Future[list[str]]:
        with self._lock:
            self.resend_alls.append(actor)
        return self._later(lambda: [d.event_id for d in self.report.dead])


async def until(pilot: Pilot[Any], predicate: Callable[[], object], timeout: float = 15.0) -> None:
    """Let the app run until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


def messages(app: IspvmApp) -> list[str]:
    return [n.message for n in app._notifications]


def make_app(engine: DeliveryEngine, **kwargs: Any) -> IspvmApp:
    kwargs.setdefault("actor", "alice")
    kwargs.setdefault("deliveries_refresh_s", 1.0)
    return IspvmApp(engine, **kwargs)


async def open_tab(pilot: Pilot[Any], key: str = "4") -> tuple[DataTable, DataTable]:
    await pilot.press(key)
    dead = pilot.app.screen.query_one("#dead-table", DataTable)
    await until(pilot, lambda: dead.row_count > 0)
    return dead, pilot.app.screen.query_one("#attempts-table", DataTable)


@pytest.fixture
def engine() -> DeliveryEngine:
    return DeliveryEngine()


@pytest.mark.parametrize("size", SIZES)
async def test_tables_fill_and_circuits_read_as_words(engine: DeliveryEngine, size: tuple[int, int]) -> None:
    app = make_app(engine)
    async with app.run_test(size=size) as pilot:
        dead, attempts = await open_tab(pilot)
        assert row_keys(dead) == [DEAD_1, DEAD_2]
        cells = [str(c) for c in dead.get_row(DEAD_1)]
        assert "noc-hook" in cells and "opened" in cells and "HTTP 400: bad payload" in cells
        assert "15m ago" in cells and "5" in cells
        await until(pilot, lambda: attempts.row_count == 7)
        assert any("✖ permanent" in str(c) for c in attempts.get_row("D1"))
        lines = plain(app.screen.query_one("#deliveries-endpoints", Static)).splitlines()
        assert len(lines) == 3
        assert lines[0].startswith("ticketing") and "■ open, probe " in lines[0] and "dead 1" in lines[0]
        assert "◐ half-open" in lines[1] and "● closed" in lines[2]
        assert "pending 3" in lines[0] and "HTTP 503: maintenance" in lines[0]
        assert app.focused is dead
        # every table and line keeps to one row per item: nothing wraps, the dead letters get the most room
        assert dead.size.height >= attempts.size.height
        assert dead.region.bottom <= attempts.region.y and attempts.region.bottom <= size[1]
        assert app.screen.query_one("#deliveries-endpoints", Static).size.height == 3


async def test_narrow_console_keeps_room_for_the_error(engine: DeliveryEngine) -> None:
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        dead, _ = await open_tab(pilot)
        keys = [str(k.value) for k in dead.columns]
        assert keys == ["target", "incident", "event", "attempts", "created", "superseded", "error"]
        assert sum(c.get_render_width(dead) for c in dead.columns.values()) <= dead.size.width
        assert dead.columns[keys[-1]].width >= len("HTTP 400: bad payload")  # type: ignore[index]
        await pilot.resize_terminal(140, 45)
        await until(pilot, lambda: "id" in [str(k.value) for k in dead.columns] and dead.row_count == 2)
        assert str(dead.get_row(DEAD_1)[0]) == "3f2a9c1e"  # the short id, as `ispvm deliveries` takes it


async def test_enter_and_shift_r_resend_the_selected_dead_letter(engine: DeliveryEngine) -> None:
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_tab(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: any("queued again" in m for m in messages(app)))
        assert engine.resends == [(DEAD_1, "alice")]
        assert any(m.endswith("queued again") for m in messages(app))
        engine.superseded = True
        await pilot.press("down", "R")
        await until(pilot, lambda: any("superseded: a later event was delivered" in m for m in messages(app)))
        assert engine.resends == [(DEAD_1, "alice"), (DEAD_2, "alice")]


async def test_resend_error_is_a_toast(engine: DeliveryEngine) -> None:
    def refuse(event_id: str, actor: str) -> Future[bool]:
        future: Future[bool] = Future()
        future.set_exception(KeyError(f"no outbox event {event_id}"))
        return future

    engine.resend = refuse  # type: ignore[method-assign]
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_tab(pilot, "d")  # d is 4's alias
        await pilot.press("R")
        await until(pilot, lambda: any("failed: no outbox event" in m for m in messages(app)))
        assert app.is_running


async def test_resend_all_asks_first(engine: DeliveryEngine) -> None:
    app = make_app(engine, actor="bob")
    async with app.run_test(size=(80, 24)) as pilot:
        await open_tab(pilot)
        await pilot.press("A")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Resend 2 dead events? y/n" in plain(app.screen.query_one("#confirm-question", Static))
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        await app.workers.wait_for_complete()
        assert engine.resend_alls == []
        await pilot.press("A")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: any("2 dead events queued again" in m for m in messages(app)))
        assert engine.resend_alls == ["bob"]


async def test_readonly_has_no_resend(engine: DeliveryEngine) -> None:
    app = make_app(engine, readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_tab(pilot)
        bound = {b.action for bs in app._bindings.key_to_bindings.values() for b in bs}
        assert not bound & {"resend_dead", "resend_all_dead"}
        await pilot.press("R", "A", "enter")
        await until(pilot, lambda: any("Read-only" in m for m in messages(app)))
        assert not isinstance(app.screen, ConfirmScreen)
        assert engine.resends == [] and engine.resend_alls == []
        assert "resend" not in str(app.screen.query_one("#dead-title").render())


async def test_failed_report_is_shown_and_the_next_refresh_recovers(engine: DeliveryEngine) -> None:
    engine.report_error = RuntimeError("database is locked")
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        message = app.screen.query_one("#deliveries-message", Static)
        await until(pilot, lambda: "database is locked" in plain(message))
        assert "failed" in plain(message) and app.is_running
        with engine._lock:
            engine.report_error = None
        await until(pilot, lambda: "report " in plain(message) and "failed" not in plain(message))
        assert app.screen.query_one("#dead-table", DataTable).row_count == 2


async def test_no_report_fetched_while_another_tab_is_shown(engine: DeliveryEngine) -> None:
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_tab(pilot)
        await pilot.press("1")
        await until(pilot, lambda: not app._report_fetching)
        calls, ticks = engine.report_calls, app.deliveries_ticks
        engine.emit(EngineEvent("delivery.dead", NOW, "incident.opened to noc-hook dead-lettered"))
        await until(pilot, lambda: app.deliveries_ticks >= ticks + 2)  # two refresh intervals went by
        assert engine.report_calls == calls
        await pilot.press("4")
        await until(pilot, lambda: engine.report_calls > calls)


async def test_delivery_event_refreshes_at_once(engine: DeliveryEngine) -> None:
    app = make_app(engine, deliveries_refresh_s=600)  # the interval cannot be what refreshes
    async with app.run_test(size=(80, 24)) as pilot:
        dead, _ = await open_tab(pilot)
        extra = _dead("9c0ffee0-0000-4000-8000-000000000003", "noc-hook", sequence=3, error="HTTP 422")
        with engine._lock:
            engine.report = replace(build_report(taken_at=NOW + 5), dead=(extra, *engine.report.dead))
        event = EngineEvent("delivery.dead", NOW + 5, "incident.updated to noc-hook dead-lettered")
        thread = threading.Thread(target=engine.emit, args=(event,))
        thread.start()
        thread.join()
        await until(pilot, lambda: dead.row_count == 3)
        assert row_keys(dead)[0] == extra.event_id


@pytest.fixture
def refused_once(address_base: str):
    """The real engine on the lab; the webhook receiver refuses the first event for good (HTTP 400)."""
    run = start_demo(held("core-link-cut"), speed=10.0, address_base=address_base)
    run.sink.set_responses([400])
    yield run
    run.stop()


async def test_resend_a_real_dead_letter_from_the_screen(refused_once) -> None:
    run = refused_once
    dead_rows = "SELECT event_id FROM outbox WHERE status = 'dead'"
    assert await asyncio.to_thread(wait_for, lambda: run.store.query(dead_rows), 90), "no dead letter"
    ((event_id,),) = run.store.query(dead_rows)
    app = IspvmApp(run.engine, actor="noc-oncall", deliveries_refresh_s=1.0)
    async with app.run_test(size=(80, 24)) as pilot:
        dead, attempts = await open_tab(pilot)
        assert row_keys(dead) == [event_id]
        await until(pilot, lambda: any("400" in str(c) for row in attempts.ordered_rows
                                       for c in attempts.get_row(row.key)))
        await pilot.press("R")
        await until(pilot, lambda: any("queued again" in m for m in messages(app)), timeout=30)
        await until(pilot, lambda: dead.row_count == 0, timeout=30)  # the view refreshed after the resend
    status = "SELECT status FROM outbox WHERE event_id = ?"
    assert await asyncio.to_thread(wait_for, lambda: run.store.query(status, [event_id]) == [("delivered",)], 60)
    assert run.store.query("SELECT actor, action, target FROM audit WHERE action = 'webhook.resend'") == [
        ("noc-oncall", "webhook.resend", event_id)]


async def test_the_palette_offers_resend_only_on_the_deliveries_tab(engine: DeliveryEngine) -> None:
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        def titles() -> set[str]:
            return {c.title for c in app.get_system_commands(app.main_screen)}

        await pilot.press("1")
        assert not {"Resend", "Resend all"} & titles()
        await open_tab(pilot)
        assert {"Resend", "Resend all"} <= titles()
