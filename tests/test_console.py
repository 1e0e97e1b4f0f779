"""Pilot tests for the Textual console against an in-memory EngineAPI."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import pytest
from textual.widgets import DataTable, Static, Tree
from textual.widgets.tree import TreeNode

from ispvm_tui.app import ACTIONS, IspvmApp, pick_theme
from ispvm_tui.engine.api import (
    AlertView,
    DeviceView,
    EngineEvent,
    Impact,
    IncidentView,
    LinkView,
    RootCause,
    SiteView,
    Snapshot,
)
from ispvm_tui.screens.help import HelpScreen
from ispvm_tui.screens.incident_detail import IncidentDetailScreen

SIZE = (140, 45)
NOW = 1_750_000_000.0
DOWN_LINK = "CORE1:ether2--POPA-AGG:ether1"


class SnapshotEngine:
    """EngineAPI over frozen views; acknowledge completes at once and updates the snapshot."""

    def __init__(self, snapshot: Snapshot, *, ack_error: Exception | None = None) -> None:
        self._snapshot = snapshot
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[EngineEvent], None]] = []
        self.ack_error = ack_error
        self.acks: list[tuple[str, str]] = []
        self.snapshot_calls = 0

    def snapshot(self) -> Snapshot:
        with self._lock:
            self.snapshot_calls += 1
            return self._snapshot

    def set_snapshot(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    def subscribe(self, callback: Callable[[EngineEvent], None]) -> Callable[[], None]:
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback)

    def emit(self, event: EngineEvent, *, callbacks: list[Callable[[EngineEvent], None]] | None = None) -> None:
        for callback in list(self._callbacks if callbacks is None else callbacks):
            callback(event)

    def acknowledge(self, incident_id: str, actor: str) -> Future[IncidentView]:
        future: Future[IncidentView] = Future()
        self.acks.append((incident_id, actor))
        if self.ack_error is not None:
            future.set_exception(self.ack_error)
            return future
        with self._lock:
            snap = self._snapshot
            incident = snap.incident(incident_id)
            assert incident is not None
            acked = replace(incident, status="acked", acked_by=actor, acked_at=snap.taken_at)
            incidents = tuple(acked if i.id == incident_id else i for i in snap.incidents)
            self._snapshot = replace(snap, incidents=incidents, taken_at=snap.taken_at + 1)
        future.set_result(acked)
        return future


def _alert(alert_id: str, entity: str, *, suppressed: bool, severity: str = "critical") -> AlertView:
    return AlertView(
        id=alert_id,
        rule="device_unreachable" if suppressed else "interface_down",
        entity_type="device" if suppressed else "link",
        entity_id=entity,
        severity=severity,  # type: ignore[arg-type]
        state="firing",
        starts_at=NOW - 600,
        ends_at=None,
        summary=f"{entity} is not answering" if suppressed else f"{entity} oper-down",
        incident_id="INC-1",
        suppressed=suppressed,
    )


def build_snapshot(*, polls_total: int = 120, extra: tuple[IncidentView, ...] = ()) -> Snapshot:
    devices = (
        DeviceView("EDGE1", "HQ", "edge", "10.0.0.1", "up"),
        DeviceView("CORE1", "HQ", "core", "10.0.0.2", "up"),
        DeviceView("POPA-AGG", "POP-A", "aggregation", "10.0.1.1", "down", last_error="timeout"),
        DeviceView("POPA-AP1", "POP-A", "access", "10.0.1.2", "unknown"),
        DeviceView("POPB-AGG", "POP-B", "aggregation", "10.0.2.1", "up"),
    )
    links = (
        LinkView("CORE1:ether1--EDGE1:ether1", "CORE1:ether1", "EDGE1:ether1", "up", 10_000, 0.31),
        LinkView(DOWN_LINK, "CORE1:ether2", "POPA-AGG:ether1", "down", 1000),
        LinkView("CORE1:ether3--POPB-AGG:ether1", "CORE1:ether3", "POPB-AGG:ether1", "up", 1000, 0.4),
        LinkView("POPA-AGG:ether2--POPA-AP1:ether1", "POPA-AGG:ether2", "POPA-AP1:ether1", "unknown"),
        LinkView("POPA-AGG:ether3--POPB-AGG:ether2", "POPA-AGG:ether3", "POPB-AGG:ether2", "down"),
    )
    sites = (
        SiteView("HQ", 2, 0, None, "up"),
        SiteView("POP-A", 2, 2, 1200, "down"),
        SiteView("POP-B", 1, 0, 800, "up"),
    )
    core = IncidentView(
        id="INC-1",
        title="POP-A cut off: core link CORE1-POPA-AGG down",
        status="open",
        severity="critical",
        priority="P1",
        opened_at=NOW - 600,
        closed_at=None,
        acked_by=None,
        acked_at=None,
        root_causes=(RootCause("link", DOWN_LINK, "CORE1 ether2 ↔ POPA-AGG ether1", 0.92),),
        impact=Impact(2, 2, 1, 1200, ("POP-A",), ("POPA-AGG", "POPA-AP1"), ("Internet POP-A",)),
        evidence=(
            "CORE1 ether2 oper-status down since 02:58:11",
            "POPA-AGG and POPA-AP1 unreachable; every path crosses the failed link",
        ),
        alerts=(
            _alert("A1", DOWN_LINK, suppressed=False),
            _alert("A2", "POPA-AGG", suppressed=True),
            _alert("A3", "POPA-AP1", suppressed=True),
        ),
    )
    cpu = replace(
        core,
        id="INC-2",
        title="High CPU on POPB-AGG",
        severity="minor",
        priority="P3",
        opened_at=NOW - 3600,
        root_causes=(RootCause("device", "POPB-AGG", "POPB-AGG", 0.6),),
        impact=Impact(1, 1, 0, 800, ("POP-B",), ("POPB-AGG",)),
        evidence=("cpu-load 97% for 10 minutes",),
        alerts=(),
    )
    flap = replace(
        core,
        id="INC-3",
        title="BGP session EDGE1 UPSTREAM1 flapped",
        status="closed",
        severity="warning",
        priority="P4",
        opened_at=NOW - 7200,
        closed_at=NOW - 7000,
        root_causes=(RootCause("bgp_peer", "EDGE1:UPSTREAM1", "EDGE1 → UPSTREAM1", 0.8),),
        impact=Impact(),
        evidence=("session Established → Active → Established",),
        alerts=(),
    )
    return Snapshot(
        taken_at=NOW,
        vantage=("EDGE1",),
        sites=sites,
        devices=devices,
        links=links,
        incidents=(core, cpu, *extra, flap),
        alerts=(),
        polls_total=polls_total,
        polls_failed=2,
    )


def plain(widget: Static) -> str:
    return str(widget.content) if not hasattr(widget.content, "plain") else widget.content.plain


def row_keys(table: DataTable) -> list[str]:
    return [row.key.value for row in table.ordered_rows]


def make_app(engine: SnapshotEngine, **kwargs: object) -> IspvmApp:
    kwargs.setdefault("actor", "alice")
    return IspvmApp(engine, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def engine() -> SnapshotEngine:
    return SnapshotEngine(build_snapshot())


async def test_home_shows_severity_counts_as_text(engine: SnapshotEngine) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = plain(app.screen.query_one("#home-severity", Static))
        assert "▲ CRIT 1" in text
        assert "● MINOR 1" in text
        assert "◆ MAJOR 0" in text
        assert "WARN 0" in text  # the closed warning is not counted
        sites = app.screen.query_one("#sites-table", DataTable)
        assert row_keys(sites)[0] == "site:POP-A"  # trouble first
        assert "✖ down" in str(sites.get_row("site:POP-A")[2])
        status = plain(app.screen.query_one("#status", Static))
        assert "polls 118 ok / 2 failed" in status
        assert "filter: none" in status


async def test_open_incidents_are_on_screen_at_80x24(engine: SnapshotEngine) -> None:
    """The smallest terminal an engineer may have over SSH: every open incident row is visible without scrolling."""
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#home-incidents", DataTable)
        open_rows = [i for i in engine.snapshot().incidents if i.status != "closed"]
        assert table.row_count >= len(open_rows) > 0
        shown = table.region.height - 1  # less the header row
        assert shown >= len(open_rows), f"{shown} rows visible for {len(open_rows)} open incidents"
        assert table.region.y + table.region.height <= 24 - 1  # above the footer


async def test_at_80_columns_nothing_scrolls_sideways_and_the_status_is_one_line(engine: SnapshotEngine) -> None:
    """The incident tables drop the ID, score and impact columns and the title takes what is left; the status
    line keeps the severities with incidents open. At 140 columns everything is back."""
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for tab, selector in (("1", "#home-incidents"), ("2", "#incidents-table")):
            await pilot.press(tab)
            await pilot.pause()
            table = app.screen.query_one(selector, DataTable)
            assert table.row_count and table.max_scroll_x == 0, f"{selector} scrolls sideways at 80 columns"
            assert "title" in [str(c.key.value) for c in table.ordered_columns]
        status = app.screen.query_one("#status", Static)
        assert status.size.height == 1 and "▲1" in plain(status) and "MAJOR" not in plain(status)
        await pilot.resize_terminal(140, 45)
        await pilot.pause()
        await until(pilot, lambda: "id" in [str(c.key.value) for c in
                                            app.screen.query_one("#incidents-table", DataTable).ordered_columns])
        assert "◆ MAJOR 0" in plain(app.screen.query_one("#status", Static))


async def test_synchronizing_before_first_poll() -> None:
    engine = SnapshotEngine(build_snapshot(polls_total=0))
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "Synchronizing" in plain(app.screen.query_one("#home-severity", Static))
        assert "Synchronizing" in plain(app.screen.query_one("#status", Static))


async def test_incidents_table_lists_incidents(engine: SnapshotEngine) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await pilot.pause()
        table = app.screen.query_one("#incidents-table", DataTable)
        assert row_keys(table) == ["INC-1", "INC-2", "INC-3"]
        cells = [str(c) for c in table.get_row("INC-1")]
        assert "▲ CRIT" in cells
        assert "! open" in cells
        assert "CORE1 ether2 ↔ POPA-AGG ether1" in cells
        assert "1,200" in cells
        assert "10m ago" in cells
        assert "2" in cells  # suppressed alerts
        assert app.focused is table


async def test_filter_narrows_rows_and_escape_clears(engine: SnapshotEngine) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash")
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "filter"
        await pilot.press("C", "p", "U")
        await pilot.pause()
        table = app.screen.query_one("#incidents-table", DataTable)
        assert row_keys(table) == ["INC-2"]
        assert "filter “CpU” 1/3" in plain(app.screen.query_one("#status", Static))
        # severity and status words match too
        await pilot.press("backspace", "backspace", "backspace", *"crit")
        await pilot.pause()
        assert row_keys(table) == ["INC-1"]
        await pilot.press("enter")  # keep the filter, back to the table
        await pilot.pause()
        assert app.focused is table
        await pilot.press("escape")
        await pilot.pause()
        assert row_keys(table) == ["INC-1", "INC-2", "INC-3"]
        assert "filter: none" in plain(app.screen.query_one("#status", Static))


async def test_enter_opens_detail_with_root_cause_and_evidence(engine: SnapshotEngine) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, IncidentDetailScreen)
        text = plain(app.screen.query_one("#incident-detail", Static))
        assert "POP-A cut off" in text
        assert "CORE1 ether2 ↔ POPA-AGG ether1" in text
        assert "confidence 92%" in text
        assert "CORE1 ether2 oper-status down since 02:58:11" in text
        assert "[suppressed]" in text
        assert "Subscribers: 1,200" in text
        assert "press a to acknowledge" in text
        await pilot.press("q")  # q on a pushed screen goes back, not out
        await pilot.pause()
        assert not isinstance(app.screen, IncidentDetailScreen)
        assert app.is_running


async def test_acknowledge_selected_incident(engine: SnapshotEngine) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "down")  # select INC-2
        await pilot.pause()
        await pilot.press("a")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert engine.acks == [("INC-2", "alice")]
        table = app.screen.query_one("#incidents-table", DataTable)
        assert "◑ acked" in str(table.get_row("INC-2")[3])
        assert table.cursor_row == 1  # the refresh kept the selection
        assert any("Acknowledged High CPU on POPB-AGG" in n.message for n in app._notifications)
        # pressing again only explains; the engine is not asked twice
        await pilot.press("a")
        await pilot.pause()
        assert engine.acks == [("INC-2", "alice")]


async def test_acknowledge_from_detail_screen(engine: SnapshotEngine) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "enter")
        await pilot.pause()
        await pilot.press("a")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert engine.acks == [("INC-1", "alice")]
        assert "Acknowledged by alice" in plain(app.screen.query_one("#incident-detail", Static))


async def test_acknowledge_error_is_a_notification() -> None:
    engine = SnapshotEngine(build_snapshot(), ack_error=RuntimeError("engine busy"))
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "a")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert engine.acks == [("INC-1", "alice")]
        messages = [n.message for n in app._notifications]
        assert any("engine busy" in m for m in messages)
        assert app.is_running


async def test_readonly_has_no_acknowledge_binding(engine: SnapshotEngine) -> None:
    app = make_app(engine, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await pilot.pause()
        assert "a" not in app._bindings.key_to_bindings
        assert "a" not in app.screen.active_bindings
        assert all(b.action != "acknowledge" for bs in app._bindings.key_to_bindings.values() for b in bs)
        await pilot.press("a")
        await pilot.pause()
        assert engine.acks == []
        await pilot.press("question_mark")
        await pilot.pause()
        assert "Acknowledge" not in plain(app.screen.query_one("#help", Static))


async def test_help_lists_every_binding(engine: SnapshotEngine) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = plain(app.screen.query_one("#help", Static))
        for action in ACTIONS:
            key = {"escape": "esc"}.get(action.key, action.key)
            assert f"{key} " in text and action.description in text, action
        # every app binding comes from the list, so the help cannot miss one
        ours = {b.action for bs in app._bindings.key_to_bindings.values() for b in bs if b.id}
        assert ours == {a.action for a in ACTIONS}
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


def _walk(node: TreeNode) -> list[TreeNode]:
    found = [node]
    for child in node.children:
        found += _walk(child)
    return found


def _label(node: TreeNode) -> str:
    return str(node.label)


async def test_topology_tree_shows_down_link_and_devices_behind_it(engine: SnapshotEngine) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await pilot.pause()
        tree = app.screen.query_one("#topology-tree", Tree)
        assert "console host" in _label(tree.root)
        edge = tree.root.children[0]
        assert edge.data == ("device", "EDGE1") and "✔ up" in _label(edge)
        down_link = next(n for n in _walk(tree.root) if n.data == ("link", DOWN_LINK))
        assert "✖ down" in _label(down_link)
        agg = down_link.children[0]
        assert agg.data == ("device", "POPA-AGG")
        assert "✖ down" in _label(agg)
        behind = [n for n in _walk(agg) if n.data == ("device", "POPA-AP1")]
        assert behind and "? unknown" in _label(behind[0])
        # POPA-AGG and POPB-AGG are also joined directly: that link points back, no duplicate node
        nodes = _walk(tree.root)
        devices = [n.data[1] for n in nodes if n.data and n.data[0] == "device"]
        assert sorted(devices) == ["CORE1", "EDGE1", "POPA-AGG", "POPA-AP1", "POPB-AGG"]
        refs = [n for n in nodes if n.data and n.data[0] == "device-ref"]
        assert len(refs) == 1
        assert refs[0].parent is not None and "✖ down" in _label(refs[0].parent)
        twice = next(n for n in nodes if n.data == ("device", refs[0].data[1]))
        assert "reached by 2 paths" in _label(twice)


async def test_refresh_touches_only_what_changed(engine: SnapshotEngine) -> None:
    app = make_app(engine, refresh_s=600)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")  # the tree is built while its tab is shown
        await pilot.pause()
        await pilot.press("2")
        await pilot.pause()
        table = app.screen.query_one("#incidents-table", DataTable)
        tree = app.screen.query_one("#topology-tree", Tree)
        first_device = tree.root.children[0]
        calls: list[str] = []
        original_update, original_clear = table.update_cell, table.clear
        original_updates = table.update_cells  # ConsoleTable: many cells, one refresh (screens/table.py)
        table.update_cell = lambda *a, **k: (calls.append("update"), original_update(*a, **k))[1]

        def update_cells(changes: list[tuple[str, object, object]]) -> None:
            calls.extend("update" for _ in changes)
            original_updates(changes)

        table.update_cells = update_cells
        table.clear = lambda *a, **k: (calls.append("clear"), original_clear(*a, **k))[1]
        # a later poll: newer snapshot time and device poll stamps, nothing visible changed
        snap = build_snapshot()
        devices = tuple(replace(d, last_poll_at=NOW + 5, uptime_s=99.0) for d in snap.devices)
        engine.set_snapshot(replace(snap, taken_at=NOW + 5, devices=devices))
        await pilot.press("r")
        await pilot.pause()
        assert calls == []
        await pilot.press("3")  # the hidden tree catches up on its tab: nothing to rebuild
        await pilot.pause()
        assert tree.root.children[0] is first_device  # no rebuild either
        await pilot.press("2")
        await pilot.pause()
        # one status change: one cell
        incidents = tuple(replace(i, status="acked") if i.id == "INC-2" else i for i in snap.incidents)
        engine.set_snapshot(replace(snap, taken_at=NOW + 6, incidents=incidents))
        await pilot.press("r")
        await pilot.pause()
        assert calls == ["update"]


async def until(pilot: Any, predicate: Callable[[], object], timeout: float = 15.0) -> None:
    """Let the app run until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


