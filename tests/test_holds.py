"""A problem waits for fresh answers at most hold_max_s in all, however often its plan changes shape."""

from __future__ import annotations

from ispvm_tui.engine.api import Impact, RootCause
from ispvm_tui.engine.correlator import Plan
from ispvm_tui.engine.holds import HoldBound

LIMIT = 45.0


def plan(roots: list[str], alerts: list[str], held: bool = True) -> Plan:
    return Plan(key="+".join(roots), root_type="device", title=f"Outage behind {roots[0]}", severity="critical",
                root_causes=[RootCause("device", r, r, 0.6) for r in roots], alert_ids=alerts,
                suppressed_ids=alerts[1:], impact=Impact(), evidence=[], held=held)


def test_a_plan_held_round_after_round_is_released_after_the_limit() -> None:
    bound = HoldBound(LIMIT)
    for t in range(0, 46, 5):
        p = plan(["AGG1"], ["a1"])
        bound.apply([p], float(t))
        assert p.held
    p = plan(["AGG1"], ["a1"])
    bound.apply([p], 50.0)
    assert not p.held
    assert any("decided after waiting 50s" in line for line in p.evidence)


def test_a_spreading_outage_keeps_its_first_wait_while_its_roots_move() -> None:
    # Every round the outage takes in more routers: new roots, a new key, the earlier alerts still in it.
    bound = HoldBound(LIMIT)
    alerts: list[str] = []
    released_at = None
    for step, t in enumerate(range(0, 150, 5)):
        alerts = [*alerts, f"a{step}"]
        p = plan([f"R{step}"], list(reversed(alerts)))
        bound.apply([p], float(t))
        if not p.held:
            released_at = t
            break
    assert released_at is not None and LIMIT < released_at <= LIMIT + 5


def test_side_by_side_regions_merged_into_one_plan_keep_the_earliest_wait() -> None:
    bound = HoldBound(LIMIT)
    bound.apply([plan(["A"], ["a"])], 0.0)
    bound.apply([plan(["A"], ["a"]), plan(["B"], ["b"])], 30.0)
    merged = plan(["A", "B"], ["a", "b"])
    bound.apply([merged], 40.0)
    assert merged.held
    merged = plan(["A", "B"], ["a", "b"])
    bound.apply([merged], 46.0)
    assert not merged.held  # A's wait began at 0


def test_unrelated_problems_wait_on_their_own() -> None:
    bound = HoldBound(LIMIT)
    bound.apply([plan(["A"], ["a"])], 0.0)
    late = plan(["B"], ["b"])
    bound.apply([plan(["A"], ["a"]), late], 40.0)
    a, b = plan(["A"], ["a"]), plan(["B"], ["b"])
    bound.apply([a, b], 50.0)
    assert not a.held and b.held


def test_a_wait_ends_when_the_plan_is_decided_and_old_waits_are_forgotten() -> None:
    bound = HoldBound(LIMIT)
    bound.apply([plan(["A"], ["a"])], 0.0)
    bound.apply([plan(["A"], ["a"], held=False)], 10.0)  # decided: the next hold is a new problem
    again = plan(["A"], ["a"])
    bound.apply([again], 50.0)
    assert again.held
    bound.apply([], 200.0)  # not held for longer than the limit: forgotten
    assert len(bound) == 0
