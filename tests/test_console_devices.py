"""The Devices tab: the list (filter, sort) over fixed views, and a device's detail on the real engine."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Sparkline, Static

from ispvm_tui.app import IspvmApp
from ispvm_tui.demo import DemoRun, start_demo
from ispvm_tui.engine.api import (
    BgpRow,
    DeviceDetail,
    DeviceHistory,
    DeviceView,
    InterfaceHistory,
    InterfaceRow,
    OspfRow,
    SensorRow,
    Snapshot,
    WirelessClientRow,
)
from ispvm_tui.lab.scenario import load_scenario
from ispvm_tui.screens.device_charts import HistoryChart, spark_text
from ispvm_tui.screens.devices import DeviceDetailScreen, DevicesPane, interface_rates
from tests.test_console import NOW, SnapshotEngine, build_snapshot, plain, row_keys
from tests.test_console_deliveries import until

# Four routers (CORE1 -- AGG -- ACC1, ACC2) and nothing on the timeline: nothing fails unless a test makes it.
QUIET = load_scenario("root-recovers-symptom-stays").model_copy(update={"timeline": []})

DEVICES = (
    DeviceView("EDGE1", "HQ", "edge", "10.0.0.1", "up", last_poll_at=NOW - 5, version="7.16.2", uptime_s=90_000,
               cpu_load=12),
    DeviceView("CORE1", "HQ", "core", "10.0.0.2", "up", last_poll_at=NOW - 5, version="7.16.2", uptime_s=4000,
               cpu_load=71),
    DeviceView("POPA-AGG", "POP-A", "aggregation", "10.0.1.1", "down", last_poll_at=NOW - 300,
               last_error="api: timeout"),
    DeviceView("POPA-AP1", "POP-A", "access", "10.0.1.2", "unknown"),
    DeviceView("POPB-AGG", "POP-B", "aggregation", "10.0.2.1", "degraded", last_poll_at=NOW - 5, cpu_load=40,
               last_error="snmp: timeout"),
)


def detail_at(sampled_at: float, rx_bytes: int) -> DeviceDetail:
    return DeviceDetail(
        device=DEVICES[1], sampled_at=sampled_at, collectors=("api",), identity="core1", board="CCR2004",
        total_memory=4 * 2**30, free_memory=3 * 2**30, route_count=950_123,
        interfaces=(
            InterfaceRow("ether1", True, True, 10_000_000_000, rx_bytes, 5_000, 3, 4, comment="to EDGE1"),
            InterfaceRow("ether2", True, False, 1_000_000_000, 10, 10, 0, 0),
        ),
        sensors=(SensorRow("cpu-temperature", 48.0, "C"), SensorRow("psu1-state", None, state="fail")),
        bgp=(BgpRow("UPSTREAM1", "192.0.2.1", 64500, "established", True, 7200, 950_000),),
        ospf=(OspfRow("10.255.0.1", "10.0.0.1", "ether1", "full", True),),
        wireless=(WirelessClientRow("AA:BB:CC:00:00:01", "wlan1", -58.0, 130_000_000, 65_000_000, 3600, "isp-ap"),
                  WirelessClientRow("AA:BB:CC:00:00:02", "wlan1", -86.0, 6_000_000, 1_000_000, 120)),
    )


def history_of(since: float) -> DeviceHistory:
    """Six hours of 5-minute buckets: ether1 climbs to 8 Mbit/s received, ether2 stays at 1 kbit/s."""
    buckets = [since + 300 * i for i in range(72)]
    return DeviceHistory(
        device="CORE1", since=since, until=since + 6 * 3600, bucket_s=300,
        interfaces=(InterfaceHistory("ether1", tuple((t, 1e5 * (i + 9)) for i, t in enumerate(buckets)),
                                     tuple((t, 2e6) for t in buckets)),
                    InterfaceHistory("ether2", tuple((t, 1e3) for t in buckets), tuple((t, 5e2) for t in buckets))),
        cpu_load=tuple((t, 20.0 + i % 10) for i, t in enumerate(buckets)),
        free_memory=tuple((t, 3.0 * 2**30) for t in buckets), total_memory=4 * 2**30,
    )


class DetailEngine(SnapshotEngine):
    """The fixed snapshot, plus a device detail whose poll moves on each time it is asked for."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(snapshot)
        self.asked = 0

    def device_detail(self, name: str) -> Future[DeviceDetail]:
        future: Future[DeviceDetail] = Future()
        if name != "CORE1":
            future.set_exception(KeyError(f"unknown device {name!r}"))
            return future
        self.asked += 1
        # 10 s between polls, 1,250,000 bytes more each time: 1 Mbit/s received on ether1.
        future.set_result(detail_at(NOW + 10 * self.asked, 1_250_000 * self.asked))
        return future

    def device_history(self, name: str, hours: float = 6.0,
                       interfaces: tuple[str, ...] = ()) -> Future[DeviceHistory]:
        future: Future[DeviceHistory] = Future()
        self.history_asked = getattr(self, "history_asked", 0) + 1
        if name != "CORE1":
            future.set_exception(KeyError(f"unknown device {name!r}"))
        else:
            future.set_result(history_of(NOW - hours * 3600))
        return future


