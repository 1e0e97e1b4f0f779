"""Root cause, suppression and incident lifecycle: the right answer for each class of network.

Small redundant topology (``TOPO``)::

        console
           |
         CORE1 ----L2---- B
           |              |
           L1             L4
           |              |
           A -----L3----- C ---L5--- D          U (no links at all)

Two cores (``CORES``): COREA and COREB linked; AGG1 and AGG2 each have one link to
each core; ACC1 hangs off AGG1 only. The console is on both cores or on COREB alone.
"""

from __future__ import annotations

import itertools

import pytest

from ispvm_tui.config import Config
from ispvm_tui.engine.correlator import NetworkState, correlate
from ispvm_tui.engine.incidents import IncidentBook
from ispvm_tui.engine.rules import Alert
from ispvm_tui.engine.topology import Topology

L1, L2, L3, L4, L5 = "A:e1--CORE1:e1", "B:e1--CORE1:e2", "A:e2--C:e1", "B:e2--C:e2", "C:e3--D:e1"
METRIC = {"device_unreachable": "device.unreachable", "interface_down": "interface.down",
          "interface_flapping": "interface.flaps", "bgp_session_down": "bgp.down", "probe_loss": "probe.loss_pct",
          "ospf_neighbor_lost": "ospf.down", "lte_signal_weak": "lte.rsrp_dbm", "lte_sinr_low": "lte.sinr_db",
          "cpu_high": "device.cpu_pct", "memory_high": "device.memory_pct"}


def _config(devices: list[str], links: list[tuple[str, str]], attach: list[str], **extra) -> Config:
    return Config.model_validate({
        "console": {"attach": attach},
        "sites": [{"name": "S"}],
        "credentials": {"c": {"username": "u", "password_secret": "x"}},
        "devices": [{"name": n, "site": "S", "role": "core" if n.startswith("CORE") else "access",
                     "address": f"10.0.0.{i}", "credential": "c", "subscribers": 100}
                    for i, n in enumerate(devices, 1)],
        "links": [{"a": a, "b": b} for a, b in links],
        **extra,
    })


CONFIG = _config(["CORE1", "A", "B", "C", "D", "U"],
                 [("CORE1:e1", "A:e1"), ("CORE1:e2", "B:e1"), ("A:e2", "C:e1"), ("B:e2", "C:e2"), ("C:e3", "D:e1")],
                 ["CORE1"],
                 bgp_peers=[{"device": "CORE1", "name": "UP1", "provider": "UP1"},
                            {"device": "CORE1", "name": "UP2", "provider": "UP2"}],
                 probes=[{"device": "CORE1", "target": "1.1.1.1"}],
                 services=[{"name": "transit UP1", "depends_on": ["CORE1:UP1"], "category": "transit"},
                           {"name": "transit UP2", "depends_on": ["CORE1:UP2"], "category": "transit"}])
TOPO = Topology(CONFIG)
ALL = frozenset({"CORE1", "A", "B", "C", "D", "U"})

CORE_LINKS = [("COREA:e1", "COREB:e1"), ("COREA:e2", "AGG1:e1"), ("COREB:e2", "AGG1:e2"),
              ("COREA:e3", "AGG2:e1"), ("COREB:e3", "AGG2:e2"), ("AGG1:e3", "ACC1:e1")]
CORES_BOTH = _config(["COREA", "COREB", "AGG1", "AGG2", "ACC1"], CORE_LINKS, ["COREA", "COREB"])
CORES_ONE = _config(["COREA", "COREB", "AGG1", "AGG2", "ACC1"], CORE_LINKS, ["COREB"])
_ids = itertools.count()


def alert(rule: str, entity: str, etype: str, severity: str = "major", at: float = 0.0, **labels: str) -> Alert:
    return Alert(id=f"a{next(_ids)}", rule=rule, entity_type=etype, entity_id=entity, severity=severity,
                 starts_at=at, summary=f"{rule} {entity}", evidence=[f"{rule} {entity}"], metric=METRIC[rule],
                 labels=dict(labels))


