"""Shared bits for the console screens: formatting, table sync, the action spec.

Colour is never the only signal: every severity, state and status renders as a
symbol plus a word, with colour on top, so NO_COLOR and 16-colour terminals
over SSH still read correctly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer
from textual.widgets._data_table import ColumnKey
from textual.widgets._footer import FooterKey

from ispvm_tui.engine.api import IncidentView, RootCause, Severity

# Plain rich colour names, so the ANSI theme maps them onto the terminal palette.
SEVERITY_STYLE: dict[str, tuple[str, str, str]] = {
    "critical": ("▲", "CRIT", "bold red"),
    "major": ("◆", "MAJOR", "red"),
    "minor": ("●", "MINOR", "yellow"),
    "warning": ("▼", "WARN", "yellow"),
    "info": ("○", "INFO", "blue"),
}
STATE_STYLE: dict[str, tuple[str, str]] = {
    "up": ("✔", "green"),
    "down": ("✖", "bold red"),
    "degraded": ("◐", "yellow"),
    "unknown": ("?", "dim"),
}
# Status glyphs deliberately differ from the severity and state ones.
STATUS_STYLE: dict[str, tuple[str, str]] = {
    "open": ("!", "bold"),
    "acked": ("◑", "yellow"),
    "closed": ("·", "dim"),
}
# Worst first: used to put trouble at the top of small tables.
STATE_RANK = {"down": 0, "degraded": 1, "unknown": 2, "up": 3}


def severity_label(severity: Severity | str) -> str:
    symbol, word, _ = SEVERITY_STYLE.get(severity, ("?", severity.upper(), ""))
    return f"{symbol} {word}"


def severity_text(severity: Severity | str) -> Text:
    style = SEVERITY_STYLE.get(severity, ("", "", ""))[2]
    return Text(severity_label(severity), style=style)


def state_text(state: str) -> Text:
    symbol, style = STATE_STYLE.get(state, ("?", "dim"))
    return Text(f"{symbol} {state}", style=style)


def status_text(status: str) -> Text:
    symbol, style = STATUS_STYLE.get(status, ("?", ""))
    return Text(f"{symbol} {status}", style=style)


def relative_age(seconds: float) -> str:
    """Minute granularity on purpose: table cells then change at most once a minute.

    "just now" is kept for the first seconds only: 50 s after opening it read as a lie.
    """
    if seconds < 10:
        return "just now"
    if seconds < 60:
        return "<1m ago"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m ago"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m ago"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h ago"


def age(ts: float | None, now: float) -> str:
    # Ages are measured against the snapshot's own clock, which the lab may run faster.
    return "—" if ts is None else relative_age(max(0.0, now - ts))


def subscribers(count: int | None) -> str:
    return "?" if count is None else f"{count:,}"


def short_id(incident_id: str) -> str:
    return incident_id if len(incident_id) <= 10 else incident_id[:8]


def root_cause_summary(causes: Sequence[RootCause]) -> str:
    if not causes:
        return "—"
    first = causes[0].name or causes[0].entity_id
    return first if len(causes) == 1 else f"{first} +{len(causes) - 1}"


def incident_matches(incident: IncidentView, needle: str) -> bool:
    """Case-insensitive substring match over what an engineer would type."""
    if not needle:
        return True
    word = SEVERITY_STYLE.get(incident.severity, ("", "", ""))[1]
    haystack = [incident.id, incident.title, incident.severity, word, incident.status]
    for cause in incident.root_causes:
        haystack += [cause.name, cause.entity_id, cause.entity_type]
    needle = needle.casefold()
    return any(needle in field.casefold() for field in haystack)


def selected_row_key(table: DataTable) -> str | None:
    if table.row_count == 0 or not table.is_valid_row_index(table.cursor_row):
        return None
    return table.ordered_rows[table.cursor_row].key.value


def sync_table(table: DataTable, rows: Sequence[tuple[str, Sequence[object]]]) -> None:
    """Make ``table`` show ``rows`` (key, cells) touching only what changed.

    Changed cells are updated in place, rows added/removed as needed, and a
    change of order moves the rows without re-adding them (``_reorder``). The cursor stays on the same key so a
    refresh never moves the selection under the user's finger (think: ``a``).
    Call it inside ``app.batch_update()``.
    """
    rows = list({key: (key, cells) for key, cells in rows}.values())  # a duplicate key would raise
    selected = selected_row_key(table)
    current = [row.key.value for row in table.ordered_rows]
    wanted = [key for key, _ in rows]
    wanted_set = set(wanted)
    for key in current:
        if key not in wanted_set:
            table.remove_row(key)
    kept = [key for key in current if key in wanted_set]
    kept_set = set(kept)
    columns = [column.key for column in table.ordered_columns]
    row_values = getattr(table, "row_values", None)  # ConsoleTable: get_row rebuilt the column order per row
    changes: list[tuple[str, ColumnKey, object]] = []
    for key, cells in rows:
        if key not in kept_set:
            table.add_row(*cells, key=key)
            continue
        old = row_values(key, columns) if row_values is not None else table.get_row(key)
        for column, before, after in zip(columns, old, cells, strict=False):
            if before != after:
                changes.append((key, column, after))
    update_cells = getattr(table, "update_cells", None)
    if update_cells is not None:
        update_cells(changes)  # one refresh for all of them (screens/table.py)
    else:
        for key, column, after in changes:
            table.update_cell(key, column, after)
    if [row.key.value for row in table.ordered_rows] != wanted:
        _reorder(table, wanted)
    if selected is not None and selected in wanted_set:
        index = table.get_row_index(selected)
        if index != table.cursor_row:
            table.move_cursor(row=index, animate=False)


def _reorder(table: DataTable, wanted: list[str]) -> None:
    """Put the rows in ``wanted`` order without re-adding them.

    A sorted list of 1,000 devices reorders whenever a state flips; clearing and re-adding every row took
    0.5-1.8 s a key press at that size. DataTable.sort does this by replacing its row-location map, but
    it sorts by cell values only; this sets the map from the keys, the same way. Should a Textual upgrade
    move that map, the table is rebuilt instead (slower, still right).
    """
    locations = getattr(table, "_row_locations", None)
    if not isinstance(locations, TwoWayDict) or not hasattr(table, "_update_count"):
        rows = [(key, table.get_row(key)) for key in wanted]
        table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key)
        return
    by_value = {row_key.value: row_key for row_key in table.rows}
    table._row_locations = TwoWayDict({by_value[key]: index for index, key in enumerate(wanted)})
    table._update_count += 1
    table.refresh()


class ConsoleFooter(Footer):
    """Textual's Footer, rebuilt only when the keys it shows change.

    Footer recomposes (~25 key widgets mounted and styled) on every bindings refresh: each focus change,
    tab switch and pushed screen, 0.1-0.2 s each at fleet scale though the keys are the same.
    """

    def __init__(self) -> None:
        super().__init__()
        self._shown: tuple[object, ...] | None = None
        self._check_due = False

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if isinstance(widget, FooterKey) and not widget.has_class("-command-palette"):
                # A FooterKey starts compact (its default), then takes the footer's (not compact) from its
                # data binding: two restyles per key when mounted, ~25 keys in every new screen's footer.
                # (The palette's key is not bound: it stays compact, as in Footer.)
                widget.set_reactive(FooterKey.compact, self.compact)
            yield widget

    def _keys_shown(self) -> tuple[object, ...]:
        keys = tuple((binding.key, binding.action, binding.description, binding.group, enabled, tooltip)
                     for _, binding, enabled, tooltip in self.screen.active_bindings.values() if binding.show)
        return keys, self.show_command_palette, self.compact

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus or not self.is_attached or screen is not self.screen or self._check_due:
            return
        self._check_due = True  # a burst of refreshes is one check, after the next repaint (as Footer does)
        self.call_after_refresh(self._recompose_if_changed)

    async def _recompose_if_changed(self) -> None:
        self._check_due = False
        if not self.is_attached:
            return
        shown = self._keys_shown()
        if shown != self._shown:
            self._shown = shown
            await self.recompose()


@dataclass(frozen=True)
class ConsoleAction:
    """One entry of the console's single action list (bindings, help, palette)."""

    key: str
    action: str
    description: str
    help: str
    writes: bool = False  # removed entirely in read-only mode
    show: bool = True  # shown in the footer

    def binding(self) -> Binding:
        return Binding(
            self.key,
            self.action,
            self.description,
            show=self.show,
            id=f"ispvm.{self.action.split('(')[0]}.{self.key}",
        )


def bindings_for(actions: Iterable[ConsoleAction]) -> list[Binding]:
    return list(Binding.make_bindings(a.binding() for a in actions))


def error_text(exc: BaseException) -> str:
    """An engine action's failure as one line for a toast or a pane."""
    if isinstance(exc, KeyError) and exc.args:  # str(KeyError) adds quotes
        return str(exc.args[0])
    if isinstance(exc, TimeoutError):
        return "no answer from the engine"
    return str(exc) or type(exc).__name__
