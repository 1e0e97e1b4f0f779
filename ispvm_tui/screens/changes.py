"""Changes view: detected config changes, the change calendar, maintenance windows.

The detected changes come with every snapshot. The calendar and the windows
are read through the engine (``changes_list``, ``maintenance_list``: the
database, off the console's loop) while the tab is shown, at once when the
engine says one changed, and after this console's own edits; two reads never
overlap. ``n`` / ``e`` / ``x`` act on the list the cursor was last in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Header, Label, Static

from ispvm_tui.engine.api import ChangeRecordView, ConfigChangeView, EngineAPI, MaintenanceView, Scope, Snapshot
from ispvm_tui.screens.change_forms import CapturePrompt, change_form, failure_text, local_time, window_form
from ispvm_tui.screens.columns import Column, FittedColumns
from ispvm_tui.screens.confirm import ConfirmScreen
from ispvm_tui.screens.table import ConsoleTable
from ispvm_tui.screens.widgets import ConsoleFooter, selected_row_key, sync_table

CALENDAR_REFRESH_S = 5.0  # while shown: "in force" follows the clock, other consoles and the CLI edit too
CALENDAR_TIMEOUT_S = 30.0  # a hung engine must not stop later reads for good
CONFIG_EVENT = "config.changed.detected"
CALENDAR_EVENTS = frozenset({"change.changed", "maintenance.changed"})
CHANGE_STATUS_STYLE: dict[str, tuple[str, str]] = {
    "planned": ("◷", "cyan"),
    "in-progress": ("▶", "bold yellow"),
    "completed": ("✔", "green"),
    "canceled": ("✖", "dim"),
}
NEXT_STATUS = {"planned": "in-progress", "in-progress": "completed"}
WINDOW_STATUS_STYLE: dict[str, tuple[str, str]] = {
    "active": ("✔", ""),
    "upcoming": ("◷", "cyan"),
    "ended": ("·", "dim"),
    "canceled": ("✖", "dim"),
}
SECTIONS = ("detected", "calendar", "windows")

DETECTED_COLUMNS: tuple[Column, ...] = (
    Column("When", "when", 11),
    Column("Device", "device", 12),
    Column("Category", "category", 10),
    Column("v", "version", 3, narrow=False),
    Column("Summary", "summary", 0),
)
CALENDAR_COLUMNS: tuple[Column, ...] = (
    Column("ID", "id", 6),
    Column("Status", "status", 13),
    Column("When", "when", 23),
    Column("Owner", "owner", 10, narrow=False),
    Column("Title", "title", 0),
    Column("Scope", "scope", 20, narrow=False),
    Column("Inc", "incidents", 3),
)
WINDOW_COLUMNS: tuple[Column, ...] = (
    Column("ID", "id", 8),
    Column("Now", "now", 3),
    Column("Name", "name", 0),
    Column("When", "when", 23),
    Column("Scope", "scope", 18, narrow=False),
    Column("Source", "source", 8, narrow=False),
    Column("Status", "status", 10),
)
TABLES: dict[str, tuple[str, tuple[Column, ...]]] = {
    "detected": ("#detected-table", DETECTED_COLUMNS),
    "calendar": ("#calendar-table", CALENDAR_COLUMNS),
    "windows": ("#windows-table", WINDOW_COLUMNS),
}


# -- cells ------------------------------------------------------------------------------------------

def short_time(ts: float, now: float) -> str:
    """A time of day for today, the date and time otherwise (local time)."""
    stamp = local_time(ts)
    return stamp[11:] if stamp[:10] == local_time(now)[:10] else stamp[5:]


def span(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "—"
    first, last = local_time(start), local_time(end)
    return f"{first[5:]}–{last[11:] if first[:10] == last[:10] else last[5:]}"


def scope_summary(scope: Scope) -> str:
    parts = [*scope.sites, *scope.devices, *(f"tag:{t}" for t in scope.tags),
             *(f"service:{s}" for s in scope.services)]
    return ", ".join(parts) or "—"


def change_status_text(status: str) -> Text:
    symbol, style = CHANGE_STATUS_STYLE.get(status, ("?", ""))
    return Text(f"{symbol} {status}", style=style)


def window_when(window: MaintenanceView) -> str:
    if window.weekly:
        return f"{'; '.join(window.weekly)} {window.timezone}"
    return span(window.starts_at, window.ends_at)


def window_status(window: MaintenanceView, now: float) -> str:
    """The engine's status, and for a one-off window that is not in force whether it is still to come."""
    if window.status == "canceled":
        return "canceled"
    if window.active_now or window.weekly or window.starts_at is None or window.ends_at is None:
        return "active"
    return "upcoming" if window.starts_at > now else "ended" if window.ends_at <= now else "active"