def down(end: str, at: float = 0.0) -> Alert:
    return alert("interface_down", end, "interface", at=at)


def unreachable(dev: str, at: float = 0.0) -> Alert:
    return alert("device_unreachable", dev, "device", at=at)


def state(dead: set[str] = frozenset(), universe: frozenset[str] = ALL, **kw) -> NetworkState:
    return NetworkState(answering=frozenset(universe - set(dead)), **kw)


def roots(plan) -> set[str]:
    return {rc.entity_id for rc in plan.root_causes}


# ---- links -------------------------------------------------------------------------------
def test_one_of_two_paths_lost_is_redundancy_degraded() -> None:
    (plan,) = correlate([down("CORE1:e1")], TOPO, CONFIG, 10, state())
    assert roots(plan) == {L1}
    assert plan.impact.devices_affected == 0
    assert plan.severity == "minor"
    assert plan.title.startswith("Redundancy degraded")
    assert plan.root_causes[0].confidence >= 0.9  # both ends answer


def test_single_path_cut_counts_everything_behind_it_at_once() -> None:
    (plan,) = correlate([down("C:e3")], TOPO, CONFIG, 10, state({"D"}))  # D not yet seen unreachable
    assert plan.key == L5
    assert plan.impact.devices == ("D",)
    assert plan.impact.estimated_subscribers_affected == 100
    assert any("power loss at D would look the same" in line for line in plan.evidence)


def test_symptoms_are_suppressed_under_their_root() -> None:
    alerts = [down("C:e3"), unreachable("D")]
    (plan,) = correlate(alerts, TOPO, CONFIG, 10, state({"D"}))
    assert plan.key == L5
    assert plan.suppressed_ids == [alerts[1].id]


def test_both_paths_cut_is_one_incident_with_two_root_causes() -> None:
    alerts = [down("CORE1:e1"), down("CORE1:e2")] + [unreachable(d) for d in "ABCD"]
    (plan,) = correlate(alerts, TOPO, CONFIG, 10, state(set("ABCD")))
    assert roots(plan) == {L1, L2}
    assert all(rc.entity_type == "link" for rc in plan.root_causes)
    assert sorted(plan.suppressed_ids) == sorted(a.id for a in alerts[2:])
    assert plan.impact.devices == ("A", "B", "C", "D")
    assert plan.severity == "critical"


def test_two_cuts_minutes_apart_are_two_incidents() -> None:
    cfg = _config(["CORE1", "P", "Q"], [("CORE1:e1", "P:e1"), ("CORE1:e2", "Q:e1")], ["CORE1"])
    alerts = [down("CORE1:e1", at=0), down("CORE1:e2", at=300), unreachable("P", at=20), unreachable("Q", at=320)]
    plans = correlate(alerts, Topology(cfg), cfg, 400, state({"P", "Q"}, frozenset({"CORE1", "P", "Q"})))
    assert sorted(p.key for p in plans) == ["CORE1:e1--P:e1", "CORE1:e2--Q:e1"]


def _star(pops: int, attach: list[str] | None = None, interval_s: float | None = None) -> Config:
    """CORE1 with ``pops`` PoPs, each an aggregation router with two access switches behind it."""
    devices, links = ["CORE1"], []
    for p in range(1, pops + 1):
        devices += [f"AGG{p}", f"ACC{p}A", f"ACC{p}B"]
        links += [(f"CORE1:e{p}", f"AGG{p}:e1"), (f"AGG{p}:e2", f"ACC{p}A:e1"), (f"AGG{p}:e3", f"ACC{p}B:e1")]
    extra = {"polling": {"interval_s": interval_s}} if interval_s else {}
    return _config(devices, links, attach or ["CORE1"], **extra)


