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
