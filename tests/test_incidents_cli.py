"""``ispvm incidents list|show|ack|close|note`` as a user runs them: through a running engine's control socket
(the engine holds the database and notifies the targets), then off the file once it has stopped. The incident
is a real one: the lab's core fibre is cut and the engine polling it over the RouterOS API opens it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ispvm_tui.demo import start_demo
from ispvm_tui.engine import control
from ispvm_tui.engine.store import Store
from tests.held_faults import held
from tests.waiting import wait_for

LINK = "CORE1:ether2--POPA-AGG:ether1"
NO_ENGINE_ACK = "no engine is running: acknowledging needs the engine, which notifies the targets"


def ispvm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("ispvm")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, COLUMNS="80"))


def ispvm_json(*args: str | Path) -> Any:
    got = ispvm(*args, "--json")
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout)


def _webhook(run: Any, event_type: str, incident_id: str) -> bool:
    return run.sink.wait_for(lambda got: any(
        w.json.get("event_type") == event_type and w.json["incident"]["id"] == incident_id for w in got), 60)


def _comparable(listed: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(i["id"], i["status"], i["severity"], i["title"], i["acked_by"], i["closed_by"], i["opened_at"],
             i["closed_at"], i["root_causes"], i["impact"], i["labels"]) for i in listed["incidents"]]


def test_incidents_through_the_engine_then_off_the_file(tmp_path: Path, address_base: str) -> None:
    db = tmp_path / "ispvm.duckdb"
    run = start_demo(held("core-link-cut"), speed=10.0, database=db, address_base=address_base)
    try:
        assert wait_for(lambda: run.engine.snapshot().incidents, 60), "the cut should open an incident"
        incident = run.engine.snapshot().incidents[0]
        short = incident.id[:8]

        listed = ispvm_json("incidents", "list", "--database", db)
        assert incident.id in [i["id"] for i in listed["incidents"]]
        table = ispvm("incidents", "list", "--database", db)
        assert table.returncode == 0, table.stderr
        assert table.stdout.splitlines()[0].split() == ["ID", "STATUS", "SEVERITY", "AGE", "TITLE"]
        assert any(line.startswith(short) and "critical" in line for line in table.stdout.splitlines())
        assert max(len(line) for line in table.stdout.splitlines()) <= 80

        shown = ispvm_json("incidents", "show", short, "--database", db)
        assert shown["incident"]["id"] == incident.id
        assert shown["incident"]["root_causes"][0]["entity_id"] == LINK
        assert shown["incident"]["evidence"] and shown["incident"]["alerts"]
        assert shown["timeline"][0]["transition"] == "opened"
        text = ispvm("incidents", "show", short, "--database", db)
        assert text.returncode == 0, text.stderr
        assert f"link {LINK}: confidence" in text.stdout and "POPA-AGG" in text.stdout

        # Acknowledged through the socket: the engine's own action, so the target hears of it and it is audited.
        acked = ispvm("incidents", "ack", short, "--database", db, "--actor", "oncall-alice")
        assert acked.returncode == 0, acked.stderr
        assert acked.stdout.startswith(f"acknowledged {short}")
        assert run.engine.snapshot().incident(incident.id).status == "acked"
        assert run.engine.snapshot().incident(incident.id).acked_by == "oncall-alice"
        assert _webhook(run, "incident.acked", incident.id)
        assert run.store.query("SELECT actor, target FROM audit WHERE action = 'incident.ack'") == [
            ("oncall-alice", incident.id)]
        twice = ispvm("incidents", "ack", incident.id, "--database", db, "--actor", "bob")
        assert twice.returncode == 0 and "already acknowledged by oncall-alice" in twice.stdout

        # A note: in the timeline and the audit, and in no outbox row (no target is told).
        noted = ispvm("incidents", "note", short, "spliced", "at", "14:05", "--database", db, "--actor", "bob")
        assert noted.returncode == 0, noted.stderr
        notes = run.store.query("SELECT ts, actor, detail, event_type, status FROM incident_events "
                                "WHERE incident_id = ? AND transition = 'note'", [incident.id])
        assert [n[1:] for n in notes] == [("bob", "spliced at 14:05", None, "acked")]
        assert run.store.query("SELECT count(*) FROM outbox WHERE created_at = ?", [notes[0][0]]) == [(0,)]
        assert run.store.query("SELECT actor, target, detail FROM audit WHERE action = 'incident.note'") == [
            ("bob", incident.id, "spliced at 14:05")]
        timeline = ispvm_json("incidents", "show", short, "--database", db)["timeline"]
        assert {"transition": "note", "actor": "bob", "detail": "spliced at 14:05"}.items() <= timeline[-1].items()
        assert "note by bob: spliced at 14:05" in ispvm("incidents", "show", short, "--database", db).stdout

        # Assigned: the list gains an OWNER column (only when someone owns an incident), still in 80 columns.
        owned = ispvm("incidents", "assign", short, "dave", "--database", db, "--actor", "bob")
        assert owned.returncode == 0, owned.stderr
        table = ispvm("incidents", "list", "--database", db).stdout.splitlines()
        assert table[0].split() == ["ID", "STATUS", "SEVERITY", "AGE", "OWNER", "TITLE"]
        assert any(line.startswith(short) and line.split()[5] == "dave" for line in table)  # "◑ acked": 2 words
        assert max(len(line) for line in table) <= 80

        closed = ispvm("incidents", "close", short, "--note", "fibre spliced", "--database", db, "--actor", "carol")
        assert closed.returncode == 0, closed.stderr
        after = run.engine.snapshot().incident(incident.id)
        assert (after.status, after.closed_by) == ("closed", "carol")
        assert _webhook(run, "incident.closed", incident.id)
        assert run.store.query("SELECT actor, detail FROM audit WHERE action = 'incident.close'") == [
            ("carol", "fibre spliced")]
        assert not [w for w in run.sink.received() if "note" in w.json.get("event_type", "")]
        again = ispvm("incidents", "close", short, "--database", db)
        assert again.returncode == 2 and "already closed" in again.stderr

        # Any socket peer gets the same checks: a bad filter, a blank note, a closed incident are refused.
        for op, args in (("incidents.list", {"status": "bogus"}), ("incidents.list", {"limit": 0}),
                         ("incidents.note", {"id": short, "text": "  "}), ("incidents.ack", {"id": short}),
                         ("incidents.show", {"id": "CORE1"})):
            with pytest.raises(control.Refused):
                control.request(db, op, args, "peer")
        blank = ispvm("incidents", "note", short, " ", "--database", db)
        assert blank.returncode == 2 and "must not be blank" in blank.stderr

        live_list = ispvm_json("incidents", "list", "--database", db)
        live_show = ispvm_json("incidents", "show", short, "--database", db)
        assert [t["transition"] for t in live_show["timeline"]][-4:] == ["acked", "note", "assigned", "closed"]
        assert {"target": "lab-sink"}.items() <= live_show["deliveries"][0].items()
        ids = [i["id"] for i in live_list["incidents"]]
        unknown = next(p for p in ("000000", "111111", "222222") if not any(i.startswith(p) for i in ids))
        missing = ispvm("incidents", "show", unknown, "--database", db)
        assert missing.returncode == 2 and f"no incident '{unknown}'" in missing.stderr
    finally:
        run.stop()

    # The engine is gone: the same incidents off the file; acting on one needs an engine and says so.
    offline = ispvm_json("incidents", "list", "--database", db)
    assert _comparable(offline) == _comparable(live_list)
    offline_show = ispvm_json("incidents", "show", short, "--database", db)
    assert offline_show["timeline"] == live_show["timeline"]
    assert offline_show["deliveries"][0]["target"] == "lab-sink"
    assert {k: v for k, v in offline_show["incident"].items() if k != "alerts"} == {
        k: v for k, v in live_show["incident"].items() if k != "alerts"}
    assert [a["id"] for a in offline_show["incident"]["alerts"]] == [a["id"] for a in live_show["incident"]["alerts"]]
    assert incident.id in [i["id"] for i in ispvm_json("incidents", "list", "--status", "closed", "--database",
                                                       db)["incidents"]]
    assert incident.id not in [i["id"] for i in ispvm_json("incidents", "list", "--status", "open", "--database",
                                                           db)["incidents"]]
    ack = ispvm("incidents", "ack", short, "--database", db)
    assert (ack.returncode, ack.stderr.strip()) == (1, NO_ENGINE_ACK)
    for args in (("close", short), ("note", short, "later")):
        refused = ispvm("incidents", *args, "--database", db)
        assert refused.returncode == 1 and refused.stderr.startswith("no engine is running: "), refused.stderr

    # Two incidents sharing a 6-character prefix: that prefix is ambiguous, a longer one is not.
    twin = incident.id[:6] + ("0" if incident.id[6] != "0" else "1") + incident.id[7:]
    store = Store(db)
    try:
        store.transaction(lambda con: con.execute(
            "INSERT INTO incidents SELECT ? AS id, * EXCLUDE (id) FROM incidents WHERE id = ?",
            [twin, incident.id])).result(60)
    finally:
        store.close()
    ambiguous = ispvm("incidents", "show", incident.id[:6], "--database", db)
    assert ambiguous.returncode == 2 and "ambiguous" in ambiguous.stderr
    assert ispvm_json("incidents", "show", incident.id[:7], "--database", db)["incident"]["id"] == incident.id
    too_short = ispvm("incidents", "show", incident.id[:5], "--database", db)
    assert too_short.returncode == 2 and "at least 6 characters" in too_short.stderr
