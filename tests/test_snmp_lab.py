"""The lab SNMP agent against the real SNMP collector (and plain pysnmp), on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    bulk_cmd,
    bulk_walk_cmd,
    get_cmd,
    next_cmd,
)
from pysnmp.proto import rfc1905

from ispvm_tui.clock import ScaledClock
from ispvm_tui.collectors.results import InterfaceStat, Neighbor, PollResult
from ispvm_tui.collectors.snmp import SnmpCollector, SnmpTarget
from ispvm_tui.lab import ber
from ispvm_tui.lab.sim import LabModelLike, RouterHandle, SimBgpPeer, SimDevice, SimInterface, SimNeighbor
from ispvm_tui.lab.snmp_agent import SnmpAgent
from ispvm_tui.lab.snmp_mibs import LLDP_REM_ENTRY

SPEED = 50.0  # simulated seconds per real second: counters move fast, tests stay short
RX_BPS = 8_000_000  # bytes per simulated second on every running interface
TX_BPS = 2_000_000
PKT_SIZE = 1000
COMMUNITY = "lab-secret"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
IF_ALIAS = "1.3.6.1.2.1.31.1.1.1.18"

# One event loop for the module, so one SnmpEngine (it loads its MIBs once, ~0.4 s)
# serves every test, as one engine serves every collector in the product.
pytestmark = pytest.mark.asyncio(loop_scope="module")


class RateModel(LabModelLike):
    """Advances every running interface at a fixed rate on a scaled clock."""

    def __init__(self, device: SimDevice, clock: ScaledClock) -> None:
        self.device = device
        self.clock = clock
        self.up = True
        self._last = clock.now()

    def now(self) -> float:
        return self.clock.now()

    def answering(self, device: str) -> bool:
        return self.up and device == self.device.name

    def advance(self, min_step: float = 0.0) -> None:
        now = self.clock.now()
        elapsed, self._last = max(0.0, now - self._last), now
        for itf in self.device.interfaces.values():
            if itf.running and not itf.disabled:
                itf.rx_bytes += int(RX_BPS * elapsed)
                itf.tx_bytes += int(TX_BPS * elapsed)
                itf.rx_packets += int(RX_BPS * elapsed / PKT_SIZE)
                itf.tx_packets += int(TX_BPS * elapsed / PKT_SIZE)


def make_device(clock: ScaledClock) -> SimDevice:
    device = SimDevice(
        name="core-1",
        address="127.0.0.1",
        ros_major=7,
        version="7.16.2",
        board="CCR2004-16G-2S+",
        serial="HEX1234567",
        boot_time=clock.now() - 3600,
        cpu_load=17,
        total_memory=4 * 1024**3,
        free_memory=3 * 1024**3,
        temperature_c=41.0,
        voltage_v=24.1,
    )
    interfaces = [
        # Starts above 2**32 so the 32-bit view must wrap.
        SimInterface("ether1", 1, "4C:5E:0C:11:22:01", comment="uplink to core-2", rx_bytes=5 * 2**32 + 7),
        SimInterface("ether2", 2, "4C:5E:0C:11:22:02", disabled=True, running=False),
        SimInterface("sfp-sfpplus1", 3, "4C:5E:0C:11:22:03", speed_bps=10_000_000_000, mtu=9000),
        SimInterface("vlan100", 4, "4C:5E:0C:11:22:01", type="vlan", comment="customers"),
    ]
    device.interfaces = {itf.name: itf for itf in interfaces}
    return device


@dataclass
class Lab:
    device: SimDevice
    model: RateModel
    agent: SnmpAgent
    engine: SnmpEngine
    clock: ScaledClock

    def collector(self, **overrides: object) -> SnmpCollector:
        options: dict[str, object] = {
            "name": self.device.name,
            "address": "127.0.0.1",
            "port": self.agent.port,
            "community": COMMUNITY,
            "timeout": 0.3,
            "retries": 0,
        }
        options.update(overrides)
        return SnmpCollector(SnmpTarget(**options), clock=self.clock, engine=self.engine)  # type: ignore[arg-type]

    async def transport(self) -> UdpTransportTarget:
        return await UdpTransportTarget.create(("127.0.0.1", self.agent.port), timeout=0.5, retries=0)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine() -> AsyncIterator[SnmpEngine]:
    engine = SnmpEngine()
    yield engine
    engine.close_dispatcher()


@pytest_asyncio.fixture(loop_scope="module")
async def lab(engine: SnmpEngine) -> AsyncIterator[Lab]:
    clock = ScaledClock(speed=SPEED)
    device = make_device(clock)
    model = RateModel(device, clock)
    agent = SnmpAgent(RouterHandle(device, "admin", "pw", model), "127.0.0.1", port=0, community=COMMUNITY)
    await agent.start()
    try:
        yield Lab(device, model, agent, engine, clock)
    finally:
        await agent.stop()


async def next_burst() -> None:
    """Wait past the agent's cache so the next poll sees freshly advanced counters."""
    await asyncio.sleep(SnmpAgent.cache_idle_gap + 0.1)


