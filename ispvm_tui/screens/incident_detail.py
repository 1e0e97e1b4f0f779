"""One incident in full: why the engine thinks what it thinks."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from ispvm_tui.engine.api import AlertView, IncidentView, Snapshot
from ispvm_tui.screens.widgets import age, severity_text, status_text, subscribers

LIST_LIMIT = 20


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


class IncidentDetailScreen(Screen[None]):
    """Pushed over the main view; q/esc go back (app-level actions)."""

    BINDINGS = [("g", "diagnostics", "Diagnose")]  # ping / traceroute (screens/diagnostics.py)

    def __init__(self, incident_id: str, *, readonly: bool = False) -> None:
        super().__init__(id="incident-detail-screen")
        self.incident_id = incident_id
        self.readonly = readonly
        self._incident: IncidentView | None = None
        self._rendered: Text | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="incident-detail-scroll"):
            yield Static(Text("Synchronizing…", style="dim"), id="incident-detail")
        yield Footer()

    def on_mount(self) -> None:
        snapshot = getattr(self.app, "snapshot", None)
        if isinstance(snapshot, Snapshot):
            self.apply_snapshot(snapshot)

    def action_diagnostics(self) -> None:
        from ispvm_tui.screens.diagnostics import open_diagnostics

        open_diagnostics(self.app, incident_id=self.incident_id)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action == "diagnostics" and self.readonly)  # it sends traffic: hidden when read-only

    @property
    def incident(self) -> IncidentView | None:
        return self._incident

    def apply_snapshot(self, snapshot: Snapshot) -> None:
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
