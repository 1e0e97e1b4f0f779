"""Counter rates: wraps, reboots and resets never produce a spike."""

from __future__ import annotations

import pytest

from ispvm_tui.engine.rates import CounterSample, rate_bps, rate_per_s, summed_rate


def s(ts: float, value: int, uptime: float | None = None, bits: int = 64, device_clock: bool = False):
    return CounterSample(ts, value, uptime, bits, device_clock)


def test_plain_rate() -> None:
    assert rate_bps(s(0, 1000), s(10, 2250)) == pytest.approx(1000.0)


def test_32_bit_wrap_is_counted_once() -> None:
    top = 2**32 - 500
    assert rate_bps(s(0, top, bits=32), s(10, 750, bits=32)) == pytest.approx((500 + 750) * 8 / 10)


def test_64_bit_drop_is_a_reset_not_a_wrap() -> None:
    assert rate_bps(s(0, 10**12), s(10, 5)) is None


def test_32_bit_drop_from_low_half_is_a_reset() -> None:
    assert rate_bps(s(0, 1000, bits=32), s(10, 10, bits=32)) is None


def test_reboot_gives_no_rate_even_if_counter_grew() -> None:
    assert rate_bps(s(0, 100, uptime=5000), s(60, 10**9, uptime=30)) is None


def test_device_ticks_time_the_interval() -> None:
    # our poll timestamps are 12 s apart (jitter), the device says 10 s passed: trust the device
    assert rate_bps(s(0, 0, 100.0, device_clock=True), s(12, 1250, 110.0, device_clock=True)) == pytest.approx(1000)


def test_coarse_uptime_is_not_used_for_timing() -> None:
    assert rate_bps(s(0, 0, 100.0), s(12, 1500, 110.0)) == pytest.approx(1000)


def test_non_increasing_time_gives_nothing() -> None:
    assert rate_bps(s(10, 0), s(10, 100)) is None


# ---- errors and discards: plain counts per second, in + out added up --------------------------


def test_rate_per_s_counts_increments_not_bits() -> None:
    assert rate_per_s(s(0, 100), s(10, 350)) == pytest.approx(25.0)
    assert rate_bps(s(0, 100), s(10, 350)) == pytest.approx(200.0)


def test_summed_rate_adds_directions_and_survives_a_counter32_wrap() -> None:
    rx = (s(0, 2**32 - 10, bits=32), s(10, 30, bits=32))  # IF-MIB ifInErrors wrapped: 40 errors
    tx = (s(0, 5, bits=32), s(10, 25, bits=32))
    assert summed_rate([rx, tx]) == pytest.approx(6.0)


def test_summed_rate_of_a_reset_or_reboot_is_none_not_a_spike() -> None:
    fine = (s(0, 0), s(10, 10))
    assert summed_rate([fine, (s(0, 10**9), s(10, 3))]) is None  # counters cleared on one direction
    assert summed_rate([(s(0, 5, uptime=900), s(10, 9, uptime=4)), fine]) is None  # the device rebooted
    assert summed_rate([fine, (s(0, 1000, bits=32), s(10, 10, bits=32))]) is None  # 32-bit drop from low half


def test_summed_rate_leaves_out_what_the_device_does_not_report() -> None:
    fine = (s(0, 0), s(10, 10))
    assert summed_rate([fine, (None, None)]) == pytest.approx(1.0)
    assert summed_rate([(None, None), (None, None)]) is None
    # A counter that appears or vanishes between two polls has no rate: nor does the sum.
    assert summed_rate([fine, (None, s(10, 5))]) is None
    assert summed_rate([fine, (s(0, 5), None)]) is None


# ---- the engine's own bookkeeping: one flat tuple per interface, the same rules ----------------------

ENGINE_CONFIG = """
[console]
attach = ["R1"]
[credentials.c]
username = "u"
password_secret = "x"
[[sites]]
name = "DC"
[[devices]]
name = "R1"
site = "DC"
role = "core"
address = "127.0.0.1"
credential = "c"
"""


def test_engine_rates_per_interface_and_collector_from_the_previous_poll(tmp_path) -> None:
    import asyncio

    from ispvm_tui.clock import ScaledClock
    from ispvm_tui.collectors.results import InterfaceStat, PollResult, SystemInfo
    from ispvm_tui.config import load_config
    from ispvm_tui.engine.core import Engine
    from ispvm_tui.engine.store import Store
    from ispvm_tui.secrets import StaticSecrets

    path = tmp_path / "c.toml"
    path.write_text(ENGINE_CONFIG)
    store = Store(tmp_path / "rates.duckdb")
    engine = Engine(load_config(path), store=store, clock=ScaledClock(1.0), secrets=StaticSecrets({"x": "pw"}))

    def poll(collector: str, at: float, uptime: float, *itfs: InterfaceStat) -> PollResult:
        return PollResult(device="R1", collector=collector, started_at=at, duration_s=0.1, ok=True,
                          system=SystemInfo(uptime_s=uptime), interfaces=list(itfs))

    def itf(name: str, rx: int, tx: int, errors: int | None = None, bits: int = 64) -> InterfaceStat:
        return InterfaceStat(name=name, rx_bytes=rx, tx_bytes=tx, counter_bits=bits, rx_errors=errors,
                             tx_errors=errors and 0)

    top = 2**32 - 500
    polls = [
        [poll("api", 1000.0, 500, itf("e1", 0, 0, 10), itf("e2", 0, 0)),
         poll("snmp", 1000.5, 500.0, itf("e1", 0, 0, top, bits=32))],
        # e2 missing from this poll: its previous sample is kept for the next one
        [poll("api", 1010.0, 510, itf("e1", 1250, 2500, 15)),
         poll("snmp", 1010.6, 510.0, itf("e1", 1000, 2000, 250, bits=32))],  # errors: one Counter32 wrap
        [poll("api", 1020.0, 520, itf("e1", 2500, 5000, 3), itf("e2", 2000, 0)),  # errors cleared: no rate
         poll("snmp", 1020.0, 3.0, itf("e1", 5, 5, 0, bits=32))],  # rebooted: no rate at all
    ]

    async def go() -> None:
        for results in polls:
            await engine.ingest("R1", results)

    asyncio.run(go())
    store.flush()
    rows = store.query("SELECT ts, interface, collector, rx_bps, tx_bps, errors_ps FROM interface_samples "
                       "ORDER BY ts, collector, interface")
    store.close()
    got = {(ts, itf_, col): (rx, tx, err) for ts, itf_, col, rx, tx, err in rows}
    assert got[(1000.0, "e1", "api")] == (None, None, None)  # a first sample has no rate
    assert got[(1010.0, "e1", "api")] == pytest.approx((1000.0, 2000.0, 0.5))
    assert got[(1010.6, "e1", "snmp")] == pytest.approx((800.0, 1600.0, 75.0))  # the device's 10 s, not ours
    assert got[(1020.0, "e1", "api")][:2] == pytest.approx((1000.0, 2000.0)) and got[(1020.0, "e1", "api")][2] is None
    assert got[(1020.0, "e2", "api")] == pytest.approx((800.0, 0.0, None))  # over both intervals, 20 s
    assert got[(1020.0, "e1", "snmp")] == (None, None, None)