def by_name(result: PollResult) -> dict[str, InterfaceStat]:
    return {itf.name: itf for itf in result.interfaces}


async def test_agent_binds_a_free_port(lab: Lab) -> None:
    assert lab.agent.port > 0


async def test_poll_reads_system(lab: Lab) -> None:
    result = await lab.collector().poll()

    assert result.ok, result.error
    assert result.collector == "snmp" and result.device == "core-1"
    assert result.stale == {}
    system = result.system
    assert system is not None
    assert system.identity == "core-1"
    assert system.descr == "RouterOS CCR2004-16G-2S+"
    assert system.object_id == "1.3.6.1.4.1.14988.1"
    assert system.board == "CCR2004-16G-2S+"
    assert system.version == "7.16.2"
    assert system.cpu_load == 17
    assert system.total_memory == 4 * 1024**3
    assert system.free_memory == 3 * 1024**3
    assert system.temperature_c == 41.0
    assert system.voltage_v == pytest.approx(24.1)
    # Booted an hour of simulated time before the fixture; a few real ms pass at 50x.
    assert system.uptime_s is not None and 3600 <= system.uptime_s < 3600 + 60


async def test_poll_reads_interfaces(lab: Lab) -> None:
    result = await lab.collector().poll()

    assert result.ok, result.error
    assert [itf.ifindex for itf in result.interfaces] == [1, 2, 3, 4]
    itfs = by_name(result)
    assert set(itfs) == {"ether1", "ether2", "sfp-sfpplus1", "vlan100"}

    ether1 = itfs["ether1"]
    assert (ether1.type, ether1.alias, ether1.mtu) == ("ether", "uplink to core-2", 1500)
    assert ether1.mac == "4C:5E:0C:11:22:01"
    assert (ether1.admin_up, ether1.oper_up, ether1.speed_bps) == (True, True, 1_000_000_000)
    assert ether1.counter_bits == 64

    ether2 = itfs["ether2"]
    assert (ether2.admin_up, ether2.oper_up) == (False, False)
    assert ether2.alias is None  # no comment
    assert ether2.speed_bps == 0  # like RouterOS: no link, no speed

    sfp = itfs["sfp-sfpplus1"]
    # ifSpeed saturates at 2**32-1; the collector must use ifHighSpeed.
    assert (sfp.speed_bps, sfp.mtu, sfp.oper_up) == (10_000_000_000, 9000, True)

    vlan = itfs["vlan100"]
    assert (vlan.type, vlan.alias) == ("vlan", "customers")


async def test_counters_move_between_polls(lab: Lab) -> None:
    collector = lab.collector()
    first = await collector.poll()
    await next_burst()
    second = await collector.poll()

    assert first.ok and second.ok
    before, after = by_name(first), by_name(second)
    # Rates over the agent's own clock (sysUpTime), as an NMS computes them.
    assert first.system and second.system and first.system.uptime_s and second.system.uptime_s
    elapsed = second.system.uptime_s - first.system.uptime_s
    assert elapsed > 0
    for name in ("ether1", "sfp-sfpplus1", "vlan100"):
        rx = after[name].rx_bytes - before[name].rx_bytes  # type: ignore[operator]
        tx = after[name].tx_bytes - before[name].tx_bytes  # type: ignore[operator]
        assert rx > 0 and tx > 0
        assert after[name].rx_packets > before[name].rx_packets  # type: ignore[operator]
        # The rate seen over SNMP is the model's rate, in simulated time.
        assert rx / elapsed == pytest.approx(RX_BPS, rel=0.3)
        assert tx / elapsed == pytest.approx(TX_BPS, rel=0.3)
    # A disabled port carries nothing.
    assert after["ether2"].rx_bytes == before["ether2"].rx_bytes == 0
    # ether1 started above 2**32: the 64-bit counters keep the high part.
    assert after["ether1"].rx_bytes > 5 * 2**32  # type: ignore[operator]


