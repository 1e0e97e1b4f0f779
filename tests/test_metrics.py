"""Self-monitoring: Prometheus /metrics of a real engine polling the lab (scraped over HTTP and parsed
with prometheus-client's own parser), and alerts on the monitoring itself reaching the incident stream: a
webhook receiver that stops answering becomes an incident, which clears once it answers again."""

from __future__ import annotations

import dataclasses
import socket
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from ispvm_tui.config import Config
from ispvm_tui.engine import health
from ispvm_tui.engine.api import CollectorView
from ispvm_tui.engine.outbox import Breaker
from tests.test_incidents_cli import ispvm_json
from tests.waiting import wait_for


def _with_metrics(port: int = 0) -> Any:
    def configure(config: Config) -> Config:
        return config.model_copy(update={"metrics": config.metrics.model_copy(update={"enabled": True,
                                                                                      "port": port})})
    return configure


def _scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _value(families: dict[str, Any], name: str, **labels: str) -> float:
    return sum(s.value for f in families.values() for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_of_a_running_engine(tmp_path: Path, address_base: str) -> None:
    from ispvm_tui.demo import start_demo
    from tests.held_faults import held

    run = start_demo(held("core-link-cut"), speed=10.0, database=tmp_path / "ispvm.duckdb",
                     address_base=address_base, configure=_with_metrics())
    try:
        assert wait_for(lambda: run.engine.snapshot().incidents, 60), "the cut should open an incident"
        server = run.engine.metrics_server
        assert server is not None and server.address == "127.0.0.1"
        assert wait_for(lambda: _value(_scrape(server.port), "ispvm_deliveries_total", outcome="delivered") >= 1, 60)
        got = _scrape(server.port)
        assert _value(got, "ispvm_up") == 1
        assert _value(got, "ispvm_polls_total", collector="api", outcome="ok") > 0
        assert _value(got, "ispvm_polls_total", collector="api") > _value(got, "ispvm_polls_total", outcome="ok") \
            - _value(got, "ispvm_polls_total", collector="snmp", outcome="ok") - 1  # failing polls are counted too
        assert _value(got, "ispvm_poll_duration_seconds_count", collector="api") > 0
        assert _value(got, "ispvm_poll_duration_seconds_bucket", collector="api", le="+Inf") == \
            _value(got, "ispvm_poll_duration_seconds_count", collector="api")
        assert _value(got, "ispvm_correlation_seconds_count") > 0 and _value(got, "ispvm_rules_seconds_count") > 0
        assert _value(got, "ispvm_samples_written_total") > 0 and _value(got, "ispvm_store_writer_up") == 1
        assert _value(got, "ispvm_database_bytes") > 0
        assert _value(got, "ispvm_incidents_open", severity="critical") >= 1
        assert _value(got, "ispvm_devices") == len(run.engine.config.devices)
        assert _value(got, "ispvm_devices", state="up") < _value(got, "ispvm_devices")  # the ones cut off
        assert _value(got, "ispvm_alerts_firing") >= 1
        assert _value(got, "ispvm_outbox_events", target="lab-sink", status="delivered") >= 1
        assert _value(got, "ispvm_target_circuit_open", target="lab-sink") == 0
        assert "ispvm_poller_lag_seconds" in got and _value(got, "ispvm_collector_up", collector="local") in (0, 1)

        # A second engine asking for the same port runs on without /metrics, and says so.
        taken = server.port
    finally:
        run.stop()
    assert run.engine.metrics_server is None
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        again = start_demo(held("core-link-cut"), speed=10.0, database=tmp_path / "second.duckdb",
                           address_base=address_base, configure=_with_metrics(blocker.getsockname()[1]))
        try:
            assert again.engine.metrics_server is None and "not served" in (again.engine.metrics_error or "")
            verdict = ispvm_json("health", "--database", tmp_path / "second.duckdb", "--wait", "30")
            assert verdict["ok"] and any("/metrics not served" in w for w in verdict["warnings"])
        finally:
            again.stop()
    finally:
        blocker.close()
    assert taken


def test_self_checks_name_a_stalled_poller_and_failing_targets() -> None:
    local = CollectorView("local", "local", "degraded", 10, 1.0, 0, 400.0)
    checks = {c.entity: c for c in health.self_checks(
        [local], {"noc-hook": dataclasses.replace(Breaker(), state="open", failures=5, last_error="HTTP 503"),
                  "tickets": Breaker()}, 60.0)}
    assert checks["ispvm:poller"].bad is True and "400 s" in checks["ispvm:poller"].summary
    assert checks["target:noc-hook"].bad is True and "HTTP 503" in checks["target:noc-hook"].evidence[0]
    assert checks["target:tickets"].bad is False
    keeping = health.self_checks([dataclasses.replace(local, lag_s=90.0)], {}, 60.0)
    assert keeping[0].bad is False  # within two intervals: not stalled
    assert health.self_checks([dataclasses.replace(local, lag_s=None)], {}, 60.0)[0].bad is None


def test_a_failing_receiver_becomes_an_incident_and_clears(tmp_path: Path, address_base: str) -> None:
    from ispvm_tui.demo import start_demo
    from tests.held_faults import held

    run = start_demo(held("core-link-cut"), speed=20.0, database=tmp_path / "ispvm.duckdb",
                     address_base=address_base)
    try:
        assert wait_for(lambda: run.engine.snapshot().incidents, 60), "the cut should open an incident"
        assert wait_for(lambda: run.sink.received(), 60)
        run.sink.stop()  # the receiver goes away: the next events fail, its breaker opens

        outage = run.engine.snapshot().incidents[0]
        run.loop.run(run.engine.ack(outage.id, "oncall"), timeout=30)

        def failing() -> Any:
            return next((i for i in run.engine.snapshot().incidents
                         if i.root_causes and i.root_causes[0].entity_id == "target:lab-sink"
                         and i.status != "closed"), None)
        assert wait_for(failing, 120), [i.title for i in run.engine.snapshot().incidents]
        incident = failing()
        assert incident.title == "Notifications to lab-sink failing"
        assert any("failed in a row" in e for e in incident.evidence)

        run.sink.start()  # back on the same port: its probe succeeds, the queue drains, the alert resolves
        # What it missed meanwhile arrives: this very incident's own opening, queued for it while it was down.
        assert wait_for(lambda: any(w.json.get("event_type") == "incident.opened"
                                    and w.json["incident"]["id"] == incident.id for w in run.sink.received()), 120)
        assert wait_for(lambda: not any(a.rule == "notification_target_failing"
                                        for a in run.engine.snapshot().alerts), 120)
        assert wait_for(lambda: run.engine.snapshot().incident(incident.id).status == "closed", 120)
    finally:
        run.stop()
