"""device_history: a device's series from the rollups and the raw tail, on a real DuckDB file and the lab."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ispvm_tui.demo import DemoRun, start_demo
from ispvm_tui.engine.api import DeviceHistory
from ispvm_tui.engine.device_history import MAX_POINTS, bucket_for, read_history
from ispvm_tui.engine.rollups import roll_up
from ispvm_tui.engine.store import Store
from ispvm_tui.lab.scenario import load_scenario
from tests.waiting import wait_for

T0 = 1_699_999_200.0  # an hour boundary
QUIET = load_scenario("root-recovers-symptom-stays").model_copy(update={"timeline": []})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "history.duckdb", flush_s=0.05) as s:
        yield s


def _itf_row(ts: float, device: str, name: str, rx: float, tx: float) -> tuple[object, ...]:
    return (ts, device, name, "api", 1, True, True, 10**9, 0, 0, rx, tx, 0, 0, 0, 0, 0.0, 0.0)


def _health_row(ts: float, device: str, cpu: int, free: int) -> tuple[object, ...]:
    return (ts, device, "api", 1000.0, cpu, 4 * 2**30, free, "7.16", 10, None, None)


def _fill(store: Store, hours: float) -> float:
    """Samples every 10 s for ``hours`` for R1 (ether1, ether2) and R2; returns the last sample's time."""
    itfs, health = [], []
    n = int(hours * 360)
    for i in range(n):
        ts = T0 + 10 * i
        itfs += [_itf_row(ts, "R1", "ether1", 1000.0 + i % 7, 500.0), _itf_row(ts, "R1", "ether2", 10.0, 20.0),
                 _itf_row(ts, "R2", "ether1", 9e9, 9e9)]
        health.append(_health_row(ts, "R1", 10 + i % 5, 2**30 + i))
    store.append("interface_samples", itfs)
    store.append("health_samples", health)
    store.samples_committed().result(60)
    return T0 + 10 * (n - 1)


def _read(store: Store, now: float, hours: float, interfaces: tuple[str, ...] = ()) -> DeviceHistory:
    return read_history(store.query, "R1", now, hours, interfaces)


def test_bucket_keeps_every_series_within_the_point_budget() -> None:
    for hours in (0.1, 1, 6, 24, 24 * 7, 24 * 31):
        bucket = bucket_for(hours * 3600)
        assert hours * 3600 / bucket <= MAX_POINTS, hours
    assert bucket_for(6 * 3600) == 300  # six hours: the 5-minute rollup's own buckets


def test_the_rollups_and_the_raw_tail_give_the_same_series(store: Store) -> None:
    now = _fill(store, 3.0) + 5
    raw_only = _read(store, now, 6.0)
    assert raw_only.bucket_s == 300 and raw_only.device == "R1"
    assert [i.name for i in raw_only.interfaces] == ["ether1", "ether2"]  # R2's rows are not R1's
    ether1 = raw_only.interfaces[0]
    assert 30 <= len(ether1.rx_bps) <= MAX_POINTS
    assert all(1000.0 <= v <= 1006.0 for _, v in ether1.rx_bps) and {v for _, v in ether1.tx_bps} == {500.0}
    assert [t for t, _ in ether1.rx_bps] == sorted(t for t, _ in ether1.rx_bps)
    assert all(raw_only.since <= t <= now for t, _ in ether1.rx_bps)
    assert raw_only.cpu_load and all(10 <= v <= 14 for _, v in raw_only.cpu_load)
    assert raw_only.total_memory == 4 * 2**30 and raw_only.free_memory

    # Roll up all but the last half hour: the chart now reads 5-minute and hourly rows for most of it.
    store.transaction(lambda con: roll_up(con, now - 1800, grace_s=0)).result(60)
    marks = dict(store.query("SELECT rollup, done_until FROM rollup_watermarks"))
    assert marks["interface_rollup_5m"] > T0 and marks["health_rollup_1h"] > T0
    rolled = _read(store, now, 6.0)
    for before, after in zip(raw_only.interfaces, rolled.interfaces, strict=True):
        assert [t for t, _ in after.rx_bps] == [t for t, _ in before.rx_bps]
        assert [v for _, v in after.rx_bps] == pytest.approx([v for _, v in before.rx_bps])
        assert [v for _, v in after.tx_bps] == pytest.approx([v for _, v in before.tx_bps])
    assert [v for _, v in rolled.cpu_load] == pytest.approx([v for _, v in raw_only.cpu_load])
    assert [v for _, v in rolled.free_memory] == pytest.approx([v for _, v in raw_only.free_memory])

    # A week: hourly buckets, read from the hourly rollup and the tail.
    week = _read(store, now, 24 * 7)
    assert week.bucket_s == 7200 and len(week.interfaces[0].rx_bps) <= MAX_POINTS
    assert all(1000.0 <= v <= 1006.0 for _, v in week.interfaces[0].rx_bps)


