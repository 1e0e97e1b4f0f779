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
import gc
import getpass
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from functools import partial
from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import App, ComposeResult, SystemCommand
from textual.css.query import NoMatches
from textual.filter import Monochrome, NoColor
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import DataTable, Header, Input, Static, TabbedContent, TabPane, Tree

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
from ispvm_tui.screens.command_line import (
    Command,
    CommandContext,
    CommandError,
    CommandLineScreen,
    parse_command,
)
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
    ConsoleFooter,
    bindings_for,
    error_text,
    selected_row_key,
    short_id,
)

MIN_REFRESH_S = 1.0
GC_YOUNG_THRESHOLD = 20_000  # as the engine's (engine/core.py)
_gc_settled = False  # see settle_gc
RECURSION_LIMIT = 20_000  # see IspvmApp.__init__
AFTER_FIRST_PAINT_LATEST_S = 2.0  # real seconds: the later tabs mount and a starter runs by then, painted or not
LATER_TABS = frozenset({"tab-topology", "tab-deliveries", "tab-changes", "tab-devices"})
REFRESH_GAP_S = 0.25  # an alert storm is many events a second: one snapshot per gap is enough
# The gap is at least this many times the last apply: drawing what changed takes about as long again, so
# applying and drawing take at most about half of the loop's time, the rest is the keys'.
REFRESH_GAP_FACTOR = 4.0
# Keys first: a snapshot whose apply is noticeable (over KEYS_FIRST_ABOVE_S) waits until no key has come for
# KEYS_FIRST_S, but never more than KEYS_FIRST_MAX_S after it was asked for.
KEYS_FIRST_ABOVE_S = 0.03
KEYS_FIRST_S = 0.2
KEYS_FIRST_MAX_S = 1.0
DELIVERIES_REFRESH_S = 3.0
DELIVERY_REPORT_LIMIT = 200
DELIVERY_REPORT_TIMEOUT_S = 30.0  # a hung engine must not stop later refreshes for good
DELIVERY_EVENTS = frozenset({"delivery.dead", "delivery.failed"})
TABS = ("home", "incidents", "topology", "deliveries", "changes", "devices")
TAB_FOCUS = {  # the widget on each tab that takes the keys
    "home": "#home-incidents",
    "incidents": "#incidents-table",
    "topology": "#topology-tree",
    "deliveries": "#dead-table",
    "changes": "#calendar-table",
    "devices": "#devices-table",
}
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
    ConsoleAction(":", "command_line", "Command", "The command line: :incidents major, :devices EDGE1, "
                                                  ":maint add 1h --device X …; tab completes"),
    ConsoleAction("F", "toggle_freeze", "Freeze", "Stop applying updates (for a screenshot); F again shows "
                                                  "the latest at once", show=False),
    ConsoleAction("?", "help", "Help", "Show this help: this screen's keys first"),
    ConsoleAction("q", "quit_or_back", "Quit/back", "Back from a screen; quit from the main view"),
)


def actions_for(readonly: bool) -> tuple[ConsoleAction, ...]:
    return tuple(a for a in ACTIONS if not (readonly and a.writes))


# Keys that mean the same on every screen; the help lists them after the current screen's own.
GLOBAL_KEYS = frozenset({"1", "2", "3", "4", "d", "5", "6", ":", "F", "r", "escape", "?", "q"})
VIEW_TITLES = {"home": "Home", "incidents": "Incidents", "topology": "Topology", "deliveries": "Deliveries",
               "changes": "Changes", "devices": "Devices", "incident": "Incident", "device": "Device",
               "help": "Help"}


def _key(key: str, description: str, help_text: str, *, writes: bool = False) -> ConsoleAction:
    return ConsoleAction(key, "", description, help_text, writes=writes)


