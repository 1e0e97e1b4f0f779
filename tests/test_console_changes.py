"""The Changes tab on the real engine polling a small lab: windows, changes and detected config changes."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from ispvm_tui.app import IspvmApp
from ispvm_tui.config import Config
from ispvm_tui.demo import DemoRun, start_demo
from ispvm_tui.engine.api import ChangeRecordView, MaintenanceView
from ispvm_tui.lab.scenario import TimelineEntry, load_scenario
from ispvm_tui.screens.change_forms import (
    CapturePrompt,
    ChangeForm,
    FormError,
    RecordForm,
    WindowForm,
    field_of,
    parse_duration,
    parse_when,
)
from ispvm_tui.screens.changes import ChangesPane, ConfigDiffScreen, ToastBatch
from ispvm_tui.screens.confirm import ConfirmScreen
from tests.test_console import plain, row_keys
from tests.test_console_deliveries import messages, until
from tests.waiting import wait_for

ACTOR = "noc-oncall"
CONFIG_WINDOW = "config:POP-A Saturday works"
# Four routers (CORE1 -- AGG -- ACC1, ACC2) and nothing on the timeline: the tests make their own changes.
QUIET = load_scenario("root-recovers-symptom-stays").model_copy(update={"timeline": []})


def with_config_window(cfg: Config) -> Config:
    data = cfg.model_dump()
    data["maintenance"] = [{"name": "POP-A Saturday works", "sites": ["POP-A"], "weekly": ["Sat 02:00-04:00"]}]
    return Config.model_validate(data)


@pytest.fixture
def lab(address_base: str):
    run = start_demo(QUIET, speed=1.0, address_base=address_base, configure=with_config_window)
    yield run
    run.stop()


def engine_windows(run: DemoRun) -> dict[str, MaintenanceView]:
    return {w.id: w for w in run.engine.maintenance_list().result(30)}


def engine_changes(run: DemoRun) -> dict[str, ChangeRecordView]:
    return {c.id: c for c in run.engine.changes_list().result(30)}


async def open_changes(pilot: Pilot[Any]) -> ChangesPane:
    app = pilot.app
    assert isinstance(app, IspvmApp)
    await pilot.press("5")
    pane = app.changes_pane
    await until(pilot, lambda: pane.windows is not None and pane.changes is not None, timeout=30)
    await until(pilot, lambda: app.focused is pane.query_one("#calendar-table"))
    return pane


async def to_windows(pilot: Pilot[Any], pane: ChangesPane) -> DataTable:
    await pilot.press("tab")  # calendar -> windows
    table = pane.query_one("#windows-table", DataTable)
    await until(pilot, lambda: pilot.app.focused is table and pane.section == "windows")
    return table


async def fill(pilot: Pilot[Any], form: RecordForm, **values: str) -> None:
    """Type into the form's fields as a user would: focus, clear, type."""
    for key, text in values.items():
        field_input = form.query_one(f"#form-{key}", Input)
        field_input.focus()
        field_input.value = ""
        await pilot.pause()
        if text:
            await pilot.press(*["space" if c == " " else c for c in text])
        await until(pilot, lambda field_input=field_input, text=text: field_input.value == text)


async def form_on_top(pilot: Pilot[Any], kind: type[RecordForm]) -> RecordForm:
    await until(pilot, lambda: isinstance(pilot.app.screen, kind))
    form = pilot.app.screen
    assert isinstance(form, RecordForm)
    return form


def cells(table: DataTable, key: str) -> list[str]:
    return [str(c) for c in table.get_row(key)]


# -- pure parts ---------------------------------------------------------------------------------------

def test_times_are_read_in_local_time_and_relative_to_now() -> None:
    now = datetime(2026, 12, 8, 1, 30).timestamp()
    start = parse_when("now", now, "start")
    assert start is not None and start.value == "now" and start.at == now  # the engine's clock decides
    assert parse_when("+2h", now, "end").value == now + 7200  # type: ignore[union-attr]
    assert parse_when("-15m", now, "start").value == now - 900  # type: ignore[union-attr]
    assert parse_when("+1h30m", now, "end").value == now + 5400  # type: ignore[union-attr]
    assert parse_when("02:00", now, "start").value == datetime(2026, 12, 8, 2, 0).timestamp()  # type: ignore[union-attr]
    assert parse_when("2026-12-09 04:15", now, "end").value == datetime(2026, 12, 9, 4, 15).timestamp()  # type: ignore[union-attr]
    assert parse_when("  ", now, "end") is None
    for bad in ("tomorrow", "25:00", "+", "+2", "2026-13-01 02:00"):
        with pytest.raises(FormError, match=r"^end: "):
            parse_when(bad, now, "end")
    assert parse_duration("90m") == 5400 and parse_duration("") is None
    with pytest.raises(FormError, match="duration"):
        parse_duration("90")  # minutes or seconds would be a guess