async def test_snmpv1_falls_back_to_32bit_counters(lab: Lab) -> None:
    result = await lab.collector(version="1").poll()

    assert result.ok, result.error
    ether1 = by_name(result)["ether1"]
    # SNMPv1 cannot carry Counter64: ifInOctets is the 64-bit count mod 2**32.
    assert ether1.counter_bits == 32
    assert ether1.rx_bytes is not None and ether1.rx_bytes < 2**32
    assert ether1.rx_bytes == lab.device.interfaces["ether1"].rx_bytes % 2**32
    assert ether1.alias == "uplink to core-2" and ether1.speed_bps == 1_000_000_000
    assert result.system is not None and result.system.identity == "core-1"


async def test_plain_pysnmp_agrees_with_collector(lab: Lab) -> None:
    result = await lab.collector().poll()
    auth, transport = CommunityData(COMMUNITY), await lab.transport()

    error, status, _, varbinds = await get_cmd(
        lab.engine,
        auth,
        transport,
        ContextData(),
        ObjectType(ObjectIdentity("1.3.6.1.2.1.1.5.0")),
        ObjectType(ObjectIdentity(f"{IF_ALIAS}.1")),
        lookupMib=False,
    )
    assert error is None and not status
    assert [bytes(value).decode() for _, value in varbinds] == ["core-1", "uplink to core-2"]

    names = {}
    async for error, status, _, rows in bulk_walk_cmd(
        lab.engine,
        auth,
        transport,
        ContextData(),
        0,
        2,  # small repetitions: several requests, exercising continuation
        ObjectType(ObjectIdentity(IF_NAME)),
        lexicographicMode=False,
        lookupMib=False,
    ):
        assert error is None and not status
        for name, value in rows:
            names[int(name[-1])] = bytes(value).decode()
    assert names == {itf.ifindex: itf.name for itf in result.interfaces}


async def test_agent_exceptions_and_bulk_rules(lab: Lab) -> None:
    auth, transport = CommunityData(COMMUNITY), await lab.transport()

    _, _, _, varbinds = await get_cmd(
        lab.engine,
        auth,
        transport,
        ContextData(),
        ObjectType(ObjectIdentity("1.3.6.1.2.1.1.5")),  # known object, no instance
        ObjectType(ObjectIdentity("1.3.6.1.2.1.99.1.0")),  # unknown object
        lookupMib=False,
    )
    assert isinstance(varbinds[0][1], rfc1905.NoSuchInstance)
    assert isinstance(varbinds[1][1], rfc1905.NoSuchObject)

    _, _, _, varbinds = await next_cmd(
        lab.engine, auth, transport, ContextData(), ObjectType(ObjectIdentity("1.3.6.1.9")), lookupMib=False
    )
    assert isinstance(varbinds[0][1], rfc1905.EndOfMibView)

    # One non-repeater (sysDescr) plus 3 repetitions of ifDescr.
    _, status, _, varbinds = await bulk_cmd(
        lab.engine,
        auth,
        transport,
        ContextData(),
        1,
        3,
        ObjectType(ObjectIdentity("1.3.6.1.2.1.1.1")),
        ObjectType(ObjectIdentity("1.3.6.1.2.1.2.2.1.2")),
        lookupMib=False,
    )
    assert not status
    assert [str(name) for name, _ in varbinds] == [
        "1.3.6.1.2.1.1.1.0",
        "1.3.6.1.2.1.2.2.1.2.1",
        "1.3.6.1.2.1.2.2.1.2.2",
        "1.3.6.1.2.1.2.2.1.2.3",
    ]

    # A huge max-repetitions is capped and stops at the end of the MIB.
    _, status, _, varbinds = await bulk_cmd(
        lab.engine,
        auth,
        transport,
        ContextData(),
        0,
        10_000,
        ObjectType(ObjectIdentity("1.3.6.1.4.1.14988.1.1.3")),
        lookupMib=False,
    )
    assert not status
    assert 0 < len(varbinds) <= SnmpAgent.max_bulk_varbinds
    assert isinstance(varbinds[-1][1], rfc1905.EndOfMibView)

    # Two repeaters over the whole MIB: capped at the varbind limit, in whole rows.
    _, status, _, varbinds = await bulk_cmd(
        lab.engine,
        auth,
        transport,
        ContextData(),
        0,
        10_000,
        ObjectType(ObjectIdentity("1.3.6.1")),
        ObjectType(ObjectIdentity("1.3.6.1.2.1.2")),
        lookupMib=False,
    )
    assert not status
    assert len(varbinds) == SnmpAgent.max_bulk_varbinds
    assert not any(isinstance(value, rfc1905.EndOfMibView) for _, value in varbinds)


