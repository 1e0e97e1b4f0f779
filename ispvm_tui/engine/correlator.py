"""From firing alerts to incident plans: root causes, suppression, impact.

``correlate`` is a pure function of the firing alerts, the topology, the
inventory and what the engine knows about each device right now
(``NetworkState``), so the same inputs always give the same incidents.

The model, in order:

1. **A dead device explains its links.** When a device stops answering and
   the neighbours on two or more of its links report those ports down (and
   it never answered after any of them went down), or a neighbour still sees
   carrier on another of its links, the device is the cause and those links
   are its symptoms. A link stays a cause when both ends answer, when the
   device behind kept answering after it went down, or when it is the only
   path anyone can see (a cut and a far-end power loss look the same there;
   the evidence says so).
2. **Failed nodes** are unreachable devices and links with a port down (or
   flapping) at either end. Removing them all, what the console still reaches
   is the live network; everything else is dark.
3. **One dark region, one incident.** Each connected dark region is one
   problem. Its failed nodes next to the live network are its root causes
   (two cut uplinks of one site: two root causes, one incident); everything
   else in it is a symptom, counted in the impact and suppressed. A failed
   device with no configured path from the console is its own root cause,
   at a lower confidence that says so.
4. **Failures side by side are one event.** Dark regions whose root causes
   hang off the same live device (or off the console's attach points) and
   began within about one poll of it are merged: everything behind a core
   router going dark at once is one incident, whose evidence names the
   common point (a line card, its power, a shared duct, a config push),
   not one incident per cut link. Faults further apart in time stay apart.
5. **Other alerts** (BGP, OSPF, probes, health, capacity) on a device inside
   a region are suppressed under it; the rest stand alone. Severity follows
   the impact: a service with a healthy alternative is degraded, not down.

A plan whose area holds a device the engine has not settled yet (not
re-polled since the failure began, or its own alert still pending) is
``held``: the incident book neither opens nor changes an incident for it,
so the order polls happen to answer in never decides the answer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ispvm_tui.config import Config
from ispvm_tui.engine.api import SEVERITY_ORDER, Impact, RootCause, Severity
from ispvm_tui.engine.rules import Alert
from ispvm_tui.engine.topology import CONSOLE, Topology, link_node, node_entity

LINK_METRICS = ("interface.down", "interface.flaps")


@dataclass(frozen=True)
class NetworkState:
    """What the engine knows about devices beyond the firing alerts."""

    answering: frozenset[str] = frozenset()  # devices whose latest poll answered
    last_ok_at: Mapping[str, float] = field(default_factory=dict)
    unsettled: frozenset[str] = frozenset()  # devices whose state is still being decided
    # Devices whose unreachable alert is pending: next to a region, its firing would move the root outwards.
    pending_down: frozenset[str] = frozenset()


@dataclass
class Plan:
    key: str  # the root entity ids joined with "+"; an open incident follows its roots
    root_type: str
    title: str
    severity: Severity
    root_causes: list[RootCause]
    alert_ids: list[str]  # root alerts first, then suppressed ones
    suppressed_ids: list[str]
    impact: Impact
    evidence: list[str]
    labels: dict[str, str] = field(default_factory=dict)
    symptoms: list[str] = field(default_factory=list)  # entity ids it covers besides its roots
    area: frozenset[str] = frozenset()  # devices whose state this plan depends on
    held: bool = False

    @property
    def roots(self) -> list[str]:
        return [rc.entity_id for rc in self.root_causes]


def human_duration(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _max_severity(values: list[Severity]) -> Severity:
    return min(values, key=SEVERITY_ORDER.index) if values else "warning"


def device_of(alert: Alert) -> str:
    if alert.entity_type == "probe":  # "EDGE1>1.1.1.1"
        return alert.entity_id.split(">", 1)[0]
    return alert.entity_id.split(":", 1)[0]


@dataclass
class _Region:
    nodes: set[str]
    roots: list[str]
    outside: bool = False  # no configured path from the console
    near: set[str] = field(default_factory=set)  # live devices (or the console) its roots hang off
    common: list[str] = field(default_factory=list)  # set when merged: the shared border(s)
    spread_s: float = 0.0  # when merged: how far apart its parts began
    alerts: dict[str, list[Alert]] = field(default_factory=dict)  # node -> its own alerts
    absorbed: dict[str, list[Alert]] = field(default_factory=dict)  # dead device -> its links' alerts
    suppressed: list[Alert] = field(default_factory=list)


def correlate(alerts: list[Alert], topo: Topology, config: Config, now: float,
              state: NetworkState | None = None) -> list[Plan]:
    state = state or NetworkState()
    firing = [a for a in alerts if a.state == "firing"]
    down = {a.entity_id: a for a in firing if a.metric == "device.unreachable"}
    link_alerts: dict[str, list[Alert]] = {}
    others: list[Alert] = []
    for a in firing:
        if a.metric in LINK_METRICS and a.entity_id in topo.link_of_end:
            link_alerts.setdefault(topo.link_of_end[a.entity_id], []).append(a)
        elif a.metric != "device.unreachable":
            others.append(a)

    absorbed, why_dead = _dead_devices(down, link_alerts, topo, state)
    failed = set(down) | {link_node(lid) for lid in link_alerts if lid not in absorbed}
    node_alerts: dict[str, list[Alert]] = {d: [a] for d, a in down.items()}
    for lid, items in link_alerts.items():
        if lid not in absorbed:
            node_alerts[link_node(lid)] = sorted(items, key=lambda a: a.entity_id)
    regions = _side_by_side(_regions(failed, topo), node_alerts, topo, config)
    region_of: dict[str, _Region] = {}
    for region in regions:
        for node in region.nodes:
            region_of[node] = region
        region.alerts = {n: node_alerts[n] for n in sorted(region.nodes) if n in node_alerts}
    for lid, dev in absorbed.items():
        region_of[dev].absorbed.setdefault(dev, []).extend(sorted(link_alerts[lid], key=lambda a: a.entity_id))

    standalone: list[Alert] = []
    for a in sorted(others, key=lambda a: (a.entity_id, a.rule)):
        region = _region_for_other(a, region_of, topo, absorbed)
        if region is not None and a.metric != "device.login_failed":
            region.suppressed.append(a)
        else:
            standalone.append(a)
    # Probe loss from a router whose transit session is down is evidence for that outage, not another one.
    bgp_down = {device_of(a): a for a in standalone if a.metric == "bgp.down"}
    supporting: dict[str, list[Alert]] = {}
    for a in [a for a in standalone if a.metric.startswith("probe.") and device_of(a) in bgp_down]:
        standalone.remove(a)
        supporting.setdefault(bgp_down[device_of(a)].id, []).append(a)

    plans = []
    for region in (r for r in regions if r.alerts):
        plan = _region_plan(region, why_dead, config, topo, state, now)
        # A router it hangs off has stopped answering too, its alert still pending: once it fires the region
        # grows towards the console and the root moves up. Waiting keeps one outage from paging bottom-up.
        plan.held |= bool(region.near & state.pending_down)
        plans.append(plan)
    firing_bgp = {a.entity_id for a in firing if a.metric == "bgp.down"}
    # One incident per entity: an LTE interface with both its signal alerts, a router with CPU and memory
    # high, is one problem with several symptoms; the worst (then the oldest) alert leads.
    by_entity: dict[str, list[Alert]] = {}
    for a in standalone:
        by_entity.setdefault(a.entity_id, []).append(a)
    for group in by_entity.values():
        lead, *also = sorted(group, key=lambda a: (SEVERITY_ORDER.index(a.severity), a.starts_at, a.rule))
        plan = _standalone_plan(lead, config, now, supporting.get(lead.id, []), firing_bgp)
        plan.alert_ids[1:1] = [a.id for a in also]  # root alerts first, then the suppressed ones
        first = len(_lasting(lead, now))
        plan.evidence[first:first] = [line for a in also for line in _lasting(a, now)]
        plans.append(plan)
    for p in plans:
        p.held |= bool(p.area & state.unsettled)
    return sorted(plans, key=lambda p: (SEVERITY_ORDER.index(p.severity), p.key))


def _dead_devices(down: dict[str, Alert], link_alerts: dict[str, list[Alert]], topo: Topology,
                  state: NetworkState) -> tuple[dict[str, str], dict[str, str]]:
    """Links explained by a dead device (link id -> device), and why each device is called dead."""
    absorbed: dict[str, str] = {}
    why: dict[str, str] = {}
    for dev in sorted(down):
        failed_here: list[tuple[str, str]] = []  # (link id, far end)
        live: list[str] = []
        for lid in topo.links_of.get(dev, ()):
            far_dev, far_end, _near = topo.links[lid].far(dev)
            if far_dev not in state.answering or far_dev in down:
                continue  # nobody on the other side to tell us
            on_far = [a for a in link_alerts.get(lid, ()) if a.entity_id == far_end]
            if not on_far:
                live.append(far_end)  # the neighbour still sees carrier
                continue
            went_down = min(a.starts_at for a in on_far)
            if state.last_ok_at.get(dev, -math.inf) > went_down:
                continue  # the device answered after this link went down: the link failed on its own
            failed_here.append((lid, far_end))
        if failed_here and live:
            why[dev] = (f"{dev} stopped answering while {', '.join(live)} still see carrier to it: "
                        f"the device (or its management plane) failed, not the path")
        elif len(failed_here) >= 2:
            why[dev] = (f"all {len(failed_here)} links to {dev} went down at the same time, seen from the other "
                        f"side ({', '.join(end for _, end in failed_here)}): {dev} lost power or failed")
        elif not failed_here and live:
            why[dev] = f"{dev} stopped answering while {', '.join(live)} still see carrier to it (hung?)"
            continue
        else:
            continue
        for lid, _ in failed_here:
            absorbed[lid] = dev
    return absorbed, why


def _regions(failed: set[str], topo: Topology) -> list[_Region]:
    """Connected dark regions around the failed nodes, with their root causes."""
    if not failed:
        return []  # the usual round: nothing to walk the graph for
    live = topo.reachable(failed)
    dark = topo.nodes - live - {CONSOLE}
    seen: set[str] = set()
    regions: list[_Region] = []
    for start in sorted(failed):
        if start in seen:
            continue
        stack, nodes = [start], set()
        while stack:
            here = stack.pop()
            if here in nodes:
                continue
            nodes.add(here)
            stack.extend(n for n in topo.neighbours(here) if n in dark and n not in nodes)
        seen |= nodes
        roots = sorted(n for n in nodes & failed if topo.neighbours(n) & live)
        if roots:
            regions.append(_Region(nodes, roots, near=_near(roots, live, topo)))
            continue
        # Outside the known topology: nothing says how these are reached, so each failed device
        # is its own root cause (a link alone here would have a live end, so it is never left over).
        for node in sorted(nodes & failed):
            regions.append(_Region({node} | (topo.downstream_of(node) & nodes), [node], outside=True))
    return regions


def _near(roots: list[str], live: set[str], topo: Topology) -> set[str]:
    """The live devices (or the console) the roots hang off, directly or over a live link."""
    near: set[str] = set()
    for r in roots:
        for n in topo.neighbours(r) & live:
            if n.startswith("link:"):
                near |= {d for d in topo.neighbours(n) if d in live and d != r}
            else:
                near.add(n)
    return near


def _borders(region: _Region, topo: Topology) -> set[str]:
    """What the region hangs off, the console's attach points counted as one (the console itself)."""
    attach = topo.neighbours(CONSOLE)
    return {CONSOLE if d in attach else d for d in region.near}