def test_engine_errors_point_at_the_form_field() -> None:
    keys = ("name", "start", "end", "duration", "weekly", "sites", "devices")
    assert field_of("ends_at: must be after starts_at", keys) == "end"
    assert field_of("scope.devices: unknown device 'X' (not in the config)", keys) == "devices"
    assert field_of("scope: a maintenance window needs a scope: sites, devices, tags or services", keys) == "sites"
    assert field_of("weekly.0: hours 'Tue 2-4': expected '[DAYS ]HH:MM-HH:MM'", keys) == "weekly"
    assert field_of("duration_s: give ends_at or a duration, not both", keys) == "duration"
    assert field_of("no maintenance window MW-9", keys) is None


def test_a_burst_of_config_changes_is_one_counted_toast_a_second() -> None:
    batch = ToastBatch(every_s=1.0)
    assert batch.wait(100.0) == 0 and batch.take(100.0) is None  # nothing pending, nothing shown
    batch.add("CORE1 firewall: added input accept tcp 8001")
    assert batch.take(100.0) == "CORE1 firewall: added input accept tcp 8001"
    for device in ("CORE1", "AGG", "ACC1"):
        batch.add(f"{device} system: ntp 192.0.2.123 -> 203.0.113.2")
    assert batch.wait(100.25) == pytest.approx(0.75)  # the next toast waits out the second
    assert batch.take(101.0) == "3 config changes detected (CORE1, AGG, ACC1)"
    assert batch.take(103.0) is None


# -- the tab on the real engine ---------------------------------------------------------------------

@pytest.mark.parametrize("size", [(80, 24), (140, 45)])
async def test_the_tab_shows_the_three_lists(lab: DemoRun, size: tuple[int, int]) -> None:
    app = IspvmApp(lab.engine, actor=ACTOR)
    async with app.run_test(size=size) as pilot:
        pane = await open_changes(pilot)
        windows = pane.query_one("#windows-table", DataTable)
        await until(pilot, lambda: windows.row_count == 1)
        assert row_keys(windows) == [CONFIG_WINDOW]
        row = cells(windows, CONFIG_WINDOW)
        assert "POP-A Saturday works" in row and "✔ active" in row
        assert any(c.startswith("Sat 02:00-04:00") for c in row)
        titles = [plain(pane.query_one(f"#{s}-title", Static)) for s in ("detected", "calendar", "windows")]
        assert titles[1].startswith("▶ Change calendar 0")  # the list the keys act on
        assert titles[2].startswith("  Maintenance windows 1, 0 in force")
        assert "in progress 0" in plain(pane.query_one("#changes-message", Static))
        for table_id in ("#detected-table", "#calendar-table", "#windows-table"):
            region = pane.query_one(table_id, DataTable).region
            assert region.height >= 3 and region.bottom <= size[1]  # every list on screen, none squeezed out


async def test_a_window_made_in_the_form_is_listed_and_held_by_the_engine(lab: DemoRun) -> None:
    app = IspvmApp(lab.engine, actor=ACTOR)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_changes(pilot)
        windows = await to_windows(pilot, pane)
        await pilot.press("n")
        form = await form_on_top(pilot, WindowForm)
        assert form.query_one("#form-start", Input).value == "now"
        await fill(pilot, form, name="POP-A fibre works", end="+2h", sites="POP-A", note="ticket 4711")
        times = plain(form.query_one("#form-times", Static))
        assert times.startswith("start now → end ") and ", 2h" in times  # what it understood, before saving
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, WindowForm), timeout=30)
        await until(pilot, lambda: "MW-1" in row_keys(windows), timeout=30)
        assert row_keys(windows)[0] == "MW-1"  # in force: first
        row = cells(windows, "MW-1")
        assert row[1] == "●" and "POP-A fibre works" in row and "✔ active" in row
        assert any("Added MW-1 “POP-A fibre works”" in m for m in messages(app))
    window = engine_windows(lab)["MW-1"]
    assert window.source == "calendar" and window.created_by == ACTOR and window.note == "ticket 4711"
    assert window.scope.sites == ("POP-A",) and window.active_now
    assert window.starts_at is not None and window.ends_at is not None
    assert window.ends_at - window.starts_at > 3600  # +2h read as hours


