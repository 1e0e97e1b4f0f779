"""One device's recent history for the console's charts: interface rates, CPU and memory over hours.

Read from the rollups where they exist and from the raw samples for the tail the
rollups have not reached yet (``rollup_watermarks``: everything before a table's
mark is rolled up, nothing after it), so the newest minutes are on the chart at
once and a window of days costs hourly rows, not every sample. Each series gets
one bucket size chosen so it has at most ``MAX_POINTS`` points; a bucket's value
is the average of the raw values in it (a rollup row counts with the number of
raw values behind its average, so both sources give the same figure).

Every query names the device and a time range. The rollup tables are keyed
(bucket, device, ...); the raw tail is a few minutes at the end of tables written
in time order, which DuckDB's zone maps on ``ts`` skip to (migration 6 dropped
the raw (device, ts) index on purpose).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ispvm_tui.engine.api import DeviceHistory, InterfaceHistory
from ispvm_tui.engine.rollups import WIDTH_S

MAX_POINTS = 120
MAX_HOURS = 24.0 * 31  # beyond a month the hourly rows are what a capacity report wants, not this chart
# Bucket sizes, seconds: the first that keeps a series within MAX_POINTS is used. Multiples of 300 read
# the 5-minute rollup, multiples of 3600 the hourly one; smaller ones read raw samples only.
BUCKETS_S = (10, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)

Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


def bucket_for(span_s: float, max_points: int = MAX_POINTS) -> int:
    need = span_s / max_points
    return next((b for b in BUCKETS_S if b >= need), BUCKETS_S[-1])


def _segments(query: Query, family: str, bucket_s: int, since: float, until: float
              ) -> list[tuple[str | None, float, float]]:
    """(rollup resolution or None for raw, from, to) covering [since, until], coarsest first."""
    marks = dict(query("SELECT rollup, done_until FROM rollup_watermarks WHERE rollup LIKE ?", [f"{family}_%"]))
    segments: list[tuple[str | None, float, float]] = []
    start = since
    for resolution in ("1h", "5m"):
        if bucket_s % WIDTH_S[resolution]:  # a coarser bucket than the chart's would smear it
            continue
        end = max(start, min(float(marks.get(f"{family}_rollup_{resolution}", 0.0)), until))
        if end > start:
            segments.append((resolution, start, end))
            start = end
    segments.append((None, start, until))
    return segments


Sums = dict[tuple[Any, ...], list[float]]


def _add(sums: Sums, rows: list[tuple[Any, ...]], keys: int) -> None:
    """Merge (bucket, *keys, sum, count, sum, count, ...) rows: a bucket may straddle two sources."""
    for row in rows:
        key, figures = tuple(row[: keys + 1]), row[keys + 1:]
        acc = sums.setdefault(key, [0.0] * len(figures))
        for i, value in enumerate(figures):
            acc[i] += float(value or 0)


def _series(sums: Sums, key: tuple[Any, ...], pair: int) -> tuple[tuple[float, float], ...]:
    points = []
    for full_key, acc in sorted(sums.items(), key=lambda item: item[0][0]):
        total, count = acc[2 * pair], acc[2 * pair + 1]
        if full_key[1:] == key and count:
            points.append((float(full_key[0]), total / count))
    return tuple(points)


def read_history(query: Query, device: str, now: float, hours: float = 6.0,
                 interfaces: tuple[str, ...] = ()) -> DeviceHistory:
    """The device's series over the last ``hours`` (the caller checked the device exists)."""
    if not isinstance(hours, int | float) or not math.isfinite(hours) or hours <= 0:
        raise ValueError(f"hours must be a positive number, not {hours!r}")
    hours = min(float(hours), MAX_HOURS)
    span = hours * 3600.0
    bucket_s = bucket_for(span)
    since = math.floor((now - span) / bucket_s) * bucket_s
    b = float(bucket_s)

    itf_filter, itf_args = "", []
    if interfaces:
        itf_filter = f" AND interface IN ({', '.join('?' for _ in interfaces)})"
        itf_args = list(interfaces)
    itf_sums: Sums = {}
    for resolution, lo, hi in _segments(query, "interface", bucket_s, since, now):
        if resolution is None:
            sql = ("SELECT floor(ts / ?) * ? AS b, interface, sum(rx_bps), count(rx_bps), sum(tx_bps), "
                   "count(tx_bps) FROM interface_samples WHERE device = ? AND ts >= ? AND ts <= ?")
        else:
            sql = (f"SELECT floor(bucket / ?) * ? AS b, interface, sum(rx_bps_avg * rx_bps_samples), "
                   f"sum(rx_bps_samples), sum(tx_bps_avg * tx_bps_samples), sum(tx_bps_samples) "
                   f"FROM interface_rollup_{resolution} WHERE device = ? AND bucket >= ? AND bucket < ?")
        _add(itf_sums, query(sql + itf_filter + " GROUP BY ALL", [b, b, device, lo, hi, *itf_args]), 1)

    health_sums: Sums = {}
    for resolution, lo, hi in _segments(query, "health", bucket_s, since, now):
        if resolution is None:
            sql = ("SELECT floor(ts / ?) * ? AS b, sum(cpu_load), count(cpu_load), sum(free_memory), "
                   "count(free_memory) FROM health_samples WHERE device = ? AND ts >= ? AND ts <= ?")
        else:
            sql = (f"SELECT floor(bucket / ?) * ? AS b, sum(cpu_load_avg * cpu_load_samples), "
                   f"sum(cpu_load_samples), sum(free_memory_avg * free_memory_samples), sum(free_memory_samples) "
                   f"FROM health_rollup_{resolution} WHERE device = ? AND bucket >= ? AND bucket < ?")
        _add(health_sums, query(sql + " GROUP BY ALL", [b, b, device, lo, hi]), 0)

    # Total memory is not rolled up (it only changes with the hardware): the newest raw value in the window.
    total = query("SELECT total_memory FROM health_samples WHERE device = ? AND ts >= ? AND ts <= ? "
                  "AND total_memory IS NOT NULL ORDER BY ts DESC LIMIT 1", [device, max(since, now - 3600), now])
    names = sorted({key[1] for key in itf_sums} | set(interfaces))
    return DeviceHistory(
        device=device, since=float(since), until=float(now), bucket_s=bucket_s,
        interfaces=tuple(InterfaceHistory(name, _series(itf_sums, (name,), 0), _series(itf_sums, (name,), 1))
                         for name in names),
        cpu_load=_series(health_sums, (), 0),
        free_memory=_series(health_sums, (), 1),
        total_memory=int(total[0][0]) if total else None,
    )
