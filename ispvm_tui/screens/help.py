"""Help screen, generated from the console's single action list."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from ispvm_tui.engine.api import CHANGE_STATUSES
from ispvm_tui.screens.changes import change_status_text
from ispvm_tui.screens.widgets import STATE_STYLE, ConsoleAction, severity_text, state_text

# How keys are named in the action list versus what is printed on the keycap.
KEY_NAMES = {"escape": "esc", "enter": "enter"}


def render_help(actions: Sequence[ConsoleAction], *, readonly: bool) -> Text:
    width = max((len(KEY_NAMES.get(a.key, a.key)) for a in actions), default=1) + 3
    text = Text("Keys\n", style="bold underline")
    for action in actions:
        key = KEY_NAMES.get(action.key, action.key)
        text.append(f"  {key:<{width}}", style="bold")
        text.append(f"{action.description:<22}")
        text.append(f"{action.help}\n", style="dim")
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
    def __init__(self, actions: Sequence[ConsoleAction], *, readonly: bool = False) -> None:
        super().__init__(id="help-screen")
        self.actions = tuple(actions)
        self.readonly = readonly

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static(render_help(self.actions, readonly=self.readonly), id="help")
        yield Footer()
