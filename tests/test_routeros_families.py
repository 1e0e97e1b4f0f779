"""RouterOSCollector: health sensors, link rates, route count, neighbours and probes.

Against the lab RouterOS API server over real TCP (v6 and v7 shapes), plus the
reply parsers fed with real reply rows from shared/fixtures/routeros-api.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ispvm_tui.clock import ScaledClock
from ispvm_tui.collectors.results import HealthSensor, Neighbor, PollResult, ProbeResult
from ispvm_tui.collectors.routeros import (
    ApiTarget,
    ProbeSpec,
    RouterOSCollector,
    _neighbor,
    _probe_result,
    _sensor_v7,
    _sensors_v6,
)
from ispvm_tui.lab.routeros_api_server import Misbehaviour
from ispvm_tui.lab.sim import SimDevice, SimNeighbor, SimSensor
from tests.test_routeros_lab_api import HOST, PASSWORD, USER, Lab, make_device, start_lab

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "routeros-api" / "napalm-ros"
TIMEOUT = 0.5
NEAR, UPSTREAM, NOWHERE = "10.0.12.2", "198.51.100.1", "192.0.2.200"


def collector(lab: Lab, *probes: ProbeSpec, timeout: float = TIMEOUT) -> RouterOSCollector:
    target = ApiTarget(name="EDGE1", address=HOST, username=USER, password=PASSWORD, port=lab.port, probes=probes)
    return RouterOSCollector(target, clock=ScaledClock(speed=1.0), timeout=timeout)


async def poll_once(device: SimDevice, *probes: ProbeSpec, misbehaviour: Misbehaviour | None = None,
                    timeout: float = TIMEOUT) -> PollResult:
    lab = await start_lab(device)
    if misbehaviour is not None:
        lab.server.misbehaviour = misbehaviour
    col = collector(lab, *probes, timeout=timeout)
    try:
        return await col.poll()
    finally:
        await col.close()
        await lab.server.stop()


@pytest.fixture
async def lab7() -> AsyncIterator[Lab]:
    lab = await start_lab(make_device(7, extra_ports=True))
    yield lab
    await lab.server.stop()


def wire(row: dict) -> dict[str, str]:
    """A fixture row (librouteros-cast values) back to the strings that travel on the wire."""
    return {k: ("true" if v else "false") if isinstance(v, bool) else str(v) for k, v in row.items()}


def fixture_rows(case: str, command: str) -> list[dict[str, str]]:
    data = json.loads((FIXTURES / case / f"_{command}.json").read_text())["data"]
    return [wire(r) for r in data]


# ---- health sensors -------------------------------------------------------------------


@pytest.mark.parametrize("major", [6, 7])
async def test_sensors_both_shapes(major: int) -> None:
    device = make_device(major)
    device.sensors[4] = SimSensor("psu2-state", state="fail")
    device.sensors.append(SimSensor("power-consumption", 38.5, "W"))
    result = await poll_once(device)
    assert result.ok and result.stale == {}, result.stale
    assert result.sensors is not None
    sensors = {s.name: s for s in result.sensors}
    # v6 fan settings (fan-mode, use-fan, active-fan) are not sensors
    assert list(sensors) == ["voltage", "temperature", "cpu-temperature", "fan1-speed", "fan2-speed",
                             "psu1-state", "psu2-state", "power-consumption"]
    assert sensors["voltage"] == HealthSensor("voltage", 24.1, "V")
    assert sensors["temperature"] == HealthSensor("temperature", 41.0, "C")
    assert sensors["cpu-temperature"] == HealthSensor("cpu-temperature", 52.0, "C")
    assert sensors["fan1-speed"] == HealthSensor("fan1-speed", 5880.0, "RPM")
    assert sensors["psu1-state"] == HealthSensor("psu1-state", None, None, "ok")
    assert sensors["psu2-state"] == HealthSensor("psu2-state", None, None, "fail")
    assert sensors["power-consumption"] == HealthSensor("power-consumption", 38.5, "W")
    assert result.system is not None and (result.system.temperature_c, result.system.voltage_v) == (41.0, 24.1)


@pytest.mark.parametrize("major", [6, 7])
async def test_chr_without_sensors_is_not_an_error(major: int) -> None:
    device = make_device(major)
    device.board, device.architecture = "CHR", "x86_64"
    result = await poll_once(device)
    assert result.ok and result.stale == {} and result.sensors == ()
    assert result.system is not None and result.system.temperature_c is None and result.system.voltage_v is None


async def test_health_trap_marks_only_health_stale() -> None:
    result = await poll_once(make_device(7), misbehaviour=Misbehaviour(trap_paths=frozenset({"/system/health"})))
    assert result.ok and result.sensors is None and set(result.stale) == {"health"}
    assert result.system is not None and result.system.identity == "EDGE1" and result.system.temperature_c is None


def test_v7_sensor_rows_from_a_ccr2004() -> None:
    rows = fixture_rows("test_get_environment/CCR2004-16G-2S+", "system_health_print")
    sensors = {s.name: s for s in map(_sensor_v7, rows) if s is not None}
    assert len(sensors) == 9
    assert sensors["cpu-temperature"] == HealthSensor("cpu-temperature", 58.0, "C")
    assert sensors["fan2-speed"] == HealthSensor("fan2-speed", 6030.0, "RPM")
    assert sensors["psu2-state"] == HealthSensor("psu2-state", None, None, "fail")
    assert _sensor_v7({"state": "disabled"}) is None  # a settings row some versions add


def test_v6_health_row_keeps_readings_and_drops_settings() -> None:
    # attribute names and values as a v6 CCR1072 prints them (units stripped, as over the API)
    row = {"cpu-overtemp-check": "yes", "cpu-overtemp-threshold": "100", "cpu-overtemp-startup-delay": "1m",
           "cpu-temperature": "46", "power-consumption": "62.9", "board-temperature1": "31",
           "psu1-voltage": "12.1", "psu2-voltage": "0", "psu1-current": "5.2", "fan1-speed": "6375",
           "fan-mode": "auto", "use-fan": "main", "active-fan": "main", "psu1-state": "ok", "current": "1100"}
    assert _sensors_v6(row) == (
        HealthSensor("cpu-temperature", 46.0, "C"), HealthSensor("power-consumption", 62.9, "W"),
        HealthSensor("board-temperature1", 31.0, "C"), HealthSensor("psu1-voltage", 12.1, "V"),
        HealthSensor("psu2-voltage", 0.0, "V"), HealthSensor("psu1-current", 5.2, "A"),
        HealthSensor("fan1-speed", 6375.0, "RPM"), HealthSensor("psu1-state", None, None, "ok"),
        HealthSensor("current", 1100.0, "mA"),
    )


# ---- interface speed, routes, neighbours ---------------------------------------------------


@pytest.mark.parametrize("major", [6, 7])
async def test_interface_speeds_are_the_negotiated_rates(major: int) -> None:
    result = await poll_once(make_device(major, extra_ports=True))
    assert result.ok and result.stale == {}, result.stale
    speeds = {i.name: i.speed_bps for i in result.interfaces}
    assert speeds == {
        "ether1": 1_000_000_000, "ether2": 1_000_000_000,
        "ether3": None, "ether4": None,  # no link (down, disabled): no rate
        "sfp-sfpplus1": 10_000_000_000, "ether5": 100_000_000,
        "vlan100": None,  # not Ethernet
    }


async def test_monitor_trap_keeps_interfaces_without_speed(lab7: Lab) -> None:
    lab7.server.misbehaviour = Misbehaviour(trap_paths=frozenset({"/interface/ethernet/monitor"}))
    col = collector(lab7)
    result = await col.poll()
    assert result.ok and set(result.stale) == {"ethernet"}
    assert len(result.interfaces) == 7 and all(i.speed_bps is None for i in result.interfaces)
    await col.close()


@pytest.mark.parametrize("major", [6, 7])
async def test_route_count_is_counted_not_fetched(major: int) -> None:
    device = make_device(major)
    device.route_count = 900_000  # a full table: fetching it would take far longer than the timeout
    result = await poll_once(device)
    assert result.ok and result.route_count == 900_000 and result.duration_s < TIMEOUT


async def test_route_and_neighbour_traps_are_isolated(lab7: Lab) -> None:
    lab7.server.misbehaviour = Misbehaviour(trap_paths=frozenset({"/ip/route", "/ip/neighbor"}))
    col = collector(lab7, ProbeSpec(NEAR, count=2))
    result = await col.poll()
    assert result.ok and set(result.stale) == {"routes", "neighbors"}
    assert result.route_count is None and result.neighbors is None
    assert result.sensors and result.bgp and result.probes[0].received == 2
    lab7.server.misbehaviour = Misbehaviour()
    again = await col.poll()
    assert again.stale == {} and again.route_count == lab7.device.route_count
    await col.close()


@pytest.mark.parametrize("major", [6, 7])
async def test_neighbours_match_the_model(major: int) -> None:
    device = make_device(major)
    device.neighbors.append(SimNeighbor("ether1", "upstream-a", "198.51.100.1", "00:0C:42:AA:BB:01",
                                        version="6.48.6 (long-term)", board="CCR1009-7G-1C-1S+"))
    result = await poll_once(device)
    assert result.ok and result.neighbors is not None
    protocol = "lldp" if major >= 7 else None  # only v7 says how a neighbour was found
    assert result.neighbors == tuple(
        Neighbor(local_interface=nb.interface, remote_identity=nb.identity, remote_interface=nb.interface_name or None,
                 remote_address=nb.address, remote_mac=nb.mac, platform=nb.platform, protocol=protocol)
        for nb in device.neighbors
    )


def test_neighbour_rows_from_fixtures() -> None:
    (bridged,) = fixture_rows("test_get_lldp_neighbors/with_parent", "ip_neighbor_print")
    assert _neighbor(bridged) == Neighbor(
        local_interface="ether3", remote_identity="sw", remote_interface="ether1", remote_address="172.31.1.12",
        remote_mac="4C:5E:0C:12:AA:CC", platform="MikroTik", protocol=None)
    (phone,) = fixture_rows("test_get_lldp_neighbors/missing_interface-name", "ip_neighbor_print")
    got = _neighbor(phone)
    assert got is not None and got.remote_interface is None and got.platform is None
    assert _neighbor({**bridged, "discovered-by": "cdp,mndp"}).protocol == "mndp"  # type: ignore[union-attr]


# ---- probes --------------------------------------------------------------------------------


@pytest.mark.parametrize("major", [6, 7])
async def test_probe_to_a_reachable_address(major: int) -> None:
    result = await poll_once(make_device(major), ProbeSpec(NEAR))
    assert result.ok and result.stale == {}
    (probe,) = result.probes
    assert (probe.target, probe.sent, probe.received, probe.loss_pct, probe.error) == (NEAR, 5, 5, 0.0, None)
    if major >= 7:  # echoes of 0.8, 1.1, 0.8, 1.1, 0.8 ms
        assert (probe.rtt_min_ms, probe.rtt_avg_ms, probe.rtt_max_ms, probe.jitter_ms) == (0.8, 0.92, 1.1, 0.3)
    else:  # v6 reports whole milliseconds: 0, 1, 0, 1, 0
        assert (probe.rtt_min_ms, probe.rtt_avg_ms, probe.rtt_max_ms, probe.jitter_ms) == (0.0, 0.0, 1.0, 1.0)
    assert result.duration_s < TIMEOUT


async def test_probe_to_an_unreachable_address() -> None:
    result = await poll_once(make_device(7), ProbeSpec(NOWHERE, count=3))
    assert result.ok
    assert result.probes == (ProbeResult(target=NOWHERE, sent=3, received=0, loss_pct=100.0),)


async def test_several_probes_share_a_short_timeout() -> None:
    specs = (ProbeSpec(NEAR), ProbeSpec(UPSTREAM, count=10, size=1400), ProbeSpec(NOWHERE, count=4))
    t0 = time.monotonic()
    result = await poll_once(make_device(7), *specs, timeout=0.6)
    assert time.monotonic() - t0 < 0.6 + 0.1
    assert result.ok and [(p.target, p.sent, p.received, p.error) for p in result.probes] == [
        (NEAR, 5, 5, None), (UPSTREAM, 10, 10, None), (NOWHERE, 4, 0, None)]
    assert result.probes[1].rtt_min_ms == 9.4


async def test_probe_that_cannot_fit_is_skipped_not_fatal() -> None:
    # 100 echoes cannot fit in what a 0.5 s poll has left, even at the 10 ms minimum interval
    result = await poll_once(make_device(7), ProbeSpec(NEAR, count=100), ProbeSpec(NEAR, count=2))
    assert result.ok and result.stale == {}
    skipped, fine = result.probes
    assert skipped.error is not None and skipped.error.startswith("skipped") and skipped.sent == 0
    assert fine.error is None and fine.received == 2


async def test_ping_trap_is_a_probe_error_and_the_poll_is_ok(lab7: Lab) -> None:
    lab7.server.misbehaviour = Misbehaviour(trap_paths=frozenset({"/ping"}))
    col = collector(lab7, ProbeSpec(NEAR), ProbeSpec(UPSTREAM))
    result = await col.poll()
    api = col._api
    assert result.ok and result.error is None and result.stale == {}
    assert result.system is not None and result.interfaces and result.sensors and result.neighbors
    for probe in result.probes:
        assert probe.error is not None and "/ping refused" in probe.error and "action timed out" in probe.error
        assert PASSWORD not in probe.error and probe.sent == 0
    assert (await col.poll()).ok and col._api is api  # a trap does not cost the connection
    await col.close()


async def test_path_dark_during_the_ping_is_a_probe_error(lab7: Lab) -> None:
    model = lab7.model
    real_ping = model.ping

    def ping_then_go_dark(device: str, target: str) -> float | None:
        model.up = False  # everything after the first echo is lost on the way back
        return real_ping(device, target)

    model.ping = ping_then_go_dark  # type: ignore[method-assign]
    col = collector(lab7, ProbeSpec(NEAR))
    t0 = time.monotonic()
    result = await col.poll()
    assert time.monotonic() - t0 < TIMEOUT + 0.1
    assert result.ok and result.system is not None
    (probe,) = result.probes
    assert probe.error is not None and "no end of /ping" in probe.error
    model.up = True
    model.ping = real_ping  # type: ignore[method-assign]
    assert (await col.poll()).probes[0].received == 5  # reconnected for the next poll
    await col.close()


def test_ping_rows_from_fixtures() -> None:
    v7 = _probe_result(ProbeSpec("127.0.0.1"), fixture_rows("test_ping/7.x", "ping"))
    assert (v7.sent, v7.received, v7.loss_pct, v7.error) == (5, 5, 0.0, None)
    assert (v7.rtt_min_ms, v7.rtt_avg_ms, v7.rtt_max_ms) == (9.173, 9.36, 9.728)
    # |9.237-9.445| + |9.173-9.237| + |9.217-9.173| + |9.728-9.217|, over 4
    assert v7.jitter_ms == pytest.approx(0.207)
    local = _probe_result(ProbeSpec("127.0.0.1"), fixture_rows("test_ping/localhost", "ping"))
    assert (local.sent, local.loss_pct, local.rtt_max_ms, local.jitter_ms) == (5, 0.0, 0.0, 0.0)


def test_ping_rows_with_losses() -> None:
    rows = [
        {"seq": "0", "host": "10.0.0.9", "size": "56", "ttl": "63", "time": "12ms", "sent": "1", "received": "1",
         "packet-loss": "0", "min-rtt": "12ms", "avg-rtt": "12ms", "max-rtt": "12ms"},
        {"seq": "1", "host": "10.0.0.9", "status": "timeout", "sent": "2", "received": "1", "packet-loss": "50",
         "min-rtt": "12ms", "avg-rtt": "12ms", "max-rtt": "12ms"},
        {"seq": "2", "host": "10.0.0.9", "size": "56", "ttl": "63", "time": "15ms", "sent": "3", "received": "2",
         "packet-loss": "33", "min-rtt": "12ms", "avg-rtt": "13ms500us", "max-rtt": "15ms"},
    ]
    got = _probe_result(ProbeSpec("10.0.0.9", count=3), rows)
    assert (got.sent, got.received, got.loss_pct) == (3, 2, 33.0)
    assert (got.rtt_min_ms, got.rtt_avg_ms, got.rtt_max_ms, got.jitter_ms) == (12.0, 13.5, 15.0, 3.0)
    empty = _probe_result(ProbeSpec("10.0.0.9"), [])
    assert empty.error is not None and empty.sent == 0
