"""The centre in-process against a real nats-server: the test publishes what a collector would, and
drives the store and the server into the failures the centre must survive."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.clock import ScaledClock
from ispvm_tui.collectors.results import PollResult
from ispvm_tui.config import load_config
from ispvm_tui.engine.core import Engine, EngineEvent
from ispvm_tui.engine.store import Store
from ispvm_tui.remote import codec
from ispvm_tui.secrets import StaticSecrets
from tests.natsserver import NatsServer
from tests.waiting import wait_for

HEARTBEAT_S = 1.0  # grace 3 s: a loaded host reconnecting a heartbeat sender is not a lost collector

CONFIG = """
[polling]
interval_s = {interval}
[incidents]
correlate_every_s = 0.5
close_after_s = 1
[console]
attach = ["A1"]
[credentials.c]
username = "u"
password_secret = "x"
[[sites]]
name = "POP-A"
[[sites]]
name = "POP-B"
[[devices]]
name = "A1"
site = "POP-A"
role = "access"
address = "127.0.0.2"
credential = "c"
[[devices]]
name = "B1"
site = "POP-B"
role = "access"
address = "127.0.0.3"
credential = "c"
[remote]
nats_url = "{url}"
heartbeat_s = {hb}
{remote_extra}
[[collectors]]
name = "pop-a"
site = "POP-A"
{pop_a_extra}
[[collectors]]
name = "pop-b"
site = "POP-B"
{pop_b_extra}
"""


def write_config(tmp_path: Path, url: str, *, remote_extra: str = "", pop_a_extra: str = "",
                 pop_b_extra: str = "", interval: float = 60) -> Path:
    path = tmp_path / "centre.toml"
    path.write_text(CONFIG.format(url=url, hb=HEARTBEAT_S, remote_extra=remote_extra, pop_a_extra=pop_a_extra,
                                  pop_b_extra=pop_b_extra, interval=interval))
    return path


class Centre:
    """The engine (and its centre) on a background loop, with its events collected."""

    def __init__(self, config: Path, db: Path, secrets: dict[str, str] | None = None) -> None:
        self.cfg = load_config(config)
        self.store = Store(db)
        self.engine = Engine(self.cfg, store=self.store, clock=ScaledClock(1.0),
                             secrets=StaticSecrets({"x": "pw", **(secrets or {})}))
        self._events: list[EngineEvent] = []
        self._lock = threading.Lock()
        self.engine.subscribe(self._on_event)
        self.loop = BackgroundLoop("test-centre")
        self.loop.run(self.engine.start(), timeout=60)

    def _on_event(self, event: EngineEvent) -> None:
        with self._lock:
            self._events.append(event)

    def events(self, kind: str, text: str = "") -> list[EngineEvent]:
        with self._lock:
            return [e for e in self._events if e.kind == kind and text in e.summary]

    def stop(self) -> None:
        try:
            self.loop.run(self.engine.stop(), timeout=60)
        finally:
            self.loop.stop()
            self.store.close()


def poll(device: str, at: float, ok: bool = True) -> list[PollResult]:
    return [PollResult(device=device, collector="api", started_at=at, duration_s=0.05, ok=ok,
                       error=None if ok else "timed out", error_kind=None if ok else "timeout")]


async def _with_nc(url: str, fn: Any, **opts: Any) -> Any:
    import nats

    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, **opts)
    try:
        return await fn(nc)
    finally:
        await nc.close()


def publish_poll(url: str, collector: str, device: str, at: float, ok: bool = True,
                 headers: dict[str, str] | None = None, **opts: Any) -> None:
    payload = codec.encode(collector, device, poll(device, at, ok))

    async def send(nc: Any) -> None:
        await nc.jetstream().publish(f"ispvm.results.{collector}.{device}", payload, timeout=5,
                                     headers={"Nats-Msg-Id": f"{collector}:{device}:{at!r}", **(headers or {})})

    asyncio.run(_with_nc(url, send, **opts))


def consumer_state(url: str, **opts: Any) -> tuple[int, int]:
    """(acknowledged stream sequence, messages not yet delivered or acked); (-1, -1) when unknown."""

    async def ask(nc: Any) -> tuple[int, int]:
        info = await nc.jetstream().consumer_info("ISPVM", "ispvm-engine")
        return info.ack_floor.stream_seq, info.num_pending + info.num_ack_pending

    try:
        return asyncio.run(_with_nc(url, ask, **opts))
    except Exception:
        return (-1, -1)


class Heartbeats:
    """A collector's heartbeats, from a thread of the test, until stopped; ``skew_s``: its clock's error."""

    def __init__(self, url: str, name: str, skew_s: float = 0.0, **opts: Any) -> None:
        self.url, self.name, self.opts, self.skew_s = url, name, opts, skew_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import time

        async def beat(nc: Any) -> None:
            while not self._stop.is_set():
                body = {"v": 1, "collector": self.name, "at": time.time() + self.skew_s, "buffered": 0,
                        "dropped": 0, "devices": 1}
                await nc.publish(f"ispvm.hb.{self.name}", json.dumps(body).encode())
                await nc.flush()
                await asyncio.sleep(HEARTBEAT_S / 2)

        while not self._stop.is_set():
            try:
                asyncio.run(_with_nc(self.url, beat, **self.opts))
            except Exception:  # the server is away: try again
                self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def goodbye(self) -> None:
        """Stop as a collector stopped on purpose does: one last heartbeat that says so."""
        import time

        self.stop()
        body = {"v": 1, "collector": self.name, "at": time.time(), "buffered": 0, "dropped": 0, "devices": 1,
                "stopping": True}

        async def bye(nc: Any) -> None:
            await nc.publish(f"ispvm.hb.{self.name}", json.dumps(body).encode())
            await nc.flush()

        asyncio.run(_with_nc(self.url, bye, **self.opts))


def test_a_commit_that_fails_for_a_while_is_waited_for_never_redelivered(nats_server: NatsServer,
                                                                          tmp_path: Path) -> None:
    centre = Centre(write_config(tmp_path, nats_server.url), tmp_path / "centre.duckdb")
    try:
        assert wait_for(lambda: consumer_state(nats_server.url)[0] >= 0, 60)
        # A real transient database failure: poll_log altered by another, open transaction (this thread's
        # reader cursor), so every insert into it is a DuckDB TransactionException until that one ends.
        centre.store.query("BEGIN TRANSACTION")
        centre.store.query("ALTER TABLE poll_log ADD COLUMN blocked INTEGER")
        now = centre.engine.clock.now()
        for k in range(5):
            publish_poll(nats_server.url, "pop-a", "A1", now - 5 + k)
        assert wait_for(lambda: centre.engine.centre.not_committed > 0, 60)
        centre.store.query("ROLLBACK")
        assert wait_for(lambda: consumer_state(nats_server.url) == (5, 0), 60)
        centre.store.flush()
        rows, distinct = centre.store.query("SELECT count(*), count(DISTINCT ts) FROM poll_log WHERE device = 'A1'")[0]
        assert (rows, distinct) == (5, 5)
        assert centre.engine.centre.ingested == 5 and centre.engine.centre.duplicates == 0
    finally:
        centre.stop()


def _incidents(store_path: Path, title: str) -> list[tuple[str, str]]:
    import duckdb

    con = duckdb.connect(str(store_path), read_only=True)
    try:
        return con.execute("SELECT status, title FROM incidents WHERE title LIKE ? ORDER BY opened_at",
                           [title + "%"]).fetchall()
    finally:
        con.close()


def test_a_collector_lost_before_an_engine_restart_closes_when_it_is_back(nats_server: NatsServer,
                                                                          tmp_path: Path) -> None:
    config = write_config(tmp_path, nats_server.url)
    db = tmp_path / "centre.duckdb"
    beats_b = Heartbeats(nats_server.url, "pop-b")
    try:
        centre = Centre(config, db)
        try:
            assert wait_for(lambda: centre.events("incident.opened", "Collector pop-a lost"), 60)
        finally:
            centre.stop()
        assert _incidents(db, "Collector pop-a lost") == [("open", "Collector pop-a lost: 1 device not monitored")]

        beats_a = Heartbeats(nats_server.url, "pop-a")
        try:
            centre = Centre(config, db)  # restores the firing alert and its open incident
            try:
                assert wait_for(lambda: centre.events("incident.closed", "Collector pop-a lost"), 60)
                assert not centre.engine.rules.is_firing("collector.lost", "collector:pop-a")
            finally:
                centre.stop()
        finally:
            beats_a.stop()
    finally:
        beats_b.stop()
    assert _incidents(db, "Collector pop-a lost") == [("closed", "Collector pop-a lost: 1 device not monitored")]
    assert _incidents(db, "Collector pop-b") == []


def test_the_centre_losing_nats_is_one_stream_incident_not_every_collector_lost(nats_server: NatsServer,
                                                                               tmp_path: Path) -> None:
    db = tmp_path / "centre.duckdb"
    beats = [Heartbeats(nats_server.url, "pop-a"), Heartbeats(nats_server.url, "pop-b")]
    try:
        centre = Centre(write_config(tmp_path, nats_server.url), db)
        try:
            assert wait_for(lambda: centre.engine.centre.link_up and consumer_state(nats_server.url)[0] >= 0, 60)
            nats_server.kill()
            assert wait_for(lambda: centre.events("incident.opened", "Result stream ISPVM unreachable"), 60)
            assert all(centre.engine.runtime[d].ok is None for d in ("A1", "B1"))  # unknown, not down
            nats_server.start()
            assert wait_for(lambda: centre.events("incident.closed", "Result stream ISPVM unreachable"), 60)
            # Heard again after the reconnect: nobody was lost.
            assert wait_for(lambda: centre.engine.centre._heard == {"pop-a", "pop-b"}, 60)
            assert centre.events("incident.opened", "Collector") == []
        finally:
            centre.stop()
    finally:
        for b in beats:
            b.stop()
    assert _incidents(db, "Collector") == []
    assert _incidents(db, "Result stream") == [("closed", "Result stream ISPVM unreachable: 2 remote collectors "
                                                          "(2 devices) not heard")]


def test_lateness_is_what_the_collector_says_never_a_clock_comparison(nats_server: NatsServer,
                                                                     tmp_path: Path) -> None:
    centre = Centre(write_config(tmp_path, nats_server.url), tmp_path / "centre.duckdb")
    beats = Heartbeats(nats_server.url, "pop-a", skew_s=-600)  # the PoP's clock is ten minutes behind
    try:
        assert wait_for(lambda: consumer_state(nats_server.url)[0] >= 0, 60)
        now = centre.engine.clock.now()
        publish_poll(nats_server.url, "pop-a", "A1", now - 600, ok=False)  # current, by a slow clock
        publish_poll(nats_server.url, "pop-a", "A1", now - 599, ok=False)
        publish_poll(nats_server.url, "pop-a", "A1", now - 1, headers={codec.REPLAYED_HEADER: "120.0"})
        publish_poll(nats_server.url, "pop-a", "A1", now - 2, headers={codec.REPLAYED_HEADER: "soon"})
        assert wait_for(lambda: consumer_state(nats_server.url) == (4, 0), 60)
        centre.store.flush()
        rows = centre.store.query("SELECT ts, late FROM poll_log WHERE device = 'A1' ORDER BY ts")
        assert rows == [(now - 600, False), (now - 599, False), (now - 1, True)]
        assert centre.engine.centre.malformed == 1  # the header that is not a number
        # The two failures were current, so the rules saw them (a replayed answer would not have cleared them).
        assert centre.engine.rules.is_pending("device.unreachable", "A1") or \
            centre.engine.rules.is_firing("device.unreachable", "A1")
        assert wait_for(lambda: centre.events("remote.clock_skew", "pop-a's clock is 600s behind"), 30)
    finally:
        beats.stop()
        centre.stop()


def test_what_the_stream_held_before_the_centre_started_is_late(nats_server: NatsServer, tmp_path: Path) -> None:
    from nats.js import api

    async def make_stream(nc: Any) -> None:
        await nc.jetstream().add_stream(api.StreamConfig(name="ISPVM", subjects=["ispvm.results.>"],
                                                         duplicate_window=300.0))

    asyncio.run(_with_nc(nats_server.url, make_stream))
    import time

    now = time.time()
    publish_poll(nats_server.url, "pop-a", "A1", now - 1)  # published while no centre was reading
    centre = Centre(write_config(tmp_path, nats_server.url), tmp_path / "centre.duckdb")
    try:
        assert wait_for(lambda: consumer_state(nats_server.url) == (1, 0), 60)
        publish_poll(nats_server.url, "pop-a", "A1", now + 1)
        assert wait_for(lambda: consumer_state(nats_server.url) == (2, 0), 60)
        centre.store.flush()
        assert centre.store.query("SELECT late FROM poll_log WHERE device = 'A1' ORDER BY ts") == [(True,), (False,)]
    finally:
        centre.stop()


def _stream_config(url: str) -> Any:
    async def get(nc: Any) -> Any:
        return (await nc.jetstream().stream_info("ISPVM")).config

    return asyncio.run(_with_nc(url, get))


def test_the_stream_is_a_bounded_work_queue_and_an_operators_change_is_kept(nats_server: NatsServer,
                                                                            tmp_path: Path) -> None:
    from nats.js import api

    config = write_config(tmp_path, nats_server.url, remote_extra="stream_max_age_s = 3600\n"
                                                                  "stream_max_bytes = 50000000")
    db = tmp_path / "centre.duckdb"
    centre = Centre(config, db)
    try:
        assert wait_for(lambda: consumer_state(nats_server.url)[0] >= 0, 60)
    finally:
        centre.stop()
    cfg = _stream_config(nats_server.url)
    assert cfg.retention == api.RetentionPolicy.WORK_QUEUE
    assert (cfg.max_age, cfg.max_bytes) == (3600, 50_000_000)

    async def operator_edit(nc: Any) -> None:  # as `nats stream edit --max-age 2h` would
        js = nc.jetstream()
        current = (await js.stream_info("ISPVM")).config
        current.max_age = 7200.0
        await js.update_stream(current)

    asyncio.run(_with_nc(nats_server.url, operator_edit))
    config = write_config(tmp_path, nats_server.url, remote_extra="stream_max_age_s = 1800\n"
                                                                  "stream_max_bytes = 80000000")
    centre = Centre(config, db)
    try:
        assert wait_for(lambda: _stream_config(nats_server.url).max_bytes == 80_000_000, 60)
    finally:
        centre.stop()
    assert _stream_config(nats_server.url).max_age == 7200  # the operator's, not overwritten

    # Acknowledged results leave a work queue: the stream holds only what the engine has not taken.
    centre = Centre(config, db)
    try:
        import time

        publish_poll(nats_server.url, "pop-a", "A1", time.time())
        assert wait_for(lambda: consumer_state(nats_server.url) == (1, 0), 60)

        async def messages(nc: Any) -> int:
            return (await nc.jetstream().stream_info("ISPVM")).state.messages

        assert wait_for(lambda: asyncio.run(_with_nc(nats_server.url, messages)) == 0, 30)
    finally:
        centre.stop()


def test_a_collector_that_says_goodbye_is_recorded_as_stopped_not_lost(nats_server: NatsServer,
                                                                      tmp_path: Path) -> None:
    import time

    from ispvm_tui.remote.centre import LOST_AFTER

    db = tmp_path / "centre.duckdb"
    beats = [Heartbeats(nats_server.url, "pop-a"), Heartbeats(nats_server.url, "pop-b")]
    try:
        centre = Centre(write_config(tmp_path, nats_server.url), db)
        try:
            remote = centre.engine.centre
            assert wait_for(lambda: remote._heard == {"pop-a", "pop-b"}, 60)
            beats[0].goodbye()
            assert wait_for(lambda: centre.events("remote.collector_stopped", "Collector pop-a stopped"), 30)
            # Silent for well past the grace, then judged once more: stopped, not lost.
            assert wait_for(lambda: time.monotonic() - remote.last_heartbeat["pop-a"] > 2 * LOST_AFTER * HEARTBEAT_S,
                            60)
            centre.loop.run(remote.evaluate(), timeout=30)
            assert not centre.engine.rules.is_firing("collector.lost", "collector:pop-a")
            assert centre.engine.runtime["A1"].ok is None  # unknown while nobody polls it
            centre.store.flush()
            assert centre.store.query("SELECT kind, severity, entity_id FROM events WHERE kind = 'collector.stopped'") \
                == [("collector.stopped", "info", "collector:pop-a")]
            # It runs again: heard, and judged as any collector from then on.
            beats[0] = Heartbeats(nats_server.url, "pop-a")
            assert wait_for(lambda: "pop-a" in remote._heard and "pop-a" not in remote._stopped, 30)
        finally:
            centre.stop()
    finally:
        for b in beats:
            b.stop()
    assert _incidents(db, "Collector") == []