async def test_canceling_a_window_asks_first_then_marks_it_canceled(lab: DemoRun) -> None:
    now = lab.clock.now()
    lab.engine.maintenance_add({"name": "AGG swap", "scope": {"devices": ["AGG"]}, "starts_at": now,
                                "ends_at": now + 3600}, "setup").result(30)
    app = IspvmApp(lab.engine, actor=ACTOR)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_changes(pilot)
        windows = await to_windows(pilot, pane)
        await until(pilot, lambda: row_keys(windows)[:1] == ["MW-1"])
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "MW-1 “AGG swap”" in plain(app.screen.query_one("#confirm-question", Static))
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        await app.workers.wait_for_complete()
        assert engine_windows(lab)["MW-1"].status == "active"
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: any("✖ canceled" in c for c in cells(windows, "MW-1")), timeout=30)
        assert any("MW-1 canceled" in m for m in messages(app))
    window = engine_windows(lab)["MW-1"]
    assert window.status == "canceled" and not window.active_now
    assert lab.store.query("SELECT actor FROM audit WHERE action = 'maint.cancel' AND target = 'MW-1'") == [(ACTOR,)]


async def test_an_end_before_the_start_is_the_engines_error_in_the_open_form(lab: DemoRun) -> None:
    app = IspvmApp(lab.engine, actor=ACTOR)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_changes(pilot)
        windows = await to_windows(pilot, pane)
        await pilot.press("n")
        form = await form_on_top(pilot, WindowForm)
        await fill(pilot, form, name="backwards", start="2030-01-01 04:00", end="2030-01-01 02:00", sites="POP-A")
        await pilot.press("enter")
        await until(pilot, lambda: form.error is not None and not form.saving, timeout=30)
        assert app.screen is form
        error = plain(form.query_one("#form-error", Static))
        assert "ends_at" in error and "after" in error
        end = form.query_one("#form-end", Input)
        assert end.has_class("field-error") and app.focused is end  # the field it is about, ready to fix
        assert [w.id for w in engine_windows(lab).values() if w.source == "calendar"] == []
        await fill(pilot, form, end="2030-01-01 06:00")
        assert not end.has_class("field-error")
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is not form, timeout=30)
        await until(pilot, lambda: "MW-1" in row_keys(windows), timeout=30)
    window = engine_windows(lab)["MW-1"]
    assert window.starts_at == datetime(2030, 1, 1, 4, 0).timestamp()  # the console's local time
    assert window.ends_at == datetime(2030, 1, 1, 6, 0).timestamp()


async def test_a_config_file_window_is_read_only_here(lab: DemoRun) -> None:
    app = IspvmApp(lab.engine, actor=ACTOR)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_changes(pilot)
        windows = await to_windows(pilot, pane)
        await until(pilot, lambda: row_keys(windows) == [CONFIG_WINDOW])
        for key, verb in (("e", "edited there"), ("x", "removed there"), ("enter", "edited there")):
            await pilot.press(key)
            await until(pilot, lambda verb=verb: any("comes from the config file" in m and verb in m
                                                     for m in messages(app)))
            assert app.screen is app.main_screen  # no form, no question
            app.clear_notifications()
    assert engine_windows(lab)[CONFIG_WINDOW].status == "active"


async def test_a_change_goes_from_planned_to_in_progress(lab: DemoRun) -> None:
    app = IspvmApp(lab.engine, actor=ACTOR)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_changes(pilot)
        calendar = pane.query_one("#calendar-table", DataTable)
        await pilot.press("n")
        await form_on_top(pilot, ChangeForm)
        await pilot.press("escape")  # leaves without saving
        await until(pilot, lambda: app.screen is app.main_screen)
        await pilot.press("n")
        form = await form_on_top(pilot, ChangeForm)
        assert form.query_one("#form-owner", Input).value == ACTOR  # the OS user unless told otherwise
        await fill(pilot, form, title="Swap CORE1 line card", duration="2h", devices="CORE1",
                   description="rollback: old card on the shelf")
        await pilot.press("enter")
        await until(pilot, lambda: "CHG-1" in row_keys(calendar), timeout=30)
        assert "◷ planned" in cells(calendar, "CHG-1") and "Swap CORE1 line card" in cells(calendar, "CHG-1")
        await pilot.press("p")
        await until(pilot, lambda: "▶ in-progress" in cells(calendar, "CHG-1"), timeout=30)
        assert any("CHG-1 planned → in-progress" in m for m in messages(app))
        assert "in progress 1" in plain(pane.query_one("#changes-message", Static))
    assert list(engine_changes(lab)) == ["CHG-1"]
    change = engine_changes(lab)["CHG-1"]
    assert change.status == "in-progress" and change.owner == ACTOR and change.created_by == ACTOR
    assert change.scope.devices == ("CORE1",) and change.ends_at - change.starts_at == 7200


