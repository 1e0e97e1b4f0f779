"""Forms for the change calendar and maintenance windows, and what they accept as a time.

Times are typed the way an engineer says them at 3 a.m.: ``now``, ``+2h``,
``-15m``, ``02:00`` (today) or ``2026-12-08 02:00``, in the console's local
time zone, and the form shows what it understood before anything is sent.
Everything else (end after start, names in the inventory, weekly specs, time
zones) is the engine's to check: its ``ValueError`` names the field, and the
form shows it beside that field and stays open.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from ispvm_tui.engine.api import ChangeRecordView, MaintenanceView, Scope

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])", re.I)
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
_DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")
TIME_HINT = "now, +2h, -15m, 02:00 or 2026-12-08 02:00"
SCOPE_KEYS = ("sites", "devices", "tags", "services")


class FormError(ValueError):
    """A value the console itself cannot read; ``field`` is the form field's key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class When:
    """A time as the engine is sent it (``"now"`` lets the engine's own clock decide) and our reading of it."""

    value: float | str
    at: float


def parse_duration(text: str, field: str = "duration") -> float | None:
    """``2h``, ``90m``, ``1h30m``, ``1d``, ``45s`` -> seconds; empty -> None. A bare number is refused:
    minutes or seconds would be a guess."""
    spec = text.strip()
    if not spec:
        return None
    parts = _DURATION.findall(spec)
    if not parts or _DURATION.sub("", spec).strip():
        raise FormError(field, f"{text.strip()!r} is not a duration (2h, 90m, 1h30m, 1d)")
    seconds = sum(float(n) * _UNIT_S[u.lower()] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise FormError(field, "must be longer than nothing")
    return seconds


def parse_when(text: str, now: float, field: str) -> When | None:
    """A form's time, in the console's local time zone; empty -> None."""
    spec = text.strip()
    if not spec:
        return None
    if spec.lower() == "now":
        return When("now", now)
    if spec[0] in "+-":
        offset = parse_duration(spec[1:], field)
        if offset is None:
            raise FormError(field, f"{spec!r} needs a length after the sign (+2h, -15m)")
        at = now + offset if spec[0] == "+" else now - offset
        return When(at, at)
    clock = _CLOCK.match(spec)
    if clock:
        hours, minutes = int(clock[1]), int(clock[2])
        if hours > 23 or minutes > 59:
            raise FormError(field, f"{spec!r} is not a time of day")
        day = datetime.fromtimestamp(now)
        at = day.replace(hour=hours, minute=minutes, second=0, microsecond=0).timestamp()
        return When(at, at)
    for fmt in _DATE_FORMATS:
        try:
            at = datetime.strptime(spec, fmt).timestamp()  # naive: the console's local time zone
        except ValueError:
            continue
        return When(at, at)
    raise FormError(field, f"{spec!r} is not a time ({TIME_HINT})")


def names(text: str) -> list[str]:
    """Comma-separated names, blanks dropped, each once."""
    return list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


def weekly_specs(text: str) -> list[str]:
    """Weekly specs are separated by ``;``: a spec's own days may be a comma list (``Sat,Sun 10:00-14:00``)."""
    return [part.strip() for part in text.split(";") if part.strip()]


def local_time(ts: float, *, seconds: bool = False) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M", time.localtime(ts))


def form_time(ts: float | None) -> str:
    """How a stored time is put back into a form field."""
    return "" if ts is None else local_time(ts)


def span_text(seconds: float) -> str:
    minutes = round(abs(seconds) / 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days}d"] if days else []
    if hours:
        parts.append(f"{hours}h")
    if minutes or not parts:
        parts.append(f"{minutes:02d}m" if parts else f"{minutes}m")
    return "".join(parts)


def describe_times(start: When | None, end: float | None, now: float) -> str:
    """What the start and end fields were read as, to be checked before saving."""
    if start is None and end is None:
        return ""
    zone = time.strftime("%Z", time.localtime(start.at if start else end))
    parts = []
    if start is not None:
        when = "now" if start.value == "now" else local_time(start.at)
        relative = start.at - now
        if abs(relative) >= 60:
            when += f" (in {span_text(relative)})" if relative > 0 else f" ({span_text(relative)} ago)"
        parts.append(f"start {when}")
    if end is not None:
        same_day = start is not None and local_time(start.at)[:10] == local_time(end)[:10]
        shown = local_time(end)[11:] if same_day else local_time(end)
        length = f", {span_text(end - start.at)}" if start is not None and end > start.at else ""
        parts.append(f"end {shown}{length}")
    return " → ".join(parts) + f"  ({zone})"


def scope_fields(scope: Scope) -> dict[str, str]:
    return {key: ", ".join(getattr(scope, key)) for key in SCOPE_KEYS}


def failure_text(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, TimeoutError):
        return "no answer from the engine"
    return str(exc) or type(exc).__name__


# The engine names fields as its API does; the form's keys are what the user sees.
ENGINE_FIELDS = {
    "starts_at": "start", "ends_at": "end", "duration_s": "duration",
    "scope.sites": "sites", "scope.devices": "devices", "scope.tags": "tags", "scope.services": "services",
    "scope": "sites",
}


def field_of(message: str, keys: Sequence[str]) -> str | None:
    """The form field an engine error names (``"ends_at: must be after starts_at"`` -> ``end``)."""
    head = message.split(":", 1)[0].strip()
    parts = head.split(".")
    for candidate in (".".join(parts[:2]), parts[0]):
        key = ENGINE_FIELDS.get(candidate, candidate)
        if key in keys:
            return key
    if head.startswith("hours "):  # a weekly spec's own message
        return "weekly" if "weekly" in keys else None
    return None


@dataclass(frozen=True)
class FormField:
    key: str
    label: str
    placeholder: str = ""


Submit = Callable[[dict[str, Any]], "Future[Any]"]


class RecordForm(ModalScreen[Any]):
    """One row per field (label, one-line input), the parsed times, the engine's answer.

    enter saves, tab / shift+tab move, esc leaves without saving. The engine's
    answer dismisses the form with the saved view; a refusal stays in the form.
    """

    BINDINGS = [Binding("escape", "leave", "Cancel", show=False)]
    FIELDS: tuple[FormField, ...] = ()
    TIME_FIELDS = ("start", "end")

    def __init__(self, heading: str, submit: Submit, *, now: Callable[[], float],
                 values: dict[str, str] | None = None, editing: bool = False,
                 initial_times: dict[str, float | None] | None = None) -> None:
        super().__init__(classes="record-form")
        self.heading = heading
        self.submit = submit
        self.now = now
        self.editing = editing
        self.initial = {f.key: "" for f in self.FIELDS} | (values or {})
        # A stored time shown to the minute is sent back exactly when its text was not touched.
        self.initial_times = initial_times or {}
        self.saving = False
        self.error: str | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.FIELDS)

    def compose(self) -> ComposeResult:
        with Vertical(classes="form-box"):
            yield Static(Text(self.heading, style="bold"), classes="form-heading")
            with VerticalScroll(classes="form-fields"):
                for f in self.FIELDS:
                    with Horizontal(classes="form-row"):
                        yield Label(f.label, classes="form-label")
                        yield Input(self.initial[f.key], placeholder=f.placeholder, id=f"form-{f.key}",
                                    classes="form-input")
            yield Static("", classes="form-times", id="form-times")
            yield Static("", classes="form-error", id="form-error")
            yield Static("enter: save · tab / shift+tab: next / previous field · esc: cancel",
                         classes="form-hint")

    def on_mount(self) -> None:
        self.query_one(f"#form-{self.FIELDS[0].key}", Input).focus()
        self._show_times()

    def text(self, key: str) -> str:
        return self.query_one(f"#form-{key}", Input).value

    def changed(self, key: str) -> bool:
        return self.text(key).strip() != self.initial[key].strip()

    def when(self, key: str, now: float) -> When | None:
        if key in self.initial_times and not self.changed(key):
            ts = self.initial_times[key]
            return None if ts is None else When(ts, ts)
        return parse_when(self.text(key), now, key)

    def times(self, now: float) -> tuple[When | None, float | None]:
        """The start as read, and the end: typed, or start + duration."""
        start = self.when("start", now)
        end = self.when("end", now)
        duration = parse_duration(self.text("duration"))
        if duration is not None and start is not None and (end is None or not self.changed("end")):
            return start, start.at + duration
        return start, None if end is None else end.at

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        event.stop()
        event.input.remove_class("field-error")
        if (event.input.id or "").removeprefix("form-") in (*self.TIME_FIELDS, "duration"):
            self._show_times()

    def _show_times(self) -> None:
        now = self.now()
        widget = self.query_one("#form-times", Static)
        try:
            start, end = self.times(now)
        except FormError as exc:
            widget.update(Text(str(exc), style="yellow"))
            return
        widget.update(Text(describe_times(start, end, now), style="dim"))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.save()

    def save(self) -> None:
        if self.saving:
            return
        try:
            fields = self.fields(self.now())
        except FormError as exc:
            self.show_error(str(exc), exc.field)
            return
        try:
            future = self.submit(fields)
        except Exception as exc:  # an engine that refuses before it even queues the call
            self.show_error(failure_text(exc))
            return
        self.saving = True
        self.show_error(None)
        self.query_one("#form-error", Static).update(Text("Saving…", style="italic"))
        self.run_worker(self._save(future), group="form-save", exit_on_error=False)

    async def _save(self, future: Future[Any]) -> None:
        try:
            result = await asyncio.wrap_future(future)
        except Exception as exc:
            self.saving = False
            if self.is_attached:
                self.show_error(failure_text(exc))
            return
        self.dismiss(result)

    def show_error(self, message: str | None, key: str | None = None) -> None:
        self.error = message
        for f in self.FIELDS:
            self.query_one(f"#form-{f.key}", Input).remove_class("field-error")
        widget = self.query_one("#form-error", Static)
        if message is None:
            widget.update("")
            return
        widget.update(Text(f"✖ {message}", style="bold red"))
        key = key or field_of(message, self.keys)
        if key is not None:
            field_input = self.query_one(f"#form-{key}", Input)
            field_input.add_class("field-error")
            field_input.focus()

    def action_leave(self) -> None:
        self.dismiss(None)

    # -- what is sent -----------------------------------------------------------------------------

    def fields(self, now: float) -> dict[str, Any]:
        """The engine's fields: everything on a new record, only what changed on an edit."""
        out: dict[str, Any] = {}
        for key, value in self.text_fields().items():
            if not self.editing or self.changed(key):
                out[key] = value
        if not self.editing or any(self.changed(k) for k in SCOPE_KEYS):
            out["scope"] = {k: names(self.text(k)) for k in SCOPE_KEYS}
        start, end = self.when("start", now), self.when("end", now)
        duration = parse_duration(self.text("duration"))
        if not self.editing or self.changed("start"):
            out["starts_at"] = None if start is None else start.value
        if duration is not None:
            out["duration_s"] = duration
            if self.editing and self.changed("end"):
                out["ends_at"] = None if end is None else end.value  # the engine says: not both
        elif not self.editing or self.changed("end"):
            out["ends_at"] = None if end is None else end.value
        if not self.editing:
            out = {k: v for k, v in out.items() if v is not None}
        return out

    def text_fields(self) -> dict[str, Any]:
        """The fields sent as they are typed (one-line names, free text)."""
        raise NotImplementedError


