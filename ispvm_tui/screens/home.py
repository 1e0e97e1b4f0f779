"""Home view: what is broken right now, at a glance."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, Static

from ispvm_tui.engine.api import SEVERITY_ORDER, IncidentView, Snapshot
from ispvm_tui.screens.columns import Column, FittedColumns
from ispvm_tui.screens.incidents import title_cell
from ispvm_tui.screens.table import ConsoleTable
from ispvm_tui.screens.widgets import (
    SEVERITY_STYLE,
    STATE_RANK,
    STATE_STYLE,
    age,
    root_cause_summary,
    severity_text,
    state_text,
    status_text,
    subscribers,
    sync_table,
)

LATEST_LIMIT = 8
DOWN_LIST_LIMIT = 5
# Below these the pane drops borders and margins, and the topology box (its own tab has it all), so that at
# 80x24 the open incidents and the sites' and services' rows are on screen together.
SHORT_HEIGHT = 24
NARROW_WIDTH = 100
LATEST_COLUMNS = (  # the title takes what the others leave: nothing scrolls off at 80 columns
    Column("Severity", "sev", 8),
    Column("Status", "status", 9),
    Column("Title", "title", 0),
    Column("Root cause", "cause", 20),
    Column("Opened", "opened", 10),
)


def severity_summary(snapshot: Snapshot | None) -> Text:
    if snapshot is None:
        return Text("Synchronizing… waiting for the engine", style="dim")
    counts = snapshot.severity_counts()
    text = Text("Open incidents  ", style="bold")
    for severity in SEVERITY_ORDER:
        symbol, word, style = SEVERITY_STYLE[severity]
        count = counts[severity]
        text.append(f"{symbol} {word} {count}", style=style if count else "dim")
        text.append("  ")  # two spaces: with "total" the line fits 80 columns
    total = sum(counts.values())
    text.append(f"total {total}" if total else "total 0 — all clear", style="bold" if total else "green")
    noise = snapshot.noise
    if noise.alerts_raised:
        text.append(f"\nNoise  {noise.alerts_raised} alerts raised · {noise.alerts_suppressed} suppressed · "
                    f"{noise.incidents} incidents", style="dim")
    if snapshot.polls_total == 0:
        text.append("\nSynchronizing… waiting for the first poll results", style="italic")
    return text


def collectors_line(snapshot: Snapshot) -> Text:
    """What polls and how well it keeps up: one line, this host's poller first, then each remote collector."""
    text = Text()
    if not snapshot.collectors:
        return text
    text.append("Pollers  ", style="bold")
    now = snapshot.taken_at
    for n, c in enumerate(snapshot.collectors):
        if n:
            text.append("  ·  ", style="dim")
        symbol, style = STATE_STYLE.get(c.state, ("?", "dim"))
        text.append(f"{symbol} {c.name} ", style=style)
        text.append(f"{c.devices} dev {age(c.last_poll_at, now)}")  # local: the last poll; remote: heartbeat
        if c.failing:
            text.append(f", {c.failing} not answering", style="yellow")
        if c.lag_s is not None and c.lag_s >= 1:
            text.append(f", {c.lag_s:.0f}s behind", style="bold yellow")
        if c.storm:
            text.append(", storm: checking each router before polling it", style="bold yellow")
    return text


def status_rows(snapshot: Snapshot) -> list[tuple[str, tuple[str | Text, ...]]]:
    """Sites and services together, worst first (down ones lead whatever their kind): name, kind, state (and
    the maintenance window over it), down of how many, subscribers."""
    def state_cell(state: str, maintenance: str | None) -> Text:
        text = state_text(state)
        if maintenance:
            text.append(" ⚒ maint", style="cyan")
        return text

    ranked = [((STATE_RANK.get(s.state, 9), 0, s.name), f"site:{s.name}",
               (s.name, "site", state_cell(s.state, s.maintenance), f"{s.devices_down}/{s.devices}",
                subscribers(s.subscribers))) for s in snapshot.sites]
    ranked += [((STATE_RANK.get(v.state, 9), 1, v.name), f"service:{v.name}",
                (v.name, "service", state_cell(v.state, v.maintenance), f"{v.down}/{v.depends_on}",
                 subscribers(v.subscribers))) for v in snapshot.services]
    return [(key, cells) for _, key, cells in sorted(ranked, key=lambda r: r[0])]


