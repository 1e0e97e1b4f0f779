"""Clocks: the engine and the lab never call time.time() directly.

A scaled clock lets the lab and the engine share one simulated timeline that
runs faster than real time (demo ``--speed``, tests), while every timestamp
stored or shown is still an ordinary epoch second.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    speed: float

    def now(self) -> float:
        """Current (possibly simulated) epoch seconds."""
        ...

    def to_real(self, seconds: float) -> float:
        """How many real seconds ``seconds`` of clock time take."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of clock time."""
        ...


class SystemClock:
    speed = 1.0

    def now(self) -> float:
        return time.time()

    def to_real(self, seconds: float) -> float:
        return seconds

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Simulated time = start + real elapsed x speed."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = float(speed)
        self._real0 = time.monotonic()
        self._sim0 = time.time() if start is None else start

    def now(self) -> float:
        return self._sim0 + (time.monotonic() - self._real0) * self.speed

    def elapsed(self) -> float:
        """Simulated seconds since the clock started."""
        return (time.monotonic() - self._real0) * self.speed

    def to_real(self, seconds: float) -> float:
        return seconds / self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds / self.speed))
