"""A router that stops answering keeps its last known figures, flagged stale: in the engine's views, on the
console's device screens, and in ``ispvm devices list`` from the running engine and off the file.

A demo engine on the lab: core-link-cut with the cut held, so POP-A's routers, which answered before it,
go silent and stay so.
"""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable

from ispvm_tui.app import IspvmApp
from ispvm_tui.demo import start_demo
from ispvm_tui.engine.api import DeviceDetail
from ispvm_tui.screens.devices import DeviceDetailScreen
from tests.held_faults import held
from tests.test_console import until
from tests.test_console_devices import detail_text
from tests.test_incidents_cli import ispvm, ispvm_json
from tests.waiting import wait_for

SILENT, LIVE = "POPA-AGG", "CORE1"


def silent_detail(engine: object) -> DeviceDetail | None:
    detail: DeviceDetail = engine.device_detail(SILENT).result(30)  # type: ignore[attr-defined]
    return detail if detail.silent_since is not None else None


async def test_a_silent_router_keeps_its_last_answer_everywhere(tmp_path: Path, address_base: str) -> None:
    db = tmp_path / "ispvm.duckdb"
    run = start_demo(held("core-link-cut"), speed=10.0, database=db, address_base=address_base)
    try:
        assert wait_for(lambda: silent_detail(run.engine), 120), "POPA-AGG never went silent"
        detail = silent_detail(run.engine)
        assert detail is not None and detail.sampled_at is not None
        # The last answer's figures, from before the silence, and why the polls since failed.
        assert detail.sampled_at < detail.silent_since
        assert detail.identity == SILENT and detail.interfaces and detail.sensors
        assert detail.errors and all(":" in e for e in detail.errors)
        view = detail.device
        assert view.stale and view.version and view.uptime_s is not None and view.cpu_load is not None
        assert view.answered_at is not None and view.last_poll_at is not None and view.answered_at < view.last_poll_at
        live = run.engine.device_detail(LIVE).result(30)
        assert live.silent_since is None and not live.device.stale

        listed = ispvm_json("devices", "list", "--database", db)
        rows = {d["name"]: d for d in listed["devices"]}
        assert rows[SILENT]["stale"] and rows[SILENT]["version"] == view.version
        assert rows[SILENT]["answered_at"] < rows[SILENT]["last_poll_at"]
        assert not rows[LIVE]["stale"]
        text = ispvm("devices", "list", "--stale", "--database", db)
        assert text.returncode == 0, text.stderr
        assert SILENT in text.stdout and f" {LIVE} " not in text.stdout
        assert "* last known" in text.stdout

        app = IspvmApp(run.engine, actor="noc")
        async with app.run_test(size=(120, 40)) as pilot:
            await app.action_show_tab("devices")
            table = app.query_one("#devices-table", DataTable)
            await until(pilot, lambda: SILENT in [r.key.value for r in table.ordered_rows], timeout=30)
            cpu = str(table.get_row(SILENT)[4])
            assert cpu.endswith("*"), cpu  # the last known CPU, marked
            app.open_device(SILENT)
            await until(pilot, lambda: isinstance(app.screen, DeviceDetailScreen))
            screen = app.screen
            assert isinstance(screen, DeviceDetailScreen)
            await until(pilot, lambda: screen.detail is not None and screen.detail.silent_since is not None,
                        timeout=30)
            shown = detail_text(screen)
            assert "not answering since" in shown and "everything below is its last answer" in shown
            assert "System — last known" in shown and "Health — last known" in shown
            assert f"identity {SILENT}" in shown.replace("  ", " ")

        def stored_down() -> bool:
            rows = run.engine.store.query_dicts(
                "SELECT count(*) AS n FROM alerts WHERE rule = 'device_unreachable' AND entity_id = ? "
                "AND state = 'firing'", [SILENT])
            return rows[0]["n"] > 0
        # Silent is known at the first failed poll; "down" waits for the unreachable rule (2 polls, 10 s) and
        # the file for that alert's row (what the offline read below goes by).
        assert wait_for(stored_down, 120)
    finally:
        run.stop()

    # No engine: the same from the file (the unreachable alert was still firing when it stopped).
    offline = {d["name"]: d for d in ispvm_json("devices", "list", "--database", db)["devices"]}
    assert offline[SILENT]["stale"] and offline[SILENT]["state"] == "down"
    assert offline[SILENT]["version"] == view.version
    assert not offline[LIVE]["stale"] and offline[LIVE]["state"] == "up"


def test_off_the_file_a_half_answer_is_not_stale(tmp_path: Path) -> None:
    from ispvm_tui.engine.device_list import from_store
    from ispvm_tui.engine.store import Store

    def poll(ts: float, device: str, collector: str, ok: bool) -> tuple[object, ...]:
        return (ts, device, collector, ok, 0.1, None if ok else "timeout", None if ok else "timed out", None, False)

    with Store(tmp_path / "f.duckdb") as store:
        # R1: the API answered, SNMP (stamped a moment later) did not. R2: answered, then nothing answered.
        store.append("poll_log", [poll(100.0, "R1", "api", True), poll(100.4, "R1", "snmp", False),
                                  poll(100.0, "R2", "api", True), poll(160.0, "R2", "api", False),
                                  poll(160.3, "R2", "snmp", False)])
        store.flush()
        rows = {r["name"]: r for r in from_store(store.query_dicts)}
    assert not rows["R1"]["stale"] and rows["R1"]["state"] == "up"
    assert rows["R2"]["stale"] and rows["R2"]["state"] == "degraded" and rows["R2"]["answered_at"] == 100.0
    assert rows["R2"]["last_error"] == "api: timed out; snmp: timed out"
