"""Root cause, suppression and incident lifecycle on a small redundant topology.

        console
           |
         CORE1 ----L2---- B
           |              |
           L1             L4
           |              |
           A -----L3----- C ---L5--- D
"""

from __future__ import annotations

import itertools

from ispvm_tui.config import Config
from ispvm_tui.engine.correlator import correlate
from ispvm_tui.engine.incidents import IncidentBook
from ispvm_tui.engine.rules import Alert
from ispvm_tui.engine.topology import Topology

L1, L2, L3, L4, L5 = "A:e1--CORE1:e1", "B:e1--CORE1:e2", "A:e2--C:e1", "B:e2--C:e2", "C:e3--D:e1"

CONFIG = Config.model_validate({
    "console": {"attach": ["CORE1"]},
    "sites": [{"name": "S"}],
    "credentials": {"c": {"username": "u", "password_secret": "x"}},
    "devices": [{"name": n, "site": "S", "role": "core" if n == "CORE1" else "access", "address": f"10.0.0.{i}",
                 "credential": "c", "subscribers": 100} for i, n in enumerate(["CORE1", "A", "B", "C", "D"], 1)],
    "links": [{"a": "CORE1:e1", "b": "A:e1"}, {"a": "CORE1:e2", "b": "B:e1"}, {"a": "A:e2", "b": "C:e1"},
              {"a": "B:e2", "b": "C:e2"}, {"a": "C:e3", "b": "D:e1"}],
    "bgp_peers": [{"device": "CORE1", "name": "UP1", "provider": "UP1"}],
    "probes": [{"device": "CORE1", "target": "1.1.1.1"}],
    "services": [{"name": "transit", "depends_on": ["CORE1:UP1"], "category": "transit"}],
})
TOPO = Topology(CONFIG)
_ids = itertools.count()


def alert(rule: str, entity: str, etype: str, severity: str = "major", at: float = 0.0) -> Alert:
    return Alert(id=f"a{next(_ids)}", rule=rule, entity_type=etype, entity_id=entity, severity=severity,
                 starts_at=at, summary=f"{rule} {entity}", evidence=[f"{rule} {entity}"])


def down(end: str) -> Alert:
    return alert("interface_down", end, "interface")


def unreachable(dev: str) -> Alert:
    return alert("device_unreachable", dev, "device")


def test_one_of_two_paths_lost_is_redundancy_degraded() -> None:
    (plan,) = correlate([down("CORE1:e1")], TOPO, CONFIG, 10)
    assert plan.root_causes[0].entity_id == L1
    assert plan.impact.devices_affected == 0
    assert plan.severity == "minor"
    assert plan.title.startswith("Redundancy degraded")


def test_single_path_cut_counts_everything_behind_it_at_once() -> None:
    plans = correlate([down("C:e3")], TOPO, CONFIG, 10)  # D's only link; D not yet seen unreachable
    (plan,) = plans
    assert plan.key == L5
    assert plan.impact.devices == ("D",)
    assert plan.impact.estimated_subscribers_affected == 100


def test_symptoms_are_suppressed_under_their_root() -> None:
    alerts = [down("C:e3"), unreachable("D")]
    (plan,) = correlate(alerts, TOPO, CONFIG, 10)
    assert plan.key == L5
    assert plan.suppressed_ids == [alerts[1].id]


def test_both_uplinks_cut_gives_two_roots_and_every_device_owned_once() -> None:
    alerts = [down("CORE1:e1"), down("CORE1:e2")] + [unreachable(d) for d in "ABCD"]
    plans = correlate(alerts, TOPO, CONFIG, 10)
    assert sorted(p.key for p in plans) == sorted([L1, L2])
    owned = [a for p in plans for a in p.suppressed_ids]
    assert sorted(owned) == sorted(a.id for a in alerts[2:])  # each device alert in exactly one incident


def test_device_that_stops_answering_with_links_up_is_its_own_root() -> None:
    alerts = [unreachable("D")]
    (plan,) = correlate(alerts, TOPO, CONFIG, 10)
    assert plan.root_causes[0].entity_type == "device" and plan.key == "D"
    assert plan.root_causes[0].confidence < 0.8  # a hung device and an invisible dead path look alike


def test_probe_loss_supports_the_transit_incident() -> None:
    bgp = alert("bgp_session_down", "CORE1:UP1", "bgp_peer", "critical")
    bgp.labels = {"provider": "UP1"}
    probe = alert("probe_loss", "CORE1>1.1.1.1", "probe")
    (plan,) = correlate([bgp, probe], TOPO, CONFIG, 10)
    assert plan.key == "CORE1:UP1" and plan.suppressed_ids == [probe.id]
    assert plan.labels == {"category": "transit", "provider": "UP1"}
    assert plan.root_causes[0].confidence > 0.9


def test_incident_lifecycle_rekey_coalesce_and_close() -> None:
    book = IncidentBook(close_after_s=60, update_every_s=30)
    # The far device is seen first: an incident rooted at D opens.
    changes = book.reconcile(correlate([unreachable("D")], TOPO, CONFIG, 0), 0)
    assert [c.event for c in changes] == ["incident.opened"]
    incident_id = changes[0].incident.id
    # Then the link's near end is seen down: same incident, re-keyed to the link (root cause changed).
    both = [down("C:e3"), unreachable("D")]
    changes = book.reconcile(correlate(both, TOPO, CONFIG, 10), 10)
    assert [(c.event, c.incident.id) for c in changes] == []  # coalesced: inside update_every_s
    changes = book.reconcile(correlate(both, TOPO, CONFIG, 31), 31)
    assert [(c.event, c.incident.id) for c in changes] == [("incident.updated", incident_id)]
    assert book.open[incident_id].root_key == L5
    # The link comes back but D's poll still times out: no new incident.
    changes = book.reconcile(correlate([unreachable("D")], TOPO, CONFIG, 40), 40)
    assert all(c.event is None for c in changes) and len(book.open) == 1
    # Everything recovers; the incident closes only after recovery held for close_after_s.
    assert [c.event for c in book.reconcile([], 50)] == [None]
    assert book.reconcile([], 100) == []
    changes = book.reconcile([], 111)
    assert [(c.event, c.incident.id) for c in changes] == [("incident.closed", incident_id)]
    assert not book.open


def test_acknowledge_emits_once() -> None:
    book = IncidentBook(close_after_s=60)
    (opened,) = book.reconcile(correlate([unreachable("D")], TOPO, CONFIG, 0), 0)
    assert book.acknowledge(opened.incident.id, "alice", 5).event == "incident.acked"
    assert book.acknowledge(opened.incident.id, "bob", 6).event is None
    assert book.open[opened.incident.id].acked_by == "alice"


def test_leftover_symptom_in_the_same_round_joins_the_incident() -> None:
    """The link's plan and a far device's own plan in one round: still one incident."""
    book = IncidentBook(close_after_s=60, update_every_s=0)
    (opened,) = book.reconcile(correlate([down("C:e3"), unreachable("D")], TOPO, CONFIG, 0), 0)
    link_plan = correlate([down("C:e3")], TOPO, CONFIG, 10)[0]
    device_plan = correlate([unreachable("D")], TOPO, CONFIG, 10)[0]
    changes = book.reconcile([link_plan, device_plan], 10)
    assert all(c.event != "incident.opened" for c in changes)
    assert list(book.open) == [opened.incident.id]
    assert book.open[opened.incident.id].root_key == L5
