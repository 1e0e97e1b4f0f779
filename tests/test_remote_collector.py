"""The collector's sender against a real nats-server that refuses some messages: too large for its
max_payload (with and without the headers), or on a subject this collector may not publish to."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.clock import ScaledClock
from ispvm_tui.config import Remote
from ispvm_tui.remote.buffer import Buffer
from ispvm_tui.remote.collector import RemoteCollector
from ispvm_tui.secrets import StaticSecrets
from tests.natsserver import NatsServer
from tests.waiting import wait_for

MAX_PAYLOAD = 65536

SERVER_CONFIG = f"""
max_payload: {MAX_PAYLOAD}
authorization {{
  users = [
    {{user: "admin", password: "admin-pw"}}
    {{user: "pop-a", password: "pop-a-pw", permissions: {{
      publish: {{allow: [">"], deny: ["ispvm.results.pop-a.DENIED"]}}
      subscribe: {{allow: ["_INBOX_pop-a.>"]}}
    }}}}
  ]
}}
"""


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    conf = tmp_path / "nats-server.conf"
    conf.write_text(SERVER_CONFIG)
    server = NatsServer(tmp_path / "jetstream", tmp_path / "nats-server.log", config=conf)
    server.start()
    yield server
    server.kill()


async def _admin(url: str, fn: Any) -> Any:
    import nats

    nc = await nats.connect(url, user="admin", password="admin-pw", connect_timeout=2, max_reconnect_attempts=0)
    try:
        return await fn(nc.jetstream())
    finally:
        await nc.close()


def _stream_ids(url: str) -> list[str]:
    async def ids(js: Any) -> list[str]:
        info = await js.stream_info("ISPVM")
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            with_headers = await js.get_msg("ISPVM", seq)
            out.append((with_headers.headers or {}).get("Nats-Msg-Id", ""))
        return out

    try:
        return asyncio.run(_admin(url, ids))
    except Exception:
        return []


def test_messages_the_server_never_takes_are_dead_lettered_and_the_queue_moves_on(nats_server: NatsServer,
                                                                                  tmp_path: Path) -> None:
    from nats.js import api

    asyncio.run(_admin(nats_server.url, lambda js: js.add_stream(
        api.StreamConfig(name="ISPVM", subjects=["ispvm.results.>"], storage=api.StorageType.FILE))))
    path = tmp_path / "pop-a.sqlite"
    buffer = Buffer(path, 1000)
    buffer.push("ispvm.results.pop-a.A1", "pop-a:A1:1.0", b"first")
    buffer.push("ispvm.results.pop-a.A1", "pop-a:A1:2.0", os.urandom(2 * MAX_PAYLOAD))  # nats-py refuses it
    buffer.push("ispvm.results.pop-a.A1", "pop-a:A1:3.0", b"x" * (MAX_PAYLOAD - 8))  # over with its headers
    buffer.push("ispvm.results.pop-a.DENIED", "pop-a:DENIED:4.0", b"denied")  # the server drops it
    buffer.push("ispvm.results.pop-a.A1", "pop-a:A1:5.0", b"last")
    buffer.close()

    remote = Remote(nats_url=nats_server.url, user="pop-a", password_secret="nats/pop-a", heartbeat_s=0.5)
    collector = RemoteCollector(remote, "pop-a", secrets=StaticSecrets({"nats/pop-a": "pop-a-pw"}),
                                clock=ScaledClock(1.0), buffer_path=path)
    loop = BackgroundLoop("test-collector")
    stop = asyncio.Event()
    running = loop.submit(collector.run(stop))
    try:
        assert wait_for(lambda: collector.buffer.count == 0, 60), collector.summary()
        assert wait_for(lambda: _stream_ids(nats_server.url) == ["pop-a:A1:1.0", "pop-a:A1:5.0"], 30)
        assert collector.buffer.dead == 3 and collector.published == 2
        # Still connected and sending: a later poll goes through.
        collector.buffer.push("ispvm.results.pop-a.A1", "pop-a:A1:6.0", b"later")
        assert wait_for(lambda: _stream_ids(nats_server.url)[-1:] == ["pop-a:A1:6.0"], 30)
    finally:
        loop.submit(_set(stop)).result(10)
        running.result(30)
        loop.stop()
    con = sqlite3.connect(path)
    try:
        dead = con.execute("SELECT msg_id, reason FROM dead ORDER BY seq").fetchall()
    finally:
        con.close()
    assert [m for m, _ in dead] == ["pop-a:A1:2.0", "pop-a:A1:3.0", "pop-a:DENIED:4.0"], dead
    assert dead[0][1].startswith("too large") and dead[1][1].startswith("too large")
    assert dead[2][1].startswith("permission denied")
    assert "3 dead" in collector.summary()


async def _set(event: asyncio.Event) -> None:
    event.set()
