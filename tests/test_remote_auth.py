"""Per-collector NATS users: a real nats-server run with the block `ispvm nats-config` prints. A collector
can publish only as itself (polls and config reads), read only its own configuration and receive only its own
config read requests; the engine and a real collector work."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.clock import ScaledClock
from ispvm_tui.config import load_config
from ispvm_tui.remote import codec
from ispvm_tui.remote.collector import RemoteCollector
from ispvm_tui.secrets import StaticSecrets
from tests.natsserver import NatsServer, free_port
from tests.test_remote_centre import Centre, _with_nc, consumer_state, poll, write_config
from tests.waiting import wait_for

PASSWORDS = {"nats/centre": "centre-pw-1", "nats/pop-a": "pop-a-pw-2", "nats/pop-b": "pop-b-pw-3"}
BUCKET = "ISPVM_collectors"


def _nats_config(config: Path) -> str:
    run = subprocess.run([sys.executable, "-m", "ispvm_tui.cli", "nats-config", "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_each_collector_publishes_only_as_itself_and_reads_only_its_own_configuration(tmp_path: Path) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    config = write_config(tmp_path, url, interval=2,
                          remote_extra='user = "centre"\npassword_secret = "nats/centre"',
                          pop_a_extra='user = "pop-a"\npassword_secret = "nats/pop-a"',
                          pop_b_extra='user = "pop-b"\npassword_secret = "nats/pop-b"')
    block = _nats_config(config)
    assert not any(pw in block for pw in PASSWORDS.values())
    assert "$ISPVM_NATS_POP_A" in block and "nats/pop-a" in block  # the secret by name, the value by variable
    (tmp_path / "nats.conf").write_text(block)
    env = dict(os.environ, ISPVM_NATS_CENTRE=PASSWORDS["nats/centre"], ISPVM_NATS_POP_A=PASSWORDS["nats/pop-a"],
               ISPVM_NATS_POP_B=PASSWORDS["nats/pop-b"])
    server = NatsServer(tmp_path / "jetstream", tmp_path / "nats-server.log", config=tmp_path / "nats.conf", env=env)
    server.port = port
    server.start()
    as_centre = {"user": "centre", "password": PASSWORDS["nats/centre"]}
    as_pop_b = {"user": "pop-b", "password": PASSWORDS["nats/pop-b"], "inbox_prefix": "_INBOX_pop-b"}
    centre = Centre(config, tmp_path / "centre.duckdb", secrets={"nats/centre": PASSWORDS["nats/centre"]})
    cfg = load_config(config)
    collector = RemoteCollector(cfg.remote.for_collector(cfg.collectors[0]), "pop-a",
                                secrets=StaticSecrets({"x": "pw", "nats/pop-a": PASSWORDS["nats/pop-a"]}),
                                clock=ScaledClock(1.0), buffer_path=tmp_path / "pop-a.sqlite")
    loop = BackgroundLoop("test-collector")
    stop = asyncio.Event()
    running = loop.submit(collector.run(stop))
    try:
        assert wait_for(lambda: consumer_state(url, **as_centre)[0] >= 0, 60)
        # The real collector, as pop-a: reads its own key, polls A1 (nothing answers on 127.0.0.2), publishes.
        assert wait_for(lambda: collector.poller is not None, 60), collector.summary()
        assert wait_for(lambda: centre.engine.centre.ingested >= 1, 60), collector.summary()
        assert centre.store.query("SELECT count(*) FROM poll_log WHERE device = 'A1'")[0][0] >= 0

        # The centre may ask pop-a for a config read, and pop-a (the real collector) may receive it.
        assert centre.engine.capture_config("A1", actor="test").result(30) == 1
        assert wait_for(lambda: collector.config_reads is not None and collector.config_reads.requested >= 1, 30)

        async def pop_b(nc: Any) -> dict[str, str]:
            js = nc.jetstream()
            outcomes: dict[str, str] = {}
            forged = codec.encode("pop-a", "A1", poll("A1", 12345.0, ok=False))
            read = {"system": ('{"/system/identity":[{"name":"B1"}]}', "api")}
            for what, call in [
                ("publish as pop-a", lambda: js.publish("ispvm.results.pop-a.A1", forged, timeout=2,
                                                         headers={"Nats-Msg-Id": "forged"})),
                ("publish a config read as pop-a", lambda: js.publish(
                    "ispvm.config.pop-a.A1", codec.encode_config("pop-a", "A1", 12345.0, read), timeout=2)),
                ("publish as itself", lambda: js.publish("ispvm.results.pop-b.B1",
                                                          codec.encode("pop-b", "B1", poll("B1", 23456.0)),
                                                          timeout=5)),
                ("publish a config read as itself", lambda: js.publish(
                    "ispvm.config.pop-b.B1", codec.encode_config("pop-b", "B1", 23456.0, read), timeout=5)),
            ]:
                try:
                    await call()
                    outcomes[what] = "ok"
                except Exception as exc:
                    outcomes[what] = type(exc).__name__
            kv = await js.key_value(BUCKET)
            for what, call in [("read pop-a's key", lambda: kv.get("pop-a")),
                               ("write pop-a's key", lambda: kv.put("pop-a", b'{"v": 1}')),
                               ("read its own key", lambda: kv.get("pop-b"))]:
                try:
                    await asyncio.wait_for(call(), 4)
                    outcomes[what] = "ok"
                except Exception as exc:
                    outcomes[what] = type(exc).__name__
            return outcomes

        outcomes = asyncio.run(_with_nc(url, pop_b, **as_pop_b))
        assert outcomes["publish as itself"] == "ok" and outcomes["read its own key"] == "ok", outcomes
        assert outcomes["publish a config read as itself"] == "ok", outcomes
        assert outcomes["publish as pop-a"] != "ok", outcomes
        assert outcomes["publish a config read as pop-a"] != "ok", outcomes
        assert outcomes["read pop-a's key"] != "ok" and outcomes["write pop-a's key"] != "ok", outcomes

        async def pop_a_key(nc: Any) -> Any:
            return await (await nc.jetstream().key_value(BUCKET)).get("pop-a")

        entry = asyncio.run(_with_nc(url, pop_a_key, **as_centre))
        assert b'"collector": "pop-a"' in entry.value  # unchanged: the centre's, not pop-b's

        # The centre still works: pop-b's own poll arrives; the forged one never reached the stream.
        assert wait_for(lambda: centre.store.query("SELECT count(*) FROM poll_log WHERE device = 'B1'")[0][0] == 1,
                        60)
        centre.store.flush()
        assert centre.store.query("SELECT count(*) FROM poll_log WHERE ts = 12345.0")[0][0] == 0
        # pop-b's own config read is stored (its baseline); the forged one for A1 never reached the stream.
        assert wait_for(lambda: centre.store.query("SELECT count(*) FROM config_checks WHERE device = 'B1'")[0][0]
                        == 1, 60)
        assert centre.store.query("SELECT count(*) FROM config_checks WHERE device = 'A1'")[0][0] == 0

        # pop-b may not listen to pop-a's config read requests: the server refuses the subscription.
        refused: list[str] = []

        async def listen(nc: Any) -> None:
            await nc.subscribe("ispvm.cfgreq.pop-a")
            await nc.flush()
            await asyncio.to_thread(wait_for, lambda: refused, 10)

        async def on_error(exc: Exception) -> None:
            refused.append(str(exc))

        asyncio.run(_with_nc(url, listen, error_cb=on_error, **as_pop_b))
        assert any("permissions violation for subscription" in e.lower() and "ispvm.cfgreq.pop-a" in e
                   for e in refused), refused
        assert centre.events("incident.opened", "Collector pop-a") == []
        assert centre.events("incident.opened", "Result stream") == []
    finally:
        loop.submit(_set(stop)).result(10)
        running.result(30)
        loop.stop()
        centre.stop()
        server.kill()


async def _set(event: asyncio.Event) -> None:
    event.set()


@pytest.mark.parametrize("extra, expected", [
    ("", "[remote] needs user and password_secret"),
])
def test_nats_config_names_what_is_missing(tmp_path: Path, extra: str, expected: str) -> None:
    config = write_config(tmp_path, "nats://127.0.0.1:4222", remote_extra=extra)
    run = subprocess.run([sys.executable, "-m", "ispvm_tui.cli", "nats-config", "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and expected in run.stderr and "'pop-a' needs user and password_secret" in run.stderr
