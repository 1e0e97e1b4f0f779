"""``ispvm deliveries list|resend`` run as a user runs them, on a database a real outbox wrote.

A receiver answering 400 (permanent) gives a real dead letter and a 200 a real
delivered event; then the dispatcher stops, the file is closed, and the
``ispvm`` executable reads it, resends by id and with --all-dead, and the
audit table records who did it. A running engine's lock gives a clear message.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from ispvm_tui.clock import ScaledClock
from ispvm_tui.engine import outbox
from ispvm_tui.engine.store import Store
from ispvm_tui.engine.targets import MemoryRefs
from ispvm_tui.engine.webhook_target import WebhookTarget
from ispvm_tui.engine.webhooks import WebhookEndpoint
from ispvm_tui.lab.webhook_sink import WebhookSink
from tests.test_deliveries import incident, until

SECRET = "whsec-cli-test-77"


def ispvm(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("ispvm")
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, env=env)


async def _fill(db: Path) -> None:
    """inc-1: opened refused with 400 (dead), then closed accepted (delivered); inc-2: opened dead."""
    with WebhookSink(secret=SECRET) as sink:
        sink.set_responses([400, 200, 400])
        store = Store(db)
        try:
            hook = WebhookTarget(WebhookEndpoint(name="noc", url=sink.url, secret=SECRET, timeout_s=2.0), None)
            clock = ScaledClock(100.0)
            dispatcher = outbox.OutboxDispatcher(store, {"noc": hook}, clock, MemoryRefs())
            task = asyncio.create_task(dispatcher.run(poll_real_s=0.02))
            for inc, event in (("inc-1", "incident.opened"), ("inc-1", "incident.closed"),
                               ("inc-2", "incident.opened")):
                await asyncio.wrap_future(store.transaction(
                    lambda con, i=inc, e=event: outbox.enqueue(con, [hook], i, e, incident(i), clock.now())))
                dispatcher.wake()

                def settled(i: str = inc, e: str = event) -> bool:
                    return bool(store.query("SELECT 1 FROM outbox WHERE incident_id = ? AND event_type = ? "
                                            "AND status <> 'pending'", [i, e]))

                assert await until(settled)
            task.cancel()
        finally:
            store.close()


def test_list_resend_and_audit(tmp_path: Path) -> None:
    db = tmp_path / "ispvm.duckdb"
    asyncio.run(_fill(db))

    listed = ispvm("deliveries", "list", "--database", str(db), "--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    by = {(e["incident_id"], e["event_type"]): e for e in data["events"]}
    assert by[("inc-1", "incident.opened")]["status"] == "dead"
    assert by[("inc-1", "incident.closed")]["status"] == "delivered"
    assert by[("inc-2", "incident.opened")]["status"] == "dead"
    assert "400" in (by[("inc-1", "incident.opened")]["last_error"] or "")
    assert {e["name"] for e in data["endpoints"]} == {"noc"}
    assert any(a["http_status"] == 400 and a["outcome"] == "permanent" for a in data["attempts"])

    dead = ispvm("deliveries", "list", "--database", str(db), "--dead", "--json")
    assert {e["incident_id"] for e in json.loads(dead.stdout)["events"]} == {"inc-1", "inc-2"}
    text = ispvm("deliveries", "list", "--database", str(db), "--dead")
    assert text.returncode == 0 and "endpoint noc:" in text.stdout and "dead" in text.stdout

    first = by[("inc-1", "incident.opened")]["event_id"]
    one = ispvm("deliveries", "resend", first, "--database", str(db), "--actor", "maria")
    assert one.returncode == 0, one.stderr
    assert "superseded" in one.stdout  # inc-1's closed already reached the receiver
    unknown = ispvm("deliveries", "resend", "no-such-event", "--database", str(db), "--actor", "maria")
    assert unknown.returncode == 1 and "no outbox event no-such-event" in unknown.stderr
    rest = ispvm("deliveries", "resend", "--all-dead", "--database", str(db), "--actor", "maria")
    assert rest.returncode == 0 and "queued 1 dead event(s) again" in rest.stdout

    with Store(db) as store:
        rows = store.query_dicts("SELECT event_id, status, superseded FROM outbox WHERE event_type = 'incident.opened'")
        assert all(r["status"] == "pending" for r in rows)
        assert {r["event_id"]: r["superseded"] for r in rows}[first] is True
        audit = store.query("SELECT actor, action, target FROM audit WHERE action = 'webhook.resend' ORDER BY ts")
    assert [a[0] for a in audit] == ["maria", "maria"] and audit[0][2] == first


def test_bad_arguments_and_a_held_database(tmp_path: Path) -> None:
    db = tmp_path / "ispvm.duckdb"
    assert ispvm("deliveries", "list").returncode == 2
    missing = ispvm("deliveries", "list", "--database", str(db))
    assert missing.returncode == 1 and "no database" in missing.stderr
    assert ispvm("deliveries", "resend", "--database", str(db)).returncode == 2
    with Store(db):  # another process (the engine) holds the file
        held = ispvm("deliveries", "list", "--database", str(db))
    assert held.returncode == 1 and "engine" in held.stderr and "Traceback" not in held.stderr