def latest_incidents(snapshot: Snapshot, limit: int = LATEST_LIMIT) -> list[IncidentView]:
    """Newest unresolved first, then the most recently closed to fill the pane."""
    live = sorted((i for i in snapshot.incidents if i.status != "closed"), key=lambda i: -i.opened_at)
    closed = sorted(
        (i for i in snapshot.incidents if i.status == "closed"), key=lambda i: -(i.closed_at or i.opened_at)
    )
    return (live + closed)[:limit]


def topology_summary(snapshot: Snapshot) -> Text:
    text = Text()
    for label, items in (("Devices", snapshot.devices), ("Links", snapshot.links)):
        text.append(f"{label} {len(items)}: ", style="bold")
        for state in ("down", "degraded", "unknown", "up"):
            n = sum(1 for item in items if item.state == state)
            if n:
                symbol, style = STATE_STYLE[state]
                text.append(f"{symbol} {n} {state}  ", style=style)
        text.append("\n")
    down_devices = [d.name for d in snapshot.devices if d.state == "down"]
    down_links = [f"{link.a} ↔ {link.b}" for link in snapshot.links if link.state == "down"]
    for label, names in (("Down devices", down_devices), ("Down links", down_links)):
        if not names:
            continue
        text.append(f"{label}:\n", style="bold")
        for name in names[:DOWN_LIST_LIMIT]:
            text.append("  ✖ ", style="bold red").append(f"{name}\n")
        if len(names) > DOWN_LIST_LIMIT:
            text.append(f"  … {len(names) - DOWN_LIST_LIMIT} more (3: topology)\n", style="dim")
    if not down_devices and not down_links and snapshot.devices:
        text.append("✔ nothing down", style="green")
    return text


class HomePane(Vertical):
    """Counts by severity, sites, latest incidents and a compact topology."""

    def __init__(self) -> None:
        super().__init__(id="home-pane")
        self._last: Snapshot | None = None
        self._severity = severity_summary(None)
        self._topology: Text | None = None
        self._latest = FittedColumns(LATEST_COLUMNS)

    def compose(self) -> ComposeResult:
        # Incidents first: on an 80x24 terminal they must be on screen without scrolling; sites and the
        # topology take what is left.
        yield Static(self._severity, id="home-severity")
        yield Label("Latest incidents  (enter: open · a: acknowledge)", classes="pane-title")
        yield ConsoleTable(id="home-incidents", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="home-middle"):
            with Vertical(id="home-sites-box"):
                yield Label("Sites and services", classes="pane-title")
                yield ConsoleTable(id="sites-table", cursor_type="row", zebra_stripes=True)
            with Vertical(id="home-topology-box"):
                yield Label("Topology", classes="pane-title")
                yield Static(Text("Synchronizing…", style="dim"), id="home-topology")

    def on_mount(self) -> None:
        sites = self.query_one("#sites-table", DataTable)
        for label, key, width in (
            ("Name", "name", 26),
            ("Kind", "kind", 7),
            ("State", "state", 18),
            ("Down", "down", 5),
            ("Subscribers", "subs", 11),
        ):
            sites.add_column(label, key=key, width=width)
        self._latest.fit(self.query_one("#home-incidents", DataTable), self.content_size.width or 80)

    def on_resize(self) -> None:
        # No media queries in Textual CSS: a short or narrow terminal gets a class, app.tcss does the rest.
        self.set_class(self.size.height < SHORT_HEIGHT, "-short")
        self.set_class(self.size.width < NARROW_WIDTH, "-narrow")
        if self._latest.fit(self.query_one("#home-incidents", DataTable), self.content_size.width) and self._last:
            self._render_latest(self._last)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        last, self._last = self._last, snapshot
        severity = severity_summary(snapshot)
        pollers = collectors_line(snapshot)
        if pollers:
            severity.append("\n").append_text(pollers)
        if severity != self._severity:
            self._severity = severity
            self.query_one("#home-severity", Static).update(severity)
        if last is None or last.sites != snapshot.sites or last.services != snapshot.services:
            sync_table(self.query_one("#sites-table", DataTable), status_rows(snapshot))
        topology = topology_summary(snapshot)
        if topology != self._topology:
            self._topology = topology
            self.query_one("#home-topology", Static).update(topology)
        self._render_latest(snapshot)

    def _render_latest(self, snapshot: Snapshot) -> None:
        now, table, columns = snapshot.taken_at, self.query_one("#home-incidents", DataTable), self._latest
        sync_table(table, [(i.id, columns.cells({"sev": severity_text(i.severity), "status": status_text(i.status),
                                                  "title": title_cell(i), "cause": root_cause_summary(i.root_causes),
                                                  "opened": age(i.opened_at, now)}))
                           for i in latest_incidents(snapshot)])
        columns.reselect(table)
