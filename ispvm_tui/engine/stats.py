"""The engine's own counters and timings, for ``/metrics`` (engine/metrics.py).

Kept here as plain numbers, so counting costs a dict update on the engine's loop and nothing is imported
for Prometheus unless the endpoint is on. A scrape copies them under the lock from its own thread.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from dataclasses import dataclass, field

# Seconds: a poll takes 10 ms to a timeout (5 s default); a correlation round or a snapshot 1 ms to 1 s.
POLL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WORK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative; the last is +Inf
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def copy(self) -> Histogram:
        return Histogram(self.buckets, list(self.counts), self.total, self.n)


class EngineStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.polls: Counter[tuple[str, str]] = Counter()  # (collector, "ok" | error kind)
        self.poll_seconds: dict[str, Histogram] = {}  # per collector
        self.timings: dict[str, Histogram] = {}  # "rules", "correlation", "snapshot"
        self.deliveries: Counter[tuple[str, str]] = Counter()  # (target, delivered | retry | dead)

    def poll(self, collector: str, outcome: str, seconds: float | None) -> None:
        with self._lock:
            self.polls[(collector, outcome)] += 1
            if seconds is not None:
                hist = self.poll_seconds.get(collector)
                if hist is None:
                    hist = self.poll_seconds[collector] = Histogram(POLL_BUCKETS)
                hist.observe(seconds)

    def took(self, what: str, seconds: float) -> None:
        with self._lock:
            hist = self.timings.get(what)
            if hist is None:
                hist = self.timings[what] = Histogram(WORK_BUCKETS)
            hist.observe(seconds)

    def delivery(self, target: str, status: str) -> None:
        with self._lock:
            self.deliveries[(target, status)] += 1

    def copy(self) -> tuple[dict[tuple[str, str], int], dict[str, Histogram], dict[str, Histogram],
                            dict[tuple[str, str], int]]:
        with self._lock:
            return (dict(self.polls), {k: h.copy() for k, h in self.poll_seconds.items()},
                    {k: h.copy() for k, h in self.timings.items()}, dict(self.deliveries))
