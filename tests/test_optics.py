"""SFP optics (DOM): read over the RouterOS API and MIKROTIK-MIB from the lab's routers (v6 and v7), the
readings' forms, and the rules on them. The real recordings are checked in test_snmp_fixtures.py.
"""

from __future__ import annotations

import dataclasses

import pytest
from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

from ispvm_tui.app import IspvmApp
from ispvm_tui.collectors.results import InterfaceStat, OpticalModule, PollResult
from ispvm_tui.collectors.routeros import _dom_reading, _optical_module
from ispvm_tui.demo import start_demo
from ispvm_tui.engine.api import IncidentView, OpticRow
from ispvm_tui.lab.scenario import load_scenario
from ispvm_tui.lab.sim import NO_LIGHT_DBM, SimDevice, SimInterface, SimSfp
from ispvm_tui.screens.devices import DeviceDetailScreen
from tests.test_console import until
from tests.test_console_devices import detail_text
from tests.test_routeros_families import poll_once
from tests.test_routeros_lab_api import make_device
from tests.test_rules import _config, _engine, fired, resolved
from tests.test_snmp_lab import poll_over_snmp

UP = SimSfp(vendor="FS", part_number="SFP-10GSR-85", wavelength_nm=850.0, temperature_c=41.0, supply_v=3.284,
            tx_bias_ma=6.2, tx_power_dbm=-2.41, rx_power_dbm=-3.127)
DARK = SimSfp(temperature_c=36.0, supply_v=3.31, tx_bias_ma=5.9, tx_power_dbm=-2.2, rx_power_dbm=-4.0)


def with_cages(major: int) -> SimDevice:
    """The lab's EDGE1 with three cages: a module on a working link, one on a dark fibre, an empty one."""
    device = make_device(major)
    device.interfaces.update({
        "sfp-sfpplus1": SimInterface("sfp-sfpplus1", 5, "48:A9:8A:00:00:05", speed_bps=10_000_000_000,
                                     sfp=dataclasses.replace(UP)),
        "sfp-sfpplus2": SimInterface("sfp-sfpplus2", 6, "48:A9:8A:00:00:06", speed_bps=10_000_000_000,
                                     running=False, sfp=dataclasses.replace(DARK)),
        "sfp-sfpplus3": SimInterface("sfp-sfpplus3", 7, "48:A9:8A:00:00:07", running=False,
                                     sfp=SimSfp(present=False)),
    })
    return device


def expected(vendor: bool) -> tuple[OpticalModule, ...]:
    def module(name: str, sfp: SimSfp, rx: float, rx_loss: bool) -> OpticalModule:
        return OpticalModule(name, True, rx_loss, False, rx, sfp.tx_power_dbm, sfp.temperature_c, sfp.supply_v,
                             sfp.tx_bias_ma, sfp.wavelength_nm, sfp.vendor if vendor else None,
                             sfp.part_number if vendor else None)

    return (module("sfp-sfpplus1", UP, UP.rx_power_dbm, False),
            module("sfp-sfpplus2", DARK, NO_LIGHT_DBM, True),
            OpticalModule("sfp-sfpplus3", present=False))


@pytest.mark.parametrize("major", [6, 7])
async def test_the_api_reads_every_cage(major: int) -> None:
    result = await poll_once(with_cages(major))

    assert result.ok, result.error
    assert result.stale == {}
    assert result.optics == expected(vendor=True)


@pytest.mark.parametrize("major", [6, 7])
@pytest.mark.asyncio(loop_scope="module")
async def test_snmp_reads_the_same_cages(snmp_engine: SnmpEngine, major: int) -> None:
    device = with_cages(major)
    result = await poll_over_snmp(device, snmp_engine)

    assert result.ok, result.error
    assert "optics" not in result.stale
    # MIKROTIK-MIB has no vendor or part number, and gives temperature and bias in whole units.
    whole = tuple(dataclasses.replace(m, temperature_c=round(m.temperature_c), tx_bias_ma=round(m.tx_bias_ma))
                  if m.present and m.temperature_c is not None and m.tx_bias_ma is not None else m
                  for m in expected(vendor=False))
    assert result.optics == whole


def test_api_readings_with_or_without_units_and_lanes() -> None:
    assert _dom_reading("-5.673") == -5.673
    assert _dom_reading("-5.673dBm") == -5.673  # as the terminal prints them
    assert _dom_reading("38C", max) == 38.0
    assert _dom_reading("-2.1,-7.4,-3.0,-2.9") == -7.4  # a QSFP's lanes: the weakest counts
    assert _dom_reading("41,44,40,39", max) == 44.0  # ... the hottest
    assert _dom_reading("") is None and _dom_reading(None) is None and _dom_reading("n/a") is None
    assert _optical_module({"name": "sfp1", "sfp-module-present": "false", "sfp-rx-power": "0"}) == OpticalModule(
        "sfp1", present=False)


# ---- rules -----------------------------------------------------------------------------------------------------

def optics_poll(device: str, itf: InterfaceStat, module: OpticalModule) -> list[PollResult]:
    return [PollResult(device=device, collector="api", started_at=0, duration_s=0.01, ok=True, interfaces=(itf,),
                       optics=(module,))]