@pytest.fixture
def engine() -> DetailEngine:
    return DetailEngine(replace(build_snapshot(), devices=DEVICES))


async def open_devices(pilot: Pilot[Any]) -> tuple[DevicesPane, DataTable]:
    app = pilot.app
    assert isinstance(app, IspvmApp)
    await pilot.press("6")
    table = app.devices_pane.query_one("#devices-table", DataTable)
    await until(pilot, lambda: table.row_count > 0 and app.focused is table)
    return app.devices_pane, table


def row_text(table: DataTable, key: str) -> list[str]:
    return [str(cell) for cell in table.get_row(key)]


def detail_text(screen: DeviceDetailScreen) -> str:
    """Everything the detail shows as text: its sections and the rows of its tables."""
    parts = [plain(screen.query_one("#device-detail", Static))]
    for selector in ("#device-interfaces", "#device-wireless"):
        table = screen.query_one(selector, DataTable)
        parts += ["  ".join(str(c) for c in table.get_row(row.key)) for row in table.ordered_rows]
    parts += [plain(w) for w in screen.query_one(HistoryChart).query(Static)]
    parts += [plain(screen.query_one("#device-wireless-title", Static)),
              plain(screen.query_one("#device-routing", Static))]
    return "\n".join(parts)


async def test_the_list_shows_every_device_with_its_state_as_a_word(engine: DetailEngine) -> None:
    app = IspvmApp(engine, actor="alice")  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        _, table = await open_devices(pilot)
        assert sorted(row_keys(table)) == sorted(d.name for d in DEVICES)
        assert row_keys(table)[:3] == ["POPA-AGG", "POPB-AGG", "POPA-AP1"]  # worst first
        assert row_text(table, "POPA-AGG")[:4] == ["✖ down", "POPA-AGG", "aggregation", "POP-A"]
        assert row_text(table, "POPB-AGG")[0] == "◐ degraded"
        assert row_text(table, "POPA-AP1")[0] == "? unknown"
        core = row_text(table, "CORE1")
        assert core[0] == "✔ up" and "71%" in core and "1h06m" in core and "7.16.2" in core
        assert "api: timeout" in row_text(table, "POPA-AGG")
        assert row_text(table, "EDGE1")[5] == "1d01h"
        assert table.region.bottom <= 24  # on screen at the smallest terminal


async def test_filter_narrows_and_escape_clears(engine: DetailEngine) -> None:
    app = IspvmApp(engine, actor="alice")  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        pane, table = await open_devices(pilot)
        await pilot.press("slash")
        filter_input = pane.query_one("#devices-filter", Input)
        await until(pilot, lambda: app.focused is filter_input)
        await pilot.press(*"pop-a")
        await until(pilot, lambda: sorted(row_keys(table)) == ["POPA-AGG", "POPA-AP1"])
        assert "filter “pop-a” 2/5" in plain(app.screen.query_one("#status", Static))
        filter_input.value = "AGGREGATION"  # the role, whatever the case
        await until(pilot, lambda: sorted(row_keys(table)) == ["POPA-AGG", "POPB-AGG"])
        filter_input.value = "degraded"  # the state
        await until(pilot, lambda: row_keys(table) == ["POPB-AGG"])
        filter_input.value = "nothing-like-it"
        empty = pane.query_one("#devices-empty", Static)
        await until(pilot, lambda: table.row_count == 0 and empty.display)
        assert "No devices match “nothing-like-it” (of 5)" in plain(empty)
        await pilot.press("escape")
        await until(pilot, lambda: table.row_count == 5 and not filter_input.display)
        assert app.incidents_pane.filter_text == ""  # the incidents' filter was never touched


