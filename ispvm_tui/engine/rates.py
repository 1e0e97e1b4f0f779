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
    if prev.uptime_s is not None and cur.uptime_s is not None:
        if cur.uptime_s < prev.uptime_s:
            return None
        if cur.device_clock and cur.uptime_s > prev.uptime_s:
            # The device's own ticks: free of our scheduling and network jitter.
            return cur.uptime_s - prev.uptime_s
    dt = cur.ts - prev.ts
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
    delta = cur.value - prev.value
    if delta < 0:
        modulo = 2**cur.bits
        # One 32-bit wrap is plausible only if the old value was in the upper half; 64-bit never wraps
        # in practice, so a drop there is a reset.
        if cur.bits == 32 and prev.value >= modulo // 2 and cur.value < modulo // 2:
            delta += modulo
        else:
            return None
    return delta / dt


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
