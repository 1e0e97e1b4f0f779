"""Rollups and retention: what the store keeps, at what resolution, for how long.

Raw samples are kept for days; 5-minute and hourly summaries (average, maximum,
95th percentile ...) keep the long-term picture for capacity planning and SLA
reports at a small fraction of the size. The engine runs ``maintenance_once``
every ``[retention].run_every_s``: roll up first, then delete, in one
transaction, so a raw sample is never deleted before it has been summarised.

Progress is tracked per rollup in ``rollup_watermarks``: ``done_until`` is the
start of the first bucket not yet rolled up. A run rolls every complete bucket
in ``[done_until, floor((now - grace_s) / width) * width)`` with one
``INSERT ... SELECT ... GROUP BY`` per table, then moves the mark. So a re-run
writes nothing, and a sample that reaches the store after its bucket was
rolled up is not counted: summaries are written once and never revised, and
``grace_s`` covers the normal delay between a poll and its rows reaching disk.

Hourly rows are built from the 5-minute rows: counts add up, maxima and minima
are taken again, and averages are weighted by ``<metric>_samples`` (the number
of non-NULL raw values behind each average) so they equal the average of the
raw values. A percentile cannot be combined like that, so an hour's p95 is
computed from the raw samples when they are all still there (their count equals
the sum of the 5-minute counts). Otherwise (raw rows already deleted, or a late
sample arrived) it falls back to the largest 5-minute p95: never below the true
value, which is the safe side for capacity planning.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ispvm_tui.engine import audit_log

if TYPE_CHECKING:
    import duckdb

    from ispvm_tui.config import Retention
    from ispvm_tui.engine.store import Store

DEFAULT_GRACE_S = 60.0
DAY_S = 86400.0

Resolution = Literal["5m", "1h"]
Stat = Literal["avg", "min", "max", "p95"]

WIDTH_S: dict[Resolution, int] = {"5m": 300, "1h": 3600}

_RAW_STAT = {"avg": "avg({})", "min": "min({})", "max": "max({})", "p95": "quantile_cont({}, 0.95)"}


@dataclass(frozen=True)
class Measure:
    """One raw column summarised as ``<name>_samples`` plus ``<name>_<stat>`` per statistic."""

    name: str
    source: str  # the raw column
    stats: tuple[Stat, ...]


@dataclass(frozen=True)
class Family:
    """A raw sample table and its two rollup tables, ``<prefix>_rollup_5m`` and ``_1h``."""

    prefix: str
    raw: str
    keys: tuple[str, ...]  # grouping columns besides the bucket
    measures: tuple[Measure, ...]
    counts: tuple[tuple[str, str], ...] = ()  # (column, SQL condition): rows counted when it holds

    def table(self, resolution: Resolution) -> str:
        return f"{self.prefix}_rollup_{resolution}"


# The column layout must match migrations 2 and 3 in schema.py (written out there so it never changes
# once applied); tests/test_rollups.py runs every family against a migrated database.
FAMILIES: tuple[Family, ...] = (
    Family(
        prefix="interface",
        raw="interface_samples",
        keys=("device", "interface"),
        measures=(
            Measure("rx_bps", "rx_bps", ("avg", "max", "p95")),
            Measure("tx_bps", "tx_bps", ("avg", "max", "p95")),
            # Added by migration 3: a capacity rule asks "how many, how often at worst", not a percentile.
            Measure("errors_ps", "errors_ps", ("avg", "max")),
            Measure("discards_ps", "discards_ps", ("avg", "max")),
        ),
        # Literally "reported down": admin-disabled ports count too, which is what an
        # availability report over a port that was switched off should show.
        counts=(("oper_down_samples", "oper_up = false"),),
    ),
    Family(
        prefix="health",
        raw="health_samples",
        keys=("device",),
        measures=(
            Measure("cpu_load", "cpu_load", ("avg", "max", "p95")),
            Measure("free_memory", "free_memory", ("min", "avg")),
        ),
    ),
    Family(
        prefix="probe",
        raw="probe_samples",
        keys=("device", "target"),
        measures=(
            Measure("loss_pct", "loss_pct", ("avg", "max")),
            # One value per probe run, its average RTT: max and p95 then describe the same
            # population (runs), and a run that lost every packet has no RTT and is not counted.
            Measure("rtt_ms", "rtt_avg_ms", ("avg", "max", "p95")),
            Measure("jitter_ms", "jitter_ms", ("avg",)),
        ),
    ),
)


@dataclass(frozen=True)
class _Keep:
    """How a table ages out: rows with ``column`` older than the cutoff go, if ``deletable`` holds."""

    column: str
    deletable: str | None = None


_RETENTION: dict[str, _Keep] = {
    **{table: _Keep("ts") for table in ("interface_samples", "health_samples", "bgp_samples", "ospf_samples",
                                        "sensor_samples", "probe_samples", "neighbor_samples", "poll_log",
                                        "events")},
    # The audit log goes oldest first and keeps where it was cut (engine/audit_log.py: prune).
    "audit": _Keep("ts"),
    **{f.table(res): _Keep("bucket") for f in FAMILIES for res in WIDTH_S},
    # A resolved alert stays while the incident it belongs to is open: the incident shows it.
    "alerts": _Keep("ends_at", "state = 'resolved' AND (incident_id IS NULL OR incident_id NOT IN "
                               "(SELECT id FROM incidents WHERE status <> 'closed'))"),
    "incidents": _Keep("closed_at", "status = 'closed'"),
    "config_checks": _Keep("ts"),
    # Old versions go; the newest of each device, category and source stays whatever its age: it is the
    # baseline that source's next fingerprint is compared with.
    "config_versions": _Keep("taken_at", "(device, category, version) NOT IN (SELECT device, category, "
                                         "max(version) FROM config_versions GROUP BY device, category, source)"),
    "incident_events": _Keep("ts", "incident_id NOT IN (SELECT id FROM incidents WHERE status <> 'closed')"),
    # Delivered and dead events go; pending ones (a resend included) stay with their attempt history.
    "outbox": _Keep("finished_at", "status <> 'pending'"),
    "deliveries": _Keep("attempted_at", "event_id NOT IN (SELECT event_id FROM outbox WHERE status = 'pending')"),
}


def _feeds() -> dict[str, tuple[str, ...]]:
    """Rollups that still need a table's rows until they have rolled past them."""
    feeds: dict[str, tuple[str, ...]] = {}
    for f in FAMILIES:
        # Raw rows feed the 5-minute rollup and the hourly p95; 5-minute rows feed the hourly rollup.
        feeds[f.raw] = (f.table("5m"), f.table("1h"))
        feeds[f.table("5m")] = (f.table("1h"),)
    return feeds


