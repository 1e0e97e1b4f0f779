"""Interface error and discard counters: from the lab's routers (RouterOS API over TCP, SNMP over UDP,
both on loopback) and from real RouterOS reply rows, to the rates the engine stores.

Counters stay at a trickle on a healthy lab link and climb while a ``congestion`` entry is in force
(the sending side's tx-queue-drop, which both collectors report as a transmit discard).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ispvm_tui.clock import ScaledClock
from ispvm_tui.collectors.results import InterfaceStat, PollResult
from ispvm_tui.collectors.routeros import ApiTarget, RouterOSCollector, _interface
from ispvm_tui.collectors.snmp import SnmpCollector, SnmpTarget
from ispvm_tui.demo import start_demo
from ispvm_tui.lab import model as lab_model
from ispvm_tui.lab.model import LabModel
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import Scenario, TimelineEntry, load_scenario
from tests.test_routeros_lab_api import HOST, PASSWORD, USER, make_device, start_lab
from tests.waiting import wait_for as _wait

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "routeros-api" / "napalm-ros"
CUT_LINK = "CORE1:ether2--POPA-AGG:ether1"  # 10 Gbit/s, CORE1 (v7) to POPA-AGG (v6)
EDGE_LINK = "CORE1:ether1--EDGE1:ether1"  # 10 Gbit/s at 35%


def _congestion(link: str, at: float = 0.0, percent: float = 100.0, duration_s: float = 3600.0) -> TimelineEntry:
    return TimelineEntry(at=at, action="congestion", link=link, percent=percent, duration_s=duration_s)


# ---- RouterOS API: the lab's rows and real ones -------------------------------------------


@pytest.mark.parametrize("major", [6, 7])
async def test_api_reads_errors_and_drops_as_the_router_prints_them(major: int) -> None:
    device = make_device(major)
    ether1 = device.interfaces["ether1"]
    ether1.rx_errors, ether1.tx_errors, ether1.rx_drops = 17, 3, 2**40 + 5  # 64-bit counters stay whole
    ether1.tx_drops, ether1.tx_queue_drops = 11, 400
    lab = await start_lab(device)
    target = ApiTarget(name="EDGE1", address=HOST, username=USER, password=PASSWORD, port=lab.port)
    collector = RouterOSCollector(target, clock=ScaledClock(1.0), timeout=2.0)
    try:
        result = await collector.poll()
    finally:
        await collector.close()
        await lab.server.stop()
    assert result.ok and result.stale == {}, result.error or result.stale
    itfs = {i.name: i for i in result.interfaces}
    e1 = itfs["ether1"]
    assert (e1.rx_errors, e1.tx_errors, e1.rx_discards, e1.tx_discards) == (17, 3, 2**40 + 5, 11 + 400)
    # A port that never carried a thing still reports zeros, not "unknown".
    e4 = itfs["ether4"]
    assert (e4.rx_errors, e4.tx_errors, e4.rx_discards, e4.tx_discards) == (0, 0, 0, 0)


def _napalm_rows(case: str) -> list[dict[str, str]]:
    data = json.loads((FIXTURES / case / "_interface_print.json").read_text())["data"]
    return [{k: ("true" if v else "false") if isinstance(v, bool) else str(v) for k, v in row.items()}
            for row in data]


def test_v6_interface_rows_from_real_routers() -> None:
    # RouterOS 6 rows with rx-error, tx-error, rx-drop, tx-drop and no tx-queue-drop.
    rows = _napalm_rows("test_get_interfaces_counters/normal")
    assert all({"rx-error", "tx-error", "rx-drop", "tx-drop"} <= set(r) for r in rows)
    assert not any("tx-queue-drop" in r for r in rows)
    parsed = {i.name: i for i in map(_interface, rows)}
    assert len(parsed) == 8
    for itf in parsed.values():
        assert (itf.rx_errors, itf.tx_errors, itf.rx_discards, itf.tx_discards) == (0, 0, 0, 0)
    wan = next(r for r in rows if r["name"] == "wan")
    busy = _interface({**wan, "rx-error": "12", "tx-drop": "7", "tx-queue-drop": "1093"})
    assert (busy.rx_errors, busy.tx_errors, busy.rx_discards, busy.tx_discards) == (12, 0, 0, 1100)
    # A version or interface type that prints none of them: unknown, not zero.
    bare = _interface({k: v for k, v in wan.items() if "error" not in k and "drop" not in k})
    assert (bare.rx_errors, bare.tx_errors, bare.rx_discards, bare.tx_discards) == (None, None, None, None)
    assert _interface({**wan, "tx-drop": "garbage"}).tx_discards is None


# ---- the lab model ------------------------------------------------------------------------


class ManualClock:
    """A clock the test moves by hand, so the model's counters are exact."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def to_real(self, seconds: float) -> float:
        return seconds

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_lab_drops_trickle_normally_and_climb_with_congestion() -> None:
    clock = ManualClock()
    model = LabModel.build(load_scenario("core-link-cut"), clock)  # type: ignore[arg-type]
    core = model.devices["CORE1"].interfaces["ether2"]
    agg = model.devices["POPA-AGG"].interfaces["ether1"]
    # A healthy link: many small steps lose nothing to rounding, and the counters barely move.
    for _ in range(3000):
        clock.t += 0.1
        model.advance()
    packets = 10e9 * 0.25 / 8 / 900 * 300  # CORE1 -> POPA-AGG at 25% for 300 s
    assert core.tx_drops == pytest.approx(packets * lab_model.DROP_SHARE, abs=1)
    assert agg.rx_errors == pytest.approx(packets * lab_model.ERROR_SHARE, abs=1)
    assert core.tx_queue_drops == agg.tx_queue_drops == 0
    assert core.tx_errors == 0

    model.apply(_congestion(CUT_LINK, percent=100, duration_s=60))
    for _ in range(100):
        clock.t += 0.1
        model.advance()
    full = 10e9 / 8 / 900 * 10  # packets in 10 s at line rate
    assert core.tx_queue_drops == pytest.approx(full * lab_model.CONGESTED_DROP_SHARE, rel=0.01)
    # The other direction carries 60% of the congested load (the model's reverse skew).
    assert agg.tx_queue_drops == pytest.approx(full * 0.6 * lab_model.CONGESTED_DROP_SHARE * 0.6, rel=0.01)

    clock.t += 61  # the congestion ends: the queue stops dropping
    model.advance()
    after = core.tx_queue_drops
    clock.t += 100
    model.advance()
    assert core.tx_queue_drops == after



