"""The first slice end to end: lab routers -> pollers -> DuckDB -> incident -> signed webhook.

These run the built-in scenarios at high speed through the same demo kit a
user starts with `ispvm demo`, and check what a real HTTP receiver got.
"""

from __future__ import annotations

import json
import uuid

import pytest

from ispvm_tui.demo import report, start_demo, wait_for_end
from ispvm_tui.engine.webhooks import verify
from ispvm_tui.lab.scenario import load_scenario
from tests.waiting import wait_for as _wait

SPEED = 10.0  # the whole lab and engine share two cores: faster starves the pollers




@pytest.fixture
def core_link_cut(address_base: str):
    run = start_demo(load_scenario("core-link-cut"), speed=SPEED, address_base=address_base)
    yield run
    run.stop()


def test_core_link_cut_gives_one_incident_rooted_at_the_link(core_link_cut) -> None:
    run = core_link_cut
    wait_for_end(run)
    result = report(run)

    assert result["expect"] == {"passed": True, "failures": []}, result["expect"]
    (incident,) = result["incidents"]
    root = incident["root_causes"][0]
    assert root["entity_type"] == "link"
    assert root["entity_id"] == "CORE1:ether2--POPA-AGG:ether1"
    assert 0 < root["confidence"] <= 1
    assert incident["impact"]["devices_affected"] == 3  # POPA-AGG and both access switches
    assert incident["impact"]["sites_affected"] == 1
    assert incident["status"] == "closed"
    assert any("oper-down" in line for line in incident["evidence_top"])

    # The devices behind the link raised alerts of their own, all suppressed under the one incident.
    rows = run.store.query_dicts("SELECT rule, entity_id, suppressed, incident_id FROM alerts")
    unreachable = {r["entity_id"]: r for r in rows if r["rule"] == "device_unreachable"}
    assert unreachable, "the devices behind the cut should have been seen unreachable"
    assert set(unreachable) <= {"POPA-AGG", "POPA-ACC1", "POPA-ACC2"}
    assert all(r["incident_id"] == incident["id"] for r in unreachable.values())
    assert result["suppressed_alerts"] >= 1

    # Exactly one signed incident.opened and one incident.closed reached the receiver.
    received = run.sink.received()
    assert [w.json["event_type"] for w in received] == ["incident.opened", "incident.closed"]
    secret = next(iter(run.engine.targets.values())).endpoint.secret
    for w in received:
        assert w.signature_ok is True
        assert verify(w.body, secret, w.header("X-ISPVM-Signature"))
        assert w.header("X-ISPVM-Event-Type") == w.json["event_type"]
        uuid.UUID(w.header("X-ISPVM-Delivery-ID"))
        assert w.json["incident"]["id"] == incident["id"]
    opened, closed = (w.json for w in received)
    assert opened["incident"]["ends_at"] is None and opened["incident"]["status"] == "open"
    assert closed["incident"]["ends_at"] is not None and closed["incident"]["status"] == "closed"
    assert opened["event_id"] != closed["event_id"]


def test_upstream_down_is_a_transit_incident_with_provider_labels(address_base: str) -> None:
    run = start_demo(load_scenario("upstream-down"), speed=SPEED, address_base=address_base)
    try:
        wait_for_end(run)
        result = report(run)
    finally:
        run.stop()
    assert result["expect"]["passed"], result["expect"]
    (incident,) = result["incidents"]
    assert incident["root_causes"][0]["entity_type"] == "bgp_peer"
    assert incident["labels"]["provider"] == "UPSTREAM1"
    assert incident["impact"]["services_affected"] == 1


def test_samples_are_stored_and_rates_computed(core_link_cut) -> None:
    run = core_link_cut
    edge_rates = ("SELECT count(*) FROM interface_samples WHERE device='CORE1' AND interface='ether1' "
                  "AND collector='api' AND tx_bps IS NOT NULL")
    assert _wait(lambda: run.store.query(edge_rates)[0][0] >= 7, 60)
    devices = {r[0] for r in run.store.query("SELECT DISTINCT device FROM poll_log WHERE ok")}
    assert {"CORE1", "EDGE1", "POPB-AGG"} <= devices
    collectors = {r[0] for r in run.store.query("SELECT DISTINCT collector FROM poll_log WHERE ok")}
    assert collectors == {"api", "snmp"}
    # The CORE1-EDGE1 link carries 35% of 10 Gbit/s in the lab: the measured rate must be near it.
    rate = run.store.query(
        "SELECT median(tx_bps) FROM interface_samples WHERE device='CORE1' AND interface='ether1' "
        "AND collector='api' AND tx_bps IS NOT NULL")[0][0]
    assert 0.25 * 10e9 < rate < 0.45 * 10e9