def test_everything_behind_the_attach_point_going_dark_is_one_incident() -> None:
    cfg = _star(6)
    everyone = frozenset(d.name for d in cfg.devices)
    dead = set(everyone) - {"CORE1"}
    # Seen over two polls of CORE1 (jittered), the far ends' own alerts later still.
    alerts = [down(f"CORE1:e{p}", at=100 + (p % 2) * 55) for p in range(1, 7)]
    alerts += [unreachable(d, at=180) for d in sorted(dead)]
    (plan,) = correlate(alerts, Topology(cfg), cfg, 200, state(dead, everyone))
    assert roots(plan) == {f"AGG{p}:e1--CORE1:e{p}" for p in range(1, 7)}
    assert plan.impact.devices_affected == 18
    assert plan.title.startswith("Outage behind CORE1: 6 links down")
    assert any("6 failures next to CORE1 began within 55s" in line for line in plan.evidence)
    assert sorted(plan.suppressed_ids) == sorted(a.id for a in alerts[6:])


def test_failures_side_by_side_merge_only_within_one_poll_of_the_common_router() -> None:
    cfg = _star(3, interval_s=30)  # 30 s polls: 36 s with jitter
    everyone = frozenset(d.name for d in cfg.devices)
    dead = {"AGG1", "ACC1A", "ACC1B", "AGG2", "ACC2A", "ACC2B", "AGG3", "ACC3A", "ACC3B"}
    alerts = [down("CORE1:e1", at=100), down("CORE1:e2", at=130), down("CORE1:e3", at=200)]
    plans = correlate(alerts, Topology(cfg), cfg, 260, state(dead, everyone))
    assert sorted(p.key for p in plans) == ["AGG1:e1--CORE1:e1+AGG2:e1--CORE1:e2", "AGG3:e1--CORE1:e3"]


def test_cuts_behind_different_routers_at_the_same_moment_stay_apart() -> None:
    # L5 (behind C) and L1 (off CORE1) fail together: their live neighbours differ, so two problems.
    alerts = [down("C:e3", at=10), down("CORE1:e1", at=10)]
    plans = correlate(alerts, TOPO, CONFIG, 20, state({"D"}))
    assert sorted(p.key for p in plans) == [L1, L5]


def test_the_console_attach_points_count_as_one_common_point() -> None:
    cfg = _config(["COREA", "COREB", "P", "Q"], [("COREA:e1", "COREB:e1"), ("COREA:e2", "P:e1"),
                                                   ("COREB:e2", "Q:e1")], ["COREA", "COREB"])
    everyone = frozenset({"COREA", "COREB", "P", "Q"})
    alerts = [down("COREA:e2", at=50), down("COREB:e2", at=52), unreachable("P", at=70), unreachable("Q", at=70)]
    (plan,) = correlate(alerts, Topology(cfg), cfg, 80, state({"P", "Q"}, everyone))
    assert plan.title.startswith("Outage behind COREA, COREB: 2 links down")


# ---- devices -----------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", [CORES_BOTH, CORES_ONE], ids=["console-on-both-cores", "console-on-one-core"])
def test_core_router_power_loss_is_one_incident_rooted_at_the_router(cfg: Config) -> None:
    universe = frozenset({"COREA", "COREB", "AGG1", "AGG2", "ACC1"})
    alerts = [unreachable("COREA", at=5), down("COREB:e1", at=3), down("AGG1:e1", at=4), down("AGG2:e1", at=6)]
    (plan,) = correlate(alerts, Topology(cfg), cfg, 20, state({"COREA"}, universe, last_ok_at={"COREA": 0.0}))
    assert roots(plan) == {"COREA"}
    assert plan.root_causes[0].entity_type == "device"
    assert plan.root_causes[0].confidence >= 0.85
    assert sorted(plan.suppressed_ids) == sorted(a.id for a in alerts[1:])  # its links are its symptoms
    assert plan.impact.devices == ("COREA",)  # nothing else is cut off
    assert plan.severity == "major"  # a core is gone, but everything has another path
    assert any("lost power or failed" in line for line in plan.evidence)


