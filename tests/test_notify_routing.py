"""Routing: which incidents go to which target, the sticky rule, and escalation of unacknowledged incidents."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ispvm_tui.config import Config, Route
from ispvm_tui.demo import start_demo
from ispvm_tui.engine import outbox
from ispvm_tui.engine.notify.routing import matches, parse_hours
from ispvm_tui.engine.store import Store
from ispvm_tui.engine.webhooks import rfc3339
from ispvm_tui.lab.webhook_sink import WebhookSink
from tests.held_faults import held
from tests.waiting import wait_for

RIGA = ZoneInfo("Europe/Riga")
# Friday 2026-12-04 10:00 in Riga (08:00 UTC)
FRI_10 = datetime(2026, 12, 4, 10, 0, tzinfo=RIGA).timestamp()


def incident(severity: str = "major", *, starts: float = FRI_10 - 60, acked_by: str | None = None,
             status: str = "open", **labels: str) -> dict[str, Any]:
    return {"id": "inc-1", "title": "t", "status": status, "severity": severity, "starts_at": rfc3339(starts),
            "ends_at": None, "ack": {"acked_by": acked_by, "acked_at": None}, "labels": labels}


@pytest.mark.parametrize(("spec", "local", "inside"), [
    ("Mon-Fri 08:00-18:00", datetime(2026, 12, 4, 9, 0), True),
    ("Mon-Fri 08:00-18:00", datetime(2026, 12, 4, 18, 0), False),  # the end is not inside
    ("Mon-Fri 08:00-18:00", datetime(2026, 12, 5, 9, 0), False),  # Saturday
    ("22:00-06:00", datetime(2026, 12, 4, 23, 30), True),
    ("22:00-06:00", datetime(2026, 12, 5, 5, 59), True),
    ("22:00-06:00", datetime(2026, 12, 5, 6, 0), False),
    ("Fri 22:00-06:00", datetime(2026, 12, 5, 3, 0), True),  # Friday's night runs into Saturday
    ("Fri 22:00-06:00", datetime(2026, 12, 4, 3, 0), False),  # Thursday's night is not Friday's
    ("Sat,Sun 00:00-24:00", datetime(2026, 12, 6, 23, 59), True),
    ("Fri-Mon 00:00-24:00", datetime(2026, 12, 7, 12, 0), True),  # a day range wraps over the weekend
    ("Fri-Mon 00:00-24:00", datetime(2026, 12, 8, 12, 0), False),
])
def test_hours(spec: str, local: datetime, inside: bool) -> None:
    assert parse_hours(spec).contains(local) is inside


@pytest.mark.parametrize(("spec", "why"), [
    ("Mon-Fri 8-18", "expected"), ("Mon-Fri 08:00-25:00", "not a time of day"), ("Fun 08:00-09:00", "not a day"),
    ("08:00-08:00", "empty"), ("Mon,,Tue 08:00-09:00", "empty day"),
])
def test_bad_hours_say_what_is_wrong(spec: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_hours(spec)
    with pytest.raises(ValueError, match=why):
        Route(hours=[spec])


def test_every_condition_a_route_sets_must_hold() -> None:
    inc = incident("critical", sites="POP-A,POP-B", regions="north", services="POP-A broadband",
                   provider="UPSTREAM1", category="transit")
    assert matches(Route(), inc, FRI_10, RIGA)
    assert matches(Route(severities=["critical", "major"]), inc, FRI_10, RIGA)
    assert not matches(Route(severities=["minor"]), inc, FRI_10, RIGA)
    assert matches(Route(sites=["POP-B"]), inc, FRI_10, RIGA)
    assert not matches(Route(sites=["POP-C"]), inc, FRI_10, RIGA)
    assert matches(Route(regions=["north"], services=["POP-A broadband"]), inc, FRI_10, RIGA)
    assert not matches(Route(regions=["south"]), inc, FRI_10, RIGA)
    assert matches(Route(labels={"provider": "UPSTREAM1"}), inc, FRI_10, RIGA)
    assert not matches(Route(labels={"provider": "UPSTREAM2"}), inc, FRI_10, RIGA)
    assert not matches(Route(severities=["critical"], sites=["POP-C"]), inc, FRI_10, RIGA)
    # Hours are read in the configured zone: 10:00 in Riga is 08:00 UTC.
    assert matches(Route(hours=["Mon-Fri 09:00-18:00"]), inc, FRI_10, RIGA)
    assert not matches(Route(hours=["Mon-Fri 09:00-18:00"]), inc, FRI_10, ZoneInfo("UTC"))
    assert matches(Route(hours=["Sat,Sun 00:00-24:00", "Fri 10:00-11:00"]), inc, FRI_10, RIGA)


def test_unacked_for_waits_and_stops_at_the_acknowledgement() -> None:
    route = Route(unacked_for_s=900)
    assert not matches(route, incident(starts=FRI_10 - 899), FRI_10, RIGA)
    assert matches(route, incident(starts=FRI_10 - 900), FRI_10, RIGA)
    assert not matches(route, incident(starts=FRI_10 - 3600, acked_by="alice"), FRI_10, RIGA)
    assert not matches(route, incident(starts=FRI_10 - 3600, status="closed"), FRI_10, RIGA)


class Named:
    def __init__(self, name: str) -> None:
        self.name = name
        self.events = frozenset({"incident.opened", "incident.updated", "incident.acked", "incident.closed"})


def test_a_target_keeps_an_incident_once_it_has_it_and_joins_when_the_route_starts_to_match(tmp_path: Path) -> None:
    """Office-hours Jira got the opening: it gets the closing at night. Critical-only paging joins on the
    update that made the incident critical, and its first event is that update (sequence 1)."""
    office, critical = Named("office"), Named("critical-pager")
    routes = {"office": Route(hours=["Mon-Fri 08:00-18:00"]), "critical-pager": Route(severities=["critical"])}
    night = datetime(2026, 12, 4, 23, 0, tzinfo=RIGA).timestamp()

    def routed(inc: dict[str, Any], now: float):
        return lambda name: matches(routes[name], inc, now, RIGA)

    with Store(tmp_path / "o.duckdb") as store:
        def enqueue(event: str, inc: dict[str, Any], now: float) -> None:
            store.transaction(lambda con: outbox.enqueue(con, [office, critical], "inc-1", event, inc, now,
                                                         routed=routed(inc, now))).result(30)

        enqueue("incident.opened", incident("major"), FRI_10)
        enqueue("incident.updated", incident("critical"), night)
        enqueue("incident.closed", incident("critical", status="closed"), night + 60)
        rows = store.query("SELECT endpoint, event_type, sequence FROM outbox ORDER BY seq")
    assert rows == [("office", "incident.opened", 1), ("office", "incident.updated", 2),
                    ("critical-pager", "incident.updated", 1), ("office", "incident.closed", 3),
                    ("critical-pager", "incident.closed", 2)]


def _with_escalation(url: str, after_s: float):
    def configure(config: Config) -> Config:
        data = config.model_dump()
        data["notify"]["webhooks"].append({"name": "escalation", "url": url, "route": {"unacked_for_s": after_s}})
        return Config.model_validate(data)

    return configure


def test_an_unacknowledged_incident_escalates_after_its_time_and_the_acknowledgement_follows(
        address_base: str) -> None:
    with WebhookSink() as second:
        run = start_demo(held("core-link-cut"), speed=10.0, address_base=address_base,
                         configure=_with_escalation(second.url, 120.0))
        try:
            assert run.sink.wait_for(lambda got: any(w.json.get("event_type") == "incident.opened" for w in got),
                                     timeout=90), "the first target never got the incident"
            assert second.wait_for(lambda got: len(got) >= 1, timeout=90), "the incident never escalated"
            [first] = second.received()
            assert first.json["event_type"] == "incident.opened" and first.json["sequence"] == 1
            inc_id = first.json["incident"]["id"]
            rows = run.store.query_dicts(
                "SELECT o.created_at, i.opened_at FROM outbox o JOIN incidents i ON i.id = o.incident_id "
                "WHERE o.endpoint = 'escalation'")
            assert rows and all(r["created_at"] - r["opened_at"] >= 120 for r in rows), rows
            run.engine.acknowledge(inc_id, "noc-oncall").result(30)
            assert second.wait_for(lambda got: any(w.json.get("event_type") == "incident.acked" for w in got),
                                   timeout=60), "the escalation target did not hear of the acknowledgement"
            acked = [w for w in second.received() if w.json["event_type"] == "incident.acked"]
            assert acked[0].json["sequence"] > first.json["sequence"]
            # Acknowledged: the sweep never sends it again, however long it stays open.
            end = run.clock.now() + 150
            assert wait_for(lambda: run.clock.now() >= end, timeout=60)
            assert [w.json["event_type"] for w in second.received()].count("incident.opened") == 1
        finally:
            run.stop()
