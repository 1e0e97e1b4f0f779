"""From firing alerts to incident plans: root cause, suppression, impact.

``correlate`` is a pure function of the firing alerts, the topology and the
inventory, so the same inputs always give the same incidents (and it is easy
to test). The engine then reconciles these plans with the incidents it
already has (see incidents.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ispvm_tui.config import Config
from ispvm_tui.engine.api import SEVERITY_ORDER, Impact, RootCause, Severity
from ispvm_tui.engine.rules import Alert
from ispvm_tui.engine.topology import Topology, link_node


@dataclass
class Plan:
    key: str  # the root entity id; an open incident follows its key
    root_type: str
    title: str
    severity: Severity
    root_causes: list[RootCause]
    alert_ids: list[str]  # root alerts first, then suppressed ones
    suppressed_ids: list[str]
    impact: Impact
    evidence: list[str]
    labels: dict[str, str] = field(default_factory=dict)
    symptoms: list[str] = field(default_factory=list)  # entity ids explained by the root


def human_duration(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _node_of(alert: Alert, topo: Topology) -> str | None:
    """The topology node an alert is a failure of, if any."""
    if alert.rule == "device_unreachable":
        return alert.entity_id
    if alert.rule == "interface_down" and alert.entity_id in topo.link_of_end:
        return link_node(topo.link_of_end[alert.entity_id])
    return None


def _entity_of_node(node: str) -> tuple[str, str]:
    if node.startswith("link:"):
        return "link", node.removeprefix("link:")
    return "device", node


def _max_severity(values: list[Severity]) -> Severity:
    return min(values, key=SEVERITY_ORDER.index) if values else "warning"


def correlate(alerts: list[Alert], topo: Topology, config: Config, now: float) -> list[Plan]:
    firing = [a for a in alerts if a.state == "firing"]
    node_alerts: dict[str, list[Alert]] = {}
    attached: list[Alert] = []
    for alert in firing:
        node = _node_of(alert, topo)
        if node is None:
            attached.append(alert)
        else:
            node_alerts.setdefault(node, []).append(alert)
    failed = set(node_alerts)
    roots, owners = topo.roots_and_owners(failed)

    groups: dict[str, dict[str, list]] = {r: {"root": list(node_alerts[r]), "sup": [], "sym": []} for r in roots}
    for node, owner in owners.items():
        groups[owner]["sup"].extend(node_alerts[node])
        groups[owner]["sym"].append(node)
    standalone: list[Alert] = []
    for alert in attached:
        device = _device_of(alert)
        if device in failed and alert.rule != "poll_login_failed":
            owner = device if device in groups else owners.get(device)
            if owner is not None:
                groups[owner]["sup"].append(alert)
                continue
        standalone.append(alert)
    # Probe loss from a router whose transit session is down is evidence for that outage, not another one.
    bgp_down = {_device_of(a): a for a in standalone if a.rule == "bgp_session_down"}
    supporting: dict[str, list[Alert]] = {}
    for alert in [a for a in standalone if a.rule == "probe_loss" and _device_of(a) in bgp_down]:
        standalone.remove(alert)
        supporting.setdefault(bgp_down[_device_of(alert)].id, []).append(alert)

    plans = [_graph_plan(node, g["root"], g["sup"], g["sym"], config, topo, now) for node, g in groups.items()]
    plans += [_standalone_plan(alert, config, now, supporting.get(alert.id, [])) for alert in standalone]
    return sorted(plans, key=lambda p: (SEVERITY_ORDER.index(p.severity), p.key))


def _device_of(alert: Alert) -> str:
    if alert.entity_type == "probe":  # "EDGE1>1.1.1.1"
        return alert.entity_id.split(">", 1)[0]
    return alert.entity_id.split(":", 1)[0]


def _impact(config: Config, devices: set[str], extra_entities: set[str]) -> Impact:
    dev_cfg = {d.name: d for d in config.devices}
    sites = {dev_cfg[d].site for d in devices if d in dev_cfg}
    hit = devices | extra_entities | sites
    services = [s for s in config.services if hit.intersection(s.depends_on)]
    known = [dev_cfg[d].subscribers for d in devices if d in dev_cfg and dev_cfg[d].subscribers is not None]
    subscribers: int | None = sum(known) if known else None
    if subscribers is None:
        svc_subs = [s.subscribers for s in services if s.subscribers is not None]
        subscribers = sum(svc_subs) if svc_subs else None
    return Impact(
        sites_affected=len(sites), devices_affected=len(devices), services_affected=len(services),
        estimated_subscribers_affected=subscribers, sites=tuple(sorted(sites)),
        devices=tuple(sorted(devices)), services=tuple(s.name for s in services),
    )


def _labels(impact: Impact, config: Config, root_type: str, provider: str | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    categories = [s.category for s in config.services if s.name in impact.services and s.category]
    if provider:
        labels["category"] = "transit"
        labels["provider"] = provider
    elif categories:
        labels["category"] = categories[0]
    else:
        labels["category"] = "backbone" if root_type == "link" else "network"
    if impact.sites:
        labels["sites"] = ",".join(impact.sites)
    return labels


def _graph_plan(node: str, root_alerts: list[Alert], suppressed: list[Alert], symptoms: list[str],
                config: Config, topo: Topology, now: float) -> Plan:
    entity_type, entity_id = _entity_of_node(node)
    confirmed = {s for s in symptoms if not s.startswith("link:")}
    # Devices with no other path are cut off by definition, before their own polls time out: counting
    # them at once gives the first notification its true impact instead of a string of updates.
    behind = topo.downstream_of(node)
    symptom_devices = confirmed | behind
    devices = symptom_devices | ({entity_id} if entity_type == "device" else set())
    suppressed_entities = {a.entity_id for a in suppressed}
    impact = _impact(config, devices, suppressed_entities | {entity_id})
    evidence = [f"{line} for {human_duration(now - a.starts_at)}" for a in root_alerts for line in a.evidence]
    if entity_type == "link":
        confidence = 0.85 + (0.1 if symptom_devices else 0.0)
        if symptom_devices:
            title = f"Link down: {entity_id} ({len(symptom_devices)} devices cut off)"
        else:
            title = f"Redundancy degraded: link {entity_id} down"
    else:
        # A dead device looks the same as a dead path the monitoring cannot see: be modest.
        confidence = 0.6 + (0.15 if symptom_devices else 0.0)
        behind = f" (+{len(symptom_devices)} behind it)" if symptom_devices else ""
        title = f"Device unreachable: {entity_id}{behind}"
    if symptom_devices:
        names = ", ".join(sorted(symptom_devices))
        evidence.append(f"{len(symptom_devices)} devices behind it have no other path: {names} "
                        f"({len(confirmed)} confirmed unreachable)")
    evidence += [f"suppressed: {a.summary}" for a in suppressed if a.rule != "device_unreachable"]
    severity = _max_severity([a.severity for a in root_alerts])
    if entity_type == "link" and not symptom_devices:
        severity = "minor"
    elif impact.devices_affected >= 3 or (impact.estimated_subscribers_affected or 0) >= 500:
        severity = "critical"
    return Plan(
        key=entity_id, root_type=entity_type, title=title, severity=severity,
        root_causes=[RootCause(entity_type, entity_id, entity_id, round(min(confidence, 0.99), 2))],
        alert_ids=[a.id for a in root_alerts] + [a.id for a in suppressed],
        suppressed_ids=[a.id for a in suppressed], impact=impact, evidence=evidence,
        labels=_labels(impact, config, entity_type, None),
        symptoms=sorted({_entity_of_node(s)[1] for s in symptoms} | symptom_devices | suppressed_entities),
    )


def _standalone_plan(alert: Alert, config: Config, now: float, supporting: list[Alert]) -> Plan:
    lasting = f" for {human_duration(now - alert.starts_at)}"
    evidence = [line + lasting for line in alert.evidence]
    evidence += [line for a in supporting for line in a.evidence]
    provider = alert.labels.get("provider")
    if alert.rule == "bgp_session_down":
        impact = _impact(config, set(), {alert.entity_id})
        title = f"Transit outage: {provider} degraded" if provider else f"BGP session down: {alert.entity_id}"
        confidence, entity_type = 0.9 + (0.05 if supporting else 0.0), "bgp_peer"
    elif alert.rule == "probe_loss":
        impact = _impact(config, set(), {alert.entity_id})
        title, confidence, entity_type = alert.summary, 0.7, "probe"
    elif alert.rule == "poll_login_failed":
        impact = Impact()
        title, confidence, entity_type = f"Monitoring login refused: {alert.entity_id}", 0.95, "device"
    else:
        impact = _impact(config, set(), {alert.entity_id})
        title, confidence, entity_type = f"Interface down: {alert.entity_id}", 0.9, alert.entity_type
    if impact.services:
        evidence.append("services depending on it: " + ", ".join(impact.services))
    return Plan(
        key=alert.entity_id, root_type=entity_type, title=title, severity=alert.severity,
        root_causes=[RootCause(entity_type, alert.entity_id, alert.entity_id, confidence)],
        alert_ids=[alert.id] + [a.id for a in supporting], suppressed_ids=[a.id for a in supporting],
        impact=impact, evidence=evidence, labels=_labels(impact, config, entity_type, provider),
        symptoms=[a.entity_id for a in supporting],
    )