# ---- SQL ------------------------------------------------------------------
def _bucket(column: str, resolution: Resolution) -> str:
    width = WIDTH_S[resolution]
    return f"floor({column} / {width}) * {width}"


def _five_minute_sql(f: Family) -> str:
    """Raw samples -> 5-minute rows, one statement for every device and bucket in the window."""
    cols = [f"{_bucket('ts', '5m')} AS bucket", *f.keys, "count(*) AS samples"]
    cols += [f"count(*) FILTER (WHERE {cond}) AS {name}" for name, cond in f.counts]
    for m in f.measures:
        cols.append(f"count({m.source}) AS {m.name}_samples")
        cols += [f"{_RAW_STAT[s].format(m.source)} AS {m.name}_{s}" for s in m.stats]
    return (f"INSERT INTO {f.table('5m')} BY NAME SELECT {', '.join(cols)} FROM {f.raw} "
            f"WHERE ts >= $start AND ts < $end GROUP BY ALL")


def _combine(m: Measure, stat: Stat) -> str:
    """One hourly statistic from the 5-minute rows of the hour."""
    col, weight = f"{m.name}_{stat}", f"{m.name}_samples"
    if stat == "avg":
        # nullif: a metric with no value in the hour is NULL, not a division by zero (inf in DuckDB).
        return f"sum({col} * {weight}) / nullif(sum({weight}), 0)"
    if stat == "min":
        return f"min({col})"
    return f"max({col})"  # max, and p95 when the raw samples are gone (see the module docstring)


def _hourly_sql(f: Family) -> str:
    """5-minute rows -> hourly rows; p95 from the raw samples when all of them are still stored."""
    five = [f"{_bucket('bucket', '1h')} AS bucket", *f.keys, "sum(samples) AS samples"]
    five += [f"sum({name}) AS {name}" for name, _ in f.counts]
    for m in f.measures:
        five.append(f"sum({m.name}_samples) AS {m.name}_samples")
        five += [f"{_combine(m, s)} AS {m.name}_{s}" for s in m.stats]
    sql = f"SELECT {', '.join(five)} FROM {f.table('5m')} WHERE bucket >= $start AND bucket < $end GROUP BY ALL"
    p95 = [m for m in f.measures if "p95" in m.stats]
    if not p95:
        return f"INSERT INTO {f.table('1h')} BY NAME {sql}"
    raw = [f"{_bucket('ts', '1h')} AS bucket", *f.keys, "count(*) AS samples"]
    raw += [f"quantile_cont({m.source}, 0.95) AS {m.name}_p95" for m in p95]
    raw_sql = f"SELECT {', '.join(raw)} FROM {f.raw} WHERE ts >= $start AND ts < $end GROUP BY ALL"
    pick = ", ".join(f"CASE WHEN r.samples = h.samples THEN r.{m.name}_p95 ELSE h.{m.name}_p95 END AS {m.name}_p95"
                     for m in p95)
    join = " AND ".join(f"r.{k} = h.{k}" for k in ("bucket", *f.keys))
    return (f"INSERT INTO {f.table('1h')} BY NAME SELECT h.* REPLACE ({pick}) "
            f"FROM ({sql}) h LEFT JOIN ({raw_sql}) r ON {join}")