def detected_key(change: ConfigChangeView) -> str:
    return f"{change.device}\t{change.category}\t{change.version}"


def detected_cells(change: ConfigChangeView, now: float) -> dict[str, object]:
    return {
        "when": short_time(change.detected_at, now),
        "device": change.device,
        "category": change.category,
        "version": str(change.version),
        "summary": change.summary.removeprefix(f"{change.category}: "),
    }


def change_cells(change: ChangeRecordView) -> dict[str, object]:
    return {
        "id": change.id,
        "status": change_status_text(change.status),
        "when": span(change.starts_at, change.ends_at),
        "owner": change.owner,
        "title": change.title,
        "scope": scope_summary(change.scope),
        "incidents": str(len(change.incidents)) if change.incidents else "—",
    }


def window_cells(window: MaintenanceView, now: float) -> dict[str, object]:
    status = window_status(window, now)
    symbol, style = WINDOW_STATUS_STYLE.get(status, ("?", ""))
    return {
        "id": window.id,
        "now": Text("●", style="bold") if window.active_now else Text("·", style="dim"),
        "name": window.name,
        "when": window_when(window),
        "scope": scope_summary(window.scope),
        "source": window.source,
        "status": Text(f"{symbol} {status}", style=style),
    }


def calendar_order(changes: Sequence[ChangeRecordView]) -> list[ChangeRecordView]:
    """Work going on, then what is planned (soonest first), then what is over (latest first)."""
    rank = {"in-progress": 0, "planned": 1}
    live = sorted((c for c in changes if c.status in rank), key=lambda c: (rank[c.status], c.starts_at))
    over = sorted((c for c in changes if c.status not in rank), key=lambda c: -c.starts_at)
    return live + over


def window_order(windows: Sequence[MaintenanceView], now: float) -> list[MaintenanceView]:
    rank = {"active": 1, "upcoming": 2, "ended": 3, "canceled": 4}

    def key(w: MaintenanceView) -> tuple[int, float]:
        return (0 if w.active_now else rank.get(window_status(w, now), 5), w.starts_at or 0.0)

    return sorted(windows, key=key)


# -- event toasts -------------------------------------------------------------------------------------

class ToastBatch:
    """Coalesces a burst of events into one toast at most every ``every_s`` ("3 config changes detected")."""

    def __init__(self, every_s: float = 1.0) -> None:
        self.every_s = every_s
        self.pending: list[str] = []
        self.last_at: float | None = None

    def add(self, summary: str) -> None:
        self.pending.append(summary)

    def wait(self, now: float) -> float:
        """Seconds until the pending events may be shown (0: now)."""
        return 0.0 if self.last_at is None else max(0.0, self.last_at + self.every_s - now)

    def take(self, now: float) -> str | None:
        pending, self.pending = self.pending, []
        if not pending:
            return None
        self.last_at = now
        if len(pending) == 1:
            return pending[0]
        devices = list(dict.fromkeys(summary.split(" ", 1)[0] for summary in pending))
        shown = ", ".join(devices[:3]) + (f" +{len(devices) - 3}" if len(devices) > 3 else "")
        return f"{len(pending)} config changes detected ({shown})"


# -- the diff ------------------------------------------------------------------------------------------

DIFF_STYLE = {"+": "green", "-": "red", "~": "yellow"}