# What each view's own keys do there (the help shows these first); the bindings themselves are ACTIONS
# above, plus the widgets' own (cursor keys, tab between lists).
VIEW_KEYS: dict[str, tuple[ConsoleAction, ...]] = {
    "home": (
        _key("enter", "Open", "The selected incident's detail"),
        _key("a", "Ack", "Acknowledge the selected open incident", writes=True),
        _key("c", "Close", "Close the selected incident by hand", writes=True),
        _key("/", "Filter", "Go to 2 and filter incidents"),
    ),
    "incidents": (
        _key("/", "Filter", "Incidents by title, root cause, severity or status; esc clears"),
        _key("s", "Sort", "By priority score, newest or severity"),
        _key("enter", "Open", "The selected incident's detail"),
        _key("a", "Ack", "Acknowledge the selected open incident", writes=True),
        _key("c", "Close", "Close the selected incident by hand", writes=True),
    ),
    "topology": (
        _key("↑↓", "Move", "From device to link to device"),
        _key("enter", "Open", "A device's detail; on a site or link: open or fold the branch"),
        _key("space", "Fold", "Open or fold the branch under the cursor"),
        _key("/", "Search", "Devices by name or site: the paths to the matches open; esc clears"),
        _key(":topology D", "Find", "Put the cursor on device D"),
    ),
    "deliveries": (
        _key("enter", "Resend", "Queue the selected dead letter again", writes=True),
        _key("R", "Resend", "Same as enter", writes=True),
        _key("A", "Resend all", "Every dead letter again, after a y/n question", writes=True),
    ),
    "changes": (
        _key("tab", "Next list", "Detected changes → calendar → maintenance windows"),
        _key("enter", "Open", "A config change's diff, or edit a change or window"),
        _key("n", "New", "A new change or maintenance window (the list the cursor is in)", writes=True),
        _key("e", "Edit", "The selected change or run-time window", writes=True),
        _key("x", "Cancel", "The selected change or window, after a y/n question", writes=True),
        _key("p", "Next status", "planned → in-progress → completed", writes=True),
        _key("f", "Fingerprint", "Read the selected device's configuration now", writes=True),
    ),
    "devices": (
        _key("/", "Filter", "Devices by name, site, role or state; esc clears"),
        _key("s", "Sort", "Devices by state, name, site or CPU"),
        _key("enter", "Open", "The device's detail: interfaces, sensors, BGP, OSPF, config changes"),
    ),
    "incident": (
        _key("a", "Ack", "Acknowledge this incident", writes=True),
        _key("c", "Close", "Close this incident by hand", writes=True),
        _key("n", "Note", "Add a note to its timeline (tells nobody)", writes=True),
        _key("A", "Assign", "Assign it to someone (tells nobody)", writes=True),
        _key("o", "Runbook", "Show (and where a browser can come up, open) its runbook link"),
        _key("g", "Diagnose", "Ping or traceroute from a router, streamed here; audited", writes=True),
        _key("esc", "Back", "To the list"),
    ),
    "device": (
        _key("↑↓", "Scroll", "Through the detail (read again every 3 s; the history every minute)"),
        _key("g", "Diagnose", "Ping or traceroute from this router, streamed here; audited", writes=True),
        _key("esc", "Back", "To the list"),
    ),
}


def keys_for_view(view: str, readonly: bool) -> tuple[tuple[ConsoleAction, ...], tuple[ConsoleAction, ...],
                                                      tuple[ConsoleAction, ...]]:
    """(this view's keys, the global ones, the rest) for the help screen."""
    actions = actions_for(readonly)
    here = tuple(a for a in VIEW_KEYS.get(view, ()) if not (readonly and a.writes))
    everywhere = tuple(a for a in actions if a.key in GLOBAL_KEYS)
    elsewhere = tuple(a for a in actions if a.key not in GLOBAL_KEYS)
    return here, everywhere, elsewhere


def terminal_has_16_colours(environ: dict[str, str] | os._Environ[str]) -> bool:
    """A console on a 16-colour terminal (the Linux console, a bare ``-16color`` TERM) uses the ANSI theme.

    ``xterm`` alone is left out: too many 256-colour terminals still call themselves that.
    """
    if environ.get("COLORTERM", "").lower() in ("truecolor", "24bit"):
        return False
    term = environ.get("TERM", "").lower()
    return term.endswith("-16color") or term in ("linux", "vt100", "vt220", "ansi", "cons25")


def pick_theme(wanted: str | None, available: Iterable[str]) -> str | None:
    """``ansi`` picks whichever ANSI theme this Textual has; other values must name a theme."""
    if not wanted:
        return None
    names = set(available)
    if wanted.lower() == "ansi":
        return next((name for name in ANSI_THEMES if name in names), None)
    return wanted if wanted in names else None


