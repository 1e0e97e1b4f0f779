"""The incident detail screen on the real engine polling the lab, at 80x24: the timeline, a note, an assignment,
the runbook link; read-only mode offers none of the writes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from ispvm_tui.app import IspvmApp
from ispvm_tui.demo import start_demo
from ispvm_tui.engine.rulepack import RuleOverride
from ispvm_tui.screens.incident_detail import IncidentDetailScreen
from ispvm_tui.screens.text_prompt import TextPrompt
from tests.held_faults import held

SIZE = (80, 24)
RUNBOOK = "https://wiki.example.net/runbooks/link-down"


def _with_runbook(config: Any) -> Any:
    rules = config.rules.model_copy(update={"overrides": [RuleOverride(rule="interface_down", runbook=RUNBOOK)]})
    return config.model_copy(update={"rules": rules})


@pytest.fixture
def live(tmp_path: Any, address_base: str) -> Any:
    run = start_demo(held("core-link-cut"), speed=10.0, database=tmp_path / "ispvm.duckdb",
                     address_base=address_base, configure=_with_runbook)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not run.engine.snapshot().incidents:
        time.sleep(0.1)
    assert run.engine.snapshot().incidents, "the link cut should open an incident within the scenario"
    yield run
    run.stop()


async def until(pilot: Pilot[Any], predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


def _plain(widget: Static) -> str:
    content = widget.content
    return content.plain if hasattr(content, "plain") else str(content)


async def _open(pilot: Pilot[Any], app: IspvmApp, incident_id: str) -> IncidentDetailScreen:
    await pilot.press("2")
    await until(pilot, lambda: incident_id in [str(k.value) for k in
                                               app.screen.query_one("#incidents-table", DataTable).rows])
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, IncidentDetailScreen))
    screen = app.screen
    assert isinstance(screen, IncidentDetailScreen) and screen.incident_id == incident_id
    await until(pilot, lambda: any(e.kind == "incident.opened" for e in screen.timeline))
    return screen


async def _type(pilot: Pilot[Any], text: str) -> None:
    await pilot.press(*["space" if c == " " else c for c in text])


async def test_timeline_note_assign_and_runbook(live: Any) -> None:
    engine = live.engine
    incident = engine.snapshot().incidents[0]
    app = IspvmApp(engine, actor="noc-oncall")
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot, app, incident.id)
        table = screen.query_one("#incident-timeline", DataTable)
        assert table.row_count == len(screen.timeline) >= 2
        assert {"alert.fired", "incident.opened"} <= {e.kind for e in screen.timeline}
        head = screen.query_one("#incident-head", Static)
        assert incident.title in _plain(head) and "root:" in _plain(head)
        assert head.region.y < 3 and head.region.height >= 2  # pinned under the header, not scrolled away

        # n: a note, typed into the prompt (the console's own keys, such as a and c, do not fire meanwhile).
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, TextPrompt))
        await _type(pilot, "a call to the fibre crew")
        await pilot.press("enter")
        await until(pilot, lambda: any(e.kind == "note" and e.actor == "noc-oncall"
                                       and e.summary == "a call to the fibre crew" for e in screen.timeline))
        assert app.screen is screen
        assert engine.snapshot().incident(incident.id).status == "open"  # the typed "a" acknowledged nothing
        # At 80 columns the summary is cut to fit, never wrapped or scrolled sideways.
        cells = [str(table.get_row_at(r)[2]) for r in range(table.row_count)]
        assert any(c.startswith("noc-oncall: a call to the") for c in cells), cells
        assert max(map(len, cells)) <= SIZE[0] - 44

        # A: assign, through the prompt holding the current assignee (none yet).
        await pilot.press("A")
        await until(pilot, lambda: isinstance(app.screen, TextPrompt))
        await _type(pilot, "dave")
        await pilot.press("enter")
        await until(pilot, lambda: any(e.kind == "assigned" and e.actor == "noc-oncall" and "dave" in e.summary
                                       for e in screen.timeline))
        await until(pilot, lambda: "→ dave" in _plain(screen.query_one("#incident-head", Static)))
        assert engine.snapshot().incident(incident.id).assigned_to == "dave"
        await pilot.press("A")
        await until(pilot, lambda: isinstance(app.screen, TextPrompt))
        assert app.screen.query_one("#prompt-input").value == "dave"
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)

        # o: the root alert's runbook link, shown so it can be copied (no browser on a test host).
        await until(pilot, lambda: screen.runbooks == [RUNBOOK])
        assert RUNBOOK in _plain(screen.query_one("#incident-runbooks", Static))
        await pilot.press("o")
        await until(pilot, lambda: any(n.message == RUNBOOK for n in app._notifications))
    audit = live.store.query("SELECT actor, action FROM audit WHERE action IN ('incident.note', 'incident.assign') "
                             "ORDER BY ts")
    assert audit == [("noc-oncall", "incident.note"), ("noc-oncall", "incident.assign")]


async def test_readonly_shows_the_timeline_and_offers_no_writes(live: Any) -> None:
    engine = live.engine
    incident = engine.snapshot().incidents[0]
    app = IspvmApp(engine, actor="viewer", readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot, app, incident.id)
        assert screen.query_one("#incident-timeline", DataTable).row_count >= 2
        assert not screen.check_action("note", ()) and not screen.check_action("assign", ())
        offered = {a.binding.action for a in screen.active_bindings.values() if a.enabled}
        assert "runbook" in offered and not {"note", "assign"} & offered
        await pilot.press("n", "A", "a", "c")
        await pilot.pause(0.3)
        assert app.screen is screen  # no prompt opened
    assert not live.store.query("SELECT * FROM incident_events WHERE transition IN ('note', 'assigned')")
    assert engine.snapshot().incident(incident.id).status == "open"