SCOPE_FIELDS = (
    FormField("sites", "Sites", "comma-separated, e.g. POP-A, POP-B"),
    FormField("devices", "Devices", "comma-separated, e.g. CORE1"),
    FormField("tags", "Tags", "comma-separated"),
    FormField("services", "Services", "comma-separated"),
)
TIME_FIELDS = (
    FormField("start", "Start", TIME_HINT),
    FormField("end", "End", f"{TIME_HINT}; or a duration below"),
    FormField("duration", "Duration", "2h, 90m, 1h30m (instead of an end)"),
)


class ChangeForm(RecordForm):
    """A change record: planned work with an owner."""

    FIELDS = (
        FormField("title", "Title", "what is being done"),
        FormField("description", "Description", "how, why, rollback"),
        *TIME_FIELDS,
        *SCOPE_FIELDS,
        FormField("owner", "Owner", "who is doing it"),
    )

    def text_fields(self) -> dict[str, Any]:
        return {"title": self.text("title").strip(), "description": self.text("description"),
                "owner": self.text("owner").strip()}


def change_form(submit: Submit, *, now: Callable[[], float], owner: str,
                change: ChangeRecordView | None = None) -> ChangeForm:
    if change is None:
        return ChangeForm("New change", submit, now=now, values={"owner": owner, "start": "now"})
    values = {"title": change.title, "description": change.description, "start": form_time(change.starts_at),
              "end": form_time(change.ends_at), "owner": change.owner, **scope_fields(change.scope)}
    return ChangeForm(f"Edit {change.id} ({change.status})", submit, now=now, values=values, editing=True,
                      initial_times={"start": change.starts_at, "end": change.ends_at})


