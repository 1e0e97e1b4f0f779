"""LTE: RSRP, RSRQ, SINR (and RSSI, cell, technology) read over the RouterOS API — ``/interface/lte/info`` on
v6, ``/interface/lte/monitor`` on v7 — and MIKROTIK-MIB from the lab's routers, and the rules on them. The real
recordings are checked in test_snmp_fixtures.py; the scenario lte-signal-drop plays the whole path.
"""

from __future__ import annotations

import pytest
from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

from ispvm_tui.collectors.results import InterfaceStat, LteSignal, PollResult
from ispvm_tui.collectors.routeros import _lte_signal
from ispvm_tui.engine.api import DeviceDetail, DeviceView, LteRow
from ispvm_tui.lab.sim import SimDevice, SimInterface, SimLte
from ispvm_tui.screens.devices import render_summary
from tests.test_routeros_families import poll_once
from tests.test_routeros_lab_api import make_device
from tests.test_rules import _engine, fired, resolved
from tests.test_snmp_lab import poll_over_snmp

MODEM = SimLte(rssi_dbm=-69.0, rsrp_dbm=-98.0, rsrq_db=-11.0, sinr_db=9.0, cell_id="2100006",
               technology="Evolved 3G (LTE)")


def with_modem(major: int) -> SimDevice:
    device = make_device(major)
    device.interfaces["lte1"] = SimInterface("lte1", 9, "48:A9:8A:00:00:09", type="lte", lte=MODEM)
    return device


EXPECTED = LteSignal("lte1", -69.0, -98.0, -11.0, 9.0, "2100006", "Evolved 3G (LTE)")


@pytest.mark.parametrize("major", [6, 7])
async def test_the_api_reads_the_modem_with_the_command_of_its_version(major: int) -> None:
    # The lab answers only the command of the router's version (info on v6, monitor on v7), as RouterOS does.
    result = await poll_once(with_modem(major))

    assert result.ok, result.error
    assert "lte" not in result.stale
    assert result.lte == (EXPECTED,)


async def test_a_router_without_lte_collects_none_and_nothing_is_stale() -> None:
    result = await poll_once(make_device(7))
    assert result.ok and result.lte is None and "lte" not in result.stale


@pytest.mark.asyncio(loop_scope="module")
async def test_snmp_reads_the_same_modem(snmp_engine: SnmpEngine) -> None:
    device = with_modem(7)
    result = await poll_over_snmp(device, snmp_engine)
    assert result.ok, result.error
    assert result.lte == (EXPECTED,)


def test_api_rows_with_units() -> None:
    # The terminal's form: units after the numbers; a modem that leaves a value out gives None, not 0.
    assert _lte_signal({"name": "lte1", "rsrp": "-98dBm", "rsrq": "-11dB", "sinr": "9dB"}) == LteSignal(
        "lte1", None, -98.0, -11.0, 9.0)


def lte_poll(device: str, signal: LteSignal) -> list[PollResult]:
    return [PollResult(device=device, collector="api", started_at=0, duration_s=0.01, ok=True,
                       interfaces=(InterfaceStat(signal.interface, admin_up=True, oper_up=True),), lte=(signal,))]


def test_weak_signal_and_low_sinr_fire_on_any_lte_interface() -> None:
    rules = _engine()
    # R2:lte1 is no link end and matches no watch glob: LTE rules watch every modem all the same.
    bad = LteSignal("lte1", rsrp_dbm=-116.0, sinr_db=-2.0)
    assert fired(rules.observe("R2", lte_poll("R2", bad), 0)) == []
    assert sorted(fired(rules.observe("R2", lte_poll("R2", bad), 300))) == ["lte_signal_weak", "lte_sinr_low"]
    edge = LteSignal("lte1", rsrp_dbm=-107.0, sinr_db=1.0)  # better, not past the clear thresholds (-105, 3)
    assert resolved(rules.observe("R2", lte_poll("R2", edge), 360)) == []
    good = LteSignal("lte1", rsrp_dbm=-90.0, sinr_db=12.0)
    rules.observe("R2", lte_poll("R2", good), 420)
    assert sorted(resolved(rules.observe("R2", lte_poll("R2", good), 720))) == ["lte_signal_weak", "lte_sinr_low"]


def test_the_device_screen_shows_the_radio_link() -> None:
    view = DeviceView(name="CPE", site="FARM", role="cpe", address="10.0.0.9", state="up")
    detail = DeviceDetail(device=view, lte=(LteRow("lte1", -93.0, -117.0, -14.0, -3.0, "2100006", "LTE"),))
    text = render_summary(detail, 0).plain
    assert "LTE\n" in text
    assert "lte1          RSRP -117 dBm weak RSRQ -14 dB SINR -3 dB low RSSI -93 dBm  cell 2100006  LTE" in text
