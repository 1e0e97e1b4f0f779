"""``ispvm health``: the engine's own verdict on whether it is doing its job, over the control socket of a
real engine polling the lab; what fails it (the engine's trouble) and what only warns (the network's)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from ispvm_tui.engine import health
from ispvm_tui.engine.api import CollectorView
from ispvm_tui.lab.scenario import TimelineEntry
from tests.test_incidents_cli import ispvm
from tests.waiting import wait_for

NOW = 1_800_000_000.0


def _assess(**given: Any) -> health.Health:
    args: dict[str, Any] = {"pid": 1, "now": NOW, "started_at": NOW - 600, "interval_s": 60.0,
                            "collectors": (CollectorView("local", "local", "up", 10, NOW - 5, 0, 0.0),),
                            "writer_alive": True, "writer_error": None, "rows_dropped": 0, "stopped_tasks": [],
                            "outbox": health.Outbox()}
    return health.assess(**{**args, **given})


def test_what_fails_the_engine_and_what_only_warns() -> None:
    assert _assess().state == "healthy" and _assess().ok
    starting = _assess(started_at=None)
    assert (starting.ok, starting.state) == (False, "starting")
    writer = _assess(writer_alive=False, writer_error="disk full")
    assert not writer.ok and "the database writer stopped: disk full" in writer.failing
    assert not _assess(stopped_tasks=["correlator"]).ok
    stalled = _assess(collectors=(CollectorView("local", "local", "degraded", 10, NOW - 400, 0, 300.0),))
    assert not stalled.ok and "polling is stalled" in stalled.failing[0]
    behind = _assess(collectors=(CollectorView("local", "local", "degraded", 10, NOW - 100, 0, 90.0),))
    assert behind.ok  # late, but within two intervals: a busy host, not a stalled poller
    never = _assess(collectors=(CollectorView("local", "local", "unknown", 10, None, 0, None),))
    assert not never.ok and "no poll has completed" in never.failing[0]
    fresh = _assess(started_at=NOW - 30, collectors=(CollectorView("local", "local", "unknown", 10, None, 0, None),))
    assert fresh.ok  # just started: the first polls are still under way

    cut_off = _assess(collectors=(CollectorView("local", "local", "down", 10, NOW - 5, 10, 0.0),
                                  CollectorView("POP-A", "remote", "down", 4, NOW - 300)))
    assert cut_off.ok and cut_off.state == "degraded"
    assert any("every device's last poll failed" in w for w in cut_off.warnings)
    assert any("remote collector POP-A is silent since 300 s" in w for w in cut_off.warnings)
    mail = _assess(outbox=health.Outbox(pending=3, dead=2, oldest_pending_at=NOW - 1800))
    assert mail.ok and len(mail.warnings) == 2


def _power_off_everything(run: Any) -> None:
    done = threading.Event()

    def off() -> None:
        for name, *_ in run.lab.routers():
            run.lab.model.apply(TimelineEntry(at=0, action="device_down", device=name))
        done.set()

    run.loop.loop.call_soon_threadsafe(off)
    assert done.wait(10)


def test_health_of_a_running_engine_then_of_none(tmp_path: Path, address_base: str) -> None:
    from ispvm_tui.demo import start_demo
    from tests.held_faults import held

    db = tmp_path / "ispvm.duckdb"
    run = start_demo(held("core-link-cut"), speed=10.0, database=db, address_base=address_base)
    try:
        up = ispvm("health", "--database", db, "--wait", "60")
        assert up.returncode == 0, up.stdout + up.stderr
        assert up.stdout.startswith("engine pid ") and ": healthy" in up.stdout.splitlines()[0]
        assert "local (local): up" in up.stdout

        _power_off_everything(run)  # the network's trouble: a warning, and still exit 0
        def cut_off() -> bool:
            got = ispvm("health", "--database", db, "--json")
            return got.returncode == 0 and any("every device's last poll failed" in w
                                               for w in json.loads(got.stdout)["warnings"])
        assert wait_for(cut_off, 90), ispvm("health", "--database", db).stdout

        def die(buffers: object) -> None:  # the engine's own trouble: its database writer gone
            raise SystemExit("writer death")

        run.store._flush_samples = die  # type: ignore[method-assign]
        run.store.append("poll_log", [(0.0, "CORE1", "api", True, 0.1, None, None, None, False)])
        assert wait_for(lambda: not run.store.writer_alive, 30)
        failing = ispvm("health", "--database", db)
        assert failing.returncode == 1
        assert "FAILING: the database writer stopped" in failing.stdout
    finally:
        run.stop()
    gone = ispvm("health", "--database", db, "--wait", "1")
    assert gone.returncode == 1 and f"no engine is running on {db}" in gone.stderr
