"""The demo kit: a scenario's lab, the real engine polling it, a webhook sink.

Used by ``ispvm demo`` (console or headless) and by the end-to-end tests, so
what the tests check is exactly what a user sees.
"""

from __future__ import annotations

import secrets as pysecrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.clock import ScaledClock
from ispvm_tui.engine import webhooks
from ispvm_tui.engine.core import Engine
from ispvm_tui.engine.store import Store
from ispvm_tui.lab.inventory import lab_inventory, lab_secrets
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import Expect, Scenario
from ispvm_tui.lab.webhook_sink import WebhookSink


@dataclass
class DemoRun:
    scenario: Scenario
    clock: ScaledClock
    loop: BackgroundLoop
    lab: Lab
    store: Store
    engine: Engine
    sink: WebhookSink
    tmpdir: tempfile.TemporaryDirectory[str] | None = None
    notes: list[str] = field(default_factory=list)

    def stop(self) -> None:
        try:
            self.loop.run(self.engine.stop(), timeout=30)
            self.loop.run(self.lab.stop(), timeout=30)
        finally:
            self.loop.stop()
            self.store.close()
            self.sink.stop()
            if self.tmpdir is not None:
                self.tmpdir.cleanup()


def start_demo(scenario: Scenario, *, speed: float = 1.0, database: Path | None = None,
               address_base: str | None = None, api_port: int | None = None,
               snmp_port: int | None = None) -> DemoRun:
    clock = ScaledClock(speed)
    tmpdir = None
    if database is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="ispvm-demo-")
        database = Path(tmpdir.name) / "demo.duckdb"
    secret = pysecrets.token_urlsafe(24)
    sink = WebhookSink(secret=secret)
    sink.start()
    loop = BackgroundLoop("ispvm-demo")
    lab = Lab(scenario, clock, address_base=address_base, api_port=api_port, snmp_port=snmp_port)
    try:
        loop.run(lab.start(), timeout=60)
    except BaseException:
        loop.stop()
        sink.stop()
        raise
    config = lab_inventory(lab, database, webhook_url=sink.url)
    store = Store(database)
    engine = Engine(config, store=store, clock=clock, secrets=lab_secrets(lab, secret))
    loop.run(engine.start(), timeout=60)
    return DemoRun(scenario, clock, loop, lab, store, engine, sink, tmpdir)


def describe_expectations(expect: Expect | None) -> list[str]:
    if expect is None:
        return ["no expectations given: the run reports what the engine saw"]
    lines = []
    if expect.incidents is not None:
        lines.append(f"exactly {expect.incidents} incident(s)")
    if expect.root_cause:
        kind = f" ({expect.root_cause_type})" if expect.root_cause_type else ""
        lines.append(f"root cause {expect.root_cause}{kind}")
    if expect.impact_devices_min is not None:
        lines.append(f"at least {expect.impact_devices_min} devices in the impact")
    for k, v in expect.labels.items():
        lines.append(f"label {k}={v}")
    if expect.first_incident_within_s:
        lines.append(f"first incident within {expect.first_incident_within_s:g}s of the first fault")
    if expect.webhook_events is not None:
        lines.append("webhooks received: " + ", ".join(expect.webhook_events))
    if expect.all_closed:
        lines.append("every incident closed after recovery")
    return lines


def wait_for_end(run: DemoRun, *, progress: Any = None) -> None:
    """Let the scenario play out, then give recovery and deliveries time to settle."""
    sc = run.scenario
    cfg = run.engine.config
    while run.lab.elapsed() < sc.scenario.duration_s:
        time.sleep(0.1)
        if progress is not None:
            progress(run)
    # After the timeline: wait (bounded) for open incidents to close and the outbox to drain.
    grace = cfg.incidents.close_after_s + 4 * cfg.polling.interval_s
    deadline = run.clock.now() + grace
    while run.clock.now() < deadline:
        snap = run.engine.snapshot()
        open_incidents = [i for i in snap.incidents if i.status != "closed"]
        pending = run.store.query("SELECT count(*) FROM outbox WHERE status = 'pending'")[0][0]
        if not pending and (not open_incidents or not (sc.expect and sc.expect.all_closed)):
            break
        time.sleep(0.1)


