"""Config fingerprints through the whole engine, against the lab's routers over the real RouterOS API and SNMP.

The engine reads every router's configuration after its first poll (the baseline), again on its schedule
and when asked; the lab's counters, uptimes and neighbour ages move all the time. Only a real change — here
an interface comment edited on a router — may become a new version and a ``config.changed.detected`` event,
and it must survive a restart as the baseline, not show up again as a change.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ispvm_tui.demo import DemoRun, start_demo
from ispvm_tui.engine import config_watch
from ispvm_tui.lab.scenario import load_scenario
from tests.waiting import wait_for

SPEED = 10.0
CATEGORIES_FROM_THE_LAB = {"interfaces", "addressing", "system"}  # at least these: every lab router has them


def _checks(run: DemoRun) -> list[dict[str, Any]]:
    return run.store.query_dicts("SELECT device, category, hash, changed FROM config_checks")


def _events(run: DemoRun) -> list[Any]:
    got: list[Any] = []
    run.engine.subscribe(lambda e: got.append(e) if e.kind == config_watch.EVENT else None)
    return got


def _edit_comment(run: DemoRun, device: str, interface: str, comment: str) -> None:
    async def edit() -> None:  # on the lab's own loop, like every other change it makes
        run.lab.model.devices[device].interfaces[interface].comment = comment

    run.loop.run(edit(), timeout=10)


def test_baseline_then_one_real_change_then_nothing_after_a_restart(tmp_path: Path, address_base: str) -> None:
    database = tmp_path / "ispvm.duckdb"
    scenario = load_scenario("core-link-cut").model_copy(update={"timeline": []})
    run = start_demo(scenario, speed=SPEED, database=database, address_base=address_base)
    try:
        events = _events(run)
        devices = {d.name for d in scenario.devices}
        # The baseline: every device, every category the lab serves, version 1, no change.
        assert wait_for(lambda: {r["device"] for r in _checks(run)} >= devices, 60)
        by_device: dict[str, set[str]] = {}
        for r in _checks(run):
            by_device.setdefault(r["device"], set()).add(r["category"])
        assert all(cats >= CATEGORIES_FROM_THE_LAB for cats in by_device.values()), by_device
        # Several scheduled reads (every 3 polls here) while counters and uptimes move: still no change.
        assert wait_for(lambda: run.store.query("SELECT count(*) FROM config_checks WHERE device = 'POPB-AGG' "
                                                "AND category = 'interfaces'")[0][0] >= 3, 90)
        assert run.store.query("SELECT count(*) FROM config_checks WHERE changed")[0][0] == 0
        assert run.store.query("SELECT max(version) FROM config_versions")[0][0] == 1

        _edit_comment(run, "POPB-AGG", "ether2", "to POPB-ACC1 ether1 (new fibre, ticket 4711)")
        asked = asyncio.run(_wait(run.engine.capture_config("POPB-AGG", actor="tester")))
        assert asked == 1
        assert wait_for(lambda: any(e.kind == config_watch.EVENT for e in events), 60)
        changes = asyncio.run(_wait(run.engine.config_changes()))
        assert [(c.device, c.category, c.version) for c in changes] == [("POPB-AGG", "interfaces", 2)]
        change = changes[0]
        assert change.old_hash and change.new_hash != change.old_hash
        assert change.since is not None and change.since < change.detected_at
        assert "POPB-AGG" in events[0].summary and "interfaces" in events[0].summary
        assert events[0].data == {"device": "POPB-AGG", "category": "interfaces", "version": 2,
                                  "old_hash": change.old_hash, "new_hash": change.new_hash}
        diff = asyncio.run(_wait(run.engine.config_diff("POPB-AGG", "interfaces")))
        assert any("ticket 4711" in line for line in diff), diff
        assert wait_for(lambda: [c.device for c in run.engine.snapshot().config_changes] == ["POPB-AGG"], 30)
        audit = run.store.query("SELECT actor, action, target FROM audit WHERE action = 'config.capture'")
        assert audit == [("tester", "config.capture", "POPB-AGG")]
        reads_before_stop = run.store.query("SELECT count(*) FROM config_checks")[0][0]
    finally:
        run.stop()

    # A restart reads everything again: against the stored baseline, so nothing is new.
    run = start_demo(scenario, speed=SPEED, database=database, address_base=address_base)
    try:
        assert wait_for(lambda: run.store.query("SELECT count(*) FROM config_checks")[0][0]
                        >= reads_before_stop + len(devices) * 3, 60)
        # The lab was rebuilt from the scenario, so POPB-AGG's comment is the original again: that one is a
        # real change back. Nothing else is.
        changed = run.store.query("SELECT DISTINCT device, category FROM config_checks WHERE changed")
        assert changed == [("POPB-AGG", "interfaces")]
        assert run.store.query("SELECT max(version) FROM config_versions WHERE device <> 'POPB-AGG'")[0][0] == 1
    finally:
        run.stop()


def test_capture_refuses_an_unknown_device(tmp_path: Path,
                                            address_base: str) -> None:
    scenario = load_scenario("core-link-cut").model_copy(update={"timeline": []})
    run = start_demo(scenario, speed=SPEED, database=tmp_path / "ispvm.duckdb", address_base=address_base)
    try:
        assert wait_for(lambda: len({r["device"] for r in _checks(run)}) == len(scenario.devices), 60)
        try:
            asyncio.run(_wait(run.engine.capture_config("NOSUCH")))
        except ValueError as exc:
            assert "NOSUCH" in str(exc)
        else:
            raise AssertionError("an unknown device was accepted")
    finally:
        run.stop()


async def _wait(future: Any) -> Any:
    return await asyncio.wait_for(asyncio.wrap_future(future), 30)


def test_a_change_the_schedule_has_not_seen_yet_is_found_when_the_fault_starts(tmp_path: Path,
                                                                               address_base: str) -> None:
    """The scheduled fingerprint is an hour away; the BGP change two minutes before the session drops is found by
    the fault's own read and added to the open incident (evidence, label, confidence, incident.updated)."""
    from ispvm_tui.lab.scenario import TimelineEntry

    scenario = load_scenario("upstream-down").model_copy(update={"timeline": [
        TimelineEntry(at=30, action="config_change", device="EDGE1", section="bgp"),
        TimelineEntry(at=150, action="bgp_down", peer="EDGE1:UPSTREAM1"),
    ]})

    def hourly(config: Any) -> Any:
        return config.model_copy(update={"config_watch": config.config_watch.model_copy(
            update={"interval_s": 3600.0})})

    run = start_demo(scenario, speed=SPEED, database=tmp_path / "ispvm.duckdb", address_base=address_base,
                     configure=hourly)
    try:
        def incident() -> Any:
            return next((i for i in run.engine.snapshot().incidents if i.labels.get("change_related")), None)

        assert wait_for(lambda: incident() is not None, 120)
        inc = incident()
        assert inc.root_causes[0].entity_id == "EDGE1:UPSTREAM1"
        assert any(line.startswith("Config change on EDGE1 (bgp)") for line in inc.evidence), inc.evidence
        # Only the baseline and the fault's read saw EDGE1: the schedule did not.
        reads = run.store.query("SELECT count(DISTINCT ts) FROM config_checks WHERE device = 'EDGE1'")[0][0]
        assert reads == 2
    finally:
        run.stop()


