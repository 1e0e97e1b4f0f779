"""Home's status beside the incidents: services from what they depend on, maintenance in force over sites and
services, and the health of the poller, through a real engine polling the lab over the RouterOS API; then the
console's Home table at 80x24 showing them with the open incident."""

from __future__ import annotations

import asyncio
from typing import Any

from textual.widgets import DataTable

from ispvm_tui.app import IspvmApp
from ispvm_tui.demo import start_demo
from ispvm_tui.engine import home_status
from ispvm_tui.engine.api import CollectorView
from tests.held_faults import held
from tests.waiting import wait_for


def _service(run: Any, name: str) -> Any:
    return next((s for s in run.engine.snapshot().services if s.name == name), None)


def test_services_maintenance_and_the_poller_through_the_engine_and_on_home(tmp_path: Any,
                                                                           address_base: str) -> None:
    run = start_demo(held("core-link-cut"), speed=10.0, database=tmp_path / "home.duckdb",
                     address_base=address_base)
    try:
        # The cut takes POP-A off: its broadband service (its aggregation and access) is down, the rest is up.
        assert wait_for(lambda: (svc := _service(run, "POP-A broadband")) is not None and svc.state == "down", 90)
        snap = run.engine.snapshot()
        assert _service(run, "POP-B broadband").state == "up"
        assert {s.name: s.state for s in snap.services if s.category == "transit"} == {
            "Internet transit via UPSTREAM1": "up", "Internet transit via UPSTREAM2": "up"}
        pop_a = _service(run, "POP-A broadband")
        assert pop_a.down == pop_a.depends_on and pop_a.subscribers == 1200
        local = next(c for c in snap.collectors if c.kind == "local")
        assert local.devices == len(snap.devices) and local.last_poll_at is not None
        assert local.failing >= 1 and local.state != "down"  # devices not answering are not the poller's fault

        # Planned work at POP-B: the site and the service over its devices say so; POP-A's do not.
        now = run.engine.snapshot().taken_at
        run.engine.maintenance_add({"name": "POP-B optics", "scope": {"sites": ["POP-B"]}, "starts_at": now - 60,
                                    "duration_s": 7200}, "alice").result(30)
        assert wait_for(lambda: _service(run, "POP-B broadband").maintenance == "POP-B optics", 30)
        sites = {s.name: s for s in run.engine.snapshot().sites}
        assert sites["POP-B"].maintenance == "POP-B optics" and sites["POP-A"].maintenance is None
        assert _service(run, "POP-A broadband").maintenance is None

        async def home() -> list[str]:
            app = IspvmApp(run.engine, refresh_s=0.5)
            async with app.run_test(size=(80, 24)) as pilot:
                table = app.query_one("#sites-table", DataTable)
                for _ in range(200):
                    await pilot.pause(0.05)
                    if table.row_count:
                        break
                rows = [" ".join(str(c) for c in table.get_row_at(k)) for k in range(table.row_count)]
                # The worst first, whatever its kind; each row fully in view with the open incident above it.
                assert table.region.height >= 4 and app.query_one("#home-incidents", DataTable).row_count
                return rows

        rows = asyncio.run(home())
        assert rows[0].split()[-4:-2] == ["✖", "down"]
        assert any(r.startswith("POP-A broadband service ✖ down") for r in rows)
        assert any(r.startswith("POP-B broadband service ✔ up ⚒ maint") for r in rows)
    finally:
        run.stop()


def test_a_whole_is_down_only_when_every_part_is() -> None:
    assert home_status.combine(["down", "down"]) == "down"
    assert home_status.combine(["down", "up"]) == "degraded"
    assert home_status.combine(["degraded", "up"]) == "degraded"
    assert home_status.combine(["unknown", "up"]) == "up"
    assert home_status.combine(["unknown", "down"]) == "down"
    assert home_status.combine([]) == "unknown"


def test_the_poller_is_behind_only_when_answering_devices_are_overdue() -> None:
    now = 10_000.0
    keeping_up = home_status.local_collector([(now - 50, 0, False, 60.0), (now - 300, 3, True, 60.0)], now)
    assert keeping_up == CollectorView("local", "local", "up", 2, now - 50, 1, 0.0)
    behind = home_status.local_collector([(now - 200, 0, False, 60.0), (now - 10, 0, False, 60.0)], now)
    assert behind is not None and behind.state == "degraded" and behind.lag_s == 140.0
    cut_off = home_status.local_collector([(now - 30, 2, True, 60.0), (now - 20, 1, False, 60.0)], now)
    assert cut_off is not None and cut_off.state == "down"
    assert home_status.local_collector([(None, 0, False, 60.0)], now).state == "unknown"  # type: ignore[union-attr]
    assert home_status.local_collector([], now) is None


def test_the_poller_line_says_when_a_storm_has_every_poll_check_first() -> None:
    from dataclasses import replace

    from ispvm_tui.screens.home import collectors_line
    from tests.test_console import build_snapshot

    snapshot = build_snapshot()
    calm = CollectorView("local", "local", "up", 300, snapshot.taken_at - 5, 0, 0.0)
    assert "storm" not in collectors_line(replace(snapshot, collectors=(calm,))).plain
    storm = replace(calm, failing=120, storm=True)
    line = collectors_line(replace(snapshot, collectors=(storm,))).plain
    assert "120 not answering" in line and "storm: checking each router before polling it" in line
