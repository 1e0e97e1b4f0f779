"""One incident in full: why the engine thinks what it thinks, what happened to it, and acting on it.

A fixed header (title, status, severity, root cause, assignee) over one scrolling body: root causes, impact,
evidence, alerts, runbook links, labels, then the timeline (EngineAPI.incident_timeline), read when the screen
opens, again after each engine event for this incident (at most every TIMELINE_MIN_S), every TIMELINE_EVERY_S
anyway (a delivery that succeeds publishes no event), and after this screen's own actions. Reads run as
workers awaiting the engine's futures: the UI never waits on the engine.

Keys here: n note, A assign (both small prompts), o open the first runbook link; a ack and c close are the
console's own (app.py). g is kept for diagnostics (ping, traceroute), not bound here. Read-only: no n, A.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from ispvm_tui.engine.api import AlertView, EngineEvent, IncidentView, Snapshot, TimelineEntry
from ispvm_tui.screens.table import ConsoleTable
from ispvm_tui.screens.text_prompt import TextPrompt
from ispvm_tui.screens.widgets import ConsoleFooter, age, error_text, severity_text, status_text, subscribers

LIST_LIMIT = 20
TIMELINE_MIN_S = 2.0  # at most one timeline read per this many seconds on engine events
TIMELINE_EVERY_S = 5.0
TIMELINE_TIMEOUT_S = 30.0
NOTE_MAX = 2000  # as engine/incident_queries.MAX_TEXT
ASSIGNEE_MAX = 64  # as engine/incident_assign.MAX_ASSIGNEE
# Symbol plus word: never colour alone.
KIND_STYLE: dict[str, tuple[str, str, str]] = {
    "alert.fired": ("▲", "fired", "red"),
    "alert.resolved": ("△", "resolved", "green"),
    "incident.opened": ("!", "opened", "bold"),
    "incident.updated": ("◆", "updated", ""),
    "incident.acked": ("◑", "acked", "yellow"),
    "incident.closed": ("·", "closed", "dim"),
    "incident.reopened": ("↻", "reopened", "bold"),
    "note": ("✎", "note", "cyan"),
    "assigned": ("→", "assigned", "cyan"),
    "config.changed": ("~", "config", "magenta"),
    "maintenance": ("=", "maint", "blue"),
    "notification": ("»", "notify", ""),
}
DELIVERY_STYLE: dict[str, tuple[str, str]] = {
    "delivered": ("✓", "green"),
    "pending": ("…", "yellow"),
    "failed": ("✗", "yellow"),
    "dead": ("✗", "bold red"),
}
_FIXED_COLUMNS = 14 + 10 + 12 + 8 + 6  # time, kind, status, cell padding, the body's padding and scrollbar


def _section(text: Text, title: str) -> None:
    text.append(f"\n{title}\n", style="bold underline")


def _names(text: Text, label: str, count: int, names: Sequence[str]) -> None:
    text.append(f"  {label} ({count}): ", style="bold")
    shown = ", ".join(names[:LIST_LIMIT]) if names else "—"
    more = f" … +{len(names) - LIST_LIMIT} more" if len(names) > LIST_LIMIT else ""
    text.append(shown + more + "\n")


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _alert_line(text: Text, alert: AlertView, now: float) -> None:
    text.append("  ")
    if alert.suppressed:
        text.append("[suppressed] ", style="dim italic")
    else:
        text.append("[cause]      ", style="bold")
    text.append_text(severity_text(alert.severity))
    state = "● firing" if alert.state == "firing" else "○ resolved"
    text.append(
        f"  {state}  {alert.rule}  {alert.entity_type} {alert.entity_id}", style=("dim" if alert.suppressed else "")
    )
    text.append(f"  — {alert.summary}  ({age(alert.starts_at, now)})\n", style="dim" if alert.suppressed else "")


def render_head(incident: IncidentView) -> Text:
    """Two lines that stay on screen while the body scrolls."""
    text = Text()
    text.append(incident.title + "\n", style="bold")
    text.append_text(status_text(incident.status))
    text.append("  ")
    text.append_text(severity_text(incident.severity))
    text.append(f"  {incident.priority}")
    if incident.root_causes:
        root = incident.root_causes[0]
        more = f" +{len(incident.root_causes) - 1}" if len(incident.root_causes) > 1 else ""
        text.append(f"  root: {root.name or root.entity_id} {root.confidence:.0%}{more}")
    if incident.assigned_to:
        text.append(f"  → {incident.assigned_to}", style="cyan")
    return text


def kind_text(kind: str) -> Text:
    symbol, word, style = KIND_STYLE.get(kind, ("?", kind, ""))
    return Text(f"{symbol} {word}", style=style)


def delivery_text(status: str | None) -> Text:
    if status is None:
        return Text("")
    symbol, style = DELIVERY_STYLE.get(status, ("?", ""))
    return Text(f"{symbol} {status}", style=style)


def _when(ts: float, now: float) -> str:
    same_day = time.localtime(ts)[:3] == time.localtime(now)[:3]
    return time.strftime("%H:%M:%S" if same_day else "%m-%d %H:%M:%S", time.localtime(ts))


def _fit(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line: a note may hold line breaks
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def timeline_summary(entry: TimelineEntry) -> str:
    if entry.actor and entry.kind == "note":
        return f"{entry.actor}: {entry.summary}"
    return entry.summary + (f" (by {entry.actor})" if entry.actor else "")


def render_incident(incident: IncidentView, now: float, *, readonly: bool = False) -> Text:
    text = Text()
    text.append(incident.title + "\n", style="bold")
    text.append(f"{incident.id}   ", style="dim")
    text.append_text(status_text(incident.status))
    text.append("   ")
    text.append_text(severity_text(incident.severity))
    text.append(f"   priority {incident.priority}")
    text.append(f"   opened {_clock(incident.opened_at)} ({age(incident.opened_at, now)})")
    if incident.closed_at is not None:
        text.append(f"   closed {_clock(incident.closed_at)} ({age(incident.closed_at, now)})")
    text.append("\n")
    if incident.acked_by:
        when = f" at {_clock(incident.acked_at)} ({age(incident.acked_at, now)})" if incident.acked_at else ""
        text.append(f"✓ Acknowledged by {incident.acked_by}{when}\n", style="yellow")
    elif incident.status == "open":
        hint = "" if readonly else " — press a to acknowledge"
        text.append(f"! Not acknowledged{hint}\n", style="bold")
    if incident.assigned_to:
        text.append(f"→ Assigned to {incident.assigned_to}\n", style="cyan")
    elif incident.status != "closed" and not readonly:
        text.append("  Not assigned — press A to assign\n", style="dim")

    _section(text, "Root cause")
    if not incident.root_causes:
        text.append("  — not determined yet\n", style="dim")
    for cause in incident.root_causes:
        text.append(f"  {cause.entity_type} ")
        text.append(cause.name or cause.entity_id, style="bold")
        if cause.entity_id != cause.name:
            text.append(f"  ({cause.entity_id})", style="dim")
        text.append(f"  — confidence {cause.confidence:.0%}\n")

    impact = incident.impact
    _section(text, "Impact")
    _names(text, "Sites", impact.sites_affected, impact.sites)
    _names(text, "Devices", impact.devices_affected, impact.devices)
    _names(text, "Services", impact.services_affected, impact.services)
    text.append("  Subscribers: ", style="bold")
    text.append(f"{subscribers(impact.estimated_subscribers_affected)} (estimated)\n")

    _section(text, "Evidence")
    if not incident.evidence:
        text.append("  —\n", style="dim")
    for line in incident.evidence:
        text.append(f"  • {line}\n")

    suppressed = incident.suppressed_count
    _section(text, f"Alerts ({len(incident.alerts)}, {suppressed} suppressed)")
    if not incident.alerts:
        text.append("  —\n", style="dim")
    for alert in incident.alerts:
        _alert_line(text, alert, now)

    if incident.labels:
        _section(text, "Labels")
        for key, value in sorted(incident.labels.items()):
            text.append(f"  {key}={value}\n")
    return text


def render_runbooks(links: Sequence[str] | None) -> Text:
    text = Text()
    _section(text, "Runbook")
    if links is None:
        text.append("  …\n", style="dim")
    elif not links:
        text.append("  — no runbook link on the root alerts' rules\n", style="dim")
    for n, link in enumerate(links or ()):
        text.append(f"  {link}")
        text.append("  (o opens it)\n" if n == 0 else "\n", style="dim")
    return text


def can_open_links(app: Any) -> bool:
    """Whether App.open_url can reach the user's browser. In a terminal Textual hands the link to Python's
    webbrowser on the console's own host: useless over SSH, and a text browser there would take over the
    terminal. Served to a browser (textual-serve), the browser opens it."""
    driver = getattr(app, "_driver", None)
    if driver is not None and type(driver).__name__ == "WebDriver":
        return True
    if getattr(app, "is_headless", False) or os.environ.get("SSH_CONNECTION"):
        return False
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class TimelineStale(Message):
    """An engine event for this incident (posted from the engine's thread)."""


class TimelineRead(Message):
    def __init__(self, entries: tuple[TimelineEntry, ...] | None, runbooks: list[str] | None,
                 error: str | None) -> None:
        super().__init__()
        self.entries = entries
        self.runbooks = runbooks
        self.error = error


class IncidentDetailScreen(Screen[None]):
    """Pushed over the main view; q/esc go back and a/c act (app-level actions)."""

    DEFAULT_CSS = """
    #incident-head { height: auto; max-height: 3; padding: 0 2; background: $boost; }
    #incident-timeline { height: auto; max-height: 100%; margin: 0 0 1 0; }
    #incident-timeline-title { padding: 1 0 0 0; }
    """
    BINDINGS = [
        Binding("n", "note", "Note"),
        Binding("A", "assign", "Assign"),
        Binding("o", "runbook", "Runbook"),
        Binding("g", "diagnostics", "Diagnose"),  # ping / traceroute (screens/diagnostics.py)
    ]

    def __init__(self, incident_id: str, *, readonly: bool = False, engine: Any = None,
                 actor: str | None = None) -> None:
        super().__init__(id="incident-detail-screen")
        self.incident_id = incident_id
        self.readonly = readonly
        self._engine = engine
        self._actor = actor
        self._incident: IncidentView | None = None
        self._rendered: Text | None = None
        self._head: Text | None = None
        self.timeline: tuple[TimelineEntry, ...] = ()
        self.runbooks: list[str] | None = None
        self.timeline_error: str | None = None
        self.timeline_reads = 0
        self._reading = False
        self._read_again = False
        self._last_read = 0.0
        self._read_due = False
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def engine(self) -> Any:
        return self._engine if self._engine is not None else getattr(self.app, "engine", None)

    @property
    def actor(self) -> str:
        return self._actor or getattr(self.app, "actor", None) or "unknown"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text(""), id="incident-head")
        with VerticalScroll(id="incident-detail-scroll"):
            yield Static(Text("Synchronizing…", style="dim"), id="incident-detail")
            yield Static(render_runbooks(None), id="incident-runbooks")
            yield Static(Text("Timeline", style="bold underline"), id="incident-timeline-title")
            yield ConsoleTable(id="incident-timeline", cursor_type="row", zebra_stripes=True)
        yield ConsoleFooter()

    def on_mount(self) -> None:
        table = self.query_one("#incident-timeline", DataTable)
        table.add_columns("time", "what", "summary", "status")
        snapshot = getattr(self.app, "snapshot", None)
        if isinstance(snapshot, Snapshot):
            self.apply_snapshot(snapshot)
        engine = self.engine
        with contextlib.suppress(Exception):  # no live events: the interval still reads it
            self._unsubscribe = engine.subscribe(self._on_engine_event)
        self.set_interval(TIMELINE_EVERY_S, self.read_timeline)
        self.read_timeline()

    def on_unmount(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            with contextlib.suppress(Exception):
                unsubscribe()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Diagnostics send traffic from a router: a write action, hidden when read-only.
        if action in ("note", "assign", "diagnostics"):
            return not self.readonly
        return True

    def action_diagnostics(self) -> None:
        from ispvm_tui.screens.diagnostics import open_diagnostics

        open_diagnostics(self.app, incident_id=self.incident_id)

    @property
    def incident(self) -> IncidentView | None:
        return self._incident

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        try:
            self._apply_snapshot(snapshot)
        except NoMatches:
            return  # pushed but not composed yet (on_mount applies the snapshot), or being torn down

    def _apply_snapshot(self, snapshot: Snapshot) -> None:
        incident = snapshot.incident(self.incident_id)
        if incident is None and self._incident is None:
            rendered = Text(f"Incident {self.incident_id} is not in the current snapshot.", style="italic")
        elif incident is None:
            rendered = render_incident(self._incident, snapshot.taken_at, readonly=self.readonly)
            rendered.append("\n(no longer in the engine's snapshot; showing the last known state)", style="italic")
        else:
            self._incident = incident
            rendered = render_incident(incident, snapshot.taken_at, readonly=self.readonly)
        if rendered != self._rendered:
            self._rendered = rendered
            self.query_one("#incident-detail", Static).update(rendered)
            self.sub_title = incident.title if incident else self.incident_id
        head = render_head(self._incident) if self._incident else Text(self.incident_id, style="bold")
        if head != self._head:
            self._head = head
            self.query_one("#incident-head", Static).update(head)

    # -- the timeline -----------------------------------------------------------------------------

    def _on_engine_event(self, event: EngineEvent) -> None:
        # The engine's thread: only post (thread-safe); the app's loop does the rest.
        if event.incident_id == self.incident_id:
            with contextlib.suppress(RuntimeError):
                self.post_message(TimelineStale())

    @on(TimelineStale)
    def _stale(self) -> None:
        wait = self._last_read + TIMELINE_MIN_S - time.monotonic()
        if wait <= 0:
            self.read_timeline()
        elif not self._read_due:
            self._read_due = True
            self.set_timer(wait, self._read_when_due)

    def _read_when_due(self) -> None:
        self._read_due = False
        self.read_timeline()

    def read_timeline(self) -> None:
        """Read it now, or once more after the read in flight; reads never overlap."""
        if self._reading:
            self._read_again = True
            return
        engine = self.engine
        if engine is None:
            return
        self._reading = True
        self._last_read = time.monotonic()
        self.run_worker(self._read(engine), group="incident-timeline", exit_on_error=False)

    async def _read(self, engine: Any) -> None:
        try:
            entries = await asyncio.wait_for(asyncio.wrap_future(engine.incident_timeline(self.incident_id)),
                                             TIMELINE_TIMEOUT_S)
        except Exception as exc:
            self.post_message(TimelineRead(None, None, error_text(exc)))
            return
        runbooks: list[str] | None
        try:
            runbooks = list(await asyncio.wait_for(asyncio.wrap_future(engine.incident_runbooks(self.incident_id)),
                                                   TIMELINE_TIMEOUT_S))
        except Exception:  # the timeline still shows; the links stay as they were
            runbooks = self.runbooks
        self.post_message(TimelineRead(tuple(entries), runbooks, None))

    @on(TimelineRead)
    def _timeline_read(self, message: TimelineRead) -> None:
        self._reading = False
        self.timeline_reads += 1
        if not self.is_attached:
            return
        if message.entries is None:
            self.timeline_error = message.error
            self.query_one("#incident-timeline-title", Static).update(
                Text(f"Timeline — not read: {message.error}", style="bold"))
        else:
            self.timeline_error = None
            if message.entries != self.timeline:
                self.timeline = message.entries
                self._fill(message.entries)
            shown = f" (newest {len(message.entries)})" if len(message.entries) >= 500 else ""
            self.query_one("#incident-timeline-title", Static).update(
                Text(f"Timeline{shown}", style="bold underline"))
        if message.runbooks != self.runbooks:
            self.runbooks = message.runbooks
            self.query_one("#incident-runbooks", Static).update(render_runbooks(message.runbooks))
        if self._read_again:
            self._read_again = False
            self.read_timeline()

    def _fill(self, entries: tuple[TimelineEntry, ...]) -> None:
        table = self.query_one("#incident-timeline", DataTable)
        now = time.time()
        whens = [_when(e.at, now) for e in entries]
        room = max(20, (self.size.width or 80) - _FIXED_COLUMNS + 14 - max(map(len, whens), default=8))
        table.clear()
        for n, (e, when) in enumerate(zip(entries, whens, strict=True)):
            table.add_row(when, kind_text(e.kind), _fit(timeline_summary(e), room),
                          delivery_text(e.status), key=str(n))
        if entries:
            table.move_cursor(row=len(entries) - 1, scroll=False)

    # -- actions ------------------------------------------------------------------------------------

    def action_note(self) -> None:
        if self.readonly:
            return
        self.app.push_screen(TextPrompt("Add a note to the timeline (it notifies nobody)", "Note",
                                        placeholder="what was done, who was called", max_length=NOTE_MAX,
                                        prompt_id="note-prompt"), callback=self._note_given)

    def _note_given(self, text: str | None) -> None:
        if text:
            self.run_worker(self._act(lambda e: e.add_note(self.incident_id, text, self.actor), "Note added"),
                            group="incident-act", exit_on_error=False)

    def action_assign(self) -> None:
        if self.readonly:
            return
        current = self._incident.assigned_to if self._incident else None
        if self._incident is not None and self._incident.status == "closed":
            self.notify("A closed incident is not assigned", severity="warning")
            return
        self.app.push_screen(TextPrompt("Assign this incident (it notifies nobody)", "Assignee", current or "",
                                        placeholder="who works on it", max_length=ASSIGNEE_MAX,
                                        prompt_id="assign-prompt"), callback=self._assignee_given)

    def _assignee_given(self, name: str | None) -> None:
        if name and (self._incident is None or name != self._incident.assigned_to):
            self.run_worker(self._act(lambda e: e.assign(self.incident_id, name, self.actor), f"Assigned to {name}"),
                            group="incident-act", exit_on_error=False)

    async def _act(self, call: Callable[[Any], Any], done: str) -> None:
        try:
            await asyncio.wait_for(asyncio.wrap_future(call(self.engine)), TIMELINE_TIMEOUT_S)
        except Exception as exc:
            self.notify(f"Failed: {error_text(exc)}", severity="error", timeout=10)
            return
        self.notify(done)
        refresh = getattr(self.app, "request_refresh", None)
        if refresh is not None:
            refresh()  # the assignee shows from the next snapshot
        self.read_timeline()

    def action_runbook(self) -> None:
        if not self.runbooks:
            self.notify("No runbook link for this incident's root alerts", severity="warning")
            return
        url = self.runbooks[0]
        if can_open_links(self.app):
            self.app.open_url(url)
            self.notify(url, title="Runbook opened (copy it from here if no browser came up)", timeout=15)
        else:
            self.notify(url, title="Runbook (no browser here: copy the link)", timeout=15)