def test_link_that_failed_while_the_device_still_answered_stays_a_root_cause() -> None:
    universe = frozenset({"COREA", "COREB", "AGG1", "AGG2", "ACC1"})
    # COREB:e1 went down at 3; COREA answered at 10 (over AGG1/AGG2); later COREA died.
    alerts = [down("COREB:e1", at=3), unreachable("COREA", at=50), down("AGG1:e1", at=49), down("AGG2:e1", at=49)]
    plans = correlate(alerts, Topology(CORES_BOTH), CORES_BOTH, 60,
                      state({"COREA"}, universe, last_ok_at={"COREA": 10.0}))
    (plan,) = plans
    assert "COREA" in roots(plan)
    assert "COREA:e1--COREB:e1" in roots(plan)  # proven independent: one incident, both named


def test_hung_device_with_ports_up_is_its_own_root() -> None:
    (plan,) = correlate([unreachable("D")], TOPO, CONFIG, 10, state({"D"}))
    assert plan.root_causes[0].entity_type == "device" and plan.key == "D"
    assert plan.root_causes[0].confidence == 0.85
    assert any("still see carrier" in line for line in plan.evidence)


def test_device_outside_the_topology_is_its_own_root_at_lower_confidence() -> None:
    (plan,) = correlate([unreachable("U")], TOPO, CONFIG, 10, state({"U"}))
    assert plan.key == "U" and plan.root_causes[0].entity_type == "device"
    assert plan.root_causes[0].confidence < 0.8
    assert any("no configured path from the console" in line for line in plan.evidence)


def test_every_unreachable_device_lands_in_some_plan() -> None:
    alerts = [unreachable(d) for d in ("A", "B", "C", "D", "U")]
    plans = correlate(alerts, TOPO, CONFIG, 10, state({"A", "B", "C", "D", "U"}))
    covered = {aid for p in plans for aid in p.alert_ids}
    assert covered == {a.id for a in alerts}


# ---- services and other alerts -------------------------------------------------------------
def test_losing_one_of_two_transit_sessions_is_degraded_not_critical() -> None:
    bgp = alert("bgp_session_down", "CORE1:UP1", "bgp_peer", "major", provider="UP1")
    (plan,) = correlate([bgp], TOPO, CONFIG, 10, state())
    assert plan.severity == "major"
    assert plan.title.startswith("Transit degraded: UP1")
    assert plan.labels["provider"] == "UP1" and plan.labels["category"] == "transit"


def test_losing_every_transit_session_is_critical() -> None:
    up1 = alert("bgp_session_down", "CORE1:UP1", "bgp_peer", provider="UP1")
    up2 = alert("bgp_session_down", "CORE1:UP2", "bgp_peer", provider="UP2")
    plans = correlate([up1, up2], TOPO, CONFIG, 10, state())
    assert [p.severity for p in plans] == ["critical", "critical"]


def test_probe_loss_supports_the_transit_incident() -> None:
    bgp = alert("bgp_session_down", "CORE1:UP1", "bgp_peer", provider="UP1")
    probe = alert("probe_loss", "CORE1>1.1.1.1", "probe")
    (plan,) = correlate([bgp, probe], TOPO, CONFIG, 10, state())
    assert plan.key == "CORE1:UP1" and plan.suppressed_ids == [probe.id]
    assert plan.root_causes[0].confidence > 0.9


def test_ospf_adjacency_over_a_failed_link_is_its_symptom() -> None:
    ospf = alert("ospf_neighbor_lost", "CORE1:10.255.0.2", "ospf_neighbor", interface="e1")
    (plan,) = correlate([down("CORE1:e1"), ospf], TOPO, CONFIG, 10, state())
    assert plan.key == L1 and ospf.id in plan.suppressed_ids


