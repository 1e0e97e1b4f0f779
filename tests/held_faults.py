"""Scenarios whose faults are never repaired, for tests that act on an open incident.

At 10x speed a fault lasts only seconds of wall time; on a loaded host the repair could close the
incident before the test reaches it.
"""

from __future__ import annotations

from ispvm_tui.lab.scenario import Scenario, load_scenario


def held(name: str) -> Scenario:
    """The built-in scenario ``name`` without its ``restore`` steps."""
    scenario = load_scenario(name)
    return scenario.model_copy(update={"timeline": [s for s in scenario.timeline if s.action != "restore"]})
