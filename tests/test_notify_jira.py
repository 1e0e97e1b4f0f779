"""The Jira target against a real local Jira-shaped server (ispvm_tui/lab/fake_jira.py) on loopback.

Every assertion is about what the server received and holds: issues, comments, transitions, the
auth header. Waits are for conditions; the only clocks that run fast are the engine's ScaledClock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ispvm_tui.clock import ScaledClock
from ispvm_tui.config import JiraConfig
from ispvm_tui.engine import outbox
from ispvm_tui.engine.notify.jira import JiraTarget, marker
from ispvm_tui.engine.store import Store
from ispvm_tui.engine.target_refs import StoreRefs
from ispvm_tui.engine.targets import MemoryRefs, Notice, ProbeFailed, Refs
from ispvm_tui.lab.fake_jira import FakeJira

TOKEN = "jira-tok-7f3a9c1e5b2d4f60"
EMAIL = "noc@example.net"
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples" / "webhooks"


def example(event: str) -> dict[str, Any]:
    inc = json.loads((EXAMPLES / f"{event}.json").read_text())["incident"]
    inc["labels"]["provider"] = "UPSTREAM1"
    inc["labels"]["sites"] = "POP-A,Main St"
    return inc


def stage(event_type: str, inc: dict[str, Any] | None = None) -> dict[str, Any]:
    """The incident as it is at each event of its life (the examples, updated with a new evidence line)."""
    name = {"incident.updated": "incident.opened"}.get(event_type, event_type)
    out = copy.deepcopy(inc) if inc is not None else example(name)
    if event_type == "incident.updated":
        out["severity"] = "critical"
        out["evidence_top"] = [*out["evidence_top"], "POPA-ACC1 last seen 2 min ago"]
    return out


def notice(event_type: str, inc: dict[str, Any] | None = None, *, event_id: str | None = None,
           attempt: int = 1) -> Notice:
    inc = inc if inc is not None else stage(event_type)
    return Notice(event_id or str(uuid.uuid4()), "jira", inc["id"], event_type, inc, 0.0, 1, attempt)


def config(fake: FakeJira, **kw: Any) -> JiraConfig:
    kw.setdefault("email", EMAIL)
    kw.setdefault("close_transition", "Done")
    kw.setdefault("timeout_s", 2.0)
    return JiraConfig(name="jira", url=fake.url, token_secret="jira-token", project="NOC", **kw)


@pytest.fixture
def fake() -> Any:
    with FakeJira(email=EMAIL, token=TOKEN, stall_s=3.0) as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


async def until_delivered(target: JiraTarget, n: Notice, client: httpx.AsyncClient, refs: Refs,
                          timeout: float = 15.0) -> list[Any]:
    """Attempt after attempt (as the outbox would, without its backoff) until one delivers."""
    outcomes = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    attempt = n.attempt
    while loop.time() < deadline:
        outcome = await target.send(Notice(**{**{f: getattr(n, f) for f in n.__dataclass_fields__},
                                              "attempt": attempt}), client, refs)
        outcomes.append(outcome)
        if outcome.status != "retry":
            return outcomes
        attempt += 1
        await asyncio.sleep(0.05)
    return outcomes


def creates(fake: FakeJira) -> list[Any]:
    return fake.requests("POST", "/rest/api/3/issue")


def comment_texts(fake: FakeJira, key: str) -> list[str]:
    issue = fake.issue(key)
    assert issue is not None
    return [json.dumps(c["body"], ensure_ascii=False) for c in issue.comments]


# --- through the real outbox ---------------------------------------------------------------------


class Rig:
    def __init__(self, store: Store, clock: ScaledClock, target: JiraTarget) -> None:
        self.store, self.clock, self.target = store, clock, target
        self.refs = StoreRefs(store)
        self.dispatcher = outbox.OutboxDispatcher(store, {target.name: target}, clock, self.refs)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.dispatcher.run(poll_real_s=0.02))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def enqueue(self, event_type: str, inc: dict[str, Any]) -> None:
        now = self.clock.now()
        await asyncio.wrap_future(self.store.transaction(
            lambda con: outbox.enqueue(con, [self.target], inc["id"], event_type, inc, now)))
        self.dispatcher.wake()

    def rows(self) -> list[dict[str, Any]]:
        return self.store.query_dicts("SELECT * FROM outbox ORDER BY seq")


async def until(cond: Callable[[], bool], timeout: float = 20.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return cond()


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    rigs: list[Rig] = []

    async def make(cfg: JiraConfig, speed: float = 300.0) -> Rig:
        clock = ScaledClock(speed)
        rig = Rig(Store(tmp_path / f"o{len(rigs)}.duckdb"), clock, JiraTarget(cfg, TOKEN, clock=clock))
        rigs.append(rig)
        await rig.start()
        return rig

    yield make
    for rig in rigs:
        await rig.stop()
        rig.store.close()


async def test_full_life_through_the_outbox_is_one_issue_three_comments_and_the_transition(fake, make_rig) -> None:
    rig = await make_rig(config(fake))
    opened = stage("incident.opened")
    for event in ("incident.opened", "incident.updated", "incident.acked", "incident.closed"):
        inc = stage(event)
        await rig.enqueue(event, inc)
    assert await until(lambda: all(r["status"] == "delivered" for r in rig.rows())), rig.rows()
    rows = rig.rows()
    assert [r["event_type"] for r in rows] == ["incident.opened", "incident.updated", "incident.acked",
                                                "incident.closed"]
    [issue] = fake.issues()
    f = issue.fields
    assert f["summary"] == "[ISPVM] " + opened["title"]
    assert f["project"] == {"key": "NOC"} and f["issuetype"] == {"name": "Task"}
    assert f["priority"] == {"name": "Highest"}  # critical
    assert f["labels"] == ["ispvm", f"ispvm-{opened['id']}", "site-Main-St", "site-POP-A", "provider-UPSTREAM1"]
    desc = json.dumps(f["description"], ensure_ascii=False)
    assert f["description"]["type"] == "doc" and '"type": "heading"' in desc and '"type": "bulletList"' in desc
    assert {"type": "link", "attrs": {"href": opened["url"]}} in [
        m for node in f["description"]["content"] for c in node.get("content", []) for m in c.get("marks", [])]
    assert "Started 2026-12-04 23:18:01 UTC" in desc and "1 site(s), 3 device(s)" in desc
    assert "oper-down while admin-up" in desc  # evidence
    texts = comment_texts(fake, issue.key)
    assert len(texts) == 3
    for text, row in zip(texts, rows[1:], strict=True):
        assert marker(row["event_id"]) in text
    assert "UPDATED" in texts[0] and "New evidence: POPA-ACC1 last seen 2 min ago" in texts[0]
    assert "ACKED" in texts[1] and "Acknowledged by noc-oncall" in texts[1]
    assert "RESOLVED" in texts[2] and "Resolved at" in texts[2]
    assert issue.status == "Done"
    [transition] = fake.requests("POST", "/rest/api/3/issue/*/transitions")
    assert transition.json == {"transition": {"id": "31"}}
    basic = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    assert {r.header("authorization") for r in fake.requests()} == {f"Basic {basic}"}
    assert await rig.refs.get("jira", opened["id"]) == issue.key


async def test_lost_create_answer_through_the_outbox_ends_with_one_issue(fake, make_rig) -> None:
    """Jira creates, the answer never arrives, and its search lags: the outbox retries; still one issue."""
    fake.search_lag_s = 0.5
    fake.script("POST", "/rest/api/3/issue", "lose")
    rig = await make_rig(config(fake), speed=10.0)  # 30 s of settle time is 3 s here: longer than the lag
    inc = stage("incident.opened")
    await rig.enqueue("incident.opened", inc)
    await rig.enqueue("incident.updated", stage("incident.updated"))
    assert await until(lambda: all(r["status"] == "delivered" for r in rig.rows())), rig.rows()
    [issue] = fake.issues()
    assert len(creates(fake)) == 1
    assert len(issue.comments) == 1
    first = rig.store.query_dicts("SELECT * FROM deliveries WHERE event_id = ? ORDER BY attempted_at",
                                  [rig.rows()[0]["event_id"]])
    assert first[0]["outcome"] == "retry" and first[-1]["outcome"] == "delivered"


# --- failures, one attempt at a time ---------------------------------------------------------------


async def test_429_waits_for_retry_after_then_for_the_rate_limit_reset(fake, client) -> None:
    target, refs = JiraTarget(config(fake), TOKEN), MemoryRefs()
    reset = (datetime.now(UTC) + timedelta(seconds=30)).isoformat(timespec="seconds").replace("+00:00", "Z")
    fake.script("POST", "/rest/api/3/issue", (429, {"Retry-After": "7", "X-RateLimit-Reset": reset}),
                (429, {"X-RateLimit-Reset": reset}))
    n = notice("incident.opened")
    first = await target.send(n, client, refs)
    assert (first.status, first.http_status, first.retry_after_s) == ("retry", 429, 7.0)
    assert "Rate limit exceeded" in (first.error or "")
    second = await target.send(notice("incident.opened", n.incident, event_id=n.event_id, attempt=2), client, refs)
    assert second.status == "retry" and second.retry_after_s is not None and 15 < second.retry_after_s <= 31
    third = await target.send(notice("incident.opened", n.incident, event_id=n.event_id, attempt=3), client, refs)
    assert third.status == "delivered"
    assert len(fake.issues()) == 1 and len(creates(fake)) == 3


async def test_500_then_success(fake, client) -> None:
    target, refs = JiraTarget(config(fake), TOKEN), MemoryRefs()
    fake.script("POST", "/rest/api/3/issue", 500)
    outcomes = await until_delivered(target, notice("incident.opened"), client, refs)
    assert [o.status for o in outcomes] == ["retry", "delivered"]
    assert outcomes[0].http_status == 500 and "Internal server error" in (outcomes[0].error or "")
    assert len(fake.issues()) == 1 and len(creates(fake)) == 2


async def test_a_comment_slower_than_the_timeout_is_retried_and_not_posted_twice(fake, client) -> None:
    target, refs = JiraTarget(config(fake, timeout_s=0.3), TOKEN), MemoryRefs()
    assert (await target.send(notice("incident.opened"), client, refs)).status == "delivered"
    key = fake.issues()[0].key
    fake.script("POST", "/rest/api/3/issue/*/comment", ("delay", 1.5))  # answers long after the client gave up
    n = notice("incident.updated")
    first = await target.send(n, client, refs)
    assert first.status == "retry" and "timeout after 0.3s" in (first.error or "")
    assert fake.wait_for(lambda f: len(f.issue(key).comments) == 1, 10)  # Jira did post it, late
    again = await target.send(notice("incident.updated", n.incident, event_id=n.event_id, attempt=2), client, refs)
    assert again.status == "delivered"
    assert len(fake.issue(key).comments) == 1
    assert fake.requests("GET", f"/rest/api/3/issue/{key}/comment")  # it looked for its marker first


async def test_a_create_that_stalls_past_the_timeout_is_found_not_made_again(fake, client) -> None:
    target, refs = JiraTarget(config(fake, timeout_s=0.3), TOKEN), MemoryRefs()
    fake.script("POST", "/rest/api/3/issue", "stall")
    outcomes = await until_delivered(target, notice("incident.opened"), client, refs)
    assert outcomes[0].status == "retry" and "timeout" in (outcomes[0].error or "")
    assert outcomes[-1].status == "delivered"
    assert len(fake.issues()) == 1 and len(creates(fake)) == 1


async def test_lost_create_response_waits_for_search_and_ends_with_exactly_one_issue(fake, client) -> None:
    target, refs = JiraTarget(config(fake), TOKEN), MemoryRefs()
    fake.search_paused = True  # Jira's index has not caught up with the create
    fake.script("POST", "/rest/api/3/issue", "lose")
    n = notice("incident.opened")
    first = await target.send(n, client, refs)
    assert first.status == "retry" and first.http_status is None
    assert len(fake.issues()) == 1  # created, though the client never heard
    waiting = await target.send(notice("incident.opened", n.incident, event_id=n.event_id, attempt=2), client, refs)
    assert waiting.status == "retry" and waiting.retry_after_s is not None and 0 < waiting.retry_after_s <= 5
    assert "search does not show it yet" in (waiting.error or "")
    assert len(creates(fake)) == 1  # did not create again while the search could still be behind
    fake.resume_search()
    done = await target.send(notice("incident.opened", n.incident, event_id=n.event_id, attempt=3), client, refs)
    assert done.status == "delivered"
    [issue] = fake.issues()
    assert await refs.get("jira", n.incident_id) == issue.key and len(creates(fake)) == 1


async def test_a_create_that_never_reached_jira_is_made_once_the_settle_time_is_over(fake, client) -> None:
    clock = ScaledClock(2000.0)  # the 30 s settle time passes in 15 ms
    target, refs = JiraTarget(config(fake), TOKEN, clock=clock), MemoryRefs()
    fake.script("POST", "/rest/api/3/issue", "drop")  # connection closed, nothing created
    outcomes = await until_delivered(target, notice("incident.opened"), client, refs)
    assert outcomes[0].status == "retry" and outcomes[-1].status == "delivered"
    assert len(fake.issues()) == 1 and len(creates(fake)) == 2


async def test_restart_mid_delivery_finds_the_issue_and_respects_the_uncertain_create(fake, client,
                                                                                    tmp_path: Path) -> None:
    db = tmp_path / "refs.duckdb"
    fake.search_paused = True
    fake.script("POST", "/rest/api/3/issue", "lose")
    n = notice("incident.opened")
    with Store(db) as store:
        first = await JiraTarget(config(fake), TOKEN).send(n, client, StoreRefs(store))
        assert first.status == "retry"
    with Store(db) as store:  # a new process: new target, new refs, same file
        target, refs = JiraTarget(config(fake), TOKEN), StoreRefs(store)
        again = await target.send(notice("incident.opened", n.incident, event_id=n.event_id, attempt=2), client, refs)
        assert again.status == "retry", "the create before the restart may have worked: wait for the search"
        assert len(creates(fake)) == 1
        fake.resume_search()
        done = await target.send(notice("incident.opened", n.incident, event_id=n.event_id, attempt=3), client, refs)
        assert done.status == "delivered"
        updated = await target.send(notice("incident.updated"), client, refs)
        assert updated.status == "delivered"
    [issue] = fake.issues()
    assert len(creates(fake)) == 1 and len(issue.comments) == 1
    with Store(db) as store:
        assert await StoreRefs(store).get("jira", n.incident_id) == issue.key


async def test_permanent_400_quotes_jiras_error_messages(fake, client) -> None:
    target = JiraTarget(config(fake, priorities={"critical": "Urgent"}), TOKEN)
    out = await target.send(notice("incident.opened"), client, MemoryRefs())
    assert out.status == "permanent" and out.http_status == 400
    assert "create issue: HTTP 400" in (out.error or "")
    assert "priority: Specify a valid value for priority: 'Urgent'" in (out.error or "")
    assert fake.issues() == []
    fake.script("POST", "/rest/api/3/search/jql", (400, {}, {
        "errorMessages": ["Field 'labels' does not exist or you do not have permission to view it."], "errors": {}}))
    out = await JiraTarget(config(fake), TOKEN).send(notice("incident.opened"), client, MemoryRefs())
    assert out.status == "permanent"
    assert "Field 'labels' does not exist or you do not have permission to view it." in (out.error or "")


async def test_a_deleted_issue_is_a_clear_permanent_error(fake, client) -> None:
    target, refs = JiraTarget(config(fake), TOKEN), MemoryRefs()
    n = notice("incident.opened")
    assert (await target.send(n, client, refs)).status == "delivered"
    key = fake.issues()[0].key
    fake.delete_issue(key)
    out = await target.send(notice("incident.updated"), client, refs)
    assert out.status == "permanent" and out.http_status == 404
    assert f"issue {key} not found in Jira" in (out.error or "")
    assert "Issue does not exist" in (out.error or "")
    assert fake.issues() == []  # no new issue behind the operator's back


async def test_no_such_transition_comments_once_and_a_resend_after_the_fix_only_transitions(fake, client) -> None:
    refs = MemoryRefs()
    wrong = JiraTarget(config(fake, close_transition="Resolve"), TOKEN)
    assert (await wrong.send(notice("incident.opened"), client, refs)).status == "delivered"
    key = fake.issues()[0].key
    closed = notice("incident.closed")
    out = await wrong.send(closed, client, refs)
    assert out.status == "permanent"
    assert "no transition 'Resolve'" in (out.error or "") and "'Start work', 'Done'" in (out.error or "")
    assert len(fake.issue(key).comments) == 1 and fake.issue(key).status == "To Do"
    fixed = JiraTarget(config(fake, close_transition="done"), TOKEN)  # names match case-insensitively
    assert (await fixed.send(closed, client, refs)).status == "delivered"  # the resend: same event
    assert len(fake.issue(key).comments) == 1 and fake.issue(key).status == "Done"


async def test_a_lost_transition_answer_is_recognised_by_the_status(fake, client) -> None:
    target, refs = JiraTarget(config(fake), TOKEN), MemoryRefs()
    assert (await target.send(notice("incident.opened"), client, refs)).status == "delivered"
    fake.script("POST", "/rest/api/3/issue/*/transitions", "lose")
    outcomes = await until_delivered(target, notice("incident.closed"), client, refs)
    assert [o.status for o in outcomes] == ["retry", "delivered"]
    [issue] = fake.issues()
    assert issue.status == "Done" and len(issue.comments) == 1
    assert len(fake.requests("POST", "/rest/api/3/issue/*/transitions")) == 1


async def test_routing_mid_incident_creates_on_update_and_a_bare_close_sends_nothing(fake, client) -> None:
    target, refs = JiraTarget(config(fake), TOKEN), MemoryRefs()
    assert (await target.send(notice("incident.closed"), client, refs)).status == "delivered"
    assert fake.requests() == []
    assert (await target.send(notice("incident.acked"), client, refs)).status == "delivered"
    [issue] = fake.issues()
    assert issue.comments == [] and "ACKED" in json.dumps(issue.fields["description"])


async def test_bearer_token_long_title_and_labels(fake, client) -> None:
    fake.email = None  # an OAuth token: Bearer
    inc = stage("incident.opened")
    inc["title"] = "Link down " + "x" * 400
    inc["severity"] = "minor"
    target = JiraTarget(config(fake, email=None, labels=["noc team", "isp"]), TOKEN)
    assert (await target.send(notice("incident.opened", inc), client, MemoryRefs())).status == "delivered"
    [issue] = fake.issues()
    assert len(issue.fields["summary"]) == 255 and issue.fields["summary"].startswith("[ISPVM] Link down x")
    assert issue.fields["priority"] == {"name": "Medium"}
    assert issue.fields["labels"][:4] == ["ispvm", f"ispvm-{inc['id']}", "noc-team", "isp"]
    assert {r.header("authorization") for r in fake.requests()} == {f"Bearer {TOKEN}"}


async def test_the_token_is_never_in_errors_exceptions_or_logs(fake, client, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    basic = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    target, refs = JiraTarget(config(fake), TOKEN), MemoryRefs()
    errors: list[str] = [repr(target)]
    fake.script("POST", "/rest/api/3/issue", "lose", 500)
    for o in await until_delivered(target, notice("incident.opened"), client, refs):
        errors.append(o.error or "")
    fake.token = "rotated-elsewhere-000"  # Jira no longer accepts ours
    out = await target.send(notice("incident.updated"), client, refs)
    assert out.status == "permanent" and out.http_status == 401
    errors.append(out.error or "")
    with pytest.raises(ProbeFailed) as failed:
        await target.probe(client)
    errors.append(str(failed.value))
    text = caplog.text + "\n".join(errors)
    assert "Client must be authenticated" in text  # the failures were seen and recorded
    assert TOKEN not in text and basic not in text


async def test_probe_checks_credentials_and_project(fake, client) -> None:
    line = await JiraTarget(config(fake), TOKEN).probe(client)
    assert "authenticated as ISPVM Bot; project NOC (Network Operations) found" in line
    assert [r.path for r in fake.requests()] == ["/rest/api/3/myself", "/rest/api/3/project/NOC"]
    assert fake.issues() == []
    with pytest.raises(ProbeFailed, match=r"refused the credentials .*HTTP 401.*email and API token"):
        await JiraTarget(config(fake), "wrong-token-123").probe(client)
    fake.script("GET", "/rest/api/3/myself", 403)
    with pytest.raises(ProbeFailed, match="HTTP 403"):
        await JiraTarget(config(fake), TOKEN).probe(client)
    cfg = config(fake).model_copy(update={"project": "OPS"})
    with pytest.raises(ProbeFailed, match=r"project OPS not found.*No project could be found with key 'OPS'"):
        await JiraTarget(cfg, TOKEN).probe(client)
    fake.stop()
    with pytest.raises(ProbeFailed, match="cannot reach Jira"):
        await JiraTarget(cfg, TOKEN).probe(client)


async def test_fake_answers_410_on_the_retired_search(fake, client) -> None:
    basic = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    r = await client.post(f"{fake.url}/rest/api/3/search", json={"jql": "project = NOC"},
                          headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 410 and "search/jql" in r.json()["errorMessages"][0]
    r = await client.get(f"{fake.url}/rest/api/3/myself")
    assert r.status_code == 401 and r.json()["errorMessages"]


# --- priority follows severity; a reopened incident reopens its issue ------------------------------


@contextlib.asynccontextmanager
async def process(db: Path, cfg: JiraConfig, speed: float = 300.0) -> AsyncIterator[Rig]:
    """One run of the delivery side: the store on ``db``, a new target, a new dispatcher (a restart is two)."""
    clock = ScaledClock(speed)
    with Store(db) as store:
        rig = Rig(store, clock, JiraTarget(cfg, TOKEN, clock=clock))
        await rig.start()
        try:
            yield rig
        finally:
            await rig.stop()


def at(event_type: str, severity: str, evidence: str | None = None) -> dict[str, Any]:
    inc = stage(event_type)
    inc["severity"] = severity
    if evidence:
        inc["evidence_top"] = [*inc["evidence_top"], evidence]
    return inc


def reopened_incident(evidence: str = "CORE1:ether2 oper-down again 40s after recovering") -> dict[str, Any]:
    """What the engine sends when the root fails again within reopen_window_s: incident.updated, open again."""
    inc = stage("incident.closed")
    inc.update(status="open", ends_at=None)
    inc["evidence_top"] = [evidence, *inc["evidence_top"][:2]]
    return inc


def puts(fake: FakeJira) -> list[Any]:
    return fake.requests("PUT", "/rest/api/3/issue/*")


async def test_priority_follows_severity_through_the_outbox_across_a_restart(fake, tmp_path: Path) -> None:
    db = tmp_path / "o.duckdb"
    async with process(db, config(fake)) as rig:
        await rig.enqueue("incident.opened", at("incident.opened", "major"))
        assert await until(lambda: [r["status"] for r in rig.rows()] == ["delivered"]), rig.rows()
    [issue] = fake.issues()
    assert issue.fields["priority"] == {"name": "High"}
    async with process(db, config(fake)) as rig:  # a new process: new dispatcher and target, same file
        await rig.enqueue("incident.updated", at("incident.updated", "critical"))
        await rig.enqueue("incident.updated", at("incident.updated", "critical", "POPA-ACC2 last seen 5 min ago"))
        await rig.enqueue("incident.acked", at("incident.acked", "minor"))
        assert await until(lambda: len(rig.rows()) == 4 and all(r["status"] == "delivered" for r in rig.rows())), \
            rig.rows()
        rows = rig.rows()
    issue = fake.issue(issue.key)
    assert issue is not None
    # Changed twice (High -> Highest -> Medium); the second update kept the severity and set nothing.
    assert [p.json for p in puts(fake)] == [{"fields": {"priority": {"name": "Highest"}}},
                                            {"fields": {"priority": {"name": "Medium"}}}]
    assert issue.edits == [{"priority": {"name": "Highest"}}, {"priority": {"name": "Medium"}}]
    assert issue.fields["priority"] == {"name": "Medium"}
    texts = comment_texts(fake, issue.key)
    assert len(texts) == 3
    assert all(marker(r["event_id"]) in t for t, r in zip(texts, rows[1:], strict=True))
    assert "Priority: High → Highest" in texts[0] and "Severity: major → critical" in texts[0]
    assert "Priority" not in texts[1]
    assert "Priority: Highest → Medium" in texts[2]


async def test_a_lost_priority_answer_sets_it_again_and_comments_once(fake, client) -> None:
    target, refs = JiraTarget(config(fake), TOKEN), MemoryRefs()
    opened = notice("incident.opened", at("incident.opened", "major"))
    assert (await target.send(opened, client, refs)).status == "delivered"
    key = fake.issues()[0].key
    fake.script("PUT", "/rest/api/3/issue/*", "lose")  # Jira sets it; the 204 never arrives
    outcomes = await until_delivered(target, notice("incident.updated", at("incident.updated", "critical")),
                                     client, refs)
    assert [o.status for o in outcomes] == ["retry", "delivered"]
    issue = fake.issue(key)
    assert issue is not None and len(issue.comments) == 1
    assert issue.edits == [{"priority": {"name": "Highest"}}] * 2  # the same value twice: harmless
    assert await refs.get("jira", f"{opened.incident_id}#priority") == "Highest"


async def test_an_unknown_priority_is_a_dead_letter_after_the_comment_and_a_resend_only_sets_it(fake, client) -> None:
    refs = MemoryRefs()
    wrong = JiraTarget(config(fake, priorities={"major": "High", "critical": "Urgent"}), TOKEN)
    assert (await wrong.send(notice("incident.opened", at("incident.opened", "major")), client, refs)).status \
        == "delivered"
    key = fake.issues()[0].key
    update = notice("incident.updated", at("incident.updated", "critical"))
    out = await wrong.send(update, client, refs)
    assert (out.status, out.http_status) == ("permanent", 400)
    assert out.error == (f"comment posted on {key}, but set priority of {key} to 'Urgent': HTTP 400: "
                         "priority: Specify a valid value for priority: 'Urgent'")
    issue = fake.issue(key)
    assert issue is not None and len(issue.comments) == 1 and issue.fields["priority"] == {"name": "High"}
    fixed = JiraTarget(config(fake), TOKEN)  # critical -> Highest; the operator resends the dead letter
    assert (await fixed.send(update, client, refs)).status == "delivered"
    issue = fake.issue(key)
    assert issue is not None and len(issue.comments) == 1
    assert issue.fields["priority"] == {"name": "Highest"}


async def test_rows_kept_before_priorities_were_remembered_still_work(fake, client, tmp_path: Path) -> None:
    """A database from before: the key alone (or with the last snapshot). The issue is never created again,
    the priority is set when it cannot be known, and left alone when the last severity says it is right."""
    made = MemoryRefs()
    n = notice("incident.opened", at("incident.opened", "major"))
    assert (await JiraTarget(config(fake), TOKEN).send(n, client, made)).status == "delivered"
    key = fake.issues()[0].key
    seen = await made.get("jira", f"{n.incident_id}#seen")
    with Store(tmp_path / "only-key.duckdb") as store:
        refs = StoreRefs(store)
        await refs.put("jira", n.incident_id, key)
        target = JiraTarget(config(fake), TOKEN)
        assert (await target.send(notice("incident.updated", at("incident.updated", "major")), client,
                                  refs)).status == "delivered"
        assert [p.json for p in puts(fake)] == [{"fields": {"priority": {"name": "High"}}}]  # unknown: set
        assert (await target.send(notice("incident.updated", at("incident.updated", "major", "x")), client,
                                  refs)).status == "delivered"
        assert len(puts(fake)) == 1  # now it is known
    with Store(tmp_path / "key-and-seen.duckdb") as store:
        refs = StoreRefs(store)
        await refs.put("jira", n.incident_id, key)
        assert seen is not None
        await refs.put("jira", f"{n.incident_id}#seen", seen)
        target = JiraTarget(config(fake), TOKEN)
        assert (await target.send(notice("incident.updated", at("incident.updated", "major")), client,
                                  refs)).status == "delivered"
        assert len(puts(fake)) == 1  # major was High, and still is
        assert (await target.send(notice("incident.updated", at("incident.updated", "critical")), client,
                                  refs)).status == "delivered"
        assert [p.json for p in puts(fake)][1:] == [{"fields": {"priority": {"name": "Highest"}}}]
    assert len(fake.issues()) == 1 and len(creates(fake)) == 1


async def test_a_reopened_incident_reopens_its_issue_across_a_restart(fake, tmp_path: Path) -> None:
    db = tmp_path / "o.duckdb"
    cfg = config(fake, reopen_transition="Reopen")
    async with process(db, cfg) as rig:
        await rig.enqueue("incident.opened", stage("incident.opened"))
        await rig.enqueue("incident.closed", stage("incident.closed"))
        assert await until(lambda: len(rig.rows()) == 2 and all(r["status"] == "delivered" for r in rig.rows())), \
            rig.rows()
    [issue] = fake.issues()
    assert issue.status == "Done"
    fake.script("POST", "/rest/api/3/issue/*/transitions", "lose")  # reopened in Jira, the 204 is lost
    async with process(db, cfg) as rig:
        await rig.enqueue("incident.updated", reopened_incident())
        await rig.enqueue("incident.acked", {**reopened_incident(), "status": "acked"})
        assert await until(lambda: len(rig.rows()) == 4 and all(r["status"] == "delivered" for r in rig.rows())), \
            rig.rows()
        rows = rig.rows()
        attempts = rig.store.query_dicts("SELECT outcome FROM deliveries WHERE event_id = ? ORDER BY attempted_at",
                                         [rows[2]["event_id"]])
    issue = fake.issue(issue.key)
    assert issue is not None and issue.status == "To Do"
    assert [a["outcome"] for a in attempts] == ["retry", "delivered"]
    assert [t.json for t in fake.requests("POST", "/rest/api/3/issue/*/transitions")] == [
        {"transition": {"id": "31"}}, {"transition": {"id": "41"}}]  # Done, then Reopen once
    texts = comment_texts(fake, issue.key)
    assert len(texts) == 3  # the close, the reopen (once, despite the retry), the acknowledgement
    assert marker(rows[2]["event_id"]) in texts[1]
    assert "Reopened: failing again after it was resolved at 2026-12-04 23:22:39 UTC" in texts[1]
    assert "oper-down again" in texts[1]
    assert "Reopened" not in texts[2]


async def test_reopen_without_a_transition_comments_and_a_wrong_name_is_a_dead_letter(fake, client) -> None:
    refs = MemoryRefs()
    plain = JiraTarget(config(fake), TOKEN)  # no reopen_transition
    for event in ("incident.opened", "incident.closed"):
        assert (await plain.send(notice(event), client, refs)).status == "delivered"
    key = fake.issues()[0].key
    assert (await plain.send(notice("incident.updated", reopened_incident()), client, refs)).status == "delivered"
    issue = fake.issue(key)
    assert issue is not None and issue.status == "Done" and "Reopened" in comment_texts(fake, key)[-1]
    assert (await plain.send(notice("incident.closed"), client, refs)).status == "delivered"
    wrong = JiraTarget(config(fake, reopen_transition="Back to work"), TOKEN)
    again = notice("incident.updated", reopened_incident("failing a second time"))
    out = await wrong.send(again, client, refs)
    assert out.status == "permanent"
    assert out.error == (f"reopen comment posted on {key}, but no transition 'Back to work' from status 'Done'; "
                         "available: 'To Do', 'Start work', 'Reopen'")
    comments = len(fake.issue(key).comments)
    fixed = JiraTarget(config(fake, reopen_transition="reopen"), TOKEN)  # names match case-insensitively
    assert (await fixed.send(again, client, refs)).status == "delivered"  # the resend: same event
    issue = fake.issue(key)
    assert issue is not None and issue.status == "To Do" and len(issue.comments) == comments


async def test_fake_edit_answers_like_jira(fake, client) -> None:
    target = JiraTarget(config(fake), TOKEN)
    assert (await target.send(notice("incident.opened"), client, MemoryRefs())).status == "delivered"
    key = fake.issues()[0].key
    auth = {"Authorization": "Basic " + base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()}
    url = f"{fake.url}/rest/api/3/issue/{key}"
    r = await client.put(url, json={"fields": {"priority": {"name": "Urgent"}}}, headers=auth)
    assert r.status_code == 400 and r.json() == {
        "errorMessages": [], "errors": {"priority": "Specify a valid value for priority: 'Urgent'"}}
    r = await client.put(url, json={"fields": {"assignee": {"id": "x"}, "priority": {"name": "Low"}}}, headers=auth)
    assert r.status_code == 400 and "assignee" in r.json()["errors"]
    assert fake.issue(key).fields["priority"] == {"name": "Highest"}  # a refused edit changes nothing
    r = await client.put(url, json={"fields": {"priority": {"name": "Low"}}}, headers=auth)
    assert r.status_code == 204 and r.content == b""
    assert fake.issue(key).fields["priority"] == {"name": "Low"}
    r = await client.put(f"{fake.url}/rest/api/3/issue/NOC-999", json={"fields": {"priority": {"name": "Low"}}},
                         headers=auth)
    assert r.status_code == 404
    r = await client.put(url, json={"fields": {"priority": {"name": "High"}}})
    assert r.status_code == 401