def test_flapping_link_is_one_flapping_incident_with_impact_severity() -> None:
    flap = alert("interface_flapping", "C:e3", "interface")
    flap.summary = "C:e3 (to D:e1) flapping: 6 down events in 5m"
    flap.evidence = ["C:e3 (to D:e1) went down 6 times within 5m"]
    (plan,) = correlate([flap, down("C:e3")], TOPO, CONFIG, 10, state())
    assert plan.title.startswith("Link flapping: " + L5)
    assert any("went down 6 times" in line for line in plan.evidence)
    assert plan.severity == "major"  # D (100 subscribers) is behind it only
    assert plan.impact.devices == ("D",)


def test_symptoms_of_one_entity_are_one_incident_led_by_the_worst() -> None:
    weak = alert("lte_signal_weak", "U:lte1", "interface", "minor", at=5)
    sinr = alert("lte_sinr_low", "U:lte1", "interface", "major", at=8)
    cpu, memory = alert("cpu_high", "D", "device", "minor", at=1), alert("memory_high", "D", "device", "minor", at=3)
    plans = correlate([weak, sinr, cpu, memory], TOPO, CONFIG, 20, state())
    by_root = {plan.key: plan for plan in plans}
    assert sorted(by_root) == ["D", "U:lte1"]
    lte = by_root["U:lte1"]
    assert lte.alert_ids == [sinr.id, weak.id] and lte.severity == "major"  # the worse one leads
    assert lte.title == sinr.summary and lte.evidence[:2] == [f"{sinr.evidence[0]} for 12s",
                                                             f"{weak.evidence[0]} for 15s"]
    assert by_root["D"].alert_ids == [cpu.id, memory.id]  # same severity: the older leads


def test_a_plan_waits_while_a_device_near_it_is_unsettled() -> None:
    (plan,) = correlate([down("C:e3")], TOPO, CONFIG, 10, state(unsettled=frozenset({"D"})))
    assert plan.held
    (plan,) = correlate([down("C:e3")], TOPO, CONFIG, 10, state(unsettled=frozenset({"B"})))
    assert not plan.held  # B is nowhere near C--D


# ---- incident book ----------------------------------------------------------------------
def _round(book: IncidentBook, alerts: list[Alert], now: float, st: NetworkState | None = None):
    st = st or state({a.entity_id for a in alerts if a.rule == "device_unreachable"})
    rnd = book.reconcile(correlate(alerts, TOPO, CONFIG, now, st), now, st.unsettled)
    book.commit(rnd)
    return rnd.changes


def test_lifecycle_open_update_close_after_hold_down() -> None:
    book = IncidentBook(close_after_s=60, update_every_s=30)
    changes = _round(book, [down("CORE1:e1")], 0)
    assert [c.event for c in changes] == ["incident.opened"]
    incident_id = changes[0].incident.id
    # The second path is cut: same incident, now two root causes and an outage (significant: updated).
    both = [down("CORE1:e1"), down("CORE1:e2")] + [unreachable(d) for d in "ABCD"]
    assert [c.event for c in _round(book, both, 10)] == [None]  # coalesced inside update_every_s
    changes = _round(book, both, 31)
    assert [(c.event, c.incident.id) for c in changes] == [("incident.updated", incident_id)]
    assert set(book.open[incident_id].roots) == {L1, L2}
    assert book.open[incident_id].severity == "critical"
    assert [c.transition for c in _round(book, [], 50)] == ["recovering"]
    assert _round(book, [], 100) == []
    changes = _round(book, [], 111)
    assert [(c.event, c.incident.id) for c in changes] == [("incident.closed", incident_id)]
    assert not book.open


