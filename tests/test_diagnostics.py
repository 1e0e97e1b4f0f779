"""Ping and traceroute from a lab router through the real engine over the real RouterOS API, and from
hostile API peers that stream junk or never finish."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ispvm_tui.collectors import routeros_tools as tools
from ispvm_tui.collectors.routeros import ApiTarget
from ispvm_tui.config import Config
from ispvm_tui.demo import DemoRun, start_demo
from ispvm_tui.engine.api import EngineEvent
from ispvm_tui.engine.diagnostics import Diagnostics, DiagnosticsBusy, hop_line, ping_line
from ispvm_tui.lab.scenario import TimelineEntry, load_scenario
from tests.hostile_api import HOST, HostileServer, login_ok, read_sentence, sentence
from tests.waiting import wait_for

# CORE1 -- AGG -- (ACC1, ACC2); the console attaches at CORE1; nothing on the timeline.
QUIET = load_scenario("root-recovers-symptom-stays").model_copy(update={"timeline": []})
PASSWORD = QUIET.lab.password


def snmp_only_acc2(config: Config) -> Config:
    devices = [d.model_copy(update={"credential": None}) if d.name == "ACC2" else d for d in config.devices]
    return config.model_copy(update={"devices": devices})


class Events:
    """Every diagnostic.output event the engine publishes, by run id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.all: list[EngineEvent] = []

    def __call__(self, event: EngineEvent) -> None:
        if event.kind == "diagnostic.output":
            with self._lock:
                self.all.append(event)

    def of(self, run_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e.data for e in self.all if e.data["run_id"] == run_id]

    def finished(self, run_id: str, timeout: float = 40) -> list[dict[str, Any]]:
        assert wait_for(lambda: any(d["done"] for d in self.of(run_id)), timeout), "the run did not end"
        return self.of(run_id)


@pytest.fixture
def lab(address_base: str) -> Iterator[tuple[DemoRun, Events]]:
    run = start_demo(QUIET, speed=1.0, address_base=address_base, configure=snmp_only_acc2)
    events = Events()
    unsubscribe = run.engine.subscribe(events)
    yield run, events
    unsubscribe()
    run.stop()


def address_on(run: DemoRun, device: str, interface: str) -> str:
    dev = run.lab.model.devices[device]
    return next(a.address.split("/")[0] for a in dev.addresses if a.interface == interface)


def test_ping_a_neighbour_gives_echo_rows_a_summary_and_an_audit_row(lab: tuple[DemoRun, Events]) -> None:
    run, events = lab
    neighbour = address_on(run, "AGG", "ether2")  # AGG's side of the AGG -- ACC1 link
    run_id = run.engine.run_diagnostic("ACC1", "ping", neighbour, "alice", count=3).result(30)
    data = events.finished(run_id)
    lines = [d["line"] for d in data]
    assert lines[0] == f"PING {neighbour} from ACC1: 3 echoes"
    echoes = [line for line in lines if line.startswith("seq=")]
    assert [e.split()[0] for e in echoes] == ["seq=0", "seq=1", "seq=2"]
    assert all(f" {neighbour} time=" in e for e in echoes), echoes
    final = data[-1]
    assert final["done"] and final["error"] is None and final["line"].startswith("3 sent, 3 received, 0% loss, avg ")
    assert all(d["device"] == "ACC1" and d["kind"] == "ping" and d["target"] == neighbour for d in data)
    assert [d["done"] for d in data].count(True) == 1

    def audit() -> list[dict[str, Any]]:
        return run.store.query_dicts("SELECT actor, action, target, detail FROM audit WHERE action LIKE 'diagnostic.%'")

    assert wait_for(audit, 15), "no audit row"
    row = audit()[0]
    assert row["actor"] == "alice" and row["action"] == "diagnostic.ping" and row["target"] == "ACC1"
    assert neighbour in row["detail"] and "3 received" in row["detail"] and run_id in row["detail"]
    assert PASSWORD not in str(audit()) and all(PASSWORD not in d["line"] for d in data)


def test_traceroute_from_an_access_router_lists_the_real_hops_in_order(lab: tuple[DemoRun, Events]) -> None:
    run, events = lab
    core = run.lab.model.devices["CORE1"].address
    run_id = run.engine.run_diagnostic("ACC1", "traceroute", core, "bob").result(30)
    data = events.finished(run_id)
    hops = [d["line"] for d in data[1:-1]]
    # ACC1 -> AGG (in on its ACC1-facing port) -> CORE1 (the target answers from its own address)
    expected = [address_on(run, "AGG", "ether2"), core]
    assert [h.split()[:2] for h in hops] == [["1", expected[0]], ["2", expected[1]]], hops
    assert all(h.endswith(" ms") for h in hops)
    assert data[-1]["error"] is None and data[-1]["line"] == f"2 hops, reached {core}"


