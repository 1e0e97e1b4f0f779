"""Remote collectors end to end: a real nats-server, the collector and the engine as separate processes,
the lab's routers behind the collector, a WAN cut (the collector's link through a proxy cut, then mended;
the server and the engine's link to it stay up)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.clock import ScaledClock
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import load_scenario
from ispvm_tui.secrets import EncryptedFileSecrets
from tests.labconfig import write_lab_config
from tests.natsserver import NatsServer, TcpProxy
from tests.waiting import wait_for

PASSPHRASE = "remote collectors test passphrase"
POP_A = {"POPA-AGG", "POPA-ACC1", "POPA-ACC2"}
HEARTBEAT_S = 2.0  # lost after 6 s: a loaded host's scheduling hiccup is not a lost collector


@pytest.fixture
def lab(address_base: str) -> Iterator[Lab]:
    loop = BackgroundLoop("test-lab")
    lab = Lab(load_scenario("core-link-cut"), ScaledClock(1.0), address_base=address_base)
    loop.run(lab.start(play=False))  # a healthy network: nothing should page
    yield lab
    loop.run(lab.stop())
    loop.stop()


class Proc:
    """A process whose stdout/stderr go to files the test reads while it runs."""

    def __init__(self, args: list[str], env: dict[str, str], tmp: Path, name: str) -> None:
        self.out, self.err = tmp / f"{name}.out", tmp / f"{name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "ispvm_tui.cli", *args], env=env, stdout=out,
                                         stderr=err)

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout().splitlines() if line.startswith("{")]

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _env(lab: Lab, tmp: Path) -> dict[str, str]:
    env = dict(os.environ, XDG_DATA_HOME=str(tmp / "data"), ISPVM_SECRETS_PASSPHRASE=PASSPHRASE,
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    store = EncryptedFileSecrets(tmp / "data" / "ispvm" / "secrets.enc", passphrase=PASSPHRASE)
    store.set("lab/password", lab.scenario.lab.password)
    store.set("lab/community", lab.scenario.lab.community)
    return env


def _config(lab: Lab, tmp: Path, url: str, name: str = "lab.toml") -> Path:
    return write_lab_config(lab, tmp / name, extra=[
        "[ispvm]", 'database = "state/ispvm.duckdb"', "",
        "[polling]", "interval_s = 1", "timeout_s = 0.5", "",
        "[incidents]", "correlate_every_s = 0.5", "close_after_s = 1", "",
        "[remote]", f'nats_url = "{url}"', f"heartbeat_s = {HEARTBEAT_S}", "",
        "[[collectors]]", 'name = "pop-a"', 'site = "POP-A"', "",
    ])


def _consumer(url: str) -> tuple[int, int, int]:
    """(messages in the stream, acknowledged by the engine, not yet delivered or acked)."""
    import nats

    async def ask() -> tuple[int, int, int]:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            js = nc.jetstream()
            info = await js.consumer_info("ISPVM", "ispvm-engine")
            stream = await js.stream_info("ISPVM")
            return stream.state.messages, info.ack_floor.stream_seq, info.num_pending + info.num_ack_pending
        finally:
            await nc.close()

    try:
        return asyncio.run(ask())
    except Exception:  # not created yet, or the server is away
        return (0, 0, -1)


def _publish(url: str, subject: str, payload: bytes, msg_id: str) -> None:
    import nats

    async def send() -> None:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            await nc.jetstream().publish(subject, payload, headers={"Nats-Msg-Id": msg_id}, timeout=5)
        finally:
            await nc.close()

    asyncio.run(send())


class Tap:
    """Messages published on ``subjects``, as a plain NATS subscriber sees them on the server (the stream is a
    work queue: what the engine acknowledged is gone from it); at most ``limit`` of them."""

    def __init__(self, url: str, subjects: tuple[str, ...] = ("ispvm.results.pop-a.>",),
                 limit: int | None = 1) -> None:
        self.url = url
        self.subjects, self.limit = subjects, limit
        self.messages: list[tuple[str, bytes]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        assert self._ready.wait(30)

    @property
    def first(self) -> bytes | None:
        return self.messages[0][1] if self.messages else None

    def _full(self) -> bool:
        return self.limit is not None and len(self.messages) >= self.limit

    async def _run(self) -> None:
        import nats

        nc = await nats.connect(self.url, connect_timeout=2)

        async def seen(msg: Any) -> None:
            if not self._full():
                self.messages.append((msg.subject, msg.data))

        for subject in self.subjects:
            await nc.subscribe(subject, cb=seen)
        await nc.flush()
        self._ready.set()
        while not self._stop.is_set() and not self._full():
            await asyncio.sleep(0.1)
        await nc.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _buffered(path: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            return con.execute("SELECT count(*) FROM polls").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return -1


def _incidents(engine: Proc, kind: str, text: str) -> list[dict]:
    return [e for e in engine.events() if e["kind"] == kind and text in e["summary"]]


def test_results_survive_a_wan_cut_with_one_collector_incident(lab: Lab, nats_server: NatsServer,
                                                               tmp_path: Path) -> None:
    env = _env(lab, tmp_path)
    config = _config(lab, tmp_path, nats_server.url)
    wan = TcpProxy(nats_server.port)
    pop_config = _config(lab, tmp_path, wan.url, "pop-a.toml")  # the PoP reaches NATS over its WAN link
    buffer = tmp_path / "pop-a.sqlite"
    tap = Tap(nats_server.url)
    engine = Proc(["run", "--headless", "--json", "--config", str(config)], env, tmp_path, "engine")
    collector = Proc(["collector", "--site", "POP-A", "--config", str(pop_config), "--buffer", str(buffer)], env,
                     tmp_path, "collector")
    try:
        # Results flow: the engine acknowledges (only once stored) what the collector published.
        assert wait_for(lambda: _consumer(nats_server.url)[1] >= 12, 60), (engine.stderr(), collector.stderr())

        # A duplicate (the same poll again, under another message id so JetStream lets it through) and two
        # hostile messages: garbage, and a poll of a device this collector does not poll.
        assert wait_for(lambda: tap.first is not None, 30)
        first = tap.first
        assert first is not None
        _publish(nats_server.url, "ispvm.results.pop-a.POPA-AGG", first, "test:dup")
        _publish(nats_server.url, "ispvm.results.pop-a.POPA-AGG", b'{"v":1,"results":"nope"}', "test:bad1")
        stolen = first.replace(json.dumps(json.loads(first)["device"]).encode(), b'"CORE1"')
        _publish(nats_server.url, "ispvm.results.pop-a.CORE1", stolen, "test:bad2")
        assert wait_for(lambda: len([e for e in engine.events() if e["kind"] == "remote.malformed"]) >= 2, 30), \
            engine.stdout()

        # The WAN cut: longer than 3 heartbeats, so the collector is lost, once; it keeps polling into its buffer.
        before = len(_incidents(engine, "incident.opened", "Collector pop-a lost"))  # a loaded host's hiccup
        cut_at = time.time()
        wan.cut()
        assert wait_for(lambda: len(_incidents(engine, "incident.opened", "Collector pop-a lost")) > before, 60), \
            engine.stdout()
        grown = _buffered(buffer)
        assert wait_for(lambda: _buffered(buffer) >= max(15, grown + 3), 60)  # the cut goes on a little longer
        wan.mend()

        # Back: the backlog replays, the collector is heard again, the incident closes.
        assert wait_for(lambda: _buffered(buffer) == 0, 90), collector.stderr()
        assert wait_for(lambda: len(_incidents(engine, "incident.closed", "Collector pop-a lost")) > before, 60), \
            engine.stdout()
        assert collector.stop() == 0, collector.stderr()
        # A deliberate stop says goodbye: recorded as stopped, never paged as lost while the engine runs on.
        assert wait_for(lambda: [e for e in engine.events() if e["kind"] == "remote.collector_stopped"], 30), \
            engine.stdout()
        assert wait_for(lambda: _consumer(nats_server.url)[2] == 0, 60)
        assert engine.stop() == 0, engine.stderr()
    finally:
        collector.kill()
        engine.kill()
        wan.close()
        tap.stop()

    summary = collector.stderr().strip().splitlines()[-1]
    made = int(summary.split(": ", 1)[1].split(" polls made")[0])
    assert "0 still buffered, 0 dropped" in summary, summary

    import duckdb

    con = duckdb.connect(str(tmp_path / "state" / "ispvm.duckdb"), read_only=True)
    try:
        # One poll = one API row (every lab device has both collectors): every poll the collector made is
        # stored, once, whatever the cut did.
        names = ", ".join(f"'{d}'" for d in POP_A)
        api_rows, distinct, late = con.execute(
            f"SELECT count(*), count(DISTINCT (device, ts)), count(*) FILTER (WHERE late) FROM poll_log "
            f"WHERE collector = 'api' AND device IN ({names})").fetchone()
        assert api_rows == made and distinct == made, (api_rows, distinct, made)
        assert late > 0  # the backlog was marked late
        unreachable = con.execute("SELECT count(*) FROM alerts WHERE rule = 'device_unreachable'").fetchone()[0]
        assert unreachable == 0
        lost = con.execute("SELECT status, title FROM incidents WHERE title LIKE 'Collector pop-a lost%' "
                           "AND opened_at >= ?", [cut_at - 1]).fetchall()  # the cut's; no timing asserted
        assert lost == [("closed", "Collector pop-a lost: 3 devices not monitored")], lost
        others = con.execute("SELECT title FROM incidents WHERE title NOT LIKE 'Collector %'").fetchall()
        assert others == []  # no false device incidents
    finally:
        con.close()
    # The engine never polled POP-A itself: every row of those devices came through the stream.
    assert "malformed result message" in engine.stderr()
