"""The Telegram target against a real local Bot API server (lab/fake_telegram.py) and, end to end,
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
from urllib.parse import quote

import httpx
import pytest

from ispvm_tui.clock import ScaledClock
from ispvm_tui.config import TelegramConfig
from ispvm_tui.engine import outbox
from ispvm_tui.engine.notify import telegram
from ispvm_tui.engine.notify.telegram import TelegramTarget, message_html
from ispvm_tui.engine.store import Store
from ispvm_tui.engine.target_refs import StoreRefs
from ispvm_tui.engine.targets import MemoryRefs, Notice, ProbeFailed
from ispvm_tui.lab.fake_telegram import Fail, FakeTelegram, parse_html, units

REPO = Path(__file__).resolve().parent.parent
TOKEN = "7001234567:AAH-fake-telegram-token-Zq9xY8wV7u"
CHAT = -1001234567890
EXAMPLE = json.loads((REPO / "docs/examples/webhooks/incident.opened.json").read_text())["incident"]


def incident(incident_id: str = "inc-1", severity: str = "critical", **kw: Any) -> dict[str, Any]:
    inc = copy.deepcopy(EXAMPLE)
    inc.update(id=incident_id, severity=severity, url=f"https://monitor.example.net/incidents/{incident_id}", **kw)
    return inc


def notice(event_type: str = "incident.opened", incident_id: str = "inc-1", seq: int = 1, attempt: int = 1,
           **kw: Any) -> Notice:
    return Notice(event_id=f"ev-{incident_id}-{seq}", target="tg", incident_id=incident_id, event_type=event_type,
                  incident=incident(incident_id, **kw), created_at=0.0, sequence=seq, attempt=attempt)


def make_target(fake: FakeTelegram, token: str = TOKEN, **kw: Any) -> TelegramTarget:
    pace = {k: kw.pop(k) for k in ("group_max", "group_window_s") if k in kw}
    interval = kw.pop("min_interval_s", 0.0)
    clock = kw.pop("clock", None)
    kw.setdefault("chat_id", CHAT)
    kw.setdefault("timeout_s", 2.0)
    cfg = TelegramConfig(name=kw.pop("name", "tg"), token_secret="tg-bot-token", api_url=fake.api_url, **kw)
    return TelegramTarget(cfg, token, clock=clock, min_interval_s=interval, **pace)


OTHER_CHAT = -1009876543210
PRIVATE_CHAT = 424242


@pytest.fixture
def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram(TOKEN, chats=(CHAT, "@noc_alerts", OTHER_CHAT, PRIVATE_CHAT))
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


class Rig:
    """The real dispatcher, a fast clock and StoreRefs over a real DuckDB file (as tests/test_deliveries.py)."""

    def __init__(self, store: Store, fake: FakeTelegram, **kw: Any) -> None:
        self.store = store
        self.clock = ScaledClock(300.0)
        self.target = target = make_target(fake, clock=self.clock, **kw)
        self.dispatcher = outbox.OutboxDispatcher(store, {target.name: target}, self.clock, StoreRefs(store))
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


# --- through the outbox ---------------------------------------------------------------------------------


async def test_an_incident_reads_as_one_thread_through_the_outbox(fake: FakeTelegram, tmp_path: Path) -> None:
    with Store(tmp_path / "o.duckdb") as store:
        async with Rig(store, fake) as rig:
            await rig.enqueue("inc-1", "incident.opened", severity="major")
            await rig.enqueue("inc-1", "incident.acked", severity="major", status="acked",
                              ack={"acked_by": "alice", "acked_at": "2026-12-04T23:20:00Z"})
            await rig.enqueue("inc-1", "incident.closed", severity="major", status="resolved",
                              ends_at="2026-12-04T23:40:00Z")
            assert await until(lambda: all(r["status"] == "delivered" for r in rig.rows())), rig.rows()
        got = fake.messages(CHAT)
        assert [m.visible.split(":")[0].split()[-1] for m in got] == ["OPENED", "ACKED", "RESOLVED"]
        root = got[0]
        assert root.reply_to is None
        assert [m.reply_to for m in got[1:]] == [root.message_id, root.message_id]
        assert await StoreRefs(store).get("tg", "inc-1") == str(root.message_id)
        # A major incident: opening and resolving sound, the acknowledgement is silent.
        assert [m.disable_notification for m in got] == [False, True, False]
        assert all(m.parse_mode == "HTML" and m.body["link_preview_options"] == {"is_disabled": True} for m in got)
        assert "acknowledged by alice" in got[1].visible
        assert got[0].text.startswith("<b>🟠 MAJOR OPENED: Link down")
        assert '<a href="https://monitor.example.net/incidents/inc-1">Open incident</a>' in got[0].text


async def test_429_retry_after_is_honoured_through_the_outbox(fake: FakeTelegram, tmp_path: Path) -> None:
    fake.fail_next(Fail(429, retry_after=120))
    with Store(tmp_path / "o.duckdb") as store:
        async with Rig(store, fake) as rig:
            await rig.enqueue("inc-1", "incident.opened")
            assert await until(lambda: rig.rows()[0]["status"] == "delivered"), rig.rows()
            first, second = rig.attempts(rig.rows()[0]["event_id"])[:2]
    assert first["outcome"] == "retry" and first["http_status"] == 429
    assert "Too Many Requests: retry after 120" in first["error"]
    assert second["attempted_at"] - first["attempted_at"] >= 119  # waited what Telegram asked (clock seconds)
    assert len(fake.messages()) == 1


async def test_a_permanent_refusal_dead_letters_with_telegrams_description(fake: FakeTelegram, tmp_path: Path) -> None:
    with Store(tmp_path / "o.duckdb") as store:
        async with Rig(store, fake, chat_id=-1000000000001) as rig:
            await rig.enqueue("inc-1", "incident.opened")
            assert await until(lambda: rig.rows()[0]["status"] == "dead"), rig.rows()
            attempts = rig.attempts(rig.rows()[0]["event_id"])
    assert len(attempts) == 1
    assert attempts[0]["http_status"] == 400
    assert attempts[0]["error"] == "sendMessage: HTTP 400: Bad Request: chat not found"


# --- one attempt at a time ----------------------------------------------------------------------------


async def test_500_then_success_posts_once_and_keeps_the_root(fake: FakeTelegram, client: httpx.AsyncClient) -> None:
    target, refs = make_target(fake), MemoryRefs()
    fake.fail_next(500)
    out = await target.send(notice(), client, refs)
    assert out.status == "retry" and out.http_status == 500 and "Internal Server Error" in (out.error or "")
    assert fake.messages() == [] and await refs.get("tg", "inc-1") is None
    out = await target.send(notice(attempt=2), client, refs)
    assert out.status == "delivered"
    assert [m.reply_to for m in fake.messages()] == [None]
    assert await refs.get("tg", "inc-1") == str(fake.messages()[0].message_id)


async def test_a_slow_reply_is_a_timeout_and_retried(fake: FakeTelegram, client: httpx.AsyncClient) -> None:
    fake.set_delay(3.0)
    out = await make_target(fake, timeout_s=0.5).send(notice(), client, MemoryRefs())
    assert out.status == "retry" and out.error == "sendMessage: timeout after 0.5s"


@pytest.mark.parametrize(("script", "chat", "token", "expected"), [
    (None, -1000000000001, TOKEN, "sendMessage: HTTP 400: Bad Request: chat not found"),
    (None, CHAT, "7001234567:AAH-not-the-right-token-000000", "sendMessage: HTTP 401: Unauthorized"),
    (403, CHAT, TOKEN, "sendMessage: HTTP 403: Forbidden: bot was blocked by the user"),
    (Fail(400, "Bad Request: group chat was upgraded to a supergroup chat"), CHAT, TOKEN,
     "sendMessage: HTTP 400: Bad Request: group chat was upgraded to a supergroup chat"),
])
async def test_refusals_are_permanent_with_the_description(fake: FakeTelegram, client: httpx.AsyncClient, script: Any,
                                                           chat: int, token: str, expected: str) -> None:
    if script is not None:
        fake.fail_next(script)
    out = await make_target(fake, token=token, chat_id=chat).send(notice(), client, MemoryRefs())
    assert (out.status, out.error) == ("permanent", expected)
    assert fake.messages() == []


async def test_a_429_holds_the_whole_chat_until_retry_after(fake: FakeTelegram, client: httpx.AsyncClient) -> None:
    target = make_target(fake)
    fake.fail_next(Fail(429, retry_after=30))
    first = await target.send(notice(incident_id="inc-1"), client, MemoryRefs())
    assert first.status == "retry" and first.retry_after_s == 30
    sent = len(fake.requests())
    other = await target.send(notice(incident_id="inc-2"), client, MemoryRefs())
    assert other.status == "retry" and other.retry_after_s is not None and 25 < other.retry_after_s <= 30
    assert len(fake.requests()) == sent, "nothing may be sent to the chat while Telegram holds it off"


async def test_sends_to_one_chat_are_spaced(fake: FakeTelegram, client: httpx.AsyncClient) -> None:
    """The fake refuses a second message within 0.15 s; the target spaces its own sends 0.4 s apart (the
    margin absorbs a loaded host's jitter between sending and arriving): no 429 at all. Unpaced, the four
    concurrent sends would arrive within milliseconds of each other."""
    fake.enforce_rate(0.15)
    target = make_target(fake, min_interval_s=0.4)
    outs = await asyncio.gather(*(target.send(notice(incident_id=f"inc-{n}"), client, MemoryRefs())
                                  for n in range(4)))
    assert [o.status for o in outs] == ["delivered"] * 4
    assert [r.status for r in fake.requests()] == [200] * 4


async def test_lost_reply_to_a_root_may_duplicate_it_but_later_events_follow_the_stored_one(
        fake: FakeTelegram, client: httpx.AsyncClient) -> None:
    target, refs = make_target(fake), MemoryRefs()
    fake.fail_next(Fail(200, lose="drop"))  # posted, then the connection closes without a reply
    out = await target.send(notice(), client, refs)
    assert out.status == "retry"
    assert len(fake.messages()) == 1 and await refs.get("tg", "inc-1") is None
    assert (await target.send(notice(attempt=2), client, refs)).status == "delivered"
    stored = await refs.get("tg", "inc-1")
    assert stored == str(fake.messages()[1].message_id)  # the duplicate (accepted for chat) is the thread root
    assert (await target.send(notice("incident.acked", seq=2), client, refs)).status == "delivered"
    assert fake.messages()[-1].reply_to == int(stored)


async def test_a_lost_reply_to_a_follow_up_never_starts_a_second_thread(
        fake: FakeTelegram, client: httpx.AsyncClient) -> None:
    target, refs = make_target(fake, timeout_s=0.5), MemoryRefs()
    assert (await target.send(notice(), client, refs)).status == "delivered"
    root = fake.messages()[0].message_id
    fake.fail_next(Fail(200, lose="stall"))  # posted, then no answer within the timeout
    out = await target.send(notice("incident.updated", seq=2), client, refs)
    assert out.status == "retry" and "timeout" in (out.error or "")
    assert (await target.send(notice("incident.updated", seq=2, attempt=2), client, refs)).status == "delivered"
    got = fake.messages()
    assert [m.reply_to for m in got] == [None, root, root]


async def test_a_restart_keeps_the_thread_root(fake: FakeTelegram, client: httpx.AsyncClient, tmp_path: Path) -> None:
    db = tmp_path / "refs.duckdb"
    with Store(db) as store:
        assert (await make_target(fake).send(notice(), client, StoreRefs(store))).status == "delivered"
    root = fake.messages()[0].message_id
    with Store(db) as store:  # a new process: new target, new refs, same file
        target = make_target(fake)
        assert (await target.send(notice("incident.acked", seq=2), client, StoreRefs(store))).status == "delivered"
        assert (await target.send(notice("incident.closed", seq=3), client, StoreRefs(store))).status == "delivered"
    assert [m.reply_to for m in fake.messages()] == [None, root, root]


async def test_a_thread_starts_at_the_first_event_seen_and_a_lone_close_posts_nothing(
        fake: FakeTelegram, client: httpx.AsyncClient) -> None:
    target, refs = make_target(fake, message_thread_id=42), MemoryRefs()
    assert (await target.send(notice("incident.closed", incident_id="inc-9"), client, refs)).status == "delivered"
    assert fake.requests() == []
    assert (await target.send(notice("incident.updated", incident_id="inc-2"), client, refs)).status == "delivered"
    closed = await target.send(notice("incident.closed", incident_id="inc-2", seq=2), client, refs)
    assert closed.status == "delivered"
    first, close = fake.messages()
    assert first.reply_to is None and close.reply_to == first.message_id
    assert first.message_thread_id == 42 and close.message_thread_id == 42
    assert not first.disable_notification  # critical: every event sounds


async def test_quiet_severities_never_sound(fake: FakeTelegram, client: httpx.AsyncClient) -> None:
    target, refs = make_target(fake), MemoryRefs()
    await target.send(notice(severity="warning"), client, refs)
    await target.send(notice("incident.closed", seq=2, severity="warning"), client, refs)
    assert [m.disable_notification for m in fake.messages()] == [True, True]


# --- the text -------------------------------------------------------------------------------------------


async def test_a_title_with_markup_is_escaped(fake: FakeTelegram, client: httpx.AsyncClient) -> None:
    title = "<script>alert('x')</script> & <b>bold</b> R&D"
    out = await make_target(fake).send(notice(title=title), client, MemoryRefs())
    assert out.status == "delivered", out.error  # the fake parses the HTML as Telegram does
    sent = fake.messages()[0]
    assert title in sent.visible
    assert "&lt;script&gt;alert('x')&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt; R&amp;D" in sent.text


async def test_a_long_incident_is_cut_to_the_limit_keeping_headline_and_link(
        fake: FakeTelegram, client: httpx.AsyncClient) -> None:
    many = [{"entity_type": "link", "entity_id": f"L{n}", "name": f"<&>{n}" * 200, "confidence": 0.5}
            for n in range(9)]
    out = await make_target(fake).send(notice(title="T&" * 3000, root_causes=many,
                                              evidence_top=["e&" * 1000] * 9), client, MemoryRefs())
    assert out.status == "delivered", out.error
    sent = fake.messages()[0]
    assert units(sent.text) <= telegram.MAX_TEXT
    assert sent.text.startswith("<b>🔴 CRITICAL OPENED: T&amp;T&amp;") and "…</b>" in sent.text
    assert sent.text.endswith('<a href="https://monitor.example.net/incidents/inc-1">Open incident</a>')
    assert "…" in sent.visible.split("Open incident")[0][-50:]  # the cut is marked


@pytest.mark.parametrize("limit", [200, 300, 700, 1500, 4096])
def test_every_cut_is_valid_telegram_html(limit: int) -> None:
    for filler in ("a", "&", "<>", "é🔴"):
        n = notice(title=filler * 400, evidence_top=[filler * 350] * 7)
        text = message_html(n, limit=limit)
        assert units(text) <= limit
        assert "Open incident" in parse_html(text)  # parses: no broken tag or entity


# --- secrets --------------------------------------------------------------------------------------------


async def test_the_token_is_in_no_error_log_line_or_repr(fake: FakeTelegram, client: httpx.AsyncClient,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    target, refs = make_target(fake, timeout_s=0.5), MemoryRefs()
    outcomes = [await target.send(notice(), client, refs)]
    fake.fail_next(500, 401)
    outcomes += [await target.send(notice("incident.updated", seq=2), client, refs) for _ in range(2)]
    fake.set_delay(2.0)
    outcomes.append(await target.send(notice("incident.acked", seq=3), client, refs))
    fake.set_delay(0)
    with pytest.raises(ProbeFailed) as refused:
        await make_target(fake, token=TOKEN + "x").probe(client)
    port = fake.port
    fake.stop()  # connection refused
    outcomes.append(await target.send(notice("incident.acked", seq=3), client, refs))
    statuses = [o.status for o in outcomes]
    assert statuses == ["delivered", "retry", "permanent", "retry", "retry"], outcomes
    assert any(r.name == "httpx" and "HTTP Request: POST" in r.getMessage() and f":{port}/bot***/sendMessage"
               in r.getMessage() for r in caplog.records), "httpx should have logged the requests, token hidden"
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    texts = [caplog.text, *(r.getMessage() for r in caplog.records), repr(target), str(refused.value),
             *(o.error or "" for o in outcomes)]
    for form in (TOKEN, quote(TOKEN, safe=""), TOKEN.split(":")[1]):
        assert not [t for t in texts if form in t], form
    assert refused.value.args == ("getMe: HTTP 401: Unauthorized",)


# --- probe ----------------------------------------------------------------------------------------------


async def test_probe_checks_the_token_and_posts_a_test_message(fake: FakeTelegram, client: httpx.AsyncClient) -> None:
    line = await make_target(fake, chat_id="@noc_alerts").probe(client)
    sent = fake.messages("@noc_alerts")
    assert len(sent) == 1 and "ispvm test" in sent[0].visible
    assert line == f"bot @ispvm_noc_bot: sent test message {sent[0].message_id} to @noc_alerts"
    assert [r.method for r in fake.requests()] == ["getMe", "sendMessage"]


async def test_probe_failures_say_what_telegram_said(fake: FakeTelegram, client: httpx.AsyncClient) -> None:
    with pytest.raises(ProbeFailed, match=r"^sendMessage: HTTP 400: Bad Request: chat not found$"):
        await make_target(fake, chat_id="@nowhere").probe(client)
    with pytest.raises(ProbeFailed, match=r"^getMe: HTTP 401: Unauthorized$"):
        await make_target(fake, token="1:wrong-token-xyz").probe(client)


# --- a group's 20 messages a minute ---------------------------------------------------------------------

LIFE = (("incident.opened", {}), ("incident.updated", {}),
        ("incident.acked", {"status": "acked", "ack": {"acked_by": "alice", "acked_at": "2026-12-04T23:20:00Z"}}),
        ("incident.closed", {"status": "resolved", "ends_at": "2026-12-04T23:40:00Z"}))
VERBS = ["OPENED", "UPDATED", "ACKED", "RESOLVED"]


def of_incident(messages: list[Any], incident_id: str) -> list[Any]:
    return [m for m in messages if f"/incidents/{incident_id}\"" in m.text]


def verb(message: Any) -> str:
    return message.visible.split(":")[0].split()[-1]


def no_429(fake: FakeTelegram) -> bool:
    return all(r.status != 429 for r in fake.requests())


async def test_a_burst_to_a_group_stays_within_its_window_in_order_per_thread(fake: FakeTelegram,
                                                                             tmp_path: Path) -> None:
    """An outage storm: 3 incidents x 4 events queued at once, to a group that takes 5 messages per 2 s (Telegram:
    20 per minute). Unpaced, the 12 sends would arrive within a fraction of a second and draw 429s."""
    fake.enforce_group_limit(5, 2.0)
    incidents = ["inc-1", "inc-2", "inc-3"]
    with Store(tmp_path / "o.duckdb") as store:
        async with Rig(store, fake, group_max=5, group_window_s=2.0) as rig:
            for event_type, kw in LIFE:
                for iid in incidents:
                    await rig.enqueue(iid, event_type, severity="major", **kw)
            assert await until(lambda: len(rig.rows()) == 12 and all(r["status"] == "delivered" for r in rig.rows()),
                               timeout=60), rig.rows()
    assert no_429(fake), [r.status for r in fake.requests()]
    got = fake.messages(CHAT)
    assert len(got) == 12
    for iid in incidents:
        thread = of_incident(got, iid)
        assert [verb(m) for m in thread] == VERBS
        assert thread[0].reply_to is None and {m.reply_to for m in thread[1:]} == {thread[0].message_id}


async def test_a_restart_keeps_the_threads_and_the_new_process_paces_the_group(fake: FakeTelegram,
                                                                              tmp_path: Path) -> None:
    fake.enforce_group_limit(5, 2.0)
    db = tmp_path / "o.duckdb"
    with Store(db) as store:
        async with Rig(store, fake, group_max=5, group_window_s=2.0) as rig:
            for iid in ("inc-1", "inc-2"):
                await rig.enqueue(iid, "incident.opened", severity="major")
            assert await until(lambda: len(rig.rows()) == 2 and all(r["status"] == "delivered" for r in rig.rows()))
    roots = {iid: of_incident(fake.messages(CHAT), iid)[0].message_id for iid in ("inc-1", "inc-2")}
    # The window lives in memory: a new process starts with an empty one. Here the restart takes as long as the
    # window (else Telegram's 429 would be honoured as usual, which other tests show).
    assert fake.wait_for(lambda f: f.group_room(CHAT) == 5, timeout=30)
    with Store(db) as store:  # a new process: new target and dispatcher, same file
        async with Rig(store, fake, group_max=5, group_window_s=2.0) as rig:
            for event_type, kw in LIFE[1:]:
                for iid in ("inc-1", "inc-2"):
                    await rig.enqueue(iid, event_type, severity="major", **kw)
            await rig.enqueue("inc-3", "incident.opened", severity="major")
            assert await until(lambda: len(rig.rows()) == 9 and all(r["status"] == "delivered" for r in rig.rows()),
                               timeout=60), rig.rows()
    assert no_429(fake), [r.status for r in fake.requests()]
    got = fake.messages(CHAT)
    for iid, root in roots.items():
        thread = of_incident(got, iid)
        assert [verb(m) for m in thread] == VERBS
        assert [m.reply_to for m in thread[1:]] == [root] * 3  # the roots from before the restart
    assert [verb(m) for m in of_incident(got, "inc-3")] == ["OPENED"]


async def test_a_group_waiting_for_its_window_holds_up_no_other_target(fake: FakeTelegram, tmp_path: Path) -> None:
    """One dispatcher, two targets: a group whose window (2 per 10 minutes) is spent only queues its own
    sends; the other chat's are delivered meanwhile, and the waiting sends are not failures."""
    clock = ScaledClock(300.0)
    slow = make_target(fake, name="slow", clock=clock, group_max=2, group_window_s=600.0)
    other = make_target(fake, name="other", chat_id=OTHER_CHAT, clock=clock, group_max=5, group_window_s=2.0)
    fake.enforce_group_limit(5, 2.0)
    with Store(tmp_path / "o.duckdb") as store:
        dispatcher = outbox.OutboxDispatcher(store, {"slow": slow, "other": other}, clock, StoreRefs(store))
        task = asyncio.create_task(dispatcher.run(poll_real_s=0.02))
        try:
            for n in range(4):
                for target in (slow, other):
                    inc = incident(f"inc-{n}")
                    await asyncio.wrap_future(store.transaction(
                        lambda con, t=target, i=inc: outbox.enqueue(con, [t], i["id"], "incident.opened", i,
                                                                    clock.now())))
                    dispatcher.wake()

            def delivered(name: str) -> int:
                return store.query("SELECT count(*) FROM outbox WHERE endpoint = ? AND status = 'delivered'",
                                   [name])[0][0]

            assert await until(lambda: delivered("other") == 4 and delivered("slow") == 2), \
                store.query_dicts("SELECT endpoint, incident_id, status, attempts FROM outbox")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        waiting = store.query_dicts("SELECT * FROM outbox WHERE endpoint = 'slow' AND status != 'delivered'")
        logged = store.query("SELECT count(*) FROM deliveries WHERE endpoint = 'slow'")[0][0]
    assert len(waiting) == 2 and all(r["status"] == "pending" and r["attempts"] == 0 for r in waiting)
    assert logged == 2  # no failed attempt was recorded for the sends that waited
    assert len(fake.messages(CHAT)) == 2 and len(fake.messages(OTHER_CHAT)) == 4
    assert no_429(fake)


async def test_a_private_chat_is_not_held_to_the_group_limit(fake: FakeTelegram, client: httpx.AsyncClient) -> None:
    """A positive chat id is a person: only the per-chat spacing applies. Were the group window (1 per 10 minutes
    here) applied, the second send would wait for it and the test would time out."""
    target = make_target(fake, chat_id=PRIVATE_CHAT, group_max=1, group_window_s=600.0)
    outs = await asyncio.wait_for(asyncio.gather(*(target.send(notice(incident_id=f"inc-{n}"), client, MemoryRefs())
                                                   for n in range(3))), timeout=30)
    assert [o.status for o in outs] == ["delivered"] * 3
    assert len(fake.messages(PRIVATE_CHAT)) == 3


async def test_the_fake_refuses_a_group_past_its_limit_and_says_how_long_to_wait(
        fake: FakeTelegram, client: httpx.AsyncClient) -> None:
    fake.enforce_group_limit(2, 600.0)
    target = make_target(fake, group_max=100)  # paced far too loosely for this group
    outs = [await target.send(notice(incident_id=f"inc-{n}"), client, MemoryRefs()) for n in range(3)]
    assert [o.status for o in outs] == ["delivered", "delivered", "retry"]
    assert outs[2].http_status == 429 and outs[2].retry_after_s is not None and 590 <= outs[2].retry_after_s <= 600
    assert "Too Many Requests: retry after" in (outs[2].error or "")
    assert len(fake.messages(CHAT)) == 2
    assert fake.group_room(CHAT) == 0 and fake.group_room(PRIVATE_CHAT) is None