class WindowForm(RecordForm):
    """A maintenance window: one-off (start and end) or weekly in a time zone."""

    FIELDS = (
        FormField("name", "Name", "e.g. POP-A fibre works"),
        FormField("note", "Note", "ticket, contact"),
        *TIME_FIELDS,
        FormField("weekly", "Weekly", "instead of start/end: Tue 02:00-04:00; Sat,Sun 10:00-14:00"),
        FormField("timezone", "Time zone", "for weekly; empty: the engine's [ispvm].timezone"),
        *SCOPE_FIELDS,
    )

    def text_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.text("name").strip(), "note": self.text("note"),
                               "weekly": weekly_specs(self.text("weekly"))}
        zone = self.text("timezone").strip()
        if zone or self.editing:
            out["timezone"] = zone or None
        return out

    def fields(self, now: float) -> dict[str, Any]:
        out = super().fields(now)
        # A new weekly window: the start the form offers ("now") means nothing unless an end goes with it.
        if (not self.editing and out.get("weekly") and not self.changed("start")
                and not self.text("end").strip() and not self.text("duration").strip()):
            out.pop("starts_at", None)
        return out


def window_form(submit: Submit, *, now: Callable[[], float], window: MaintenanceView | None = None) -> WindowForm:
    if window is None:
        return WindowForm("New maintenance window", submit, now=now, values={"start": "now"})
    values = {"name": window.name, "note": window.note, "start": form_time(window.starts_at),
              "end": form_time(window.ends_at), "weekly": "; ".join(window.weekly),
              "timezone": window.timezone if window.weekly else "", **scope_fields(window.scope)}
    return WindowForm(f"Edit {window.id}", submit, now=now, values=values, editing=True,
                      initial_times={"start": window.starts_at, "end": window.ends_at})