@pytest.mark.parametrize("lazy", [False, True])
def test_lab_traffic_swings_around_the_baseline_and_both_ends_agree(lazy: bool) -> None:
    """Rates move from one poll to the next (a flat lab hides a console that stopped refreshing), stay within
    the swing of the scenario's baseline, and what one end sends the other receives however it is stepped."""
    clock = ManualClock()
    model = LabModel.build(load_scenario("core-link-cut"), clock, lazy=lazy)  # type: ignore[arg-type]
    core = model.devices["CORE1"].interfaces["ether3"]
    agg = model.devices["POPB-AGG"].interfaces["ether1"]
    line = 10e9 * 0.2 / 8  # CORE1 -> POPB-AGG: 10G at 20 %, bytes a second (no timeline entry touches it)
    sent0, got0 = core.tx_bytes, agg.rx_bytes  # counters start where a long-running router's would
    rates = []
    for _ in range(24):  # two swing cycles, polled every 20 s; the far end at other moments
        before = core.tx_bytes
        clock.t += 7
        model.advance_device("POPB-AGG")
        clock.t += 13
        model.advance_device("CORE1")
        rates.append((core.tx_bytes - before) / 20)
    assert all(line * (1 - lab_model.SWING_SHARE) <= r <= line * (1 + lab_model.SWING_SHARE) for r in rates)
    assert max(rates) - min(rates) > line * lab_model.SWING_SHARE  # it swings, not a flat line
    model.advance_device("POPB-AGG")
    assert agg.rx_bytes - got0 == pytest.approx(core.tx_bytes - sent0, rel=1e-6)
    # Over whole cycles the swing averages out to the baseline.
    assert core.tx_bytes - sent0 == pytest.approx(line * 480, rel=1e-3)

