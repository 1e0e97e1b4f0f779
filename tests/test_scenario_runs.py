"""Every built-in scenario, played headless at x10 through the demo kit, meets its own expectations.

This is what `ispvm demo --headless --scenario NAME --speed 10` checks, one
run each (the five-runs-in-a-row check is `--runs 5`, by hand: too long for
the suite). Scenarios whose right answer needs the correlation rewrite are
marked xfail (not strict) until it lands.
"""

from __future__ import annotations

import pytest

from ispvm_tui.demo import report, start_demo, wait_for_end
from ispvm_tui.lab.scenario import builtin_scenarios, load_scenario

SPEED = 10.0  # the lab and engine share two cores: faster starves the pollers

# Right answers the current engine does not give yet (see each file's header).
NEEDS_CORRELATION_REWRITE = {
    "both-uplinks-cut",
    "core-power-loss",
    "core-power-loss-one-vantage",
    "flapping-port",
    "one-of-two-transit",
    "pop-storm",
    "root-recovers-symptom-stays",
    "routed-cut-no-route",
    "unlinked-device",
}


def _params() -> list[object]:
    marks = pytest.mark.xfail(strict=False, reason="needs the correlation rewrite")
    return [pytest.param(name, marks=marks) if name in NEEDS_CORRELATION_REWRITE else name
            for name in builtin_scenarios()]


@pytest.mark.parametrize("name", _params())
def test_scenario_meets_its_expectations(name: str, address_base: str) -> None:
    run = start_demo(load_scenario(name), speed=SPEED, address_base=address_base)
    try:
        wait_for_end(run)
        result = report(run)
    finally:
        run.stop()
    got = "; ".join(f"{i['severity']} {i['status']} {i['title']}" for i in result["incidents"]) or "no incidents"
    assert result["expect"]["passed"], f"{name}: {result['expect']['failures']} (got: {got})"
