"""The console on the real engine polling the real lab: open the incident, acknowledge it."""

from __future__ import annotations

import asyncio
import time

import pytest
from textual.widgets import DataTable, Static

from ispvm_tui.app import IspvmApp
from ispvm_tui.demo import start_demo
from ispvm_tui.screens.incident_detail import IncidentDetailScreen
from tests.held_faults import held

LINK = "CORE1:ether2--POPA-AGG:ether1"


@pytest.fixture
def live(address_base: str):
    run = start_demo(held("core-link-cut"), speed=10.0, address_base=address_base)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not run.engine.snapshot().incidents:
        time.sleep(0.1)
    assert run.engine.snapshot().incidents, "the link cut should open an incident within the scenario"
    yield run
    run.stop()


async def test_open_and_acknowledge_the_link_cut_incident(live) -> None:
    engine = live.engine
    incident = engine.snapshot().incidents[0]
    app = IspvmApp(engine, actor="noc-oncall")
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.press("2")
        await pilot.pause(0.3)
        table = app.screen.query_one("#incidents-table", DataTable)
        assert incident.id in [str(k.value) for k in table.rows]
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert isinstance(app.screen, IncidentDetailScreen)
        text = str(app.screen.query_one("#incident-detail", Static).render())
        assert "POPA-AGG" in text and "%" in text  # root cause with its confidence
        await pilot.press("a")
        await app.workers.wait_for_complete()
        for _ in range(300):  # the ack queues behind sample writes on a loaded host
            if engine.snapshot().incident(incident.id).status == "acked":
                break
            await asyncio.sleep(0.1)
    acked = engine.snapshot().incident(incident.id)
    assert acked.status == "acked" and acked.acked_by == "noc-oncall"
    rows = live.store.query("SELECT actor, action, target FROM audit WHERE action = 'incident.ack'")
    assert rows == [("noc-oncall", "incident.ack", incident.id)]
    events = [r[0] for r in live.store.query(
        "SELECT event_type FROM outbox WHERE incident_id = ? ORDER BY seq", [incident.id])]
    assert events[:2] == ["incident.opened", "incident.acked"]
