"""One line of text over the current screen (a note, an assignee): enter sends it, esc cancels.

The screen that opens it gets the text (stripped) as the dismiss result, or None when cancelled or left
empty; checking and sending it is that screen's business.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static


class TextPrompt(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    def __init__(self, heading: str, label: str, value: str = "", *, placeholder: str = "",
                 max_length: int = 2000, prompt_id: str = "text-prompt") -> None:
        super().__init__(id=prompt_id, classes="record-form")
        self.heading = heading
        self.label = label
        self.value = value
        self.placeholder = placeholder
        self.max_length = max_length

    def compose(self) -> ComposeResult:
        with Vertical(classes="form-box"):
            yield Static(Text(self.heading, style="bold"), classes="form-heading")
            with Horizontal(classes="form-row"):
                yield Label(self.label, classes="form-label")
                yield Input(self.value, placeholder=self.placeholder, max_length=self.max_length,
                            id="prompt-input", classes="form-input")
            yield Static("enter: save · esc: cancel", classes="form-hint")

    def on_mount(self) -> None:
        self.query_one("#prompt-input", Input).focus()

    @on(Input.Submitted, "#prompt-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
