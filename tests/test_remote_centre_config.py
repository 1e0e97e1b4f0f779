"""Remote config reads at the centre, in-process against a real nats-server (the test publishes what a collector
would), and the collector's side of the configuration it is sent."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from ispvm_tui.clock import ScaledClock
from ispvm_tui.config import load_config
from ispvm_tui.engine import config_watch
from ispvm_tui.remote import codec
from ispvm_tui.remote.collector import RemoteCollector
from ispvm_tui.secrets import StaticSecrets
from tests.natsserver import NatsServer
from tests.test_remote_centre import Centre, _with_nc, write_config
from tests.waiting import wait_for


def _identity(name: str) -> dict[str, tuple[str, str]]:
    return {"system": (json.dumps({"/system/identity": [{"name": name}]}, separators=(",", ":")), "api")}


def _publish(url: str, subject: str, payload: bytes, msg_id: str) -> None:
    async def send(nc: Any) -> None:
        await nc.jetstream().publish(subject, payload, timeout=5, headers={"Nats-Msg-Id": msg_id})

    asyncio.run(_with_nc(url, send))


def _read(url: str, collector: str, device: str, at: float, categories: dict[str, tuple[str, str]],
          subject: str | None = None) -> None:
    _publish(url, subject or f"ispvm.config.{collector}.{device}",
             codec.encode_config(collector, device, at, categories), f"{collector}:{device}:config:{at!r}:{subject}")


def _checks(centre: Centre, device: str) -> list[tuple[float, bool]]:
    return centre.store.query("SELECT ts, changed FROM config_checks WHERE device = ? ORDER BY ts", [device])


def test_reads_are_stored_with_their_own_time_in_order_and_hostile_ones_terminated(nats_server: NatsServer,
                                                                                    tmp_path: Path) -> None:
    # A stream from before config reads: the centre adds their subject to it.
    async def old_stream(nc: Any) -> None:
        from nats.js import api

        await nc.jetstream().add_stream(api.StreamConfig(name="ISPVM", subjects=["ispvm.results.>"],
                                                         retention=api.RetentionPolicy.WORK_QUEUE))

    asyncio.run(_with_nc(nats_server.url, old_stream))
    centre = Centre(write_config(tmp_path, nats_server.url), tmp_path / "centre.duckdb")
    try:
        intake = centre.engine.centre.config_reads
        url = nats_server.url
        now = centre.engine.clock.now()
        assert wait_for(lambda: _subscribed(url), 60)
        _read(url, "pop-a", "A1", now - 100, _identity("A1"))  # the baseline
        assert wait_for(lambda: len(_checks(centre, "A1")) == 1, 60)
        _read(url, "pop-a", "A1", now - 50, _identity("A1-renamed"))  # a change, read 50 s ago (replayed late)
        assert wait_for(lambda: centre.events(config_watch.EVENT, "A1"), 60)
        versions = centre.store.query("SELECT version, taken_at, source FROM config_versions WHERE device = 'A1' "
                                      "ORDER BY version")
        assert versions == [(1, now - 100, "api"), (2, now - 50, "api")]  # each at its own read time
        assert centre.events(config_watch.EVENT, "A1")[0].data["version"] == 2

        # Older than what was applied (reordered in flight) and the same read again: dropped, never a change back.
        _read(url, "pop-a", "A1", now - 75, _identity("A1"))
        _read(url, "pop-a", "A1", now - 50, _identity("A1-renamed"), subject="ispvm.config.pop-a.A1")
        assert wait_for(lambda: intake.stale >= 2, 60)
        assert [ts for ts, _ in _checks(centre, "A1")] == [now - 100, now - 50]

        # Hostile: garbage, a read of a device pop-a does not poll, a body that is not the subject's collector.
        _publish(url, "ispvm.config.pop-a.A1", b'{"v":1,"kind":"config"}', "bad1")
        _read(url, "pop-a", "B1", now, _identity("B1"))
        _publish(url, "ispvm.config.pop-b.B1", codec.encode_config("pop-a", "B1", now, _identity("B1")), "bad3")
        assert wait_for(lambda: len(centre.events("remote.malformed", "config message")) >= 3, 60)
        assert _checks(centre, "B1") == []
        assert intake.malformed == 3

        # A read asked for a remote device goes to its collector, named, as a plain NATS message.
        got: list[bytes] = []

        async def listen(nc: Any) -> None:
            async def seen(msg: Any) -> None:
                got.append(msg.data)

            await nc.subscribe("ispvm.cfgreq.pop-b", cb=seen)
            await nc.flush()
            assert await asyncio.wrap_future(centre.engine.capture_config("B1", actor="test")) == 1
            await asyncio.to_thread(wait_for, lambda: got, 30)

        asyncio.run(_with_nc(url, listen))
        assert [codec.decode_request(g) for g in got] == [["B1"]]
        # Asked and not read yet: not asked again at once (the watcher asks again only after ASK_AGAIN_S).
        assert centre.engine.capture_config("B1", actor="test").result(30) == 0
    finally:
        centre.stop()


def _subscribed(url: str) -> bool:
    async def ask(nc: Any) -> bool:
        js = nc.jetstream()
        stream = await js.stream_info("ISPVM")
        await js.consumer_info("ISPVM", "ispvm-engine-config")
        return "ispvm.config.>" in stream.config.subjects

    try:
        return asyncio.run(_with_nc(url, ask))
    except Exception:
        return False


def test_a_configuration_without_config_watch_reads_nothing(tmp_path: Path) -> None:
    """A centre from before remote config reads sends no config_watch: the collector reads nothing."""
    cfg = load_config(write_config(tmp_path, "nats://127.0.0.1:1"))
    collector = RemoteCollector(cfg.remote, "pop-a", secrets=StaticSecrets({"x": "pw"}), clock=ScaledClock(1.0),
                                buffer_path=tmp_path / "pop-a.sqlite")
    sub = {"polling": {"interval_s": 60}, "console": {"attach": ["A1"]}, "sites": [{"name": "POP-A"}],
           "credentials": {"c": {"username": "u", "password_secret": "x"}},
           "devices": [{"name": "A1", "site": "POP-A", "role": "access", "address": "127.0.0.2", "credential": "c"}]}

    async def apply(config: dict[str, Any]) -> tuple[bool, bool]:
        await collector._apply({"v": 1, "collector": "pop-a", "config": config}, source="test")
        assert collector.poller is not None
        return collector.config_reads is not None, collector.poller.config_due is not None

    async def run() -> list[tuple[bool, bool]]:
        try:
            states = [await apply(sub), await apply({**sub, "config_watch": {"interval_s": 60}}),
                      await apply({**sub, "config_watch": {"enabled": False}})]
            await apply({**sub, "config_watch": {"interval_s": 60}})
            reads = collector.config_reads
            assert reads is not None
            # The centre's requests: only for its own devices, and hostile bytes are refused, not raised.
            assert reads.on_request(b"\xff not json", None) == []
            assert reads.on_request(codec.encode_request(["Z9"]), None) == []
            assert reads.on_request(codec.encode_request(["A1"]), None) == ["A1"]
            assert reads.watcher.due("A1", 0.0)
            return states
        finally:
            await collector._stop_poller()

    try:
        assert asyncio.run(run()) == [(False, False), (True, True), (False, False)]
    finally:
        collector.buffer.close()
