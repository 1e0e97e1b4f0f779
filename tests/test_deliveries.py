"""The outbox against real HTTP receivers on loopback and a real DuckDB file.

Time is the engine's own ScaledClock running hundreds of times faster than real time, so a receiver
down for an hour, a dead-letter age or a breaker's cool-down pass in seconds, with no sleeps standing
in for them: every wait is for a condition, with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ispvm_tui.clock import ScaledClock
from ispvm_tui.config import Config
from ispvm_tui.engine import outbox
from ispvm_tui.engine.core import Engine
from ispvm_tui.engine.store import Store
from ispvm_tui.engine.targets import MemoryRefs, Notice
from ispvm_tui.engine.webhook_target import WebhookTarget
from ispvm_tui.engine.webhooks import Tenant, WebhookEndpoint, verify, verify_v2
from ispvm_tui.lab.webhook_sink import WebhookSink
from ispvm_tui.secrets import SecretError, StaticSecrets

SECRET = "whsec-deliveries-test-0a9b"
TENANT = Tenant(id="6d0f2d8e-3c1b-4a57-9a8e-2f4b7c9d1e05", name="ExampleISP")


def incident(incident_id: str, status: str = "open") -> dict[str, Any]:
    return {"id": incident_id, "title": f"Link down {incident_id}", "status": status, "severity": "critical",
            "starts_at": "2026-02-05T11:59:30Z", "ends_at": None, "url": f"http://x/incidents/{incident_id}",
            "ack": {"acked_by": None, "acked_at": None}, "root_causes": [], "evidence_top": [], "labels": {},
            "impact": {"sites_affected": 0, "devices_affected": 0, "services_affected": 0,
                       "estimated_subscribers_affected": None}}


class Rig:
    """A store, a fast clock and a dispatcher running on the test's loop."""

    def __init__(self, store: Store, clock: ScaledClock, targets: dict[str, WebhookTarget]) -> None:
        self.store = store
        self.clock = clock
        self.targets = targets
        self.dispatcher = outbox.OutboxDispatcher(store, targets, clock, MemoryRefs())
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.dispatcher.run(poll_real_s=0.02))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def enqueue(self, incident_id: str, event_type: str, names: list[str] | None = None) -> None:
        targets = [t for n, t in self.targets.items() if names is None or n in names]
        now = self.clock.now()
        await asyncio.wrap_future(self.store.transaction(
            lambda con: outbox.enqueue(con, targets, incident_id, event_type, incident(incident_id), now)))
        self.dispatcher.wake()

    def rows(self, where: str = "true", params: list[Any] | None = None) -> list[dict[str, Any]]:
        return self.store.query_dicts(f"SELECT * FROM outbox WHERE {where} ORDER BY seq", params or [])

    def attempts(self, event_id: str) -> list[dict[str, Any]]:
        return self.store.query_dicts("SELECT * FROM deliveries WHERE event_id = ? ORDER BY attempted_at",
                                      [event_id])


