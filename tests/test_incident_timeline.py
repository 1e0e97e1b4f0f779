"""One incident's timeline, notes and assignment through the whole engine on the lab (real RouterOS API, real
DuckDB, the lab's webhook sink): a BGP configuration change on EDGE1, then its UPSTREAM1 session drops and stays
down. The timeline holds the config change, the fired alert, the opening, the notification the sink took, and
the ack, note and assignment with who did them; the assignment survives a restart on the same file.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ispvm_tui.demo import start_demo
from ispvm_tui.engine import control
from ispvm_tui.engine.api import TIMELINE_KINDS, TimelineEntry
from ispvm_tui.engine.rulepack import RuleOverride, load_ruleset
from ispvm_tui.lab.scenario import load_scenario
from ispvm_tui.tomlsource import SourceError
from tests.waiting import wait_for

SPEED = 10.0
ROOT = "EDGE1:UPSTREAM1"


def _scenario() -> Any:
    scenario = load_scenario("config-change-then-outage")
    # Never rolled back: the incident must still be open when the test acts on it. The change comes later than
    # in the file (120 s, 12 s of wall time): on a loaded host the baseline read must see the old configuration,
    # or the change is part of the baseline and there is nothing to detect.
    later = {"config_change": 120.0, "bgp_down": 240.0}
    steps = [s.model_copy(update={"at": later[s.action]}) for s in scenario.timeline if s.action in later]
    return scenario.model_copy(update={"timeline": steps})


def _result(future: Any) -> Any:
    async def wait() -> Any:
        return await asyncio.wait_for(asyncio.wrap_future(future), 30)

    return asyncio.run(wait())


def _timeline(run: Any, incident_id: str) -> tuple[TimelineEntry, ...]:
    return _result(run.engine.incident_timeline(incident_id))


def _kinds(entries: tuple[TimelineEntry, ...]) -> set[str]:
    return {e.kind for e in entries}


def test_timeline_actions_and_an_assignment_that_survives_a_restart(tmp_path: Path, address_base: str) -> None:
    database = tmp_path / "ispvm.duckdb"
    run = start_demo(_scenario(), speed=SPEED, database=database, address_base=address_base)
    try:
        def incident() -> Any:
            return next((i for i in run.engine.snapshot().incidents
                         if ROOT in [rc.entity_id for rc in i.root_causes]), None)

        assert wait_for(lambda: incident() is not None, 120), "the session drop should open an incident"
        inc = incident()
        # The sink takes incident.opened; the timeline then says so, with the target and "delivered".
        assert wait_for(lambda: any(e.kind == "notification" and e.status == "delivered"
                                    and "incident.opened" in e.summary and "lab-sink" in e.summary
                                    for e in _timeline(run, inc.id)), 60)
        # The change two minutes before: found by the fault's own read, if not by the schedule's.
        assert wait_for(lambda: any(e.kind == "config.changed" and e.summary.startswith("EDGE1 bgp")
                                    for e in _timeline(run, inc.id)), 90)
        entries = _timeline(run, inc.id)
        assert {"alert.fired", "incident.opened", "notification", "config.changed"} <= _kinds(entries)
        assert _kinds(entries) <= set(TIMELINE_KINDS)
        assert [e.at for e in entries] == sorted(e.at for e in entries)
        fired = next(e for e in entries if e.kind == "alert.fired" and ROOT in e.summary)
        opened = next(e for e in entries if e.kind == "incident.opened")
        change = next(e for e in entries if e.kind == "config.changed")
        assert change.at < fired.at <= opened.at

        events: list[Any] = []
        unsubscribe = run.engine.subscribe(events.append)
        view = _result(run.engine.acknowledge(inc.id, "oncall-alice"))
        assert view.status == "acked"
        assert _result(run.engine.add_note(inc.id, "UPSTREAM1 NOC called, ticket 81", "bob")) is None
        assigned = _result(run.engine.assign(inc.id, "dave", "carol"))
        assert assigned.assigned_to == "dave"
        # Other consoles hear of both (they notify nobody outside): the incident's detail reads its timeline again.
        assert wait_for(lambda: {"incident.noted", "incident.assigned"}
                        <= {e.kind for e in list(events) if e.incident_id == inc.id}, 10)
        unsubscribe()
        assert run.engine.snapshot().incident(inc.id).assigned_to == "dave"

        entries = _timeline(run, inc.id)
        acked = [e for e in entries if e.kind == "incident.acked"]
        notes = [e for e in entries if e.kind == "note"]
        assigns = [e for e in entries if e.kind == "assigned"]
        assert [e.actor for e in acked] == ["oncall-alice"]
        assert [(e.actor, e.summary) for e in notes] == [("bob", "UPSTREAM1 NOC called, ticket 81")]
        assert [(e.actor, e.summary) for e in assigns] == [("carol", "assigned to dave")]
        assert acked[0].at <= notes[0].at <= assigns[0].at
        assert run.store.query("SELECT actor, target, detail FROM audit WHERE action = 'incident.assign'") == [
            ("carol", inc.id, "dave")]
        # Assigning notifies nobody: no outbox row for it, and the sink never hears of an assignment.
        assert run.store.query("SELECT count(*) FROM outbox WHERE created_at >= ?", [assigns[0].at]) == [(0,)]

        # The same through the control socket (what `ispvm incidents assign` sends); bad input is refused.
        done, _ = control.call(database, "incidents.assign", {"id": inc.id[:8], "assignee": "erin"}, "frank",
                               lambda: pytest.fail("the engine should answer"))
        assert (done["changed"], done["incident"]["assigned_to"]) == (True, "erin")
        for args in ({"id": inc.id[:8], "assignee": "  "}, {"id": inc.id[:8], "assignee": "a\nb"},
                     {"id": "CORE1", "assignee": "x"}):
            with pytest.raises(control.Refused):
                control.request(database, "incidents.assign", args, "frank")
        with pytest.raises(ValueError, match="blank"):
            _result(run.engine.add_note(inc.id, "   ", "bob"))
        unknown = "00000000-0000-0000-0000-000000000000"
        with pytest.raises(KeyError):
            _timeline(run, unknown)
        with pytest.raises(KeyError):
            _result(run.engine.assign(unknown, "dave", "carol"))
    finally:
        run.stop()

    # A restart on the same file: the incident comes back assigned, its timeline intact.
    run = start_demo(_scenario(), speed=SPEED, database=database, address_base=address_base)
    try:
        restored = run.engine.snapshot().incident(inc.id)
        assert restored is not None and restored.assigned_to == "erin"
        again = _timeline(run, inc.id)
        assert [(e.actor, e.summary) for e in again if e.kind == "assigned"] == [
            ("carol", "assigned to dave"), ("frank", "assigned to erin")]
        assert any(e.kind == "note" for e in again)
    finally:
        run.stop()


# ---- runbook links in rule packs ---------------------------------------------------------------------

def _pack(tmp_path: Path, runbook: str) -> Path:
    path = tmp_path / "site-rules.toml"
    path.write_text('[[rule]]\nname = "uplink_errors"\nmetric = "interface.errors_ps"\nop = ">"\nthreshold = 5\n'
                    f'runbook = {json.dumps(runbook)}\n')
    return path


@pytest.mark.parametrize("runbook", ["https://wiki.example.net/noc/uplink-errors", "http://10.0.0.5/rb?id=7",
                                     "Check optics on both ends.", "Note: call the carrier first"])
def test_a_runbook_is_advice_or_an_http_link(tmp_path: Path, runbook: str) -> None:
    rules = load_ruleset([], [_pack(tmp_path, runbook)], [])
    assert rules.rules["uplink_errors"].runbook == runbook


@pytest.mark.parametrize(("runbook", "message"), [
    ("ftp://files.example.net/runbook.pdf", "not ftp:"),
    ("javascript:alert(1)", "not javascript:"),
    ("file:///etc/passwd", "not file:"),
    ("https:///no-host", "names no host"),
])
def test_a_runbook_link_that_is_not_http_is_refused_naming_file_and_rule(tmp_path: Path, runbook: str,
                                                                          message: str) -> None:
    path = _pack(tmp_path, runbook)
    with pytest.raises(SourceError) as caught:
        load_ruleset([], [path], [])
    text = str(caught.value)
    assert f"{path}:6" in text and "rule 'uplink_errors'" in text and message in text, text
    assert "passwd" not in text and "files.example.net" not in text  # only the scheme is quoted back
    with pytest.raises(SourceError, match=f"rules.overrides.0..runbook: rule 'interface_down': .*{message}"):
        load_ruleset(["availability"], [], [RuleOverride(rule="interface_down", runbook=runbook)])
