"""Counter deltas to rates, without spikes.

A counter that goes backwards means one of three things: a 32-bit counter
wrapped (at most once between two polls at sane intervals), the device
rebooted (its uptime went back too), or someone cleared the counters. Only
the first gives a usable delta; the other two give no rate for that interval
rather than a huge or negative one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
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
    return delta * 8 / dt