def _poll_window(border: str, config: Config) -> float:
    """How far apart two failures seen by ``border`` can begin and still be seen in the same poll or the
    next (each device keeps its own phase; a poll may start up to ``jitter`` late). The console stands for its
    attach points: the slowest of them decides."""
    names = config.console.attach if border == CONSOLE else [border]
    return max(config.interval_of(n) for n in names) * (1 + 2 * config.polling.jitter)


def _side_by_side(regions: list[_Region], node_alerts: dict[str, list[Alert]], topo: Topology,
                  config: Config) -> list[_Region]:
    """Merge dark regions that share a border and began within one of its polls: one event, one incident."""
    placed = [r for r in regions if not r.outside and r.near]
    if len(placed) < 2:
        return regions
    borders = {id(r): _borders(r, topo) for r in placed}
    start = {id(r): min((a.starts_at for n in r.roots for a in node_alerts.get(n, ())), default=math.inf)
             for r in placed}
    parent = list(range(len(placed)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    windows: dict[str, float] = {}
    shared: dict[tuple[int, int], set[str]] = {}
    for i, j in itertools.combinations(range(len(placed)), 2):
        a, b = placed[i], placed[j]
        both = borders[id(a)] & borders[id(b)]
        if not both:
            continue
        for d in both - windows.keys():
            windows[d] = _poll_window(d, config)
        common = {d for d in both if abs(start[id(a)] - start[id(b)]) <= windows[d]}
        if common:
            parent[find(i)] = find(j)
            shared[(i, j)] = common
    groups: dict[int, list[int]] = {}
    for i in range(len(placed)):
        groups.setdefault(find(i), []).append(i)
    merged: list[_Region] = [r for r in regions if r.outside or not r.near]
    for members in groups.values():
        parts = [placed[i] for i in members]
        if len(parts) == 1:
            merged.append(parts[0])
            continue
        common = set().union(*(c for (i, j), c in shared.items() if i in members and j in members))
        starts = [start[id(p)] for p in parts]
        merged.append(_Region(
            nodes=set().union(*(p.nodes for p in parts)), roots=sorted({r for p in parts for r in p.roots}),
            near=set().union(*(p.near for p in parts)), common=sorted(common), spread_s=max(starts) - min(starts)))
    return merged


def _common_name(common: list[str], region: _Region, topo: Topology) -> str:
    """The live router(s) a merged region hangs off; empty when it is the console's own attach points that
    failed (no live router to name)."""
    names: list[str] = []
    for d in common:
        names += sorted(a for a in topo.neighbours(CONSOLE) if a not in region.nodes) if d == CONSOLE else [d]
    return ", ".join(dict.fromkeys(names))


def _region_for_other(a: Alert, region_of: dict[str, _Region], topo: Topology,
                      absorbed: dict[str, str]) -> _Region | None:
    dev = device_of(a)
    if dev in region_of:
        return region_of[dev]
    if a.entity_type == "interface" and a.entity_id in topo.link_of_end:
        lid = topo.link_of_end[a.entity_id]
        if lid in absorbed:
            return region_of.get(absorbed[lid])
        return region_of.get(link_node(lid))
    itf = a.labels.get("interface")
    if a.metric == "ospf.down" and itf:
        # An adjacency over a failed link is that link's symptom.
        lid = topo.link_of_end.get(f"{dev}:{itf}")
        if lid is not None:
            return region_of.get(absorbed[lid]) if lid in absorbed else region_of.get(link_node(lid))
    return None


def _subscribers(config: Config, devices: set[str]) -> int | None:
    known = [d.subscribers for d in config.devices if d.name in devices and d.subscribers is not None]
    return sum(known) if known else None


def _services(config: Config, hit: set[str], firing_bgp: set[str]) -> tuple[list[str], list[str]]:
    """(services hit, those of them with no healthy alternative in their category)."""
    hit_services = [s for s in config.services if hit.intersection(s.depends_on)]
    down_names = {s.name for s in hit_services}
    without_alternative = []
    for s in hit_services:
        peers = [o for o in config.services if o.name != s.name and o.category and o.category == s.category]
        healthy = [o for o in peers if o.name not in down_names and not firing_bgp.intersection(o.depends_on)]
        if not healthy:
            without_alternative.append(s.name)
    return [s.name for s in hit_services], without_alternative


def _impact(config: Config, devices: set[str], entities: set[str], firing_bgp: set[str],
            whole_sites: set[str] | None = None) -> tuple[Impact, list[str]]:
    dev_cfg = {d.name: d for d in config.devices}
    sites = {dev_cfg[d].site for d in devices if d in dev_cfg}
    names, hard_down = _services(config, devices | entities | (whole_sites or set()), firing_bgp)
    subscribers = _subscribers(config, devices)
    if subscribers is None:
        subs = [s.subscribers for s in config.services if s.name in hard_down and s.subscribers is not None]
        subscribers = sum(subs) if subs else None
    impact = Impact(
        sites_affected=len(sites), devices_affected=len(devices), services_affected=len(names),
        estimated_subscribers_affected=subscribers, sites=tuple(sorted(sites)),
        devices=tuple(sorted(devices)), services=tuple(names),
    )
    return impact, hard_down


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
    # The incident's scope, for routing and ticket assignment (engine/notify/routing.py).
    if impact.sites:
        labels["sites"] = ",".join(impact.sites)
    regions = sorted({s.region for s in config.sites if s.region and s.name in impact.sites})
    if regions:
        labels["regions"] = ",".join(regions)
    if impact.services:
        labels["services"] = ",".join(impact.services)
    affected = set(impact.devices)
    roles = sorted({d.role for d in config.devices if d.name in affected})
    if roles:
        labels["roles"] = ",".join(roles)
    return labels


def _lasting(a: Alert, now: float) -> list[str]:
    return [f"{line} for {human_duration(now - a.starts_at)}" for line in a.evidence]


def _region_plan(region: _Region, why_dead: dict[str, str], config: Config, topo: Topology,
                 state: NetworkState, now: float) -> Plan:
    roles = {d.name: d.role for d in config.devices}
    root_devices = {r for r in region.roots if not r.startswith("link:")}
    root_links = [node_entity(r)[1] for r in region.roots if r.startswith("link:")]
    root_alerts = [a for r in region.roots for a in region.alerts.get(r, ())]
    since = min((a.starts_at for a in root_alerts), default=now)
    dark = {n for n in region.nodes if not n.startswith("link:") and n not in root_devices}
    # A device that answered after the failure began is not cut off, whatever the graph says: behind a
    # hung router (management plane down, forwarding fine) traffic still flows. One whose last answer
    # predates the failure is cut off by the topology, before its own polls time out.
    cut_off = {n for n in dark if not (n in state.answering and state.last_ok_at.get(n, -math.inf) > since)}
    still_answering = sorted(dark - cut_off)
    flapping = [a for a in root_alerts if a.metric == "interface.flaps"]
    for a in flapping:
        # Behind a flapping link everything is cut off again and again: count it whichever phase
        # the last poll caught, so the impact (and the page) does not flip with every cycle.
        cut_off |= topo.downstream_of(link_node(topo.link_of_end[a.entity_id]))
    devices = cut_off | root_devices
    symptom_alerts = [a for n, items in region.alerts.items() if n not in region.roots for a in items]
    absorbed_alerts = [a for d in sorted(region.absorbed) for a in region.absorbed[d]]
    suppressed = symptom_alerts + absorbed_alerts + region.suppressed
    entities = {node_entity(n)[1] for n in region.nodes} | {a.entity_id for a in suppressed}
    entities |= {topo.link_of_end[a.entity_id] for a in absorbed_alerts}
    entities |= {a.entity_id for a in root_alerts}  # the ports that reported it
    firing_bgp = {a.entity_id for a in region.suppressed if a.metric == "bgp.down"}
    whole_sites = _whole_sites(config, devices)
    impact, hard_down = _impact(config, devices, entities, firing_bgp, whole_sites)

    causes: list[RootCause] = []
    evidence: list[str] = []
    for r in region.roots:
        etype, eid = node_entity(r)
        if etype == "link":
            ends = topo.links[eid]
            dark_ends = [d for d in (ends.a_device, ends.b_device) if d not in state.answering or d in cut_off]
            if len(region.roots) > 1:
                confidence = 0.85
            elif not dark_ends:
                confidence = 0.95  # both ends answer: nothing else explains it
            else:
                confidence = 0.8
            causes.append(RootCause("link", eid, eid, confidence))
        else:
            if region.outside:
                confidence = 0.5
            elif r in why_dead:
                confidence = 0.9 if r in region.absorbed else 0.85
            else:
                confidence = 0.6 + (0.1 if cut_off else 0.0)
            causes.append(RootCause("device", eid, eid, confidence))
    for a in root_alerts:
        evidence += _lasting(a, now)
    for dev in sorted(root_devices):
        if dev in why_dead:
            evidence.append(why_dead[dev])
        if region.outside:
            evidence.append(f"{dev} has no configured path from the console: it is its own root cause "
                            f"(add its [[links]] so root-cause analysis can place it)")
    common = _common_name(region.common, region, topo) if region.common else ""
    if region.common:
        parts = [node_entity(r)[1] for r in region.roots]
        listed = ", ".join(parts[:6]) + (f" and {len(parts) - 6} more" if len(parts) > 6 else "")
        within = f"began within {human_duration(region.spread_s)} of each other ({listed})"
        if common:
            evidence.append(f"{len(parts)} failures next to {common} {within}: one event at or near {common} (a "
                            f"line card, its power, a shared duct, a config change) is likelier than {len(parts)} "
                            f"separate faults")
        else:
            evidence.append(f"every attach point of the console failed: {len(parts)} failures {within}; the "
                            f"monitoring host's own connection (or the power at its site) is the likeliest "
                            f"common cause")
    for a in absorbed_alerts:
        evidence.append(f"symptom: {a.summary}")
    if len(root_links) == 1 and not root_devices and cut_off and len(region.roots) == 1:
        ends = topo.links[root_links[0]]
        far = [d for d in (ends.a_device, ends.b_device) if d in cut_off]
        if far:
            evidence.append(f"{far[0]} stopped answering with it: a power loss at {far[0]} would look the same "
                            f"from here")
    if still_answering:
        evidence.append(f"{', '.join(still_answering)} behind it still answer: traffic passes, only "
                        f"{', '.join(sorted(root_devices)) or 'the path to it'} does not answer")
    if cut_off:
        confirmed = sorted(d for d in cut_off if d in region.alerts)
        evidence.append(f"{len(cut_off)} devices behind it have no other path: {', '.join(sorted(cut_off))} "
                        f"({len(confirmed)} confirmed unreachable)")
    evidence += [f"suppressed: {a.summary}" for a in region.suppressed]
    if impact.services:
        evidence.append("services affected: " + ", ".join(impact.services))

    title = _region_title(region, root_devices, root_links, cut_off, flapping, whole_sites, common)
    outage = bool(cut_off) or any(roles.get(d) in ("access", "cpe") for d in root_devices) or bool(
        _subscribers(config, root_devices))
    if flapping or outage or hard_down:
        big = len(devices) >= 3 or (impact.estimated_subscribers_affected or 0) >= 500 or bool(hard_down)
        severity: Severity = "critical" if big else "major"
    elif root_devices:
        severity = "major"  # a router is gone, though everything behind it has another path
    else:
        severity = "minor"  # redundancy lost, nobody cut off
    key = "+".join(node_entity(r)[1] for r in region.roots)
    # What the decision depends on: the root devices, the ends of root links and the neighbours of root
    # devices. Devices deeper in the region are cut off either way (counted by the topology until they
    # answer), so waiting for their polls would only delay the page.
    area = set(root_devices)
    for r in region.roots:
        for n in topo.neighbours(r):
            if n.startswith("link:"):
                area |= {topo.links[node_entity(n)[1]].a_device, topo.links[node_entity(n)[1]].b_device}
            elif n != CONSOLE:
                area.add(n)
    return Plan(
        key=key, root_type=causes[0].entity_type, title=title, severity=severity, root_causes=causes,
        alert_ids=[a.id for a in root_alerts] + [a.id for a in suppressed],
        suppressed_ids=[a.id for a in suppressed], impact=impact, evidence=evidence,
        labels=_labels(impact, config, causes[0].entity_type, None),
        symptoms=sorted(entities - set(key.split("+"))), area=frozenset(area),
    )


def _whole_sites(config: Config, devices: set[str]) -> set[str]:
    members: dict[str, set[str]] = {}
    for d in config.devices:
        members.setdefault(d.site, set()).add(d.name)
    return {site for site, names in members.items() if names <= devices}


def _region_title(region: _Region, root_devices: set[str], root_links: list[str], cut_off: set[str],
                  flapping: list[Alert], whole_sites: set[str], common: str = "") -> str:
    behind = f" ({len(cut_off)} devices cut off)" if cut_off else ""
    if flapping:  # the count moves while it flaps: it is in the evidence, not the title
        return f"Link flapping: {root_links[0] if root_links else flapping[0].entity_id}{behind}"
    if len(region.roots) == 1:
        if root_links:
            if cut_off:
                return f"Link down: {root_links[0]}{behind}"
            return f"Redundancy degraded: link {root_links[0]} down"
        dev = next(iter(root_devices))
        plus = f" (+{len(cut_off)} behind it)" if cut_off else ""
        return f"Device unreachable: {dev}{plus}"
    where = ", ".join(sorted(whole_sites)) if whole_sites else None
    parts = []
    if root_links:
        parts.append(f"{len(root_links)} links down")
    if root_devices:
        parts.append(f"{len(root_devices)} devices down")
    what = " and ".join(parts)
    if common:
        return f"Outage behind {common}: {what}{behind}"
    if where:
        return f"{where} cut off: {what}{behind}"
    return f"Outage: {what}{behind}"


def _standalone_plan(alert: Alert, config: Config, now: float, supporting: list[Alert],
                     firing_bgp: set[str]) -> Plan:
    evidence = _lasting(alert, now)
    evidence += [line for a in supporting for line in a.evidence]
    provider = alert.labels.get("provider")
    impact, hard_down = _impact(config, set(), {alert.entity_id}, firing_bgp)
    severity = alert.severity
    device = device_of(alert)
    if alert.metric == "bgp.down":
        confidence, entity_type = 0.9 + (0.05 if supporting else 0.0), "bgp_peer"
        if provider:
            others = [p for p in config.bgp_peers if p.provider and p.id != alert.entity_id]
            healthy = [p for p in others if p.id not in firing_bgp]
            if healthy and not hard_down:
                names = ", ".join(sorted({p.provider or p.name for p in healthy}))
                title, severity = f"Transit degraded: {provider} down ({names} still up)", "major"
                evidence.append(f"traffic has another way out: {names} established")
            else:
                title, severity = f"Transit outage: {provider} down, no other upstream", "critical"
        else:
            title = f"BGP session down: {alert.entity_id}"
            if hard_down:
                severity = "critical"
    elif alert.metric.startswith("probe."):
        title, confidence, entity_type = alert.summary, 0.7, "probe"
    elif alert.metric == "device.login_failed":
        impact = Impact()
        title, confidence, entity_type = f"Monitoring login refused: {alert.entity_id}", 0.95, "device"
    elif alert.metric == "interface.down":
        title, confidence, entity_type = f"Interface down: {alert.entity_id}", 0.9, "interface"
    elif alert.metric == "interface.flaps":
        title, confidence, entity_type = f"Interface flapping: {alert.summary}", 0.9, "interface"
    elif alert.metric == "ospf.down":
        title, confidence, entity_type = alert.summary, 0.8, "ospf_neighbor"
    else:
        title, confidence, entity_type = alert.summary, 0.9, alert.entity_type
    if impact.services:
        evidence.append("services depending on it: " + ", ".join(impact.services))
    if alert.runbook:
        evidence.append(f"runbook: {alert.runbook}")
    return Plan(
        key=alert.entity_id, root_type=entity_type, title=title, severity=severity,
        root_causes=[RootCause(entity_type, alert.entity_id, alert.entity_id, confidence)],
        alert_ids=[alert.id] + [a.id for a in supporting], suppressed_ids=[a.id for a in supporting],
        impact=impact, evidence=evidence, labels=_labels(impact, config, entity_type, provider),
        symptoms=[a.entity_id for a in supporting], area=frozenset({device}),
    )
