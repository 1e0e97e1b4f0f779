"""SVG snapshots of the console's main views at 80x24 and 160x48, on a fixed state (tests/console_state.py).

Each test runs ``IspvmApp(StaticEngine(small_state()))``, goes to one view, waits until that view shows the
state (not a fixed sleep), and compares the screen with ``tests/__snapshots__/test_console_snapshots/*.svg``.
A failure writes ``snapshot_report.html`` (the old and new screens side by side) in the working directory.

After an intended change to a screen, regenerate and look at the new SVGs before committing them:

    PYTHONPATH=. .venv/bin/pytest -q tests/test_console_snapshots.py --snapshot-update
    git diff --stat tests/__snapshots__/        # then open the changed .svg files in a browser

What keeps them deterministic: the state's times are relative to its own ``taken_at`` (the screens measure
ages from the snapshot, never the wall clock), TZ is UTC while these tests run (local times are formatted),
the user and host name in the header are fixed, animations are off, text cursors do not blink.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static, Tree

from ispvm_tui.app import IspvmApp
from ispvm_tui.screens.devices import DeviceDetailScreen
from ispvm_tui.screens.incident_detail import IncidentDetailScreen
from tests.console_state import StaticEngine, small_state

SIZES = {"80x24": (80, 24), "160x48": (160, 48)}
WAIT_S = 30.0  # generous: a loaded 2-core host


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """The screens format local times: UTC here, whatever the host's zone; restored afterwards."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def fixed_app() -> IspvmApp:
    app = IspvmApp(StaticEngine(small_state()), actor="noc")  # type: ignore[arg-type]
    app.host = "noc-console"  # read by the Topology tab when composed, after this
    app.sub_title = "noc@noc-console"
    app.animation_level = "none"
    return app


async def until(pilot: Pilot[Any], predicate: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"not shown in {WAIT_S:g}s: {what}"
        await pilot.pause(0.05)


async def settle(pilot: Pilot[Any]) -> None:
    for widget in pilot.app.query(Input):
        widget.cursor_blink = False
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def rows(pilot: Pilot[Any], selector: str) -> int:
    return pilot.app.screen.query_one(selector, DataTable).row_count


async def home(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, IspvmApp)
    await until(pilot, lambda: app.snapshot is not None and rows(pilot, "#home-incidents") == 5, "home incidents")
    await settle(pilot)


async def incidents(pilot: Pilot[Any]) -> None:
    await home(pilot)
    await pilot.press("2")
    await until(pilot, lambda: pilot.app.focused is pilot.app.screen.query_one("#incidents-table"), "incidents")
    await settle(pilot)


async def topology(pilot: Pilot[Any]) -> None:
    await home(pilot)
    await pilot.press("3")
    tree = pilot.app.screen.query_one("#topology-tree", Tree)
    await until(pilot, lambda: pilot.app.focused is tree and len(tree.root.children) > 0, "topology tree")
    await settle(pilot)


async def devices(pilot: Pilot[Any]) -> None:
    await home(pilot)
    await pilot.press("6")
    await until(pilot, lambda: pilot.app.focused is pilot.app.screen.query_one("#devices-table")
                and rows(pilot, "#devices-table") == 34, "devices")
    await settle(pilot)


async def device_detail(pilot: Pilot[Any]) -> None:
    await devices(pilot)
    table = pilot.app.screen.query_one("#devices-table", DataTable)
    table.move_cursor(row=table.get_row_index("CORE1"), animate=False)  # a device with every section
    await pilot.press("enter")

    def shown() -> bool:
        screen = pilot.app.screen
        return isinstance(screen, DeviceDetailScreen) and screen.detail is not None and "CORE1" in str(
            screen.query_one("#device-detail", Static).render())

    await until(pilot, shown, "CORE1's detail")
    await settle(pilot)


async def incident_detail(pilot: Pilot[Any]) -> None:
    await incidents(pilot)
    await pilot.press("enter")  # the top row: the critical PoP outage

    def shown() -> bool:
        screen = pilot.app.screen
        return isinstance(screen, IncidentDetailScreen) and screen.incident is not None

    await until(pilot, shown, "the incident's detail")
    await settle(pilot)


VIEWS: dict[str, Callable[[Pilot[Any]], Awaitable[None]]] = {
    "home": home,
    "incidents": incidents,
    "topology": topology,
    "devices": devices,
    "device_detail": device_detail,
    "incident_detail": incident_detail,
}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("view", list(VIEWS))
def test_view_matches_its_snapshot(snap_compare: Any, view: str, size: str) -> None:
    assert snap_compare(fixed_app(), terminal_size=SIZES[size], run_before=VIEWS[view])


def test_the_fixed_state_is_the_same_every_time() -> None:
    # The snapshots rest on it: a state that drifted (a set's order, the wall clock) would fail them at random.
    assert small_state() == small_state()
    state = small_state()
    assert {i.status for i in state.incidents} == {"open", "acked", "closed"}
    assert sum(i.status == "open" for i in state.incidents) == 3
    assert len({i.severity for i in state.incidents if i.status == "open"}) == 3


def test_the_fixed_state_engine_answers_every_engine_api_method() -> None:
    """A method the screens call that StaticEngine lacks would fail the snapshot runs in ways that look like
    layout changes: it has every method of the protocol, with the same parameters."""
    import inspect

    from ispvm_tui.engine.api import EngineAPI

    wanted = {n for n, v in vars(EngineAPI).items() if callable(v) and not n.startswith("_")}
    for name in wanted:
        mine = getattr(StaticEngine, name, None)
        assert mine is not None, name
        theirs = inspect.signature(getattr(EngineAPI, name)).parameters
        assert list(inspect.signature(mine).parameters) == list(theirs), name
