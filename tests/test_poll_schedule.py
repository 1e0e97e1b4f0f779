"""Each device keeps one phase: first polled soon after start, then exactly once per interval."""

from __future__ import annotations

import asyncio
import random

from apscheduler.triggers.interval import IntervalTrigger

from ispvm_tui.clock import SystemClock
from ispvm_tui.config import Config
from ispvm_tui.engine.polling import DeviceSchedule, Poller


def _config(names: list[str], interval_s: float) -> Config:
    return Config.model_validate({
        "console": {"attach": [names[0]]}, "sites": [{"name": "S"}],
        "polling": {"interval_s": interval_s},
        "credentials": {"c": {"username": "u", "password_secret": "pw"}},
        # Port 9 on loopback: nothing is polled in these tests, the scheduler is only set up.
        "devices": [{"name": n, "site": "S", "role": "access", "address": "127.0.0.1", "api_port": 9,
                     "credential": "c"} for n in names],
    })


def test_phases_are_drawn_once_and_spread_over_the_whole_interval() -> None:
    poller = Poller(_config(["R1"], 60.0), SystemClock(), {}, _no_results, rng=random.Random(7))
    draws = [poller.first_and_phase(60.0, now=1000.0) for _ in range(2000)]
    assert all(1000.0 < first <= 1005.0 for first, _ in draws)  # the console fills within seconds
    offsets = [phase - first for first, phase in draws]
    assert all(6.0 <= o <= 60.0 for o in offsets)  # never more than one interval after the first poll
    # Spread: every tenth of the interval from 10 % on holds a fair share of the fleet.
    shares = [sum(1 for o in offsets if 6 * k <= o < 6 * (k + 1)) for k in range(1, 10)]
    assert min(shares) > 2000 / 9 * 0.6, shares


async def test_the_scheduler_runs_each_device_on_its_phase_without_a_per_poll_jitter() -> None:
    names = [f"R{i}" for i in range(20)]
    cfg = _config(names, 30.0)
    schedules = {n: DeviceSchedule(n, []) for n in names}  # no collectors: a turn polls nothing
    poller = Poller(cfg, SystemClock(), schedules, _no_results, rng=random.Random(3))
    poller.start()
    try:
        assert poller._scheduler is not None
        jobs = {job.id: job for job in poller._scheduler.get_jobs()}
        for n in names:
            first, regular = poller.first_at[n], jobs[f"poll:{n}"]
            assert isinstance(regular.trigger, IntervalTrigger)
            # A jitter drawn per poll adds up: the gaps would average more than the interval.
            assert regular.trigger.jitter is None and regular.trigger.interval_length == 30.0
            lead = regular.trigger.start_date.timestamp() - first
            assert 3.0 <= lead <= 30.0
        phases = sorted(jobs[f"poll:{n}"].trigger.start_date.timestamp() for n in names)
        assert phases[-1] - phases[0] > 10.0  # not one burst
    finally:
        await poller.stop()
    await asyncio.sleep(0)


async def _no_results(_name: str, _results: list) -> None:
    return None