def test_root_recovers_symptom_stays_is_re_explained() -> None:
    book = IncidentBook(close_after_s=60, update_every_s=0)
    (opened,) = _round(book, [down("C:e3"), unreachable("D")], 0)
    # The link is back, D still does not answer (hung, port up): the incident now names D.
    changes = _round(book, [unreachable("D")], 100)
    assert [c.event for c in changes] == ["incident.updated"]
    inc = book.open[opened.incident.id]
    assert inc.roots == ["D"] and inc.title.startswith("Device unreachable: D")


def test_recurrence_within_the_window_reopens_instead_of_paging_anew() -> None:
    book = IncidentBook(close_after_s=10, update_every_s=0, reopen_window_s=300)
    (opened,) = _round(book, [down("CORE1:e1")], 0)
    _round(book, [], 5)
    assert [c.event for c in _round(book, [], 20)] == ["incident.closed"]
    changes = _round(book, [down("CORE1:e1")], 100)
    assert [(c.event, c.transition, c.incident.id) for c in changes] == [
        ("incident.updated", "reopened", opened.incident.id)]
    _round(book, [], 110)
    _round(book, [], 130)
    assert [c.transition for c in _round(book, [down("CORE1:e1")], 900)] == ["opened"]  # past the window


def test_a_bigger_outage_sharing_a_root_with_one_just_closed_is_a_new_incident() -> None:
    """One root of a just-closed incident failing again inside something much larger is a new event: it must
    page as incident.opened, not come back as an update of the old one (seen at 1,000 routers: everything
    behind the core went dark right after a PoP outage had closed, and no incident was opened)."""
    book = IncidentBook(close_after_s=10, update_every_s=0, reopen_window_s=300)
    (first,) = _round(book, [down("CORE1:e1")], 0)
    _round(book, [], 5)
    assert [c.event for c in _round(book, [], 20)] == ["incident.closed"]
    changes = _round(book, [down("CORE1:e1"), down("CORE1:e2")] + [unreachable(d) for d in "ABCD"], 100)
    assert [(c.event, c.transition) for c in changes] == [("incident.opened", "opened")]
    assert changes[0].incident.id != first.incident.id
    # Part of what a closed incident had failing again is that incident again.
    book = IncidentBook(close_after_s=10, update_every_s=0, reopen_window_s=300)
    (both,) = _round(book, [down("CORE1:e1"), down("CORE1:e2")] + [unreachable(d) for d in "ABCD"], 0)
    _round(book, [], 5)
    assert [c.event for c in _round(book, [], 20)] == ["incident.closed"]
    changes = _round(book, [down("CORE1:e1")], 100)
    assert [(c.transition, c.incident.id) for c in changes] == [("reopened", both.incident.id)]


def test_held_plan_freezes_its_incident_and_opens_nothing() -> None:
    book = IncidentBook(close_after_s=0)
    held = state(unsettled=frozenset({"D"}))
    assert _round(book, [down("C:e3")], 0, held) == []
    assert [c.event for c in _round(book, [down("C:e3")], 5, state({"D"}))] == ["incident.opened"]
    assert _round(book, [], 10, held) == []  # D not re-polled yet: no recovery
    assert [c.transition for c in _round(book, [], 15, state())] == ["recovering"]


def test_reconcile_changes_nothing_until_commit() -> None:
    book = IncidentBook(close_after_s=60)
    plans = correlate([down("CORE1:e1")], TOPO, CONFIG, 0, state())
    rnd = book.reconcile(plans, 0)
    assert rnd.changes and not book.open  # a failed write would leave the book as it was
    again = book.reconcile(plans, 1)
    assert [c.event for c in again.changes] == ["incident.opened"]  # the event is computed again
    book.commit(again)
    assert len(book.open) == 1