async def test_event_from_engine_thread_triggers_refresh(engine: SnapshotEngine) -> None:
    app = make_app(engine, refresh_s=600)  # the interval cannot be what refreshes
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await pilot.pause()
        table = app.screen.query_one("#incidents-table", DataTable)
        assert "INC-4" not in row_keys(table)
        new = replace(build_snapshot().incidents[0], id="INC-4", title="EDGE1 upstream down", severity="major")
        engine.set_snapshot(build_snapshot(extra=(new,)))
        event = EngineEvent("incident.opened", NOW, "EDGE1 upstream down", incident_id="INC-4")
        thread = threading.Thread(target=engine.emit, args=(event,))
        thread.start()
        thread.join()
        # Within a refresh gap (0.25 s) of the snapshot before it, the refresh waits for the gap's end.
        await until(pilot, lambda: "INC-4" in row_keys(table))
        assert row_keys(table) == ["INC-1", "INC-2", "INC-4", "INC-3"]
        await pilot.press("1")  # Home was hidden: it catches up when shown
        await pilot.pause()
        assert "◆ MAJOR 1" in plain(app.screen.query_one("#home-severity", Static))
    # after exit: unsubscribed, and a late callback held by the engine is harmless
    assert engine._callbacks == []
    late = threading.Thread(target=engine.emit, args=(event,), kwargs={"callbacks": [app._on_engine_event]})
    late.start()
    late.join()


