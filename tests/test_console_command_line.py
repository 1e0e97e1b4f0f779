"""The `:` command line, per-screen help, breadcrumbs, freeze and NO_COLOR, on the real engine polling the lab."""

from __future__ import annotations

import time
from typing import Any

import pytest
from rich.style import Style
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from ispvm_tui.app import IspvmApp, terminal_has_16_colours
from ispvm_tui.demo import DemoRun, start_demo
from ispvm_tui.screens.command_line import CommandContext, CommandError, CommandLineScreen, complete, parse_command
from ispvm_tui.screens.devices import DeviceDetailScreen
from ispvm_tui.screens.help import HelpScreen
from ispvm_tui.screens.incident_detail import IncidentDetailScreen
from ispvm_tui.screens.widgets import incident_matches
from tests.held_faults import held
from tests.test_console import plain, row_keys
from tests.test_console_changes import QUIET
from tests.test_console_deliveries import until

ACTOR = "noc-oncall"


@pytest.fixture
def quiet(address_base: str):
    run = start_demo(QUIET, speed=1.0, address_base=address_base)
    yield run
    run.stop()


@pytest.fixture
def cut(address_base: str):
    """A core link cut that is never repaired: one open incident to act on."""
    run = start_demo(held("core-link-cut"), speed=10.0, address_base=address_base)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not run.engine.snapshot().incidents:
        time.sleep(0.1)
    assert run.engine.snapshot().incidents, "the link cut should open an incident"
    yield run
    run.stop()


def keys(text: str) -> list[str]:
    return ["space" if c == " " else c for c in text]


async def synced(pilot: Pilot[Any]) -> IspvmApp:
    app = pilot.app
    assert isinstance(app, IspvmApp)
    await until(pilot, lambda: app.snapshot is not None and app.snapshot.devices, timeout=30)
    return app


async def type_command(pilot: Pilot[Any], line: str, *, enter: bool = True) -> CommandLineScreen:
    """Open the command line with `:` and type ``line`` (without the colon) as a user would."""
    await pilot.press("colon")
    await until(pilot, lambda: isinstance(pilot.app.screen, CommandLineScreen))
    screen = pilot.app.screen
    assert isinstance(screen, CommandLineScreen)
    command_input = screen.query_one("#command-input", Input)
    await until(pilot, lambda: command_input.has_focus)  # keys before that would not reach the line
    await pilot.press(*keys(line))
    await until(pilot, lambda: command_input.value == ":" + line)
    if enter:
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(pilot.app.screen, CommandLineScreen))
    return screen


def status(app: IspvmApp) -> str:
    return plain(app.status_line)


# -- the parser and completion alone ---------------------------------------------------------------

CONTEXT = CommandContext(devices=("AGG", "ACC1", "ACC2", "CORE1"), sites=("POP-A",),
                         incidents=("3f2a1c9e77", "3f9b", "a1"), windows=("MW-1",))


def test_lines_parse_to_commands_and_bad_ones_say_why() -> None:
    assert parse_command(":devices agg", CONTEXT).kind == "device"  # one device's name: its detail
    assert parse_command(":devices AC", CONTEXT).filter == "AC"
    assert parse_command(":open 3f2", CONTEXT).value == "3f2a1c9e77"  # a unique prefix is enough
    add = parse_command(":maint add 90m --site POP-A --device=AGG fibre splice", CONTEXT)
    assert add.fields == {"name": "fibre splice", "scope": {"sites": ["POP-A"], "devices": ["AGG"]},
                          "starts_at": "now", "duration_s": 5400.0}
    for line, message in (
        (":zap", "unknown command :zap"),
        (":open 3f", "matches 2 incidents"),
        (":open zz", "no incident 'zz'"),
        (":topology NOPE", "no device 'NOPE'"),
        (":maint add 90 --device AGG", "not a duration"),
        (":maint add 1h", "give --site S or --device D"),
        (":maint add 1h --rack 4", "unknown option --rack"),
        (":home now", "takes no argument"),
        (':incidents "open', "cannot read the line"),
    ):
        with pytest.raises(CommandError, match=message):
            parse_command(line, CONTEXT)
    readonly = CommandContext(devices=("AGG",), readonly=True)
    with pytest.raises(CommandError, match="read-only"):
        parse_command(":maint add 1h --device AGG", readonly)
    assert ":maint" not in complete(":m", readonly)


