"""Deliveries view: each target's circuit, the dead letters, the latest attempts.

The app fetches a ``DeliveryReport`` through the engine (it reads the database,
so never on the console's loop) and hands it here; this pane only renders.
Column sets shrink on a narrow pane (screens/columns.py) so the error text keeps some
room at 80×24 instead of scrolling off to the right.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label, Static

from ispvm_tui.engine.api import AttemptView, DeliveryReport, DeliveryView, EndpointView
from ispvm_tui.screens.columns import Column, FittedColumns
from ispvm_tui.screens.table import ConsoleTable
from ispvm_tui.screens.widgets import age, selected_row_key, short_id, sync_table

# Symbols differ from the device states' (✔ ✖ ◐ ?) except half-open, which is "partly working" there too.
CIRCUIT_STYLE: dict[str, tuple[str, str]] = {
    "closed": ("●", "green"),
    "open": ("■", "bold red"),
    "half-open": ("◐", "yellow"),
}
CIRCUIT_RANK = {"open": 0, "half-open": 1, "closed": 3}
OUTCOME_STYLE: dict[str, tuple[str, str]] = {
    "delivered": ("✔", "green"),
    "retry": ("↻", "yellow"),
    "permanent": ("✖", "bold red"),
}
ENDPOINT_LINES = 4  # more targets than this: the troubled ones, then a count
DEAD_COLUMNS: tuple[Column, ...] = (
    Column("ID", "id", 8, narrow=False),
    Column("Target", "target", 12),
    Column("Incident", "incident", 8),
    Column("Event", "event", 7),
    Column("Seq", "seq", 3, narrow=False),
    Column("Try", "attempts", 3),
    Column("Created", "created", 9),
    Column("Sup.", "superseded", 4),  # before the error, so it stays on screen
    Column("Last error", "error", 0),
)
ATTEMPT_COLUMNS: tuple[Column, ...] = (
    Column("Time", "time", 8),
    Column("Target", "target", 12),
    Column("Event", "event", 7),
    Column("#", "attempt", 2, narrow=False),
    Column("HTTP", "http", 4),
    Column("Outcome", "outcome", 11),
    Column("ms", "latency", 5, narrow=False),
    Column("Error", "error", 0),
)
def clock(ts: float | None) -> str:
    return "—" if ts is None else time.strftime("%H:%M:%S", time.localtime(ts))


def short_event(event_type: str | None) -> str:
    if not event_type:
        return "—"
    return event_type.removeprefix("incident.")


def circuit_label(endpoint: EndpointView) -> Text:
    symbol, style = CIRCUIT_STYLE.get(endpoint.state, ("?", "dim"))
    label = f"{symbol} {endpoint.state}"
    if endpoint.state == "open" and endpoint.probe_at is not None:
        label += f", probe {clock(endpoint.probe_at)}"
    return Text(label, style=style)


def endpoint_lines(report: DeliveryReport, limit: int = ENDPOINT_LINES) -> Text:
    if not report.endpoints:
        return Text("No delivery targets configured.", style="dim")
    ordered = sorted(report.endpoints, key=lambda e: (CIRCUIT_RANK.get(e.state, 2), -e.dead, -e.pending, e.name))
    shown = ordered if len(ordered) <= limit else ordered[: limit - 1]
    # Aligned columns, each only as wide as its longest value, so the error keeps the rest of the line.
    name_width = min(20, max(len(e.name) for e in shown))
    states = [circuit_label(e) for e in shown]
    state_width = max(len(state) for state in states)
    pending_width = max(len(str(e.pending)) for e in shown)
    dead_width = max(len(str(e.dead)) for e in shown)
    text = Text()
    for index, (endpoint, state) in enumerate(zip(shown, states, strict=True)):
        if index:
            text.append("\n")
        text.append(f"{endpoint.name[:name_width]:<{name_width}}  ", style="bold")
        state.pad_right(state_width - len(state))
        text.append_text(state)
        text.append(f"  pending {endpoint.pending:<{pending_width}}  ")
        text.append(f"dead {endpoint.dead:<{dead_width}}", style="bold red" if endpoint.dead else "")
        if endpoint.failures and endpoint.state != "closed":
            text.append(f"  failures {endpoint.failures}")
        if endpoint.last_error:
            text.append(f"  {endpoint.last_error}", style="dim")
    hidden = ordered[len(shown):]
    if hidden:
        dead = sum(e.dead for e in hidden)
        text.append(f"\n… {len(hidden)} more targets ({dead} dead letters among them)", style="dim")
    if not report.live:
        text.append("\n(breaker states as last recorded; the engine is not running)", style="italic")
    return text


def dead_cells(dead: DeliveryView, now: float) -> dict[str, object]:
    return {
        "id": short_id(dead.event_id),
        "target": dead.target,
        "incident": short_id(dead.incident_id),
        "event": short_event(dead.event_type),
        "seq": str(dead.sequence),
        "attempts": str(dead.attempts),
        "created": age(dead.created_at, now),
        "superseded": "yes" if dead.superseded else "—",
        "error": dead.last_error or "—",
    }


def attempt_cells(attempt: AttemptView) -> dict[str, object]:
    symbol, style = OUTCOME_STYLE.get(attempt.outcome, ("?", ""))
    return {
        "time": clock(attempt.attempted_at),
        "target": attempt.target,
        "event": short_event(attempt.event_type),
        "attempt": str(attempt.attempt),
        "http": "—" if attempt.http_status is None else str(attempt.http_status),
        "outcome": Text(f"{symbol} {attempt.outcome}", style=style),
        "latency": "—" if attempt.latency_s is None else f"{attempt.latency_s * 1000:.0f}",
        "error": attempt.error or "",
    }


class DeliveriesPane(Vertical):
    """Rendered from the last report the app fetched; a failed fetch keeps the tables and says so."""

    def __init__(self, *, readonly: bool = False) -> None:
        super().__init__(id="deliveries-pane")
        self.readonly = readonly
        self.report: DeliveryReport | None = None
        self.error: str | None = None
        self._columns = {"#dead-table": FittedColumns(DEAD_COLUMNS), "#attempts-table": FittedColumns(ATTEMPT_COLUMNS)}

    def compose(self) -> ComposeResult:
        yield Static(Text("Synchronizing… reading deliveries", style="italic"), id="deliveries-message")
        yield Static("", id="deliveries-endpoints")
        hint = "" if self.readonly else "  (R/enter: resend · A: resend all)"
        yield Label(f"Dead letters{hint}", classes="pane-title", id="dead-title")
        yield ConsoleTable(id="dead-table", cursor_type="row", zebra_stripes=True)
        yield Label("Recent attempts", classes="pane-title", id="attempts-title")
        yield ConsoleTable(id="attempts-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self._fit(self.content_size.width or 80)

    def on_resize(self, event: events.Resize) -> None:
        if self._fit(self.content_size.width):
            self._render_tables()

    def _fit(self, width: int) -> bool:
        """(Re)build the tables' columns for this width; True when they changed."""
        changed = [columns.fit(self.query_one(table_id, DataTable), width)
                   for table_id, columns in self._columns.items()]
        return any(changed)

    def selected_dead(self) -> DeliveryView | None:
        event_id = selected_row_key(self.query_one("#dead-table", DataTable))
        return self.dead_letter(event_id) if event_id else None

    def dead_letter(self, event_id: str) -> DeliveryView | None:
        report = self.report
        return next((d for d in report.dead if d.event_id == event_id), None) if report else None

    @property
    def dead_total(self) -> int:
        """All dead letters, also the ones past the report's row limit."""
        report = self.report
        return 0 if report is None else max(len(report.dead), sum(e.dead for e in report.endpoints))

    def apply_report(self, report: DeliveryReport) -> None:
        self.report, self.error = report, None
        self._render_message()
        self.query_one("#deliveries-endpoints", Static).update(endpoint_lines(report))
        self._render_tables()

    def show_error(self, error: str) -> None:
        """The fetch failed: say so on the first line and keep the last good tables."""
        self.error = error
        self._render_message()

    def _render_message(self) -> None:
        report = self.report
        text = Text()
        if self.error is not None:
            text.append(f"⚠ delivery report failed: {self.error} — retrying", style="bold red")
            if report is not None:
                text.append(f"  (showing {clock(report.taken_at)})", style="dim")
        elif report is not None:
            pending = sum(e.pending for e in report.endpoints)
            text.append(f"report {clock(report.taken_at)}  ")
            text.append(f"dead {self.dead_total}  ", style="bold red" if self.dead_total else "")
            text.append(f"pending {pending}  targets {len(report.endpoints)}")
        self.query_one("#deliveries-message", Static).update(text)

    def _render_tables(self) -> None:
        report = self.report
        if report is None:
            return
        with self.app.batch_update():
            self._sync("#dead-table", [(d.event_id, dead_cells(d, report.taken_at)) for d in report.dead])
            self._sync("#attempts-table", [(a.delivery_id, attempt_cells(a)) for a in report.recent])
        dead = f"Dead letters {self.dead_total}" if report.dead else "Dead letters: none"
        hint = "" if self.readonly or not report.dead else "  (R/enter: resend · A: resend all)"
        self.query_one("#dead-title", Label).update(dead + hint)
        self.query_one("#attempts-title", Label).update(f"Recent attempts {len(report.recent)}")

    def _sync(self, table_id: str, rows: Sequence[tuple[str, dict[str, object]]]) -> None:
        table, columns = self.query_one(table_id, DataTable), self._columns[table_id]
        sync_table(table, [(row, columns.cells(cells)) for row, cells in rows])
        columns.reselect(table)  # a rebuild must not move the selection
