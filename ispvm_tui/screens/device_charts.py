"""Charts for the device detail: a text sparkline per interface row, and the history chart of one interface.

The history chart is Textual's own Sparkline (one per series) with its axis as text above it: the
peak, the low and the latest value, and the span the buckets cover. The row sparklines are text so
that they fit a DataTable cell; they scale from zero, so an idle port stays flat at the bottom
instead of showing noise magnified to full height.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from ispvm_tui.engine.api import DeviceHistory

BLOCKS = "▁▂▃▄▅▆▇█"


def bits(bps: float | None) -> str:
    if bps is None:
        return "—"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if bps >= size:
            return f"{bps / size:.1f}{unit}"
    return f"{bps:.0f}"


def spark_text(values: Sequence[float], width: int = 12) -> str:
    """The last ``width`` values as block characters, scaled from 0 to their maximum; "" without values."""
    shown = list(values)[-width:]
    if not shown:
        return ""
    top = max(shown)
    if top <= 0:
        return BLOCKS[0] * len(shown)
    return "".join(BLOCKS[min(len(BLOCKS) - 1, int(v / top * (len(BLOCKS) - 1) + 0.5))] if v > 0 else " "
                   for v in shown)


def span_text(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    if hours >= 48:
        return f"{hours // 24}d"
    return f"{hours}h{rest // 60:02d}m" if hours and rest >= 60 else f"{hours}h" if hours else f"{rest // 60}m"


def filled(points: Sequence[tuple[float, float]], bucket_s: float) -> list[float]:
    """Values on the bucket grid from the first point to the last: a bucket without a sample is 0
    (a port that was not polled moved nothing the chart can show)."""
    if not points:
        return []
    by_start = dict(points)
    first, last = points[0][0], points[-1][0]
    count = round((last - first) / bucket_s) + 1
    return [by_start.get(first + i * bucket_s, 0.0) for i in range(count)]


def _axis(label: str, values: Sequence[float], unit: str) -> Text:
    text = Text(f"{label:<4}", style="bold")
    if not values:
        return text.append("no samples yet", style="dim")
    fmt = (lambda v: f"{v:.0f}%") if unit == "%" else bits
    # Textual's Sparkline spans lowest to highest: both ends are named so the height can be read.
    text.append(f"peak {fmt(max(values))}  low {fmt(min(values))}  last {fmt(values[-1])}")
    return text


class HistoryChart(Vertical):
    """One interface's rx and tx, and the device's CPU, over the history's window."""

    DEFAULT_CSS = """
    HistoryChart { height: auto; }
    HistoryChart Sparkline { height: 3; margin: 0 0 0 4; }
    HistoryChart #chart-cpu { height: 2; }
    HistoryChart Static { height: auto; }
    """

    def __init__(self) -> None:
        super().__init__(id="device-chart")
        self.interface: str | None = None
        self.history: DeviceHistory | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("History: reading…", style="dim"), id="chart-title")
        yield Static(id="chart-rx-axis")
        yield Sparkline([], id="chart-rx")
        yield Static(id="chart-tx-axis")
        yield Sparkline([], id="chart-tx")
        yield Static(id="chart-cpu-axis")
        yield Sparkline([], id="chart-cpu")

    def show(self, history: DeviceHistory | None, interface: str | None, error: str | None = None) -> None:
        self.history, self.interface = history, interface
        title = self.query_one("#chart-title", Static)
        if history is None:
            title.update(Text(f"History: {error}" if error else "History: reading…",
                              style="bold red" if error else "dim"))
            return
        itf = next((i for i in history.interfaces if i.name == interface), None)
        rx = filled(itf.rx_bps if itf else (), history.bucket_s)
        tx = filled(itf.tx_bps if itf else (), history.bucket_s)
        cpu = filled(history.cpu_load, history.bucket_s)
        first = min((p[0][0] for p in (itf.rx_bps if itf else (), history.cpu_load) if p), default=None)
        heading = Text(f"History of {interface or '(no interface selected)'}", style="bold underline")
        heading.append(f"  last {span_text(history.until - history.since)}, "
                       f"{span_text(history.bucket_s) if history.bucket_s >= 60 else f'{history.bucket_s}s'} "
                       "averages", style="dim")
        if first is not None:
            heading.append(f", since {time.strftime('%H:%M', time.localtime(first))}", style="dim")
        if error:
            heading.append(f"  ⚠ refresh failed: {error}", style="bold red")
        title.update(heading)
        self.query_one("#chart-rx-axis", Static).update(_axis("rx", rx, "bps"))
        self.query_one("#chart-tx-axis", Static).update(_axis("tx", tx, "bps"))
        cpu_axis = _axis("CPU", cpu, "%")
        if history.free_memory and history.total_memory:
            used = 1 - history.free_memory[-1][1] / history.total_memory
            cpu_axis.append(f"   memory {used:.0%} used")
        self.query_one("#chart-cpu-axis", Static).update(cpu_axis)
        for selector, values in (("#chart-rx", rx), ("#chart-tx", tx), ("#chart-cpu", cpu)):
            self.query_one(selector, Sparkline).data = values
