"""The demo kit: a scenario's lab, the real engine polling it, a webhook sink.

Used by ``ispvm demo`` (console or headless) and by the end-to-end tests, so
what the tests check is exactly what a user sees.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import json
import secrets as pysecrets
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.clock import ScaledClock
from ispvm_tui.config import Config
from ispvm_tui.engine import config_watch, webhooks
from ispvm_tui.engine.core import Engine
from ispvm_tui.engine.store import Store
from ispvm_tui.lab.inventory import lab_inventory, lab_secrets
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import Expect, IncidentExpect, Scenario, TimelineEntry, normalise_link
from ispvm_tui.lab.webhook_sink import WebhookSink
from ispvm_tui.secrets import StaticSecrets


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
               snmp_port: int | None = None,
               configure: Callable[[Config], Config] | None = None,
               secrets: Mapping[str, str] | None = None) -> DemoRun:
    """Start the lab and an engine on it; ``configure`` may adjust the engine's config (e.g. a tenant),
    ``secrets`` adds to the lab's own (e.g. a ticket system's token for a target ``configure`` added)."""
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
    if configure is not None:
        config = configure(config)
    store = Store(database)
    values = lab_secrets(lab, secret)
    if secrets:
        values = StaticSecrets({**values.values(), **secrets})
    engine = Engine(config, store=store, clock=clock, secrets=values)
    lab.on_maintenance = lambda entry: _open_window(engine, scenario, entry)
    loop.run(engine.start(), timeout=60)
    return DemoRun(scenario, clock, loop, lab, store, engine, sink, tmpdir)


async def _open_window(engine: Engine, scenario: Scenario, entry: TimelineEntry) -> None:
    """A timeline `maintenance` entry: the window an operator would open with `ispvm maint add`."""
    scope: dict[str, list[str]] = {"sites": [], "devices": [], "tags": [], "services": []}
    sites = {s.name for s in scenario.sites}
    services = {s.name for s in scenario.services}
    for item in entry.scope or []:
        if item.startswith("tag:"):
            scope["tags"].append(item[4:])
        elif item in sites:
            scope["sites"].append(item)
        elif item in services:
            scope["services"].append(item)
        else:
            scope["devices"].append(item)
    now = engine.clock.now()
    fields = {"name": entry.note or f"lab-maintenance-{entry.at:g}", "scope": scope, "starts_at": now,
              "ends_at": now + (entry.duration_s or 0), "note": f"scenario timeline, t={entry.at:g}s"}
    await asyncio.wrap_future(engine.maintenance_add(fields, actor="lab"))


def describe_expectations(expect: Expect | None, runs: int | None = None) -> list[str]:
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
    if expect.orphan_alerts_max is not None:
        lines.append(f"at most {expect.orphan_alerts_max} alert(s) outside every incident")
    if expect.config_changes is not None:
        lines.append(f"exactly {expect.config_changes} config change(s) detected")
    for i, inc in enumerate(expect.incident):
        lines.append(f"{_incident_label(inc.index if inc.index is not None else i)}: " + _describe_incident(inc))
    n = runs or expect.runs
    if n > 1:
        lines.append(f"{n} runs, each giving the same incidents, alerts and webhooks")
    return lines


def _describe_incident(inc: IncidentExpect) -> str:
    parts = []
    if inc.root_causes is not None:
        types = f" ({', '.join(inc.root_cause_types)})" if inc.root_cause_types else ""
        parts.append("rooted at " + " + ".join(inc.root_causes) + types)
    if inc.title_contains:
        parts.append(f"title has {inc.title_contains!r}")
    if inc.severity or inc.severity_in:
        parts.append("severity " + (inc.severity or " or ".join(inc.severity_in or [])))
    if inc.impact_devices is not None:
        parts.append("{}..{} devices".format(*inc.impact_devices))
    if inc.subscribers is not None:
        parts.append("{}..{} subscribers".format(*inc.subscribers))
    if inc.services is not None:
        parts.append("services [" + ", ".join(inc.services) + "]")
    parts += [f"label {k}={v}" for k, v in inc.labels.items()]
    if inc.devices_not_counted:
        parts.append("not counting " + ", ".join(inc.devices_not_counted))
    if inc.alert_rules:
        parts.append("alerts include " + ", ".join(inc.alert_rules))
    if inc.suppressed_min is not None:
        parts.append(f"at least {inc.suppressed_min} suppressed alert(s)")
    if inc.confidence_min is not None or inc.confidence_max is not None:
        parts.append(f"confidence {inc.confidence_min or 0:g}..{inc.confidence_max or 1:g}")
    parts += [f"evidence mentions {needle!r}" for needle in inc.evidence_contains]
    if inc.webhooks is not None:
        parts.append("webhooks " + ", ".join(inc.webhooks))
    if inc.status:
        parts.append(inc.status)
    return "; ".join(parts) or "exists"


def _incident_label(index: int) -> str:
    return "last incident" if index == -1 else f"incident {index + 1}" if index >= 0 else f"incident {index}"


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
    """What the run ended with, as plain data: the headless JSON, and what ``check`` reads."""
    snap = run.engine.snapshot()
    base = run.engine.config.ispvm.base_url
    incidents = []
    for inc in sorted(snap.incidents, key=lambda i: i.opened_at):
        obj = webhooks.incident_object(inc, base)
        impact = dict(obj["impact"], sites=list(inc.impact.sites), devices=list(inc.impact.devices),
                      services=list(inc.impact.services))
        incidents.append({
            "id": obj["id"], "title": obj["title"], "status": obj["status"], "severity": obj["severity"],
            "opened_at": obj["starts_at"], "closed_at": obj["ends_at"], "root_causes": obj["root_causes"],
            "impact": impact, "evidence_top": obj["evidence_top"], "evidence": list(inc.evidence),
            "labels": obj["labels"],
        })
    alert_rows = run.store.query_dicts(
        "SELECT rule, entity_id, state, suppressed, incident_id FROM alerts ORDER BY starts_at, rule, entity_id")
    deliveries = [
        {"event_type": r["event_type"], "incident_id": r["incident_id"], "status": r["status"],
         "attempts": r["attempts"]}
        for r in run.store.query_dicts("SELECT event_type, incident_id, status, attempts FROM outbox ORDER BY seq")
    ]
    received = [
        {"event_type": w.json.get("event_type"), "incident_id": (w.json.get("incident") or {}).get("id"),
         "accepted": 200 <= (w.response_status or 200) < 300, "signature_ok": w.signature_ok}
        for w in run.sink.received()
    ]
    changes = [{"device": c.device, "category": c.category, "version": c.version, "summary": c.summary}
               for c in reversed(config_watch.list_changes(run.store.query_dicts, limit=10_000))]
    result: dict[str, Any] = {
        "scenario": run.scenario.scenario.name,
        "simulated_seconds": round(run.lab.elapsed(), 1),
        "alerts": len(alert_rows),
        "suppressed_alerts": sum(1 for r in alert_rows if r["suppressed"]),
        "incidents": incidents,
        "deliveries": deliveries,
        "alert_rows": [{k: r[k] for k in ("rule", "entity_id", "state", "incident_id")}
                       | {"suppressed": bool(r["suppressed"])} for r in alert_rows],
        "webhooks": received,
        "config_changes": changes,
    }
    noise = _plain(getattr(snap, "noise", None))
    if noise is not None:
        result["noise"] = noise
    failures = check(run, result)
    result["expect"] = {"passed": not failures, "failures": failures}
    return result


def _plain(value: Any) -> Any:
    """A JSON-ready copy of what the engine exposes, or None when it has nothing usable."""
    if value is None:
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    elif hasattr(value, "_asdict"):
        value = value._asdict()
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return None


def check(run: DemoRun, result: dict[str, Any]) -> list[str]:
    """``check_report`` plus what needs the live run (when the first incident opened)."""
    expect = run.scenario.expect
    if expect is None:
        return []
    failures = check_report(expect, result)
    if expect.first_incident_within_s:
        fault = run.lab.first_fault_at()
        opened = min((i.opened_at for i in run.engine.snapshot().incidents), default=None)
        if fault is not None and (opened is None or opened - fault > expect.first_incident_within_s):
            took = "never" if opened is None else f"after {opened - fault:.0f}s"
            failures.append(f"expected the first incident within {expect.first_incident_within_s:g}s, "
                            f"it came {took}")
    return failures


def check_report(expect: Expect, result: dict[str, Any]) -> list[str]:
    """Every expectation that can be judged from a report alone; one line per failure."""
    failures: list[str] = []
    incidents = result["incidents"]
    if expect.incidents is not None and len(incidents) != expect.incidents:
        titles = "; ".join(i["title"] for i in incidents) or "none"
        failures.append(f"expected {expect.incidents} incident(s), got {len(incidents)}: {titles}")
    first = incidents[0] if incidents else None
    if expect.root_cause and (first is None or not first["root_causes"]
                              or first["root_causes"][0]["entity_id"] != normalise_link(expect.root_cause)):
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
    accepted = [w for w in result.get("webhooks", []) if w["accepted"]]
    if expect.webhook_events is not None:
        got = [w["event_type"] for w in accepted]
        if got != expect.webhook_events:
            failures.append(f"expected webhooks {expect.webhook_events}, received {got}")
        bad = [w for w in result.get("webhooks", []) if w["signature_ok"] is False]
        if bad:
            failures.append(f"{len(bad)} webhook(s) with a bad signature")
    changes = result.get("config_changes", [])
    if expect.config_changes is not None and len(changes) != expect.config_changes:
        said = "; ".join(f"{c['device']} {c['summary']}" for c in changes[:5]) or "none"
        failures.append(f"expected {expect.config_changes} config change(s), detected {len(changes)}: {said}")
    if expect.all_closed and any(i["status"] != "closed" for i in incidents):
        failures.append("expected every incident closed, some are still open")
    rows = result.get("alert_rows", [])
    if expect.orphan_alerts_max is not None:
        orphans = [r for r in rows if not r["suppressed"] and r["incident_id"] is None]
        if len(orphans) > expect.orphan_alerts_max:
            names = ", ".join(sorted({f"{r['rule']} {r['entity_id']}" for r in orphans}))
            failures.append(f"expected at most {expect.orphan_alerts_max} alert(s) outside every incident, "
                            f"got {len(orphans)}: {names}")
    for i, inc_expect in enumerate(expect.incident):
        index = inc_expect.index if inc_expect.index is not None else i
        label = _incident_label(index)
        if not -len(incidents) <= index < len(incidents):
            failures.append(f"{label}: expected, but only {len(incidents)} incident(s) opened")
            continue
        failures += [f"{label} ({incidents[index]['title']}): {f}"
                     for f in check_incident(inc_expect, incidents[index], rows, accepted)]
    return failures


def check_incident(expect: IncidentExpect, inc: dict[str, Any], alert_rows: list[dict[str, Any]],
                   received: list[dict[str, Any]]) -> list[str]:
    """One incident of a report against one ``[[expect.incident]]`` table."""
    failures: list[str] = []
    roots = {rc["entity_id"]: rc["entity_type"] for rc in inc["root_causes"]}
    if expect.root_causes is not None:
        want = {normalise_link(r) for r in expect.root_causes}
        if want != set(roots):
            failures.append(f"expected root causes {sorted(want)}, got {sorted(roots)}")
    if expect.root_cause_types is not None and expect.root_causes is not None:
        for rc, kind in zip(expect.root_causes, expect.root_cause_types, strict=True):
            got = roots.get(normalise_link(rc))
            if got is not None and got != kind:
                failures.append(f"expected root cause {rc} of type {kind}, got {got}")
    if expect.title_contains is not None and expect.title_contains not in inc["title"]:
        failures.append(f"expected a title containing {expect.title_contains!r}")
    if expect.severity is not None and inc["severity"] != expect.severity:
        failures.append(f"expected severity {expect.severity}, got {inc['severity']}")
    if expect.severity_in is not None and inc["severity"] not in expect.severity_in:
        failures.append(f"expected severity in {expect.severity_in}, got {inc['severity']}")
    impact = inc["impact"]
    if expect.impact_devices is not None:
        lo, hi = expect.impact_devices
        if not lo <= impact["devices_affected"] <= hi:
            failures.append(f"expected {lo}..{hi} devices affected, got {impact['devices_affected']} "
                            f"({', '.join(impact.get('devices', [])) or 'none named'})")
    if expect.subscribers is not None:
        lo, hi = expect.subscribers
        got = impact.get("estimated_subscribers_affected") or 0
        if not lo <= got <= hi:
            failures.append(f"expected {lo}..{hi} subscribers affected, got {got}")
    if expect.services is not None and set(expect.services) != set(impact.get("services", [])):
        failures.append(f"expected services {sorted(expect.services)}, got {sorted(impact.get('services', []))}")
    for k, v in expect.labels.items():
        if inc["labels"].get(k) != v:
            failures.append(f"expected label {k}={v}, got {inc['labels'].get(k)}")
    counted = set(expect.devices_not_counted) & set(impact.get("devices", []))
    if counted:
        failures.append(f"expected {', '.join(sorted(counted))} not counted in the impact")
    mine = [r for r in alert_rows if r["incident_id"] == inc["id"]]
    rules = {r["rule"] for r in mine}
    missing = [rule for rule in expect.alert_rules if rule not in rules]
    if missing:
        failures.append(f"expected alert(s) {', '.join(missing)} among its alerts, got {sorted(rules) or 'none'}")
    if expect.suppressed_min is not None:
        got = sum(1 for r in mine if r["suppressed"])
        if got < expect.suppressed_min:
            failures.append(f"expected at least {expect.suppressed_min} suppressed alert(s), got {got}")
    if expect.webhooks is not None:
        got_events = [w["event_type"] for w in received if w["incident_id"] == inc["id"]]
        if got_events != expect.webhooks:
            failures.append(f"expected webhooks {expect.webhooks}, received {got_events}")
    for needle in expect.evidence_contains:
        if not any(needle in line for line in inc.get("evidence", inc["evidence_top"])):
            failures.append(f"expected evidence containing {needle!r}, got {inc.get('evidence', [])}")
    if expect.status is not None and inc["status"] != expect.status:
        failures.append(f"expected status {expect.status}, got {inc['status']}")
    if expect.confidence_min is not None or expect.confidence_max is not None:
        conf = inc["root_causes"][0]["confidence"] if inc["root_causes"] else None
        lo, hi = expect.confidence_min or 0.0, 1.0 if expect.confidence_max is None else expect.confidence_max
        if conf is None or not lo <= conf <= hi:
            failures.append(f"expected the first root cause's confidence in {lo:g}..{hi:g}, got {conf}")
    return failures


# ---- repeated runs -------------------------------------------------------------


def signature(result: dict[str, Any]) -> dict[str, list[Any]]:
    """What must be the same every time a scenario is played: the incidents (sorted, without ids or
    times), each alert as (rule, entity, suppressed, its incident's index in that list) and the webhook
    sequence as (event type, incident index). Counts of repeated alerts and timings are left out."""
    keys = [[sorted(rc["entity_id"] for rc in inc["root_causes"]), inc["title"], inc["severity"], inc["status"],
             sorted(inc["impact"].get("devices", [])), sorted(inc["impact"].get("services", []))]
            for inc in result["incidents"]]
    ordered = sorted(keys, key=json.dumps)
    # Identical incidents share the first matching index, so which of them came first cannot matter.
    index_of = {inc["id"]: ordered.index(key) for inc, key in zip(result["incidents"], keys, strict=True)}
    alerts = {(r["rule"], r["entity_id"], bool(r["suppressed"]), index_of.get(r["incident_id"]))
              for r in result.get("alert_rows", [])}
    return {
        "incidents": ordered,
        "alerts": [list(a) for a in sorted(alerts, key=lambda a: (a[0], a[1], a[2], -1 if a[3] is None else a[3]))],
        "webhooks": [[w["event_type"], index_of.get(w["incident_id"])]
                     for w in result.get("webhooks", []) if w["accepted"]],
    }


def signature_diff(first: dict[str, list[Any]], other: dict[str, list[Any]], other_name: str) -> list[str]:
    """A unified diff, one line per incident, alert and webhook."""
    def lines(sig: dict[str, list[Any]]) -> list[str]:
        return [f"{part}: {json.dumps(item)}" for part in ("incidents", "alerts", "webhooks") for item in sig[part]]
    return list(difflib.unified_diff(lines(first), lines(other), "run 1", other_name, lineterm="", n=1))


def combine_runs(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One report for N runs: the first run's, every run's failures, and whether they all agree."""
    combined = dict(results[0])
    if len(results) == 1:
        return combined
    sigs = [signature(r) for r in results]
    failures = list(results[0]["expect"]["failures"])
    for k, r in enumerate(results[1:], start=2):
        failures += [f"run {k}: {f}" for f in r["expect"]["failures"]]
    diff: list[str] = []
    differing = [k for k, sig in enumerate(sigs[1:], start=2) if sig != sigs[0]]
    if differing:
        diff = signature_diff(sigs[0], sigs[differing[0] - 1], f"run {differing[0]}")
        failures.append(f"{len(differing)} of {len(results) - 1} later run(s) differ from run 1 "
                        f"(first: run {differing[0]})")
    combined["runs"] = sigs
    combined["expect"] = {"passed": not failures, "failures": failures}
    if diff:
        combined["expect"]["signature_diff"] = diff
    return combined


def play_headless(scenario: Scenario, *, speed: float, runs: int | None = None, database: Path | None = None,
                  address_base: str | None = None, on_run: Callable[[int, dict[str, Any]], None] | None = None,
                  ) -> dict[str, Any]:
    """Play the scenario ``runs`` times (default: its ``expect.runs``), each on a fresh lab and database."""
    n = runs or (scenario.expect.runs if scenario.expect else 1)
    if n > 1 and database is not None:
        raise ValueError("a kept database holds one run: drop --database or use --runs 1")
    results = []
    for k in range(n):
        run = start_demo(scenario, speed=speed, database=database, address_base=address_base)
        try:
            wait_for_end(run)
            results.append(report(run))
        finally:
            run.stop()
        if on_run is not None:
            on_run(k, results[-1])
    return combine_runs(results)