def test_an_overheating_module_fires_after_its_duration_and_clears_with_hysteresis() -> None:
    rules = _engine()
    port = InterfaceStat("ether1", admin_up=True, oper_up=True)  # R1:ether1 is a link end: watched
    hot = OpticalModule("ether1", rx_power_dbm=-3.0, temperature_c=82.0)
    assert fired(rules.observe("R1", optics_poll("R1", port, hot), 0)) == []
    obs = rules.observe("R1", optics_poll("R1", port, hot), 120)  # for = 2m
    assert fired(obs) == ["optic_temperature_high"]
    assert obs.transitions[0].alert.entity_type == "interface"
    assert obs.transitions[0].alert.entity_id == "R1:ether1"
    warm = dataclasses.replace(hot, temperature_c=72.0)  # under 75, over the clear threshold 70
    assert resolved(rules.observe("R1", optics_poll("R1", port, warm), 180)) == []
    cool = dataclasses.replace(hot, temperature_c=50.0)
    assert resolved(rules.observe("R1", optics_poll("R1", port, cool), 240)) == []
    assert resolved(rules.observe("R1", optics_poll("R1", port, cool), 540)) == ["optic_temperature_high"]


def test_weak_light_counts_only_with_the_link_up_and_on_watched_ports() -> None:
    rules = _engine()
    weak = OpticalModule("ether1", rx_power_dbm=-24.5, temperature_c=40.0)
    down = InterfaceStat("ether1", admin_up=True, oper_up=False)
    for t in (0, 120, 240):  # no light on a dark link: interface_down's business, not this rule's
        assert "optic_rx_low" not in fired(rules.observe("R1", optics_poll("R1", down, weak), t))
    up = InterfaceStat("ether1", admin_up=True, oper_up=True)
    assert fired(rules.observe("R1", optics_poll("R1", up, weak), 300)) == []
    assert fired(rules.observe("R1", optics_poll("R1", up, weak), 420)) == ["optic_rx_low"]
    # A port nobody watches (R2:ether7: no link, no watch glob, no uplink comment) pages nobody...
    loose = InterfaceStat("ether7", admin_up=True, oper_up=True)
    module = dataclasses.replace(weak, interface="ether7")
    for t in (0, 300):
        assert fired(rules.observe("R2", optics_poll("R2", loose, module), t)) == []
    # ... unless an override widens the rule to every port.
    widened = _engine(_config(rules={"overrides": [{"rule": "optic_rx_low", "scope": "all"}]}))
    widened.observe("R2", optics_poll("R2", loose, module), 0)
    assert fired(widened.observe("R2", optics_poll("R2", loose, module), 300)) == ["optic_rx_low"]


def test_an_empty_cage_raises_nothing() -> None:
    rules = _engine()
    port = InterfaceStat("ether1", admin_up=True, oper_up=True)
    for t in range(0, 600, 60):
        assert rules.observe("R1", optics_poll("R1", port, OpticalModule("ether1", present=False)), t).transitions \
            == []


def test_the_lab_darkens_a_cage_whose_link_is_down() -> None:
    itf = SimInterface("sfp1", 1, "00:00:00:00:00:01", sfp=SimSfp(rx_power_dbm=-3.0))
    assert itf.sfp_rx_dbm() == -3.0
    itf.running = False
    assert itf.sfp_rx_dbm() == NO_LIGHT_DBM
    assert SimInterface("ether1", 2, "00:00:00:00:00:02").sfp_rx_dbm() is None


# ---- end to end: the lab's scenario, the engine, the console -----------------------------------------------

async def test_an_overheating_module_on_the_device_screen_and_as_an_incident(address_base: str) -> None:
    run = start_demo(load_scenario("sfp-overheat"), speed=10.0, address_base=address_base)
    try:
        app = IspvmApp(run.engine, actor="noc")
        async with app.run_test(size=(120, 40)) as pilot:
            app.open_device("POPA-AGG")
            await until(pilot, lambda: isinstance(app.screen, DeviceDetailScreen))
            screen = app.screen
            assert isinstance(screen, DeviceDetailScreen)

            def hot() -> OpticRow | None:
                detail = screen.detail
                module = next((m for m in detail.optics or () if m.interface == "sfp-sfpplus1"), None) if detail \
                    else None
                return module if module is not None and module.temperature_c == 84 else None

            # The module heats at t=60 s of the scenario: 6 s at x10, then the next poll and screen refresh.
            await until(pilot, hot, timeout=90)
            text = detail_text(screen)
            assert "Optics (1 of 1 cages with a module)" in text
            line = next(line for line in text.splitlines() if line.strip().startswith("sfp-sfpplus1"))
            assert "84 C hot" in line and "rx -" in line and "dBm" in line and "850 nm" in line, line

            def incident() -> IncidentView | None:
                snap = app.snapshot
                return next((i for i in snap.incidents if i.status != "closed"), None) if snap else None

            await until(pilot, incident, timeout=120)  # for = 2m of scenario time, 12 s here
            opened = incident()
            assert opened is not None
            assert [(c.entity_type, c.entity_id) for c in opened.root_causes][:1] == [
                ("interface", "POPA-AGG:sfp-sfpplus1")]
            assert "temperature" in opened.title
    finally:
        run.stop()