# ---- rollups ----------------------------------------------------------------
def _watermark(con: duckdb.DuckDBPyConnection, rollup: str) -> float:
    row = con.execute("SELECT done_until FROM rollup_watermarks WHERE rollup = ?", [rollup]).fetchone()
    return float(row[0]) if row else 0.0


def _set_watermark(con: duckdb.DuckDBPyConnection, rollup: str, done_until: float) -> None:
    con.execute("INSERT INTO rollup_watermarks VALUES (?, ?) ON CONFLICT (rollup) "
                "DO UPDATE SET done_until = excluded.done_until", [rollup, done_until])


def _roll(con: duckdb.DuckDBPyConnection, rollup: str, sql: str, resolution: Resolution,
          ready_until: float) -> int:
    """Roll every bucket between the watermark and ``ready_until`` (floored to a bucket start)."""
    width = WIDTH_S[resolution]
    start = _watermark(con, rollup)
    end = float(math.floor(ready_until / width) * width)
    if end <= start:  # nothing complete yet, or the clock went back: never move the mark backwards
        return 0
    written = con.execute(sql, {"start": start, "end": end}).fetchone()
    _set_watermark(con, rollup, end)
    return int(written[0]) if written else 0


def roll_up(con: duckdb.DuckDBPyConnection, now: float, *, grace_s: float = DEFAULT_GRACE_S) -> dict[str, int]:
    """Write every complete bucket (end + grace_s <= now) not rolled up yet; rows written per table."""
    written: dict[str, int] = {}
    for f in FAMILIES:
        written[f.table("5m")] = _roll(con, f.table("5m"), _five_minute_sql(f), "5m", now - grace_s)
        # An hour is rolled only once all of its 5-minute rows exist.
        ready = min(now - grace_s, _watermark(con, f.table("5m")))
        written[f.table("1h")] = _roll(con, f.table("1h"), _hourly_sql(f), "1h", ready)
    return written


# ---- retention ----------------------------------------------------------------
def _delete_sql(table: str, keep: _Keep) -> str:
    sql = f"DELETE FROM {table} WHERE {keep.column} < ?"
    return f"{sql} AND ({keep.deletable})" if keep.deletable else sql


def apply_retention(con: duckdb.DuckDBPyConnection, now: float, retention: Retention) -> dict[str, int]:
    """Delete rows older than each table's retention; rows deleted per table.

    Open incidents, firing alerts and pending outbox rows are kept whatever their age, and
    rows a rollup has not consumed yet are kept until it has, so calling this alone is safe.
    """
    feeds = _feeds()
    deleted: dict[str, int] = {}
    for table, keep in _RETENTION.items():
        cutoff = now - retention.days_for(table) * DAY_S
        cutoff = min([cutoff, *(_watermark(con, rollup) for rollup in feeds.get(table, ()))])
        if table == "audit":
            deleted[table] = audit_log.prune(con, cutoff, now)
            continue
        row = con.execute(_delete_sql(table, keep), [cutoff]).fetchone()
        deleted[table] = int(row[0]) if row else 0
    return deleted


def retained_tables() -> tuple[str, ...]:
    """Every table apply_retention manages: the same set Retention.tables() accepts overrides for."""
    return tuple(_RETENTION)


async def maintenance_once(store: Store, now: float, retention: Retention, *,
                           grace_s: float = DEFAULT_GRACE_S) -> dict[str, dict[str, int]]:
    """Roll up, then apply retention, in one store transaction on the writer thread.

    Returns ``{"rolled_up": {table: rows written}, "deleted": {table: rows deleted}}``.
    The engine calls this every ``retention.run_every_s``; a failure rolls both back.
    """

    def job(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
        return {"rolled_up": roll_up(con, now, grace_s=grace_s), "deleted": apply_retention(con, now, retention)}

    return await asyncio.wrap_future(store.transaction(job))
