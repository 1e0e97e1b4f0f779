"""The reachability check against real peers: lab routers alive, black-holed and rejecting, a closed port,
and a real SNMPv3 agent (snmpsim) answering an unauthenticated discovery request."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator

import pytest

from ispvm_tui.clock import ScaledClock, SystemClock
from ispvm_tui.collectors.reachability import ReachTarget, check
from ispvm_tui.config import Config, load_rules
from ispvm_tui.demo import start_demo
from ispvm_tui.engine.polling import BACKOFF_AFTER_FAILURES, DeviceSchedule, Poller, build_collectors
from ispvm_tui.engine.rules import RuleEngine
from ispvm_tui.lab.routeros_api_server import Misbehaviour
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import TimelineEntry, load_scenario
from ispvm_tui.secrets import StaticSecrets
from tests.held_faults import held
from tests.test_snmp_fixtures import Simulator, snmpsim  # noqa: F401 - the fixture is used below
from tests.waiting import wait_for


@contextlib.asynccontextmanager
async def _lab(address_base: str, unreachable: str = "drop") -> AsyncIterator[Lab]:
    sc = load_scenario("core-link-cut")
    sc = sc.model_copy(update={"lab": sc.lab.model_copy(update={"unreachable": unreachable})})
    lab = Lab(sc, ScaledClock(1.0), address_base=address_base)
    await lab.start(play=False)
    try:
        yield lab
    finally:
        await lab.stop()


def _target(lab: Lab, name: str) -> ReachTarget:
    _, address, api_port, snmp_port = next(r for r in lab.routers() if r[0] == name)
    return ReachTarget(name=name, address=address, api_port=api_port, snmp_port=snmp_port,
                       community=lab.scenario.lab.community)


def _power_off(lab: Lab, name: str) -> None:
    lab.model.apply(TimelineEntry(at=0, action="device_down", device=name))


async def test_a_live_router_answers_on_both_protocols(address_base: str) -> None:
    async with _lab(address_base) as lab:
        target = _target(lab, "CORE1")
        assert (await check(target, 5.0)).ok
        assert (await check(dataclasses.replace(target, snmp_port=None), 5.0)).ok  # API alone
        assert (await check(dataclasses.replace(target, api_port=None), 5.0)).ok  # SNMP alone
        wrong = dataclasses.replace(target, api_port=None, community="not-the-community")
        assert not (await check(wrong, 1.0)).ok  # a wrong community proves nothing: agents stay silent


async def test_a_black_holed_router_fails_on_the_check_timeout(address_base: str) -> None:
    async with _lab(address_base, "drop") as lab:
        _power_off(lab, "POPA-AGG")
        reach = await check(_target(lab, "POPA-AGG"), 1.0)
        assert not reach.ok and reach.kind == "timeout", reach
        assert "within 1s" in reach.detail  # the check's own timeout ended it, not a poll's


async def test_a_rejecting_path_is_named_unreachable_not_timed_out(address_base: str) -> None:
    # The API is reset at once, SNMP stays silent: the check still waits for SNMP (a router may serve
    # SNMP with its API off), then names the clearest reason, the reset, rather than the silence.
    async with _lab(address_base, "reject") as lab:
        _power_off(lab, "POPA-AGG")
        reach = await check(_target(lab, "POPA-AGG"), 1.0)
        assert not reach.ok and reach.kind in ("unreachable", "refused"), reach


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
async def test_snmp_to_nothing_fails(version: str) -> None:
    # A UDP port nobody listens on answers with ICMP port unreachable on loopback: refused at once.
    reach = await check(ReachTarget(name="x", address="127.0.0.1", snmp_port=_closed_port(), snmp_version=version,
                                    community="public"), 2.0)
    assert not reach.ok and reach.kind in ("refused", "timeout"), reach


def test_the_engine_checks_what_is_behind_a_cut_before_polling_it(address_base: str) -> None:
    """core-link-cut through the real engine: POP-A's routers, cut off behind the fibre, fail by the check
    (its reason in poll_log), and the incident still names the link."""
    run = start_demo(held("core-link-cut"), speed=10.0, address_base=address_base)
    try:
        checked = "SELECT count(*) FROM poll_log WHERE device LIKE 'POPA-%' AND error LIKE 'reachability check:%'"
        assert wait_for(lambda: run.store.query(checked)[0][0] > 0, 60), "no poll ended by a reachability check"
        assert run.engine.poller is not None
        assert any(run.engine.poller.schedules[n].checks for n in ("POPA-AGG", "POPA-ACC1", "POPA-ACC2"))
        assert wait_for(lambda: any("CORE1:ether2--POPA-AGG:ether1" in rc.entity_id
                                    for i in run.engine.snapshot().incidents for rc in i.root_causes), 60)
    finally:
        run.stop()


async def test_dead_routers_back_off_but_the_attach_point_keeps_its_interval() -> None:
    """After a total outage the attach point's answer is the first sign it is over: it is never backed off."""
    port = _closed_port()
    cfg = Config.model_validate({
        "console": {"attach": ["CORE1"]}, "sites": [{"name": "S"}],
        "credentials": {"c": {"username": "u", "password_secret": "pw"}},
        "devices": [{"name": n, "site": "S", "role": "core", "address": "127.0.0.1", "api_port": port,
                     "credential": "c"}
                    for n in ("CORE1", "EDGE1")],
        "links": [{"a": "CORE1:e1", "b": "EDGE1:e1"}],
    })
    clock = SystemClock()
    secrets = StaticSecrets({"pw": "x"})
    schedules = {d.name: DeviceSchedule(d.name, build_collectors(cfg, d, secrets, clock)) for d in cfg.devices}
    seen: list[str] = []

    async def on_results(name: str, results: list) -> None:
        seen.append(name)

    poller = Poller(cfg, clock, schedules, on_results)
    try:
        for _ in range(BACKOFF_AFTER_FAILURES + 2):
            for name in schedules:  # each in its own task, as the scheduler runs them
                await asyncio.create_task(poller.poll_device(name, forced=True))
    finally:
        await poller.stop()
    assert all(s.failures == BACKOFF_AFTER_FAILURES + 2 for s in schedules.values())
    assert schedules["EDGE1"].next_allowed > clock.now()
    assert schedules["CORE1"].next_allowed == 0.0


