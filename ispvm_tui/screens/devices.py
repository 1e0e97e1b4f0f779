"""Devices view: every device with its state and last poll, a `/` filter, `s` sorts; enter: one device in detail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from ispvm_tui.engine.api import DeviceDetail, DeviceView, EngineAPI, InterfaceRow, Snapshot
from ispvm_tui.screens.widgets import STATE_RANK, age, error_text, state_text, sync_table

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("State", "state", 10),
    ("Name", "name", 14),
    ("Role", "role", 11),
    ("Site", "site", 10),
    ("CPU", "cpu", 4),
    ("Uptime", "uptime", 7),
    ("Version", "version", 8),
    ("Polled", "polled", 9),
    ("Last error", "error", 40),
)
DETAIL_REFRESH_S = 3.0
DETAIL_TIMEOUT_S = 30.0  # a hung engine must not stop later refreshes for good
CHANGES_SHOWN = 10


def uptime_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def device_cells(device: DeviceView, now: float) -> tuple[object, ...]:
    return (
        state_text(device.state),
        device.name,
        device.role,
        device.site,
        "—" if device.cpu_load is None else f"{device.cpu_load}%",
        uptime_text(device.uptime_s),
        device.version or "—",
        age(device.last_poll_at, now),
        Text(device.last_error, style="red") if device.last_error else "—",
    )


def device_matches(device: DeviceView, needle: str) -> bool:
    """Case-insensitive substring match over name, site, role and state."""
    if not needle:
        return True
    needle = needle.casefold()
    return any(needle in field.casefold() for field in (device.name, device.site, device.role, device.state))


# Sort orders `s` cycles through; the name breaks every tie so the order never wobbles between snapshots.
SORTS: dict[str, Callable[[DeviceView], tuple[object, ...]]] = {
    "state": lambda d: (STATE_RANK.get(d.state, 9), d.name),
    "name": lambda d: (d.name,),
    "site": lambda d: (d.site, d.name),
    "cpu": lambda d: (d.cpu_load is None, -(d.cpu_load or 0), d.name),  # busiest first, unknown last
}


class DevicesPane(Vertical):
    def __init__(self) -> None:
        super().__init__(id="devices-pane")
        self._snapshot: Snapshot | None = None
        self.filter_text = ""
        self.shown = 0
        self.sort = "state"

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: name, site, role, state — enter: keep · esc: clear", id="devices-filter")
        yield DataTable(id="devices-table", cursor_type="row", zebra_stripes=True)
        yield Static(Text("Synchronizing…", style="dim"), id="devices-empty")

    def on_mount(self) -> None:
        self.query_one("#devices-filter", Input).display = False
        table = self.query_one("#devices-table", DataTable)
        for label, key, width in COLUMNS:
            table.add_column(label, key=key, width=width)

    @property
    def total(self) -> int:
        return 0 if self._snapshot is None else len(self._snapshot.devices)

    def cycle_sort(self) -> str:
        names = list(SORTS)
        self.sort = names[(names.index(self.sort) + 1) % len(names)]
        self._render_rows()
        return self.sort

    def visible(self, devices: Sequence[DeviceView]) -> list[DeviceView]:
        return sorted((d for d in devices if device_matches(d, self.filter_text)), key=SORTS[self.sort])

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._render_rows()

    def selected(self) -> str | None:
        table = self.query_one("#devices-table", DataTable)
        if table.row_count == 0 or not table.is_valid_row_index(table.cursor_row):
            return None
        return table.ordered_rows[table.cursor_row].key.value

    def _render_rows(self) -> None:
        snapshot = self._snapshot
        if snapshot is None:
            return
        rows = self.visible(snapshot.devices)
        self.shown = len(rows)
        with self.app.batch_update():
            sync_table(self.query_one("#devices-table", DataTable),
                       [(d.name, device_cells(d, snapshot.taken_at)) for d in rows])
        empty = self.query_one("#devices-empty", Static)
        empty.display = not rows
        if not rows:
            if self.filter_text:
                empty.update(f"No devices match “{self.filter_text}” (of {self.total}). esc clears the filter.")
            else:
                empty.update("No devices configured.")

    def open_filter(self) -> None:
        filter_input = self.query_one("#devices-filter", Input)
        filter_input.display = True
        filter_input.focus()

    def clear_filter(self) -> bool:
        """Clear and hide the filter; False when there was nothing to clear."""
        filter_input = self.query_one("#devices-filter", Input)
        if not filter_input.display and not self.filter_text:
            return False
        filter_input.value = ""
        filter_input.display = False
        self.filter_text = ""
        self._render_rows()
        self.query_one("#devices-table", DataTable).focus()
        return True

    @on(Input.Changed, "#devices-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._render_rows()

    @on(Input.Submitted, "#devices-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not self.filter_text:
            self.query_one("#devices-filter", Input).display = False
        self.query_one("#devices-table", DataTable).focus()


# -- one device in detail ---------------------------------------------------------------------------

def _bits(bps: float | None) -> str:
    if bps is None:
        return "—"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if bps >= size:
            return f"{bps / size:.1f}{unit}"
    return f"{bps:.0f}"


def _bytes(count: int | None) -> str:
    if count is None:
        return "—"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def _updown(value: bool | None) -> str:
    return "?" if value is None else "up" if value else "down"


def _total(*values: int | None) -> str:
    known = [v for v in values if v is not None]
    return f"{sum(known):,}" if known else "—"


def _section(text: Text, title: str) -> None:
    text.append(f"\n{title}\n", style="bold underline")


Rates = dict[str, tuple[float | None, float | None]]


def interface_rates(before: DeviceDetail | None, after: DeviceDetail) -> Rates | None:
    """Bits per second per interface between two polls; None when they are the same poll (keep the last)."""
    if before is None or before.sampled_at is None or after.sampled_at is None:
        return {}
    elapsed = after.sampled_at - before.sampled_at
    if elapsed == 0:
        return None
    if elapsed < 0:
        return {}
    old = {i.name: i for i in before.interfaces}

    def rate(was: int | None, now: int | None) -> float | None:
        # A counter that went back was reset (reboot) or wrapped: no figure rather than a wrong one.
        return None if was is None or now is None or now < was else (now - was) * 8 / elapsed

    rates: Rates = {}
    for itf in after.interfaces:
        prev = old.get(itf.name)
        if prev is not None:
            rates[itf.name] = (rate(prev.rx_bytes, itf.rx_bytes), rate(prev.tx_bytes, itf.tx_bytes))
    return rates


def _interface_line(text: Text, itf: InterfaceRow, rates: Rates) -> None:
    oper = _updown(itf.oper_up)
    style = "bold red" if itf.admin_up and itf.oper_up is False else "dim" if itf.admin_up is False else ""
    rx, tx = rates.get(itf.name, (None, None))
    speed = _bits(itf.speed_bps) if itf.speed_bps else "—"
    errors = _total(itf.rx_errors, itf.tx_errors)
    text.append(f"  {itf.name[:14]:<14} ")
    text.append(f"{('✔ ' if itf.oper_up else '✖ ' if itf.oper_up is False else '? ') + oper:<7}", style=style)
    text.append(f"{_updown(itf.admin_up):<6}{speed:>7} {_bits(rx):>8} {_bits(tx):>8} {errors:>8}")
    if itf.comment:
        text.append(f"  {itf.comment}", style="dim")
    text.append("\n")


def render_device(detail: DeviceDetail, rates: Rates, now: float) -> Text:
    device = detail.device
    text = Text()
    text.append(f"{device.name}  ", style="bold")
    text.append_text(state_text(device.state))
    text.append(f"   {device.role} at {device.site}   {device.address}\n")
    text.append(f"polled {age(device.last_poll_at, now)}", style="dim")
    if detail.collectors:
        text.append(f" via {', '.join(detail.collectors)}", style="dim")
    text.append("\n")
    for error in detail.errors or ((device.last_error,) if device.last_error else ()):
        text.append(f"⚠ {error}\n", style="bold red")
    for stale in detail.stale:
        text.append(f"· stale {stale}\n", style="yellow")

    _section(text, "System")
    facts = [
        ("identity", detail.identity), ("version", device.version), ("board", detail.board),
        ("uptime", uptime_text(device.uptime_s) if device.uptime_s is not None else None),
        ("CPU", None if device.cpu_load is None else f"{device.cpu_load}%"),
        ("memory", None if detail.total_memory is None else
         f"{_bytes(detail.total_memory - (detail.free_memory or 0))} used of {_bytes(detail.total_memory)}"),
        ("routes", None if detail.route_count is None else f"{detail.route_count:,}"),
        ("descr", detail.descr),
    ]
    for label, value in facts:
        if value is not None:
            text.append(f"  {label:<9}", style="bold")
            text.append(f"{value}\n")
    if all(value is None for _, value in facts):
        text.append("  — no answer yet\n", style="dim")

    _section(text, "Health")
    if detail.sensors is None:
        text.append("  — not collected\n", style="dim")
    elif not detail.sensors:
        text.append("  — no sensors\n", style="dim")
    for sensor in detail.sensors or ():
        value = "" if sensor.value is None else f"{sensor.value:g}{' ' + sensor.unit if sensor.unit else ''}"
        state = sensor.state or ""
        text.append(f"  {sensor.name:<22}{value:<12}")
        text.append(f"{state}\n", style="bold red" if state not in ("", "ok") else "")

    up = sum(1 for i in detail.interfaces if i.oper_up)
    _section(text, f"Interfaces ({up}/{len(detail.interfaces)} up)")
    if detail.interfaces:
        text.append(f"  {'name':<14} {'oper':<7}{'admin':<6}{'speed':>7} {'rx bps':>8} {'tx bps':>8} {'errors':>8}\n",
                    style="dim")
    else:
        text.append("  —\n", style="dim")
    for itf in detail.interfaces:
        _interface_line(text, itf, rates)

    _section(text, "BGP sessions")
    if detail.bgp is None:
        text.append("  — not collected\n", style="dim")
    elif not detail.bgp:
        text.append("  — none\n", style="dim")
    for bgp in detail.bgp or ():
        state = "disabled" if bgp.disabled else bgp.state
        style = "dim" if bgp.disabled else "green" if bgp.established else "bold red"
        text.append(f"  {bgp.name[:16]:<16} ")
        text.append(f"{('✔ ' if bgp.established else '✖ ') + state:<14}", style=style)
        text.append(f"{bgp.remote_address or '?'} AS{bgp.remote_as if bgp.remote_as is not None else '?'}")
        if bgp.prefixes is not None:
            text.append(f"  {bgp.prefixes:,} prefixes")
        if bgp.uptime_s is not None:
            text.append(f"  up {uptime_text(bgp.uptime_s)}", style="dim")
        text.append("\n")

    _section(text, "OSPF neighbours")
    if detail.ospf is None:
        text.append("  — not collected\n", style="dim")
    elif not detail.ospf:
        text.append("  — none\n", style="dim")
    for ospf in detail.ospf or ():
        text.append(f"  {ospf.router_id:<16} ")
        text.append(f"{('✔ ' if ospf.full else '✖ ') + ospf.state:<12}", style="green" if ospf.full else "bold red")
        text.append(f"{ospf.address or '?'} on {ospf.interface or '?'}\n")

    _section(text, "Recent config changes")
    if not detail.config_changes:
        text.append("  — none detected\n", style="dim")
    for change in detail.config_changes[:CHANGES_SHOWN]:
        when = time.strftime("%m-%d %H:%M", time.localtime(change.detected_at))
        text.append(f"  {when}  v{change.version:<4} ", style="dim")
        text.append(f"{change.summary}\n")
    return text


class DeviceDetailScreen(Screen[None]):
    """Pushed over the main view, read from the engine every few seconds while shown; q/esc go back."""

    def __init__(self, engine: EngineAPI, name: str, *, refresh_s: float = DETAIL_REFRESH_S) -> None:
        super().__init__(id="device-detail-screen")
        self.engine = engine
        self.device_name = name
        self.refresh_s = refresh_s
        self.detail: DeviceDetail | None = None
        self.error: str | None = None
        self.fetches = 0  # answers taken in, errors too (lets tests wait for a refresh)
        self._rates: Rates = {}
        self._fetching = False
        self._rendered: Text | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="device-detail-scroll"):
            yield Static(Text("Synchronizing…", style="dim"), id="device-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.device_name
        self.fetch()
        self.set_interval(self.refresh_s, self.fetch)

    def fetch(self) -> None:
        if getattr(self.app, "frozen_at", None) is not None:
            return  # the console is frozen (F): keep what is shown
        if not self._fetching:  # a slow answer is waited for, never queued behind
            self._fetching = True
            self.run_worker(self._fetch(), group="device-detail", exit_on_error=False)

    async def _fetch(self) -> None:
        try:
            future = self.engine.device_detail(self.device_name)
            detail = await asyncio.wait_for(asyncio.wrap_future(future), DETAIL_TIMEOUT_S)
        except Exception as exc:
            self._show(None, error_text(exc))
        else:
            self._show(detail, None)
        finally:
            self._fetching = False

    def _show(self, detail: DeviceDetail | None, error: str | None) -> None:
        self.fetches += 1
        if not self.is_attached:
            return  # answered after the screen was closed
        self.error = error
        if detail is not None:
            rates = interface_rates(self.detail, detail)
            if rates is not None:
                self._rates = rates
            self.detail = detail
        snapshot = getattr(self.app, "snapshot", None)
        now = snapshot.taken_at if isinstance(snapshot, Snapshot) else time.time()
        if self.detail is None:
            rendered = Text(f"Device {self.device_name}: {error}", style="bold red")
        else:
            rendered = render_device(self.detail, self._rates, now)
            if error is not None:
                rendered.append(f"\n⚠ refresh failed: {error} (showing the last answer)\n", style="bold red")
        if rendered != self._rendered:
            self._rendered = rendered
            self.query_one("#device-detail", Static).update(rendered)
