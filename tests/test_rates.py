"""Counter rates: wraps, reboots and resets never produce a spike."""

from __future__ import annotations

import pytest

from ispvm_tui.engine.rates import CounterSample, rate_bps


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
