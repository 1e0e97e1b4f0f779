"""Wait for a condition instead of sleeping a fixed time: the suite runs on busy 2-core hosts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], timeout: float, step: float = 0.1) -> bool:
    """True as soon as ``predicate()`` holds, False if it still does not after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


async def until(predicate: Callable[[], object], timeout: float = 30.0, step: float = 0.05) -> bool:
    """``wait_for`` for a test on an event loop (a console under ``run_test``): the loop runs meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return bool(predicate())
