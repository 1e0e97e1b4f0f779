"""Help screen, generated from the console's single action list: the current screen's keys first, then the
ones that work everywhere, then the rest, then the `:` commands."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, Static

from ispvm_tui.engine.api import CHANGE_STATUSES
from ispvm_tui.screens.changes import change_status_text
from ispvm_tui.screens.command_line import commands_help
from ispvm_tui.screens.widgets import STATE_STYLE, ConsoleAction, ConsoleFooter, severity_text, state_text

# How keys are named in the action list versus what is printed on the keycap.
KEY_NAMES = {"escape": "esc", "enter": "enter"}


def _keys(text: Text, title: str, actions: Sequence[ConsoleAction], width: int) -> None:
    text.append(f"{title}\n", style="bold underline")
    for action in actions:
        key = KEY_NAMES.get(action.key, action.key)
        text.append(f"  {key:<{width}}", style="bold")
        text.append(f"{action.description:<22}")
        text.append(f"{action.help}\n", style="dim")


def render_help(actions: Sequence[ConsoleAction], *, readonly: bool, here: Sequence[ConsoleAction] = (),
                here_title: str = "", everywhere: Sequence[ConsoleAction] | None = None,
                elsewhere: Sequence[ConsoleAction] = ()) -> Text:
    """Without ``everywhere``, one list of ``actions``; with it, ``here`` (this screen's), then the global
    keys, then ``elsewhere`` (keys of the other screens)."""
    listed = [*here, *(everywhere or ()), *elsewhere] if everywhere is not None else list(actions)
    width = max((len(KEY_NAMES.get(a.key, a.key)) for a in listed), default=1) + 3
    text = Text()
    if everywhere is None:
        _keys(text, "Keys", actions, width)
    else:
        if here:
            _keys(text, f"Keys here — {here_title}", here, width)
            text.append("\n")
        _keys(text, "Keys everywhere", everywhere, width)
        if elsewhere:
            text.append("\n")
            _keys(text, "Keys of the other screens", elsewhere, width)
    text.append("\nCommands (:)\n", style="bold underline")
    for usage, what in commands_help(readonly=readonly):
        text.append(f"  {usage}\n", style="bold")
        text.append(f"      {what}\n", style="dim")
    if readonly:
        text.append("\nRead-only console: actions that change state are not bound.\n", style="italic")
    text.append("\nAlso: ctrl+p command palette (same actions) · ctrl+q quit at once\n", style="dim")

    text.append("\nSymbols\n", style="bold underline")
    text.append("  ")
    for severity in ("critical", "major", "minor", "warning", "info"):
        text.append_text(severity_text(severity)).append("   ")
    text.append("\n  ")
    for state in STATE_STYLE:
        text.append_text(state_text(state)).append("   ")
    text.append("\n  changes: ")
    for status in CHANGE_STATUSES:
        text.append_text(change_status_text(status)).append("   ")
    text.append("\n  maintenance windows: ● in force now   ✔ active   ◷ upcoming   · ended   ✖ canceled\n")
    return text


class HelpScreen(Screen[None]):
    def __init__(self, actions: Sequence[ConsoleAction], *, readonly: bool = False,
                 here: Sequence[ConsoleAction] = (), here_title: str = "",
                 everywhere: Sequence[ConsoleAction] | None = None, elsewhere: Sequence[ConsoleAction] = ()) -> None:
        super().__init__(id="help-screen")
        self.actions = tuple(actions)
        self.readonly = readonly
        self.here = tuple(here)
        self.here_title = here_title
        self.everywhere = None if everywhere is None else tuple(everywhere)
        self.elsewhere = tuple(elsewhere)

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            help_text = render_help(self.actions, readonly=self.readonly, here=self.here, here_title=self.here_title,
                                    everywhere=self.everywhere, elsewhere=self.elsewhere)
            yield Static(help_text, id="help")
        yield ConsoleFooter()