def settle_gc() -> None:
    """Once the first snapshot is on screen: what exists then (widgets, styles, the state) lives as long as
    the console, so the collector stops walking it; collections of young objects are rarer.

    At 1,000 devices a full collection walked it all for 100-250 ms, every few keys. The engine does the
    same when it starts (engine/core.py); an attached console or a lab run need it here. Once a process:
    a later console in the same process (tests) must not freeze what the earlier ones left behind.
    """
    global _gc_settled
    if _gc_settled:
        return
    _gc_settled = True
    gc.freeze()
    threshold, *older = gc.get_threshold()
    if threshold < GC_YOUNG_THRESHOLD:
        gc.set_threshold(GC_YOUNG_THRESHOLD, *older)


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


class StatusLine(Static):
    """The line above the footer: the whole status, or its compact form when that does not fit."""

    def on_resize(self, event: events.Resize) -> None:
        update = getattr(self.app, "_update_status", None)
        if update is not None:
            update()


class EngineStartFailed(Message):
    """The engine this console started (``starter``) could not start: the console exits with the error."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


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
        starter: Callable[[], Future[Any]] | None = None,
    ) -> None:
        super().__init__()
        # Textual's Tree lays its lines out recursively, one frame per level, and a topology tree is as deep
        # as the network is long (a chain of 600 routers is 1,200 levels). Python 3.11 calls between Python
        # frames use no C stack, so a higher limit costs nothing until it is used.
        sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
        self.engine = engine
        # `ispvm run`: the engine has restored its state but not started; starting it (collectors, the
        # scheduler, the outbox) is left until the stored state is on screen, so first paint does not share
        # the interpreter with it. None: an engine that already runs (attached, tests).
        self._starter = starter
        self.engine_starting: Future[Any] | None = None
        self.start_error: str | None = None
        self.tabs_ready = asyncio.Event()  # every tab's view mounted (_mount_later)
        self._later_lock = asyncio.Lock()
        self._mounting_later = False
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
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            # The tab underline slides for 0.3 s at 60 frames a second: repaints that compete with the keys
            # at fleet scale and cost bandwidth over SSH. TEXTUAL_ANIMATIONS=full brings it back.
            self.animation_level = "none"
        wanted = os.environ.get("ISPVM_THEME") or ("ansi" if terminal_has_16_colours(os.environ) else None)
        theme = pick_theme(wanted, self.available_themes)
        if theme:
            self.theme = theme
        if self.no_color:
            # Textual only greys colours out (Monochrome) unless the theme is ANSI: NO_COLOR means none at all.
            # States stay readable: every one is a symbol and a word; the cursor is reverse video (app.tcss).
            self._filters[:] = [NoColor() if isinstance(f, Monochrome) else f for f in self._filters]

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
        self._last_refresh = 0.0  # monotonic: event bursts are applied at most every _refresh_gap
        self._refresh_gap = REFRESH_GAP_S
        self._apply_s = 0.0  # how long the last snapshot took to apply
        self._refresh_asked = 0.0  # monotonic: when the pending refresh was asked for
        self._last_key = 0.0  # monotonic: the last key press
        self._gc_settled = False
        self._stale_tabs: set[str] = set()  # main-screen views hidden since a snapshot they have not seen
        self.frozen_at: float | None = None  # wall clock when F froze the views
        self.events_held = 0  # events that arrived while frozen
        self.command_history: list[str] = []
        self.command_message: Text | None = None  # the last command's outcome, in the status line

    # -- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # Home and Incidents (whose rows the status line counts) are drawn with the first snapshot; the other
        # tabs' views are built now and mounted once that is on screen (_mount_later): their tables' styles
        # were a third of the console's start-up (~0.25 s at 160x48 on a 2-core host).
        self.topology_pane = TopologyPane(self.host)
        self.deliveries_pane = DeliveriesPane(readonly=self.readonly)
        self.changes_pane = ChangesPane(self.engine, actor=self.actor, readonly=self.readonly)
        self.devices_pane = DevicesPane()
        self._later = {"tab-topology": self.topology_pane, "tab-deliveries": self.deliveries_pane,
                       "tab-changes": self.changes_pane, "tab-devices": self.devices_pane}
        yield Header()
        with TabbedContent(initial="tab-home", id="tabs"):
            with TabPane("1 Home", id="tab-home"):
                yield HomePane()
            with TabPane("2 Incidents", id="tab-incidents"):
                yield IncidentsPane()
            yield TabPane("3 Topology", id="tab-topology")
            yield TabPane("4 Deliveries", id="tab-deliveries")
            yield TabPane("5 Changes", id="tab-changes")
            yield TabPane("6 Devices", id="tab-devices")
        yield StatusLine(Text("Synchronizing…", style="italic"), id="status")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        # Keep references: app.query_one() searches the current screen, which may be a pushed one.
        self.home_pane = self.query_one(HomePane)
        self.incidents_pane = self.query_one(IncidentsPane)
        self.status_line = self.query_one("#status", Static)
        self.main_screen = self.screen
        self.home_pane.query_one("#home-incidents", DataTable).focus()
        self.screen_change_signal.subscribe(self, self._screen_changed)
        self.update_breadcrumbs()
        try:
            self._unsubscribe = self.engine.subscribe(self._on_engine_event)
        except Exception as exc:
            self.notify(f"Live updates unavailable, polling only: {exc}", severity="warning")
        self.set_interval(self.refresh_s, self._interval_refresh)
        self.set_interval(self.deliveries_refresh_s, self._deliveries_tick)
        # First snapshot after the first paint, so "Synchronizing…" is what shows until then.
        self.call_after_refresh(self.refresh_snapshot)
        # In case the first snapshot never makes it to the screen (the engine cannot answer).
        self.set_timer(AFTER_FIRST_PAINT_LATEST_S, self._after_first_paint)

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
        """Take a snapshot and push it to every view; cheap when nothing changed. Frozen: nothing."""
        self._refresh_pending = False
        if self.frozen_at is not None:
            self._update_status()
            return
        started = self._last_refresh = time.monotonic()
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
            first = self.snapshot is None
            self.snapshot = snapshot
            try:
                with self.batch_update():
                    if self.changes_pane.is_mounted:
                        self.changes_pane.apply_snapshot(snapshot)
                    # Only what is seen: a view hidden behind another tab or a pushed screen is marked
                    # stale and catches up when it is shown again (_catch_up). At 1,000 devices a topology
                    # or devices tab under a detail screen cost 50-150 ms a snapshot for nothing.
                    seen = self._seen_panes()
                    for name, pane in self._main_panes().items():
                        if name in seen and pane.is_mounted:
                            self._stale_tabs.discard(name)
                            pane.apply_snapshot(snapshot)
                        else:
                            self._stale_tabs.add(name)
                    for screen in self.screen_stack:
                        if isinstance(screen, IncidentDetailScreen):
                            screen.apply_snapshot(snapshot)
            except NoMatches:
                # Closing: the panes can still be attached while their children are already removed.
                if self._exit or not self.is_running:
                    return
                raise
            if not self._gc_settled:
                self._gc_settled = True
                self.call_after_refresh(settle_gc)
            if first:
                self.call_after_refresh(self._after_first_paint)
            # A slow apply (a big network, every state changing) spaces the next ones out.
            if not first:  # the first fills every table from empty: no measure of the ones to come
                self._apply_s = time.monotonic() - started
                self._refresh_gap = max(REFRESH_GAP_S, REFRESH_GAP_FACTOR * self._apply_s)
        self._update_status()

    def _after_first_paint(self) -> None:
        """Once: the views of the other tabs are mounted, and the engine started when this console starts it."""
        if self._later and not self._mounting_later:
            self._mounting_later = True
            self.run_worker(self._mount_later(), group="mount-later")
        starter, self._starter = self._starter, None
        if starter is None:
            return
        try:
            self.engine_starting = starting = starter()
        except Exception as exc:  # the engine's loop is gone: nothing will poll, so say so and close
            self.post_message(EngineStartFailed(str(exc) or type(exc).__name__))
            return

        def started(fut: Future[Any]) -> None:  # on the engine's thread: only a message crosses over
            if not fut.cancelled() and fut.exception() is not None:
                self.post_message(EngineStartFailed(str(fut.exception()) or type(fut.exception()).__name__))

        starting.add_done_callback(started)

    async def _mount_later(self) -> None:
        async with self._later_lock:  # the worker and a key can both ask; the second finds it done
            if not self._later:
                return
            for tab_id, pane in list(self._later.items()):
                await self.main_screen.query_one(f"#{tab_id}", TabPane).mount(pane)
            self._later.clear()
        self.tabs_ready.set()
        self._stale_tabs |= {"topology", "devices"}  # they have seen no snapshot yet
        try:
            if self.snapshot is not None and self.frozen_at is None:
                self.changes_pane.apply_snapshot(self.snapshot)
            self._catch_up()
            active = self._active_tab()
            if f"tab-{active}" in LATER_TABS and self.screen is self.main_screen:  # shown before it was there
                self._focus_tab(active)
                if active == "deliveries":
                    self.refresh_deliveries()
                elif active == "changes":
                    self.changes_pane.refresh_lists()
        except NoMatches:
            if self._exit or not self.is_running:
                return  # the console closed while they were mounted: their children are being removed
            raise

    def on_engine_start_failed(self, message: EngineStartFailed) -> None:
        self.start_error = message.error
        self.exit(return_code=1)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):
            self._last_key = time.monotonic()
        await super().on_event(event)

    def _interval_refresh(self) -> None:
        if not self._refresh_pending:  # one already waits (for a gap or for the keys): it will do
            self._refresh_asked = time.monotonic()
            self._keys_first_refresh()

    def _keys_first_refresh(self) -> None:
        """A refresh nobody pressed a key for: it lets keys go first when it would slow them down."""
        now = time.monotonic()
        quiet_for = now - self._last_key
        if (self._apply_s > KEYS_FIRST_ABOVE_S and quiet_for < KEYS_FIRST_S
                and now - self._refresh_asked < KEYS_FIRST_MAX_S):
            self._refresh_pending = True
            self.set_timer(KEYS_FIRST_S - quiet_for, self._keys_first_refresh)
            return
        self.refresh_snapshot()

    def _main_panes(self) -> dict[str, HomePane | IncidentsPane | TopologyPane | DevicesPane]:
        return {"home": self.home_pane, "incidents": self.incidents_pane, "topology": self.topology_pane,
                "devices": self.devices_pane}

    def main_covered(self) -> bool:
        """A full screen (a detail, the help) is over the main one: none of its views can be seen."""
        stack = self.screen_stack
        main = getattr(self, "main_screen", None)
        if main not in stack:
            return False
        return any(not isinstance(screen, ModalScreen) for screen in stack[stack.index(main) + 1:])

    def _seen_panes(self) -> set[str]:
        if self.main_covered():
            return set()
        # Incidents always: the status line counts its rows.
        return {"incidents", self._active_tab()}

    def _catch_up(self) -> None:
        """The views now seen that missed snapshots while hidden get the current one."""
        # Frozen too: self.snapshot is then the one taken before the freeze, which the rest shows.
        if self.snapshot is None or not self._stale_tabs:
            return
        stale = self._seen_panes() & self._stale_tabs
        if not stale:
            return
        panes = self._main_panes()
        stale = {name for name in stale if panes[name].is_mounted}  # the others catch up once mounted
        self._stale_tabs -= stale
        with self.batch_update():
            for name in stale:
                panes[name].apply_snapshot(self.snapshot)
        self._update_status()

    def request_refresh(self) -> None:
        """Coalesce bursts of events into one snapshot after the queued messages, at most one a gap:
        keys are answered between two snapshots even while events pour in."""
        if self._refresh_pending:
            return
        self._refresh_pending = True
        self._refresh_asked = time.monotonic()
        wait = self._last_refresh + self._refresh_gap - self._refresh_asked
        if wait > 0:
            self.set_timer(wait, self._keys_first_refresh)
        else:
            self.call_later(self._keys_first_refresh)

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
        if self.frozen_at is not None:
            self.events_held += 1  # no toast, no refresh: the screen stays as it was frozen
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
        return (main is not None and self.screen is main and self.devices_pane.is_mounted
                and main.query_one("#tabs", TabbedContent).active == "tab-devices")

    def topology_shown(self) -> bool:
        main = getattr(self, "main_screen", None)
        return (main is not None and self.screen is main and self.topology_pane.is_mounted
                and main.query_one("#tabs", TabbedContent).active == "tab-topology")

    def _changes_tab_on(self, screen: Screen) -> bool:
        main = getattr(self, "main_screen", None)
        return (main is not None and screen is main and self.changes_pane.is_mounted
                and main.query_one("#tabs", TabbedContent).active == "tab-changes")

    def _deliveries_tab_on(self, screen: Screen) -> bool:
        main = getattr(self, "main_screen", None)
        return (main is not None and screen is main and self.deliveries_pane.is_mounted
                and main.query_one("#tabs", TabbedContent).active == "tab-deliveries")

    def _deliveries_tick(self) -> None:
        self.deliveries_ticks += 1
        if self.deliveries_shown() and self.frozen_at is None:
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

    def status_text(self, compact: bool = False) -> Text:
        """The status line; ``compact`` (what fits one line of 80 columns): the severities with incidents
        open only, as symbol and count (Home spells them out), no "snapshot" or "filter: none"."""
        snapshot = self.snapshot
        text = Text()
        if self.frozen_at is not None:
            held = f", {self.events_held} event{'s' if self.events_held != 1 else ''} held" if self.events_held else ""
            since = time.strftime("%H:%M:%S", time.localtime(self.frozen_at))
            text.append(f" FROZEN since {since}{held} · F resumes ", style="reverse bold")
            text.append("  ")
        if self.command_message is not None:
            text.append_text(self.command_message).append("  ")
        if snapshot is None:
            text.append("Synchronizing…  ", style="bold italic")
        else:
            taken = time.strftime("%H:%M:%S", time.localtime(snapshot.taken_at))
            text.append(f"{taken}  " if compact else f"snapshot {taken}  ")
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
                if compact and counts[severity]:
                    text.append(f" {symbol}{counts[severity]}", style=style)
                elif not compact:
                    text.append(f" {symbol} {word} {counts[severity]}", style=style if counts[severity] else "dim")
            if compact and not any(counts.values()):
                text.append(" none", style="dim")
            text.append("  ")
        pane = getattr(self, "incidents_pane", None)
        if self.devices_shown():
            pane = self.devices_pane
        if pane is not None and pane.filter_text:
            text.append(f"filter “{pane.filter_text}” {pane.shown}/{pane.total}  ", style="bold")
        elif not compact:
            text.append("filter: none  ", style="dim")
        if self._snapshot_error:
            text.append(f"⚠ snapshot failed ×{self.snapshot_failures}: {self._snapshot_error}  ", style="bold red")
        if self.readonly:
            text.append("READ-ONLY", style="bold")
        return text

    def _update_status(self) -> None:
        status = getattr(self, "status_line", None)
        if status is not None:
            text = self.status_text()
            if text.cell_len > (status.size.width or self.size.width):  # two lines took a row from the tables
                text = self.status_text(compact=True)
            status.update(text)

    @on(Input.Changed, "#filter, #devices-filter")
    def _filter_changed(self) -> None:
        self._update_status()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Hide keys that mean nothing on the screen on top (keeps the footer honest).
        screen = self.screen
        if isinstance(screen, ConfirmScreen):
            return action in ("go_back", "quit_or_back")  # both leave the question unanswered
        if isinstance(screen, CommandLineScreen):
            return action not in self._console_actions  # keys are typed into the line
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
        if self._later:
            # A key in the first moments: its view is mounted now (awaiting the event instead would hold
            # the app's queue, which the first paint's callbacks need to get there).
            await self._mount_later()
        await self._back_to_main()
        self.main_screen.query_one("#tabs", TabbedContent).active = f"tab-{tab}"
        # Focused now, not after the next paint: a table that gains focus after it was drawn is drawn
        # again (its line cache is keyed on focus), ~40 lines of a 1,000-row table twice per switch.
        widget = self._tab_widget(tab)
        if widget is not None and self.screen is self.main_screen:
            self.main_screen.set_focus(widget)
        self._focus_tab(tab)

    @on(TabbedContent.TabActivated, "#tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = (event.pane.id or "").removeprefix("tab-")
        self._catch_up()
        if not self.tabs_ready.is_set() and event.pane.id in LATER_TABS:
            self.update_breadcrumbs()
            return  # clicked before its view was mounted: _mount_later focuses and fills it
        self._focus_tab(tab)
        self.update_breadcrumbs()
        if self.frozen_at is not None:
            return  # frozen: a tab shows what it had
        if tab == "deliveries":
            self.refresh_deliveries()
        if tab == "changes":
            self.changes_pane.refresh_lists()

    def _tab_widget(self, tab: str) -> Widget | None:
        """The list that takes the keys on ``tab``."""
        selector = TAB_FOCUS.get(tab)
        return None if selector is None else self.main_screen.query_one(selector)

    def _focus_tab(self, tab: str) -> None:
        selector = TAB_FOCUS.get(tab)
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
        view = self.current_view()
        here, everywhere, elsewhere = keys_for_view(view, self.readonly)
        await self.push_screen(HelpScreen(self.actions, readonly=self.readonly, here=here,
                                          here_title=VIEW_TITLES.get(view, view.title()),
                                          everywhere=everywhere, elsewhere=elsewhere))

    async def action_quit_or_back(self) -> None:
        if len(self.screen_stack) > 1:
            await self.pop_screen()
        else:
            self.exit()

    # -- where the user is: the view, the breadcrumbs ---------------------------------------------------

    def _active_tab(self) -> str:
        return self.main_screen.query_one("#tabs", TabbedContent).active.removeprefix("tab-")

    def current_view(self) -> str:
        """The tab or screen the keys act on: the topmost screen that is not a prompt or the help."""
        main = getattr(self, "main_screen", None)
        screen = next((s for s in reversed(self.screen_stack)
                       if not isinstance(s, ModalScreen | HelpScreen)), main)
        if main is None or screen is main:
            return self._active_tab() if main is not None else "home"
        if isinstance(screen, IncidentDetailScreen):
            return "incident"
        if isinstance(screen, DeviceDetailScreen):
            return "device"
        return type(screen).__name__.removesuffix("Screen").lower()

    @staticmethod
    def crumb_of(screen: Screen) -> str:
        """A pushed screen's step in the path; a screen may name it with a ``breadcrumb`` attribute."""
        crumb = getattr(screen, "breadcrumb", None)
        if isinstance(crumb, str):
            return crumb
        if isinstance(screen, IncidentDetailScreen):
            short = short_id(screen.incident_id)
            return short if short == screen.incident_id else short + "…"
        if isinstance(screen, DeviceDetailScreen):
            return screen.device_name
        if isinstance(screen, HelpScreen):
            return "Help"
        return type(screen).__name__.removesuffix("Screen")

    def breadcrumbs(self) -> list[str]:
        """``["ispvm", "Incidents", "3f2a1c9e…"]``: the tab, then every screen pushed over it (not prompts)."""
        main = getattr(self, "main_screen", None)
        if main is None:
            return [self.title]
        tab = self._active_tab()
        parts = [self.title, VIEW_TITLES.get(tab, tab.title())]
        parts += [self.crumb_of(s) for s in self.screen_stack[1:] if not isinstance(s, ModalScreen)]
        return parts

    def update_breadcrumbs(self) -> None:
        """Each screen's header shows the path up to it (Textual's Header reads ``screen.title``)."""
        main = getattr(self, "main_screen", None)
        if main is None:
            return
        path = self.breadcrumbs()
        frozen = "  [FROZEN]" if self.frozen_at is not None else ""
        depth = 2
        for screen in self.screen_stack:
            if screen is not main:
                if isinstance(screen, ModalScreen):
                    continue
                depth += 1
            screen.title = " › ".join(path[:depth]) + frozen

    def _screen_changed(self, screen: Screen) -> None:
        self.update_breadcrumbs()
        if getattr(self, "main_screen", None) is not None:
            self._catch_up()  # back on the main screen: what it shows missed the snapshots meanwhile

    # -- freeze -----------------------------------------------------------------------------------

    def action_toggle_freeze(self) -> None:
        """Frozen, snapshots and events are not applied (the engine goes on); thawed, the latest shows at once."""
        if self.frozen_at is None:
            self.frozen_at = time.time()
            self.events_held = 0
        else:
            self.frozen_at = None
            self.events_held = 0
            self.refresh_snapshot()
            if self.deliveries_shown():
                self.refresh_deliveries()
            if self.changes_shown():
                self.changes_pane.refresh_lists()
        self.update_breadcrumbs()
        self._update_status()

    # -- the `:` command line ---------------------------------------------------------------------

    def command_context(self) -> CommandContext:
        """The names arguments are checked and completed against; rebuilt only when the snapshot changes."""
        snapshot = self.snapshot
        windows = tuple(w.id for w in self.changes_pane.windows or ()) if hasattr(self, "changes_pane") else ()
        key = (id(snapshot), windows)
        cached = getattr(self, "_command_context", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        context = CommandContext(
            devices=tuple(d.name for d in snapshot.devices) if snapshot else (),
            sites=tuple(s.name for s in snapshot.sites) if snapshot else (),
            incidents=tuple(i.id for i in snapshot.incidents) if snapshot else (),
            windows=windows,
            readonly=self.readonly,
        )
        self._command_context = (key, context)
        return context

    async def action_command_line(self) -> None:
        if not isinstance(self.screen, CommandLineScreen):
            # Awaited: the keys typed right after `:` go to the line, not to the screen below.
            await self.push_screen(CommandLineScreen(self.command_context, self.command_history),
                                   callback=self._command_entered)

    def _command_entered(self, line: str | None) -> None:
        if line:
            self.call_next(self.run_command, line)

    def command_said(self, message: str, *, error: bool = False) -> None:
        """A command's outcome in the status line (a toast too when the status line is covered)."""
        self.command_message = Text(("⚠ " if error else "") + message, style="bold red" if error else "bold")
        self._update_status()
        if self.screen is not getattr(self, "main_screen", self.screen):
            self.notify(message, severity="error" if error else "information")

    async def run_command(self, line: str) -> bool:
        """Parse and run one command line; False (and a message) when it could not be run."""
        try:
            command = parse_command(line, self.command_context())
        except CommandError as exc:
            self.command_said(str(exc), error=True)
            return False
        self.command_message = None
        await self._execute(command)
        self._update_status()
        return True

    async def _execute(self, command: Command) -> None:
        kind = command.kind
        if kind == "tab":
            await self.action_show_tab(command.value)
            if command.filter is not None:
                self._set_filter(command.value, command.filter)
        elif kind == "device":
            await self.action_show_tab("devices")
            self._set_filter("devices", command.filter or "")
            self.open_device(command.value)
        elif kind == "topology":
            await self.action_show_tab("topology")
            if command.value and not self._topology_cursor_to(command.value):
                self.command_said(f"{command.value} is not in the topology yet", error=True)
        elif kind == "incident":
            await self._back_to_main()
            self.open_incident(command.value)
        elif kind in ("ack", "close"):
            self._act_on_incident(kind, command.value)
        elif kind in ("maint_add", "maint_cancel"):
            self.run_worker(self._maintenance(command), group="command", exit_on_error=False)
        elif kind == "help":
            if not isinstance(self.screen, HelpScreen):
                await self.action_help()
        elif kind == "freeze":
            self.action_toggle_freeze()
        elif kind == "audit":
            from ispvm_tui.screens.audit import AuditScreen

            if not isinstance(self.screen, AuditScreen):
                await self.push_screen(AuditScreen(self.engine))
        elif kind == "quit":
            self.exit()

    def _set_filter(self, tab: str, text: str) -> None:
        pane = self.devices_pane if tab == "devices" else self.incidents_pane
        if not text:
            pane.clear_filter()
            return
        filter_input = pane.query_one(Input)
        filter_input.display = True
        filter_input.value = text  # the pane's Input.Changed handler applies it, as if typed
        self._focus_tab(tab)

    def _topology_cursor_to(self, device: str) -> bool:
        tree = self.topology_pane.query_one("#topology-tree", Tree)
        pending = [tree.root]
        while pending:
            node = pending.pop()
            if node.data == ("device", device):
                parent = node.parent
                while parent is not None:
                    parent.expand()
                    parent = parent.parent
                self.call_after_refresh(tree.move_cursor, node)
                return True
            pending.extend(node.children)
        return False

    def _act_on_incident(self, kind: str, incident_id: str) -> None:
        incident = self.snapshot.incident(incident_id) if self.snapshot else None
        if incident is None:
            self.command_said(f"no incident {incident_id!r} in the current snapshot", error=True)
        elif kind == "ack" and incident.status != "open":
            by = f" by {incident.acked_by}" if incident.acked_by else ""
            self.command_said(f"{incident.title} is already {incident.status}{by}", error=True)
        elif kind == "close" and incident.status == "closed":
            self.command_said(f"{incident.title} is already closed", error=True)
        elif kind == "ack":
            if incident.id not in self._acking:
                self._acking.add(incident.id)
                self.run_worker(self._acknowledge(incident), group="acknowledge", exit_on_error=False)
        else:
            self.run_worker(self._close(incident), group="close", exit_on_error=False)

    async def _maintenance(self, command: Command) -> None:
        try:
            if command.kind == "maint_add":
                window = await asyncio.wrap_future(self.engine.maintenance_add(command.fields, self.actor))
                until = time.strftime("%H:%M", time.localtime(window.ends_at)) if window.ends_at else "?"
                message = f"Added {window.id} “{window.name}” until {until}"
            else:
                window = await asyncio.wrap_future(self.engine.maintenance_cancel(command.value, self.actor))
                message = f"Canceled {window.id} “{window.name}”"
        except Exception as exc:
            self.command_said(f"maint: {error_text(exc)}", error=True)
            return
        self.command_said(message)
        if self.changes_pane.is_attached:
            self.changes_pane.refresh_lists()
