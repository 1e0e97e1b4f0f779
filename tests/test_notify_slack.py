"""The Slack target against a real local incoming-webhook server (lab/fake_slack.py) and, end to end,
through the real OutboxDispatcher over a real DuckDB store."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from ispvm_tui.clock import ScaledClock
from ispvm_tui.config import SlackConfig
from ispvm_tui.engine import outbox
from ispvm_tui.engine.notify.slack import SlackTarget
from ispvm_tui.engine.store import Store
from ispvm_tui.engine.target_refs import StoreRefs
from ispvm_tui.engine.targets import MemoryRefs, Notice, ProbeFailed
from ispvm_tui.lab.fake_slack import Fail, FakeSlack

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = json.loads((REPO / "docs/examples/webhooks/incident.opened.json").read_text())["incident"]


def incident(incident_id: str = "inc-1", **kw: Any) -> dict[str, Any]:
    inc = copy.deepcopy(EXAMPLE)
    inc.update(id=incident_id, url=f"https://monitor.example.net/incidents/{incident_id}", **kw)
    return inc


def notice(event_type: str = "incident.opened", incident_id: str = "inc-1", seq: int = 1, **kw: Any) -> Notice:
    return Notice(event_id=f"ev-{incident_id}-{seq}", target="sl", incident_id=incident_id, event_type=event_type,
                  incident=incident(incident_id, **kw), created_at=0.0, sequence=seq, attempt=1)


def make_target(url: str, **kw: Any) -> SlackTarget:
    clock = kw.pop("clock", None)
    kw.setdefault("timeout_s", 2.0)
    return SlackTarget(SlackConfig(name="sl", url_secret="slack-noc-webhook", **kw), url, clock=clock)


@pytest.fixture
def fake() -> AsyncIterator[FakeSlack]:
    server = FakeSlack()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


async def until(cond: Callable[[], bool], timeout: float = 20.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return cond()


def texts(message: dict[str, Any]) -> str:
    """Every mrkdwn/plain text of a posted message, in block order."""
    out = []
    for block in message["blocks"]:
        if "text" in block:
            out.append(block["text"]["text"])
        out.extend(f["text"] for f in block.get("fields", []))
    return "\n".join(out)


class Rig:
    def __init__(self, store: Store, url: str) -> None:
        self.store = store
        self.clock = ScaledClock(300.0)
        self.target = make_target(url, clock=self.clock)
        self.dispatcher = outbox.OutboxDispatcher(store, {"sl": self.target}, self.clock, StoreRefs(store))
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Rig:
        self.task = asyncio.create_task(self.dispatcher.run(poll_real_s=0.02))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def enqueue(self, incident_id: str, event_type: str, **kw: Any) -> None:
        now = self.clock.now()
        await asyncio.wrap_future(self.store.transaction(
            lambda con: outbox.enqueue(con, [self.target], incident_id, event_type, incident(incident_id, **kw), now)))
        self.dispatcher.wake()

    def rows(self) -> list[dict[str, Any]]:
        return self.store.query_dicts("SELECT * FROM outbox ORDER BY seq")

    def attempts(self, event_id: str) -> list[dict[str, Any]]:
        return self.store.query_dicts("SELECT * FROM deliveries WHERE event_id = ? ORDER BY attempted_at", [event_id])


async def test_opened_acked_closed_reach_the_channel_through_the_outbox(fake: FakeSlack, tmp_path: Path) -> None:
    fake.fail_next(Fail(429, "rate_limited", {"Retry-After": "90"}), Fail(503, "service_unavailable"))
    with Store(tmp_path / "o.duckdb") as store:
        async with Rig(store, fake.url) as rig:
            await rig.enqueue("inc-1", "incident.opened")
            await rig.enqueue("inc-1", "incident.acked", status="acked",
                              ack={"acked_by": "bob", "acked_at": "2026-12-04T23:20:00Z"})
            await rig.enqueue("inc-1", "incident.closed", status="resolved", ends_at="2026-12-04T23:40:00Z")
            assert await until(lambda: all(r["status"] == "delivered" for r in rig.rows())), rig.rows()
            first = rig.attempts(rig.rows()[0]["event_id"])
    assert [(a["outcome"], a["http_status"]) for a in first] == [("retry", 429), ("retry", 503), ("delivered", 200)]
    assert first[0]["error"] == "post message: HTTP 429: rate_limited"
    assert first[1]["attempted_at"] - first[0]["attempted_at"] >= 89  # Retry-After honoured (clock seconds)
    got = fake.messages()
    assert [m["text"].split(":")[0] for m in got] == ["🔴 CRITICAL OPENED", "🔴 CRITICAL ACKED", "✅ CRITICAL RESOLVED"]
    opened = got[0]
    assert opened["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                                              "text": opened["text"]}}
    body = texts(opened)
    assert "*Severity*\nCRITICAL" in body and "*Incident*\nopen" in body
    assert "*Root cause*\nlink CORE1:ether2--POPA-AGG:ether1 (80 % confidence)" in body
    assert "*Impact*\n1 site(s), 3 device(s), 1 service(s), ~1200 subscribers" in body
    assert "• POPA-AGG stopped answering with it" in body
    button = opened["blocks"][-1]["elements"][0]
    assert button["url"] == "https://monitor.example.net/incidents/inc-1" and button["text"]["text"] == "Open incident"
    assert "acknowledged by bob" in texts(got[1])


@pytest.mark.parametrize(("status", "text"), [(400, "invalid_payload"), (400, "no_text"), (403, "action_prohibited"),
                                              (404, "channel_not_found"), (410, "channel_is_archived")])
async def test_slack_refusals_are_permanent_with_slacks_text(fake: FakeSlack, client: httpx.AsyncClient, status: int,
                                                             text: str) -> None:
    fake.fail_next((status, text))
    out = await make_target(fake.url).send(notice(), client, MemoryRefs())
    assert (out.status, out.http_status, out.error) == ("permanent", status, f"post message: HTTP {status}: {text}")
    assert fake.messages() == []


async def test_a_wrong_webhook_path_is_no_service(fake: FakeSlack, client: httpx.AsyncClient) -> None:
    out = await make_target(fake.url + "x").send(notice(), client, MemoryRefs())
    assert (out.status, out.error) == ("permanent", "post message: HTTP 404: no_service")


async def test_500_is_retried_and_a_slow_reply_is_a_timeout(fake: FakeSlack, client: httpx.AsyncClient) -> None:
    target = make_target(fake.url, timeout_s=0.5)
    fake.fail_next(Fail(500, "internal_error"))
    out = await target.send(notice(), client, MemoryRefs())
    assert (out.status, out.error) == ("retry", "post message: HTTP 500: internal_error")
    fake.set_delay(2.0)
    out = await target.send(notice(), client, MemoryRefs())
    assert (out.status, out.error) == ("retry", "post message: timeout after 0.5s")
    fake.set_delay(0)
    assert (await target.send(notice(), client, MemoryRefs())).status == "delivered"


async def test_a_lost_reply_is_retried_and_may_post_twice(fake: FakeSlack, client: httpx.AsyncClient) -> None:
    target, refs = make_target(fake.url), MemoryRefs()
    fake.fail_next(Fail(200, lose="drop"))
    assert (await target.send(notice(), client, refs)).status == "retry"
    assert (await target.send(notice(), client, refs)).status == "delivered"
    assert len(fake.messages()) == 2  # no idempotency key in Slack: a duplicate line, accepted for chat


async def test_a_close_never_announced_posts_nothing_even_after_a_restart(
        fake: FakeSlack, client: httpx.AsyncClient, tmp_path: Path) -> None:
    db = tmp_path / "refs.duckdb"
    with Store(db) as store:
        target = make_target(fake.url)
        assert (await target.send(notice("incident.closed", "inc-9"), client, StoreRefs(store))).status == "delivered"
        assert fake.requests() == []
        assert (await target.send(notice("incident.updated", "inc-2"), client, StoreRefs(store))).status == "delivered"
    with Store(db) as store:
        out = await make_target(fake.url).send(notice("incident.closed", "inc-2", seq=2), client, StoreRefs(store))
    assert out.status == "delivered"
    assert [m["text"].split(":")[0] for m in fake.messages()] == ["🔴 CRITICAL UPDATED", "✅ CRITICAL RESOLVED"]


async def test_mrkdwn_control_characters_are_escaped(fake: FakeSlack, client: httpx.AsyncClient) -> None:
    title = "<!channel> R&D <http://evil|click> > 5"
    n = notice(title=title, evidence_top=["a < b & c > d"])
    out = await make_target(fake.url).send(n, client, MemoryRefs())
    assert out.status == "delivered"
    sent = fake.messages()[0]
    assert sent["text"].endswith("&lt;!channel&gt; R&amp;D &lt;http://evil|click&gt; &gt; 5")
    assert sent["blocks"][0]["text"]["text"].endswith(title)  # plain_text: shown as is, nothing to escape
    assert "a &lt; b &amp; c &gt; d" in texts(sent)
    assert "<" not in texts(sent).replace(sent["blocks"][0]["text"]["text"], "")


async def test_a_huge_incident_stays_within_slacks_block_limits(fake: FakeSlack, client: httpx.AsyncClient) -> None:
    many = [{"entity_type": "link", "entity_id": f"L{n}", "name": "&<" * 600} for n in range(9)]
    out = await make_target(fake.url).send(notice(title="x" * 5000, root_causes=many, evidence_top=["&" * 3000] * 9),
                                           client, MemoryRefs())
    assert out.status == "delivered", out.error  # the fake refuses what Slack would (invalid_blocks)
    sent = fake.messages()[0]
    assert len(sent["blocks"][0]["text"]["text"]) <= 150
    evidence = next(t for t in texts(sent).split("\n*") if t.startswith("Evidence*"))
    assert evidence.endswith("…\nand 7 more")  # cut within the section, and says how much is left out
    assert all(len(b["text"]["text"]) <= 3000 for b in sent["blocks"][2:-1])


async def test_the_webhook_url_is_in_no_error_log_line_or_repr(fake: FakeSlack, client: httpx.AsyncClient,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    url = fake.url
    target = make_target(url, timeout_s=0.5)
    outcomes = [await target.send(notice(), client, MemoryRefs())]
    fake.fail_next((404, "channel_not_found"))
    outcomes.append(await target.send(notice(), client, MemoryRefs()))
    fake.fail_next((400, "no_text"))
    with pytest.raises(ProbeFailed) as refused:
        await target.probe(client)
    fake.set_delay(2.0)
    outcomes.append(await target.send(notice(), client, MemoryRefs()))
    fake.stop()
    outcomes.append(await target.send(notice(), client, MemoryRefs()))
    assert [o.status for o in outcomes] == ["delivered", "permanent", "retry", "retry"], outcomes
    assert any(r.name == "httpx" and "HTTP Request: POST ***" in r.getMessage() for r in caplog.records)
    secret_part = urlsplit(url).path.rsplit("/", 1)[1]
    everything = [caplog.text, *(r.getMessage() for r in caplog.records), repr(target), str(refused.value),
                  *(o.error or "" for o in outcomes)]
    for form in (url, quote(url, safe=""), urlsplit(url).path, secret_part):
        assert not [t for t in everything if form in t], form
    assert str(refused.value) == "post test message: HTTP 400: no_text"


async def test_probe_posts_a_test_message(fake: FakeSlack, client: httpx.AsyncClient) -> None:
    line = await make_target(fake.url).probe(client)
    assert line == "posted a test message to the Slack webhook (HTTP 200: ok)"
    assert fake.messages()[0]["text"] == "ispvm test: notification target sl can post here."
    fake.fail_next((410, "channel_is_archived"))
    with pytest.raises(ProbeFailed, match=r"^post test message: HTTP 410: channel_is_archived$"):
        await make_target(fake.url).probe(client)
