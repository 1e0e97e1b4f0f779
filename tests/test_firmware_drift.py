"""Firmware drift: a RouterBOARD's firmware behind the one its RouterOS carries, and routers running a RouterOS
release behind the rest of the fleet. Read over the RouterOS API from the lab's routers, reported by
``ispvm audit routers`` from a running demo engine and shown on the device screen.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ispvm_tui.demo import start_demo
from ispvm_tui.engine.hardening import firmware_checks
from ispvm_tui.lab.scenario import load_scenario
from ispvm_tui.screens.devices import render_summary
from tests.test_incidents_cli import ispvm_json
from tests.test_routeros_families import poll_once
from tests.test_routeros_lab_api import make_device
from tests.waiting import wait_for


async def test_the_api_reads_current_and_carried_firmware() -> None:
    device = make_device(7)
    device.firmware = "7.14.3"
    result = await poll_once(device)
    assert result.ok, result.error
    assert result.system is not None
    assert (result.system.version, result.system.firmware, result.system.firmware_upgrade) == (
        "7.16.2", "7.14.3", "7.16.2")

    chr_device = dataclasses.replace(make_device(6), board="CHR")
    result = await poll_once(chr_device)
    assert result.ok and result.system is not None
    assert (result.system.firmware, result.system.firmware_upgrade) == (None, None)  # no RouterBOARD


def test_drift_findings() -> None:
    polled = {
        "A": {"version": "7.16.2", "firmware": "7.16.2", "firmware_upgrade": "7.16.2"},
        "B": {"version": "7.16.2", "firmware": "7.12.1", "firmware_upgrade": "7.16.2"},
        "C": {"version": "7.15.3", "firmware": None, "firmware_upgrade": None},  # CHR: no firmware to compare
        "D": {"version": "6.49.10", "firmware": "6.49.10", "firmware_upgrade": "6.49.10"},
        "E": {"version": "6.48.6", "firmware": "6.48.6", "firmware_upgrade": "6.48.6"},
    }
    found = {(f.device, f.check): f.detail for f in firmware_checks(polled)}
    assert set(found) == {("B", "RouterBOARD firmware behind RouterOS"), ("C", "RouterOS behind the fleet"),
                          ("E", "RouterOS behind the fleet")}
    assert "firmware 7.12.1; RouterOS 7.16.2 carries 7.16.2" in found[("B", "RouterBOARD firmware behind RouterOS")]
    assert found[("C", "RouterOS behind the fleet")] == "7.15.3; 2 of the fleet's 3 RouterOS 7 routers run 7.16.2"
    # 6 and 7 are separate trains: 6.49.10 is the newest 6, not behind 7.16.2.
    assert found[("E", "RouterOS behind the fleet")].endswith("run 6.49.10")
    assert firmware_checks({"A": polled["A"]}) == []


def test_a_scenario_device_version_must_be_of_its_major(tmp_path: Path) -> None:
    from ispvm_tui.lab.scenario import resolve_scenario_path
    from ispvm_tui.tomlsource import SourceError

    text = resolve_scenario_path("core-link-cut").read_text().replace(
        'name = "EDGE1"', 'name = "EDGE1"\nversion = "6.49.10"', 1)
    path = tmp_path / "v.toml"
    path.write_text(text)
    try:
        load_scenario(path)
    except SourceError as exc:
        assert "version 6.49.10 is not RouterOS 7" in str(exc)
    else:
        raise AssertionError("a v6 release on a v7 device was accepted")


def test_drift_from_a_running_engine(tmp_path: Path, address_base: str) -> None:
    scenario = load_scenario("core-link-cut")
    devices = [d.model_copy(update={"version": "7.15.3"}) if d.name == "EDGE1" else
               d.model_copy(update={"firmware": "7.12.1"}) if d.name == "CORE1" else d for d in scenario.devices]
    scenario = scenario.model_copy(update={"devices": devices, "timeline": []})
    db = tmp_path / "ispvm.duckdb"
    run = start_demo(scenario, speed=10.0, database=db, address_base=address_base)
    try:
        def drift() -> set[tuple[str, str]]:
            rep = ispvm_json("audit", "routers", "--database", db)
            return {(f["device"], f["check"]) for f in rep["findings"]}
        wanted = {("EDGE1", "RouterOS behind the fleet"), ("CORE1", "RouterBOARD firmware behind RouterOS")}
        assert wait_for(lambda: wanted <= drift(), 90), drift()
        detail = run.engine.device_detail("CORE1").result(30)
        assert (detail.firmware, detail.firmware_upgrade) == ("7.12.1", "7.16.2")
        shown = render_summary(detail, detail.sampled_at or 0).plain
        assert "firmware 7.12.1, behind its RouterOS's 7.16.2: /system routerboard upgrade, then reboot" in shown
    finally:
        run.stop()