def test_traceroute_past_a_powered_off_router_times_out_from_there_on(lab: tuple[DemoRun, Events]) -> None:
    run, events = lab
    acc1 = run.lab.model.devices["ACC1"].address
    run.loop.run(asyncio.to_thread(run.lab.model.apply, TimelineEntry(at=0, action="device_down", device="ACC1")))
    run_id = run.engine.run_diagnostic("CORE1", "traceroute", acc1, "bob").result(30)
    data = events.finished(run_id)
    hops = [d["line"] for d in data[1:-1]]
    assert hops[0].split()[:2] == ["1", address_on(run, "AGG", "ether1")]  # AGG still answers
    assert hops[1:] == ["2  *  timeout", "3  *  timeout", "4  *  timeout"]  # ACC1 and beyond: silent
    assert data[-1]["line"] == f"4 hops, {acc1} not reached (stopped after 3 silent hops in a row)"


def test_bad_requests_are_clear_errors(lab: tuple[DemoRun, Events]) -> None:
    run, _ = lab
    engine = run.engine
    with pytest.raises(KeyError, match="NOPE"):
        engine.run_diagnostic("NOPE", "ping", "10.0.0.1", "alice").result(30)
    with pytest.raises(ValueError, match="ACC2 has no RouterOS API credential"):
        engine.run_diagnostic("ACC2", "ping", "10.0.0.1", "alice").result(30)
    with pytest.raises(ValueError, match="target"):
        engine.run_diagnostic("ACC1", "ping", "10.0.0.1; /system reboot", "alice").result(30)
    with pytest.raises(ValueError, match="count"):
        engine.run_diagnostic("ACC1", "ping", "10.0.0.1", "alice", count=21).result(30)
    with pytest.raises(ValueError, match="kind"):
        engine.run_diagnostic("ACC1", "mtr", "10.0.0.1", "alice").result(30)


def test_a_fifth_run_is_refused_while_four_are_going(lab: tuple[DemoRun, Events]) -> None:
    run, events = lab
    # 192.0.2.1 is nowhere in this lab: every echo is lost, so each ping runs its whole 20 s.
    ids = [run.engine.run_diagnostic("CORE1", "ping", "192.0.2.1", "alice", count=20).result(30) for _ in range(4)]
    assert len(set(ids)) == 4
    with pytest.raises(DiagnosticsBusy, match="4 diagnostics are already running"):
        run.engine.run_diagnostic("CORE1", "ping", "192.0.2.1", "alice").result(30)
    assert wait_for(lambda: any(d["line"] == "seq=0 192.0.2.1 timeout" for d in events.of(ids[0])), 15)
    # Stopping the engine ends the runs (the fixture's stop is bounded: it would fail the test if it hung).


def test_check_target() -> None:
    assert tools.check_target(" 10.0.0.1 ") == "10.0.0.1"
    assert tools.check_target("2001:DB8::1") == "2001:db8::1"
    assert tools.check_target("core1.example.net") == "core1.example.net"
    for bad in ("", "a b", "10.0.0.1/24", "-x", "x" * 300, "10.0.0.999", "=address=1.1.1.1", "host;reboot"):
        with pytest.raises(ValueError):
            tools.check_target(bad)


def test_lines_are_rendered_from_v6_and_v7_rows() -> None:
    v7 = tools._ping_reply({"seq": "3", "host": "10.1.1.1", "time": "1ms200us", "ttl": "64", "sent": "4"})
    v6 = tools._ping_reply({"seq": "0", "host": "10.1.1.1", "time": "12ms"})
    lost = tools._ping_reply({"seq": "1", "host": "10.1.1.1", "status": "timeout"})
    assert ping_line(v7) == "seq=3 10.1.1.1 time=1.2ms ttl=64"
    assert ping_line(v6) == "seq=0 10.1.1.1 time=12ms"
    assert ping_line(lost) == "seq=1 10.1.1.1 timeout"
    hop = tools._hop(1, {"address": "10.0.0.1", "loss": "0", "sent": "1", "last": "0.4ms", "avg": "0.4"})
    silent = tools._hop(2, {"address": "", "loss": "100", "sent": "1", "last": "timeout"})
    assert hop_line(hop) == "1  10.0.0.1  0.4 ms" and hop.avg_ms == 0.4
    assert hop_line(silent) == "2  *  timeout" and silent.silent


# ---- hostile peers ----------------------------------------------------------------------------


def api_at(port: int) -> ApiTarget:
    return ApiTarget(name="X", address=HOST, username="noc", password="pa55-Secret", port=port)


