"""The console attached to an engine in another place (here: another thread's loop, over the real control
socket): the incident shows, and acknowledging it from the attached console is recorded with its actor."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable

from ispvm_tui.app import IspvmApp
from ispvm_tui.demo import start_demo
from ispvm_tui.engine.attached import AttachedEngine
from tests.held_faults import held
from tests.waiting import until, wait_for


@pytest.fixture
def live(tmp_path: Path, address_base: str):
    run = start_demo(held("core-link-cut"), speed=10.0, database=tmp_path / "ispvm.duckdb",
                     address_base=address_base)
    try:
        assert wait_for(lambda: run.engine.snapshot().incidents, 60), "the link cut should open an incident"
        yield run
    finally:
        run.stop()


async def test_acknowledge_from_an_attached_console(live) -> None:
    incident = live.engine.snapshot().incidents[0]
    attached = AttachedEngine(live.store.path, actor="noc-remote")
    try:
        app = IspvmApp(attached, actor=attached.actor)
        async with app.run_test(size=(140, 45)) as pilot:
            await pilot.press("2")
            table = app.screen.query_one("#incidents-table", DataTable)
            assert await until(lambda: incident.id in [str(k.value) for k in table.rows]), app.status_text().plain
            table.focus()
            table.move_cursor(row=table.get_row_index(incident.id))
            await pilot.press("a")
            assert await until(lambda: live.engine.snapshot().incident(incident.id).status == "acked", 60)
            # The attached console sees its own ack come back through the snapshot.
            assert await until(lambda: app.snapshot is not None
                                and app.snapshot.incident(incident.id).status == "acked")
    finally:
        attached.detach()
    acked = live.engine.snapshot().incident(incident.id)
    assert acked.acked_by == "noc-remote"
    assert live.store.query("SELECT actor, target FROM audit WHERE action = 'incident.ack'") == [
        ("noc-remote", incident.id)]


async def test_a_readonly_attached_console_has_no_write_actions(live) -> None:
    attached = AttachedEngine(live.store.path, actor="viewer")
    try:
        app = IspvmApp(attached, actor=attached.actor, readonly=True)
        async with app.run_test(size=(140, 45)) as pilot:
            assert await until(lambda: app.snapshot is not None and app.snapshot.incidents)
            await pilot.press("2")
            await pilot.pause()
            assert "a" not in app.screen.active_bindings  # hidden, as in the in-process console
            await pilot.press("a")
            await pilot.pause()
            assert "READ-ONLY" in app.status_text().plain
    finally:
        attached.detach()
    assert all(i.status == "open" for i in live.engine.snapshot().incidents)
    assert live.store.query("SELECT count(*) FROM audit WHERE action = 'incident.ack'") == [(0,)]