def render_diff(change: ConfigChangeView, lines: Sequence[str] | None, error: str | None = None) -> Text:
    text = Text()
    text.append(f"{change.device} {change.category}", style="bold")
    text.append(f"   version {change.version - 1} → {change.version}   detected "
                f"{local_time(change.detected_at, seconds=True)}\n")
    if change.since is not None:
        text.append(f"made after the read of {local_time(change.since, seconds=True)}\n", style="dim")
    text.append(f"{change.summary}\n\n")
    if error is not None:
        text.append(f"⚠ diff failed: {error}\n", style="bold red")
    elif lines is None:
        text.append("Reading both versions…\n", style="italic")
    elif not lines:
        text.append("(no difference in what is compared)\n", style="dim")
    else:
        for line in lines:
            text.append(line + "\n", style=DIFF_STYLE.get(line[:1], "dim"))
        text.append("\n+ added   - removed   ~ changed\n", style="dim")
    return text


class ConfigDiffScreen(Screen[None]):
    """One detected change's diff (old = version - 1, new = version); q / esc go back."""

    def __init__(self, change: ConfigChangeView, engine: EngineAPI) -> None:
        super().__init__(id="config-diff-screen")
        self.change = change
        self.engine = engine
        self.lines: list[str] | None = None
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="config-diff-scroll"):
            yield Static(render_diff(self.change, None), id="config-diff")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.sub_title = f"{self.change.device} {self.change.category} v{self.change.version}"
        self.run_worker(self._read(), group="config-diff", exit_on_error=False)

    async def _read(self) -> None:
        change = self.change
        try:
            future = self.engine.config_diff(change.device, change.category, change.version - 1, change.version)
            lines = await asyncio.wait_for(asyncio.wrap_future(future), CALENDAR_TIMEOUT_S)
        except Exception as exc:
            self.error = failure_text(exc)
        else:
            self.lines = list(lines)
        if self.is_attached:
            self.query_one("#config-diff", Static).update(render_diff(change, self.lines, self.error))


# -- the pane ----------------------------------------------------------------------------------------

class CalendarRead(Message):
    def __init__(self, changes: list[ChangeRecordView] | None, windows: list[MaintenanceView] | None,
                 error: str | None) -> None:
        super().__init__()
        self.changes = changes
        self.windows = windows
        self.error = error


class ActionDone(Message):
    """An engine action of this pane finished: a toast, and the lists read again."""

    def __init__(self, message: str, error: bool = False) -> None:
        super().__init__()
        self.message = message
        self.error = error


