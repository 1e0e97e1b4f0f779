"""The ServiceNow target against a real Table API fake on loopback (ispvm_tui/lab/fake_servicenow.py).

Every test asserts on what the fake received or holds: records, work notes, states, headers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ispvm_tui.clock import ScaledClock
from ispvm_tui.config import ServiceNowConfig
from ispvm_tui.engine import outbox
from ispvm_tui.engine.notify.servicenow import INCIDENT_TABLE, JOURNAL_TABLE, ServiceNowTarget
from ispvm_tui.engine.store import Store
from ispvm_tui.engine.target_refs import StoreRefs
from ispvm_tui.engine.targets import MemoryRefs, Notice, ProbeFailed
from ispvm_tui.lab.fake_servicenow import Fail, FakeServiceNow, Lose, Slow

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples" / "webhooks"
SECRETS = {"basic": "sn-Pa55word-basic-7f3e", "bearer": "sn-bearer-token-9c1d-aa", "apikey": "sn-apikey-41b2-ee90"}
RECORD = INCIDENT_TABLE + "/"  # every record's path


def example(event: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"incident.{event}.json").read_text())["incident"]


def updated_incident() -> dict[str, Any]:
    inc = example("opened")
    inc["evidence_top"] = ["POPA-ACC1 answers again through the backup path", *inc["evidence_top"][:2]]
    return inc


INCIDENTS = {"incident.opened": example("opened"), "incident.updated": updated_incident(),
             "incident.acked": example("acked"), "incident.closed": example("closed")}
INCIDENT_ID = INCIDENTS["incident.opened"]["id"]


def notice(event_type: str, incident: dict[str, Any] | None = None, *, attempt: int = 1,
           event_id: str | None = None, sequence: int = 1) -> Notice:
    inc = copy.deepcopy(incident if incident is not None else INCIDENTS[event_type])
    return Notice(event_id=event_id or str(uuid.uuid4()), target="snow", incident_id=inc["id"],
                  event_type=event_type, incident=inc, created_at=time.time(), sequence=sequence, attempt=attempt)


def config(fake: FakeServiceNow, **kw: Any) -> ServiceNowConfig:
    kw.setdefault("auth", fake.auth)
    if kw["auth"] == "basic":
        kw.setdefault("user", fake.user)
    kw.setdefault("timeout_s", 2.0)
    return ServiceNowConfig(name="snow", url=fake.url, secret="snow-credential", **kw)


def make_target(fake: FakeServiceNow, secret: str | None = None, **kw: Any) -> ServiceNowTarget:
    return ServiceNowTarget(config(fake, **kw), secret or fake.secret)


@pytest.fixture
def fake() -> Iterator[FakeServiceNow]:
    server = FakeServiceNow(auth="basic", user="ispvm.integration", secret=SECRETS["basic"],
                            groups=["NOC L1", "POP-A Field", "North NOC", "Transit", "Core Team", "North Access"])
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


# --- end to end through the outbox -----------------------------------------------------------------


async def until(cond: Callable[[], bool], timeout: float = 20.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return cond()


async def test_an_incident_lifecycle_through_the_outbox_is_one_record_with_notes_then_resolved(
        fake: FakeServiceNow, tmp_path: Path) -> None:
    target = make_target(fake, default_group="NOC L1", caller_id="ispvm.monitor")
    # The first work note's answer is a 500: the outbox retries it, and it must still land once.
    fake.script("PATCH", RECORD, [500])
    with Store(tmp_path / "outbox.duckdb") as store:
        clock = ScaledClock(300.0)
        dispatcher = outbox.OutboxDispatcher(store, {"snow": target}, clock, StoreRefs(store))
        task = asyncio.create_task(dispatcher.run(poll_real_s=0.02))
        try:
            for event_type, inc in INCIDENTS.items():
                await asyncio.wrap_future(store.transaction(
                    lambda con, e=event_type, i=inc: outbox.enqueue(con, [target], INCIDENT_ID, e, i, clock.now())))
                dispatcher.wake()

            def rows() -> list[dict[str, Any]]:
                return store.query_dicts("SELECT * FROM outbox ORDER BY sequence")

            assert await until(lambda: all(r["status"] == "delivered" for r in rows()) and len(rows()) == 4), rows()
            events = {r["event_type"]: r["event_id"] for r in rows()}
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    records = fake.incidents()
    assert len(records) == 1 and len(fake.requests("POST", INCIDENT_TABLE)) == 1
    rec = records[0]
    assert rec["number"] == "INC0010001" and len(rec["sys_id"]) == 32
    assert rec["correlation_id"] == INCIDENT_ID and rec["correlation_display"] == "ispvm"
    assert rec["short_description"] == "[ISPVM] " + INCIDENTS["incident.opened"]["title"]
    assert rec["category"] == "Network" and rec["subcategory"] == "Monitoring"
    assert (rec["urgency"], rec["impact"], rec["priority"]) == ("1", "1", "1")  # critical
    assert rec["assignment_group"] == "NOC L1" and rec["caller_id"] == "ispvm.monitor"
    assert "CORE1:ether2--POPA-AGG:ether1" in rec["description"]
    notes = fake.work_notes(rec["sys_id"])
    assert len(notes) == 2, notes  # updated and acked, once each despite the 500
    assert notes[0].startswith("🔴 CRITICAL UPDATED") and notes[0].endswith(f"ispvm event {events['incident.updated']}")
    assert "acknowledged by noc-oncall" in notes[1] and notes[1].endswith(f"ispvm event {events['incident.acked']}")
    assert rec["state"] == "6" and rec["close_code"] == "Solved Remotely (Permanently)"
    assert rec["close_notes"].startswith("✅ CRITICAL RESOLVED")
    assert "resolved 2026-12-04 23:22:39 UTC" in rec["close_notes"]
    # The lookup by correlation_id came before the create.
    first = fake.requests()[0]
    assert first.method == "GET" and first.query["sysparm_query"] == f"correlation_id={INCIDENT_ID}"
    assert first.query["sysparm_limit"] == "1"


# --- what the record gets -------------------------------------------------------------------------


RULES = [
    {"group": "North Access", "regions": ["north"], "roles": ["access"]},  # both must match
    {"group": "POP-A Field", "sites": ["POP-A", "POP-B"]},
    {"group": "North NOC", "regions": ["north"]},
    {"group": "Transit", "providers": ["Cogent"]},
    {"group": "Core Team", "roles": ["core"]},
]


@pytest.mark.parametrize(("labels", "default", "group"), [
    ({"sites": "POP-B,POP-C"}, "NOC L1", "POP-A Field"),
    ({"regions": "north", "roles": "access,cpe"}, "NOC L1", "North Access"),
    ({"regions": "north", "roles": "core"}, "NOC L1", "North NOC"),
    ({"provider": "Cogent"}, "NOC L1", "Transit"),
    ({"roles": "edge,core"}, "NOC L1", "Core Team"),
    ({"sites": "POP-Z", "roles": "edge"}, "NOC L1", "NOC L1"),
    ({"sites": "POP-Z"}, None, None),
])
async def test_the_assignment_group_is_the_first_matching_rule_else_the_default(
        fake: FakeServiceNow, client: httpx.AsyncClient, labels: dict[str, str], default: str | None,
        group: str | None) -> None:
    target = make_target(fake, assignment=RULES, default_group=default)
    inc = {**example("opened"), "labels": labels, "severity": "minor"}
    out = await target.send(notice("incident.opened", inc), client, MemoryRefs())
    assert out.status == "delivered", out
    sent = fake.requests("POST", INCIDENT_TABLE)[0].json
    if group is None:
        assert "assignment_group" not in sent
    else:
        assert sent["assignment_group"] == group
    assert (sent["urgency"], sent["impact"]) == ("2", "3")
    assert "caller_id" not in sent


async def test_a_long_title_is_cut_to_160_characters(fake: FakeServiceNow, client: httpx.AsyncClient) -> None:
    inc = {**example("opened"), "title": "x" * 300, "severity": "major"}
    assert (await make_target(fake).send(notice("incident.opened", inc), client, MemoryRefs())).status == "delivered"
    rec = fake.incidents()[0]
    assert len(rec["short_description"]) == 160 and rec["short_description"].startswith("[ISPVM] xxx")
    assert (rec["urgency"], rec["impact"]) == ("2", "2")


async def test_the_first_event_seen_mid_incident_creates_the_record_and_a_first_closed_sends_nothing(
        fake: FakeServiceNow, client: httpx.AsyncClient) -> None:
    target, refs = make_target(fake), MemoryRefs()
    closed_first = {**example("closed"), "id": "other-incident"}
    assert (await target.send(notice("incident.closed", closed_first), client, refs)).status == "delivered"
    assert fake.requests() == []
    out = await target.send(notice("incident.acked"), client, refs)
    assert out.status == "delivered"
    assert len(fake.incidents()) == 1 and fake.requests("PATCH") == []  # the description already tells it
    assert "ACKED" in fake.incidents()[0]["description"]


# --- retries ----------------------------------------------------------------------------------------


async def test_429_with_retry_after_then_success(fake: FakeServiceNow, client: httpx.AsyncClient) -> None:
    fake.script("POST", INCIDENT_TABLE, [Fail(429, {"Retry-After": "7"})])
    target, refs = make_target(fake), MemoryRefs()
    n = notice("incident.opened")
    out = await target.send(n, client, refs)
    assert out.status == "retry" and out.http_status == 429 and out.retry_after_s == 7
    assert "Rate limit exceeded" in out.error
    out = await target.send(notice("incident.opened", event_id=n.event_id, attempt=2), client, refs)
    assert out.status == "delivered"
    assert len(fake.incidents()) == 1


async def test_429_with_only_x_ratelimit_reset_waits_until_then(fake: FakeServiceNow,
                                                                 client: httpx.AsyncClient) -> None:
    fake.script("GET", INCIDENT_TABLE, [Fail(429, {"X-RateLimit-Reset": str(int(time.time()) + 30),
                                                   "X-RateLimit-Limit": "100"})])
    out = await make_target(fake).send(notice("incident.opened"), client, MemoryRefs())
    assert out.status == "retry" and out.retry_after_s is not None and 15 < out.retry_after_s <= 31
    assert fake.incidents() == []


async def test_500_then_success_creates_one_record(fake: FakeServiceNow, client: httpx.AsyncClient) -> None:
    fake.script("POST", INCIDENT_TABLE, [500])
    target, refs = make_target(fake), MemoryRefs()
    out = await target.send(notice("incident.opened"), client, refs)
    assert out.status == "retry" and out.http_status == 500 and "Internal Server Error" in out.error
    assert fake.incidents() == []
    assert (await target.send(notice("incident.opened", attempt=2), client, refs)).status == "delivered"
    assert len(fake.incidents()) == 1 and await refs.get("snow", INCIDENT_ID) == fake.incidents()[0]["sys_id"]


async def test_a_slow_answer_is_a_timeout_and_retried(fake: FakeServiceNow, client: httpx.AsyncClient) -> None:
    fake.script("GET", INCIDENT_TABLE, [Slow(3.0)])
    target, refs = make_target(fake, timeout_s=0.5), MemoryRefs()
    out = await target.send(notice("incident.opened"), client, refs)
    assert out.status == "retry" and "timeout after 0.5s" in out.error
    assert fake.incidents() == []
    assert (await target.send(notice("incident.opened", attempt=2), client, refs)).status == "delivered"
    assert len(fake.incidents()) == 1


@pytest.mark.parametrize("lose", [Lose(), Lose(stall_s=2.0)], ids=["dropped", "stalled"])
async def test_a_create_whose_answer_is_lost_makes_exactly_one_record(
        fake: FakeServiceNow, client: httpx.AsyncClient, lose: Lose) -> None:
    fake.script("POST", INCIDENT_TABLE, [lose])
    target, refs = make_target(fake, timeout_s=0.5), MemoryRefs()
    n = notice("incident.opened")
    out = await target.send(n, client, refs)
    assert out.status == "retry", out
    assert len(fake.incidents()) == 1  # created far side, and we do not know it
    assert await refs.get("snow", INCIDENT_ID) is None
    out = await target.send(notice("incident.opened", event_id=n.event_id, attempt=2), client, refs)
    assert out.status == "delivered"
    assert len(fake.incidents()) == 1 and len(fake.requests("POST", INCIDENT_TABLE)) == 1
    assert await refs.get("snow", INCIDENT_ID) == fake.incidents()[0]["sys_id"]


async def test_a_work_note_whose_answer_is_lost_is_found_in_the_journal_not_written_twice(
        fake: FakeServiceNow, client: httpx.AsyncClient) -> None:
    target, refs = make_target(fake), MemoryRefs()
    assert (await target.send(notice("incident.opened"), client, refs)).status == "delivered"
    sys_id = fake.incidents()[0]["sys_id"]
    fake.script("PATCH", RECORD, [Lose()])
    n = notice("incident.updated")
    assert (await target.send(n, client, refs)).status == "retry"
    assert len(fake.work_notes(sys_id)) == 1
    out = await target.send(notice("incident.updated", event_id=n.event_id, attempt=2), client, refs)
    assert out.status == "delivered"
    assert len(fake.work_notes(sys_id)) == 1 and len(fake.requests("PATCH")) == 1
    check = fake.requests("GET", JOURNAL_TABLE)[0].query["sysparm_query"]
    assert check == f"element_id={sys_id}^element=work_notes^valueLIKE{n.event_id}"
    # Once delivered, the same event again (a resend, whatever its attempt number) calls nothing at all.
    before = len(fake.requests())
    for attempt in (1, 3):
        again = notice("incident.updated", event_id=n.event_id, attempt=attempt)
        assert (await target.send(again, client, refs)).status == "delivered"
    assert len(fake.requests()) == before and len(fake.work_notes(sys_id)) == 1


async def test_an_unreadable_journal_still_sends_the_note(fake: FakeServiceNow, client: httpx.AsyncClient) -> None:
    target, refs = make_target(fake), MemoryRefs()
    assert (await target.send(notice("incident.opened"), client, refs)).status == "delivered"
    sys_id = fake.incidents()[0]["sys_id"]
    fake.script("GET", JOURNAL_TABLE, [Fail(403, message="Operation Failed", detail="ACL Exception")])
    out = await target.send(notice("incident.acked", attempt=2), client, refs)
    assert out.status == "delivered" and len(fake.work_notes(sys_id)) == 1


# --- restarts ------------------------------------------------------------------------------------


async def test_a_restart_finds_the_record_in_the_database_and_does_not_create_another(
        fake: FakeServiceNow, client: httpx.AsyncClient, tmp_path: Path) -> None:
    db = tmp_path / "refs.duckdb"
    with Store(db) as store:
        assert (await make_target(fake).send(notice("incident.opened"), client, StoreRefs(store))).status \
            == "delivered"
    sys_id = fake.incidents()[0]["sys_id"]
    before = len(fake.requests())
    with Store(db) as store:  # a new process: new target, new refs, same file
        out = await make_target(fake).send(notice("incident.updated"), client, StoreRefs(store))
    assert out.status == "delivered"
    later = fake.requests()[before:]
    assert [(r.method, r.path) for r in later] == [("PATCH", f"{RECORD}{sys_id}")]  # no look-up, no create
    assert len(fake.incidents()) == 1 and len(fake.work_notes(sys_id)) == 1


async def test_a_restart_after_a_lost_create_adopts_the_record(fake: FakeServiceNow, client: httpx.AsyncClient,
                                                               tmp_path: Path) -> None:
    db = tmp_path / "refs.duckdb"
    fake.script("POST", INCIDENT_TABLE, [Lose()])
    n = notice("incident.updated")  # routing started this target mid-incident
    with Store(db) as store:
        assert (await make_target(fake).send(n, client, StoreRefs(store))).status == "retry"
    with Store(db) as store:
        refs = StoreRefs(store)
        out = await make_target(fake).send(notice("incident.updated", event_id=n.event_id, attempt=2), client, refs)
        assert out.status == "delivered"
        assert await refs.get("snow", INCIDENT_ID) == fake.incidents()[0]["sys_id"]
        # The record was made by this very event: no work note repeating its description.
        assert fake.requests("PATCH") == []
        assert (await make_target(fake).send(notice("incident.closed"), client, refs)).status == "delivered"
    assert len(fake.incidents()) == 1 and len(fake.requests("POST")) == 1
    assert fake.incidents()[0]["state"] == "6"


async def test_an_adopted_record_from_an_earlier_event_gets_this_events_note(
        fake: FakeServiceNow, client: httpx.AsyncClient) -> None:
    assert (await make_target(fake).send(notice("incident.opened"), client, MemoryRefs())).status == "delivered"
    n = notice("incident.acked")
    out = await make_target(fake).send(n, client, MemoryRefs())  # the refs were lost
    assert out.status == "delivered"
    sys_id = fake.incidents()[0]["sys_id"]
    assert len(fake.incidents()) == 1 and fake.work_notes(sys_id)[0].endswith(f"ispvm event {n.event_id}")


# --- permanent failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "fail"), [
    ("POST", INCIDENT_TABLE, Fail(400, message="Invalid value for field: urgency", detail="urgency must be 1-3")),
    ("POST", INCIDENT_TABLE, Fail(403, message="Operation Failed",
                                  detail="ACL Exception Insert Failed due to security constraints")),
    ("PATCH", RECORD, Fail(403, message="Operation Failed",
                           detail="ACL Exception Update Failed due to security constraints")),
])
async def test_400_and_403_are_permanent_with_servicenows_message(
        fake: FakeServiceNow, client: httpx.AsyncClient, method: str, path: str, fail: Fail) -> None:
    target, refs = make_target(fake), MemoryRefs()
    if method == "PATCH":
        assert (await target.send(notice("incident.opened"), client, refs)).status == "delivered"
    fake.script(method, path, [fail])
    out = await target.send(notice("incident.opened" if method == "POST" else "incident.updated"), client, refs)
    assert out.status == "permanent" and out.http_status == fail.status
    assert f"HTTP {fail.status}: {fail.message} ({fail.detail})" in out.error


async def test_a_deleted_record_is_a_permanent_clear_error(fake: FakeServiceNow, client: httpx.AsyncClient) -> None:
    target, refs = make_target(fake), MemoryRefs()
    assert (await target.send(notice("incident.opened"), client, refs)).status == "delivered"
    sys_id = fake.incidents()[0]["sys_id"]
    fake.delete_incident(sys_id)
    for event in ("incident.updated", "incident.closed"):
        out = await target.send(notice(event), client, refs)
        assert out.status == "permanent" and out.http_status == 404
        assert f"incident record {sys_id} not found" in out.error and "No Record found" in out.error
    assert fake.incidents() == []  # nothing re-created behind the operator's back


async def test_resolving_sends_the_mandatory_close_fields(fake: FakeServiceNow, client: httpx.AsyncClient) -> None:
    target, refs = make_target(fake, close_code="Resolved by Change"), MemoryRefs()
    assert (await target.send(notice("incident.opened"), client, refs)).status == "delivered"
    assert (await target.send(notice("incident.closed"), client, refs)).status == "delivered"
    body = fake.requests("PATCH")[0].json
    assert body["state"] == "6" and body["close_code"] == "Resolved by Change" and body["close_notes"]
    assert fake.incidents()[0]["state"] == "6"


# --- secrets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["basic", "bearer", "apikey"])
async def test_the_secret_never_reaches_an_error_a_repr_or_a_log(
        client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, auth: str) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "ispvm_tui"):
        caplog.set_level(logging.DEBUG, logger=name)
    secret = SECRETS[auth]
    wrong = secret + "-rotated-out"
    with FakeServiceNow(auth=auth, user="ispvm.integration" if auth == "basic" else None, secret=secret,
                        groups=["NOC L1"]) as fake:
        target = make_target(fake, default_group="NOC L1")
        refs = MemoryRefs()
        errors: list[str] = []
        assert (await target.send(notice("incident.opened"), client, refs)).status == "delivered"
        got = fake.requests("POST")[0]
        if auth == "basic":
            assert got.header("authorization") == "Basic " + base64.b64encode(
                f"ispvm.integration:{secret}".encode()).decode()
        elif auth == "bearer":
            assert got.header("authorization") == f"Bearer {secret}"
        else:
            assert got.header("x-sn-apikey") == secret and got.header("authorization") is None
        fake.script("PATCH", RECORD, [500, Lose()])
        errors += [(await target.send(notice("incident.updated"), client, refs)).error or "" for _ in range(2)]
        bad = make_target(fake, secret=wrong)
        out = await bad.send(notice("incident.acked"), client, MemoryRefs())
        assert out.status == "permanent" and out.http_status == 401 and "User Not Authenticated" in out.error
        errors.append(out.error)
        with pytest.raises(ProbeFailed) as failed:
            await bad.probe(client)
        errors.append(str(failed.value))
        errors += [repr(target), repr(bad)]
    with pytest.raises(ProbeFailed) as down:
        await target.probe(client)  # the server is gone
    errors.append(str(down.value))
    assert all(errors[:3]) and all(errors)
    forms = {secret, wrong, base64.b64encode(f"ispvm.integration:{secret}".encode()).decode(),
             base64.b64encode(f"ispvm.integration:{wrong}".encode()).decode()}
    logged = [r.getMessage() for r in caplog.records]
    assert any(r.name.startswith(("httpx", "httpcore")) for r in caplog.records)  # the loggers did speak
    for form in forms:
        assert not any(form in e for e in errors), errors
        assert not any(form in line for line in logged)


# --- ispvm notify test ------------------------------------------------------------------------------


async def test_probe_checks_the_table_and_each_assignment_group(fake: FakeServiceNow,
                                                                client: httpx.AsyncClient) -> None:
    target = make_target(fake, assignment=RULES[:2], default_group="NOC L1")
    line = await target.probe(client)
    assert line == ("authenticated; incident table readable; "
                    "assignment group(s) found: North Access, POP-A Field, NOC L1")
    first = fake.requests()[0]
    assert (first.method, first.path, first.query) == ("GET", INCIDENT_TABLE,
                                                       {"sysparm_limit": "1", "sysparm_fields": "sys_id"})
    looked = [r.query["sysparm_query"] for r in fake.requests("GET", "/api/now/table/sys_user_group")]
    assert looked == ["name=North Access", "name=POP-A Field", "name=NOC L1"]
    assert fake.incidents() == []  # a probe opens nothing


async def test_probe_without_groups(fake: FakeServiceNow, client: httpx.AsyncClient) -> None:
    assert await make_target(fake).probe(client) == "authenticated; incident table readable"


async def test_probe_names_missing_groups(fake: FakeServiceNow, client: httpx.AsyncClient) -> None:
    target = make_target(fake, assignment=[{"group": "Nobody Home", "sites": ["X"]}], default_group="NOC L1")
    with pytest.raises(ProbeFailed, match=r"assignment group\(s\) not found: Nobody Home$"):
        await target.probe(client)


@pytest.mark.parametrize(("fail", "expect"), [
    (None, "HTTP 401: User Not Authenticated"),
    (Fail(403, message="Operation Failed", detail="ACL Exception Read Failed"), "HTTP 403: Operation Failed"),
])
async def test_probe_fails_on_refused_credentials(fake: FakeServiceNow, client: httpx.AsyncClient,
                                                  fail: Fail | None, expect: str) -> None:
    if fail is None:
        target = make_target(fake, secret="not-the-password")
    else:
        target = make_target(fake)
        fake.script("GET", INCIDENT_TABLE, [fail])
    with pytest.raises(ProbeFailed, match=expect):
        await target.probe(client)


async def test_probe_fails_when_the_instance_cannot_be_reached(client: httpx.AsyncClient) -> None:
    with FakeServiceNow(secret="sn-down-secret") as fake:
        target = make_target(fake)
    with pytest.raises(ProbeFailed, match="ConnectError"):
        await target.probe(client)


# --- a reopened incident reopens its record -------------------------------------------------------------


def reopened_incident(evidence: str = "CORE1:ether2 oper-down again 40s after recovering") -> dict[str, Any]:
    """What the engine sends when the root fails again within reopen_window_s: incident.updated, open again."""
    inc = example("closed")
    inc.update(status="open", ends_at=None)
    inc["evidence_top"] = [evidence, *inc["evidence_top"][:2]]
    return inc


async def deliver_all(store: Store, target: ServiceNowTarget, events: list[tuple[str, dict[str, Any]]],
                      before: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """One run of the delivery side (a new dispatcher over ``store``): queue the events, wait until every
    row is delivered, stop. Returns the outbox rows in order."""
    clock = ScaledClock(300.0)
    dispatcher = outbox.OutboxDispatcher(store, {"snow": target}, clock, StoreRefs(store))
    task = asyncio.create_task(dispatcher.run(poll_real_s=0.02))

    def rows() -> list[dict[str, Any]]:
        return store.query_dicts("SELECT * FROM outbox ORDER BY sequence")

    try:
        for event_type, inc in events:
            await asyncio.wrap_future(store.transaction(
                lambda con, e=event_type, i=inc: outbox.enqueue(con, [target], INCIDENT_ID, e, i, clock.now())))
            dispatcher.wake()
        assert await until(lambda: rows() and all(r["status"] == "delivered" for r in rows())), rows()
        return rows()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_reopened_incident_sets_its_record_in_progress_once_across_a_restart(
        fake: FakeServiceNow, tmp_path: Path) -> None:
    db = tmp_path / "outbox.duckdb"
    with Store(db) as store:
        await deliver_all(store, make_target(fake), [("incident.opened", INCIDENTS["incident.opened"]),
                                                     ("incident.closed", INCIDENTS["incident.closed"])])
    [rec] = fake.incidents()
    sys_id = rec["sys_id"]
    assert rec["state"] == "6"
    fake.script("PATCH", RECORD, [Lose()])  # the reopen lands, its answer is lost: the retry must not repeat it
    with Store(db) as store:  # a new process: new dispatcher and target, same file
        rows = await deliver_all(store, make_target(fake), [
            ("incident.updated", reopened_incident()), ("incident.acked", {**reopened_incident(), "status": "acked"}),
            ("incident.closed", INCIDENTS["incident.closed"])])
        reopen_attempts = store.query_dicts("SELECT outcome FROM deliveries WHERE event_id = ? ORDER BY attempted_at",
                                            [rows[2]["event_id"]])
    assert [a["outcome"] for a in reopen_attempts] == ["retry", "delivered"]
    patches = [r.json for r in fake.requests("PATCH", f"{RECORD}{sys_id}")]
    assert [p.get("state") for p in patches] == ["6", "2", None, "6"]  # resolved, reopened once, a note, resolved
    notes = fake.work_notes(sys_id)
    assert len(notes) == 2, notes  # the reopen (once) and the acknowledgement
    assert notes[0].startswith("Reopened by ispvm: the incident was resolved at 2026-12-04 23:22:39 UTC, and link "
                               "CORE1:ether2--POPA-AGG:ether1 (80 % confidence) failed again within the reopen "
                               "window. Set back to In Progress.\n\n🔴 CRITICAL UPDATED")
    assert "oper-down again 40s after recovering" in notes[0]
    assert notes[0].endswith(f"ispvm event {rows[2]['event_id']}")
    assert not notes[1].startswith("Reopened")
    [rec] = fake.incidents()
    assert rec["state"] == "6" and rec["reopen_count"] == "1"
    assert len(fake.requests("POST", INCIDENT_TABLE)) == 1


async def test_a_record_resolved_by_hand_is_not_reopened_by_an_update(fake: FakeServiceNow,
                                                                     client: httpx.AsyncClient) -> None:
    target, refs = make_target(fake), MemoryRefs()
    assert (await target.send(notice("incident.opened"), client, refs)).status == "delivered"
    sys_id = fake.incidents()[0]["sys_id"]
    r = await client.patch(f"{fake.url}{RECORD}{sys_id}", json={"state": "6", "close_code": "Solved (Work Around)",
                                                                 "close_notes": "rebooted by hand"},
                           auth=("ispvm.integration", SECRETS["basic"]))
    assert r.status_code == 200
    assert (await target.send(notice("incident.updated"), client, refs)).status == "delivered"
    assert fake.requests("PATCH")[-1].json.keys() == {"work_notes"}
    assert fake.incidents()[0]["state"] == "6"
