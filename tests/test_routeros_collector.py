"""RouterOSCollector against the lab RouterOS API server, over real TCP on loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ispvm_tui.clock import ScaledClock
from ispvm_tui.collectors.results import PollResult
from ispvm_tui.collectors.routeros import ApiTarget, RouterOSCollector, parse_ros_duration
from ispvm_tui.lab.routeros_api_server import Misbehaviour
from tests.test_routeros_lab_api import HOST, PASSWORD, USER, Lab, make_device, make_tls, start_lab

TIMEOUT = 0.5


def collector(lab: Lab, *, password: str = PASSWORD, timeout: float = TIMEOUT, **kw: object) -> RouterOSCollector:
    target = ApiTarget(name="EDGE1", address=HOST, username=USER, password=password, port=lab.port, **kw)  # type: ignore[arg-type]
    return RouterOSCollector(target, clock=ScaledClock(speed=1.0), timeout=timeout)


@pytest.fixture
async def lab7() -> AsyncIterator[Lab]:
    lab = await start_lab(make_device(7))
    yield lab
    await lab.server.stop()


@pytest.fixture
async def lab6() -> AsyncIterator[Lab]:
    lab = await start_lab(make_device(6))
    yield lab
    await lab.server.stop()


def bgp_by_name(result: PollResult) -> dict:
    assert result.bgp is not None
    return {s.name: s for s in result.bgp}


# ---- full polls ----------------------------------------------------------------------


@pytest.mark.parametrize("major", [6, 7])
async def test_full_poll(major: int) -> None:
    lab = await start_lab(make_device(major))
    col = collector(lab)
    try:
        before = time.time()
        result = await col.poll()
        assert result.ok, result.error
        assert result.device == "EDGE1" and result.collector == "api"
        assert result.started_at >= before - 1 and 0 <= result.duration_s < TIMEOUT
        assert result.stale == {} and result.error is None and result.error_kind is None

        system = result.system
        assert system is not None
        assert system.identity == "EDGE1"
        assert system.version == ("7.16.2" if major == 7 else "6.49.10")
        assert system.board == lab.device.board
        assert system.uptime_s is not None and abs(system.uptime_s - 90_061) < 5
        assert system.cpu_load == 7 and system.total_memory == 4 * 1024**3
        assert system.temperature_c == 41.0 and system.voltage_v == 24.1

        itfs = {i.name: i for i in result.interfaces}
        assert list(itfs) == ["ether1", "ether2", "ether3", "ether4"]
        e1 = itfs["ether1"]
        assert e1.admin_up and e1.oper_up and e1.alias == "UPSTREAM1 transit" and e1.mtu == 1500
        assert e1.mac == "48:A9:8A:00:00:01" and e1.link_downs == 2 and e1.type == "ether"
        assert e1.rx_bytes is not None and e1.rx_bytes >= 10_000 and e1.tx_packets is not None
        assert e1.ifindex is None and e1.counter_bits == 64
        assert itfs["ether3"].admin_up and not itfs["ether3"].oper_up
        assert itfs["ether4"].admin_up is False and itfs["ether4"].alias is None

        assert {(a.address, a.interface, a.network) for a in result.addresses} == {
            ("198.51.100.2/30", "ether1", "198.51.100.0"), ("10.0.12.1/30", "ether2", "10.0.12.0")}

        bgp = bgp_by_name(result)
        assert set(bgp) == {"UPSTREAM1", "UPSTREAM2", "IX1"}
        up = bgp["UPSTREAM1"]
        assert up.established and up.state == "established" and up.remote_as == 64500
        assert up.remote_address == "198.51.100.1" and up.local_as == 65010 and up.prefixes == 1200
        assert up.uptime_s is not None and abs(up.uptime_s - 7200) < 5
        assert not bgp["UPSTREAM2"].established and bgp["UPSTREAM2"].state == "active"
        assert bgp["IX1"].state == "idle" and not bgp["IX1"].established and bgp["IX1"].remote_as == 64502

        assert result.ospf is not None
        (nb,) = result.ospf
        # v7 rows carry no interface: the collector finds it from the neighbour's subnet
        assert (nb.router_id, nb.address, nb.interface, nb.state, nb.full) == (
            "10.255.0.2", "10.0.12.2", "ether2", "full", True)
    finally:
        await col.close()
        await lab.server.stop()


async def test_counters_move_and_connection_is_reused(lab7: Lab) -> None:
    col = collector(lab7)
    first = await col.poll()
    api = col._api
    second = await col.poll()
    assert first.ok and second.ok
    assert col._api is api  # one connection across polls
    rx = {i.name: i.rx_bytes for i in first.interfaces}
    assert next(i for i in second.interfaces if i.name == "ether1").rx_bytes > rx["ether1"]
    await col.close()


async def test_bgp_down_shows_not_established(lab6: Lab, lab7: Lab) -> None:
    for lab in (lab6, lab7):
        col = collector(lab)
        assert bgp_by_name(await col.poll())["UPSTREAM1"].established
        peer = lab.device.bgp_peers[0]
        peer.state, peer.established_since = "active", None
        down = bgp_by_name(await col.poll())["UPSTREAM1"]
        assert not down.established and down.state == "active"
        assert down.uptime_s is None and down.prefixes is None
        peer.state = "idle"
        assert bgp_by_name(await col.poll())["UPSTREAM1"].state == "idle"
        peer.disabled = True
        disabled = bgp_by_name(await col.poll())["UPSTREAM1"]
        assert disabled.disabled and not disabled.established and disabled.state == "idle"
        await col.close()


async def test_ospf_down_neighbour_disappears(lab7: Lab) -> None:
    col = collector(lab7)
    lab7.device.ospf_neighbors[0].state = "Down"
    result = await col.poll()
    assert result.ok and result.ospf == ()
    await col.close()


# ---- device-level failures -------------------------------------------------------------


async def test_wrong_password_is_auth_and_secret_free(lab7: Lab) -> None:
    secret = "hunter2-wrong-Secret"
    col = collector(lab7, password=secret)
    result = await col.poll()
    assert not result.ok and result.error_kind == "auth"
    assert result.error is not None and "invalid user name or password" in result.error
    assert secret not in result.error and PASSWORD not in result.error
    assert secret not in repr(col.target)
    await col.close()


async def test_server_stopped_is_refused() -> None:
    lab = await start_lab(make_device(7))
    col = collector(lab)
    assert (await col.poll()).ok
    await lab.server.stop()
    result = await col.poll()  # the idle connection died with the server: no false "lost" error
    assert not result.ok and result.error_kind == "refused", result.error
    assert str(lab.port) in (result.error or "")
    await col.close()


async def test_black_hole_times_out_in_time(lab7: Lab) -> None:
    col = collector(lab7)
    lab7.model.up = False
    t0 = time.monotonic()
    result = await col.poll()
    elapsed = time.monotonic() - t0
    assert not result.ok and result.error_kind == "timeout"
    assert TIMEOUT <= elapsed < TIMEOUT + 0.3
    assert result.error is not None and "0.5s" in result.error
    lab7.model.up = True
    assert (await col.poll()).ok
    await col.close()


async def test_black_hole_on_an_open_connection(lab7: Lab) -> None:
    col = collector(lab7)
    assert (await col.poll()).ok
    lab7.model.up = False
    result = await col.poll()
    assert result.error_kind == "timeout" and "/print" in (result.error or "")
    lab7.model.up = True
    assert (await col.poll()).ok
    await col.close()


async def test_reply_delay_longer_than_timeout(lab7: Lab) -> None:
    lab7.server.misbehaviour = Misbehaviour(reply_delay_s=TIMEOUT * 2)
    col = collector(lab7)
    t0 = time.monotonic()
    result = await col.poll()
    assert not result.ok and result.error_kind == "timeout"
    assert time.monotonic() - t0 < TIMEOUT + 0.3
    await col.close()


async def test_dropped_mid_reply_then_reconnects(lab7: Lab) -> None:
    lab7.server.misbehaviour = Misbehaviour(drop_after_sentences=3)
    col = collector(lab7)
    result = await col.poll()
    # The router had answered (login, identity) before the path died: still unreachable.
    assert not result.ok and result.error_kind == "unreachable"
    assert result.error is not None and "connection" in result.error and "middle of the session" in result.error
    assert "/system/resource/print" in result.error
    lab7.server.misbehaviour = Misbehaviour()
    again = await col.poll()
    assert again.ok and again.system is not None and again.system.identity == "EDGE1"
    await col.close()


async def test_tls(tmp_path: Path) -> None:
    server_ctx, ca_file = make_tls(tmp_path)
    lab = await start_lab(make_device(7), ssl_context=server_ctx)
    try:
        good = collector(lab, tls=True, ca_file=str(ca_file))
        result = await good.poll()
        assert result.ok, result.error
        await good.close()
        untrusted = collector(lab, tls=True)
        bad = await untrusted.poll()
        assert not bad.ok and bad.error_kind == "tls", bad.error
        await untrusted.close()
        unverified = collector(lab, tls=True, tls_verify=False)
        assert (await unverified.poll()).ok
        await unverified.close()
    finally:
        await lab.server.stop()


# ---- family isolation ------------------------------------------------------------------


async def test_ospf_trap_marks_only_ospf_stale(lab7: Lab) -> None:
    lab7.server.misbehaviour = Misbehaviour(trap_paths=frozenset({"/routing/ospf/neighbor"}))
    col = collector(lab7)
    result = await col.poll()
    assert result.ok and result.ospf is None
    assert set(result.stale) == {"ospf"} and "action timed out" in result.stale["ospf"]
    assert result.system is not None and result.interfaces and result.addresses and result.bgp
    await col.close()


@pytest.mark.parametrize("major", [6, 7])
async def test_malformed_reply_marks_family_stale_and_recovers(major: int) -> None:
    lab = await start_lab(make_device(major))
    lab.server.misbehaviour = Misbehaviour(garbage_paths=frozenset({"/ip/address"}))
    col = collector(lab)
    try:
        result = await col.poll()
        assert result.ok and result.addresses == ()
        assert set(result.stale) == {"addresses"} and "malformed" in result.stale["addresses"]
        # later families ran on a fresh connection, still with the right menus
        assert bgp_by_name(result)["UPSTREAM1"].established and result.ospf
    finally:
        await col.close()
        await lab.server.stop()


async def test_system_trap_is_stale_not_fatal() -> None:
    lab = await start_lab(make_device(7))
    lab.server.misbehaviour = Misbehaviour(trap_paths=frozenset({"/system/identity"}))
    col = collector(lab)
    try:
        result = await col.poll()
        assert result.ok and result.system is None and "system" in result.stale
        assert result.interfaces and result.bgp is not None
    finally:
        await col.close()
        await lab.server.stop()


async def test_menus_redetected_after_upgrade(lab6: Lab) -> None:
    col = collector(lab6)
    first = await col.poll()
    assert first.ok and first.system is not None and first.system.version == "6.49.10"
    lab6.device.ros_major, lab6.device.version = 7, "7.16.2"  # upgraded without a reconnect
    second = await col.poll()
    assert second.ok and second.system is not None and second.system.version == "7.16.2"
    assert second.stale == {}
    assert bgp_by_name(second)["UPSTREAM1"].established  # read from the v7 menus now
    await col.close()


async def test_router_without_peers_or_neighbours() -> None:
    lab = await start_lab(make_device(6, bgp=False))
    col = collector(lab)
    try:
        result = await col.poll()
        assert result.ok and result.bgp == ()  # the menu exists, there are no peers
        lab.device.ospf_neighbors = []
        assert (await col.poll()).ospf == ()
    finally:
        await col.close()
        await lab.server.stop()


def test_parse_ros_duration() -> None:
    assert parse_ros_duration("1w4d23h26m9s") == 604800 + 4 * 86400 + 23 * 3600 + 26 * 60 + 9
    assert parse_ros_duration("18h8m41s680ms") == pytest.approx(65321.68)
    assert parse_ros_duration("0s") == 0
    assert parse_ros_duration("00:01:02") == 62
    assert parse_ros_duration("") is None and parse_ros_duration("soon") is None
