"""The change calendar and run-time maintenance windows (engine/calendar.py) on a real DuckDB file.

What is refused and why, what an edit keeps, the status rules, ids, the audit trail, and how the engine's
``Maintenance`` and ``changes_covering`` read what was stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ispvm_tui.config import Config
from ispvm_tui.engine import calendar
from ispvm_tui.engine.api import Scope
from ispvm_tui.engine.maintenance_windows import Maintenance, changes_covering, scope_devices
from ispvm_tui.engine.store import Store

# Tuesday 8 December 2026, 02:30 in Berlin (CET, +01:00).
TUE_0230_BERLIN = datetime(2026, 12, 8, 1, 30, tzinfo=UTC).timestamp()

INVENTORY: dict[str, Any] = {
    "console": {"attach": ["CORE1"]},
    "sites": [{"name": "DC"}, {"name": "POP-A"}, {"name": "POP-B"}],
    "snmp": {"p": {"community_secret": "c"}},
    "devices": [
        {"name": "CORE1", "site": "DC", "role": "core", "address": "127.0.0.1", "snmp": "p"},
        {"name": "EDGE1", "site": "DC", "role": "edge", "address": "127.0.0.2", "snmp": "p"},
        {"name": "AGG", "site": "POP-A", "role": "aggregation", "address": "127.0.0.3", "snmp": "p",
         "tags": ["vendor-x"]},
        {"name": "ACC", "site": "POP-A", "role": "access", "address": "127.0.0.4", "snmp": "p"},
        {"name": "BAGG", "site": "POP-B", "role": "aggregation", "address": "127.0.0.5", "snmp": "p"},
    ],
    "links": [{"a": "CORE1:ether2", "b": "AGG:ether1"}, {"a": "AGG:ether2", "b": "ACC:ether1"}],
    "bgp_peers": [{"device": "EDGE1", "name": "UP1"}],
    "services": [
        {"name": "transit", "depends_on": ["EDGE1:UP1"]},
        {"name": "backhaul", "depends_on": ["CORE1:ether2--AGG:ether1"]},
        {"name": "pop-b broadband", "depends_on": ["POP-B"]},
    ],
    "maintenance": [{"name": "patch night", "devices": ["CORE1"], "weekly": ["Tue 02:00-04:00"]}],
}


def inventory(timezone: str = "Europe/Berlin") -> Config:
    return Config.model_validate({**INVENTORY, "ispvm": {"timezone": timezone}})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "ispvm.duckdb") as s:
        yield s


def tx(store: Store, fn: Any) -> Any:
    return store.transaction(fn).result(30)


def one_off(**over: Any) -> dict[str, Any]:
    return {"name": "fibre works", "scope": {"sites": ["POP-A"]}, "starts_at": "2026-12-08T01:00:00+01:00",
            "ends_at": "2026-12-08T05:00:00+01:00", **over}


@pytest.mark.parametrize(("fields", "why"), [
    (one_off(scope={"devices": ["NOPE"]}), "scope.devices: unknown device 'NOPE'"),
    (one_off(scope={"sites": ["POP-Z"]}), "scope.sites: unknown site 'POP-Z'"),
    (one_off(scope={"tags": ["vendor-y"]}), "scope.tags: unknown tag 'vendor-y'"),
    (one_off(scope={"services": ["IPTV"]}), "scope.services: unknown service 'IPTV'"),
    (one_off(scope={}), "scope: a maintenance window needs a scope"),
    (one_off(ends_at="2026-12-08T00:00:00+01:00"), "ends_at: must be after starts_at"),
    (one_off(ends_at=None), "starts_at and ends_at go together"),
    (one_off(starts_at="2026-12-08T01:00:00"), "starts_at: '2026-12-08T01:00:00' needs a UTC offset"),
    (one_off(starts_at="tomorrow"), "starts_at: 'tomorrow' is not a time"),
    (one_off(starts_at=None, ends_at=None), "needs starts_at and ends_at, or weekly"),
    (one_off(weekly=["Tue 2-4"]), "weekly: hours 'Tue 2-4': expected"),
    (one_off(weekly=["Tue 02:00-04:00"], timezone="Mars/Olympus"), "timezone: unknown time zone 'Mars/Olympus'"),
    (one_off(name="two\nlines"), "name: Value error, no control characters"),
    (one_off(colour="red"), "colour: not a field here"),
    (one_off(duration_s=3600), "duration_s: give ends_at or a duration, not both"),
])
def test_a_window_that_cannot_be_meant_is_refused_naming_the_field(store: Store, fields: dict[str, Any],
                                                                   why: str) -> None:
    with pytest.raises(ValueError) as exc:
        tx(store, lambda con: calendar.add_window(con, inventory(), fields, "maria", TUE_0230_BERLIN))
    assert why.replace("Value error, ", "") in str(exc.value)
    assert "\n" not in str(exc.value)
    assert tx(store, lambda con: calendar.list_windows(con, None, TUE_0230_BERLIN)) == []


def test_weekly_without_a_zone_takes_the_inventorys_and_is_active_in_it(store: Store) -> None:
    fields = {"name": "patch", "scope": {"devices": ["EDGE1"]}, "weekly": ["Tue 02:00-04:00"]}
    berlin = tx(store, lambda con: calendar.add_window(con, inventory("Europe/Berlin"), fields, "maria",
                                                       TUE_0230_BERLIN))
    utc = tx(store, lambda con: calendar.add_window(con, inventory("UTC"), fields, "maria", TUE_0230_BERLIN))
    assert (berlin.timezone, berlin.active_now) == ("Europe/Berlin", True)  # 02:30 there
    assert (utc.timezone, utc.active_now) == ("UTC", False)  # 01:30 in UTC
    # Stored resolved: a later change of [ispvm].timezone does not move a window already planned.
    listed = tx(store, lambda con: calendar.list_windows(con, inventory("UTC"), TUE_0230_BERLIN))
    assert [(w.id, w.timezone, w.active_now) for w in listed] == [
        ("config:patch night", "UTC", False), ("MW-1", "Europe/Berlin", True), ("MW-2", "UTC", False)]


def test_now_and_a_duration_are_the_callers_clock(store: Store) -> None:
    w = tx(store, lambda con: calendar.add_window(
        con, inventory(), {"name": "now", "scope": {"devices": ["AGG"]}, "starts_at": "now", "duration_s": 7200},
        "maria", TUE_0230_BERLIN))
    assert (w.starts_at, w.ends_at, w.active_now) == (TUE_0230_BERLIN, TUE_0230_BERLIN + 7200, True)
    assert calendar.parse_duration("1h30m") == 5400 and calendar.parse_duration("2d") == 172800
    for bad in ("", "soon", "0", "-5m", "2 hours"):
        with pytest.raises(ValueError, match="duration"):
            calendar.parse_duration(bad)


def test_an_edit_is_checked_merged_and_audited_with_what_changed(store: Store) -> None:
    cfg = inventory()
    tx(store, lambda con: calendar.add_window(con, cfg, one_off(), "maria", TUE_0230_BERLIN))
    with pytest.raises(ValueError, match="ends_at: must be after starts_at"):  # against the stored start
        tx(store, lambda con: calendar.edit_window(con, cfg, "MW-1", {"ends_at": "2026-12-07T00:00:00Z"}, "joe",
                                                   TUE_0230_BERLIN))
    with pytest.raises(ValueError, match="unknown service 'IPTV'"):
        tx(store, lambda con: calendar.edit_window(con, cfg, "MW-1", {"scope": {"services": ["IPTV"]}}, "joe",
                                                   TUE_0230_BERLIN))
    edited = tx(store, lambda con: calendar.edit_window(con, cfg, "MW-1", {"duration_s": 3600, "note": "2 crews"},
                                                        "joe", TUE_0230_BERLIN))
    assert edited.ends_at == edited.starts_at + 3600 and edited.note == "2 crews" and edited.scope.sites == ("POP-A",)
    canceled = tx(store, lambda con: calendar.cancel_window(con, "MW-1", "joe", TUE_0230_BERLIN))
    assert (canceled.status, canceled.active_now) == ("canceled", False)
    for fn, why in ((lambda con: calendar.cancel_window(con, "MW-1", "joe", 0), "already canceled"),
                    (lambda con: calendar.edit_window(con, cfg, "MW-1", {"note": "x"}, "joe", 0), "is canceled"),
                    (lambda con: calendar.edit_window(con, cfg, "MW-7", {"note": "x"}, "joe", 0), "no maintenance "
                                                                                                  "window MW-7"),
                    (lambda con: calendar.cancel_window(con, "config:patch night", "joe", 0), "config file"),
                    (lambda con: calendar.edit_window(con, cfg, "config:patch night", {"note": "x"}, "joe", 0),
                     "edit|change or remove its \\[\\[maintenance\\]\\] entry")):
        with pytest.raises(ValueError, match=why):
            tx(store, fn)
    rows = store.query("SELECT actor, action, target, detail FROM audit ORDER BY rowid")
    assert [(a, act, t) for a, act, t, _ in rows] == [("maria", "maint.add", "MW-1"), ("joe", "maint.edit", "MW-1"),
                                                      ("joe", "maint.cancel", "MW-1")]
    detail = json.loads(rows[1][3])
    assert set(detail) == {"ends_at", "note"} and detail["note"] == ["", "2 crews"]
    assert detail["ends_at"][1].endswith("Z")  # readable times, not epoch seconds


def test_ids_count_up_and_list_in_number_order(store: Store) -> None:
    cfg = inventory()
    for i in range(11):
        tx(store, lambda con, i=i: calendar.add_window(con, cfg, one_off(name=f"w{i}"), "maria", TUE_0230_BERLIN))
    ids = [w.id for w in tx(store, lambda con: calendar.list_windows(con, None, TUE_0230_BERLIN))]
    assert ids == [f"MW-{n}" for n in range(1, 12)]


def change(**over: Any) -> dict[str, Any]:
    return {"title": "AGG PSU swap", "scope": {"devices": ["AGG"]}, "starts_at": "2026-12-08T01:00:00+01:00",
            "ends_at": "2026-12-08T03:00:00+01:00", **over}


def test_change_status_moves_forward_and_final_is_final(store: Store) -> None:
    cfg = inventory()
    added = tx(store, lambda con: calendar.add_change(con, cfg, change(), "maria", TUE_0230_BERLIN))
    assert (added.id, added.status, added.owner, added.created_by) == ("CHG-1", "planned", "maria", "maria")

    def edit(fields: dict[str, Any], change_id: str = "CHG-1") -> Any:
        return tx(store, lambda con: calendar.edit_change(con, cfg, change_id, fields, "joe", TUE_0230_BERLIN))

    with pytest.raises(ValueError, match="CHG-1 is planned; it can move to in-progress or canceled, not completed"):
        edit({"status": "completed"})
    with pytest.raises(ValueError, match="status: Input should be"):
        edit({"status": "done"})
    assert edit({"status": "in-progress", "owner": "joe"}).status == "in-progress"
    with pytest.raises(ValueError, match="not planned"):
        edit({"status": "planned"})
    assert edit({"status": "completed"}).status == "completed"
    for fields in ({"title": "again"}, {"status": "canceled"}):
        with pytest.raises(ValueError, match="CHG-1 is completed: a completed change is final"):
            edit(fields)
    with pytest.raises(ValueError, match="final"):
        tx(store, lambda con: calendar.cancel_change(con, "CHG-1", "joe", TUE_0230_BERLIN))
    tx(store, lambda con: calendar.add_change(con, cfg, change(title="second"), "maria", TUE_0230_BERLIN))
    assert tx(store, lambda con: calendar.cancel_change(con, "CHG-2", "joe", TUE_0230_BERLIN)).status == "canceled"
    with pytest.raises(ValueError, match="a new change cannot be canceled"):
        tx(store, lambda con: calendar.add_change(con, cfg, change(status="canceled"), "maria", TUE_0230_BERLIN))
    with pytest.raises(ValueError, match="scope: a change needs a scope"):
        tx(store, lambda con: calendar.add_change(con, cfg, change(scope={}), "maria", TUE_0230_BERLIN))
    with pytest.raises(ValueError, match="no change CHG-9"):
        edit({"title": "x"}, "CHG-9")
    shown = tx(store, lambda con: calendar.show_change(con, "CHG-1"))
    assert [h["action"] for h in shown["history"]] == ["change.add", "change.edit", "change.edit"]
    assert [h["actor"] for h in shown["history"]] == ["maria", "joe", "joe"]


def test_linked_incidents_show_on_the_change(store: Store) -> None:
    tx(store, lambda con: calendar.add_change(con, inventory(), change(), "maria", TUE_0230_BERLIN))
    assert tx(store, lambda con: calendar.link_incident(con, "inc-7", ["CHG-1"], TUE_0230_BERLIN)) == 1
    assert tx(store, lambda con: calendar.link_incident(con, "inc-7", ["CHG-1"], TUE_0230_BERLIN + 9)) == 0
    [listed] = tx(store, lambda con: calendar.list_changes(con))
    assert listed.incidents == ("inc-7",)


def test_services_in_a_scope_are_the_devices_they_depend_on() -> None:
    cfg = inventory()
    assert scope_devices(Scope(services=("transit",)), cfg) == {"EDGE1"}  # a BGP peer: its router
    assert scope_devices(Scope(services=("backhaul",)), cfg) == {"CORE1", "AGG"}  # a link: both ends
    assert scope_devices(Scope(services=("pop-b broadband",)), cfg) == {"BAGG"}  # a site: its devices
    assert scope_devices(Scope(sites=("POP-A",), tags=("vendor-x",)), cfg) == {"AGG", "ACC"}


def test_the_engine_silences_with_active_run_time_windows_only(store: Store) -> None:
    cfg = inventory("UTC")
    transit = {"name": "transit work", "scope": {"services": ["transit"]}, "starts_at": "2026-12-08T00:00:00Z",
               "ends_at": "2026-12-08T06:00:00Z"}
    pop = {**transit, "name": "pop-b work", "scope": {"sites": ["POP-B"]}}
    tx(store, lambda con: calendar.add_window(con, cfg, transit, "maria", TUE_0230_BERLIN))
    tx(store, lambda con: calendar.add_window(con, cfg, pop, "maria", TUE_0230_BERLIN))
    tx(store, lambda con: calendar.cancel_window(con, "MW-2", "maria", TUE_0230_BERLIN))
    maint = Maintenance(cfg, tx(store, lambda con: calendar.list_windows(con, None, TUE_0230_BERLIN)))
    assert maint.window_for(["EDGE1:UP1"], TUE_0230_BERLIN) == "transit work"
    assert maint.window_for(["BAGG"], TUE_0230_BERLIN) is None  # canceled: silences nothing
    assert maint.window_for(["EDGE1:UP1"], TUE_0230_BERLIN + 6 * 3600) is None  # over
    # The config file's windows still hold as before (patch night: CORE1, Tuesdays 02:00-04:00 UTC here).
    assert maint.window_for(["CORE1"], datetime(2026, 12, 8, 2, 30, tzinfo=UTC).timestamp()) == "patch night"


def test_changes_covering_an_incident(store: Store) -> None:
    cfg = inventory()
    for fields in (change(), change(title="later", starts_at="2026-12-09T01:00:00Z", ends_at="2026-12-09T02:00:00Z"),
                   change(title="canceled"), change(title="elsewhere", scope={"sites": ["POP-B"]})):
        tx(store, lambda con, f=fields: calendar.add_change(con, cfg, f, "maria", TUE_0230_BERLIN))
    tx(store, lambda con: calendar.cancel_change(con, "CHG-3", "maria", TUE_0230_BERLIN))
    changes = tx(store, lambda con: calendar.list_changes(con))
    link = "AGG:ether2--ACC:ether1"
    assert [c.id for c in changes_covering(changes, [link], TUE_0230_BERLIN, cfg)] == ["CHG-1"]
    assert [c.id for c in changes_covering(changes, ["CORE1", "BAGG"], TUE_0230_BERLIN, cfg)] == ["CHG-4"]
    assert changes_covering(changes, ["CORE1"], TUE_0230_BERLIN, cfg) == []
    assert changes_covering(changes, [link], TUE_0230_BERLIN + 86400 * 3, cfg) == []
