"""The audit screen (``:audit``): RouterOS hardening findings over the fleet, worst first, and the newest
entries of the audit log — both read through the engine (EngineAPI.hardening_findings, .audit_entries),
off the console's loop."""

from __future__ import annotations

import asyncio
from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from ispvm_tui.engine.api import AuditEntryView, EngineAPI, HardeningFindingView
from ispvm_tui.screens.widgets import ConsoleFooter, error_text

AUDIT_ENTRIES = 200
READ_TIMEOUT_S = 30.0
SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "dim"}


class AuditScreen(Screen[None]):
    BINDINGS = [Binding("escape", "close", "Back"), Binding("r", "reload", "Reload")]
    DEFAULT_CSS = """
    AuditScreen .audit-title { height: 1; padding: 0 1; text-style: bold; }
    AuditScreen #audit-findings { height: 1fr; }
    AuditScreen #audit-log { height: 1fr; }
    """

    def __init__(self, engine: EngineAPI) -> None:
        super().__init__(id="audit-screen")
        self.engine = engine
        self.findings: list[HardeningFindingView] = []
        self.entries: list[AuditEntryView] = []
        self.error: str | None = None
        self.loaded = asyncio.Event()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Router hardening: reading…", id="audit-findings-title", classes="audit-title")
        yield DataTable(id="audit-findings", cursor_type="row", zebra_stripes=True)
        yield Static("Audit log: reading…", id="audit-log-title", classes="audit-title")
        yield DataTable(id="audit-log", cursor_type="row", zebra_stripes=True)
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.sub_title = "hardening findings and the audit log"
        self.query_one("#audit-findings", DataTable).add_columns("SEVERITY", "DEVICE", "CHECK", "DETAIL")
        self.query_one("#audit-log", DataTable).add_columns("SEQ", "WHEN", "ACTOR", "ACTION", "TARGET", "DETAIL")
        self.query_one("#audit-findings", DataTable).focus()
        self.action_reload()

    def action_close(self) -> None:
        self.app.pop_screen()

    def action_reload(self) -> None:
        self.loaded.clear()
        self.run_worker(self._load(), group="audit", exclusive=True, exit_on_error=False)

    async def _load(self) -> None:
        try:
            findings, entries = await asyncio.wait_for(asyncio.gather(
                asyncio.wrap_future(self.engine.hardening_findings()),
                asyncio.wrap_future(self.engine.audit_entries(AUDIT_ENTRIES))), READ_TIMEOUT_S)
        except Exception as exc:  # an engine gone or failing: said here, never a crash
            self.error = error_text(exc)
            self.query_one("#audit-findings-title", Static).update(Text(f"cannot read: {self.error}", style="red"))
            self.loaded.set()
            return
        self.error = None
        self.findings, self.entries = list(findings), list(entries)
        table = self.query_one("#audit-findings", DataTable)
        table.clear()
        for f in self.findings:
            table.add_row(Text(f.severity, style=SEVERITY_STYLE.get(f.severity, "")), f.device, f.check, f.detail)
        devices = len({f.device for f in self.findings})
        self.query_one("#audit-findings-title", Static).update(
            f"Router hardening: {len(self.findings)} findings on {devices} devices (ispvm audit routers)")
        log = self.query_one("#audit-log", DataTable)
        log.clear()
        for e in self.entries:
            when = datetime.fromtimestamp(e.ts).astimezone().strftime("%m-%d %H:%M:%S")
            log.add_row(str(e.seq), when, e.actor, e.action, e.target or "-", " ".join((e.detail or "").split()))
        self.query_one("#audit-log-title", Static).update(
            f"Audit log: newest {len(self.entries)} entries (ispvm audit verify checks the chain)")
        self.loaded.set()
