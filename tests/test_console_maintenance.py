"""Planned work reads as planned work in the incident lists (Incidents and Home)."""

from __future__ import annotations

from dataclasses import replace

from textual.widgets import DataTable

from ispvm_tui.screens.incidents import incident_cells
from tests.test_console import NOW, SnapshotEngine, build_snapshot, make_app


def test_an_incident_held_back_by_a_window_says_maint_in_its_title() -> None:
    incident = build_snapshot().incidents[0]
    plain = incident_cells(incident, NOW)["title"]
    assert str(plain) == incident.title
    marked = incident_cells(replace(incident, labels={**incident.labels, "maintenance": "POP-A works"}), NOW)["title"]
    assert str(marked) == f"⚒ maint {incident.title}"


async def test_home_marks_it_too() -> None:
    snapshot = build_snapshot()
    first = snapshot.incidents[0]
    held = replace(first, labels={**first.labels, "maintenance": "POP-A works"})
    app = make_app(SnapshotEngine(replace(snapshot, incidents=(held, *snapshot.incidents[1:]))))
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#home-incidents", DataTable)
        assert str(table.get_cell(held.id, "title")) == f"⚒ maint {held.title}"
        assert str(table.get_cell(snapshot.incidents[1].id, "title")) == snapshot.incidents[1].title