async def junk_after_one_row(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await login_ok(reader, writer)
    await read_sentence(reader)
    writer.write(sentence("!re", "=seq=0", "=host=10.0.0.1", "=time=1ms"))
    writer.write(b"\x03!re\xf8garbage" * 100)
    await writer.drain()
    await asyncio.sleep(30)


async def rows_never_done(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await login_ok(reader, writer)
    await read_sentence(reader)
    writer.write(sentence("!re", ".section=0", "=address=10.0.0.1", "=sent=1", "=last=0.4ms"))
    await writer.drain()
    await asyncio.sleep(60)


async def endless_rows(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await login_ok(reader, writer)
    await read_sentence(reader)
    row = sentence("!re", "=seq=0", "=host=10.0.0.1", "=time=1ms")
    while True:
        writer.write(row * 100)
        await writer.drain()


async def trap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await login_ok(reader, writer)
    await read_sentence(reader)
    writer.write(sentence("!trap", "=message=not enough permissions (9)") + sentence("!done"))
    await writer.drain()
    await asyncio.sleep(30)


async def collect(gen: Any) -> list[Any]:
    return [row async for row in gen]


async def test_junk_in_the_stream_is_a_clear_error() -> None:
    server = await HostileServer(junk_after_one_row).start()
    try:
        rows: list[tools.PingReply] = []
        with pytest.raises(tools.ToolError, match=r"bad reply from 127\.0\.0\.1") as err:
            async for reply in tools.ping(api_at(server.port), "10.0.0.1", count=3):
                rows.append(reply)
        assert [r.seq for r in rows] == [0]  # the good row came through before the junk
        assert "pa55-Secret" not in str(err.value)
    finally:
        await server.stop()


async def test_a_run_that_never_finishes_ends_at_its_deadline() -> None:
    server = await HostileServer(rows_never_done).start()
    try:
        with pytest.raises(tools.ToolError, match=r"no end of /tool/traceroute from 127\.0\.0\.1:\d+ within 1\.5s"):
            await asyncio.wait_for(collect(tools.traceroute(api_at(server.port), "10.0.0.1", deadline_s=1.5)), 20)
    finally:
        await server.stop()


async def test_endless_rows_stop_at_the_row_limit() -> None:
    server = await HostileServer(endless_rows).start()
    try:
        with pytest.raises(tools.ToolError, match="more than 50 rows"):
            await asyncio.wait_for(collect(tools.ping(api_at(server.port), "10.0.0.1", count=1, max_rows=50)), 20)
    finally:
        await server.stop()


async def test_a_trap_is_the_routers_message() -> None:
    server = await HostileServer(trap).start()
    try:
        with pytest.raises(tools.ToolError, match=r"/ping refused by .*: not enough permissions \(9\)"):
            await asyncio.wait_for(collect(tools.ping(api_at(server.port), "10.0.0.1")), 20)
    finally:
        await server.stop()


async def test_the_engine_reports_a_hostile_router_as_the_runs_error(tmp_path: Any) -> None:
    """Diagnostics against a peer that never finishes: the done event carries the error, within the ping's
    own deadline (count * 1 s + 5 s), and the audit row says so."""
    server = await HostileServer(rows_never_done).start()
    config = Config.model_validate({
        "console": {"attach": ["X"]}, "sites": [{"name": "S"}],
        "credentials": {"c": {"username": "noc", "password_secret": "s"}},
        "devices": [{"name": "X", "site": "S", "role": "core", "address": HOST, "api_port": server.port,
                     "credential": "c"}],
    })
    events: list[dict[str, Any]] = []
    audits: list[list[Any]] = []

    async def audit(row: list[Any]) -> None:
        audits.append(row)

    diags = Diagnostics(config, {"s": "pa55-Secret"}.get, lambda kind, summary, data: events.append(data), audit,
                        now=lambda: 0.0)
    try:
        run_id = await diags.start("X", "ping", "10.0.0.1", "carol", count=1)
        result = await asyncio.wait_for(diags.result(run_id), 30)
        assert result["done"] and result["error"] is not None and "within 6s" in result["error"]
        assert events[-1]["done"] and events[-1]["line"].startswith("error: no end of /ping")
        assert audits and audits[0][1:4] == ["carol", "diagnostic.ping", "X"] and "error:" in audits[0][4]
        # four never-ending runs take every slot; a fifth is refused at once
        for _ in range(4):
            await diags.start("X", "ping", "10.0.0.1", "carol", count=20)
        with pytest.raises(DiagnosticsBusy):
            await diags.start("X", "ping", "10.0.0.1", "carol", count=20)
        assert diags.running == 4
    finally:
        await diags.stop()
        await server.stop()
    assert diags.running == 0


def test_the_cli_runs_through_the_engines_control_socket(lab: tuple[DemoRun, Events]) -> None:
    from typer.testing import CliRunner

    from ispvm_tui.cli import app

    run, _ = lab
    neighbour = address_on(run, "AGG", "ether2")
    db = str(run.store.path)
    done = CliRunner().invoke(app, ["diag", "ping", "ACC1", neighbour, "--count", "2", "--database", db,
                                    "--actor", "dave"])
    assert done.exit_code == 0, done.output
    out = done.output.splitlines()
    assert out[0] == f"PING {neighbour} from ACC1: 2 echoes" and out[1].startswith(f"seq=0 {neighbour} time=")
    assert out[-1].startswith("2 sent, 2 received, 0% loss")
    traced = CliRunner().invoke(app, ["diag", "traceroute", "ACC1", neighbour, "--database", db])
    assert traced.exit_code == 0 and traced.output.splitlines()[-1] == f"1 hop, reached {neighbour}", traced.output
    refused = CliRunner().invoke(app, ["diag", "ping", "NOPE", neighbour, "--database", db])
    assert refused.exit_code == 2 and "unknown device" in refused.output
    assert wait_for(lambda: run.store.query(
        "SELECT count(*) FROM audit WHERE actor = 'dave' AND action = 'diagnostic.ping'") == [(1,)], 15)