class CapturePrompt(ModalScreen[Any]):
    """Which device to fingerprint now, when no detected change is selected (empty: every device)."""

    BINDINGS = [Binding("escape", "leave", "Cancel", show=False)]

    def __init__(self, submit: Callable[[str | None], Future[Any]], device: str = "") -> None:
        super().__init__(classes="record-form")
        self.submit = submit
        self.device = device
        self.saving = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="form-box"):
            yield Static(Text("Fingerprint a device's configuration now", style="bold"), classes="form-heading")
            with Horizontal(classes="form-row"):
                yield Label("Device", classes="form-label")
                yield Input(self.device, placeholder="a device name; empty: every device", id="form-device",
                            classes="form-input")
            yield Static("", classes="form-error", id="form-error")
            yield Static("enter: read now · esc: cancel", classes="form-hint")

    def on_mount(self) -> None:
        self.query_one("#form-device", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.saving:
            return
        device = event.value.strip() or None
        try:
            future = self.submit(device)
        except Exception as exc:
            self._error(failure_text(exc))
            return
        self.saving = True
        self.run_worker(self._read(device, future), group="form-save", exit_on_error=False)

    async def _read(self, device: str | None, future: Future[Any]) -> None:
        try:
            count = await asyncio.wrap_future(future)
        except Exception as exc:
            self.saving = False
            if self.is_attached:
                self._error(failure_text(exc))
            return
        self.dismiss((device, count))

    def _error(self, message: str) -> None:
        self.query_one("#form-error", Static).update(Text(f"✖ {message}", style="bold red"))

    def action_leave(self) -> None:
        self.dismiss(None)