async def until(cond: Callable[[], bool], timeout: float = 30.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return cond()


def target(name: str, url: str, **kw: Any) -> WebhookTarget:
    kw.setdefault("secret", SECRET)
    kw.setdefault("timeout_s", 2.0)
    return WebhookTarget(WebhookEndpoint(name=name, url=url, **kw), TENANT)


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    rigs: list[Rig] = []
    stores: list[Store] = []

    async def make(targets: dict[str, WebhookTarget], speed: float = 300.0) -> Rig:
        store = Store(tmp_path / f"o{len(stores)}.duckdb")
        stores.append(store)
        rig = Rig(store, ScaledClock(speed), targets)
        rigs.append(rig)
        await rig.start()
        return rig

    yield make
    for rig in rigs:
        await rig.stop()
    for store in stores:
        store.close()


# --- retry policy ------------------------------------------------------------------------------


async def test_a_receiver_down_for_lunch_gets_every_event_when_it_is_back(make_rig) -> None:
    """Connection refused for an hour of clock time: nothing dead, everything delivered after, in order."""
    sink = WebhookSink(secret=SECRET)
    sink.start()
    port = sink.port
    sink.stop()  # down: the port refuses connections
    rig = await make_rig({"noc": target("noc", f"http://127.0.0.1:{port}/hook")}, speed=600.0)
    for n in range(3):
        for event in ("incident.opened", "incident.updated", "incident.closed"):
            await rig.enqueue(f"inc-{n}", event)
    start = rig.clock.now()
    assert await until(lambda: rig.clock.now() - start > 3600 and rig.dispatcher.breakers["noc"].state != "closed")
    assert all(r["status"] == "pending" for r in rig.rows()), "an hour down must not dead-letter anything"
    back = WebhookSink(port=port, secret=SECRET)
    back.start()
    try:
        assert await until(lambda: all(r["status"] == "delivered" for r in rig.rows())), rig.rows()
        got = back.received()
        assert all(w.signature_ok for w in got)
        for n in range(3):
            mine = [w.json for w in got if w.json["incident"]["id"] == f"inc-{n}"]
            assert [b["sequence"] for b in mine] == [1, 2, 3]
            assert [b["event_type"] for b in mine] == ["incident.opened", "incident.updated", "incident.closed"]
        assert await until(lambda: rig.dispatcher.breakers["noc"].state == "closed")
    finally:
        back.stop()


async def test_dead_only_after_the_maximum_age_not_after_a_count(make_rig) -> None:
    with WebhookSink(secret=SECRET) as sink:
        sink.set_responses([503] * 10_000)
        rig = await make_rig({"noc": target("noc", sink.url, max_age_s=1800)}, speed=600.0)
        await rig.enqueue("inc-1", "incident.opened")
        assert await until(lambda: rig.rows()[0]["status"] == "dead", 60)
        row = rig.rows()[0]
        attempts = rig.attempts(row["event_id"])
        assert row["finished_at"] - row["created_at"] >= 1800  # kept trying for its whole age
        assert len(attempts) > 1 and all(a["outcome"] == "retry" for a in attempts)
        assert [a["attempt"] for a in attempts] == list(range(1, len(attempts) + 1))
        assert all(a["http_status"] == 503 and a["duration_s"] >= 0 and a["error"].startswith("HTTP 503")
                   for a in attempts)


async def test_max_attempts_when_set_dead_letters_sooner(make_rig) -> None:
    with WebhookSink(secret=SECRET) as sink:
        sink.set_responses([500] * 100)
        rig = await make_rig({"noc": target("noc", sink.url, max_attempts=2)}, speed=600.0)
        await rig.enqueue("inc-1", "incident.opened")
        assert await until(lambda: rig.rows()[0]["status"] == "dead")
        assert rig.rows()[0]["attempts"] == 2


async def test_retry_after_is_honoured_in_seconds_and_as_a_bounded_date(make_rig) -> None:
    with WebhookSink(secret=SECRET) as sink:
        far = format_datetime(datetime.fromtimestamp(datetime.now(UTC).timestamp() + 5 * 86400, tz=UTC),
                              usegmt=True)
        sink.set_responses([(429, {"Retry-After": "120"}), (503, {"Retry-After": far})])
        rig = await make_rig({"noc": target("noc", sink.url)}, speed=600.0)
        await rig.enqueue("inc-1", "incident.opened")
        event_id = rig.rows()[0]["event_id"]
        assert await until(lambda: len(rig.attempts(event_id)) >= 2)
        first, second = rig.attempts(event_id)[:2]
        assert second["attempted_at"] - first["attempted_at"] >= 119  # waited what the receiver asked
        # Five days ahead is taken as one hour.
        assert await until(lambda: rig.rows()[0]["status"] == "delivered" or
                           rig.rows()[0]["next_attempt_at"] > second["attempted_at"])
        row = rig.rows()[0]
        if row["status"] == "pending":
            assert row["next_attempt_at"] - second["attempted_at"] <= 3600 + 1


@pytest.mark.parametrize(("code", "final"), [(404, "dead"), (400, "dead"), (408, "delivered"),
                                             (425, "delivered"), (429, "delivered")])
async def test_which_4xx_are_permanent(make_rig, code: int, final: str) -> None:
    with WebhookSink(secret=SECRET) as sink:
        sink.set_responses([code])
        rig = await make_rig({"noc": target("noc", sink.url)}, speed=600.0)
        await rig.enqueue("inc-1", "incident.opened")
        assert await until(lambda: rig.rows()[0]["status"] != "pending")
        assert rig.rows()[0]["status"] == final
        assert sink.received()[0].response_status == code


# --- order, dead letters and superseded resends ----------------------------------------------------


async def test_later_events_proceed_past_a_dead_one_and_its_resend_says_superseded(make_rig) -> None:
    with WebhookSink(secret=SECRET) as sink:
        sink.set_responses([410])  # the opened event is refused for good
        rig = await make_rig({"noc": target("noc", sink.url)})
        await rig.enqueue("inc-1", "incident.opened")
        assert await until(lambda: rig.rows()[0]["status"] == "dead")
        await rig.enqueue("inc-1", "incident.acked")
        await rig.enqueue("inc-1", "incident.closed")
        assert await until(lambda: [r["status"] for r in rig.rows()] == ["dead", "delivered", "delivered"])
        assert [(w.json["sequence"], w.json["superseded"]) for w in sink.received()] == [
            (1, False), (2, False), (3, False)]
        dead_id = rig.rows()[0]["event_id"]
        superseded = await asyncio.wrap_future(rig.store.transaction(
            lambda con: outbox.resend(con, dead_id, "noc.maria", rig.clock.now())))
        assert superseded is True
        rig.dispatcher.wake()
        assert await until(lambda: rig.rows()[0]["status"] == "delivered")
        last = sink.received()[-1]
        assert last.json["event_id"] == dead_id and last.json["event_type"] == "incident.opened"
        assert last.json["sequence"] == 1 and last.json["superseded"] is True
        assert last.signature_ok
        audit = rig.store.query("SELECT actor, action, target, detail FROM audit")
        assert audit == [("noc.maria", "webhook.resend", dead_id, "was dead; superseded by a later delivered event")]


async def test_a_later_event_waits_while_an_earlier_one_is_retried(make_rig) -> None:
    with WebhookSink(secret=SECRET) as sink:
        sink.set_responses([503, 503, 503])
        rig = await make_rig({"noc": target("noc", sink.url)}, speed=600.0)
        await rig.enqueue("inc-1", "incident.opened")
        await rig.enqueue("inc-1", "incident.closed")
        await rig.enqueue("inc-2", "incident.opened")
        assert await until(lambda: all(r["status"] == "delivered" for r in rig.rows()))
        got = sink.received()
        first_closed = next(i for i, w in enumerate(got) if w.json["event_type"] == "incident.closed")
        opened_ok = next(i for i, w in enumerate(got)
                         if w.json["incident"]["id"] == "inc-1" and w.response_status == 200)
        assert opened_ok < first_closed  # closed was not even attempted before opened got through


async def test_a_backlog_larger_than_the_concurrency_keeps_order_and_sends_each_event_once(tmp_path: Path) -> None:
    """Heads beyond what can start wait in memory and start as attempts finish: every event is accepted, and
    every incident's events are first accepted in sequence order, failures included."""
    with WebhookSink(secret=SECRET) as sink:
        sink.set_responses([200] * 7 + [503] * 3)  # a few failures early in the backlog: retried, order kept
        store = Store(tmp_path / "backlog.duckdb")
        targets = {"noc": target("noc", sink.url)}
        clock = ScaledClock(600.0)
        now = clock.now()
        incidents = [f"inc-{n}" for n in range(40)]

        def fill(con: Any) -> None:
            for event_type in ("incident.opened", "incident.updated", "incident.closed"):
                for inc in incidents:
                    outbox.enqueue(con, list(targets.values()), inc, event_type, incident(inc), now)

        store.transaction(fill).result(30)
        dispatcher = outbox.OutboxDispatcher(store, targets, clock, MemoryRefs(), concurrency=3)
        task = asyncio.create_task(dispatcher.run(poll_real_s=0.05))
        try:
            assert await until(lambda: store.query("SELECT count(*) FROM outbox WHERE status <> 'delivered'")[0][0]
                               == 0, timeout=60)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            store.close()
    accepted = [w.json for w in sink.received() if w.response_status == 200]
    # At least once: an attempt that timed out here after the receiver took it is sent again (a loaded host).
    assert len({b["event_id"] for b in accepted}) == 120
    for inc in incidents:
        first: list[int] = []
        for b in accepted:
            if b["incident"]["id"] == inc and b["sequence"] not in first:
                first.append(b["sequence"])
        assert first == [1, 2, 3], (inc, first)


# --- circuit breaker -------------------------------------------------------------------------------


async def test_a_failing_endpoint_is_paused_and_probed_while_the_other_is_unaffected(make_rig) -> None:
    good = WebhookSink(secret=SECRET)
    good.start()
    dead = WebhookSink(secret=SECRET)
    dead.start()
    dead_port = dead.port
    dead.stop()
    try:
        rig = await make_rig({"good": target("good", good.url),
                              "bad": target("bad", f"http://127.0.0.1:{dead_port}/hook")}, speed=60.0)
        for n in range(100):
            await rig.enqueue(f"inc-{n}", "incident.opened")
        assert await until(lambda: len({w.json["event_id"] for w in good.received() if w.response_status == 200})
                           >= 100)
        # The receiver's 200 comes before the outcome is committed: wait for the rows, not the receiver.
        assert await until(lambda: all(r["status"] == "delivered" for r in rig.rows("endpoint = 'good'")))
        assert await until(lambda: rig.dispatcher.breakers["bad"].state in ("open", "half-open"))
        bad = rig.rows("endpoint = 'bad'")
        assert all(r["status"] == "pending" for r in bad), "a paused endpoint's queue waits; nothing dropped"
        tried = rig.store.query("SELECT count(*) FROM deliveries WHERE endpoint = 'bad'")[0][0]
        assert tried < 100, "while paused, only probes are sent"
        report = outbox.delivery_report(rig.store.query_dicts, rig.clock.now(),
                                        breakers=rig.dispatcher.breaker_states())
        states = {e.name: e for e in report.endpoints}
        assert states["bad"].state in ("open", "half-open") and states["bad"].pending == 100
        assert states["good"].state == "closed" and states["good"].pending == 0
        assert await until(lambda: rig.store.query("SELECT state FROM webhook_endpoints WHERE endpoint = 'bad'")
                           [0][0] != "closed")

        back = WebhookSink(port=dead_port, secret=SECRET)
        back.start()
        try:
            assert await until(lambda: all(r["status"] == "delivered" for r in rig.rows("endpoint = 'bad'")), 60)
            assert rig.dispatcher.breakers["bad"].state == "closed"
            assert len({w.json["event_id"] for w in back.received()}) == 100
        finally:
            back.stop()
    finally:
        good.stop()


# --- secret rotation ---------------------------------------------------------------------------------


def _config(hooks: list[dict[str, Any]]) -> Config:
    return Config.model_validate({
        "console": {"attach": ["CORE1"]}, "sites": [{"name": "S"}],
        "credentials": {"c": {"username": "u", "password_secret": "x"}},
        "devices": [{"name": "CORE1", "site": "S", "role": "core", "address": "127.0.0.1", "credential": "c"}],
        "notify": {"webhooks": hooks}})


def test_rotation_signs_with_old_and_new_so_either_receiver_verifies(tmp_path: Path) -> None:
    with WebhookSink(secret="new-key-7c1d") as new_rx, WebhookSink(secret="old-key-3e9a") as old_rx:
        config = _config([{"name": n, "url": rx.url, "secret": "hooks/new", "previous_secrets": ["hooks/old"]}
                          for n, rx in (("new", new_rx), ("old", old_rx))])
        assert {"hooks/new", "hooks/old"} <= config.secret_names()
        store = Store(tmp_path / "r.duckdb")
        try:
            engine = Engine(config, store=store, clock=ScaledClock(1.0),
                            secrets=StaticSecrets({"hooks/new": "new-key-7c1d", "hooks/old": "old-key-3e9a"}))
            assert "old-key" not in repr(engine.targets) and "new-key" not in repr(engine.targets)

            async def send_both() -> None:
                async with httpx.AsyncClient() as client:
                    for name, t in engine.targets.items():
                        notice = Notice("8a3c3f4e-8a0f-4f55-9d39-9c6c2c7d1a11", name, "inc-1", "incident.opened",
                                        incident("inc-1"), 1_770_000_000.0, 1, 1)
                        assert (await t.send(notice, client, engine.refs)).status == "delivered"

            asyncio.run(send_both())
        finally:
            store.close()
        [on_new], [on_old] = new_rx.received(), old_rx.received()
        for got, key in ((on_new, "new-key-7c1d"), (on_old, "old-key-3e9a")):
            assert verify_v2(got.body, key, got.header("X-ISPVM-Signature-V2")), key
        # v1 carries the current secret only: a v1 receiver must accept both before the sender switches.
        assert verify(on_new.body, "new-key-7c1d", on_new.header("X-ISPVM-Signature"))
        assert not verify(on_old.body, "old-key-3e9a", on_old.header("X-ISPVM-Signature"))
        assert json.loads(on_old.body)["sequence"] == 1


def test_a_missing_previous_secret_is_a_clear_error(tmp_path: Path) -> None:
    config = _config([{"name": "h", "url": "http://127.0.0.1:9/hook", "secret": "hooks/new",
                       "previous_secrets": ["hooks/gone"]}])
    store = Store(tmp_path / "m.duckdb")
    try:
        with pytest.raises(SecretError, match="hooks/gone"):
            Engine(config, store=store, clock=ScaledClock(1.0), secrets=StaticSecrets({"hooks/new": "k"}))
    finally:
        store.close()