async def test_sort_keys_change_the_order(engine: DetailEngine) -> None:
    app = IspvmApp(engine, actor="alice")  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        pane, table = await open_devices(pilot)
        orders = {}
        for _ in range(4):
            await pilot.press("s")
            await until(pilot, lambda: pane.sort not in orders)
            orders[pane.sort] = row_keys(table)
        assert orders["name"] == sorted(d.name for d in DEVICES)
        assert orders["site"] == ["CORE1", "EDGE1", "POPA-AGG", "POPA-AP1", "POPB-AGG"]
        assert orders["cpu"] == ["CORE1", "POPB-AGG", "EDGE1", "POPA-AGG", "POPA-AP1"]  # unknown CPU last
        assert orders["state"][:3] == ["POPA-AGG", "POPB-AGG", "POPA-AP1"]
        assert any("Devices sorted by cpu" in n.message for n in app._notifications)
        assert app.incidents_pane.sort == "priority"  # `s` on this tab sorts devices only


async def test_enter_opens_the_detail_which_refreshes_and_shows_rates(engine: DetailEngine) -> None:
    app = IspvmApp(engine, actor="alice")  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        _, table = await open_devices(pilot)
        table.move_cursor(row=table.get_row_index("CORE1"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DeviceDetailScreen))
        screen = app.screen
        assert isinstance(screen, DeviceDetailScreen)
        await until(pilot, lambda: screen.detail is not None)
        text = detail_text(screen)
        for expected in ("CORE1", "✔ up", "7.16.2", "CCR2004", "1.0 GiB used of 4.0 GiB", "950,123",
                         "cpu-temperature", "48 C", "psu1-state", "fail", "Interfaces (1/2 up)", "ether1",
                         "✔ up", "ether2", "✖ down", "10.0G", "to EDGE1", "UPSTREAM1", "✔ established",
                         "AS64500", "950,000 prefixes", "10.255.0.1", "✔ full", "none detected"):
            assert expected in text, expected
        # The next poll (10 s later, 1.25 MB more) gives ether1's receive rate: 1 Mbit/s.
        screen.fetch()
        await until(pilot, lambda: "1.0M" in detail_text(screen), timeout=30)
        await pilot.press("q")
        await until(pilot, lambda: not isinstance(app.screen, DeviceDetailScreen))
        assert app.devices_pane.selected() == "CORE1"


async def test_rows_get_live_sparklines_and_the_chart_follows_the_cursor(engine: DetailEngine) -> None:
    app = IspvmApp(engine, actor="alice")  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_device("CORE1")
        await until(pilot, lambda: isinstance(app.screen, DeviceDetailScreen))
        screen = app.screen
        assert isinstance(screen, DeviceDetailScreen)
        await until(pilot, lambda: screen.detail is not None)
        interfaces = screen.query_one("#device-interfaces", DataTable)
        await until(pilot, lambda: screen.history is not None and interfaces.row_count == 2)
        # Each further read is a new poll (1 Mbit/s more on ether1 each time): the row's sparkline grows.
        for reads in range(2, 6):
            screen.fetch()
            await until(pilot, lambda reads=reads: screen.fetches >= reads, timeout=30)
        trend = str(interfaces.get_cell("ether1", "trend"))
        assert len(trend) == len(screen.trends["ether1"]) >= 3 and trend == spark_text(screen.trends["ether1"])
        assert all(len(t) <= 30 for t in screen.trends.values())

        chart = screen.query_one(HistoryChart)
        await until(pilot, lambda: chart.interface == "ether1")  # the first row, where the cursor starts
        text = detail_text(screen)
        assert "History of ether1" in text and "last 6h, 5m averages" in text
        assert "peak 8.0M  low 900.0k  last 8.0M" in text  # rx, the axis as text
        assert "peak 2.0M" in text and "peak 29%" in text and "memory 25% used" in text
        rx = chart.query_one("#chart-rx", Sparkline)
        assert rx.data is not None and len(rx.data) == 72 and rx.region.height == 3
        await pilot.press("down")  # the cursor picks the charted interface
        await until(pilot, lambda: chart.interface == "ether2")
        assert "History of ether2" in detail_text(screen) and "peak 1.0k" in detail_text(screen)

        # Wireless clients, weak signals marked in words, not only colour.
        wireless = screen.query_one("#device-wireless", DataTable)
        assert wireless.row_count == 2 and "Wireless clients (2)" in detail_text(screen)
        assert row_text(wireless, "AA:BB:CC:00:00:02")[2] == "-86 dBm weak"
        assert row_text(wireless, "AA:BB:CC:00:00:01")[2] == "-58 dBm"
        assert row_text(wireless, "AA:BB:CC:00:00:01")[-1] == "isp-ap"
        screen.fetch_history()
        await until(pilot, lambda: screen.history_fetches >= 2)
        assert chart.interface == "ether2"  # a refresh keeps the chosen interface