def report(run: DemoRun) -> dict[str, Any]:
    snap = run.engine.snapshot()
    base = run.engine.config.ispvm.base_url
    incidents = []
    for inc in sorted(snap.incidents, key=lambda i: i.opened_at):
        obj = webhooks.incident_object(inc, base)
        incidents.append({
            "id": obj["id"], "title": obj["title"], "status": obj["status"], "severity": obj["severity"],
            "opened_at": obj["starts_at"], "closed_at": obj["ends_at"], "root_causes": obj["root_causes"],
            "impact": obj["impact"], "evidence_top": obj["evidence_top"], "labels": obj["labels"],
        })
    alerts, suppressed = run.store.query("SELECT count(*), count(*) FILTER (WHERE suppressed) FROM alerts")[0]
    deliveries = [
        {"event_type": r["event_type"], "incident_id": r["incident_id"], "status": r["status"],
         "attempts": r["attempts"]}
        for r in run.store.query_dicts("SELECT event_type, incident_id, status, attempts FROM outbox ORDER BY seq")
    ]
    result = {
        "scenario": run.scenario.scenario.name,
        "simulated_seconds": round(run.lab.elapsed(), 1),
        "alerts": alerts,
        "suppressed_alerts": suppressed,
        "incidents": incidents,
        "deliveries": deliveries,
    }
    failures = check(run, result)
    result["expect"] = {"passed": not failures, "failures": failures}
    return result


def check(run: DemoRun, result: dict[str, Any]) -> list[str]:
    expect = run.scenario.expect
    if expect is None:
        return []
    failures: list[str] = []
    incidents = result["incidents"]
    if expect.incidents is not None and len(incidents) != expect.incidents:
        titles = "; ".join(i["title"] for i in incidents) or "none"
        failures.append(f"expected {expect.incidents} incident(s), got {len(incidents)}: {titles}")
    first = incidents[0] if incidents else None
    if expect.root_cause and (first is None or not first["root_causes"]
                              or first["root_causes"][0]["entity_id"] != expect.root_cause):
        got = first["root_causes"][0]["entity_id"] if first and first["root_causes"] else "none"
        failures.append(f"expected root cause {expect.root_cause}, got {got}")
    if expect.root_cause_type and first and first["root_causes"] \
            and first["root_causes"][0]["entity_type"] != expect.root_cause_type:
        failures.append(f"expected root cause type {expect.root_cause_type}, "
                        f"got {first['root_causes'][0]['entity_type']}")
    if expect.impact_devices_min is not None and (
            first is None or first["impact"]["devices_affected"] < expect.impact_devices_min):
        got = first["impact"]["devices_affected"] if first else 0
        failures.append(f"expected at least {expect.impact_devices_min} devices affected, got {got}")
    for k, v in expect.labels.items():
        if first is None or first["labels"].get(k) != v:
            failures.append(f"expected label {k}={v}, got {first['labels'].get(k) if first else None}")
    if expect.first_incident_within_s:
        fault = run.lab.first_fault_at()
        opened = min((i.opened_at for i in run.engine.snapshot().incidents), default=None)
        if fault is not None and (opened is None or opened - fault > expect.first_incident_within_s):
            took = "never" if opened is None else f"after {opened - fault:.0f}s"
            failures.append(f"expected the first incident within {expect.first_incident_within_s:g}s, "
                            f"it came {took}")
    if expect.webhook_events is not None:
        got = [w.json.get("event_type") for w in run.sink.received() if 200 <= (w.response_status or 200) < 300]
        if got != expect.webhook_events:
            failures.append(f"expected webhooks {expect.webhook_events}, received {got}")
        bad = [w for w in run.sink.received() if w.signature_ok is False]
        if bad:
            failures.append(f"{len(bad)} webhook(s) with a bad signature")
    if expect.all_closed and any(i["status"] != "closed" for i in incidents):
        failures.append("expected every incident closed, some are still open")
    return failures


