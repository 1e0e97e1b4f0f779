"""Config changes of a PoP's routers, read by the remote collector: a real nats-server, the collector and the
engine as separate processes, the lab's routers behind the collector, its WAN link through a proxy.

The schedule is an hour away, so every read after the baselines is one the centre asked for (``ispvm changes
capture``, a fault near the device) or one the collector made on its own during a WAN cut (a restart's
baselines), buffered and replayed."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import TimelineEntry
from tests.labconfig import write_lab_config
from tests.natsserver import NatsServer, TcpProxy
from tests.test_remote_codec import lab  # noqa: F401  (the fixture: the lab, not playing)
from tests.test_remote_stream import HEARTBEAT_S, Proc, Tap, _env
from tests.waiting import wait_for

POP_A = ("POPA-AGG", "POPA-ACC1", "POPA-ACC2")
EVENT = "config.changed.detected"


def _config(lab: Lab, tmp: Path, url: str, name: str = "lab.toml") -> Path:  # noqa: F811 - the imported fixture
    return write_lab_config(lab, tmp / name, extra=[
        "[ispvm]", 'database = "state/ispvm.duckdb"', "",
        "[polling]", "interval_s = 1", "timeout_s = 2", "",  # a config read on a loaded host: not 0.5 s
        "[incidents]", "correlate_every_s = 0.5", "close_after_s = 1", "",
        "[config_watch]", "interval_s = 3600", "",
        "[remote]", f'nats_url = "{url}"', f"heartbeat_s = {HEARTBEAT_S}", "",
        "[[collectors]]", 'name = "pop-a"', 'site = "POP-A"', "",
    ])


def _apply(lab: Lab, loop: BackgroundLoop, **entry: Any) -> None:  # noqa: F811 - the imported fixture
    async def change() -> None:  # on the lab's own loop, like every change it makes
        lab.model.apply(TimelineEntry(at=0, **entry))

    loop.run(change(), timeout=10)


def _config_consumer(url: str) -> tuple[int, int]:
    """(config reads delivered to the engine, delivered or waiting but not acknowledged yet: not stored)."""
    import nats

    async def ask() -> tuple[int, int]:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            info = await nc.jetstream().consumer_info("ISPVM", "ispvm-engine-config")
            return info.delivered.consumer_seq, info.num_pending + info.num_ack_pending
        finally:
            await nc.close()

    try:
        return asyncio.run(ask())
    except Exception:  # not created yet
        return (0, -1)


def _all_stored(url: str, n: int) -> bool:
    delivered, outstanding = _config_consumer(url)
    return delivered >= n and outstanding == 0


def _queued_reads(path: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            return con.execute("SELECT count(*) FROM polls WHERE subject LIKE 'ispvm.config.%'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return -1


class ConfigTap(Tap):
    """Every config message and read request published, as a plain NATS subscriber sees them on the server."""

    def __init__(self, url: str) -> None:
        super().__init__(url, ("ispvm.config.>", "ispvm.cfgreq.>"), limit=None)

    def requests(self) -> list[list[str]]:
        return [json.loads(data)["devices"] for subject, data in list(self.messages)
                if subject.startswith("ispvm.cfgreq")]

    def reads(self) -> list[dict[str, Any]]:
        return [json.loads(data if data[:1] == b"{" else zlib.decompress(data[1:]))
                for subject, data in list(self.messages) if subject.startswith("ispvm.config.")]


def _changes(engine: Proc, device: str, category: str) -> list[dict]:
    return [e for e in engine.events() if e["kind"] == EVENT and (e.get("data") or {}).get("device") == device
            and e["data"].get("category") == category]


def _lab_secrets(lab: Lab) -> set[str]:  # noqa: F811 - the imported fixture
    found = {lab.scenario.lab.password, lab.scenario.lab.community}
    for name in POP_A:
        dev = lab.model.devices[name]
        found |= {p.tcp_md5_key for p in dev.bgp_peers if p.tcp_md5_key}
        found |= {t.auth_key for t in dev.config.ospf_templates if getattr(t, "auth_key", "")}
        found |= {c.name for c in dev.config.communities[1:]}
        found |= {u.password for u in dev.config.users if u.password}
    return found


def test_a_pop_routers_config_changes_reach_the_centre_asked_on_a_fault_and_across_a_wan_cut(
        lab: tuple[Lab, BackgroundLoop], nats_server: NatsServer, tmp_path: Path) -> None:  # noqa: F811 - the imported fixture
    lab_, loop = lab
    env = _env(lab_, tmp_path)
    config = _config(lab_, tmp_path, nats_server.url)
    wan = TcpProxy(nats_server.port)
    pop_config = _config(lab_, tmp_path, wan.url, "pop-a.toml")
    buffer = tmp_path / "pop-a.sqlite"
    tap = ConfigTap(nats_server.url)
    engine = Proc(["run", "--headless", "--json", "--config", str(config)], env, tmp_path, "engine")
    collector_args = ["collector", "--site", "POP-A", "--config", str(pop_config), "--buffer", str(buffer)]
    collector = Proc(collector_args, env, tmp_path, "collector")
    collectors = [collector]
    try:
        # The baselines: one read per PoP router (the API's view of the system category: what changes below),
        # stored at the centre (acknowledged only once stored).
        assert wait_for(lambda: {r["device"] for r in tap.reads()} == set(POP_A), 90), (engine.stderr(),
                                                                                       collector.stderr())
        baseline = next(r for r in tap.reads() if r["device"] == "POPA-AGG")
        assert baseline["categories"]["system"][1] == "api", baseline
        assert wait_for(lambda: _all_stored(nats_server.url, len(POP_A)), 60), engine.stderr()
        assert [e for e in engine.events() if e["kind"] == EVENT] == []  # a baseline is not a change

        # A change, then `ispvm changes capture` at the centre: the request reaches the collector, which reads.
        _apply(lab_, loop, action="config_change", device="POPA-AGG", section="system")
        run = subprocess.run([sys.executable, "-m", "ispvm_tui.cli", "changes", "capture", "POPA-AGG", "--json",
                              "--config", str(config)], env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0 and json.loads(run.stdout) == {"asked": 1}, run.stderr
        assert wait_for(lambda: _changes(engine, "POPA-AGG", "system"), 60), (engine.stdout(), collector.stderr())
        assert ["POPA-AGG"] in tap.requests()

        # A change nobody asks about, then a fault next to the router: the fault's own read finds it.
        _apply(lab_, loop, action="config_change", device="POPA-AGG", section="addressing")
        asked_before = len(tap.requests())
        _apply(lab_, loop, action="link_down", link="POPA-AGG:ether2--POPA-ACC1:ether1")
        assert wait_for(lambda: _changes(engine, "POPA-AGG", "addressing"), 90), (engine.stdout(),
                                                                                  collector.stderr())
        assert any("POPA-AGG" in devices for devices in tap.requests()[asked_before:])
        _apply(lab_, loop, action="link_up", link="POPA-AGG:ether2--POPA-ACC1:ether1")

        # The WAN cut: the collector restarts during it (its baselines are due again), and a change made
        # meanwhile is read, buffered at the PoP with its read time, and replayed when the link is back.
        wan.cut()
        _apply(lab_, loop, action="config_change", device="POPA-AGG", section="firewall")
        assert collector.stop() == 0, collector.stderr()
        collector = Proc(collector_args, env, tmp_path, "collector2")
        collectors.append(collector)
        assert wait_for(lambda: _queued_reads(buffer) >= len(POP_A), 60), collector.stderr()
        assert _changes(engine, "POPA-AGG", "firewall") == []
        mended_at = time.time()
        wan.mend()
        assert wait_for(lambda: _changes(engine, "POPA-AGG", "firewall"), 90), (engine.stdout(), collector.stderr())
        assert wait_for(lambda: _queued_reads(buffer) == 0, 60)
        assert collector.stop() == 0, collector.stderr()
        assert engine.stop() == 0, engine.stderr()
    finally:
        for c in collectors:
            c.kill()
        engine.kill()
        wan.close()
        tap.stop()

    # What crossed the wire: canonical texts of known categories and nothing else, no router row, no secret.
    secrets = _lab_secrets(lab_)
    published = [data for subject, data in tap.messages if subject.startswith("ispvm.config.")]
    assert len(published) >= 2 * len(POP_A) + 2
    for data in published:
        text = data if data[:1] == b"{" else zlib.decompress(data[1:])
        body = json.loads(text)
        assert set(body) == {"v", "kind", "collector", "device", "read_at", "categories"}
        assert body["device"] in POP_A and body["collector"] == "pop-a"
        assert all(source in ("api", "snmp") for _, source in body["categories"].values())
        assert b'".id"' not in text and b"uptime" not in text
        assert not [s for s in secrets if s.encode() in text]

    import duckdb

    con = duckdb.connect(str(tmp_path / "state" / "ispvm.duckdb"), read_only=True)
    try:
        versions = con.execute("SELECT category, version, source, taken_at FROM config_versions WHERE device = "
                               "'POPA-AGG' AND version > 1 ORDER BY taken_at").fetchall()
        assert [(c, s) for c, _, s, _ in versions] == [("system", "api"), ("addressing", "api"),
                                                        ("firewall", "api")], versions
        # The replayed read keeps its own time: read during the cut, not when it arrived.
        assert versions[-1][3] < mended_at
        changed = con.execute("SELECT DISTINCT device, category FROM config_checks WHERE changed "
                              "ORDER BY category").fetchall()
        assert changed == [("POPA-AGG", "addressing"), ("POPA-AGG", "firewall"), ("POPA-AGG", "system")]
        events = con.execute("SELECT count(*) FROM events WHERE kind = ? AND device = 'POPA-AGG'",
                             [EVENT]).fetchone()[0]
        assert events == 3
    finally:
        con.close()
