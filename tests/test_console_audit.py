"""The console's `:audit` screen on the real engine polling the lab: the lab routers' hardening findings and
the audit log's newest entries (an acknowledgement made in this console among them), read through the
engine, closed with esc."""

from __future__ import annotations

import time

from textual.widgets import DataTable

from ispvm_tui.app import IspvmApp
from ispvm_tui.screens.audit import AuditScreen
from tests.test_console_command_line import ACTOR, cut, synced, type_command  # noqa: F401 (the fixture)
from tests.test_console_deliveries import until


def _cells(table: DataTable, column: int) -> list[str]:
    return [str(table.get_row_at(i)[column]) for i in range(table.row_count)]


async def test_audit_screen_shows_findings_and_the_log(cut) -> None:  # noqa: F811
    incident = cut.engine.snapshot().incidents[0].id
    cut.loop.run(cut.engine.ack(incident, ACTOR), timeout=30)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not cut.engine.hardening_findings().result(30):
        time.sleep(0.5)  # until the routers' configuration has been read once
    app = IspvmApp(cut.engine, actor=ACTOR)
    async with app.run_test(size=(80, 24)) as pilot:
        await synced(pilot)
        await type_command(pilot, "audit")
        await until(pilot, lambda: isinstance(app.screen, AuditScreen))
        screen = app.screen
        assert isinstance(screen, AuditScreen)
        await until(pilot, lambda: screen.loaded.is_set(), timeout=30)
        assert screen.error is None
        findings = screen.query_one("#audit-findings", DataTable)
        assert "API without TLS" in _cells(findings, 2) and "CORE1" in _cells(findings, 1)
        log = screen.query_one("#audit-log", DataTable)
        assert any(a == "incident.ack" for a in _cells(log, 3)) and ACTOR in _cells(log, 2)
        assert app.breadcrumbs()[-1] != "Home"
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main_screen)
