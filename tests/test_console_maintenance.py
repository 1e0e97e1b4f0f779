"""Planned work reads as planned work in the incident list."""

from __future__ import annotations

from dataclasses import replace

from ispvm_tui.screens.incidents import incident_cells
from tests.test_console import NOW, build_snapshot


def test_an_incident_held_back_by_a_window_says_maint_in_its_title() -> None:
    incident = build_snapshot().incidents[0]
    plain = incident_cells(incident, NOW)["title"]
    assert str(plain) == incident.title
    marked = incident_cells(replace(incident, labels={**incident.labels, "maintenance": "POP-A works"}), NOW)["title"]
    assert str(marked) == f"⚒ maint {incident.title}"
