"""bench.engine_scale end to end, tiny: a lab topology, the real engine, one storm, the SIGTERM check.

Only the shape of the report is checked (every figure present, sane types): the figures are
timings of a loaded machine, which tests never assert.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.lab_topology import behind, build_topology, pop_layout

REPO = Path(__file__).resolve().parent.parent


def test_topology_has_cores_pops_and_dual_homing() -> None:
    pops = pop_layout(1000)
    assert sum(1 + len(p.access) for p in pops) + 2 == 1000
    assert any(len(p.homes) == 2 for p in pops) and any(p.homes == ["CORE2"] for p in pops)
    sc = build_topology(60, 4, "127.61.0.0")
    assert len(sc.devices) == 60
    cut = behind(sc, "CORE2")
    assert cut[0] == "CORE2"
    # A dual-homed PoP survives the loss of CORE2; a PoP homed to CORE2 alone does not.
    dual = next(p for p in pop_layout(60) if len(p.homes) == 2)
    single = next(p for p in pop_layout(60) if p.homes == ["CORE2"])
    assert dual.aggregation not in cut and single.aggregation in cut and set(single.access) <= set(cut)
    assert "CORE1" not in cut


def test_engine_scale_tiny_run_reports_every_figure(tmp_path: Path, address_base: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.engine_scale", "--routers", "20", "--interfaces", "4", "--interval", "5",
         "--steady-intervals", "1", "--storms", "behind-core2", "--storm-hold", "2", "--close-after", "5",
         "--address-base", address_base, "--workdir", str(tmp_path / "work"), "--seed", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    engine, collectors = result["engine"], result["collectors"]
    for key in ("cores", "cpu_s", "threads_cores", "rss_hwm_mb", "first_poll_s", "first_lab_read_s",
                "gap_p50_s", "gap_p99_s", "gap_max_s", "gap_s", "short_polled", "polls_allowed_per_device",
                "healthy_timeouts", "healthy_failures", "healthy_polls", "summary", "stop_s", "lab_cores"):
        assert key in engine, key
    assert engine["healthy_polls"] > 0 and set(engine["healthy_timeouts"]) == {"api", "snmp"}
    assert {"alerts_raised", "alerts_suppressed", "incidents"} <= set(engine["summary"])
    assert isinstance(engine["threads_cores"], dict) and engine["rss_hwm_mb"] > 0
    assert collectors["polls"] > 0 and "cores" in collectors
    (storm,) = result["storms"]
    for key in ("detect_s", "root_right_s", "incidents_opened", "alerts_fired", "db_alerts", "db_alerts_suppressed",
                "webhook_first_s", "webhook_after_incident_s", "all_closed", "devices_off", "db_roots"):
        assert key in storm, key
    assert storm["devices_off"] >= 1
    assert {"exit_s", "exit_status", "sent_after_s", "killed"} <= set(result["sigterm"])
    assert set(result["targets"]) >= {"engine_cores_below_0.5", "one_incident_per_storm", "sigterm_honoured"}
    assert "| figure" in proc.stdout  # the table was printed
    # The same line read back as a baseline prints side by side.
    saved = tmp_path / "baseline.json"
    saved.write_text(proc.stdout)
    from bench.engine_scale import print_report

    print_report(result, json.loads(saved.read_text().strip().splitlines()[-1]))
