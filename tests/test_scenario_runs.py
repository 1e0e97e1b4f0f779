"""Every built-in scenario, played headless at x10 through the demo kit, meets its own expectations.

This is what `ispvm demo --headless --scenario NAME --speed 10` checks, one
run each (the five-runs-in-a-row check is `--runs 5`, by hand: too long for
the suite). Each file's header says what the right answer is and why.
"""

from __future__ import annotations

import pytest

from ispvm_tui.demo import report, start_demo, wait_for_end
from ispvm_tui.lab.scenario import builtin_scenarios, load_scenario

SPEED = 10.0  # the lab and engine share two cores: faster starves the pollers

@pytest.mark.parametrize("name", builtin_scenarios())
def test_scenario_meets_its_expectations(name: str, address_base: str) -> None:
    run = start_demo(load_scenario(name), speed=SPEED, address_base=address_base)
    try:
        wait_for_end(run)
        result = report(run)
    finally:
        run.stop()
    got = "; ".join(f"{i['severity']} {i['status']} {i['title']}" for i in result["incidents"]) or "no incidents"
    assert result["expect"]["passed"], f"{name}: {result['expect']['failures']} (got: {got})"
