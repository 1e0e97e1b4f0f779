"""Ping or traceroute from a chosen router, its lines streamed into a log as the engine sends them.

Opened with ``g`` from an incident (router: the root device if it answers,
else the nearest answering device on the way from it to the console's attach
point; target: the root device's address) or from a device's detail (router:
that device; target: the attach point's address). The router is typed, and
the devices matching what is typed are listed under it. Lines arrive as
``diagnostic.output`` engine events, which the app hands to this screen
(``diagnostic_event``); esc closes the screen, and a run still going ends in
the engine on its own. A write action (it sends traffic from a router):
refused in a read-only console.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Header, Input, Log, RadioButton, RadioSet, Static

from ispvm_tui.engine.api import DeviceView, EngineAPI, EngineEvent, IncidentView, Snapshot
from ispvm_tui.screens.widgets import ConsoleFooter, error_text

EVENT = "diagnostic.output"
MATCHES_SHOWN = 8
EARLY_KEPT = 200  # events of runs whose id has not come back yet (they may overtake the answer)


def root_device(incident: IncidentView, devices: Sequence[DeviceView]) -> str | None:
    """The device an incident's first root cause names (an interface, a BGP peer: the device it is on; a
    link: the end that is not up, so the default is a ping across it)."""
    state = {d.name: d.state for d in devices}
    for cause in incident.root_causes:
        named = [c for c in (cause.entity_id, cause.name, *cause.entity_id.replace("--", ":").split(":"))
                 if c in state]
        if named:
            return next((c for c in named if state[c] != "up"), named[0])
    return None


def upstream_path(snapshot: Snapshot, start: str) -> list[str]:
    """Devices from ``start`` to the nearest attach point (``snapshot.vantage``), over the known links."""
    near: dict[str, list[str]] = {}
    for link in snapshot.links:
        a, b = link.a.split(":", 1)[0], link.b.split(":", 1)[0]
        near.setdefault(a, []).append(b)
        near.setdefault(b, []).append(a)
    came: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        if here in snapshot.vantage:
            path = [here]
            while (prev := came[path[-1]]) is not None:
                path.append(prev)
            return path[::-1]
        for there in near.get(here, []):
            if there not in came:
                came[there] = here
                queue.append(there)
    return [start]


def default_router(snapshot: Snapshot, root: str) -> str:
    """The root device when it answers, else the first answering device on its way to the attach point."""
    state = {d.name: d.state for d in snapshot.devices}
    for name in upstream_path(snapshot, root):
        if state.get(name) in ("up", "degraded"):
            return name
    return root


def defaults_for(snapshot: Snapshot | None, *, incident_id: str | None = None,
                 device: str | None = None) -> tuple[str, str]:
    """(router, target) to start with."""
    if snapshot is None:
        return device or "", ""
    by_name = {d.name: d for d in snapshot.devices}
    if device is not None:
        vantage = next((by_name[v] for v in snapshot.vantage if v in by_name and v != device), None)
        return device, vantage.address if vantage else ""
    incident = snapshot.incident(incident_id) if incident_id else None
    link_ends = far_and_near(snapshot, incident) if incident else None
    if link_ends is not None:
        # A link: ping its far end from its near end (towards the attach point), whatever states the last
        # snapshot holds (right after the cut the far end's last poll may still say up).
        far, near = link_ends
        return default_router(snapshot, near), by_name[far].address
    root = root_device(incident, snapshot.devices) if incident else None
    if root is None:
        return "", ""
    return default_router(snapshot, root), by_name[root].address


def far_and_near(snapshot: Snapshot, incident: IncidentView) -> tuple[str, str] | None:
    """When the first root cause is a link between two known devices: (far end, near end) by their distance
    to the attach point over the known links; None otherwise or when they are as far."""
    if not incident.root_causes or "--" not in incident.root_causes[0].entity_id:
        return None
    known = {d.name for d in snapshot.devices}
    ends = [part.split(":", 1)[0] for part in incident.root_causes[0].entity_id.split("--")]
    if len(ends) != 2 or not set(ends) <= known or ends[0] == ends[1]:
        return None
    a, b = (len(upstream_path(snapshot, end)) for end in ends)
    if a == b:
        return None
    return (ends[0], ends[1]) if a > b else (ends[1], ends[0])


def matching(devices: Sequence[DeviceView], typed: str) -> list[DeviceView]:
    """Devices whose name starts with (then contains) what is typed; answering ones first."""
    needle = typed.strip().lower()
    hits = [d for d in devices if needle in d.name.lower()]
    return sorted(hits, key=lambda d: (not d.name.lower().startswith(needle), d.state != "up", d.name))


def open_diagnostics(app: App[object], *, incident_id: str | None = None, device: str | None = None) -> None:
    """Push the screen (what ``g`` does), unless the console is read-only."""
    if getattr(app, "readonly", False):
        app.notify("Read-only console: diagnostics are disabled", severity="warning")
        return
    engine = getattr(app, "engine", None)
    snapshot = getattr(app, "snapshot", None)
    router, target = defaults_for(snapshot if isinstance(snapshot, Snapshot) else None, incident_id=incident_id,
                                  device=device)
    app.push_screen(DiagnosticsScreen(engine, actor=str(getattr(app, "actor", "unknown")), router=router,
                                      target=target))


class DiagnosticsScreen(Screen[None]):
    BINDINGS = [Binding("escape", "close", "Back")]
    DEFAULT_CSS = """
    DiagnosticsScreen #diag-form { height: auto; }
    DiagnosticsScreen #diag-row { height: auto; }
    DiagnosticsScreen #diag-router { width: 1fr; }
    DiagnosticsScreen #diag-target { width: 2fr; }
    DiagnosticsScreen #diag-kind { layout: horizontal; height: auto; width: auto; }
    DiagnosticsScreen #diag-matches, DiagnosticsScreen #diag-status { height: auto; padding: 0 1; }
    DiagnosticsScreen #diag-log { height: 1fr; border: round $accent; }
    """

    def __init__(self, engine: EngineAPI, *, actor: str, router: str = "", target: str = "") -> None:
        super().__init__(id="diagnostics-screen")
        self.engine = engine
        self.actor = actor
        self._router, self._target = router, target
        self.run_id: str | None = None
        self.running = False
        self.lines: list[str] = []  # what the log shows, for tests and copy-paste
        self.error: str | None = None
        self._early: dict[str, list[EngineEvent]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="diag-form"):
            with Horizontal(id="diag-row"):
                yield Input(self._router, placeholder="router (type to filter)", id="diag-router")
                yield Input(self._target, placeholder="target address or host name", id="diag-target")
                yield Button("Run", id="diag-run", variant="primary")
            yield Static("", id="diag-matches")
            with RadioSet(id="diag-kind"):
                yield RadioButton("ping", value=True, id="diag-ping")
                yield RadioButton("traceroute", id="diag-traceroute")
            yield Static("", id="diag-status")
        yield Log(id="diag-log", highlight=False)
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.sub_title = "ping / traceroute from a router"
        self._show_matches(self._router)
        self.query_one("#diag-target" if self._router else "#diag-router", Input).focus()

    @property
    def kind(self) -> str:
        return "traceroute" if self.query_one("#diag-traceroute", RadioButton).value else "ping"

    def _devices(self) -> Sequence[DeviceView]:
        snapshot = getattr(self.app, "snapshot", None)
        return snapshot.devices if isinstance(snapshot, Snapshot) else ()

    @on(Input.Changed, "#diag-router")
    def _router_typed(self, event: Input.Changed) -> None:
        self._show_matches(event.value)

    def _show_matches(self, typed: str) -> None:
        hits = matching(self._devices(), typed)
        shown = ", ".join(f"{d.name}{'' if d.state == 'up' else f' ({d.state})'}" for d in hits[:MATCHES_SHOWN])
        more = f" … +{len(hits) - MATCHES_SHOWN}" if len(hits) > MATCHES_SHOWN else ""
        self.query_one("#diag-matches", Static).update(Text(f"routers: {shown}{more}" if hits else "routers: no match",
                                                            style="dim"))

    @on(Input.Submitted, "#diag-router")
    def _router_chosen(self, event: Input.Submitted) -> None:
        hits = matching(self._devices(), event.value)
        names = {d.name for d in hits}
        if event.value not in names and hits:
            event.input.value = hits[0].name  # enter takes the first match
        self.query_one("#diag-target", Input).focus()

    @on(Input.Submitted, "#diag-target")
    @on(Button.Pressed, "#diag-run")
    def _submit(self) -> None:
        self.start()

    def start(self) -> None:
        if self.running:
            self._status("a run is still going: wait for its summary", error=True)
            return
        router = self.query_one("#diag-router", Input).value.strip()
        target = self.query_one("#diag-target", Input).value.strip()
        if not router or not target:
            self._status("a router and a target are needed", error=True)
            return
        self.running = True
        self.run_id = None
        self.run_worker(self._start(router, self.kind, target), group="diagnostic", exit_on_error=False)

    async def _start(self, router: str, kind: str, target: str) -> None:
        self._status(f"{kind} {target} from {router}: starting…")
        try:
            run_id = await asyncio.wrap_future(self.engine.run_diagnostic(router, kind, target, self.actor))
        except Exception as exc:
            self.running = False
            self.error = error_text(exc)
            self._status(self.error, error=True)
            return
        self.run_id = run_id
        self.query_one("#diag-log", Log).clear()
        self.lines = []
        for event in self._early.pop(run_id, []):
            self._take(event)
        self._early.clear()
        if self.running:
            self._status(f"{kind} {target} from {router}: running (esc: back; the run ends on its own)")

    def diagnostic_event(self, event: EngineEvent) -> None:
        """Called by the app for every ``diagnostic.output`` event; takes those of this screen's run."""
        run_id = event.data.get("run_id")
        if self.run_id is None:
            if self.running and isinstance(run_id, str):  # may come before the run id does
                early = self._early.setdefault(run_id, [])
                if len(early) < EARLY_KEPT:
                    early.append(event)
            return
        if run_id == self.run_id:
            self._take(event)

    def _take(self, event: EngineEvent) -> None:
        line = str(event.data.get("line", ""))
        if not self.is_attached:
            return
        self.lines.append(line)
        self.query_one("#diag-log", Log).write_line(line)
        if event.data.get("done"):
            self.running = False
            error = event.data.get("error")
            self.error = str(error) if error else None
            self._status(line, error=bool(error))

    def _status(self, text: str, *, error: bool = False) -> None:
        if self.is_attached:
            self.query_one("#diag-status", Static).update(Text(text, style="bold red" if error else ""))

    def action_close(self) -> None:
        self.dismiss(None)