def test_completion_offers_names_for_the_word_being_typed() -> None:
    assert complete(":de", CONTEXT) == [":deliveries", ":devices"]
    assert complete(":devices A", CONTEXT) == [":devices ACC1", ":devices ACC2", ":devices AGG"]
    assert complete(":topology co", CONTEXT) == [":topology CORE1"]
    assert complete(":maint add 1h --site ", CONTEXT) == [":maint add 1h --site POP-A"]
    assert complete(":maint cancel ", CONTEXT) == [":maint cancel MW-1"]
    assert complete(":open 3f", CONTEXT) == [":open 3f2a1c9e77", ":open 3f9b"]
    assert complete(":home ", CONTEXT) == []


def test_16_colour_terminals_get_the_ansi_theme() -> None:
    assert terminal_has_16_colours({"TERM": "linux"})
    assert terminal_has_16_colours({"TERM": "rxvt-16color"})
    assert not terminal_has_16_colours({"TERM": "xterm-256color"})
    assert not terminal_has_16_colours({"TERM": "linux", "COLORTERM": "truecolor"})


# -- on the real engine -----------------------------------------------------------------------------

async def test_devices_with_a_name_opens_that_device(quiet: DemoRun) -> None:
    app = IspvmApp(quiet.engine, actor=ACTOR)
    async with app.run_test(size=(80, 24)) as pilot:
        await synced(pilot)
        await type_command(pilot, "devices agg")
        await until(pilot, lambda: isinstance(app.screen, DeviceDetailScreen))
        screen = app.screen
        assert isinstance(screen, DeviceDetailScreen) and screen.device_name == "AGG"
        assert app.breadcrumbs() == ["ispvm", "Devices", "AGG"]
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main_screen)
        await until(pilot, lambda: row_keys(app.devices_pane.query_one("#devices-table", DataTable)) == ["AGG"])


async def test_completion_offers_a_device_name_and_tab_takes_it(quiet: DemoRun) -> None:
    app = IspvmApp(quiet.engine, actor=ACTOR)
    async with app.run_test(size=(80, 24)) as pilot:
        await synced(pilot)
        screen = await type_command(pilot, "devices CO", enter=False)
        await until(pilot, lambda: screen.candidates == [":devices CORE1"])
        command_input = screen.query_one("#command-input", Input)
        await until(pilot, lambda: command_input._suggestion == ":devices CORE1")  # shown inline too
        await pilot.press("tab")
        await until(pilot, lambda: command_input.value == ":devices CORE1 ")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DeviceDetailScreen))
        await pilot.press("escape")
        await pilot.press("colon")
        await until(pilot, lambda: isinstance(app.screen, CommandLineScreen))
        await pilot.press("up")  # the history
        await until(pilot, lambda: app.screen.query_one("#command-input", Input).value == ":devices CORE1")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main_screen)


async def test_maint_add_makes_a_window_the_engine_lists(quiet: DemoRun) -> None:
    app = IspvmApp(quiet.engine, actor=ACTOR)
    async with app.run_test(size=(80, 24)) as pilot:
        await synced(pilot)
        await type_command(pilot, "maint add 1h --device AGG fibre works")
        await until(pilot, lambda: "Added MW-1" in status(app), timeout=30)
        assert "“fibre works”" in status(app)
    windows = quiet.engine.maintenance_list().result(30)
    window = next(w for w in windows if w.id == "MW-1")
    assert window.name == "fibre works" and window.scope.devices == ("AGG",) and window.created_by == ACTOR
    assert window.active_now and window.starts_at is not None and window.ends_at is not None
    assert 3500 < window.ends_at - window.starts_at < 3700


