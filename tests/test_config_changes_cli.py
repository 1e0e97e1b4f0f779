"""``ispvm changes detected|diff|capture`` as a user runs them: through a running engine's control socket (the
engine holds the database), then on the file once it has stopped. The lab router's change is a real one,
made on the router the engine polls over the RouterOS API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ispvm_tui.demo import start_demo
from ispvm_tui.lab.scenario import load_scenario
from tests.waiting import wait_for

COMMENT = "to POPB-ACC1 ether1 (spliced, ticket 5150)"


def ispvm(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("ispvm")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, COLUMNS="200"))


def test_detected_changes_and_diffs_from_the_cli(tmp_path: Path, address_base: str) -> None:
    db = tmp_path / "ispvm.duckdb"
    scenario = load_scenario("core-link-cut").model_copy(update={"timeline": []})
    run = start_demo(scenario, speed=10.0, database=db, address_base=address_base)
    try:
        assert wait_for(lambda: run.store.query("SELECT count(DISTINCT device) FROM config_checks")[0][0]
                        == len(scenario.devices), 60)
        none = ispvm("changes", "detected", "--database", str(db))
        assert none.returncode == 0, none.stderr
        assert "no configuration changes detected" in none.stdout

        async def edit() -> None:
            run.lab.model.devices["POPB-AGG"].interfaces["ether2"].comment = COMMENT

        run.loop.run(edit(), timeout=10)
        asked = ispvm("changes", "capture", "POPB-AGG", "--database", str(db), "--actor", "oncall", "--json")
        assert asked.returncode == 0, asked.stderr
        assert json.loads(asked.stdout) == {"asked": 1}

        def detected() -> list[dict[str, object]]:
            got = ispvm("changes", "detected", "--database", str(db), "--json")
            assert got.returncode == 0, got.stderr
            return json.loads(got.stdout)

        assert wait_for(lambda: len(detected()) == 1, 60, step=0.5)
        change = detected()[0]
        assert (change["device"], change["category"], change["version"]) == ("POPB-AGG", "interfaces", 2)
        diff = ispvm("changes", "diff", "POPB-AGG", "interfaces", "--database", str(db))
        assert diff.returncode == 0, diff.stderr
        assert "ticket 5150" in diff.stdout
        bad = ispvm("changes", "diff", "POPB-AGG", "interfaces", "--from", "7", "--database", str(db))
        assert bad.returncode == 2 and "no version 7" in bad.stderr
        unknown = ispvm("changes", "capture", "NOSUCH", "--database", str(db))
        assert unknown.returncode == 2 and "NOSUCH" in unknown.stderr
    finally:
        run.stop()

    # The engine is gone: the same answers come off the file; capturing needs an engine and says so.
    offline = ispvm("changes", "detected", "--device", "POPB-AGG", "--database", str(db))
    assert offline.returncode == 0, offline.stderr
    assert "POPB-AGG" in offline.stdout and "interfaces" in offline.stdout
    diff = ispvm("changes", "diff", "POPB-AGG", "interfaces", "--from", "1", "--to", "2", "--database", str(db))
    assert diff.returncode == 0 and "ticket 5150" in diff.stdout
    idle = ispvm("changes", "capture", "--database", str(db))
    assert idle.returncode == 1 and "no engine is running" in idle.stderr