def test_rates_need_two_polls_and_never_go_negative() -> None:
    first, second = detail_at(NOW, 1_000), detail_at(NOW + 8, 1_000 + 1_000_000)
    assert interface_rates(None, first) == {}
    assert interface_rates(first, first) is None  # the same poll again: keep the rates shown
    rates = interface_rates(first, second)
    assert rates is not None and rates["ether1"] == (1_000_000.0, 0.0)
    rebooted = interface_rates(second, detail_at(NOW + 16, 10))
    assert rebooted is not None and rebooted["ether1"][0] is None  # the counter went back: no figure


# -- on the real engine ------------------------------------------------------------------------------

@pytest.fixture
def lab(address_base: str):
    run = start_demo(QUIET, speed=1.0, address_base=address_base)
    yield run
    run.stop()


async def test_detail_of_a_polled_device_has_its_interfaces_and_version(lab: DemoRun) -> None:
    app = IspvmApp(lab.engine, actor="noc")
    async with app.run_test(size=(80, 24)) as pilot:
        _, table = await open_devices(pilot)
        assert sorted(row_keys(table)) == ["ACC1", "ACC2", "AGG", "CORE1"]

        def polled() -> DeviceView | None:
            snap = app.snapshot
            device = next((d for d in snap.devices if d.name == "AGG"), None) if snap else None
            return device if device and device.version and device.interfaces_total else None

        await until(pilot, polled, timeout=60)
        device = polled()
        assert device is not None and device.version is not None
        await until(pilot, lambda: device.version in row_text(table, "AGG"))
        table.move_cursor(row=table.get_row_index("AGG"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DeviceDetailScreen))
        screen = app.screen
        assert isinstance(screen, DeviceDetailScreen)
        await until(pilot, lambda: screen.detail is not None and screen.detail.interfaces, timeout=30)
        detail = screen.detail
        assert detail is not None and detail.device.name == "AGG" and "api" in detail.collectors
        text = detail_text(screen)
        assert f"version  {device.version}" in text
        assert f"Interfaces ({sum(1 for i in detail.interfaces if i.oper_up)}/{len(detail.interfaces)} up)" in text
        for itf in detail.interfaces:
            assert f"\n{itf.name}  " in text, itf.name
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, DeviceDetailScreen))


async def test_an_unknown_device_is_a_clean_error(lab: DemoRun) -> None:
    with pytest.raises(KeyError, match="NOPE"):
        lab.engine.device_detail("NOPE").result(30)
    app = IspvmApp(lab.engine, actor="noc")
    async with app.run_test(size=(80, 24)) as pilot:
        await app.push_screen(DeviceDetailScreen(lab.engine, "NOPE"))
        screen = app.screen
        assert isinstance(screen, DeviceDetailScreen)
        await until(pilot, lambda: screen.error is not None, timeout=30)
        assert plain(screen.query_one("#device-detail", Static)) == "Device NOPE: unknown device 'NOPE'"
        await pilot.press("q")
        await until(pilot, lambda: not isinstance(app.screen, DeviceDetailScreen))
        assert app.is_running  # q went back; it did not quit


async def test_the_labs_access_point_shows_its_wireless_clients(lab: DemoRun) -> None:
    # ACC1, the scenario's first access device, is also an access point with three stations (lab/model.py).
    app = IspvmApp(lab.engine, actor="noc")
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_device("ACC1")
        await until(pilot, lambda: isinstance(app.screen, DeviceDetailScreen))
        screen = app.screen
        assert isinstance(screen, DeviceDetailScreen)
        await until(pilot, lambda: screen.detail is not None and screen.detail.wireless, timeout=60)
        detail = screen.detail
        assert detail is not None and detail.wireless is not None
        assert sorted(c.mac for c in detail.wireless) == [f"02:1A:2B:00:00:0{k}" for k in (1, 2, 3)]
        first = next(c for c in detail.wireless if c.mac.endswith("01"))
        assert first.interface == "wlan1" and first.signal_dbm is not None and -64 <= first.signal_dbm <= -52
        assert first.tx_rate_bps == 144_400_000 and first.uptime_s is not None and first.uptime_s >= 3600
        wireless = screen.query_one("#device-wireless", DataTable)
        await until(pilot, lambda: wireless.row_count == 3)
        assert "Wireless clients (3)" in detail_text(screen)
        far = next(c for c in detail.wireless if c.mac.endswith("03"))  # -83 dBm give or take 6 as it moves
        assert far.signal_dbm is not None and -89 <= far.signal_dbm <= -77
        shown = next(c for c in screen.detail.wireless or () if c.mac == far.mac)  # the table's own read
        assert ("weak" in row_text(wireless, far.mac)[2]) == (shown.signal_dbm is not None
                                                              and shown.signal_dbm < -80)
        # A router without a registration table: not collected, and no wireless section at all.
        agg = lab.engine.device_detail("AGG").result(30)
        assert agg.wireless is None
