"""The reachability check against real peers: lab routers alive, black-holed and rejecting, a closed port,
and a real SNMPv3 agent (snmpsim) answering an unauthenticated discovery request."""

from __future__ import annotations

import dataclasses
import socket
import time

import pytest

from ispvm_tui.clock import ScaledClock
from ispvm_tui.collectors.reachability import ReachTarget, check
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import TimelineEntry, load_scenario
from tests.test_snmp_fixtures import Simulator, snmpsim  # noqa: F401 - the fixture is used below


async def _lab(address_base: str, unreachable: str = "drop") -> Lab:
    sc = load_scenario("core-link-cut")
    sc = sc.model_copy(update={"lab": sc.lab.model_copy(update={"unreachable": unreachable})})
    lab = Lab(sc, ScaledClock(1.0), address_base=address_base)
    await lab.start(play=False)
    return lab


def _target(lab: Lab, name: str) -> ReachTarget:
    _, address, api_port, snmp_port = next(r for r in lab.routers() if r[0] == name)
    return ReachTarget(name=name, address=address, api_port=api_port, snmp_port=snmp_port,
                       community=lab.scenario.lab.community)


def _power_off(lab: Lab, name: str) -> None:
    lab.model.apply(TimelineEntry(at=0, action="device_down", device=name))


async def test_a_live_router_answers_on_both_protocols(address_base: str) -> None:
    lab = await _lab(address_base)
    try:
        target = _target(lab, "CORE1")
        assert (await check(target, 5.0)).ok
        assert (await check(dataclasses.replace(target, snmp_port=None), 5.0)).ok  # API alone
        assert (await check(dataclasses.replace(target, api_port=None), 5.0)).ok  # SNMP alone
        wrong = dataclasses.replace(target, api_port=None, community="not-the-community")
        assert not (await check(wrong, 1.0)).ok  # a wrong community proves nothing: agents stay silent
    finally:
        await lab.stop()


async def test_a_black_holed_router_fails_within_the_check_timeout(address_base: str) -> None:
    lab = await _lab(address_base, "drop")
    try:
        _power_off(lab, "POPA-AGG")
        started = time.monotonic()
        reach = await check(_target(lab, "POPA-AGG"), 1.0)
        assert not reach.ok and reach.kind == "timeout", reach
        assert time.monotonic() - started < 30  # bounded by the check, not by a poll's timeout
        assert "within 1s" in reach.detail
    finally:
        await lab.stop()


async def test_a_rejecting_path_is_named_unreachable_not_timed_out(address_base: str) -> None:
    # The API is reset at once, SNMP stays silent: the check still waits for SNMP (a router may serve
    # SNMP with its API off), then names the clearest reason, the reset, rather than the silence.
    lab = await _lab(address_base, "reject")
    try:
        _power_off(lab, "POPA-AGG")
        reach = await check(_target(lab, "POPA-AGG"), 1.0)
        assert not reach.ok and reach.kind in ("unreachable", "refused"), reach
    finally:
        await lab.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: nothing listens there


async def test_a_closed_port_is_refused() -> None:
    reach = await check(ReachTarget(name="x", address="127.0.0.1", api_port=_closed_port()), 5.0)
    assert not reach.ok and reach.kind == "refused", reach


async def test_snmpv3_discovery_needs_no_credentials(snmpsim: Simulator) -> None:  # noqa: F811
    target = ReachTarget(name="v3", address="127.0.0.1", snmp_port=snmpsim.port, snmp_version="3")
    assert (await check(target, 5.0)).ok


@pytest.mark.parametrize("version", ["2c", "3"])
async def test_snmp_to_nothing_times_out(version: str) -> None:
    # A UDP port nobody listens on answers with ICMP port unreachable on loopback: refused at once.
    reach = await check(ReachTarget(name="x", address="127.0.0.1", snmp_port=_closed_port(), snmp_version=version,
                                    community="public"), 2.0)
    assert not reach.ok and reach.kind in ("refused", "timeout"), reach