class ChangesPane(Vertical):
    def __init__(self, engine: EngineAPI, *, actor: str, readonly: bool = False,
                 refresh_s: float = CALENDAR_REFRESH_S) -> None:
        super().__init__(id="changes-pane")
        self.engine = engine
        self.actor = actor
        self.readonly = readonly
        self.refresh_s = refresh_s
        self.detected: tuple[ConfigChangeView, ...] = ()
        self.changes: list[ChangeRecordView] | None = None
        self.windows: list[MaintenanceView] | None = None
        self.read_at: float | None = None  # wall clock of the last good read
        self.error: str | None = None
        self.section = "calendar"  # the list n / e / x act on: the one the cursor was last in
        self.reads = 0  # finished reads, good or not (lets tests wait for one)
        self._snapshot_at: float | None = None
        self._reading = False
        self._again = False
        self._busy: set[str] = set()
        self._columns = {section: FittedColumns(spec) for section, (_, spec) in TABLES.items()}

    def compose(self) -> ComposeResult:
        yield Static(Text("Synchronizing… reading the calendar", style="italic"), id="changes-message")
        yield Label("", classes="pane-title", id="detected-title")
        yield ConsoleTable(id="detected-table", cursor_type="row", zebra_stripes=True)
        yield Label("", classes="pane-title", id="calendar-title")
        yield ConsoleTable(id="calendar-table", cursor_type="row", zebra_stripes=True)
        yield Label("", classes="pane-title", id="windows-title")
        yield ConsoleTable(id="windows-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self._fit(self.content_size.width or 80)
        self._render_titles()
        self.set_interval(self.refresh_s, self._tick)

    def on_resize(self, event: events.Resize) -> None:
        if self._fit(self.content_size.width):
            self._render_tables()

    def _fit(self, width: int) -> bool:
        changed = [self._columns[section].fit(self.query_one(table_id, DataTable), width)
                   for section, (table_id, _) in TABLES.items()]
        return any(changed)

    # -- what is shown -----------------------------------------------------------------------------

    def now(self) -> float:
        """The engine's clock as well as the console knows it (the lab's runs faster than the wall's)."""
        return max(time.time(), self._snapshot_at or 0.0)

    def is_shown(self) -> bool:
        if not self.is_attached or self.app.screen is not self.screen:
            return False
        return all(node.display for node in self.ancestors_with_self if isinstance(node, Widget))

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshot_at = snapshot.taken_at
        detected = snapshot.config_changes
        if detected == self.detected and self.query_one("#detected-table", DataTable).row_count == len(detected):
            return
        self.detected = detected
        self._render_detected()

    def _render_detected(self) -> None:
        now = self.now()
        with self.app.batch_update():
            self._sync("detected", [(detected_key(c), detected_cells(c, now)) for c in self.detected])
        self._render_titles()

    def _render_tables(self) -> None:
        self._render_detected()
        self._render_lists()

    def _render_lists(self) -> None:
        now = self.now()
        with self.app.batch_update():
            if self.changes is not None:
                self._sync("calendar", [(c.id, change_cells(c)) for c in calendar_order(self.changes)])
            if self.windows is not None:
                self._sync("windows", [(w.id, window_cells(w, now)) for w in window_order(self.windows, now)])
        self._render_titles()
        self._render_message()

    def _sync(self, section: str, rows: Sequence[tuple[str, dict[str, object]]]) -> None:
        table, columns = self.query_one(TABLES[section][0], DataTable), self._columns[section]
        sync_table(table, [(row, columns.cells(cells)) for row, cells in rows])
        columns.reselect(table)  # a column rebuild must not move the selection

    def _render_titles(self) -> None:
        writes = not self.readonly
        hints = {
            "detected": "enter: diff" + (" · f: fingerprint now" if writes else ""),
            "calendar": "n new · e edit · p next status · x cancel" if writes else "",
            "windows": "n new · e edit · x cancel" if writes else "",
        }
        counts = {
            "detected": f"Detected config changes {len(self.detected)}" if self.detected
            else "Detected config changes: none yet",
            "calendar": "Change calendar" + ("" if self.changes is None else f" {len(self.changes)}"),
            "windows": "Maintenance windows" + ("" if self.windows is None else f" {len(self.windows)}"
                                                + f", {sum(w.active_now for w in self.windows)} in force"),
        }
        for section in SECTIONS:
            marker = "▶ " if section == self.section else "  "
            hint = f"  ({hints[section]})" if hints[section] else ""
            self.query_one(f"#{section}-title", Label).update(marker + counts[section] + hint)

    def _render_message(self) -> None:
        text = Text()
        if self.error is not None:
            text.append(f"⚠ calendar read failed: {self.error} — retrying", style="bold red")
            if self.read_at is not None:
                text.append(f"  (showing {time.strftime('%H:%M:%S', time.localtime(self.read_at))})", style="dim")
        elif self.changes is not None and self.windows is not None:
            going = sum(c.status == "in-progress" for c in self.changes)
            planned = sum(c.status == "planned" for c in self.changes)
            in_force = [w.name for w in self.windows if w.active_now]
            text.append(f"calendar {time.strftime('%H:%M:%S', time.localtime(self.read_at or time.time()))}  ")
            text.append(f"in progress {going}  ", style="bold yellow" if going else "")
            text.append(f"planned {planned}  ")
            text.append(f"windows in force {len(in_force)}", style="bold" if in_force else "")
            if in_force:
                text.append(f": {', '.join(in_force[:3])}" + (" …" if len(in_force) > 3 else ""))
        else:
            text.append("Synchronizing… reading the calendar", style="italic")
        self.query_one("#changes-message", Static).update(text)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        for section, (table_id, _) in TABLES.items():
            if event.widget.id == table_id.removeprefix("#") and section != self.section:
                self.section = section
                self._render_titles()

    # -- reading the calendar ------------------------------------------------------------------------

    def _tick(self) -> None:
        if self.is_shown():
            self.refresh_lists(queue=False)  # dropped rather than queued: reads never run back to back

    def calendar_changed(self) -> None:
        """The engine said a change or a window changed: read now if shown (showing the tab reads anyway)."""
        if self.is_shown():
            self.refresh_lists()

    def refresh_lists(self, *, queue: bool = True) -> None:
        if self._reading:
            self._again = self._again or queue
            return
        self._reading = True
        self.run_worker(self._read(), group="calendar", exit_on_error=False)

    async def _read(self) -> None:
        try:
            changes, windows = await asyncio.wait_for(asyncio.gather(
                asyncio.wrap_future(self.engine.changes_list()),
                asyncio.wrap_future(self.engine.maintenance_list())), CALENDAR_TIMEOUT_S)
        except Exception as exc:
            self.post_message(CalendarRead(None, None, failure_text(exc)))
        else:
            self.post_message(CalendarRead(list(changes), list(windows), None))

    @on(CalendarRead)
    def _calendar_read(self, message: CalendarRead) -> None:
        self._reading = False
        self.reads += 1
        if not self.is_attached:
            return  # a read that finished while the console closes
        if message.error is None:
            self.changes, self.windows, self.error = message.changes, message.windows, None
            self.read_at = time.time()
            self._render_lists()
        else:
            self.error = message.error
            self._render_message()
        if self._again:
            self._again = False
            if self.is_shown():
                self.refresh_lists()

    # -- selection -------------------------------------------------------------------------------------

    def selected_config_change(self) -> ConfigChangeView | None:
        key = selected_row_key(self.query_one("#detected-table", DataTable))
        return next((c for c in self.detected if detected_key(c) == key), None)

    def selected_change(self) -> ChangeRecordView | None:
        key = selected_row_key(self.query_one("#calendar-table", DataTable))
        return next((c for c in self.changes or () if c.id == key), None)

    def selected_window(self) -> MaintenanceView | None:
        key = selected_row_key(self.query_one("#windows-table", DataTable))
        return next((w for w in self.windows or () if w.id == key), None)

    @on(DataTable.RowSelected, "#detected-table")
    def _detected_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.open_diff()

    @on(DataTable.RowSelected, "#calendar-table, #windows-table")
    def _record_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if self.readonly:
            self.app.notify("Read-only console: the calendar cannot be edited here", severity="warning")
            return
        self.edit()

    # -- actions ------------------------------------------------------------------------------------------

    def open_diff(self) -> None:
        change = self.selected_config_change()
        if change is None:
            self.app.notify("No config change selected (5: changes, the Detected list)", severity="warning")
            return
        self.app.push_screen(ConfigDiffScreen(change, self.engine))

    def _not_here(self) -> None:
        self.app.notify("n / e / x act on the calendar or the maintenance windows: tab to one of them",
                        severity="warning")

    def new(self) -> None:
        if self.section == "calendar":
            form = change_form(lambda f: self.engine.change_add(f, self.actor), now=self.now, owner=self.actor)
            self.app.push_screen(form, callback=lambda view: self._saved("Added", view))
        elif self.section == "windows":
            form = window_form(lambda f: self.engine.maintenance_add(f, self.actor), now=self.now)
            self.app.push_screen(form, callback=lambda view: self._saved("Added", view))
        else:
            self._not_here()

    def edit(self) -> None:
        if self.section == "calendar":
            change = self.selected_change()
            if change is None:
                self.app.notify("No change selected", severity="warning")
            elif change.status in ("completed", "canceled"):
                self.app.notify(f"{change.id} is {change.status}: a {change.status} change is final",
                                severity="warning")
            else:
                cid = change.id
                form = change_form(lambda f: self.engine.change_edit(cid, f, self.actor), now=self.now,
                                   owner=self.actor, change=change)
                self.app.push_screen(form, callback=lambda view: self._saved("Saved", view))
        elif self.section == "windows":
            window = self.selected_window()
            if window is None:
                self.app.notify("No maintenance window selected", severity="warning")
            elif self._config_window(window, "edited"):
                return
            elif window.status == "canceled":
                self.app.notify(f"{window.id} is canceled: add a new window instead", severity="warning")
            else:
                wid = window.id
                form = window_form(lambda f: self.engine.maintenance_edit(wid, f, self.actor), now=self.now,
                                   window=window)
                self.app.push_screen(form, callback=lambda view: self._saved("Saved", view))
        else:
            self._not_here()

    def _config_window(self, window: MaintenanceView, verb: str) -> bool:
        if window.source != "config":
            return False
        self.app.notify(f"{window.name} comes from the config file ([[maintenance]]): it is {verb} there, "
                        "and takes effect when the engine restarts", severity="warning", timeout=8)
        return True

    def cancel(self) -> None:
        if self.section == "calendar":
            change = self.selected_change()
            if change is None:
                self.app.notify("No change selected", severity="warning")
            elif change.status in ("completed", "canceled"):
                self.app.notify(f"{change.id} is already {change.status}", severity="warning")
            else:
                cid = change.id
                self._confirm(f"Cancel change {cid} “{change.title}”? y/n",
                              lambda: self.engine.change_cancel(cid, self.actor), f"{cid} canceled")
        elif self.section == "windows":
            window = self.selected_window()
            if window is None:
                self.app.notify("No maintenance window selected", severity="warning")
            elif self._config_window(window, "removed"):
                return
            elif window.status == "canceled":
                self.app.notify(f"{window.id} is already canceled", severity="warning")
            else:
                wid = window.id
                now = " (in force now: its incidents page again)" if window.active_now else ""
                self._confirm(f"Cancel maintenance window {wid} “{window.name}”{now}? y/n",
                              lambda: self.engine.maintenance_cancel(wid, self.actor), f"{wid} canceled")
        else:
            self._not_here()

    def _confirm(self, question: str, act: Callable[[], Future[Any]], done: str) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._run(act, done)

        self.app.push_screen(ConfirmScreen(question), callback=answered)

    def advance(self) -> None:
        if self.section != "calendar":
            self.app.notify("p moves a change on: select one in the change calendar", severity="warning")
            return
        change = self.selected_change()
        if change is None:
            self.app.notify("No change selected", severity="warning")
            return
        onward = NEXT_STATUS.get(change.status)
        if onward is None:
            self.app.notify(f"{change.id} is {change.status}: a {change.status} change is final", severity="warning")
            return
        cid = change.id
        self._run(lambda: self.engine.change_edit(cid, {"status": onward}, self.actor),
                  f"{cid} {change.status} → {onward}")

    def capture(self) -> None:
        change = self.selected_config_change()
        if change is not None:
            device = change.device
            self._run(lambda: self.engine.capture_config(device, self.actor), device, counted=True)
            return

        def asked(result: tuple[str | None, int] | None) -> None:
            if result is not None:
                self.post_message(ActionDone(_capture_text(*result)))

        self.app.push_screen(CapturePrompt(lambda device: self.engine.capture_config(device, self.actor)),
                             callback=asked)

    def _run(self, act: Callable[[], Future[Any]], done: str, *, counted: bool = False) -> None:
        if done in self._busy:
            return  # the same action, still in flight
        self._busy.add(done)
        self.run_worker(self._act(act, done, counted), group="changes-action", exit_on_error=False)

    async def _act(self, act: Callable[[], Future[Any]], done: str, counted: bool) -> None:
        try:
            result = await asyncio.wrap_future(act())
        except Exception as exc:
            self.post_message(ActionDone(f"{done}: failed: {failure_text(exc)}", error=True))
        else:
            self.post_message(ActionDone(_capture_text(done, result) if counted else done))
        finally:
            self._busy.discard(done)

    def _saved(self, verb: str, view: ChangeRecordView | MaintenanceView | None) -> None:
        if view is None:
            return  # left without saving
        name = view.title if isinstance(view, ChangeRecordView) else view.name
        self.post_message(ActionDone(f"{verb} {view.id} “{name}”"))

    @on(ActionDone)
    def _action_done(self, message: ActionDone) -> None:
        if not self.is_attached:
            return
        self.app.notify(message.message, severity="error" if message.error else "information",
                        timeout=10 if message.error else 5)
        self.refresh_lists()


def _capture_text(device: str | None, count: int) -> str:
    what = device or "every device"
    return f"Fingerprinting {count} device{'s' if count != 1 else ''} now ({what}); changes appear under Detected"
