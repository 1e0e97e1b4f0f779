"""``ispvm report sla|capacity`` on real DuckDB files: downtime arithmetic on alerts placed at known times
(planned and not, clipped to the window, sites and services made of parts), MTTA/MTTR, the capacity
trend through rollups rising at a known rate, each output format; then both reports through a running
demo engine that saw a real outage."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ispvm_tui.engine.store import Store
from tests.test_incidents_cli import ispvm, ispvm_json
from tests.waiting import wait_for

T0 = 1_790_000_000.0  # 2026-09-21 ...; whole report windows are placed from here
DAY = 86400.0

CONFIG = """
[ispvm]
database = "ispvm.duckdb"
[reports]
sla_target_pct = 99.9
capacity_threshold_pct = 80
capacity_days = 14
[console]
attach = ["R1"]
[credentials.noc]
username = "noc"
password_secret = "routers/noc"
[[sites]]
name = "S1"
[[sites]]
name = "S2"
[[devices]]
name = "R1"
site = "S1"
role = "core"
address = "127.0.0.1"
credential = "noc"
[[devices]]
name = "R2"
site = "S1"
role = "core"
address = "127.0.0.2"
credential = "noc"
[[devices]]
name = "R3"
site = "S2"
role = "access"
address = "127.0.0.3"
credential = "noc"
[[links]]
a = "R1:ether1"
b = "R3:ether1"
speed_mbps = 1000
[[links]]
a = "R1:ether2"
b = "R2:ether2"
[[bgp_peers]]
device = "R1"
name = "UP1"
[[services]]
name = "svc-site"
depends_on = ["S2"]
sla_target_pct = 50
[[services]]
name = "svc-link-and-r2"
depends_on = ["R1:ether1--R3:ether1", "R2"]
[[services]]
name = "svc-peer"
depends_on = ["R1:UP1"]
"""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _alert(con: Any, n: int, rule: str, entity: str, start: float, end: float | None,
           incident: str | None = None) -> None:
    con.execute("INSERT INTO alerts (id, rule, entity_type, entity_id, severity, state, starts_at, ends_at, summary, "
                "incident_id, suppressed) VALUES (?, ?, 'x', ?, 'major', ?, ?, ?, 's', ?, false)",
                [f"a{n}", rule, entity, "firing" if end is None else "resolved", start, end, incident])


def _incident(con: Any, iid: str, severity: str, opened: float, acked: float | None, closed: float | None,
              labels: dict[str, str]) -> None:
    con.execute("INSERT INTO incidents (id, root_key, title, status, severity, priority, opened_at, closed_at, "
                "acked_by, acked_at, labels, updated_at) VALUES (?, ?, 't', ?, ?, 'P2', ?, ?, ?, ?, ?, ?)",
                [iid, iid, "closed" if closed else "open", severity, opened, closed, "noc" if acked else None,
                 acked, json.dumps(labels), opened])


@pytest.fixture
def reported(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)

    def seed(con: Any) -> None:
        _incident(con, "inc-maint", "major", T0 + 5000, None, T0 + 5600, {"maintenance": "MW-1"})
        _incident(con, "inc-crit", "critical", T0 + 1000, T0 + 1120, T0 + 2000, {})
        _incident(con, "inc-before", "minor", T0 - 9000, T0 - 8000, T0 - 7000, {})
        _alert(con, 1, "device_unreachable", "R1", T0 + 1000, T0 + 2000, "inc-crit")
        _alert(con, 2, "device_unreachable", "R2", T0 + 1500, T0 + 3000, "inc-maint")  # planned
        _alert(con, 3, "device_unreachable", "R3", T0 - 500, T0 + 100)  # clipped at the start: 100 s
        _alert(con, 4, "device_unreachable", "R3", T0 + 9000, None)  # still firing: to the end, 1,000 s
        _alert(con, 5, "interface_down", "R3:ether1", T0 + 5000, T0 + 5600)
        _alert(con, 6, "bgp_session_down", "R1:UP1", T0 + 7000, T0 + 7300)
        _alert(con, 7, "interface_down", "R1:ether9", T0 + 100, T0 + 200)  # on no link: in nothing
        _alert(con, 8, "device_unreachable", "R1", T0 + 20000, T0 + 21000)  # after the window

    with Store(tmp_path / "ispvm.duckdb") as store:
        store.transaction(seed).result(30)
    return config


def _rows(rep: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["kind"], r["name"]): r for r in rep["rows"]}


def test_sla_downtime_availability_and_breaches(reported: Path) -> None:
    rep = ispvm_json("report", "sla", "-c", reported, "--from", _iso(T0), "--to", _iso(T0 + 10000))
    rows = _rows(rep)
    r1, r2, r3 = rows[("device", "R1")], rows[("device", "R2")], rows[("device", "R3")]
    assert (r1["down_s"], r1["planned_s"], r1["unplanned_s"], r1["outages"]) == (1000, 0, 1000, 1)
    assert r1["availability_pct"] == pytest.approx(90.0) and r1["breach"]
    assert (r2["down_s"], r2["planned_s"], r2["unplanned_s"]) == (1500, 1500, 0)
    assert r2["availability_pct"] == 100.0 and not r2["breach"]  # maintenance does not count against it
    assert (r3["down_s"], r3["outages"], r3["longest_s"]) == (1100, 2, 1000)
    s1 = rows[("site", "S1")]  # down only while R1 and R2 both were: 1,500-2,000, R2 in maintenance then
    assert (s1["down_s"], s1["planned_s"], s1["unplanned_s"]) == (500, 500, 0)
    assert rows[("site", "S2")]["unplanned_s"] == 1100
    site_svc = rows[("service", "svc-site")]
    assert site_svc["unplanned_s"] == 1100 and site_svc["target_pct"] == 50 and not site_svc["breach"]
    assert rows[("service", "svc-link-and-r2")]["down_s"] == 0  # never both down at once
    assert rows[("service", "svc-peer")]["down_s"] == 1300  # the session's 300 s and its router's 1,000
    assert {(b["kind"], b["name"]) for b in rep["breaches"]} == {
        ("device", "R1"), ("device", "R3"), ("site", "S2"), ("service", "svc-peer")}

    by = {i["severity"]: i for i in rep["incidents"]}
    assert (by["all"]["incidents"], by["all"]["in_maintenance"], by["all"]["acknowledged"]) == (2, 1, 1)
    assert by["all"]["mtta_s"] == 120 and by["all"]["mttr_s"] == 800 and by["all"]["mttr_median_s"] == 800
    assert by["critical"]["mttr_s"] == 1000 and "minor" not in by


def test_sla_report_formats(reported: Path) -> None:
    window = ("--from", _iso(T0), "--to", _iso(T0 + 10000))
    text = ispvm("report", "sla", "-c", reported, *window)
    assert text.returncode == 0, text.stderr
    assert "4 breaches: device R1 90.000 %" in text.stdout
    line = next(ln for ln in text.stdout.splitlines() if ln.split()[:2] == ["device", "R1"])
    assert line.split()[2:5] == ["90", "99.9", "BREACH"]
    md = ispvm("report", "sla", "-c", reported, *window, "--md").stdout
    assert md.startswith("# SLA report ") and "| service | svc-site | 89 | 50 | ok |" in md
    table = list(csv.DictReader(io.StringIO(ispvm("report", "sla", "-c", reported, *window, "--csv").stdout)))
    assert {r["section"] for r in table} == {"availability", "incidents"}
    assert next(r for r in table if r["name"] == "R3")["unplanned_s"] == "1100.0"
    both = ispvm("report", "sla", "-c", reported, "--csv", "--md")
    assert both.returncode == 2 and "at most one" in both.stderr
    for bad in (("--from", "yesterday"), ("--from", _iso(T0 + 10), "--to", _iso(T0)), ("--to", "2026-13-45")):
        got = ispvm("report", "sla", "-c", reported, *bad)
        assert got.returncode == 2, (bad, got.stderr)
    day = ispvm_json("report", "sla", "-c", reported, "--from", "2026-09-21", "--to", "2026-09-22")
    assert day["to"] - day["from"] == DAY


def test_capacity_trend_and_crossing(reported: Path) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    def seed(con: Any) -> None:
        for back in range(1, 15):  # 14 whole days before today, rising 2 points a day: 40 % ... 66 %
            day = today - back * DAY
            pct = 40.0 + 2.0 * (14 - back)
            for k in range(288):  # one bucket in 25 at 1.2x (4 %): the day's p95 is still the base
                rate = pct / 100 * 1e9 * (1.2 if k % 25 == 0 else 1.0)
                con.execute("INSERT INTO interface_rollup_5m (bucket, device, interface, samples, "
                            "oper_down_samples, rx_bps_samples, rx_bps_avg, tx_bps_samples, tx_bps_avg) "
                            "VALUES (?, 'R1', 'ether1', 1, 0, 1, ?, 1, ?)", [day + k * 300, rate, rate / 2])

    with Store(reported.parent / "ispvm.duckdb") as store:
        store.transaction(seed).result(60)
    rep = ispvm_json("report", "capacity", "-c", reported)
    link = next(r for r in rep["links"] if r["link"] == "R1:ether1--R3:ether1")
    assert link["days"] == 14 and link["speed_mbps"] == 1000
    assert link["latest_p95_pct"] == pytest.approx(66.0, abs=0.5)
    assert link["fit"]["slope_pct_per_day"] == pytest.approx(2.0, abs=0.05) and link["fit"]["r2"] > 0.99
    # 66 % yesterday, +2 a day: 80 % seven days after yesterday, today + 6.
    assert link["crosses"] == datetime.fromtimestamp(today + 6 * DAY, UTC).strftime("%Y-%m-%d")
    other = next(r for r in rep["links"] if r["link"] == "R1:ether2--R2:ether2")
    assert other["days"] == 0 and other["crosses"] is None and "no speed known" in other["why"]
    text = ispvm("report", "capacity", "-c", reported).stdout
    assert "R1:ether1--R3:ether1" in text and "+2.000" in text
    flat = list(csv.DictReader(io.StringIO(ispvm("report", "capacity", "-c", reported, "--csv").stdout)))
    assert flat[0]["fit_method"] == "least squares"


def test_reports_through_a_running_engine(tmp_path: Path, address_base: str) -> None:
    from ispvm_tui.demo import start_demo
    from tests.held_faults import held

    db = tmp_path / "ispvm.duckdb"
    run = start_demo(held("core-link-cut"), speed=10.0, database=db, address_base=address_base)
    try:
        assert wait_for(lambda: run.engine.snapshot().incidents, 60), "the cut should open an incident"
        short = run.engine.snapshot().incidents[0].id[:8]
        assert ispvm("incidents", "ack", short, "--database", db, "--actor", "oncall").returncode == 0
        reports: list[dict] = []

        def cut_off_counted() -> bool:
            # The incident can open on the link alerts before the routers' own unreachable alerts are raised
            # (two polls, 10 s, each router on its own phase): until then their availability is whole, and the
            # site's until every router of it is down.
            reports.append(ispvm_json("report", "sla", "--database", db, "--from", "1h"))  # the engine's clock
            rows = _rows(reports[-1])
            return rows[("device", "POPA-AGG")]["down_s"] > 0 and rows[("site", "POP-A")]["down_s"] > 0
        assert wait_for(cut_off_counted, 60), "POP-A's outage never counted"
        rep = reports[-1]
        rows = _rows(rep)
        assert rows[("device", "POPA-AGG")]["down_s"] > 0 and rows[("device", "CORE1")]["down_s"] == 0
        assert rows[("site", "POP-A")]["down_s"] > 0
        everything = next(i for i in rep["incidents"] if i["severity"] == "all")
        assert everything["incidents"] >= 1 and everything["mtta_s"] is not None
        cap = ispvm_json("report", "capacity", "--database", db)
        assert {r["link"] for r in cap["links"]} >= {"CORE1:ether2--POPA-AGG:ether1"}
    finally:
        run.stop()
    off = ispvm("report", "sla", "--database", db)
    assert off.returncode == 2 and "needs the inventory" in off.stderr
