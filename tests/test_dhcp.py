"""DHCP: each server's leases (all and bound) and its pool's use, counted on the router over the RouterOS API
(v6 and v7 alike), the total over MIKROTIK-MIB, and the pool rule. The real recordings' lease counts are checked
in test_snmp_fixtures.py.
"""

from __future__ import annotations

import pytest
from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

from ispvm_tui.collectors.results import ALL_SERVERS, DhcpServer, PollResult
from ispvm_tui.collectors.routeros import pool_size
from ispvm_tui.engine.api import DeviceDetail, DeviceView, DhcpRow
from ispvm_tui.lab.sim import SimDevice, SimDhcpServer
from ispvm_tui.screens.devices import render_summary
from tests.test_routeros_families import poll_once
from tests.test_routeros_lab_api import make_device
from tests.test_rules import _engine, fired, resolved
from tests.test_snmp_lab import poll_over_snmp


def with_servers(major: int) -> SimDevice:
    device = make_device(major)
    device.dhcp_servers = [
        SimDhcpServer("subscribers", "bridge-subs", "subs-pool", "10.20.0.10-10.20.0.249", leases=231, bound=228),
        SimDhcpServer("mgmt", "ether4", "mgmt-pool", "10.99.0.0/28", leases=3, bound=3),
    ]
    return device


@pytest.mark.parametrize("major", [6, 7])
async def test_the_api_counts_each_servers_leases_and_pool(major: int) -> None:
    result = await poll_once(with_servers(major))

    assert result.ok, result.error
    assert "dhcp" not in result.stale
    assert result.dhcp == (DhcpServer("subscribers", "bridge-subs", 231, 228, "subs-pool", 240, 231),
                           DhcpServer("mgmt", "ether4", 3, 3, "mgmt-pool", 16, 3))


async def test_a_router_without_dhcp_has_none() -> None:
    result = await poll_once(make_device(7))
    assert result.ok and result.dhcp == ()


def test_pool_sizes() -> None:
    assert pool_size("10.0.0.10-10.0.0.250") == 241
    assert pool_size("10.0.0.10-10.0.0.19,10.0.1.0/24,10.0.2.7") == 10 + 256 + 1
    assert pool_size("") is None and pool_size(None) is None and pool_size("garbage") is None


@pytest.mark.asyncio(loop_scope="module")
async def test_snmp_counts_every_lease_together(snmp_engine: SnmpEngine) -> None:
    device = with_servers(7)
    result = await poll_over_snmp(device, snmp_engine)
    assert result.ok, result.error
    assert result.dhcp == (DhcpServer(ALL_SERVERS, leases=234),)


def dhcp_poll(device: str, used: int) -> list[PollResult]:
    server = DhcpServer("subscribers", "bridge-subs", used, used, "subs-pool", 240, used)
    return [PollResult(device=device, collector="api", started_at=0, duration_s=0.01, ok=True, dhcp=(server,))]


def test_a_nearly_full_pool_fires_and_clears_with_hysteresis() -> None:
    rules = _engine()
    assert fired(rules.observe("R2", dhcp_poll("R2", 230), 0)) == []  # 95.8 %
    obs = rules.observe("R2", dhcp_poll("R2", 230), 600)  # for = 10m
    assert fired(obs) == ["dhcp_pool_exhausting"]
    assert (obs.transitions[0].alert.entity_type, obs.transitions[0].alert.entity_id) == ("dhcp_pool", "R2:subs-pool")
    assert resolved(rules.observe("R2", dhcp_poll("R2", 210), 700)) == []  # 87.5 %: over the clear threshold 85
    rules.observe("R2", dhcp_poll("R2", 150), 800)
    assert resolved(rules.observe("R2", dhcp_poll("R2", 150), 1400)) == ["dhcp_pool_exhausting"]


def test_the_device_screen_shows_the_pools() -> None:
    view = DeviceView(name="R2", site="T", role="access", address="10.0.0.2", state="up")
    detail = DeviceDetail(device=view, dhcp=(DhcpRow("subscribers", "bridge-subs", 231, 228, "subs-pool", 240, 231),))
    text = render_summary(detail, 0).plain
    assert "subscribers   231 leases (228 bound)  pool subs-pool 231/240 used (96%) full  bridge-subs" in text