async def test_a_readonly_console_refuses_maint_add(quiet: DemoRun) -> None:
    app = IspvmApp(quiet.engine, actor=ACTOR, readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await synced(pilot)
        await type_command(pilot, "maint add 1h --device AGG fibre works")
        await until(pilot, lambda: "refused in a read-only console" in status(app))
    assert [w for w in quiet.engine.maintenance_list().result(30) if w.source != "config"] == []


async def test_an_unknown_command_is_a_message_and_nothing_else(quiet: DemoRun) -> None:
    app = IspvmApp(quiet.engine, actor=ACTOR)
    async with app.run_test(size=(80, 24)) as pilot:
        await synced(pilot)
        await type_command(pilot, "zap now")
        await until(pilot, lambda: "unknown command :zap" in status(app))
        assert app.screen is app.main_screen and app.breadcrumbs() == ["ispvm", "Home"]
        await type_command(pilot, "topology NOPE")
        await until(pilot, lambda: "no device 'NOPE'" in status(app))
        assert app.breadcrumbs() == ["ispvm", "Home"]


async def test_help_on_the_devices_tab_lists_its_keys_first(quiet: DemoRun) -> None:
    app = IspvmApp(quiet.engine, actor=ACTOR)
    async with app.run_test(size=(80, 24)) as pilot:
        await synced(pilot)
        await pilot.press("6")
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = plain(app.screen.query_one("#help", Static))
        lines = text.splitlines()
        assert lines[0] == "Keys here — Devices"
        first = lines[1:lines.index("")]
        assert any(line.split()[:2] == ["/", "Filter"] and "Devices by name" in line for line in first)
        assert any(line.split()[:2] == ["s", "Sort"] and "Devices by state" in line for line in first)
        assert text.index("Keys everywhere") < text.index("Commands (:)")
        assert app.breadcrumbs() == ["ispvm", "Devices", "Help"]
        await pilot.press("escape")
        await pilot.press("2")
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert plain(app.screen.query_one("#help", Static)).startswith("Keys here — Incidents")


async def test_incidents_filter_and_breadcrumbs_follow_the_screens(cut: DemoRun) -> None:
    app = IspvmApp(cut.engine, actor=ACTOR)
    async with app.run_test(size=(80, 24)) as pilot:
        await synced(pilot)
        assert app.main_screen.title == "ispvm › Home"
        await type_command(pilot, "incidents major")
        pane = app.incidents_pane
        table = pane.query_one("#incidents-table", DataTable)
        await until(pilot, lambda: pane.filter_text == "major")
        snapshot = app.snapshot
        assert snapshot is not None
        assert set(row_keys(table)) == {i.id for i in snapshot.incidents if incident_matches(i, "major")}
        assert "filter “major”" in status(app) and app.breadcrumbs() == ["ispvm", "Incidents"]
        await type_command(pilot, "incidents")  # no filter: cleared
        await until(pilot, lambda: pane.filter_text == "" and table.row_count == len(app.snapshot.incidents))

        incident = cut.engine.snapshot().incidents[0]
        await type_command(pilot, f"open {incident.id[:8]}")
        await until(pilot, lambda: isinstance(app.screen, IncidentDetailScreen))
        crumb = incident.id if len(incident.id) <= 10 else incident.id[:8] + "…"
        assert app.breadcrumbs() == ["ispvm", "Incidents", crumb]
        assert app.screen.title == f"ispvm › Incidents › {crumb}"  # what the header shows
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main_screen)
        assert app.breadcrumbs() == ["ispvm", "Incidents"]
        await pilot.press("6")
        await until(pilot, lambda: app.main_screen.title == "ispvm › Devices")


async def test_freeze_keeps_the_table_until_thawed(cut: DemoRun) -> None:
    app = IspvmApp(cut.engine, actor=ACTOR)
    async with app.run_test(size=(80, 24)) as pilot:
        await synced(pilot)
        incident = cut.engine.snapshot().incidents[0]
        await pilot.press("2")
        table = app.incidents_pane.query_one("#incidents-table", DataTable)
        await until(pilot, lambda: incident.id in row_keys(table))
        status_column = list(table.columns).index("status")

        def shown_status() -> str:
            return str(table.get_row(incident.id)[status_column])

        assert shown_status() == "! open"
        await pilot.press("F")
        await until(pilot, lambda: "FROZEN since" in status(app))
        assert app.main_screen.title.endswith("[FROZEN]")
        frozen = app.snapshot
        cut.engine.acknowledge(incident.id, "someone-else").result(30)
        await until(pilot, lambda: cut.engine.snapshot().incident(incident.id).status == "acked")
        ticks = app.deliveries_ticks
        await until(pilot, lambda: app.deliveries_ticks >= ticks + 2, timeout=30)  # refreshes were due
        assert app.snapshot is frozen and shown_status() == "! open"
        await pilot.press("F")
        await until(pilot, lambda: shown_status() == "◑ acked")
        assert "FROZEN" not in status(app) and not app.main_screen.title.endswith("[FROZEN]")


def _coloured(style: Style | None) -> bool:
    if style is None:
        return False
    return any(c is not None and not c.is_default for c in (style.color, style.bgcolor))


async def test_no_color_renders_without_colour_and_states_as_words(quiet: DemoRun,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = IspvmApp(quiet.engine, actor=ACTOR)
    async with app.run_test(size=(80, 24)) as pilot:
        await synced(pilot)
        await pilot.press("6")
        table = app.devices_pane.query_one("#devices-table", DataTable)
        await until(pilot, lambda: table.row_count == 4)
        await pilot.pause(0.2)
        strips = app.screen._compositor.render_strips()
        segments = [segment for strip in strips for segment in strip]
        screen_text = "\n".join("".join(s.text for s in strip) for strip in strips)
        assert segments and not [s for s in segments if _coloured(s.style)]
        assert "✔ up" in screen_text or "✖ down" in screen_text or "? unknown" in screen_text
        assert "ispvm › Devices" in screen_text