# ---- both collectors against the running lab ---------------------------------------------


@dataclass
class LabRouters:
    lab: Lab
    clock: ScaledClock

    def api(self, name: str) -> RouterOSCollector:
        sc = self.lab.scenario.lab
        target = ApiTarget(name=name, address=self.lab.model.devices[name].address, username=sc.username,
                           password=sc.password, port=self.lab.api_servers[name].port)
        return RouterOSCollector(target, clock=self.clock, timeout=5.0)

    def snmp(self, name: str) -> SnmpCollector:
        target = SnmpTarget(name=name, address=self.lab.model.devices[name].address,
                            port=self.lab.snmp_agents[name].port, community=self.lab.scenario.lab.community,
                            timeout=2.0, retries=1)
        return SnmpCollector(target, clock=self.clock)


@pytest.fixture
async def routers(address_base: str) -> AsyncIterator[LabRouters]:
    clock = ScaledClock(20.0)  # simulated seconds pass fast, so a trickle is measurable in a short test
    lab = Lab(load_scenario("core-link-cut"), clock, address_base=address_base)
    await lab.start(play=False)
    try:
        yield LabRouters(lab, clock)
    finally:
        await lab.stop()


def _itf(result: PollResult, name: str) -> InterfaceStat:
    assert result.ok, result.error
    return next(i for i in result.interfaces if i.name == name)


def _uptime(result: PollResult) -> float:
    assert result.system is not None and result.system.uptime_s is not None
    return result.system.uptime_s


async def _discard_rate(collector: RouterOSCollector | SnmpCollector, interface: str, span_s: float) -> float:
    """Transmit discards per second of the router's own uptime, between polls ``span_s`` or more apart.

    The router's clock, not ours: the lab's SNMP agent serves a burst of polls from one rendering,
    stamped with its own sysUpTime, as real agents do.
    """
    first = await collector.poll()
    while True:
        await asyncio.sleep(0.05)
        second = await collector.poll()
        if _uptime(second) - _uptime(first) >= span_s:
            break
    before, after = _itf(first, interface).tx_discards, _itf(second, interface).tx_discards
    assert before is not None and after is not None
    return (after - before) / (_uptime(second) - _uptime(first))


@pytest.mark.parametrize("device", ["CORE1", "POPA-AGG"], ids=["v7", "v6"])
async def test_both_collectors_see_drops_climb_during_congestion(routers: LabRouters, device: str) -> None:
    interface = "ether2" if device == "CORE1" else "ether1"
    api, snmp = routers.api(device), routers.snmp(device)
    try:
        quiet_api = await _discard_rate(api, interface, 20)
        quiet_snmp = await _discard_rate(snmp, interface, 20)
        routers.lab.model.apply(_congestion(CUT_LINK, percent=100))
        busy_api = await _discard_rate(api, interface, 20)
        busy_snmp = await _discard_rate(snmp, interface, 20)
        assert quiet_api < 5 and quiet_snmp < 5
        # 1% of line rate for CORE1's side, 60% of that for POPA-AGG's: thousands per second.
        assert busy_api > 1000 and busy_snmp > 1000

        # Polled in turn, the two collectors read the same counters: API <= SNMP <= API. The agent
        # normally serves a burst of requests from one rendering (up to a second old); not here.
        routers.lab.snmp_agents[device].cache_max_age = 0.0
        a1, s, a2 = await api.poll(), await snmp.poll(), await api.poll()
        for field in ("tx_discards", "rx_discards", "rx_errors", "tx_errors"):
            low, mid, high = (getattr(_itf(r, interface), field) for r in (a1, s, a2))
            assert low <= mid <= high, field
    finally:
        await api.close()
        await snmp.close()


