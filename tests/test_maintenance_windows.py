"""Maintenance windows: planned work is recorded and marked, pages nobody, and is notified if it outlasts the window."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ispvm_tui.config import Config, MaintenanceWindow, load_config
from ispvm_tui.demo import start_demo
from ispvm_tui.engine.maintenance_windows import Maintenance, entity_devices
from ispvm_tui.tomlsource import SourceError
from tests.held_faults import held
from tests.waiting import wait_for

BASE: dict[str, Any] = {
    "console": {"attach": ["CORE1"]},
    "sites": [{"name": "DC"}, {"name": "POP-A"}],
    "snmp": {"p": {"community_secret": "c"}},
    "devices": [{"name": "CORE1", "site": "DC", "role": "core", "address": "127.0.0.1", "snmp": "p"},
                {"name": "AGG", "site": "POP-A", "role": "aggregation", "address": "127.0.0.2", "snmp": "p",
                 "tags": ["vendor-x"]}],
}


def config(*windows: dict[str, Any], timezone: str = "UTC") -> Config:
    return Config.model_validate({**BASE, "ispvm": {"timezone": timezone}, "maintenance": list(windows)})


@pytest.mark.parametrize(("window", "why"), [
    ({"name": "w", "weekly": ["Tue 02:00-04:00"]}, "needs a scope"),
    ({"name": "w", "sites": ["POP-A"]}, "needs `start` and `end`, or `weekly`"),
    ({"name": "w", "sites": ["POP-A"], "start": "2026-12-08T02:00:00+01:00"}, "go together"),
    ({"name": "w", "sites": ["POP-A"], "start": "2026-12-08T02:00:00", "end": "2026-12-08T04:00:00"}, "UTC offset"),
    ({"name": "w", "sites": ["POP-A"], "start": "2026-12-08T04:00:00Z", "end": "2026-12-08T02:00:00Z"}, "after"),
    ({"name": "w", "sites": ["POP-A"], "weekly": ["Tue 2-4"]}, "expected"),
    ({"name": "w", "sites": ["POP-A"], "weekly": ["Tue 02:00-04:00"], "timezone": "Mars/Olympus"}, "time zone"),
])
def test_a_window_that_cannot_be_meant_is_refused(window: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        MaintenanceWindow.model_validate(window)


def test_an_unknown_site_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("\n".join([
        "[console]", 'attach = ["CORE1"]', "[[sites]]", 'name = "DC"',
        "[snmp.p]", 'community_secret = "c"',
        "[[devices]]", 'name = "CORE1"', 'site = "DC"', 'role = "core"', 'address = "127.0.0.1"', 'snmp = "p"',
        "[[maintenance]]", 'name = "fibre work"', 'sites = ["POP-Z"]', 'weekly = ["Tue 02:00-04:00"]', ""]))
    with pytest.raises(SourceError) as exc:
        load_config(path)
    assert any("maintenance[0].sites[0]" in str(p) and "POP-Z" in str(p) and f"{path}:" in str(p)
               for p in exc.value.problems), [str(p) for p in exc.value.problems]


def test_weekly_windows_follow_the_zone_and_its_daylight_saving() -> None:
    m = Maintenance(config({"name": "tue", "sites": ["POP-A"], "weekly": ["Tue 02:00-04:00"],
                            "timezone": "Europe/Berlin"}))
    [win] = m.windows
    assert win.devices == {"AGG"}
    winter = datetime(2026, 12, 8, 1, 30, tzinfo=UTC).timestamp()  # 02:30 CET
    summer = datetime(2026, 7, 7, 0, 30, tzinfo=UTC).timestamp()  # 02:30 CEST
    assert win.active(winter) and win.active(summer)
    assert not win.active(datetime(2026, 12, 8, 3, 0, tzinfo=UTC).timestamp())  # 04:00 CET: over
    assert not win.active(datetime(2026, 12, 9, 1, 30, tzinfo=UTC).timestamp())  # a Wednesday


def test_an_incident_is_in_a_window_only_when_every_root_cause_is_in_scope() -> None:
    at = datetime(2026, 12, 8, 3, 0, tzinfo=UTC).timestamp()
    m = Maintenance(config({"name": "agg swap", "tags": ["vendor-x"], "start": "2026-12-08T02:00:00Z",
                            "end": "2026-12-08T04:00:00Z"}))
    link = "CORE1:ether2--AGG:ether1"
    assert entity_devices(link) == {"CORE1", "AGG"}
    assert entity_devices("AGG:10.0.0.1") == {"AGG"} and entity_devices("CORE1>8.8.8.8") == {"CORE1"}
    assert m.window_for([link], at) == "agg swap"  # work at one end breaks the link
    assert m.window_for(["AGG"], at) == "agg swap"
    assert m.window_for(["CORE1"], at) is None
    assert m.window_for(["AGG", "CORE1"], at) is None  # something outside the work failed too
    assert m.window_for([link], at + 3600) is None  # the window is over


def test_planned_work_is_recorded_and_marked_pages_nobody_and_is_notified_when_it_outlasts_the_window(
        address_base: str) -> None:
    ends = time.time() + 300  # clock seconds after the demo's clock starts (it runs 10x)

    def configure(cfg: Config) -> Config:
        data = cfg.model_dump()
        data["maintenance"] = [{"name": "POP-A fibre works", "sites": ["POP-A"],
                                "start": datetime.fromtimestamp(ends - 3600, UTC),
                                "end": datetime.fromtimestamp(ends, UTC)}]
        return Config.model_validate(data)

    run = start_demo(held("core-link-cut"), speed=10.0, address_base=address_base, configure=configure)
    try:
        def incident() -> dict[str, Any] | None:
            rows = run.store.query_dicts("SELECT id, opened_at, labels FROM incidents")
            return rows[0] if rows else None

        assert wait_for(lambda: incident() is not None, timeout=90), "the cut never became an incident"
        opened = incident()
        assert opened is not None and opened["opened_at"] < ends, "the incident opened after the window"
        assert '"maintenance": "POP-A fibre works"' in opened["labels"]
        assert run.sink.received() == []
        # The fault outlasts the window: at its end the incident is notified, once, as opened.
        assert run.sink.wait_for(lambda got: len(got) >= 1, timeout=120), "never notified after the window"
        first = run.sink.received()[0].json
        assert first["event_type"] == "incident.opened" and first["incident"]["id"] == opened["id"]
        assert "maintenance" not in first["incident"]["labels"]
        rows = run.store.query_dicts("SELECT created_at FROM outbox WHERE incident_id = ?", [opened["id"]])
        assert rows and all(r["created_at"] >= ends for r in rows)
    finally:
        run.stop()