async def test_snapshot_failure_is_shown_not_raised(engine: SnapshotEngine) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()

        def broken() -> Snapshot:
            raise RuntimeError("engine stopped")

        engine.snapshot = broken  # type: ignore[method-assign]
        await pilot.press("r")
        await pilot.pause()
        # The periodic refresh may fail once more on a loaded host: the count is not the point.
        assert re.search(r"snapshot failed ×\d+: engine stopped", plain(app.screen.query_one("#status", Static)))


async def test_q_quits_from_main_screen(engine: SnapshotEngine) -> None:
    app = make_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        await pilot.press("q")  # closes help
        await pilot.pause()
        assert app.is_running
        await pilot.press("q")
        await pilot.pause()
        assert app._exit


def test_ansi_theme_choice(monkeypatch: pytest.MonkeyPatch, engine: SnapshotEngine) -> None:
    assert pick_theme("ansi", ["textual-dark", "ansi-dark"]) == "ansi-dark"
    assert pick_theme("ansi", ["textual-ansi", "ansi-dark"]) == "textual-ansi"
    assert pick_theme("nope", ["textual-dark"]) is None
    monkeypatch.setenv("ISPVM_THEME", "ansi")
    app = make_app(engine)
    assert app.theme in ("textual-ansi", "ansi-dark")