async def test_snmp_serves_errors_as_counter32(routers: LabRouters) -> None:
    itf = routers.lab.model.devices["CORE1"].interfaces["ether3"]
    itf.rx_errors = 3 * 2**32 + 41  # what a 64-bit count since boot looks like through IF-MIB's Counter32
    itf.tx_drops, itf.tx_queue_drops = 10, 2**32 - 1  # ifOutDiscards: their sum, wrapped to 9
    snmp = routers.snmp("CORE1")
    try:
        got = _itf(await snmp.poll(), "ether3")
    finally:
        await snmp.close()
    # The link's trickle may add a packet while the poll runs: the model's values before and after bound it.
    assert got.rx_errors is not None and 41 <= got.rx_errors <= itf.rx_errors - 3 * 2**32
    assert got.tx_discards is not None and 9 <= got.tx_discards <= itf.tx_drops - 1


# ---- through the real engine --------------------------------------------------------------

SPEED = 10.0  # as in test_end_to_end: the lab and the engine share two cores


def _congested_edge(sc: Scenario) -> Scenario:
    """core-link-cut's network, but the CORE1-EDGE1 link congests from t=90 s for four minutes."""
    timeline = [_congestion(EDGE_LINK, at=90, percent=100, duration_s=240)]
    return sc.model_copy(update={"timeline": timeline, "expect": None})




def test_congestion_raises_discard_rates_in_interface_samples(address_base: str) -> None:
    run = start_demo(_congested_edge(load_scenario("core-link-cut")), speed=SPEED, address_base=address_base)
    try:
        congested_at = run.lab.model.started_at + 90
        sql = ("SELECT collector, min(discards_ps), median(discards_ps), max(discards_ps), count(discards_ps) "
               "FROM interface_samples WHERE device = 'CORE1' AND interface = 'ether1' AND ts BETWEEN ? AND ? "
               "GROUP BY collector")

        def stats(start: float, end: float) -> dict[str, tuple[float, float, float, int]]:
            return {r[0]: tuple(r[1:]) for r in run.store.query(sql, [start, end])}  # type: ignore[misc]

        def enough(got: dict[str, tuple[float, float, float, int]]) -> bool:
            return all(got.get(c, (0, 0, 0, 0))[3] >= 3 for c in ("api", "snmp"))

        # Before the congestion (with a margin: a poll stamped just before it may read just after it),
        # a few rates from each collector, all at the trickle.
        quiet = (0.0, congested_at - 5)
        assert _wait(lambda: enough(stats(*quiet)), 60), stats(*quiet)
        assert all(mx < 5 for _, _, mx, _ in stats(*quiet).values()), stats(*quiet)

        # Well into it (the first rate spans its start), both collectors see thousands a second:
        # CORE1's side sends at line rate and its queue drops 1% of that.
        busy = (congested_at + 25, congested_at + 230)
        assert _wait(lambda: enough(stats(*busy)), 90), stats(*busy)
        line_rate = 10e9 / 8 / 900 * lab_model.CONGESTED_DROP_SHARE
        for collector, (lowest, middle, _, _) in stats(*busy).items():
            assert lowest > 100, (collector, lowest)
            assert 0.5 * line_rate < middle < 1.5 * line_rate, (collector, middle)
        # The counters are stored beside the rates; errors stay at their trickle.
        row = run.store.query_dicts(
            "SELECT tx_discards, rx_errors, errors_ps FROM interface_samples WHERE device = 'CORE1' "
            "AND interface = 'ether1' AND collector = 'api' AND errors_ps IS NOT NULL ORDER BY ts DESC LIMIT 1")[0]
        assert row["tx_discards"] > 0 and row["rx_errors"] >= 0 and row["errors_ps"] < 5
    finally:
        run.stop()
