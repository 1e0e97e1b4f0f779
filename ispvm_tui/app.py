"""The Textual console: six tabs (home, incidents, topology, deliveries, changes, devices), detail and help
on top.

The app only talks to the engine through ``EngineAPI``: it polls ``snapshot()``
(an in-memory copy, fine on the event loop) on an interval and as soon as an
engine event arrives, and awaits action futures without blocking the loop.
The delivery report reads the database, so it is fetched only while its tab
is shown (and at once on a delivery event), never twice at the same time;
the Changes tab reads the calendar the same way (screens/changes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import socket
import time
from collections.abc import Callable, Iterable
from functools import partial

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.css.query import NoMatches
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static, TabbedContent, TabPane

from ispvm_tui.engine.api import (
    SEVERITY_ORDER,
    DeliveryReport,
    DeliveryView,
    EngineAPI,
    EngineEvent,
    IncidentView,
    Snapshot,
)
from ispvm_tui.screens.change_forms import CapturePrompt, RecordForm
from ispvm_tui.screens.changes import CALENDAR_EVENTS, CONFIG_EVENT, ChangesPane, ToastBatch
from ispvm_tui.screens.confirm import ConfirmScreen
from ispvm_tui.screens.deliveries import DeliveriesPane
from ispvm_tui.screens.devices import DeviceDetailScreen, DevicesPane
from ispvm_tui.screens.diagnostics import EVENT as DIAGNOSTIC_EVENT
from ispvm_tui.screens.diagnostics import DiagnosticsScreen
from ispvm_tui.screens.help import HelpScreen
from ispvm_tui.screens.home import HomePane
from ispvm_tui.screens.incident_detail import IncidentDetailScreen
from ispvm_tui.screens.incidents import IncidentsPane
from ispvm_tui.screens.topology import TopologyPane
from ispvm_tui.screens.widgets import (
    SEVERITY_STYLE,
    ConsoleAction,
    bindings_for,
    error_text,
    selected_row_key,
    short_id,
)

MIN_REFRESH_S = 1.0
DELIVERIES_REFRESH_S = 3.0
DELIVERY_REPORT_LIMIT = 200
DELIVERY_REPORT_TIMEOUT_S = 30.0  # a hung engine must not stop later refreshes for good
DELIVERY_EVENTS = frozenset({"delivery.dead", "delivery.failed"})
TABS = ("home", "incidents", "topology", "deliveries", "changes", "devices")
CONFIG_TOAST_EVERY_S = 1.0  # a fleet-wide change is one toast a second, counted, not one per router
ANSI_THEMES = ("textual-ansi", "ansi-dark")  # the name differs between Textual versions
# Events worth a toast; every event triggers a refresh anyway.
NOTIFY_EVENTS: dict[str, SeverityLevel] = {
    "incident.opened": "warning",
    "delivery.dead": "error",
    "engine.error": "error",
}

# The one list of actions: key bindings, the help screen and the command palette come from it.
ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction("1", "show_tab('home')", "Home", "Severity counts, sites, latest incidents, topology"),
    ConsoleAction("2", "show_tab('incidents')", "Incidents", "All incidents; a and enter act on the selection"),
    ConsoleAction("3", "show_tab('topology')", "Topology", "Devices and links from the console host outwards"),
    ConsoleAction("4", "show_tab('deliveries')", "Deliveries", "Each target's circuit, dead letters, latest attempts"),
    ConsoleAction("d", "show_tab('deliveries')", "Deliveries", "Same as 4", show=False),
    ConsoleAction("5", "show_tab('changes')", "Changes", "Detected config changes, the change calendar, "
                                                         "maintenance windows"),
    ConsoleAction("6", "show_tab('devices')", "Devices", "Every device's state, CPU, uptime, version and last "
                                                         "poll; enter: its interfaces, sensors, BGP, OSPF"),
    ConsoleAction("enter", "open_incident", "Open", "Open the selected incident's detail; on 5: a config "
                                                    "change's diff, or edit a change or window; on 6: the "
                                                    "device's detail"),
    ConsoleAction("a", "acknowledge", "Ack", "Acknowledge the selected (or shown) open incident", writes=True),
    ConsoleAction("c", "close_incident", "Close", "Close the selected incident by hand (it stays closed while "
                                                  "still failing)", writes=True),
    ConsoleAction("R", "resend_dead", "Resend", "Queue the selected dead letter again (4; enter does the same)",
                  writes=True),
    ConsoleAction("A", "resend_all_dead", "Resend all", "Queue every dead letter again, after a y/n question",
                  writes=True),
    ConsoleAction("n", "changes_new", "New", "5: a new change or maintenance window (the list the cursor is "
                                             "in)", writes=True),
    ConsoleAction("e", "changes_edit", "Edit", "5: edit the selected change or run-time window (config-file "
                                               "windows are read-only)", writes=True),
    ConsoleAction("x", "changes_cancel", "Cancel", "5: cancel the selected change or window, after a y/n "
                                                   "question", writes=True),
    ConsoleAction("p", "changes_advance", "Next status", "5: move the selected change on: planned → "
                                                         "in-progress → completed", writes=True),
    ConsoleAction("f", "changes_capture", "Fingerprint", "5: read the selected device's configuration now "
                                                         "(no selection: ask which)", writes=True),
    ConsoleAction("s", "cycle_sort", "Sort", "Sort incidents by priority score, newest or severity; on 6: "
                                             "devices by state, name, site or CPU"),
    ConsoleAction("/", "filter", "Filter", "Filter incidents by title, root cause, severity or status; on 6: "
                                           "devices by name, site, role or state; on 3: search devices by "
                                           "name or site"),
    ConsoleAction("escape", "go_back", "Back", "Close the screen on top, or clear the filter"),
    ConsoleAction("r", "refresh_now", "Refresh", "Take a new snapshot from the engine now"),
    ConsoleAction("?", "help", "Help", "Show this help"),
    ConsoleAction("q", "quit_or_back", "Quit/back", "Back from a screen; quit from the main view"),
)


def actions_for(readonly: bool) -> tuple[ConsoleAction, ...]:
    return tuple(a for a in ACTIONS if not (readonly and a.writes))


def pick_theme(wanted: str | None, available: Iterable[str]) -> str | None:
    """``ansi`` picks whichever ANSI theme this Textual has; other values must name a theme."""
    if not wanted:
        return None
    names = set(available)
    if wanted.lower() == "ansi":
        return next((name for name in ANSI_THEMES if name in names), None)
    return wanted if wanted in names else None


def default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry / no USER in a bare container
        return "unknown"


class EngineEventArrived(Message):
    """Posted from the engine's thread; handled on the app's loop."""

    def __init__(self, event: EngineEvent) -> None:
        super().__init__()
        self.event = event


class AckFinished(Message):
    def __init__(self, incident: IncidentView, error: str | None) -> None:
        super().__init__()
        self.incident = incident
        self.error = error


class DeliveriesFetched(Message):
    def __init__(self, report: DeliveryReport | None, error: str | None) -> None:
        super().__init__()
        self.report = report
        self.error = error


class ResendFinished(Message):
    """One dead letter (``dead``) or all of them (``dead`` None; ``queued``: how many went back)."""

    def __init__(self, dead: DeliveryView | None, *, superseded: bool = False, queued: int = 0,
                 error: str | None = None) -> None:
        super().__init__()
        self.dead = dead
        self.superseded = superseded
        self.queued = queued
        self.error = error


class IspvmApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "ispvm"

    def __init__(
        self,
        engine: EngineAPI,
        *,
        title: str = "ispvm",
        actor: str | None = None,
        readonly: bool = False,
        refresh_s: float = 1.0,
        deliveries_refresh_s: float = DELIVERIES_REFRESH_S,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.actor = actor or default_actor()
        self.readonly = readonly
        self.refresh_s = max(MIN_REFRESH_S, refresh_s)
        self.deliveries_refresh_s = max(MIN_REFRESH_S, deliveries_refresh_s)
        self.host = socket.gethostname()
        self.title = title
        self.sub_title = f"{self.actor}@{self.host}" + (" · READ-ONLY" if readonly else "")
        self.actions = actions_for(readonly)
        self._console_actions = frozenset(a.action.split("(")[0] for a in ACTIONS)
        # Bindings are per instance so read-only mode can leave write actions out entirely.
        for binding in bindings_for(self.actions):
            self._bindings.key_to_bindings.setdefault(binding.key, []).append(binding)
        theme = pick_theme(os.environ.get("ISPVM_THEME"), self.available_themes)
        if theme:
            self.theme = theme

        self.snapshot: Snapshot | None = None
        self.snapshots_taken = 0
        self.snapshot_failures = 0
        self._snapshot_error: str | None = None
        self._refresh_pending = False
        self._acking: set[str] = set()
        self._resending: set[str] = set()
        self.deliveries_ticks = 0  # interval ticks, shown or not (lets tests wait for time to pass)
        self._report_fetching = False
        self._report_again = False
        self._unsubscribe: Callable[[], None] | None = None
        self._config_toasts = ToastBatch(CONFIG_TOAST_EVERY_S)
        self._config_toast_due = False

    # -- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial="tab-home", id="tabs"):
            with TabPane("1 Home", id="tab-home"):
                yield HomePane()
            with TabPane("2 Incidents", id="tab-incidents"):
                yield IncidentsPane()
            with TabPane("3 Topology", id="tab-topology"):
                yield TopologyPane(self.host)
            with TabPane("4 Deliveries", id="tab-deliveries"):
                yield DeliveriesPane(readonly=self.readonly)
            with TabPane("5 Changes", id="tab-changes"):
                yield ChangesPane(self.engine, actor=self.actor, readonly=self.readonly)
            with TabPane("6 Devices", id="tab-devices"):
                yield DevicesPane()
        yield Static(Text("Synchronizing…", style="italic"), id="status")
        yield Footer()

    def on_mount(self) -> None:
        # Keep references: app.query_one() searches the current screen, which may be a pushed one.
        self.home_pane = self.query_one(HomePane)
        self.incidents_pane = self.query_one(IncidentsPane)
        self.topology_pane = self.query_one(TopologyPane)
        self.deliveries_pane = self.query_one(DeliveriesPane)
        self.changes_pane = self.query_one(ChangesPane)
        self.devices_pane = self.query_one(DevicesPane)
        self.status_line = self.query_one("#status", Static)
        self.main_screen = self.screen
        self.home_pane.query_one("#home-incidents", DataTable).focus()
        try:
            self._unsubscribe = self.engine.subscribe(self._on_engine_event)
        except Exception as exc:
            self.notify(f"Live updates unavailable, polling only: {exc}", severity="warning")
        self.set_interval(self.refresh_s, self.refresh_snapshot)
        self.set_interval(self.deliveries_refresh_s, self._deliveries_tick)
        # First snapshot after the first paint, so "Synchronizing…" is what shows until then.
        self.call_after_refresh(self.refresh_snapshot)

    def on_unmount(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            # The engine may already be stopped; then there is nothing left to detach from.
            with contextlib.suppress(Exception):
                unsubscribe()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for action in self.actions:
            if action.key in ("enter", "escape"):
                continue
            # Resend acts on the Deliveries tab's selection: offered only where it can do something.
            if action.action in ("resend_dead", "resend_all_dead") and not self._deliveries_tab_on(screen):
                continue
            if action.action.startswith("changes_") and not self._changes_tab_on(screen):
                continue
            yield SystemCommand(action.description, action.help, partial(self.run_action, action.action))

    # -- snapshots and events -------------------------------------------------------------------

    def refresh_snapshot(self) -> None:
        """Take a snapshot and push it to every view; cheap when nothing changed."""
        self._refresh_pending = False
        try:
            snapshot = self.engine.snapshot()
        except Exception as exc:
            self.snapshot_failures += 1
            self._snapshot_error = str(exc) or type(exc).__name__
            self._update_status()
            return
        self._snapshot_error = None
        self.snapshots_taken += 1
        if not self.home_pane.is_attached:
            return  # the console is closing: its widgets are being torn down
        if snapshot is not self.snapshot:
            self.snapshot = snapshot
            try:
                with self.batch_update():
                    self.home_pane.apply_snapshot(snapshot)
                    self.incidents_pane.apply_snapshot(snapshot)
                    self.topology_pane.apply_snapshot(snapshot)
                    self.changes_pane.apply_snapshot(snapshot)
                    self.devices_pane.apply_snapshot(snapshot)
                    for screen in self.screen_stack:
                        if isinstance(screen, IncidentDetailScreen):
                            screen.apply_snapshot(snapshot)
            except NoMatches:
                # Closing: the panes can still be attached while their children are already removed.
                if self._exit or not self.is_running:
                    return
                raise
        self._update_status()

    def request_refresh(self) -> None:
        """Coalesce bursts of events into one snapshot after the queued messages."""
        if not self._refresh_pending:
            self._refresh_pending = True
            self.call_later(self.refresh_snapshot)

    def _on_engine_event(self, event: EngineEvent) -> None:
        # Runs on the engine's thread, possibly after the app has exited.
        if not self.is_running:
            return
        # RuntimeError: the event loop closed under us, so the console is gone.
        with contextlib.suppress(RuntimeError):
            self.post_message(EngineEventArrived(event))

    @on(EngineEventArrived)
    def _engine_event(self, message: EngineEventArrived) -> None:
        event = message.event
        if event.kind == DIAGNOSTIC_EVENT:  # one line of a ping or traceroute: only its screen wants it
            for screen in self.screen_stack:
                if isinstance(screen, DiagnosticsScreen):
                    screen.diagnostic_event(event)
            return
        severity = NOTIFY_EVENTS.get(event.kind)
        if severity is not None:
            self.notify(event.summary, title=event.kind, severity=severity)
        self.request_refresh()
        if event.kind in DELIVERY_EVENTS and self.deliveries_shown():
            self.refresh_deliveries()
        if event.kind == CONFIG_EVENT:
            self._config_toasts.add(event.summary)
            self._show_config_toasts()
        if event.kind in CALENDAR_EVENTS and self.changes_pane.is_attached:
            self.changes_pane.calendar_changed()

    def _show_config_toasts(self) -> None:
        """At most one toast a second for detected config changes; a burst is one counted toast."""
        if self._config_toast_due:
            return
        wait = self._config_toasts.wait(time.monotonic())
        if wait > 0:
            self._config_toast_due = True
            self.set_timer(wait, self._config_toast_timer)
            return
        message = self._config_toasts.take(time.monotonic())
        if message is not None:
            self.notify(message, title=CONFIG_EVENT)

    def _config_toast_timer(self) -> None:
        self._config_toast_due = False
        self._show_config_toasts()

    # -- delivery report ------------------------------------------------------------------------

    def deliveries_shown(self) -> bool:
        return self._deliveries_tab_on(self.screen)

    def changes_shown(self) -> bool:
        return self._changes_tab_on(self.screen)

    def devices_shown(self) -> bool:
        main = getattr(self, "main_screen", None)
        return (main is not None and self.screen is main
                and main.query_one("#tabs", TabbedContent).active == "tab-devices")

    def topology_shown(self) -> bool:
        main = getattr(self, "main_screen", None)
        return (main is not None and self.screen is main
                and main.query_one("#tabs", TabbedContent).active == "tab-topology")

    def _changes_tab_on(self, screen: Screen) -> bool:
        main = getattr(self, "main_screen", None)
        return (main is not None and screen is main
                and main.query_one("#tabs", TabbedContent).active == "tab-changes")

    def _deliveries_tab_on(self, screen: Screen) -> bool:
        main = getattr(self, "main_screen", None)
        return (main is not None and screen is main
                and main.query_one("#tabs", TabbedContent).active == "tab-deliveries")

    def _deliveries_tick(self) -> None:
        self.deliveries_ticks += 1
        if self.deliveries_shown():
            # A tick during a slow fetch is dropped rather than queued: polls never run back to back.
            self.refresh_deliveries(queue=False)

    def refresh_deliveries(self, *, queue: bool = True) -> None:
        """Fetch the report now, or (``queue``) once more after the fetch in flight; fetches never overlap."""
        if self._report_fetching:
            self._report_again = self._report_again or queue
            return
        self._report_fetching = True
        self.run_worker(self._fetch_deliveries(), group="deliveries", exit_on_error=False)

    async def _fetch_deliveries(self) -> None:
        try:
            future = self.engine.delivery_report(DELIVERY_REPORT_LIMIT)
            report = await asyncio.wait_for(asyncio.wrap_future(future), DELIVERY_REPORT_TIMEOUT_S)
        except Exception as exc:
            self.post_message(DeliveriesFetched(None, error_text(exc)))
        else:
            self.post_message(DeliveriesFetched(report, None))

    @on(DeliveriesFetched)
    def _deliveries_fetched(self, message: DeliveriesFetched) -> None:
        self._report_fetching = False
        if not self.deliveries_pane.is_attached:
            return  # a fetch that finished while the console closes: its widgets are being torn down
        if message.report is not None:
            self.deliveries_pane.apply_report(message.report)
        else:
            self.deliveries_pane.show_error(message.error or "unknown error")
        if self._report_again:
            self._report_again = False
            if self.deliveries_shown():
                self.refresh_deliveries()

    def status_text(self) -> Text:
        snapshot = self.snapshot
        text = Text()
        if snapshot is None:
            text.append("Synchronizing…  ", style="bold italic")
        else:
            text.append(f"snapshot {time.strftime('%H:%M:%S', time.localtime(snapshot.taken_at))}  ")
            if snapshot.polls_total == 0:
                text.append("Synchronizing… no poll results yet  ", style="bold italic")
            ok = snapshot.polls_total - snapshot.polls_failed
            text.append(
                f"polls {ok:,} ok / {snapshot.polls_failed:,} failed  ",
                style="bold red" if snapshot.polls_failed else "",
            )
            counts = snapshot.severity_counts()
            text.append("open:")
            for severity in SEVERITY_ORDER:
                symbol, word, style = SEVERITY_STYLE[severity]
                text.append(f" {symbol} {word} {counts[severity]}", style=style if counts[severity] else "dim")
            text.append("  ")
        pane = getattr(self, "incidents_pane", None)
        if self.devices_shown():
            pane = self.devices_pane
        if pane is not None and pane.filter_text:
            text.append(f"filter “{pane.filter_text}” {pane.shown}/{pane.total}  ", style="bold")
        else:
            text.append("filter: none  ", style="dim")
        if self._snapshot_error:
            text.append(f"⚠ snapshot failed ×{self.snapshot_failures}: {self._snapshot_error}  ", style="bold red")
        if self.readonly:
            text.append("READ-ONLY", style="bold")
        return text

    def _update_status(self) -> None:
        status = getattr(self, "status_line", None)
        if status is not None:
            status.update(self.status_text())

    @on(Input.Changed, "#filter, #devices-filter")
    def _filter_changed(self) -> None:
        self._update_status()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Hide keys that mean nothing on the screen on top (keeps the footer honest).
        screen = self.screen
        if isinstance(screen, ConfirmScreen):
            return action in ("go_back", "quit_or_back")  # both leave the question unanswered
        if isinstance(screen, RecordForm | CapturePrompt):
            # Textual's own (tab between fields, the palette) stay; the console's keys wait for the form.
            return action in ("go_back", "quit_or_back") or action not in self._console_actions
        if action in ("resend_dead", "resend_all_dead"):
            return self.deliveries_shown()
        if action.startswith("changes_"):
            return self.changes_shown()
        if action == "open_incident":
            return (screen is getattr(self, "main_screen", screen) and not self.deliveries_shown()
                    and not self.changes_shown())
        if action == "acknowledge":
            return not isinstance(screen, HelpScreen)
        return True

    # -- selection ------------------------------------------------------------------------------

    def selected_incident_id(self) -> str | None:
        """The incident shown in detail, else the row under the cursor on the visible tab."""
        screen = self.screen
        if isinstance(screen, IncidentDetailScreen):
            return screen.incident_id
        if screen is not self.main_screen:
            return None
        active = self.main_screen.query_one("#tabs", TabbedContent).active
        if active == "tab-incidents":
            return selected_row_key(self.incidents_pane.query_one("#incidents-table", DataTable))
        if active == "tab-home":
            return selected_row_key(self.home_pane.query_one("#home-incidents", DataTable))
        return None

    @on(DataTable.RowSelected, "#incidents-table, #home-incidents")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.open_incident(event.row_key.value)

    def open_incident(self, incident_id: str) -> None:
        screen = IncidentDetailScreen(incident_id, readonly=self.readonly)
        self.push_screen(screen)

    # -- actions (bound from ACTIONS) -----------------------------------------------------------

    async def _back_to_main(self) -> None:
        while len(self.screen_stack) > 1:
            await self.pop_screen()

    async def action_show_tab(self, tab: str) -> None:
        if tab not in TABS:
            return
        await self._back_to_main()
        self.main_screen.query_one("#tabs", TabbedContent).active = f"tab-{tab}"
        self._focus_tab(tab)

    @on(TabbedContent.TabActivated, "#tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = (event.pane.id or "").removeprefix("tab-")
        self._focus_tab(tab)
        if tab == "deliveries":
            self.refresh_deliveries()
        if tab == "changes":
            self.changes_pane.refresh_lists()

    def _focus_tab(self, tab: str) -> None:
        selector = {
            "home": "#home-incidents",
            "incidents": "#incidents-table",
            "topology": "#topology-tree",
            "deliveries": "#dead-table",
            "changes": "#calendar-table",
            "devices": "#devices-table",
        }.get(tab)
        if selector is None:
            return
        pane = f"tab-{tab}"

        def focus() -> None:
            # Deferred, so check again: focusing a widget in another pane would switch tabs back.
            tabs = self.main_screen.query_one("#tabs", TabbedContent)
            focused = self.main_screen.focused
            if tabs.active != pane or (focused is not None and tabs.active_pane in focused.ancestors):
                return
            self.main_screen.query_one(selector).focus()

        self.call_after_refresh(focus)

    @on(DataTable.RowSelected, "#devices-table")
    def _device_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.open_device(str(event.row_key.value))

    def open_device(self, name: str) -> None:
        self.push_screen(DeviceDetailScreen(self.engine, name))

    def action_open_incident(self) -> None:
        if self.devices_shown():
            name = self.devices_pane.selected()
            if name is None:
                self.notify("No device selected", severity="warning")
            else:
                self.open_device(name)
            return
        incident_id = self.selected_incident_id()
        if isinstance(self.screen, IncidentDetailScreen):
            return
        if incident_id is None:
            self.notify("No incident selected (2: incidents)", severity="warning")
            return
        self.open_incident(incident_id)

    def action_acknowledge(self) -> None:
        if self.readonly:  # never bound then; guards palette or scripted calls
            self.notify("Read-only console: acknowledge is disabled", severity="warning")
            return
        incident_id = self.selected_incident_id()
        incident = self.snapshot.incident(incident_id) if self.snapshot and incident_id else None
        if incident is None:
            self.notify("No incident selected (2: incidents)", severity="warning")
            return
        if incident.status != "open":
            by = f" by {incident.acked_by}" if incident.acked_by else ""
            self.notify(f"{incident.title} is already {incident.status}{by}")
            return
        if incident.id in self._acking:
            return
        self._acking.add(incident.id)
        self.run_worker(self._acknowledge(incident), group="acknowledge", exit_on_error=False)

    async def _acknowledge(self, incident: IncidentView) -> None:
        # The engine resolves the future on its own thread; awaiting it keeps our loop free.
        try:
            await asyncio.wrap_future(self.engine.acknowledge(incident.id, self.actor))
        except Exception as exc:
            self.post_message(AckFinished(incident, str(exc) or type(exc).__name__))
        else:
            self.post_message(AckFinished(incident, None))

    @on(AckFinished)
    def _ack_finished(self, message: AckFinished) -> None:
        self._acking.discard(message.incident.id)
        if message.error is None:
            self.notify(f"Acknowledged {message.incident.title}")
        else:
            self.notify(
                f"Acknowledge failed for {message.incident.title}: {message.error}", severity="error", timeout=10
            )
        self.refresh_snapshot()

    def action_close_incident(self) -> None:
        if self.readonly:
            self.notify("Read-only console: close is disabled", severity="warning")
            return
        incident_id = self.selected_incident_id()
        incident = self.snapshot.incident(incident_id) if self.snapshot and incident_id else None
        if incident is None or incident.status == "closed":
            self.notify("No open incident selected (2: incidents)", severity="warning")
            return
        self.run_worker(self._close(incident), group="close", exit_on_error=False)

    async def _close(self, incident: IncidentView) -> None:
        try:
            await asyncio.wrap_future(self.engine.close(incident.id, self.actor))
        except Exception as exc:
            self.notify(f"Close failed for {incident.title}: {exc}", severity="error", timeout=10)
        else:
            self.notify(f"Closed {incident.title}")
        self.refresh_snapshot()

    def _resend_refused(self) -> bool:
        if self.readonly:
            self.notify("Read-only console: resend is disabled", severity="warning")
        return self.readonly

    def action_resend_dead(self) -> None:
        if self._resend_refused():
            return
        dead = self.deliveries_pane.selected_dead()
        if dead is None:
            self.notify("No dead letter selected (4: deliveries)", severity="warning")
            return
        self._resend(dead)

    @on(DataTable.RowSelected, "#dead-table")
    def _dead_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        dead = self.deliveries_pane.dead_letter(str(event.row_key.value))
        if not self._resend_refused() and dead is not None:
            self._resend(dead)

    def _resend(self, dead: DeliveryView) -> None:
        if dead.event_id in self._resending:
            return
        self._resending.add(dead.event_id)
        self.run_worker(self._resend_one(dead), group="resend", exit_on_error=False)

    async def _resend_one(self, dead: DeliveryView) -> None:
        try:
            superseded = await asyncio.wrap_future(self.engine.resend(dead.event_id, self.actor))
        except Exception as exc:
            self.post_message(ResendFinished(dead, error=error_text(exc)))
        else:
            self.post_message(ResendFinished(dead, superseded=bool(superseded), queued=1))

    def action_resend_all_dead(self) -> None:
        if self._resend_refused():
            return
        count = self.deliveries_pane.dead_total
        if self.deliveries_pane.report is None or count == 0:
            self.notify("No dead letters to resend", severity="warning")
            return
        question = f"Resend {count} dead event{'s' if count != 1 else ''}? y/n"
        self.push_screen(ConfirmScreen(question), callback=self._resend_all_answered)

    def _resend_all_answered(self, yes: bool | None) -> None:
        if yes:
            self.run_worker(self._resend_all(), group="resend", exit_on_error=False)

    async def _resend_all(self) -> None:
        try:
            ids = await asyncio.wrap_future(self.engine.resend_all_dead(self.actor))
        except Exception as exc:
            self.post_message(ResendFinished(None, error=error_text(exc)))
        else:
            self.post_message(ResendFinished(None, queued=len(ids)))

    @on(ResendFinished)
    def _resend_finished(self, message: ResendFinished) -> None:
        dead = message.dead
        if dead is not None:
            self._resending.discard(dead.event_id)
        what = (f"{dead.event_type} {short_id(dead.event_id)} to {dead.target}" if dead is not None
                else "the dead letters")
        if message.error is not None:
            self.notify(f"Resend of {what} failed: {message.error}", severity="error", timeout=10)
        elif dead is not None:
            later = " (superseded: a later event was delivered)" if message.superseded else ""
            self.notify(f"{what}: queued again{later}")
        else:
            self.notify(f"{message.queued} dead event{'s' if message.queued != 1 else ''} queued again")
        self.refresh_deliveries()

    # Changes tab (5): the pane acts on its own selection; bound here so help and palette list them.
    def _changes_refused(self) -> bool:
        if self.readonly:
            self.notify("Read-only console: the calendar cannot be changed here", severity="warning")
        return self.readonly or not self.changes_shown()

    def action_changes_new(self) -> None:
        if not self._changes_refused():
            self.changes_pane.new()

    def action_changes_edit(self) -> None:
        if not self._changes_refused():
            self.changes_pane.edit()

    def action_changes_cancel(self) -> None:
        if not self._changes_refused():
            self.changes_pane.cancel()

    def action_changes_advance(self) -> None:
        if not self._changes_refused():
            self.changes_pane.advance()

    def action_changes_capture(self) -> None:
        if not self._changes_refused():
            self.changes_pane.capture()

    def action_cycle_sort(self) -> None:
        if self.devices_shown():
            self.notify(f"Devices sorted by {self.devices_pane.cycle_sort()}")
            return
        self.notify(f"Incidents sorted by {self.incidents_pane.cycle_sort()}")

    async def action_filter(self) -> None:
        if self.devices_shown():
            self.devices_pane.open_filter()
            return
        if self.topology_shown():
            self.topology_pane.open_filter()
            return
        await self._back_to_main()
        self.main_screen.query_one("#tabs", TabbedContent).active = "tab-incidents"
        self.incidents_pane.open_filter()

    async def action_go_back(self) -> None:
        if len(self.screen_stack) > 1:
            await self.pop_screen()
        elif self.devices_shown():
            if self.devices_pane.clear_filter():
                self._update_status()
        elif self.topology_shown():
            self.topology_pane.clear_filter()
        elif self.incidents_pane.clear_filter():
            self._update_status()

    def action_refresh_now(self) -> None:
        self.refresh_snapshot()
        if self.deliveries_shown():
            self.refresh_deliveries()
        if self.changes_shown():
            self.changes_pane.refresh_lists()

    async def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            await self.pop_screen()
            return
        await self.push_screen(HelpScreen(self.actions, readonly=self.readonly))

    async def action_quit_or_back(self) -> None:
        if len(self.screen_stack) > 1:
            await self.pop_screen()
        else:
            self.exit()