async def test_oper_and_admin_changes_show_up(lab: Lab) -> None:
    collector = lab.collector()
    lab.device.interfaces["ether1"].running = False
    lab.device.interfaces["vlan100"].disabled = True
    await next_burst()

    result = await collector.poll()

    assert result.ok, result.error
    itfs = by_name(result)
    assert (itfs["ether1"].admin_up, itfs["ether1"].oper_up) == (True, False)
    assert itfs["vlan100"].admin_up is False
    assert itfs["sfp-sfpplus1"].oper_up is True


async def test_wrong_community_times_out(lab: Lab) -> None:
    result = await lab.collector(community="not-the-community").poll()

    assert not result.ok
    assert result.error_kind == "timeout"
    assert result.error and "no SNMP response" in result.error
    assert "not-the-community" not in result.error and COMMUNITY not in result.error
    assert result.system is None and result.interfaces == ()


async def test_black_hole_times_out_then_recovers(lab: Lab) -> None:
    collector = lab.collector(timeout=0.5)
    assert (await collector.poll()).ok  # the engine loads its MIBs on first use: keep that out
    lab.model.up = False

    down = await collector.poll()

    assert not down.ok and down.error_kind == "timeout"
    # A silent device costs one request timeout, not one per table after it.
    assert down.duration_s < 0.5 * 1.8

    lab.model.up = True
    up = await collector.poll()
    assert up.ok and len(up.interfaces) == 4


def lab_sensors(device: SimDevice) -> dict[str, tuple[float | None, str | None, str | None]]:
    """What /system/health shows for ``device``: the two board readings plus its extra sensors."""
    readings: dict[str, tuple[float | None, str | None, str | None]] = {
        "voltage": (device.voltage_v, "V", None),
        "temperature": (device.temperature_c, "C", None),
    }
    for sensor in device.sensors:
        readings[sensor.name] = (sensor.value, sensor.unit or None, sensor.state or None)
    return readings


def readings(result: PollResult) -> dict[str, tuple[float | None, str | None, str | None]]:
    assert result.sensors is not None
    return {s.name: (s.value, s.unit, s.state) for s in result.sensors}


async def test_poll_reads_health_sensors_from_the_gauge_table(lab: Lab) -> None:
    assert {s.name for s in lab.device.sensors} >= {"cpu-temperature", "fan1-speed", "psu1-state"}
    lab.device.sensors[-1].state = "fail"  # a failed PSU must show up as such

    result = await lab.collector().poll()

    assert result.ok, result.error
    assert result.stale == {}
    assert readings(result) == lab_sensors(lab.device)
    assert readings(result)[lab.device.sensors[-1].name][2] == "fail"


async def test_routeros6_health_comes_from_the_classic_scalars(lab: Lab) -> None:
    # RouterOS 6 has no gauge table: tenths of volts/degrees, BoolValue PSU states, fan rpm.
    lab.device.ros_major = 6

    result = await lab.collector().poll()

    assert result.ok, result.error
    assert result.stale == {}
    assert readings(result) == lab_sensors(lab.device)
    assert result.system is not None and result.system.temperature_c == 41.0


def add_neighbors(device: SimDevice) -> list[SimNeighbor]:
    neighbors = [
        SimNeighbor("ether1", "core-2", "10.0.1.2", "4c:5e:0c:aa:00:01", version="7.16.2 (stable)",
                    board="CCR2116-12G-4S+", interface_name="sfp-sfpplus1"),
        # An interface the lab router lacks: served as local port 0, as RouterOS 7.1 does for all.
        SimNeighbor("gone1", "cpe-7", "", "4C:5E:0C:AA:00:07", platform="Ubiquiti", interface_name="eth0"),
    ]  # fmt: skip
    device.neighbors = neighbors
    return neighbors


