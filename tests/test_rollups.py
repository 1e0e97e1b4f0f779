"""Rollups and retention against a real DuckDB file: exact statistics, idempotence, what is never deleted."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ispvm_tui.config import Retention, load_config
from ispvm_tui.engine import audit_log, rollups
from ispvm_tui.engine.rollups import apply_retention, maintenance_once, roll_up
from ispvm_tui.engine.schema import MIGRATIONS
from ispvm_tui.engine.store import Store
from ispvm_tui.tomlsource import SourceError

T0 = 1_699_999_200.0  # an hour boundary, 2023-11-14 22:00 UTC
DAY = 86400.0
GRACE = 60.0
EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"

Row = tuple[Any, ...]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "rollups.duckdb", flush_s=0.05) as s:
        yield s


def _tx(store: Store, fn: Callable[[Any], Any]) -> Any:
    return store.transaction(fn).result(60)


def _roll(store: Store, now: float) -> dict[str, int]:
    return _tx(store, lambda con: roll_up(con, now, grace_s=GRACE))


def _p95(values: list[float]) -> float:
    """quantile_cont(x, 0.95): linear interpolation between the closest ranks."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def _bucket(ts: float, width: int) -> float:
    return float(ts // width * width)


def _rows(store: Store, table: str, keys: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(r[k] for k in keys): r for r in store.query_dicts(f"SELECT * FROM {table}")}


def _same(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    for column, value in expected.items():
        if isinstance(value, float):
            # Same numbers, different summation order: equal to the last few bits.
            assert actual[column] == pytest.approx(value, rel=1e-12), column
        else:
            assert actual[column] == value, column


def _summary(values: Iterable[float | None], stats: tuple[str, ...], name: str) -> dict[str, Any]:
    present = [v for v in values if v is not None]
    out: dict[str, Any] = {f"{name}_samples": len(present)}
    fns: dict[str, Callable[[list[float]], float]] = {
        "avg": statistics.fmean, "min": min, "max": max, "p95": _p95}
    for stat in stats:
        out[f"{name}_{stat}"] = float(fns[stat](present)) if present else None
    return out


# ---- interface traffic -------------------------------------------------------
INTERFACES = (("CORE1", "ether1"), ("CORE1", "ether2"), ("EDGE1", "sfp1"))


def _sample(ts: float, device: str, name: str, *, oper_up: bool = True, rx: float | None = None,
            tx: float | None = None, errors: float | None = None, discards: float | None = None) -> Row:
    """One interface_samples row in the engine's column order (counters are not rolled up: zeros)."""
    return (ts, device, name, "api", 1, True, oper_up, 10**9, 0, 0, rx, tx, 0, 0, 0, 0, errors, discards)


def _interface_rows(start: float, end: float, step: float, seed: int = 7) -> list[Row]:
    rng = random.Random(seed)
    rows = []
    for device, name in INTERFACES:
        ts, n = start, 0
        while ts < end:
            # The first sample of a counter has no rate; tx is missing on its own now and then,
            # and errors/discards have gaps of their own (a reset on one direction).
            rx = None if n == 0 else float(rng.randrange(0, 10**9))
            tx = None if n == 0 or n % 17 == 0 else float(rng.randrange(0, 10**9))
            errors = None if n == 0 or n % 13 == 0 else rng.choice((0.0, 0.0, 0.1, rng.uniform(0, 50)))
            discards = None if n == 0 or n % 11 == 0 else rng.uniform(0, 2000)
            oper_up = not (name == "ether2" and T0 + 2400 <= ts < T0 + 3000)
            rows.append(_sample(ts, device, name, oper_up=oper_up, rx=rx, tx=tx, errors=errors, discards=discards))
            ts, n = ts + step, n + 1
    return rows


def _expected_interfaces(rows: list[Row], width: int) -> dict[tuple[Any, ...], dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for r in rows:
        groups[(_bucket(r[0], width), r[1], r[2])].append(r)
    expected = {}
    for key, group in groups.items():
        expected[key] = {
            "samples": len(group),
            "oper_down_samples": sum(1 for r in group if r[6] is False),
            **_summary((r[10] for r in group), ("avg", "max", "p95"), "rx_bps"),
            **_summary((r[11] for r in group), ("avg", "max", "p95"), "tx_bps"),
            **_summary((r[16] for r in group), ("avg", "max"), "errors_ps"),
            **_summary((r[17] for r in group), ("avg", "max"), "discards_ps"),
        }
    return expected


def test_interface_rollups_are_exact_and_skip_buckets_in_progress(store: Store) -> None:
    end = T0 + 2 * 3600 + 15 * 60
    raw = _interface_rows(T0, end, 20.0)
    store.append("interface_samples", raw)
    store.flush()

    # 2h10m + grace: the 2h10m-2h15m bucket and the third hour are still in progress.
    now = T0 + 2 * 3600 + 10 * 60 + GRACE
    written = _roll(store, now)
    assert written["interface_rollup_5m"] == 26 * len(INTERFACES)
    assert written["interface_rollup_1h"] == 2 * len(INTERFACES)

    complete = [r for r in raw if r[0] < T0 + 2 * 3600 + 10 * 60]
    five = _rows(store, "interface_rollup_5m", ("bucket", "device", "interface"))
    expected_five = _expected_interfaces(complete, 300)
    assert five.keys() == expected_five.keys()
    for key, expected in expected_five.items():
        _same(five[key], expected)
    assert five[(T0 + 2700, "CORE1", "ether2")]["oper_down_samples"] == 15

    # Hourly rows come from the 5-minute rows, yet match statistics over the raw samples.
    hourly = _rows(store, "interface_rollup_1h", ("bucket", "device", "interface"))
    expected_hourly = _expected_interfaces([r for r in raw if r[0] < T0 + 7200], 3600)
    assert hourly.keys() == expected_hourly.keys()
    for key, expected in expected_hourly.items():
        _same(hourly[key], expected)
    assert hourly[(T0, "CORE1", "ether2")]["oper_down_samples"] == 30

    # Once its end plus the grace has passed, the last bucket is rolled; the third hour still is not.
    written = _roll(store, end + GRACE)
    assert written["interface_rollup_5m"] == len(INTERFACES)
    assert written["interface_rollup_1h"] == 0
    last = _rows(store, "interface_rollup_5m", ("bucket", "device", "interface"))
    _same(last[(T0 + 7800, "EDGE1", "sfp1")], _expected_interfaces(raw, 300)[(T0 + 7800, "EDGE1", "sfp1")])


def test_rolling_up_again_adds_nothing_and_late_samples_do_not_double_count(store: Store) -> None:
    store.append("interface_samples", _interface_rows(T0, T0 + 3600, 30.0))
    store.flush()
    now = T0 + 3600 + GRACE
    assert sum(_roll(store, now).values()) > 0
    five_before = store.query("SELECT * FROM interface_rollup_5m ORDER BY ALL")
    hourly_before = store.query("SELECT * FROM interface_rollup_1h ORDER BY ALL")

    assert set(_roll(store, now).values()) == {0}
    # A clock that steps back never moves the marks back, so nothing is rolled twice.
    assert set(_roll(store, now - 3600).values()) == {0}
    assert set(_roll(store, now).values()) == {0}
    # A sample that arrives after its bucket was rolled up changes nothing.
    store.append("interface_samples", [_sample(T0 + 301, "CORE1", "ether1", rx=9e12, tx=9e12, discards=9e9)])
    store.flush()
    assert set(_roll(store, now + 120).values()) == {0}
    assert store.query("SELECT * FROM interface_rollup_5m ORDER BY ALL") == five_before
    assert store.query("SELECT * FROM interface_rollup_1h ORDER BY ALL") == hourly_before
    assert store.query("SELECT done_until FROM rollup_watermarks WHERE rollup = 'interface_rollup_1h'") == [
        (T0 + 3600,)]


@pytest.mark.parametrize("how", ["raw rows deleted", "late sample"])
def test_hourly_p95_falls_back_to_the_largest_5_minute_p95(store: Store, how: str) -> None:
    raw = [r for r in _interface_rows(T0, T0 + 3600, 20.0) if r[2] == "ether1"]
    store.append("interface_samples", raw)
    store.flush()
    _roll(store, T0 + 1800 + GRACE)  # the first six 5-minute buckets; the hour is not complete yet
    if how == "raw rows deleted":
        _tx(store, lambda con: con.execute("DELETE FROM interface_samples WHERE ts < ?", [T0 + 600]))
    else:
        store.append("interface_samples", [_sample(T0 + 10, "CORE1", "ether1", rx=9e12, tx=9e12)])
        store.flush()
    _roll(store, T0 + 3600 + GRACE)

    hour = _rows(store, "interface_rollup_1h", ("bucket", "device", "interface"))[(T0, "CORE1", "ether1")]
    five = _expected_interfaces(raw, 300)
    assert hour["rx_bps_p95"] == max(f["rx_bps_p95"] for f in five.values())
    assert hour["tx_bps_p95"] == max(f["tx_bps_p95"] for f in five.values())
    assert hour["rx_bps_p95"] != pytest.approx(_p95([r[10] for r in raw if r[10] is not None]), rel=1e-12)
    # Averages and maxima come from the 5-minute rows: what they summarised, nothing else.
    _same(hour, {k: v for k, v in _expected_interfaces(raw, 3600)[(T0, "CORE1", "ether1")].items()
                 if not k.endswith("_p95")})


def test_a_database_from_before_the_error_counters_upgrades_in_place(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "old.duckdb"
    monkeypatch.setattr("ispvm_tui.engine.store.MIGRATIONS", MIGRATIONS[:2])  # the release before migration 3
    with Store(db, flush_s=0.05) as old:
        old.append("interface_samples", [(T0 + 10.0 * i, "CORE1", "ether1", "api", 1, True, True, 10**9, 0, 0,
                                          1e6, 2e6) for i in range(30)])
        old.flush()


        def rolled_by_the_old_release(con: Any) -> None:  # its first bucket, in the old columns
            con.execute("INSERT INTO interface_rollup_5m (bucket, device, interface, samples, oper_down_samples, "
                        "rx_bps_samples, rx_bps_avg, tx_bps_samples, tx_bps_avg) "
                        "VALUES (?, 'CORE1', 'ether1', 30, 0, 30, 1e6, 30, 2e6)", [T0])
            con.execute("UPDATE rollup_watermarks SET done_until = ? WHERE rollup = 'interface_rollup_5m'", [T0 + 300])

        _tx(old, rolled_by_the_old_release)
    monkeypatch.undo()
    with Store(db, flush_s=0.05) as store:
        assert store.schema_version() == MIGRATIONS[-1][0]
        assert store.query("SELECT count(*), count(rx_errors), count(discards_ps) FROM interface_samples") == [
            (30, 0, 0)]
        store.append("interface_samples", [_sample(T0 + 300 + 10.0 * i, "CORE1", "ether1", rx=1e6, tx=2e6,
                                                   errors=0.5, discards=float(i)) for i in range(30)])
        store.flush()
        _roll(store, T0 + 3600 + GRACE)
        five = _rows(store, "interface_rollup_5m", ("bucket", "device", "interface"))
        # Rolled before the upgrade: no error or discard rates behind it.
        _same(five[(T0, "CORE1", "ether1")], {"samples": 30, "errors_ps_samples": 0, "errors_ps_avg": None,
                                              "discards_ps_samples": 0, "discards_ps_max": None})
        _same(five[(T0 + 300, "CORE1", "ether1")], {"samples": 30, "errors_ps_samples": 30, "errors_ps_avg": 0.5,
                                                    "discards_ps_avg": 14.5, "discards_ps_max": 29.0})
        hour = _rows(store, "interface_rollup_1h", ("bucket", "device", "interface"))[(T0, "CORE1", "ether1")]
        # The hour weights by the samples behind each average: the old bucket counts for none.
        _same(hour, {"samples": 60, "rx_bps_samples": 60, "errors_ps_samples": 30, "errors_ps_avg": 0.5,
                     "discards_ps_avg": 14.5, "discards_ps_max": 29.0})


# ---- health and probes -----------------------------------------------------------
def test_health_and_probe_rollups(store: Store) -> None:
    rng = random.Random(3)
    health, probes = [], []
    for i in range(130):  # every 30 s for 65 minutes
        ts = T0 + 30 * i
        cpu = None if i % 11 == 0 else rng.randrange(0, 101)
        free = rng.randrange(100 * 2**20, 900 * 2**20)
        health.append((ts, "CORE1", "api", 1000.0 + ts - T0, cpu, 2**30, free, "7.16.2", 950_000, None, None))
        lost = i % 9 == 0  # every packet lost: no RTT, no jitter
        rtt = None if lost else rng.uniform(5, 80)
        probes.append((ts, "EDGE1", "198.51.100.1", 5, 0 if lost else 5, 100.0 if lost else rng.choice((0.0, 20.0)),
                       rtt, rtt, rtt, None if lost else rng.uniform(0, 5), None))
    store.append("health_samples", health)
    store.append("probe_samples", probes)
    store.flush()
    written = _roll(store, T0 + 3900 + GRACE)
    assert written["health_rollup_5m"] == 13 and written["health_rollup_1h"] == 1
    assert written["probe_rollup_5m"] == 13 and written["probe_rollup_1h"] == 1

    def expect_health(rows: list[Row]) -> dict[str, Any]:
        return {"samples": len(rows), **_summary((r[4] for r in rows), ("avg", "max", "p95"), "cpu_load"),
                **_summary((r[6] for r in rows), ("min", "avg"), "free_memory")}

    def expect_probe(rows: list[Row]) -> dict[str, Any]:
        return {"samples": len(rows), **_summary((r[5] for r in rows), ("avg", "max"), "loss_pct"),
                **_summary((r[7] for r in rows), ("avg", "max", "p95"), "rtt_ms"),
                **_summary((r[9] for r in rows), ("avg",), "jitter_ms")}

    for start, width in [(T0, 300), (T0 + 3300, 300), (T0, 3600)]:
        res = "5m" if width == 300 else "1h"
        in_bucket = [r for r in health if start <= r[0] < start + width]
        _same(_rows(store, f"health_rollup_{res}", ("bucket", "device"))[(start, "CORE1")], expect_health(in_bucket))
        in_bucket = [r for r in probes if start <= r[0] < start + width]
        _same(_rows(store, f"probe_rollup_{res}", ("bucket", "device", "target"))[(start, "EDGE1", "198.51.100.1")],
              expect_probe(in_bucket))
    assert store.query("SELECT route_count FROM health_samples LIMIT 1") == [(950_000,)]


def test_new_sample_tables_take_the_rows_the_engine_writes(store: Store) -> None:
    store.append("sensor_samples", [(T0, "CORE1", "api", "cpu-temperature", 51.0, "C", None),
                                    (T0, "CORE1", "snmp", "psu1-state", None, None, "ok")])
    store.append("neighbor_samples", [(T0, "CORE1", "api", "ether1", "EDGE1", "ether1", "10.0.0.2",
                                       "AA:BB:CC:00:00:01", "MikroTik", "mndp")])
    store.flush()
    assert store.query("SELECT count(*) FROM sensor_samples") == [(2,)]
    assert store.query("SELECT remote_identity, protocol FROM neighbor_samples") == [("EDGE1", "mndp")]


# ---- retention -------------------------------------------------------------------
NOW = T0 + 1000 * DAY


def _seed_events(store: Store) -> None:
    def seed(con: Any) -> None:
        def alert(aid: str, state: str, ends_days_ago: float | None, incident: str | None = None) -> None:
            ends = None if ends_days_ago is None else NOW - ends_days_ago * DAY
            con.execute("INSERT INTO alerts (id, rule, entity_type, entity_id, severity, state, starts_at, ends_at, "
                        "incident_id) VALUES (?, 'r', 'device', 'CORE1', 'major', ?, ?, ?, ?)",
                        [aid, state, NOW - 500 * DAY, ends, incident])

        def incident(iid: str, status: str, closed_days_ago: float | None) -> None:
            closed = None if closed_days_ago is None else NOW - closed_days_ago * DAY
            con.execute("INSERT INTO incidents (id, root_key, title, status, severity, priority, opened_at, "
                        "closed_at, updated_at) VALUES (?, ?, 't', ?, 'major', 'P2', ?, ?, ?)",
                        [iid, iid, status, NOW - 500 * DAY, closed, NOW - 500 * DAY])

        def event(eid: str, status: str, finished_days_ago: float | None) -> None:
            finished = None if finished_days_ago is None else NOW - finished_days_ago * DAY
            con.execute("INSERT INTO outbox (event_id, endpoint, incident_id, event_type, incident, created_at, "
                        "status, next_attempt_at, finished_at) VALUES (?, 'tickets', 'i', 'incident.opened', '{}', "
                        "?, ?, ?, ?)", [eid, NOW - 500 * DAY, status, NOW - 500 * DAY, finished])
            con.execute("INSERT INTO deliveries VALUES (?, ?, 'tickets', 1, ?, 503, 'retry', NULL, 0.1)",
                        [f"d-{eid}", eid, NOW - 500 * DAY])

        alert("firing-old", "firing", None)
        alert("resolved-old", "resolved", 400)
        alert("resolved-of-open-incident", "resolved", 400, incident="open-old")
        alert("resolved-recent", "resolved", 10)
        incident("open-old", "open", None)
        incident("acked-old", "acked", None)
        incident("closed-old", "closed", 400)
        incident("closed-recent", "closed", 10)
        event("pending-old", "pending", None)
        event("delivered-old", "delivered", 400)
        event("dead-old", "dead", 400)
        event("delivered-recent", "delivered", 10)
        for days_ago in (1100, 400):
            audit_log.append(con, NOW - days_ago * DAY, "noc", "incident.ack", "x", None)
        for days_ago in (8, 6):
            con.execute("INSERT INTO poll_log VALUES (?, 'CORE1', 'api', true, 0.2, NULL, NULL, NULL, false)",
                        [NOW - days_ago * DAY])
        for table, days_ago in (("interface_rollup_5m", 100), ("interface_rollup_5m", 80),
                                ("interface_rollup_1h", 800), ("interface_rollup_1h", 700)):
            con.execute(f"INSERT INTO {table} (bucket, device, interface, samples, oper_down_samples, "
                        "rx_bps_samples, tx_bps_samples) VALUES (?, 'CORE1', 'ether1', 1, 0, 0, 0)",
                        [_bucket(NOW - days_ago * DAY, 3600)])

    _tx(store, seed)


def _ids(store: Store, sql: str) -> set[str]:
    return {r[0] for r in store.query(sql)}


def test_retention_deletes_old_rows_but_never_open_work(store: Store) -> None:
    _seed_events(store)
    old = _interface_rows(NOW - 20 * DAY, NOW - 20 * DAY + 600, 60.0)
    recent = _interface_rows(NOW - DAY, NOW - DAY + 600, 60.0)
    store.append("interface_samples", old + recent)
    store.flush()
    retention = Retention(days={"audit": 1095})

    result = asyncio.run(maintenance_once(store, NOW, retention))

    deleted = result["deleted"]
    assert deleted["interface_samples"] == len(old)
    assert deleted["poll_log"] == 1 and deleted["audit"] == 1
    assert deleted["interface_rollup_1h"] == 1
    # The old samples were rolled up before they went: their summary outlives them.
    assert deleted["interface_rollup_5m"] == 1
    assert store.query("SELECT count(*) FROM interface_rollup_5m WHERE bucket = ?",
                       [_bucket(NOW - 20 * DAY, 300)]) == [(len(INTERFACES),)]
    assert result["rolled_up"]["interface_rollup_5m"] == 4 * len(INTERFACES)

    assert _ids(store, "SELECT id FROM alerts") == {"firing-old", "resolved-of-open-incident", "resolved-recent"}
    assert _ids(store, "SELECT id FROM incidents") == {"open-old", "acked-old", "closed-recent"}
    assert _ids(store, "SELECT event_id FROM outbox") == {"pending-old", "delivered-recent"}
    # Old attempts are history, except those of an event still waiting to go out.
    assert _ids(store, "SELECT event_id FROM deliveries") == {"pending-old"}
    assert store.query("SELECT count(*) FROM interface_samples") == [(len(recent),)]

    again = asyncio.run(maintenance_once(store, NOW, retention))
    assert set(again["deleted"].values()) == {0}
    assert set(again["rolled_up"].values()) == {0}


def test_retention_alone_keeps_samples_that_are_not_rolled_up_yet(store: Store) -> None:
    old = _interface_rows(NOW - 20 * DAY, NOW - 20 * DAY + 600, 60.0)
    store.append("interface_samples", old)
    store.flush()
    deleted = _tx(store, lambda con: apply_retention(con, NOW, Retention()))
    assert deleted["interface_samples"] == 0
    result = asyncio.run(maintenance_once(store, NOW, Retention()))
    assert result["deleted"]["interface_samples"] == len(old)


def test_retention_covers_exactly_the_configurable_tables() -> None:
    assert sorted(rollups.retained_tables()) == sorted(Retention.tables())
    assert set(Retention().days_for(t) for t in Retention.tables()) == {14, 7, 90, 730, 365}


# ---- configuration -------------------------------------------------------------
def test_retention_overrides_and_defaults() -> None:
    retention = Retention(samples_days=30, days={"neighbor_samples": 3})
    assert retention.days_for("interface_samples") == 30
    assert retention.days_for("neighbor_samples") == 3
    assert retention.days_for("incidents") == 365
    assert retention.run_every_s == 300


@pytest.mark.parametrize(("days", "words"), [
    ({"interface_sample": 30}, "unknown table 'interface_sample'; tables with a retention: interface_samples"),
    ({"audit": 0}, "audit: retention must be at least 1 day"),
])
def test_bad_retention_overrides_are_rejected(days: dict[str, int], words: str) -> None:
    with pytest.raises(ValidationError) as info:
        Retention(days=days)
    assert words in str(info.value)


def test_unknown_table_in_the_config_file_names_file_line_and_field(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    assert "days = { audit = 1095 }" in text
    text = text.replace("days = { audit = 1095 }", "days = { audti = 1095 }")
    path = tmp_path / "retention.toml"
    path.write_text(text)
    line = text[: text.index("audti")].count("\n") + 1
    with pytest.raises(SourceError) as info:
        load_config(path)
    assert f"{path}:{line}: retention.days: Value error, unknown table 'audti'" in str(info.value)


# ---- volume (informational) ----------------------------------------------------
def test_a_day_of_a_hundred_interfaces(store: Store) -> None:
    interfaces, step = 100, 60
    count = 86400 // step

    def load(con: Any) -> None:
        con.execute("INSERT INTO interface_samples SELECT ? + (i // ?) * ?, 'CORE1', 'if' || (i % ?), 'snmp', 0, "
                    "true, true, 0, 0, 0, (i * 7919) % 1000000007, (i * 104729) % 1000000007, "
                    "0, 0, 0, 0, (i % 7) * 0.5, (i % 101) * 3.0 FROM range(?) t(i)",
                    [T0, interfaces, step, interfaces, interfaces * count])

    _tx(store, load)
    started = time.perf_counter()
    result = asyncio.run(maintenance_once(store, T0 + DAY + GRACE, Retention()))
    print(f"rolled up {interfaces * count} samples in {time.perf_counter() - started:.2f}s")
    assert result["rolled_up"]["interface_rollup_5m"] == interfaces * 288
    assert result["rolled_up"]["interface_rollup_1h"] == interfaces * 24