def test_a_device_keeps_being_polled_while_every_config_slot_is_taken(tmp_path: Path, address_base: str) -> None:
    """A read waiting for a config slot held the device's poll slot: at start-up, 300 devices behind 8 slots
    left some unpolled for two minutes. With every slot taken, polls go on and the read comes later."""
    scenario = load_scenario("core-link-cut").model_copy(update={"timeline": []})
    run = start_demo(scenario, speed=SPEED, database=tmp_path / "ispvm.duckdb", address_base=address_base)
    device = "POPB-AGG"

    def reads() -> int:
        return run.store.query("SELECT count(*) FROM config_checks WHERE device = ?", [device])[0][0]

    try:
        assert wait_for(lambda: reads() > 0, 60)  # its baseline
        poller = run.engine.poller
        assert poller is not None
        slots = run.engine.config.config_watch.concurrency

        async def take_every_slot() -> None:
            for _ in range(slots):
                await poller._config_sem.acquire()

        async def give_back() -> None:
            for _ in range(slots):
                poller._config_sem.release()

        run.loop.run(take_every_slot(), timeout=10)
        try:
            # A read that held a slot a moment ago may still be on its way to the file: the writer is FIFO.
            run.store.transaction(lambda con: None).result(timeout=30)
            before_reads = reads()
            asyncio.run(_wait(run.engine.capture_config(device, actor="tester")))  # due now
            polls = poller.schedules[device].polls

            async def poll_now() -> None:
                poller.poll_soon([device])

            # Each forced poll finishes (no read waits for a slot), so the count moves.
            for _ in range(3):
                run.loop.run(poll_now(), timeout=10)
                assert wait_for(lambda n=polls: poller.schedules[device].polls > n, 30)
                polls = poller.schedules[device].polls
            run.store.transaction(lambda con: None).result(timeout=30)
            assert reads() == before_reads
        finally:
            run.loop.run(give_back(), timeout=10)
        # Slots free again: the asked-for read happens after a later poll.
        assert wait_for(lambda: reads() > before_reads, 60)
    finally:
        run.stop()