def test_receiver_returning_500_loses_nothing(core_link_cut) -> None:
    run = core_link_cut
    run.sink.set_responses([500, 500, 503])
    assert _wait(lambda: any(w.response_status == 200 for w in run.sink.received()), 60)
    received = run.sink.received()
    assert [w.response_status for w in received[:4]] == [500, 500, 503, 200]
    event_ids = {w.json["event_id"] for w in received[:4]}
    assert len(event_ids) == 1, "every retry carries the same event_id"
    assert len({w.header("X-ISPVM-Delivery-ID") for w in received[:4]}) == 4, "a new delivery id per attempt"
    event_id = received[0].json["event_id"]
    status = "SELECT status, attempts FROM outbox WHERE event_id = ?"
    # The receiver has answered; the outbox records that a moment later, on the store's writer thread.
    assert _wait(lambda: run.store.query_dicts(status, [event_id])[0]["status"] == "delivered", 10)
    assert run.store.query_dicts(status, [event_id]) == [{"status": "delivered", "attempts": 4}]
    attempts = run.store.query("SELECT outcome FROM deliveries WHERE event_id = ? ORDER BY attempt",
                               [received[0].json["event_id"]])
    assert [a[0] for a in attempts] == ["retry", "retry", "retry", "delivered"]


def test_router_refusing_login_is_reported_not_fatal(address_base: str) -> None:
    import tempfile
    from pathlib import Path

    from ispvm_tui.aioloop import BackgroundLoop
    from ispvm_tui.clock import ScaledClock
    from ispvm_tui.engine.core import Engine
    from ispvm_tui.engine.store import Store
    from ispvm_tui.lab.inventory import LAB_COMMUNITY, LAB_PASSWORD, lab_inventory
    from ispvm_tui.lab.runner import Lab
    from ispvm_tui.secrets import StaticSecrets

    sc = load_scenario("core-link-cut")
    clock = ScaledClock(SPEED)
    loop = BackgroundLoop("test-login")
    lab = Lab(sc, clock, address_base=address_base)
    loop.run(lab.start(play=False))
    with tempfile.TemporaryDirectory() as tmp:
        config = lab_inventory(lab, Path(tmp) / "x.duckdb")
        store = Store(Path(tmp) / "x.duckdb")
        wrong = "not-the-password-" + uuid.uuid4().hex
        engine = Engine(config, store=store, clock=clock,
                        secrets=StaticSecrets({LAB_PASSWORD: wrong, LAB_COMMUNITY: sc.lab.community}))
        try:
            loop.run(engine.start())
            assert _wait(lambda: any(i.title.startswith("Monitoring login refused")
                                     for i in engine.snapshot().incidents), 30)
            snap = engine.snapshot()
            # SNMP still answers: the routers are up, only the API login is refused.
            assert all(d.state != "down" for d in snap.devices)
            errors = [d.last_error or "" for d in snap.devices]
            dumped = json.dumps([i.evidence for i in snap.incidents]) + " ".join(errors)
            assert wrong not in dumped
            logged = store.query("SELECT error FROM poll_log WHERE NOT ok LIMIT 50")
            assert logged and all(wrong not in (r[0] or "") for r in logged)
            assert any("invalid user name or password" in (r[0] or "") for r in logged)
        finally:
            loop.run(engine.stop())
            loop.run(lab.stop())
            loop.stop()
            store.close()


def test_engine_rolls_up_samples_on_its_schedule(address_base: str, tmp_path) -> None:
    """Sped up: 5-minute rollups appear while the demo runs (retention.run_every_s from the lab config)."""
    run = start_demo(load_scenario("core-link-cut"), speed=SPEED, address_base=address_base,
                     database=tmp_path / "r.duckdb")
    try:
        # A bucket with rates: on a loaded host the first bucket may hold only a link's first sample.
        with_rates = ("SELECT samples, rx_bps_avg, rx_bps_max, rx_bps_p95 FROM interface_rollup_5m "
                      "WHERE device = 'CORE1' AND interface = 'ether1' AND rx_bps_avg IS NOT NULL "
                      "ORDER BY bucket LIMIT 1")
        assert _wait(lambda: run.engine.last_maintenance is not None and run.store.query(with_rates), 90)
        row = run.store.query_dicts(with_rates)[0]
        assert row["samples"] > 0
        assert row["rx_bps_avg"] <= row["rx_bps_p95"] <= row["rx_bps_max"]
        health = run.store.query("SELECT count(*) FROM sensor_samples")[0][0]
        assert health > 0
    finally:
        run.stop()


def test_dead_letter_then_manual_resend_is_delivered_and_audited(core_link_cut) -> None:
    run = core_link_cut
    run.sink.set_responses([410])  # a permanent refusal: dead-lettered at once, not retried
    dead = "SELECT event_id, attempts FROM outbox WHERE status = 'dead'"
    assert _wait(lambda: run.store.query(dead), 60)
    (event_id, attempts), = run.store.query(dead)
    assert attempts == 1
    assert [w.response_status for w in run.sink.received()] == [410]

    run.engine.resend(event_id, "noc-oncall").result(10)
    status = "SELECT status FROM outbox WHERE event_id = ?"
    assert _wait(lambda: run.store.query(status, [event_id]) == [("delivered",)], 30)
    received = run.sink.received()
    assert [w.response_status for w in received[:2]] == [410, 200]
    assert received[0].json["event_id"] == received[1].json["event_id"] == event_id
    assert run.store.query("SELECT actor, action, target FROM audit WHERE action = 'webhook.resend'") == [
        ("noc-oncall", "webhook.resend", event_id)]