async def test_poll_reads_lldp_neighbors(lab: Lab) -> None:
    add_neighbors(lab.device)

    result = await lab.collector().poll()

    assert result.ok, result.error
    assert result.stale == {}
    assert result.neighbors is not None
    assert set(result.neighbors) == {
        Neighbor("ether1", "core-2", "sfp-sfpplus1", "10.0.1.2", "4C:5E:0C:AA:00:01",
                 "MikroTik RouterOS 7.16.2 (stable) CCR2116-12G-4S+", "lldp"),
        Neighbor("", "cpe-7", "eth0", None, "4C:5E:0C:AA:00:07", "Ubiquiti", "lldp"),
    }  # fmt: skip


async def test_routeros6_lldp_has_no_local_ports(lab: Lab) -> None:
    # RouterOS 6 indexes lldpRemTable by neighbour number only and has no address table.
    lab.device.ros_major = 6
    add_neighbors(lab.device)

    result = await lab.collector(version="1").poll()

    assert result.ok, result.error
    assert result.neighbors is not None
    assert {(n.local_interface, n.remote_identity, n.remote_address) for n in result.neighbors} == {
        ("", "core-2", None),
        ("", "cpe-7", None),
    }


async def test_no_neighbours_no_bgp_no_ospf(lab: Lab) -> None:
    # The lab has BGP peers and OSPF neighbours, but RouterOS serves no BGP4-MIB/OSPF-MIB:
    # those families are absent (None), not stale; LLDP is there with nobody to report.
    assert lab.device.neighbors == []
    lab.device.bgp_peers.append(SimBgpPeer("UPSTREAM1", "192.0.2.1", 64500, 64512))

    result = await lab.collector().poll()

    assert result.ok, result.error
    assert result.stale == {}
    assert (result.neighbors, result.bgp, result.ospf) == ((), None, None)


async def test_a_timeout_in_one_optional_table_is_stale(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    add_neighbors(lab.device)
    collector = lab.collector(timeout=0.5)
    assert (await collector.poll()).neighbors  # warm up: the engine's first request is slow
    answer = lab.agent._answer

    def silent_on_lldp_rows(request: ber.Request) -> tuple[int, int, list[bytes]] | None:
        # Drop requests for lldpRemTable columns, not the probe (the table's root OID).
        if any(oid[: len(LLDP_REM_ENTRY)] == LLDP_REM_ENTRY for oid in request.oids):
            return None
        return answer(request)

    monkeypatch.setattr(lab.agent, "_answer", silent_on_lldp_rows)
    await next_burst()

    result = await collector.poll()

    assert result.ok, result.error
    assert set(result.stale) == {"neighbors"}
    assert "LLDP-MIB" in result.stale["neighbors"] and "no SNMP response" in result.stale["neighbors"]
    assert result.neighbors is None
    assert len(result.interfaces) == 4 and result.sensors is not None
    assert result.duration_s < 0.5 * 1.8  # one timeout, alongside the other walks


async def test_agent_multi_index_instances(lab: Lab) -> None:
    add_neighbors(lab.device)
    auth, transport = CommunityData(COMMUNITY), await lab.transport()
    sys_name = (*LLDP_REM_ENTRY, 9)

    _, _, _, varbinds = await get_cmd(
        lab.engine,
        auth,
        transport,
        ContextData(),
        ObjectType(ObjectIdentity(".".join(map(str, (*sys_name, 0, 1, 1))))),
        ObjectType(ObjectIdentity(".".join(map(str, (*sys_name, 0, 9, 9))))),  # known column, no such row
        ObjectType(ObjectIdentity(".".join(map(str, (*LLDP_REM_ENTRY, 99, 0, 1, 1))))),  # no such column
        lookupMib=False,
    )
    assert bytes(varbinds[0][1]).decode() == "core-2"
    assert isinstance(varbinds[1][1], rfc1905.NoSuchInstance)
    assert isinstance(varbinds[2][1], rfc1905.NoSuchObject)


async def poll_over_snmp(device: SimDevice, engine: SnmpEngine) -> PollResult:
    """One SNMP poll of ``device`` served by a lab agent of its own on loopback (started and stopped here)."""
    clock = ScaledClock(speed=1.0)
    agent = SnmpAgent(RouterHandle(device, "admin", "pw", RateModel(device, clock)), "127.0.0.1", port=0,
                      community="lab")
    await agent.start()
    try:
        target = SnmpTarget(name=device.name, address="127.0.0.1", port=agent.port, community="lab", timeout=0.5,
                            retries=1)
        return await SnmpCollector(target, clock=clock, engine=engine).poll()
    finally:
        await agent.stop()
