"""``ispvm maint`` and ``ispvm changes`` as a user runs them: on the database file with no engine running, and
through a running engine's control socket (the engine holds the file; the CLI could not open it).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from ispvm_tui.config import Config
from ispvm_tui.demo import start_demo
from ispvm_tui.engine import control
from ispvm_tui.engine.api import EngineEvent
from ispvm_tui.engine.core import Engine
from ispvm_tui.engine.store import Store
from ispvm_tui.lab.scenario import load_scenario
from tests.labconfig import write_lab_config
from tests.waiting import wait_for

CONFIG = """
[ispvm]
database = "state/ispvm.duckdb"
timezone = "Europe/Berlin"

[console]
attach = ["CORE1"]

[snmp.p]
community_secret = "lab/community"

[[sites]]
name = "DC"

[[sites]]
name = "POP-A"

[[devices]]
name = "CORE1"
site = "DC"
role = "core"
address = "127.0.0.1"
snmp = "p"

[[devices]]
name = "AGG"
site = "POP-A"
role = "aggregation"
address = "127.0.0.2"
snmp = "p"
tags = ["vendor-x"]

[[links]]
a = "CORE1:ether2"
b = "AGG:ether1"

[[services]]
name = "POP-A broadband"
depends_on = ["AGG"]

[[maintenance]]
name = "patch night"
devices = ["CORE1"]
weekly = ["Tue 02:00-04:00"]
"""


def ispvm(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("ispvm")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, COLUMNS="200"))


def ok(*args: str) -> Any:
    """Run with --json; exit 0 and one JSON document on stdout."""
    done = ispvm(*args, "--json")
    assert done.returncode == 0, (args, done.stderr)
    return json.loads(done.stdout)


def bad(*args: str, code: int = 2) -> str:
    done = ispvm(*args)
    assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 2, done.stderr
    return done.stderr


def test_without_an_engine_the_cli_writes_the_database_itself(tmp_path: Path) -> None:
    cfg = tmp_path / "ispvm.toml"
    cfg.write_text(CONFIG)
    c = ("-c", str(cfg))
    db = tmp_path / "state" / "ispvm.duckdb"

    [config_window] = ok("maint", "list", *c)  # no database yet: the config file's windows only
    assert (config_window["id"], config_window["source"], config_window["timezone"]) == (
        "config:patch night", "config", "Europe/Berlin")
    added = ok("maint", "add", "POP-A works", *c, "--site", "POP-A", "--start", "now", "--duration", "2h",
               "--actor", "maria")
    assert (added["id"], added["status"], added["active_now"], added["created_by"]) == ("MW-1", "active", True,
                                                                                        "maria")
    assert added["ends_at"] - added["starts_at"] == 7200
    weekly = ok("maint", "add", "broadband patch", *c, "--service", "POP-A broadband", "--weekly", "Sat 01:00-03:00",
                "--weekly", "Sun 01:00-03:00", "--actor", "maria")
    assert weekly["timezone"] == "Europe/Berlin" and weekly["weekly"] == ["Sat 01:00-03:00", "Sun 01:00-03:00"]
    edited = ok("maint", "edit", "MW-1", *c, "--duration", "3h", "--note", "crew late", "--actor", "joe")
    assert edited["ends_at"] - edited["starts_at"] == 3 * 3600 and edited["note"] == "crew late"
    assert ok("maint", "cancel", "MW-1", "--database", str(db), "--actor", "joe")["status"] == "canceled"
    listed = ok("maint", "list", *c)
    assert [(w["id"], w["status"]) for w in listed] == [("config:patch night", "active"), ("MW-1", "canceled"),
                                                        ("MW-2", "active")]
    table = ispvm("maint", "list", *c)
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:4] == ["ID", "STATUS", "NOW", "NAME"]
    assert "MW-2" in table.stdout and "services=POP-A broadband" in table.stdout and "(config file)" in table.stdout

    # Read-only, bad input, and a clear line for each.
    assert "config file" in bad("maint", "edit", "config:patch night", *c, "--note", "x")
    assert "config file" in bad("maint", "cancel", "config:patch night", *c)
    assert "unknown device 'NOPE'" in bad("maint", "add", "w", *c, "--device", "NOPE", "--duration", "1h")
    assert "unknown site 'POP-Z'" in bad("maint", "add", "w", *c, "--site", "POP-Z", "--duration", "1h")
    assert "unknown service 'IPTV'" in bad("maint", "add", "w", *c, "--service", "IPTV", "--duration", "1h")
    assert "ends_at: must be after starts_at" in bad("maint", "add", "w", *c, "--device", "AGG", "--start",
                                                     "2026-12-08T04:00:00+01:00", "--end", "2026-12-08T02:00:00+01:00")
    assert "needs a UTC offset" in bad("maint", "add", "w", *c, "--device", "AGG", "--start", "2026-12-08T02:00",
                                       "--duration", "1h")
    assert "--duration" in bad("maint", "add", "w", *c, "--device", "AGG", "--duration", "soon")
    assert "give a scope" in bad("maint", "add", "w", *c, "--duration", "1h")
    assert "no maintenance window MW-9" in bad("maint", "cancel", "MW-9", *c)
    assert "already canceled" in bad("maint", "cancel", "MW-1", *c)
    assert "--config" in bad("maint", "add", "w", "--database", str(db), "--device", "AGG", "--duration", "1h")
    assert "no database" in bad("maint", "list", "--database", str(tmp_path / "nowhere.duckdb"), code=1)
    assert "--config F" in bad("maint", "list")

    change = ok("changes", "add", "AGG PSU swap", *c, "--device", "AGG", "--duration", "1h", "--description",
                "swap PSU2; rollback: none", "--actor", "maria")
    assert (change["id"], change["status"], change["owner"]) == ("CHG-1", "planned", "maria")
    assert ok("changes", "edit", "CHG-1", *c, "--status", "in-progress", "--actor", "joe")["status"] == "in-progress"
    assert "can move to completed or canceled, not planned" in bad("changes", "edit", "CHG-1", *c, "--status",
                                                                    "planned")
    assert ok("changes", "edit", "CHG-1", *c, "--status", "completed", "--actor", "joe")["status"] == "completed"
    assert "final" in bad("changes", "cancel", "CHG-1", *c)
    ok("changes", "add", "core reload", *c, "--site", "DC", "--start", "now", "--end", "2099-01-01T00:00:00Z")
    assert ok("changes", "cancel", "CHG-2", *c, "--actor", "joe")["status"] == "canceled"
    assert [(x["id"], x["status"]) for x in ok("changes", "list", "--database", str(db))] == [
        ("CHG-1", "completed"), ("CHG-2", "canceled")]
    shown = ok("changes", "show", "CHG-1", *c)
    assert [h["action"] for h in shown["history"]] == ["change.add", "change.edit", "change.edit"]
    text = ispvm("changes", "show", "CHG-1", *c)
    assert text.returncode == 0 and "swap PSU2" in text.stdout and "in-progress" in text.stdout
    assert "no change CHG-7" in bad("changes", "show", "CHG-7", *c)
    assert "unknown tag 'vendor-y'" in bad("changes", "add", "x", *c, "--tag", "vendor-y", "--duration", "1h")

    with Store(db) as store:
        audit = store.query("SELECT actor, action, target FROM audit ORDER BY rowid")
    assert audit == [("maria", "maint.add", "MW-1"), ("maria", "maint.add", "MW-2"), ("joe", "maint.edit", "MW-1"),
                     ("joe", "maint.cancel", "MW-1"), ("maria", "change.add", "CHG-1"),
                     ("joe", "change.edit", "CHG-1"), ("joe", "change.edit", "CHG-1"),
                     (getpass.getuser(), "change.add", "CHG-2"), ("joe", "change.cancel", "CHG-2")]


def test_through_a_running_engine(address_base: str, tmp_path: Path) -> None:
    db = tmp_path / "ispvm.duckdb"

    def with_config_window(config: Config) -> Config:
        data = config.model_dump()
        data["maintenance"] = [{"name": "edge patch", "devices": ["EDGE1"], "weekly": ["Tue 02:00-04:00"]}]
        return Config.model_validate(data)

    scenario = load_scenario("core-link-cut").model_copy(update={"timeline": []})
    run = start_demo(scenario, speed=10.0, address_base=address_base, database=db, configure=with_config_window)
    events: list[EngineEvent] = []
    run.engine.subscribe(events.append)
    try:
        cfg = write_lab_config(run.lab, tmp_path / "lab.toml", extra=["[ispvm]", f'database = "{db}"', ""])
        c = ("-c", str(cfg))
        assert ispvm("deliveries", "list", *c).returncode == 1  # held: the proof that what follows is the socket

        added = ispvm("maint", "add", "POP-A works", *c, "--site", "POP-A", "--duration", "2h", "--actor", "maria",
                      "--json")
        assert added.returncode == 0 and "no engine running" not in added.stderr, added.stderr
        assert json.loads(added.stdout)["id"] == "MW-1"
        assert [w.name for w in run.engine.maintenance.windows] == ["edge patch", "POP-A works"]
        assert wait_for(lambda: any(e.kind == "maintenance.changed" and "MW-1" in e.summary for e in events), 10)
        ok("maint", "add", "transit night", "--database", str(db), "--service", "Internet transit via UPSTREAM1",
           "--weekly", "Wed 01:00-02:00", "--timezone", "Asia/Tokyo")
        assert ok("maint", "edit", "MW-1", *c, "--name", "POP-A fibre", "--actor", "joe")["name"] == "POP-A fibre"
        assert ok("maint", "cancel", "MW-2", *c, "--actor", "joe")["status"] == "canceled"
        assert [w.name for w in run.engine.maintenance.windows] == ["edge patch", "POP-A fibre"]
        listed = ok("maint", "list", "--database", str(db))  # the engine knows its config: its windows are listed
        assert [(w["id"], w["source"], w["status"]) for w in listed] == [
            ("config:edge patch", "config", "active"), ("MW-1", "calendar", "active"), ("MW-2", "calendar", "canceled")]
        assert "config file" in bad("maint", "cancel", "config:edge patch", *c)
        assert "unknown device 'EDGE9'" in bad("maint", "add", "w", *c, "--device", "EDGE9", "--duration", "1h")
        assert "ends_at: must be after starts_at" in bad("maint", "edit", "MW-1", *c, "--end",
                                                         "2000-01-01T00:00:00Z")

        change = ok("changes", "add", "POPA-AGG reload", "--database", str(db), "--device", "POPA-AGG", "--duration",
                    "30m", "--actor", "maria")
        assert change["id"] == "CHG-1" and run.engine.calendar_changes[0].id == "CHG-1"
        assert ok("changes", "edit", "CHG-1", *c, "--status", "in-progress")["status"] == "in-progress"
        assert "unknown service 'IPTV'" in bad("changes", "edit", "CHG-1", *c, "--service", "IPTV")
        assert [x["id"] for x in ok("changes", "list", *c)] == ["CHG-1"]
        assert len(ok("changes", "show", "CHG-1", *c)["history"]) == 2
        assert ok("changes", "cancel", "CHG-1", *c)["status"] == "canceled"
        assert any(e.kind == "change.changed" and "CHG-1" in e.summary for e in events)

        # deliveries resend goes to the engine too (it holds the outbox).
        unknown = ispvm("deliveries", "resend", "no-such-event", *c, "--actor", "maria")
        assert unknown.returncode == 1 and "no outbox event no-such-event" in unknown.stderr, unknown.stderr
        all_dead = ispvm("deliveries", "resend", "--all-dead", *c, "--actor", "maria")
        assert all_dead.returncode == 0 and "queued 0 dead event(s) again" in all_dead.stdout, all_dead.stderr

        # A malformed line and an oversize request on the engine's socket: answered, and the engine goes on.
        path = run.engine.control.path if run.engine.control else None
        assert path is not None and oct(os.stat(path).st_mode & 0o777) == "0o600"
        for payload in (b"{oops\n", b'{"op": "maint.add", "args": {"x": "' + b"y" * 100_000 + b'"}}\n',
                        b'{"op": "maint.add", "args": {"fields": {}}, "actor": "\\u0000"}\n'):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(30)
                sock.connect(str(path))
                sock.sendall(payload)
                answer = json.loads(sock.makefile("rb").readline())
            assert answer["ok"] is False and answer["kind"] == "invalid", answer
        polls = run.engine.snapshot().polls_total
        assert wait_for(lambda: run.engine.snapshot().polls_total > polls, 30), "the engine stopped polling"
        assert control.request(db, "ping", {}, "maria")["pid"] == os.getpid()

        audit = run.store.query("SELECT actor, action, target FROM audit WHERE action LIKE 'maint.%' OR action "
                                "LIKE 'change.%' ORDER BY rowid")
        assert [a[1] for a in audit] == ["maint.add", "maint.add", "maint.edit", "maint.cancel", "change.add",
                                         "change.edit", "change.cancel"]

        # A restart takes the run-time windows up again; the canceled one stays out.
        run.loop.run(run.engine.stop(), timeout=30)
        assert not path.exists()
        engine = Engine(run.engine.config, store=run.store, clock=run.clock, secrets=run.engine.secrets)
        run.engine = engine
        run.loop.run(engine.start(), timeout=60)
        assert [w.name for w in engine.maintenance.windows] == ["edge patch", "POP-A fibre"]
        assert [c.status for c in engine.calendar_changes] == ["canceled"]
        assert ok("maint", "list", *c)[1]["name"] == "POP-A fibre"  # served again
    finally:
        run.stop()
