"""Devices view: every device with its state and last poll, a `/` filter, `s` sorts; enter: one device in detail
(system, health, interfaces with live sparklines, a history chart of the selected interface, wireless clients,
BGP, OSPF, recent config changes)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Static

from ispvm_tui.engine.api import (
    DeviceDetail,
    DeviceHistory,
    DeviceView,
    DhcpRow,
    EngineAPI,
    InterfaceRow,
    LteRow,
    OpticRow,
    Snapshot,
    WirelessClientRow,
)
from ispvm_tui.screens.device_charts import HistoryChart, bits, spark_text
from ispvm_tui.screens.table import ConsoleTable
from ispvm_tui.screens.widgets import (
    STATE_RANK,
    ConsoleFooter,
    age,
    error_text,
    selected_row_key,
    state_text,
    sync_table,
)

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
HISTORY_REFRESH_S = 60.0  # the chart moves one bucket (5 minutes over 6 hours) at a time
HISTORY_HOURS = 6.0
TREND_POINTS = 30  # detail reads kept per interface for its row's sparkline: 90 s at the 3 s refresh
TREND_WIDTH = 12


def uptime_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


STALE_MARK = "*"  # after a last known value: the device has been polled since and did not answer


def _known(value: str, stale: bool) -> object:
    return Text(value + STALE_MARK, style="dim italic") if stale and value != "—" else value


def device_cells(device: DeviceView, now: float) -> tuple[object, ...]:
    stale = device.stale
    return (
        state_text(device.state),
        device.name,
        device.role,
        device.site,
        _known("—" if device.cpu_load is None else f"{device.cpu_load}%", stale),
        _known(uptime_text(device.uptime_s), stale),
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
        yield ConsoleTable(id="devices-table", cursor_type="row", zebra_stripes=True)
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


INTERFACE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("Interface", "name", 14), ("Oper", "oper", 7), ("Admin", "admin", 5), ("Speed", "speed", 6),
    ("rx bps", "rx", 7), ("tx bps", "tx", 7), ("Errors", "errors", 7), ("Trend", "trend", TREND_WIDTH),
    ("Comment", "comment", 24),
)


def interface_cells(itf: InterfaceRow, rates: Rates, trend: Sequence[float]) -> tuple[object, ...]:
    style = "bold red" if itf.admin_up and itf.oper_up is False else "dim" if itf.admin_up is False else ""
    rx, tx = rates.get(itf.name, (None, None))
    symbol = "✔ " if itf.oper_up else "✖ " if itf.oper_up is False else "? "
    return (
        itf.name, Text(symbol + _updown(itf.oper_up), style=style), _updown(itf.admin_up),
        bits(itf.speed_bps) if itf.speed_bps else "—", bits(rx), bits(tx), _total(itf.rx_errors, itf.tx_errors),
        Text(spark_text(trend, TREND_WIDTH), style="cyan"), Text(itf.comment or "", style="dim"),
    )


def _firmware(detail: DeviceDetail) -> str | None:
    if detail.firmware is None:
        return None
    if detail.firmware_upgrade and detail.firmware_upgrade != detail.firmware:
        return (f"{detail.firmware}, behind its RouterOS's {detail.firmware_upgrade}: "
                "/system routerboard upgrade, then reboot")
    return detail.firmware


def render_summary(detail: DeviceDetail, now: float) -> Text:
    """The head of the detail: who the device is, its system facts and health sensors."""
    device = detail.device
    text = Text()
    text.append(f"{device.name}  ", style="bold")
    text.append_text(state_text(device.state))
    text.append(f"   {device.role} at {device.site}   {device.address}\n")
    text.append(f"polled {age(device.last_poll_at, now)}", style="dim")
    if detail.collectors:
        text.append(f" via {', '.join(detail.collectors)}", style="dim")
    text.append("\n")
    if detail.silent_since is not None:
        # Kept, not dropped: what it said last is what an engineer needs while it is silent.
        since = time.strftime("%H:%M:%S", time.localtime(detail.silent_since))
        text.append(f"⚠ not answering since {since} ({age(detail.silent_since, now)}): everything below is its "
                    f"last answer, from {age(detail.sampled_at, now)}\n", style="bold yellow")
    for error in detail.errors or ((device.last_error,) if device.last_error else ()):
        text.append(f"⚠ {error}\n", style="bold red")
    for stale in detail.stale:
        text.append(f"· stale {stale}\n", style="yellow")

    last = " — last known" if detail.silent_since is not None else ""
    _section(text, f"System{last}")
    facts = [
        ("identity", detail.identity), ("version", device.version), ("board", detail.board),
        ("firmware", _firmware(detail)),
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

    _section(text, f"Health{last}")
    if detail.sensors is None:
        text.append("  — not collected\n", style="dim")
    elif not detail.sensors:
        text.append("  — no sensors\n", style="dim")
    for sensor in detail.sensors or ():
        value = "" if sensor.value is None else f"{sensor.value:g}{' ' + sensor.unit if sensor.unit else ''}"
        state = sensor.state or ""
        text.append(f"  {sensor.name:<22}{value:<12}")
        text.append(f"{state}\n", style="bold red" if state not in ("", "ok") else "")
    if detail.optics:
        _optics(text, detail.optics, last)
    if detail.lte:
        _lte(text, detail.lte, last)
    if detail.dhcp:
        _dhcp(text, detail.dhcp, last)
    up = sum(1 for i in detail.interfaces if i.oper_up)
    _section(text, f"Interfaces ({up}/{len(detail.interfaces)} up){last}")
    if not detail.interfaces:
        text.append("  —\n", style="dim")
    return text


# Marks on the optics lines (the rules have their own, configurable thresholds): the built-in rules' defaults.
OPTIC_WEAK_DBM = -20.0
OPTIC_HOT_C = 75.0


def _optics(text: Text, optics: tuple[OpticRow, ...], last: str = "") -> None:
    _section(text, f"Optics ({sum(1 for m in optics if m.present)} of {len(optics)} cages with a module){last}")
    for m in optics:
        text.append(f"  {m.interface:<14}", style="bold")
        if not m.present:
            text.append("empty\n", style="dim")
            continue
        if m.rx_loss:
            text.append("rx no light ", style="bold red")
        elif m.rx_power_dbm is not None:
            weak = m.rx_power_dbm <= OPTIC_WEAK_DBM
            text.append(f"rx {m.rx_power_dbm:.2f} dBm" + (" weak " if weak else " "),
                        style="bold yellow" if weak else "")
        if m.tx_power_dbm is not None:
            text.append(f"tx {m.tx_power_dbm:.2f} dBm ")
        if m.tx_fault:
            text.append("tx fault ", style="bold red")
        if m.temperature_c is not None:
            hot = m.temperature_c >= OPTIC_HOT_C
            text.append(f"{m.temperature_c:g} C" + (" hot " if hot else " "), style="bold red" if hot else "")
        details = [f"{m.supply_v:.2f} V" if m.supply_v is not None else "",
                   f"{m.tx_bias_ma:g} mA" if m.tx_bias_ma is not None else "",
                   f"{m.wavelength_nm:g} nm" if m.wavelength_nm else "",
                   " ".join(p for p in (m.vendor, m.part_number) if p)]
        text.append("  ".join(d for d in details if d) + "\n", style="dim")


DHCP_FULL_PCT = 90.0  # the dhcp_pool_exhausting rule's default


def _dhcp(text: Text, servers: tuple[DhcpRow, ...], last: str = "") -> None:
    _section(text, f"DHCP{last}")
    for d in servers:
        text.append(f"  {d.name:<14}", style="bold")
        leases = "?" if d.leases is None else f"{d.leases:,}"
        text.append(f"{leases} leases" + ("" if d.bound is None else f" ({d.bound:,} bound)"))
        pct = d.pool_used_pct
        if pct is not None and d.pool_size is not None:
            full = pct >= DHCP_FULL_PCT
            used = f"  pool {d.pool} {d.pool_used:,}/{d.pool_size:,} used ({pct:.0f}%)"
            text.append(used + (" full" if full else ""), style="bold yellow" if full else "")
        text.append(f"  {d.interface}\n" if d.interface else "\n", style="dim")


LTE_WEAK_RSRP_DBM = -110.0  # the lte_signal_weak rule's default
LTE_LOW_SINR_DB = 0.0


def _lte(text: Text, modems: tuple[LteRow, ...], last: str = "") -> None:
    _section(text, f"LTE{last}")
    for m in modems:
        text.append(f"  {m.interface:<14}", style="bold")
        if m.rsrp_dbm is not None:
            weak = m.rsrp_dbm <= LTE_WEAK_RSRP_DBM
            text.append(f"RSRP {m.rsrp_dbm:g} dBm" + (" weak " if weak else " "), style="bold yellow" if weak else "")
        if m.rsrq_db is not None:
            text.append(f"RSRQ {m.rsrq_db:g} dB ")
        if m.sinr_db is not None:
            low = m.sinr_db <= LTE_LOW_SINR_DB
            text.append(f"SINR {m.sinr_db:g} dB" + (" low " if low else " "), style="bold yellow" if low else "")
        details = [f"RSSI {m.rssi_dbm:g} dBm" if m.rssi_dbm is not None else "",
                   f"cell {m.cell_id}" if m.cell_id else "", m.technology or ""]
        text.append("  ".join(d for d in details if d) + "\n", style="dim")


WIRELESS_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("MAC", "mac", 17), ("Interface", "interface", 8), ("Signal", "signal", 12), ("tx rate", "tx", 7),
    ("rx rate", "rx", 7), ("Uptime", "uptime", 6), ("SSID", "ssid", 10),
)
WEAK_SIGNAL_DBM = -80.0  # below this a station is marked weak: MikroTik's own "poor" range starts about here


def wireless_cells(client: WirelessClientRow) -> tuple[object, ...]:
    signal: object = "—"
    if client.signal_dbm is not None:
        weak = client.signal_dbm < WEAK_SIGNAL_DBM
        signal = Text(f"{client.signal_dbm:.0f} dBm" + (" weak" if weak else ""),
                      style="bold yellow" if weak else "")
    return (client.mac, client.interface or "?", signal, bits(client.tx_rate_bps), bits(client.rx_rate_bps),
            uptime_text(client.uptime_s), client.ssid or "—")


def render_wireless_title(detail: DeviceDetail) -> Text:
    text = Text()
    _section(text, f"Wireless clients ({len(detail.wireless or ())})")
    if not detail.wireless:
        text.append("  — none registered\n", style="dim")
    return text


def render_routing(detail: DeviceDetail) -> Text:
    """BGP, OSPF and the recent config changes, below the interfaces."""
    text = Text()
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
    """Pushed over the main view, read from the engine every few seconds while shown; q/esc go back.

    The interface table's cursor picks the interface the history chart shows. The history is read
    every ``history_s`` (it changes by one bucket at a time); the detail every ``refresh_s``.
    """

    DEFAULT_CSS = """
    #device-detail-scroll { padding: 0 1; }
    #device-detail-scroll DataTable { height: auto; max-height: 14; }
    #device-detail-scroll Static { height: auto; }
    """

    BINDINGS = [("g", "diagnostics", "Diagnose")]  # ping / traceroute (screens/diagnostics.py)

    def __init__(self, engine: EngineAPI, name: str, *, refresh_s: float = DETAIL_REFRESH_S,
                 history_s: float = HISTORY_REFRESH_S, history_hours: float = HISTORY_HOURS) -> None:
        super().__init__(id="device-detail-screen")
        self.engine = engine
        self.device_name = name
        self.refresh_s = refresh_s
        self.history_s = history_s
        self.history_hours = history_hours
        self.detail: DeviceDetail | None = None
        self.history: DeviceHistory | None = None
        self.error: str | None = None
        self.history_error: str | None = None
        self.fetches = 0  # answers taken in, errors too (lets tests wait for a refresh)
        self.history_fetches = 0
        self._rates: Rates = {}
        # Recent rx+tx per interface from successive details: the rows' live sparklines.
        self.trends: dict[str, deque[float]] = {}
        self._fetching = False
        self._fetching_history = False
        self._focused_once = False
        self._rendered: tuple[Text, Text] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="device-detail-scroll"):
            yield Static(Text("Synchronizing…", style="dim"), id="device-detail")
            yield ConsoleTable(id="device-interfaces", cursor_type="row", zebra_stripes=True)
            yield HistoryChart()
            yield Static(id="device-wireless-title")
            yield ConsoleTable(id="device-wireless", cursor_type="row", zebra_stripes=True)
            yield Static(id="device-routing")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.sub_title = self.device_name
        for selector, columns in (("#device-interfaces", INTERFACE_COLUMNS), ("#device-wireless", WIRELESS_COLUMNS)):
            table = self.query_one(selector, DataTable)
            for label, key, width in columns:
                table.add_column(label, key=key, width=width)
            table.display = False
        self.query_one("#device-wireless-title", Static).display = False
        self.fetch()
        self.fetch_history()
        self.set_interval(self.refresh_s, self.fetch)
        self.set_interval(self.history_s, self.fetch_history)

    def selected_interface(self) -> str | None:
        return selected_row_key(self.query_one("#device-interfaces", DataTable))

    def action_diagnostics(self) -> None:
        from ispvm_tui.screens.diagnostics import open_diagnostics

        open_diagnostics(self.app, device=self.device_name)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action == "diagnostics" and getattr(self.app, "readonly", False))  # hidden when read-only

    def fetch(self) -> None:
        if getattr(self.app, "frozen_at", None) is not None:
            return  # the console is frozen (F): keep what is shown
        if not self._fetching:  # a slow answer is waited for, never queued behind
            self._fetching = True
            self.run_worker(self._fetch(), group="device-detail", exit_on_error=False)

    def fetch_history(self) -> None:
        if not self._fetching_history:
            self._fetching_history = True
            self.run_worker(self._fetch_history(), group="device-history", exit_on_error=False)

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

    async def _fetch_history(self) -> None:
        history, error = None, None
        try:
            future = self.engine.device_history(self.device_name, self.history_hours)
            history = await asyncio.wait_for(asyncio.wrap_future(future), DETAIL_TIMEOUT_S)
        except Exception as exc:
            error = error_text(exc)
        finally:
            self._fetching_history = False
        self.history_fetches += 1
        if not self.is_attached:
            return
        self.history_error = error
        if history is not None:
            self.history = history
        self._show_chart()

    def _show_chart(self) -> None:
        self.query_one(HistoryChart).show(self.history, self.selected_interface(), self.history_error)

    @on(DataTable.RowHighlighted, "#device-interfaces")
    def _interface_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if self.history is not None and self.query_one(HistoryChart).interface != self.selected_interface():
            self._show_chart()

    @on(DataTable.RowSelected, "#device-interfaces")
    def _interface_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()  # enter here must not reach the app's "open" binding

    def _show(self, detail: DeviceDetail | None, error: str | None) -> None:
        self.fetches += 1
        if not self.is_attached:
            return  # answered after the screen was closed
        self.error = error
        if detail is not None:
            rates = interface_rates(self.detail, detail)
            if rates is not None:
                self._rates = rates
                self._add_trends(rates)
            self.detail = detail
        snapshot = getattr(self.app, "snapshot", None)
        now = snapshot.taken_at if isinstance(snapshot, Snapshot) else time.time()
        summary = self.query_one("#device-detail", Static)
        if self.detail is None:
            summary.update(Text(f"Device {self.device_name}: {error}", style="bold red"))
            return
        head = render_summary(self.detail, now)
        if error is not None:
            head.append(f"⚠ refresh failed: {error} (showing the last answer)\n", style="bold red")
        rendered = (head, render_routing(self.detail))
        with self.app.batch_update():
            if rendered != self._rendered:
                self._rendered = rendered
                summary.update(rendered[0])
                self.query_one("#device-routing", Static).update(rendered[1])
            self._sync_tables(self.detail)

    def _add_trends(self, rates: Rates) -> None:
        for name, (rx, tx) in rates.items():
            if rx is not None or tx is not None:
                self.trends.setdefault(name, deque(maxlen=TREND_POINTS)).append((rx or 0.0) + (tx or 0.0))

    def _sync_tables(self, detail: DeviceDetail) -> None:
        interfaces = self.query_one("#device-interfaces", DataTable)
        interfaces.display = bool(detail.interfaces)
        before = self.selected_interface()
        sync_table(interfaces, [(i.name, interface_cells(i, self._rates, self.trends.get(i.name, ())))
                                for i in detail.interfaces])
        if before is None and interfaces.row_count and not self._focused_once:
            self._focused_once = True  # the first rows take the focus, so the arrows move the chart's cursor
            interfaces.focus(scroll_visible=False)  # the device's name and state stay at the top
        if self.selected_interface() != before and self.history is not None:
            self._show_chart()
        wireless = self.query_one("#device-wireless", DataTable)
        title = self.query_one("#device-wireless-title", Static)
        title.display = detail.wireless is not None
        wireless.display = bool(detail.wireless)
        if detail.wireless is not None:
            title.update(render_wireless_title(detail))
            sync_table(wireless, [(c.mac, wireless_cells(c)) for c in detail.wireless])