def test_named_interfaces_only_and_bad_hours(store: Store) -> None:
    now = _fill(store, 0.5)
    only = _read(store, now, 1.0, ("ether2", "nonexistent"))
    assert [i.name for i in only.interfaces] == ["ether2", "nonexistent"]
    assert only.interfaces[1].rx_bps == () and {v for _, v in only.interfaces[0].rx_bps} == {10.0}
    for bad in (0, -1, float("nan"), float("inf"), "6"):
        with pytest.raises(ValueError, match="hours"):
            _read(store, now, bad)  # type: ignore[arg-type]


# -- on the real engine polling the lab --------------------------------------------------------------

@pytest.fixture
def lab(address_base: str) -> Iterator[DemoRun]:
    run = start_demo(QUIET, speed=10.0, address_base=address_base)
    yield run
    run.stop()


def test_the_engine_gives_a_polled_devices_history(lab: DemoRun) -> None:
    engine, store = lab.engine, lab.store

    def busiest() -> tuple[str, float, float, float] | None:
        """AGG's interface whose counter moved most over at least four API samples with rates."""
        rows = store.query(
            "SELECT interface, count(rx_bps), arg_min(rx_bytes, ts), arg_max(rx_bytes, ts), min(ts), max(ts) "
            "FROM interface_samples WHERE device = 'AGG' AND collector = 'api' GROUP BY interface")
        moved = [(r[3] - r[2], r) for r in rows if r[1] >= 4 and r[3] > r[2]]
        if not moved:
            return None
        _, (name, _, first, last, t0, t1) = max(moved)
        return name, (last - first) * 8 / (t1 - t0), t0, t1

    assert wait_for(lambda: busiest() is not None, timeout=90), "the lab should be polled a few times"
    found = busiest()
    assert found is not None
    name, counter_bps, _, _ = found

    def history() -> DeviceHistory:
        return engine.device_history("AGG", hours=1.0).result(30)

    assert wait_for(lambda: any(i.name == name and len(i.rx_bps) >= 2 for i in history().interfaces), timeout=60)
    got = history()
    assert got.bucket_s == 30 and got.until - got.since <= 3600 + 30
    series = next(i for i in got.interfaces if i.name == name)
    raw = store.query("SELECT min(rx_bps), max(rx_bps) FROM interface_samples WHERE device = 'AGG' "
                      "AND interface = ? AND rx_bps IS NOT NULL", [name])[0]
    # A bucket's value is an average of the samples' rates, so it lies between the lowest and the highest,
    # and over the whole run the rates average to what the counter moved (polls are evenly spaced).
    assert all(raw[0] - 1e-6 <= v <= raw[1] + 1e-6 for _, v in series.rx_bps)
    mean = sum(v for _, v in series.rx_bps) / len(series.rx_bps)
    assert 0.5 * counter_bps <= mean <= 2.0 * counter_bps, (mean, counter_bps)
    assert got.cpu_load and all(0 <= v <= 100 for _, v in got.cpu_load)

    only = engine.device_history("AGG", 1.0, (name,)).result(30)
    assert [i.name for i in only.interfaces] == [name]
    with pytest.raises(KeyError, match="NOPE"):
        engine.device_history("NOPE").result(30)
    with pytest.raises(ValueError, match="hours"):
        engine.device_history("AGG", hours=-2).result(30)