async def test_a_router_that_answers_the_check_but_is_too_slow_to_poll_is_slow_not_down(address_base: str) -> None:
    """On a loaded host (or a busy router) a full poll can time out while the router plainly answers: that
    poll is 'slow', and the rules count the router as reachable, so it never pages as unreachable."""
    async with _lab(address_base) as lab:
        name, address, api_port, _snmp = next(r for r in lab.routers() if r[0] == "POPA-ACC1")
        cfg = Config.model_validate({
            "console": {"attach": ["CORE1"]}, "sites": [{"name": "S"}],
            "polling": {"timeout_s": 1.0, "check_timeout_s": 1.0},
            "credentials": {"c": {"username": lab.scenario.lab.username, "password_secret": "pw"}},
            "devices": [{"name": name, "site": "S", "role": "access", "address": address, "api_port": api_port,
                         "credential": "c"}],
        })
        clock = SystemClock()
        secrets = StaticSecrets({"pw": lab.scenario.lab.password})
        schedules = {name: DeviceSchedule(name, build_collectors(cfg, cfg.devices[0], secrets, clock))}
        got: list[list] = []

        async def on_results(_name: str, results: list) -> None:
            got.append(results)

        poller = Poller(cfg, clock, schedules, on_results)
        lab.api_servers[name].misbehaviour = Misbehaviour(reply_delay_s=0.15)  # a word: 0.15 s; a poll: 16 x 0.15 s
        rules = RuleEngine(cfg, load_rules(cfg))
        try:
            for _ in range(3):
                await asyncio.create_task(poller.poll_device(name, forced=True))
        finally:
            await poller.stop()
        first, *checked = got
        assert first[0].error_kind == "timeout"  # no check before the first failure: a plain timeout
        assert checked and all(r[0].error_kind == "slow" for r in checked), checked
        assert "answered a reachability check" in (checked[0][0].error or "")
        verdicts = [rules.observe(name, results, 100.0 + 20 * i).reachable for i, results in enumerate(got)]
        assert verdicts == [False, True, True]
        assert not rules.is_firing("device.unreachable", name)


async def test_in_a_storm_every_poll_starts_with_a_check(address_base: str) -> None:
    """Three routers that answered stop answering within an interval: from then on a dead router costs a
    failed check (no poll slot held for a full timeout), and a live one still answers the check and is polled."""
    async with _lab(address_base) as lab:
        routers = {r[0]: r for r in lab.routers()}
        cfg = Config.model_validate({
            "console": {"attach": ["CORE1"]}, "sites": [{"name": "S"}],
            "polling": {"timeout_s": 1.5, "check_timeout_s": 0.5},
            "credentials": {"c": {"username": lab.scenario.lab.username, "password_secret": "pw"}},
            "devices": [{"name": name, "site": "S", "role": "access", "address": address, "api_port": api_port,
                         "credential": "c"} for name, address, api_port, _snmp in routers.values()],
        })
        clock = SystemClock()
        secrets = StaticSecrets({"pw": lab.scenario.lab.password})
        schedules = {d.name: DeviceSchedule(d.name, build_collectors(cfg, d, secrets, clock)) for d in cfg.devices}
        got: dict[str, list] = {}

        async def on_results(name: str, results: list) -> None:
            got[name] = results

        poller = Poller(cfg, clock, schedules, on_results)
        assert poller.storm_threshold == 3  # 7 routers: 2 % of them is less than 3
        dead = ["POPA-ACC1", "POPA-ACC2", "POPB-ACC1", "POPB-AGG"]
        try:
            for name in schedules:  # everyone answers first
                await asyncio.create_task(poller.poll_device(name, forced=True))
            assert all(r.ok for results in got.values() for r in results) and not poller.in_storm()
            for name in dead:
                _power_off(lab, name)
            for name in dead[:3]:  # the first three: full polls that time out (nothing says storm yet)
                await asyncio.create_task(poller.poll_device(name, forced=True))
                assert schedules[name].checks == 0 and got[name][0].error_kind == "timeout"
            assert poller.in_storm()
            await asyncio.create_task(poller.poll_device(dead[3], forced=True))
            assert schedules[dead[3]].checks == 1, "the fourth dead router failed a check, not a full poll"
            assert "reachability check" in (got[dead[3]][0].error or "")
            await asyncio.create_task(poller.poll_device("EDGE1", forced=True))
            assert got["EDGE1"][0].ok and schedules["EDGE1"].checks == 0  # checked, answered, polled
        finally:
            await poller.stop()