def test_manual_close_stays_closed_while_still_failing() -> None:
    book = IncidentBook(close_after_s=60)
    (opened,) = _round(book, [down("CORE1:e1")], 0)
    rnd = book.close(opened.incident.id, "alice", 5, "known, fibre crew on site")
    book.commit(rnd)
    assert [(c.event, c.actor) for c in rnd.changes] == [("incident.closed", "alice")]
    assert _round(book, [down("CORE1:e1")], 10) == []
    _round(book, [], 20)
    assert [c.event for c in _round(book, [down("CORE1:e1")], 30)] == ["incident.opened"]


def test_acknowledge_emits_once() -> None:
    book = IncidentBook(close_after_s=60)
    (opened,) = _round(book, [unreachable("D")], 0)
    rnd = book.acknowledge(opened.incident.id, "alice", 5)
    book.commit(rnd)
    assert [c.event for c in rnd.changes] == ["incident.acked"]
    assert book.acknowledge(opened.incident.id, "bob", 6).changes == []
    assert book.open[opened.incident.id].acked_by == "alice"


def test_priority_score_orders_by_severity_then_impact() -> None:
    book = IncidentBook(close_after_s=60)
    _round(book, [down("CORE1:e1")], 0)
    _round(book, [down("CORE1:e1"), down("C:e3")], 1, state({"D"}))
    scores = {i.title.split(":")[0]: i.score(10) for i in book.open.values()}
    assert scores["Link down"] > scores["Redundancy degraded"]


def test_a_total_outage_waits_for_the_routers_above_and_roots_at_the_attach_point() -> None:
    cfg = _star(2)
    topo = Topology(cfg)
    everyone = frozenset(d.name for d in cfg.devices)
    # The access switches were confirmed first; their aggregation routers and CORE1 failed too, alerts pending.
    early = [unreachable(d, at=10) for d in ("ACC1A", "ACC1B", "ACC2A", "ACC2B")]
    pending = frozenset({"AGG1", "AGG2", "CORE1"})
    plans = correlate(early, topo, cfg, 22, NetworkState(answering=frozenset(), pending_down=pending))
    assert plans and all(p.held for p in plans)
    # Their aggregation routers' alerts fire; CORE1's is still pending: still held.
    mid = [*early, unreachable("AGG1", at=12), unreachable("AGG2", at=12)]
    plans = correlate(mid, topo, cfg, 24, NetworkState(answering=frozenset(), pending_down=frozenset({"CORE1"})))
    assert plans and all(p.held for p in plans)
    # CORE1's fires: one plan at the attach point, everything else its symptom.
    (plan,) = correlate([*mid, unreachable("CORE1", at=14)], topo, cfg, 26, NetworkState(answering=frozenset()))
    assert roots(plan) == {"CORE1"} and not plan.held
    assert plan.impact.devices_affected == len(everyone)


def test_a_dead_access_switch_under_a_healthy_router_is_not_held() -> None:
    cfg = _star(2)
    everyone = frozenset(d.name for d in cfg.devices)
    (plan,) = correlate([unreachable("ACC1A", at=10)], Topology(cfg), cfg, 22,
                        NetworkState(answering=everyone - {"ACC1A"}, pending_down=frozenset({"ACC2B"})))
    assert roots(plan) == {"ACC1A"} and not plan.held


def test_both_attach_points_failing_together_is_one_incident_that_blames_no_live_router() -> None:
    # Two attach points with nothing between them: two dark regions, one event.
    cfg = _config(["COREA", "COREB", "AGG1", "AGG2"], [("COREA:e1", "AGG1:e1"), ("COREB:e1", "AGG2:e1")],
                  ["COREA", "COREB"])
    universe = frozenset({"COREA", "COREB", "AGG1", "AGG2"})
    alerts = [unreachable(d, at=40 + i) for i, d in enumerate(sorted(universe))]
    (plan,) = correlate(alerts, Topology(cfg), cfg, 80, state(set(universe), universe))
    assert roots(plan) == {"COREA", "COREB"}
    assert "behind" not in plan.title
    assert any("every attach point of the console failed" in line for line in plan.evidence)
