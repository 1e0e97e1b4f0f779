"""Incidents view: one DataTable keyed by incident id, with a `/` filter."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Input, Static

from ispvm_tui.engine.api import SEVERITY_ORDER, IncidentView, Snapshot
from ispvm_tui.screens.columns import Column, FittedColumns
from ispvm_tui.screens.table import ConsoleTable
from ispvm_tui.screens.widgets import (
    age,
    incident_matches,
    root_cause_summary,
    severity_text,
    short_id,
    status_text,
    subscribers,
    sync_table,
)

# Below WIDE_MIN columns (80x24) the ID, score and impact counts give way, the title takes the rest: nothing
# scrolls off to the right (the detail screen has them all).
COLUMNS: tuple[Column, ...] = (
    Column("ID", "id", 10, narrow=False),
    Column("Score", "score", 5, narrow=False),
    Column("Severity", "sev", 8),
    Column("Status", "status", 9),
    Column("Title", "title", 0),
    Column("Root cause", "cause", 20),
    Column("Devices", "devices", 7, narrow=False),
    Column("Subs", "subs", 7, narrow=False),
    Column("Opened", "opened", 10),
    Column("Suppr.", "suppressed", 6, narrow=False),
)


def title_cell(incident: IncidentView) -> object:
    """The title; planned work (a maintenance window held its notifications back) says so first."""
    window = incident.labels.get("maintenance")
    if window is None:
        return incident.title
    return Text.assemble(("⚒ maint ", "italic"), incident.title)


def incident_cells(incident: IncidentView, now: float) -> dict[str, object]:
    """Every column's cell by key (the pane shows those its width allows)."""
    return {
        "id": short_id(incident.id),
        "score": str(incident.score),
        "sev": severity_text(incident.severity),
        "status": status_text(incident.status),
        "title": title_cell(incident),
        "cause": root_cause_summary(incident.root_causes),
        "devices": str(incident.impact.devices_affected),
        "subs": subscribers(incident.impact.estimated_subscribers_affected),
        "opened": age(incident.opened_at, now),
        "suppressed": str(incident.suppressed_count) if incident.suppressed_count else "—",
    }


# Sort orders `s` cycles through; open and acknowledged incidents always come before closed ones.
SORTS: dict[str, object] = {
    "priority": lambda i: -i.score,
    "newest": lambda i: -i.opened_at,
    "severity": lambda i: (SEVERITY_ORDER.index(i.severity), -i.score),
}


class IncidentsPane(Vertical):
    def __init__(self) -> None:
        super().__init__(id="incidents-pane")
        self._snapshot: Snapshot | None = None
        self.filter_text = ""
        self.shown = 0
        self.sort = "priority"
        self._columns = FittedColumns(COLUMNS)

    def cycle_sort(self) -> str:
        names = list(SORTS)
        self.sort = names[(names.index(self.sort) + 1) % len(names)]
        self._render_rows()
        return self.sort

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="filter: title, root cause, severity, status — enter: keep · esc: clear",
            id="filter",
        )
        yield ConsoleTable(id="incidents-table", cursor_type="row", zebra_stripes=True)
        yield Static(Text("Synchronizing…", style="dim"), id="incidents-empty")

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self._columns.fit(self.query_one("#incidents-table", DataTable), self.content_size.width or 80)

    def on_resize(self) -> None:
        if self._columns.fit(self.query_one("#incidents-table", DataTable), self.content_size.width):
            self._render_rows()

    @property
    def total(self) -> int:
        return 0 if self._snapshot is None else len(self._snapshot.incidents)

    def visible(self, incidents: Sequence[IncidentView]) -> list[IncidentView]:
        return [i for i in incidents if incident_matches(i, self.filter_text)]

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._render_rows()

    def _render_rows(self) -> None:
        snapshot = self._snapshot
        if snapshot is None:
            return
        key = SORTS[self.sort]
        rows = sorted(self.visible(snapshot.incidents), key=lambda i: (i.status == "closed", key(i)))  # type: ignore[operator]
        self.shown = len(rows)
        table, columns = self.query_one("#incidents-table", DataTable), self._columns
        with self.app.batch_update():
            sync_table(table, [(i.id, columns.cells(incident_cells(i, snapshot.taken_at))) for i in rows])
            columns.reselect(table)
        empty = self.query_one("#incidents-empty", Static)
        empty.display = not rows
        if not rows:
            if self.filter_text:
                empty.update(f"No incidents match “{self.filter_text}” (of {self.total}). esc clears the filter.")
            elif snapshot.polls_total == 0:
                empty.update("Synchronizing… waiting for the first poll results")
            else:
                empty.update(Text("✔ No incidents.", style="green"))

    def open_filter(self) -> None:
        filter_input = self.query_one("#filter", Input)
        filter_input.display = True
        filter_input.focus()

    def clear_filter(self) -> bool:
        """Clear and hide the filter; False when there was nothing to clear."""
        filter_input = self.query_one("#filter", Input)
        if not filter_input.display and not self.filter_text:
            return False
        filter_input.value = ""
        filter_input.display = False
        self.filter_text = ""
        self._render_rows()
        self.query_one("#incidents-table", DataTable).focus()
        return True

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        # Let the event bubble on: the app shows the filter in its status line.
        self.filter_text = event.value.strip()
        self._render_rows()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not self.filter_text:
            self.query_one("#filter", Input).display = False
        self.query_one("#incidents-table", DataTable).focus()
