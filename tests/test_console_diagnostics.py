"""The console on the real engine polling the real lab: from an incident, g opens diagnostics, a ping runs
from the default router and its lines stream into the log."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from textual.widgets import DataTable, Input, Log

from ispvm_tui.app import IspvmApp
from ispvm_tui.demo import DemoRun, start_demo
from ispvm_tui.screens.diagnostics import DiagnosticsScreen, defaults_for
from ispvm_tui.screens.incident_detail import IncidentDetailScreen
from tests.held_faults import held
from tests.test_console_deliveries import until


@pytest.fixture
def live(address_base: str) -> Iterator[DemoRun]:
    run = start_demo(held("core-link-cut"), speed=10.0, address_base=address_base)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not run.engine.snapshot().incidents:
        time.sleep(0.1)
    assert run.engine.snapshot().incidents, "the link cut should open an incident within the scenario"
    yield run
    run.stop()


async def test_g_on_an_incident_runs_a_ping_whose_lines_stream_into_the_log(live: DemoRun) -> None:
    engine = live.engine
    incident = engine.snapshot().incidents[0]
    far_end = live.lab.model.devices["POPA-AGG"].address
    app = IspvmApp(engine, actor="noc-oncall")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("2")
        table = app.screen.query_one("#incidents-table", DataTable)
        await until(pilot, lambda: incident.id in [str(k.value) for k in table.rows])
        table.move_cursor(row=table.get_row_index(incident.id))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, IncidentDetailScreen))
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, DiagnosticsScreen))
        screen = app.screen
        assert isinstance(screen, DiagnosticsScreen)
        # The cut link's silent end is the target; its answering neighbour towards the console, the router.
        assert screen.query_one("#diag-router", Input).value == "CORE1"
        assert screen.query_one("#diag-target", Input).value == far_end
        await pilot.press("enter")  # the target field has the focus: enter runs
        await until(pilot, lambda: any(line.startswith("seq=") for line in screen.lines), timeout=30)
        await until(pilot, lambda: not screen.running, timeout=30)
        log = screen.query_one("#diag-log", Log)
        assert screen.lines[0] == f"PING {far_end} from CORE1: 5 echoes"
        assert f"seq=0 {far_end} timeout" in screen.lines  # across the cut nothing answers
        assert screen.lines[-1].startswith("5 sent, 0 received, 100% loss")
        assert log.line_count >= 7 and screen.error is None
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, IncidentDetailScreen))
    rows = live.store.query("SELECT actor, action, target FROM audit WHERE action = 'diagnostic.ping'")
    assert rows == [("noc-oncall", "diagnostic.ping", "CORE1")]


async def test_read_only_hides_g_and_refuses_it(live: DemoRun) -> None:
    incident = live.engine.snapshot().incidents[0]
    app = IspvmApp(live.engine, actor="viewer", readonly=True)
    async with app.run_test(size=(100, 30)) as pilot:
        app.open_incident(incident.id)
        await until(pilot, lambda: isinstance(app.screen, IncidentDetailScreen))
        assert app.screen.check_action("diagnostics", ()) is False
        await pilot.press("g")
        await pilot.pause(0.2)
        assert isinstance(app.screen, IncidentDetailScreen)


def test_defaults_from_a_device_are_that_device_and_the_attach_point(live: DemoRun) -> None:
    snapshot = live.engine.snapshot()
    router, target = defaults_for(snapshot, device="EDGE1")
    assert router == "EDGE1" and target == live.lab.model.devices["CORE1"].address


def test_a_cut_links_far_end_is_pinged_from_its_near_end_whatever_the_states_say() -> None:
    """Right after a cut the far end's last poll may still say up: the defaults follow the topology."""
    from dataclasses import replace

    from tests.console_state import small_state

    snapshot = small_state()
    flap = next(i for i in snapshot.incidents if i.root_causes[0].entity_id == "CORE2:sfp3--NORTH-AGG:sfp2")
    address = {d.name: d.address for d in snapshot.devices}
    for state in ("up", "down", "unknown"):
        devices = tuple(replace(d, state=state) if d.name == "NORTH-AGG" else d for d in snapshot.devices)
        router, target = defaults_for(replace(snapshot, devices=devices), incident_id=flap.id)
        assert (router, target) == ("CORE2", address["NORTH-AGG"]), state
