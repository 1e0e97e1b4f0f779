"""A maintenance window made with ``ispvm maint add`` while the engine runs: planned work pages nobody at once,
other faults still page, and canceling the window makes the next fault page again.

The lab, the real engine, a webhook receiver; the ``ispvm`` executable talks to the engine over its control
socket (the engine holds the database file, so nothing else could write it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ispvm_tui.demo import DemoRun, start_demo
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import TimelineEntry, load_scenario
from tests.waiting import wait_for


def ispvm(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("ispvm")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, COLUMNS="200"))


async def _apply(lab: Lab, entry: TimelineEntry) -> None:
    lab.model.apply(entry)


def fault(run: DemoRun, action: str, **fields: Any) -> None:
    run.loop.run(_apply(run.lab, TimelineEntry(at=0, action=action, **fields)))  # type: ignore[arg-type]


@pytest.fixture
def quiet_lab(address_base: str, tmp_path: Path) -> Iterator[DemoRun]:
    """core-link-cut's network with no timeline: the faults are the test's."""
    scenario = load_scenario("core-link-cut")
    scenario = scenario.model_copy(update={"timeline": []})
    run = start_demo(scenario, speed=10.0, address_base=address_base, database=tmp_path / "ispvm.duckdb")
    try:
        assert wait_for(lambda: all(d.state == "up" for d in run.engine.snapshot().devices), timeout=60), \
            [(d.name, d.state) for d in run.engine.snapshot().devices]
        yield run
    finally:
        run.stop()


def _incident_about(run: DemoRun, device: str) -> dict[str, Any] | None:
    for row in run.store.query_dicts("SELECT id, labels, root_causes FROM incidents ORDER BY opened_at"):
        if device in row["root_causes"]:
            return row
    return None


def _opened(run: DemoRun, incident_id: str) -> bool:
    return any(w.json.get("event_type") == "incident.opened" and (w.json.get("incident") or {}).get("id")
               == incident_id for w in run.sink.received())


def test_a_window_added_while_the_engine_runs_silences_its_scope_until_it_is_canceled(quiet_lab: DemoRun) -> None:
    run = quiet_lab
    db = str(run.store.path)
    added = ispvm("maint", "add", "POP works", "--database", db, "--device", "POPB-ACC1", "--device", "POPA-ACC2",
                  "--duration", "2h", "--actor", "maria", "--json")
    assert added.returncode == 0, added.stderr
    assert "no engine running" not in added.stderr  # the engine took it, through its socket
    window = json.loads(added.stdout)
    assert window["id"] == "MW-1" and window["active_now"] and window["created_by"] == "maria"

    # In scope: recorded, labelled with the window, and nobody is told.
    fault(run, "device_down", device="POPB-ACC1")
    assert wait_for(lambda: _incident_about(run, "POPB-ACC1") is not None, timeout=90), "POPB-ACC1 never an incident"
    planned = _incident_about(run, "POPB-ACC1")
    assert planned is not None and json.loads(planned["labels"]).get("maintenance") == "POP works"

    # Outside the scope, in the same run: it pages as usual.
    fault(run, "bgp_down", peer="EDGE1:UPSTREAM1")
    assert wait_for(lambda: (inc := _incident_about(run, "UPSTREAM1")) is not None and _opened(run, inc["id"]),
                    timeout=90), "the transit fault outside the window never paged"
    assert not _opened(run, planned["id"]), "planned work paged"
    assert not run.store.query("SELECT 1 FROM outbox WHERE incident_id = ?", [planned["id"]])

    canceled = ispvm("maint", "cancel", "MW-1", "--database", db, "--actor", "maria", "--json")
    assert canceled.returncode == 0, canceled.stderr
    assert json.loads(canceled.stdout)["status"] == "canceled"
    # The window is over: what it held back and is still open is told now, as opened.
    assert wait_for(lambda: _opened(run, planned["id"]), timeout=60), "the held-back incident was never released"

    # A new fault in the old scope pages again.
    fault(run, "device_down", device="POPA-ACC2")
    assert wait_for(lambda: (inc := _incident_about(run, "POPA-ACC2")) is not None and _opened(run, inc["id"]),
                    timeout=90), "a fault in a canceled window's scope did not page"
    after = _incident_about(run, "POPA-ACC2")
    assert after is not None and "maintenance" not in json.loads(after["labels"])

    audit = run.store.query("SELECT actor, action, target FROM audit WHERE action LIKE 'maint.%' ORDER BY ts")
    assert audit == [("maria", "maint.add", "MW-1"), ("maria", "maint.cancel", "MW-1")]
