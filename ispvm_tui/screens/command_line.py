"""The `:` command line: a table of commands, a parser that turns a line into a `Command` the app runs,
completion for command names and their arguments, and the one-line input docked at the bottom.

Parsing never acts: it checks names against what the console knows (the snapshot's devices, sites and
incidents) and returns what to do, or raises `CommandError` with the message the status line shows.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, OptionList, Static

from ispvm_tui.screens.change_forms import FormError, parse_duration

CommandKind = Literal["tab", "device", "topology", "incident", "ack", "close", "maint_add", "maint_cancel",
                      "help", "quit", "freeze", "audit"]
FILTER_WORDS = ("critical", "major", "minor", "warning", "info", "open", "acked", "closed")
DURATIONS = ("30m", "1h", "2h", "4h", "1d")
CANDIDATES_SHOWN = 6  # the list under the input stays small enough for 80x24


class CommandError(ValueError):
    """A line the console cannot run; the message is for the status line."""


@dataclass(frozen=True)
class Command:
    """What a line asks for; the app executes it."""

    kind: CommandKind
    value: str = ""  # tab name, device name, incident id or window id
    filter: str | None = None  # for a tab: the filter to set (None: leave it)
    fields: dict[str, Any] = field(default_factory=dict)  # maint add: the engine's fields


@dataclass(frozen=True)
class CommandContext:
    """What names the console knows right now, for checking and completing arguments."""

    devices: Sequence[str] = ()
    sites: Sequence[str] = ()
    incidents: Sequence[str] = ()
    windows: Sequence[str] = ()
    readonly: bool = False


@dataclass(frozen=True)
class CommandSpec:
    name: str
    usage: str
    help: str
    writes: bool = False
    aliases: tuple[str, ...] = ()


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("home", ":home", "Home tab"),
    CommandSpec("incidents", ":incidents [FILTER]", "Incidents tab, filtered by FILTER (empty: cleared)"),
    CommandSpec("devices", ":devices [FILTER]", "Devices tab, filtered; a device's exact name opens its detail"),
    CommandSpec("topology", ":topology [DEVICE]", "Topology tab, the cursor on DEVICE"),
    CommandSpec("deliveries", ":deliveries", "Deliveries tab"),
    CommandSpec("changes", ":changes", "Changes tab (calendar and maintenance windows)"),
    CommandSpec("open", ":open ID", "An incident's detail (ID: a unique prefix is enough)"),
    CommandSpec("ack", ":ack ID", "Acknowledge an open incident", writes=True),
    CommandSpec("close", ":close ID", "Close an incident by hand", writes=True),
    CommandSpec("maint", ":maint add DURATION [--site S] [--device D] [TITLE…] | :maint cancel ID",
                "Add a maintenance window starting now, or cancel one", writes=True),
    CommandSpec("audit", ":audit", "Router hardening findings and the newest audit log entries"),
    CommandSpec("freeze", ":freeze", "Stop or resume applying updates (same as F)"),
    CommandSpec("help", ":help", "The keys of this screen and these commands"),
    CommandSpec("quit", ":q", "Quit the console", aliases=("q",)),
)
TAB_COMMANDS = ("home", "incidents", "devices", "topology", "deliveries", "changes")


def spec_of(name: str) -> CommandSpec | None:
    name = name.casefold()
    return next((c for c in COMMANDS if name == c.name or name in c.aliases), None)


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:  # an unclosed quote
        raise CommandError(f"cannot read the line: {exc}") from None


def _one_of(kind: str, wanted: str, names: Sequence[str]) -> str:
    """``wanted`` as one of ``names``, exact first, then case-insensitive."""
    if wanted in names:
        return wanted
    folded = [n for n in names if n.casefold() == wanted.casefold()]
    if len(folded) == 1:
        return folded[0]
    raise CommandError(f"no {kind} {wanted!r}")


def resolve_incident(wanted: str, ids: Sequence[str]) -> str:
    """An incident id from the full id or a unique prefix of it (case-insensitive)."""
    if wanted in ids:
        return wanted
    hits = [i for i in ids if i.casefold().startswith(wanted.casefold())]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise CommandError(f"no incident {wanted!r} in the current snapshot")
    shown = ", ".join(h[:12] for h in hits[:3]) + (" …" if len(hits) > 3 else "")
    raise CommandError(f"{wanted!r} matches {len(hits)} incidents ({shown}): type more of the id")


def parse_command(line: str, ctx: CommandContext) -> Command:
    """One line (with or without the leading ``:``) -> the command to run; CommandError says why not."""
    words = _split(line.strip().removeprefix(":"))
    if not words:
        raise CommandError("empty command (:help lists them)")
    name, args = words[0], words[1:]
    spec = spec_of(name)
    if spec is None:
        raise CommandError(f"unknown command :{name} (:help lists them)")
    if spec.writes and ctx.readonly:
        raise CommandError(f":{spec.name} changes state: refused in a read-only console")
    rest = " ".join(args)
    if spec.name in ("home", "deliveries", "changes", "audit", "freeze", "help", "quit"):
        if args:
            raise CommandError(f":{spec.name} takes no argument ({spec.usage})")
        if spec.name in TAB_COMMANDS:
            return Command("tab", spec.name)
        return Command(spec.name)  # type: ignore[arg-type]
    if spec.name == "incidents":
        return Command("tab", "incidents", filter=rest)
    if spec.name == "devices":
        exact = [d for d in ctx.devices if d.casefold() == rest.casefold()] if rest else []
        if len(exact) == 1:
            return Command("device", exact[0], filter=exact[0])
        return Command("tab", "devices", filter=rest)
    if spec.name == "topology":
        if len(args) > 1:
            raise CommandError(f"one device at most ({spec.usage})")
        return Command("topology", _one_of("device", args[0], ctx.devices) if args else "")
    if spec.name in ("open", "ack", "close"):
        if len(args) != 1:
            raise CommandError(f"give one incident id ({spec.usage})")
        kind: CommandKind = "incident" if spec.name == "open" else spec.name  # type: ignore[assignment]
        return Command(kind, resolve_incident(args[0], ctx.incidents))
    return _parse_maint(args, ctx)


def _parse_maint(args: list[str], ctx: CommandContext) -> Command:
    usage = ":maint add DURATION [--site S] [--device D] [TITLE…] or :maint cancel ID"
    if not args or args[0] not in ("add", "cancel"):
        raise CommandError(f"maint: {usage}")
    if args[0] == "cancel":
        if len(args) != 2:
            raise CommandError("maint cancel: give one window id (5: changes lists them)")
        return Command("maint_cancel", args[1])
    if len(args) < 2:
        raise CommandError(f"maint add: give a duration ({usage})")
    try:
        duration = parse_duration(args[1])
    except FormError as exc:
        raise CommandError(f"maint add: {exc}") from None
    sites: list[str] = []
    devices: list[str] = []
    title: list[str] = []
    words = iter(args[2:])
    for word in words:
        option, eq, inline = word.partition("=")
        if option in ("--site", "--device"):
            value = inline if eq else next(words, None)
            if not value:
                raise CommandError(f"maint add: {option} needs a name")
            if option == "--site":
                sites.append(_one_of("site", value, ctx.sites) if ctx.sites else value)
            else:
                devices.append(_one_of("device", value, ctx.devices) if ctx.devices else value)
        elif word.startswith("--"):
            raise CommandError(f"maint add: unknown option {word} (--site, --device)")
        else:
            title.append(word)
    if not sites and not devices:
        raise CommandError("maint add: give --site S or --device D (what the window holds back)")
    scope: dict[str, list[str]] = {}
    if sites:
        scope["sites"] = sites
    if devices:
        scope["devices"] = devices
    name = " ".join(title) or f"{', '.join(sites + devices)} maintenance"
    fields = {"name": name, "scope": scope, "starts_at": "now", "duration_s": duration}
    return Command("maint_add", fields=fields)


# -- completion -------------------------------------------------------------------------------------

def _matching(prefix: str, names: Sequence[str]) -> list[str]:
    folded = prefix.casefold()
    return sorted({n for n in names if n.casefold().startswith(folded) and n != prefix})


def _argument_names(words: list[str], ctx: CommandContext) -> Sequence[str]:
    """What the word being typed can be, given the words before it (command name first)."""
    spec = spec_of(words[0])
    if spec is None:
        return ()
    before = words[1:-1]
    if spec.name in ("devices", "topology"):
        return ctx.devices if not before else ()
    if spec.name == "incidents":
        return FILTER_WORDS if not before else ()
    if spec.name in ("open", "ack", "close"):
        return ctx.incidents if not before else ()
    if spec.name == "maint":
        if not before:
            return ("add", "cancel")
        if before[0] == "cancel":
            return ctx.windows if len(before) == 1 else ()
        if len(before) == 1:
            return DURATIONS
        if before[-1] == "--site":
            return ctx.sites
        if before[-1] == "--device":
            return ctx.devices
        return ("--site", "--device")
    return ()


def complete(line: str, ctx: CommandContext) -> list[str]:
    """Whole lines the one typed can become by completing its last word (command names, then arguments)."""
    text = line.removeprefix(":")
    head, _, last = text.rpartition(" ")
    if not head and " " not in text:
        names = [c.name for c in COMMANDS if not (c.writes and ctx.readonly)]
        return [f":{n}" for n in _matching(last, names)]
    try:
        words = shlex.split(head)
    except ValueError:
        return []
    if not words:
        return []
    names = _argument_names([*words, last], ctx)
    prefix = ":" + head + " "
    return [prefix + (shlex.quote(n) if " " in n else n) for n in _matching(last, names)]


class CommandSuggester(Suggester):
    """Inline completion: the first candidate that extends what was typed as it is (case included)."""

    def __init__(self, context: Callable[[], CommandContext]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.context = context

    async def get_suggestion(self, value: str) -> str | None:
        return next((c for c in complete(value, self.context()) if c.startswith(value)), None)


# -- the input ---------------------------------------------------------------------------------------

class CommandLineScreen(ModalScreen[str | None]):
    """The `:` prompt docked at the bottom over the footer; enter runs, esc closes, tab completes,
    up/down walk the history. Dismissed with the line (enter) or None (esc)."""

    BINDINGS = [
        Binding("escape", "leave", "Close", show=False),
        Binding("tab", "complete", "Complete", show=False, priority=True),
        Binding("up", "history(-1)", "Previous", show=False, priority=True),
        Binding("down", "history(1)", "Next", show=False, priority=True),
    ]
    AUTO_FOCUS = "#command-input"

    def __init__(self, context: Callable[[], CommandContext], history: list[str]) -> None:
        super().__init__(id="command-line-screen")
        self.context = context
        self.history = history  # the app's list: kept between openings, appended on enter
        self._position = len(history)
        self.candidates: list[str] = []
        self._completing = False  # the value is being set by tab: keep cycling the same candidates
        self._cycle = -1

    def compose(self) -> ComposeResult:
        with Vertical(id="command-box"):
            yield OptionList(id="command-candidates")
            yield Static("", id="command-hint")
            yield Input(value=":", id="command-input", suggester=CommandSuggester(self.context),
                        select_on_focus=False)

    def on_mount(self) -> None:
        self.query_one("#command-candidates", OptionList).display = False
        command_input = self.query_one("#command-input", Input)
        command_input.focus()
        command_input.cursor_position = len(command_input.value)
        self._show_candidates(command_input.value)

    @on(Input.Changed, "#command-input")
    def _changed(self, event: Input.Changed) -> None:
        if not event.value.startswith(":"):
            event.input.value = ":" + event.value  # the prompt stays
            return
        if self._completing:
            self._completing = False
            return
        self._cycle = -1
        self._show_candidates(event.value)

    def _show_candidates(self, value: str) -> None:
        self.candidates = complete(value, self.context())
        options = self.query_one("#command-candidates", OptionList)
        options.clear_options()
        options.add_options(self.candidates[:CANDIDATES_SHOWN * 4])
        options.display = bool(self.candidates)
        options.styles.height = min(len(self.candidates), CANDIDATES_SHOWN) or 1
        spec = spec_of(value.removeprefix(":").split(" ", 1)[0]) if " " in value else None
        self.query_one("#command-hint", Static).update(f"{spec.usage} — {spec.help}" if spec else
                                                        "tab completes · ↑↓ history · enter runs · esc closes")

    def action_complete(self) -> None:
        if not self.candidates:
            return
        self._cycle = (self._cycle + 1) % len(self.candidates)
        options = self.query_one("#command-candidates", OptionList)
        if self._cycle < options.option_count:
            options.highlighted = self._cycle
        command_input = self.query_one("#command-input", Input)
        value = self.candidates[self._cycle]
        if len(self.candidates) == 1:
            # The only one: take it and move on to the next word.
            self._cycle = -1
            command_input.value = value + " "
        else:
            self._completing = True
            command_input.value = value
        command_input.cursor_position = len(command_input.value)

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        self._position = max(0, min(len(self.history), self._position + step))
        command_input = self.query_one("#command-input", Input)
        command_input.value = self.history[self._position] if self._position < len(self.history) else ":"
        command_input.cursor_position = len(command_input.value)

    @on(Input.Submitted, "#command-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        line = event.value.strip()
        if line in ("", ":"):
            self.dismiss(None)
            return
        if not self.history or self.history[-1] != line:
            self.history.append(line)
        self.dismiss(line)

    @on(OptionList.OptionSelected, "#command-candidates")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        command_input = self.query_one("#command-input", Input)
        command_input.value = str(event.option.prompt) + " "
        command_input.cursor_position = len(command_input.value)
        command_input.focus()

    def action_leave(self) -> None:
        self.dismiss(None)


def commands_help(*, readonly: bool = False) -> list[tuple[str, str]]:
    """(usage, what it does) for the help screen; a read-only console does not offer the writing ones."""
    return [(c.usage, c.help) for c in COMMANDS if not (readonly and c.writes)]