async def test_a_router_config_change_is_detected_and_enter_shows_its_diff(lab: DemoRun) -> None:
    baseline = "SELECT count(*) FROM config_versions WHERE device = 'CORE1' AND category = 'firewall'"
    assert await asyncio.to_thread(wait_for, lambda: lab.store.query(baseline)[0][0] >= 1, 60), "no baseline"

    async def change() -> None:
        lab.lab.model.apply(TimelineEntry(at=0, action="config_change", device="CORE1", section="firewall"))

    lab.loop.run(change(), timeout=10)  # on the lab's own loop, as the timeline would
    app = IspvmApp(lab.engine, actor=ACTOR)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_changes(pilot)
        detected = pane.query_one("#detected-table", DataTable)
        await pilot.press("shift+tab")  # calendar -> detected
        await until(pilot, lambda: pane.section == "detected")
        # Nothing detected yet, so f asks which device (empty: all of them).
        await pilot.press("f")
        prompt = await until_screen(pilot, CapturePrompt)
        await pilot.press(*"CORE1", "enter")
        await until(pilot, lambda: any("Fingerprinting 1 device now (CORE1)" in m for m in messages(app)), timeout=30)
        await until(pilot, lambda: detected.row_count >= 1, timeout=60)
        assert prompt is not app.screen
        key = row_keys(detected)[0]
        row = cells(detected, key)
        assert row[1:3] == ["CORE1", "firewall"]
        assert any(m for m in messages(app) if "CORE1 firewall" in m)  # the event's toast
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfigDiffScreen))
        screen = app.screen
        assert isinstance(screen, ConfigDiffScreen)
        await until(pilot, lambda: screen.lines is not None or screen.error is not None, timeout=30)
        assert screen.error is None and any(line.startswith("+ ") for line in screen.lines or ())
        text = plain(screen.query_one("#config-diff", Static))
        assert "CORE1 firewall" in text and f"version {screen.change.version - 1} → {screen.change.version}" in text
        await pilot.press("q")
        await until(pilot, lambda: app.screen is app.main_screen)
        # With a change selected, f reads that device at once.
        app.clear_notifications()
        await pilot.press("f")
        await until(pilot, lambda: any("Fingerprinting 1 device now (CORE1)" in m for m in messages(app)), timeout=30)
        assert app.screen is app.main_screen
    asked = lab.store.query("SELECT actor, target FROM audit WHERE action = 'config.capture'")
    assert asked and all(row == (ACTOR, "CORE1") for row in asked)


async def until_screen(pilot: Pilot[Any], kind: type) -> Any:
    await until(pilot, lambda: isinstance(pilot.app.screen, kind))
    return pilot.app.screen



async def test_a_readonly_console_shows_the_lists_and_changes_nothing(lab: DemoRun) -> None:
    now = lab.clock.now()
    lab.engine.change_add({"title": "Reboot AGG", "scope": {"devices": ["AGG"]}, "starts_at": now,
                           "ends_at": now + 600}, "setup").result(30)
    app = IspvmApp(lab.engine, actor=ACTOR, readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_changes(pilot)
        calendar = pane.query_one("#calendar-table", DataTable)
        await until(pilot, lambda: row_keys(calendar) == ["CHG-1"])
        bound = {b.action for bs in app._bindings.key_to_bindings.values() for b in bs}
        assert not {a for a in bound if a.startswith("changes_")}
        assert "n new" not in plain(pane.query_one("#calendar-title", Static))
        await pilot.press("n", "e", "x", "p", "f", "enter")
        await until(pilot, lambda: any("Read-only" in m for m in messages(app)))
        assert app.screen is app.main_screen
    assert engine_changes(lab)["CHG-1"].status == "planned"
