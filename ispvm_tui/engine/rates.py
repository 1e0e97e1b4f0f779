"""Counter deltas to rates, without spikes.

A counter that goes backwards means one of three things: a 32-bit counter
wrapped (at most once between two polls at sane intervals), the device
rebooted (its uptime went back too), or someone cleared the counters. Only
the first gives a usable delta; the other two give no rate for that interval
rather than a huge or negative one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CounterSample:
    ts: float  # our clock, seconds
    value: int
    uptime_s: float | None  # the device's own uptime at that sample, if known
    bits: int = 64
    device_clock: bool = False  # uptime is precise enough to time the interval (SNMP sysUpTime)


def interval(prev: CounterSample, cur: CounterSample) -> float | None:
    """Seconds between two samples; None when the device rebooted in between."""
    return interval_s(prev.ts, prev.uptime_s, cur.ts, cur.uptime_s, cur.device_clock)


def interval_s(prev_ts: float, prev_uptime: float | None, ts: float, uptime: float | None,
               device_clock: bool) -> float | None:
    """``interval`` from the bare figures: the engine keeps one (time, uptime) per poll, not per counter."""
    if prev_uptime is not None and uptime is not None:
        if uptime < prev_uptime:
            return None
        if device_clock and uptime > prev_uptime:
            # The device's own ticks: free of our scheduling and network jitter.
            return uptime - prev_uptime
    dt = ts - prev_ts
    return dt if dt > 0 else None


def rate_bps(prev: CounterSample, cur: CounterSample) -> float | None:
    """Bits per second of an octet counter, or None when the interval cannot be trusted."""
    per_s = rate_per_s(prev, cur)
    return None if per_s is None else per_s * 8


def rate_per_s(prev: CounterSample, cur: CounterSample) -> float | None:
    """Increments per second of any counter (packets, errors), or None when the interval cannot be trusted."""
    dt = interval(prev, cur)
    if dt is None:
        return None
    delta = counter_delta(prev.value, cur.value, cur.bits)
    return None if delta is None else delta / dt


def counter_delta(prev: int, cur: int, bits: int) -> int | None:
    """Increments from ``prev`` to ``cur``: one 32-bit wrap allowed, any other drop is a reset (None)."""
    delta = cur - prev
    if delta < 0:
        modulo = 2**bits
        # One 32-bit wrap is plausible only if the old value was in the upper half; 64-bit never wraps
        # in practice, so a drop there is a reset.
        if bits == 32 and prev >= modulo // 2 and cur < modulo // 2:
            delta += modulo
        else:
            return None
    return delta


def summed_rate(pairs: list[tuple[CounterSample | None, CounterSample | None]]) -> float | None:
    """Per-second rate of several counters added up (errors in + out), from (previous, current) pairs.

    A counter the device does not report (None in both samples) is left out; one that it reports
    but whose rate cannot be trusted (first sample, reset, reboot) makes the sum None, so a
    reset of one direction never shows as a dip or a spike of the total.
    """
    total, seen = 0.0, False
    for prev, cur in pairs:
        if prev is None and cur is None:
            continue
        if prev is None or cur is None:
            return None
        rate = rate_per_s(prev, cur)
        if rate is None:
            return None
        total, seen = total + rate, True
    return total if seen else None


def summed_delta(prev: tuple[int | None, ...], cur: tuple[int | None, ...], bits: int) -> int | None:
    """``summed_rate``'s rule on bare values of one interval: the increments of several counters added up,
    None when one the device reports cannot be trusted (first sample, reset) or when it reports none."""
    total, seen = 0, False
    for p, c in zip(prev, cur, strict=True):
        if p is None and c is None:
            continue
        if p is None or c is None:
            return None
        delta = counter_delta(p, c, bits)
        if delta is None:
            return None
        total, seen = total + delta, True
    return total if seen else None
