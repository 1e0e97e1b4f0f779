"""Turn poll results into alerts, with the rules from the rule packs (rulepack.py).

Each poll of a device yields observations: one value per (rule, entity).
A rule fires once its condition has held for ``for`` (clock time from the
first bad observation, and at least ``min_samples`` polls) and resolves once
its clear condition has held for ``clear_for``. An entity that could not be
observed (device unreachable, family stale) yields no value and keeps its
state: absence of data is neither evidence of failure nor of recovery.

Which failures mean "unreachable" matters on routed networks: behind a cut,
a router's upstream answers "no route to host" or resets the connection, so
every failure to reach the device (timeout, refused, no route, reset) counts;
a refused login, a TLS failure or a garbled reply prove the device answered.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ispvm_tui.collectors.results import BgpSession, InterfaceStat, PollResult
from ispvm_tui.config import Config
from ispvm_tui.engine.api import AlertView, Severity
from ispvm_tui.engine.hardening import version_tuple
from ispvm_tui.engine.rulepack import METRICS, DeviceScope, EffectiveRule, RuleSet

# Failures that mean the device could not be reached at all.
UNREACHABLE_KINDS = frozenset({"timeout", "refused", "unreachable"})
# Failures that prove the device answered (something is wrong, but it is there).
ANSWERED_KINDS = frozenset({"auth", "protocol", "tls", "slow"})
_OK_STATES = frozenset({"ok", "normal", "good", "true", "yes", "running"})


@dataclass
class Alert:
    id: str
    rule: str
    entity_type: str
    entity_id: str
    severity: Severity
    starts_at: float
    summary: str
    evidence: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    state: str = "firing"
    ends_at: float | None = None
    incident_id: str | None = None
    suppressed: bool = False
    metric: str = ""
    runbook: str | None = None
    ever_suppressed: bool = False  # counted once in the noise figures

    def view(self) -> AlertView:
        return AlertView(
            id=self.id, rule=self.rule, entity_type=self.entity_type, entity_id=self.entity_id,
            severity=self.severity, state="firing" if self.state == "firing" else "resolved",
            starts_at=self.starts_at, ends_at=self.ends_at, summary=self.summary,
            incident_id=self.incident_id, suppressed=self.suppressed,
        )


@dataclass
class _State:
    first_bad_at: float | None = None
    bad_samples: int = 0
    first_clear_at: float | None = None


@dataclass
class Transition:
    alert: Alert
    fired: bool  # True: fired, False: resolved


@dataclass(frozen=True)
class PortEvent:
    """A port change that is recorded, not alerted on (a subscriber port, say)."""

    at: float
    device: str
    interface: str
    up: bool


@dataclass
class Observed:
    transitions: list[Transition] = field(default_factory=list)
    events: list[PortEvent] = field(default_factory=list)
    reachable: bool | None = None  # this poll's verdict: True answered, False unreachable, None unknown
    ports_down: list[str] = field(default_factory=list)  # link ends newly seen down this poll


Make = Callable[[EffectiveRule, object], Alert]


class RuleEngine:
    """Per-entity rule state and the set of firing alerts."""

    def __init__(self, config: Config, ruleset: RuleSet) -> None:
        self.config = config
        self.ruleset = ruleset
        self.firing: dict[tuple[str, str], Alert] = {}  # (rule, entity_id) -> alert
        self._states: dict[tuple[str, str], _State] = {}
        self._scopes = {d.name: DeviceScope(d.name, d.site, d.role, tuple(d.tags)) for d in config.devices}
        self._watch_globs = {d.name: tuple(d.watch_interfaces) for d in config.devices}
        self._uplink = re.compile(config.rules.uplink_comment) if config.rules.uplink_comment else None
        self._link_peer: dict[str, str] = {}
        for link in config.links:
            self._link_peer[link.a] = link.b
            self._link_peer[link.b] = link.a
        self._peers: dict[str, list] = {}
        for p in config.bgp_peers:
            self._peers.setdefault(p.device, []).append(p)
        self._probes = {p.id: p for p in config.probes}
        self._seen_established: set[str] = set()
        self._seen_full: set[str] = set()
        self._ospf_itf: dict[str, str] = {}
        self._oper: dict[str, bool] = {}  # interface -> last oper state seen
        self._link_downs: dict[str, int] = {}  # interface -> last link-downs counter
        self._downs: dict[str, deque[float]] = {}  # interface -> times it went down (for flap counts)
        self.last_ok_at: dict[str, float] = {}  # device -> start of the last poll any collector answered
        self.raised = 0  # alerts fired since start (noise figures)

    # ---- state the correlator needs ---------------------------------------
    def pending(self, metric: str) -> set[str]:
        """Entities whose rule on ``metric`` saw a bad value but has not fired (yet)."""
        return set(self.pending_since(metric))

    def is_pending(self, metric: str, entity: str) -> bool:
        """``entity in pending(metric)`` without walking every state: asked once per poll."""
        for name in self.ruleset.by_metric.get(metric, ()):
            st = self._states.get((name, entity))
            if st is not None and st.first_bad_at is not None and (name, entity) not in self.firing:
                return True
        return False

    def pending_since(self, metric: str) -> dict[str, float]:
        """Entity -> time of its first bad value, for rules on ``metric`` that have not fired."""
        names = set(self.ruleset.by_metric.get(metric, ()))
        out: dict[str, float] = {}
        for (rule, entity), st in self._states.items():
            if rule in names and st.first_bad_at is not None and (rule, entity) not in self.firing:
                out[entity] = min(out.get(entity, st.first_bad_at), st.first_bad_at)
        return out

    def rules_for(self, metric: str, device: str) -> list[EffectiveRule]:
        return self.ruleset.for_metric(metric, self._scopes[device])

    def is_firing(self, metric: str, entity: str) -> bool:
        return any((name, entity) in self.firing for name in self.ruleset.by_metric.get(metric, ()))

    def restore(self, alerts: list[Alert]) -> None:
        """Resume after a restart: firing alerts keep their identity and start time."""
        for alert in alerts:
            self.firing[(alert.rule, alert.entity_id)] = alert
            self._states[(alert.rule, alert.entity_id)] = _State(first_bad_at=alert.starts_at, bad_samples=10**6)

    # ---- evaluation ----------------------------------------------------
    def observe_collector(self, name: str, lost: bool | None, now: float, summary: str,
                          evidence: list[str]) -> list[Transition]:
        """A remote collector's heartbeat verdict, every watcher tick (None: unknown, keep the state);
        its alert's entity is ``collector:NAME``."""
        return self._observe_remote("collector.lost", f"collector:{name}", "collector", lost, now, summary, evidence)

    def observe_stream(self, stream: str, down: bool | None, now: float, summary: str,
                       evidence: list[str]) -> list[Transition]:
        """The centre's own link to the result stream; entity ``stream:NAME``."""
        return self._observe_remote("stream.unreachable", f"stream:{stream}", "stream", down, now, summary, evidence)

    def observe_self(self, metric: str, entity: str, kind: str, bad: bool | None, now: float, summary: str,
                     evidence: list[str]) -> list[Transition]:
        """The engine's checks on itself (health.self_checks): its poller, its notification targets."""
        return self._observe_remote(metric, entity, kind, bad, now, summary, evidence)

    def observe_inbound(self, device: str | None, entity: str, firing: bool, now: float, severity: str,
                        summary: str, evidence: list[str], labels: dict[str, str]) -> list[Transition]:
        """An alert another system sent in (engine/inbound.py). On a known device it is that device's, under
        that device's rule scope, so the correlator joins it to the device's incident; else it stands alone."""
        kind = "device" if device is not None else "inbound"
        scope = self._scopes[device] if device is not None else DeviceScope(entity, "", kind, ())

        def make(rule: EffectiveRule, value: object) -> Alert:
            alert = self._new(rule, kind, entity, summary, list(evidence), dict(labels))
            alert.severity = severity  # type: ignore[assignment]  # the sender's, already checked
            return alert

        out: list[Transition] = []
        for rule in self.ruleset.for_metric("inbound.firing", scope):
            out += self._eval(rule, kind, entity, firing, now, make)
        return out

    def _observe_remote(self, metric: str, entity: str, kind: str, value: bool | None, now: float, summary: str,
                        evidence: list[str]) -> list[Transition]:
        scope = DeviceScope(entity, "", kind, ())
        out: list[Transition] = []
        for rule in self.ruleset.for_metric(metric, scope):
            out += self._eval(rule, kind, entity, value, now,
                              lambda r, v: self._new(r, kind, entity, summary, list(evidence)))
        return out

    def observe(self, device: str, results: list[PollResult], now: float,
                rates: Mapping[str, Mapping[str, float | None]] | None = None) -> Observed:
        """Feed one poll cycle of one device (all its collectors).

        ``rates`` maps an interface name to its derived per-second metrics
        (``utilisation_pct``, ``errors_ps``, ``discards_ps``) from this poll.
        """
        out = Observed()
        scope = self._scopes[device]
        answered = [r for r in results if r.ok]
        failed = [r for r in results if not r.ok]
        if answered or any(r.error_kind in ANSWERED_KINDS for r in failed):
            reachable: bool | None = True
        elif failed and all(r.error_kind in UNREACHABLE_KINDS for r in failed):
            reachable = False
        else:
            reachable = None  # e.g. an internal error: says nothing about the device
        out.reachable = reachable
        if answered:
            # When the answering poll *started*: a reply that began before a failure was reported says
            # nothing about after it, however late it arrived on a loaded host.
            self.last_ok_at[device] = max(self.last_ok_at.get(device, -math.inf),
                                          min(now, max(r.started_at for r in answered)))
        unreachable = None if reachable is None else not reachable
        for rule in self.ruleset.for_metric("device.unreachable", scope):
            out.transitions += self._eval(rule, "device", device, unreachable, now,
                                          lambda r, v, st=None: self._unreachable_alert(r, device, results, now))
        api = next((r for r in results if r.collector == "api"), None)
        login_failed = None
        if api is not None:
            login_failed = True if api.error_kind == "auth" else False if api.ok else None
        for rule in self.ruleset.for_metric("device.login_failed", scope):
            out.transitions += self._eval(rule, "device", device, login_failed, now,
                                          lambda r, v: self._login_alert(r, device, api))
        if not answered:
            return out
        best = {r.collector: r for r in answered}
        merged = best.get("api") or best["snmp"]
        self._interfaces(device, scope, merged.interfaces, rates or {}, now, out)
        bgp = next((r.bgp for r in answered if r.bgp is not None), None)
        if bgp is not None:
            self._bgp(device, scope, bgp, now, out)
        ospf = next((r.ospf for r in answered if r.ospf is not None), None)
        if ospf is not None:
            self._ospf(device, scope, ospf, now, out)
        for probe in (p for r in answered for p in r.probes):
            spec = self._probes.get(f"{device}>{probe.target}")
            if spec is None or probe.error:
                continue  # a probe the router refused says nothing about the path
            for rule in self.ruleset.for_metric("probe.loss_pct", scope):
                if "loss_alert_pct" in spec.model_fields_set:  # the probe's own threshold wins
                    gap = (rule.threshold or 0) - (rule.clear_threshold if rule.clear_threshold is not None
                                                   else rule.threshold or 0)
                    rule = dataclasses.replace(rule, threshold=spec.loss_alert_pct,
                                               clear_threshold=max(0.0, spec.loss_alert_pct - gap))
                out.transitions += self._eval(rule, "probe", spec.id, probe.loss_pct, now,
                                              lambda r, v, s=spec, p=probe: self._probe_alert(r, s, p))
            for rule in self.ruleset.for_metric("probe.rtt_ms", scope):
                out.transitions += self._eval(rule, "probe", spec.id, probe.rtt_avg_ms, now,
                                              lambda r, v, s=spec: self._numeric_alert(r, "probe", s.id, v))
        self._health(device, scope, answered, now, out)
        self._optics(device, scope, answered, merged.interfaces, now, out)
        self._lte(device, scope, answered, now, out)
        self._dhcp(device, scope, answered, now, out)
        return out

    def _interfaces(self, device: str, scope: DeviceScope, interfaces: tuple[InterfaceStat, ...],
                    rates: Mapping[str, Mapping[str, float | None]], now: float, out: Observed) -> None:
        down_rules = self.ruleset.for_metric("interface.down", scope)
        flap_rules = self.ruleset.for_metric("interface.flaps", scope)
        rate_rules = [(metric, self.ruleset.for_metric(metric, scope))
                      for metric in ("interface.utilisation_pct", "interface.errors_ps", "interface.discards_ps")]
        window = max((r.window_s or 0 for r in flap_rules), default=0.0)
        for itf in interfaces:
            entity = f"{device}:{itf.name}"
            if itf.admin_up is None or itf.oper_up is None:
                continue
            down = bool(itf.admin_up) and not itf.oper_up
            before = self._oper.get(entity)
            self._oper[entity] = bool(itf.oper_up)
            went_down = 0
            counter = itf.link_downs
            last = self._link_downs.get(entity)
            if counter is not None:
                self._link_downs[entity] = counter
            if counter is not None and last is not None and counter >= last:
                went_down = counter - last  # counts downs between polls too
            elif before is True and down:
                went_down = 1
            if went_down:
                times = self._downs.setdefault(entity, deque(maxlen=256))
                times.extend([now] * min(went_down, 256))
            times = self._downs.get(entity)
            if times:
                while times and now - times[0] > window:
                    times.popleft()
            flaps = len(times) if times is not None else 0
            if down and entity in self._link_peer and before is not False:
                out.ports_down.append(entity)
            # Scopes are "watched" or "all": whether this port is watched is asked once, not by every rule.
            watched = self._watched(device, itf, "watched")
            for rule in down_rules:
                if watched or rule.scope == "all":
                    out.transitions += self._eval(rule, "interface", entity, down, now,
                                                  lambda r, v, e=entity: self._interface_alert(r, e))
                elif before is not None and before != bool(itf.oper_up) and itf.admin_up:
                    out.events.append(PortEvent(now, device, itf.name, bool(itf.oper_up)))
            for rule in flap_rules:
                if watched or rule.scope == "all":
                    recent = sum(1 for t in times or () if now - t <= (rule.window_s or 0))
                    out.transitions += self._eval(rule, "interface", entity, recent, now,
                                                  lambda r, v, e=entity: self._flap_alert(r, e, v))
            derived = rates.get(itf.name) or {}
            for metric, rules in rate_rules:
                value = derived.get(metric.split(".", 1)[1])
                for rule in rules:
                    if watched or rule.scope == "all":
                        out.transitions += self._eval(rule, "interface", entity, value, now,
                                                      lambda r, v, e=entity: self._numeric_alert(r, "interface", e, v))
            if not flaps and entity in self._downs and not self._downs[entity]:
                del self._downs[entity]

    def _watched(self, device: str, itf: InterfaceStat, scope: str) -> bool:
        """Ports that matter: link ends, configured ports, uplinks by comment; or every port."""
        if scope == "all":
            return True
        entity = f"{device}:{itf.name}"
        if entity in self._link_peer:
            return True
        if any(fnmatch.fnmatchcase(itf.name, g) for g in self._watch_globs.get(device, ())):
            return True
        return bool(self._uplink and itf.alias and self._uplink.search(itf.alias))

    def _bgp(self, device: str, scope: DeviceScope, sessions: tuple[BgpSession, ...], now: float,
             out: Observed) -> None:
        rules = self.ruleset.for_metric("bgp.down", scope)
        remaining = list(sessions)
        checks: list[tuple[str, BgpSession | None, object]] = []
        # A configured peer matches a session by name, else by remote address: BGP4-MIB (SNMP) knows
        # sessions only by their remote address.
        for peer in self._peers.get(device, ()):
            session = next((s for s in remaining if s.name == peer.name), None)
            if session is None and peer.remote_address:
                session = next((s for s in remaining if s.remote_address == peer.remote_address), None)
            if session is not None:
                remaining.remove(session)
            checks.append((peer.id, session, peer))
        for session in remaining:
            checks.append((f"{device}:{session.name or session.remote_address}", session, None))
        for entity, session, peer in checks:
            if session is not None and session.established:
                self._seen_established.add(entity)
            if peer is None and entity not in self._seen_established:
                continue
            if session is not None and session.disabled:
                continue
            down = session is None or not session.established
            for rule in rules:
                out.transitions += self._eval(rule, "bgp_peer", entity, down, now,
                                              lambda r, v, e=entity, s=session, p=peer: self._bgp_alert(r, e, s, p))

    def _ospf(self, device: str, scope: DeviceScope, neighbours: tuple, now: float, out: Observed) -> None:
        rules = self.ruleset.for_metric("ospf.down", scope)
        present = {f"{device}:{n.router_id}": n for n in neighbours}
        for entity, n in present.items():
            if n.full:
                self._seen_full.add(entity)
            if n.interface:
                self._ospf_itf[entity] = n.interface  # a lost neighbour no longer says where it was
        for entity in sorted(e for e in self._seen_full if e.startswith(device + ":")):
            n = present.get(entity)
            for rule in rules:
                out.transitions += self._eval(rule, "ospf_neighbor", entity, n is None or not n.full, now,
                                              lambda r, v, e=entity, n=n: self._ospf_alert(r, e, n))

    def _health(self, device: str, scope: DeviceScope, answered: list[PollResult], now: float,
                out: Observed) -> None:
        system = next((r.system for r in answered if r.system is not None), None)
        values: list[tuple[str, str, str, float | bool | None]] = []  # metric, entity type, entity, value
        if system is not None:
            values.append(("device.cpu_pct", "device", device, system.cpu_load))
            if system.total_memory and system.free_memory is not None:
                used = 100.0 * (system.total_memory - system.free_memory) / system.total_memory
                values.append(("device.memory_pct", "device", device, used))
            have, want = version_tuple(system.firmware), version_tuple(system.firmware_upgrade)
            if have is not None and want is not None:
                values.append(("device.firmware_behind", "device", device, have < want))
        sensors = next((r.sensors for r in answered if r.sensors is not None), None) or ()
        for s in sensors:
            entity, name = f"{device}:{s.name}", s.name.lower()
            if "temperature" in name and s.value is not None:
                values.append(("sensor.temperature_c", "sensor", entity, s.value))
            elif ("voltage" in name or s.unit == "V") and s.value is not None:
                values.append(("sensor.voltage_v", "sensor", entity, s.value))
            elif "psu" in name and s.state is not None:
                values.append(("sensor.psu_failed", "sensor", entity, s.state.lower() not in _OK_STATES))
            elif "fan" in name and s.state is not None:
                values.append(("sensor.fan_failed", "sensor", entity, s.state.lower() not in _OK_STATES))
        for metric, etype, entity, value in values:
            for rule in self.ruleset.for_metric(metric, scope):
                out.transitions += self._eval_numeric(rule, etype, entity, value, now)

    def _optics(self, device: str, scope: DeviceScope, answered: list[PollResult], interfaces: tuple,
                now: float, out: Observed) -> None:
        """SFP modules, as the interface they sit in: receive power while the link is up (with it down
        ``interface.down`` says more than "no light"), and the module's temperature."""
        modules = _api_first(answered, "optics")
        if not modules:
            return
        ports = {i.name: i for i in interfaces}
        for m in modules:
            itf = ports.get(m.interface)
            if not m.present or itf is None:
                continue
            entity = f"{device}:{m.interface}"
            watched = self._watched(device, itf, "watched")  # interface metrics: watched ports, or scope "all"
            rx = m.rx_power_dbm if itf.oper_up else None
            for metric, value in (("optic.rx_power_dbm", rx), ("optic.tx_power_dbm", m.tx_power_dbm),
                                  ("optic.temperature_c", m.temperature_c)):
                for rule in self.ruleset.for_metric(metric, scope):
                    if watched or rule.scope == "all":
                        out.transitions += self._eval_numeric(rule, "interface", entity, value, now)

    def _lte(self, device: str, scope: DeviceScope, answered: list[PollResult], now: float, out: Observed) -> None:
        """Every LTE interface, watched or not: a router's modem is its way out (a CPE's or a backup uplink)."""
        for m in _api_first(answered, "lte") or ():
            entity = f"{device}:{m.interface}"
            for metric, value in (("lte.rsrp_dbm", m.rsrp_dbm), ("lte.sinr_db", m.sinr_db)):
                for rule in self.ruleset.for_metric(metric, scope):
                    out.transitions += self._eval_numeric(rule, "interface", entity, value, now)

    def _dhcp(self, device: str, scope: DeviceScope, answered: list[PollResult], now: float, out: Observed) -> None:
        """Each DHCP server's pool: ``DEVICE:POOL``; a full pool turns new subscribers away."""
        rules = self.ruleset.for_metric("dhcp.pool_used_pct", scope)
        for srv in _api_first(answered, "dhcp") or ():
            if not rules or not srv.pool or not srv.pool_size or srv.pool_used is None:
                continue
            entity, used = f"{device}:{srv.pool}", 100.0 * srv.pool_used / srv.pool_size
            for rule in rules:
                out.transitions += self._eval_numeric(rule, "dhcp_pool", entity, used, now)

    def _eval_numeric(self, rule: EffectiveRule, entity_type: str, entity: str, value: float | bool | None,
                      now: float) -> list[Transition]:
        return self._eval(rule, entity_type, entity, value, now,
                          lambda r, v: self._numeric_alert(r, entity_type, entity, v))

    def _eval(self, rule: EffectiveRule, entity_type: str, entity: str, value: float | bool | None, now: float,
              make: Callable[..., Alert]) -> list[Transition]:
        if value is None:
            return []  # not observed: keep whatever state the rule is in
        key = (rule.name, entity)
        st = self._states.get(key)
        alert = self.firing.get(key)
        if alert is None:
            if not rule.bad(value):
                if st is not None:
                    del self._states[key]
                return []
            if st is None:
                st = self._states[key] = _State(first_bad_at=now)
            st.bad_samples += 1
            began = st.first_bad_at if st.first_bad_at is not None else now
            if now - began >= rule.for_s and st.bad_samples >= rule.min_samples:
                alert = make(rule, value)
                alert.starts_at = began
                alert.metric, alert.runbook = rule.metric, rule.runbook
                alert.labels = {**rule.labels, **alert.labels}
                self.firing[key] = alert
                st.first_clear_at = None
                self.raised += 1
                return [Transition(alert, True)]
            return []
        if st is None:
            st = self._states[key] = _State(first_bad_at=alert.starts_at, bad_samples=1)
        if rule.clear(value):
            if st.first_clear_at is None:
                st.first_clear_at = now
            if now - st.first_clear_at >= rule.clear_for_s:
                del self.firing[key]
                del self._states[key]
                alert.state, alert.ends_at = "resolved", now
                return [Transition(alert, False)]
            return []
        st.first_clear_at = None
        st.bad_samples += 1
        fresh = make(rule, value)  # keep evidence current while it fires
        alert.evidence, alert.summary = fresh.evidence, fresh.summary
        return []

    # ---- alert builders ------------------------------------------------
    def _new(self, rule: EffectiveRule, entity_type: str, entity: str, summary: str, evidence: list[str],
             labels: dict[str, str] | None = None) -> Alert:
        return Alert(id=str(uuid.uuid4()), rule=rule.name, entity_type=entity_type, entity_id=entity,
                     severity=rule.severity, starts_at=0.0, summary=summary, evidence=evidence,
                     labels=labels or {}, metric=rule.metric, runbook=rule.runbook)

    def _unreachable_alert(self, rule: EffectiveRule, device: str, results: list[PollResult], now: float) -> Alert:
        st = self._states.get((rule.name, device))
        how = "; ".join(f"{r.collector.upper()}: {r.error}" for r in results if not r.ok)
        polls = st.bad_samples if st else 1
        since = now - st.first_bad_at if st and st.first_bad_at is not None else 0.0
        return self._new(rule, "device", device, f"{device} unreachable",
                         [f"{device} unreachable: {polls} polls over {since:.0f}s failed ({how})"])

    def _login_alert(self, rule: EffectiveRule, device: str, result: PollResult | None) -> Alert:
        err = (result.error if result else None) or "login refused"
        return self._new(rule, "device", device, f"{device}: {err}",
                         [f"{device} refused the monitoring login: {err}"])

    def _towards(self, entity: str) -> str:
        peer = self._link_peer.get(entity)
        return f" (to {peer})" if peer else ""

    def _interface_alert(self, rule: EffectiveRule, entity: str) -> Alert:
        towards = self._towards(entity)
        return self._new(rule, "interface", entity, f"{entity}{towards} down",
                         [f"{entity}{towards} oper-down while admin-up"])

    def _flap_alert(self, rule: EffectiveRule, entity: str, count: object) -> Alert:
        towards = self._towards(entity)
        window = _human(rule.window_s or 0)
        return self._new(rule, "interface", entity, f"{entity}{towards} flapping: {count} down events in {window}",
                         [f"{entity}{towards} went down {count} times within {window}"])

    def _probe_alert(self, rule: EffectiveRule, spec, probe) -> Alert:
        name = spec.name or spec.target
        rtt = f", avg {probe.rtt_avg_ms:.1f} ms" if probe.rtt_avg_ms is not None else ""
        line = f"Probe loss to {name} = {probe.loss_pct:.0f}% from {spec.device}"
        return self._new(rule, "probe", spec.id, line, [f"{line} ({probe.received}/{probe.sent} replies{rtt})"])

    def _bgp_alert(self, rule: EffectiveRule, entity: str, session: BgpSession | None, cfg) -> Alert:
        provider = cfg.provider if cfg is not None else None
        state = session.state if session is not None else "not present"
        remote = ""
        if session is not None and session.remote_as:
            remote = f" (AS{session.remote_as} {session.remote_address})"
        elif cfg is not None and cfg.remote_as:
            remote = f" (AS{cfg.remote_as} {cfg.remote_address or ''})".replace(" )", ")")
        return self._new(rule, "bgp_peer", entity, f"BGP {entity}{remote} state={state}",
                         [f"BGP peer {entity}{remote} state={state}"], {"provider": provider} if provider else {})

    def _ospf_alert(self, rule: EffectiveRule, entity: str, n) -> Alert:
        state = n.state if n is not None else "gone"
        itf = self._ospf_itf.get(entity)
        where = f" on {itf}" if itf else ""
        return self._new(rule, "ospf_neighbor", entity, f"OSPF neighbour {entity}{where} {state}",
                         [f"OSPF neighbour {entity}{where} state={state} (was Full)"],
                         {"interface": itf} if itf else {})

    def _numeric_alert(self, rule: EffectiveRule, entity_type: str, entity: str, value: object) -> Alert:
        m = METRICS[rule.metric]
        if m.kind == "bool":
            what = rule.metric.split(".", 1)[1].replace("_", " ")
            return self._new(rule, entity_type, entity, f"{entity}: {what}", [f"{entity}: {what}"])
        shown = f"{float(value):.1f}{m.unit}" if isinstance(value, int | float) else str(value)
        limit = f"{rule.op} {rule.threshold:g}{m.unit}"
        return self._new(rule, entity_type, entity, f"{entity}: {m.description} {shown}",
                         [f"{entity}: {m.description} {shown} ({limit})"])


def _api_first(answered: list[PollResult], family: str) -> Any:
    """The family as the API read it, else as SNMP did; None when neither collected it."""
    for result in sorted(answered, key=lambda r: r.collector != "api"):
        value = getattr(result, family)
        if value is not None:
            return value
    return None


def _human(seconds: float) -> str:
    s = int(seconds)
    if s % 3600 == 0 and s >= 3600:
        return f"{s // 3600}h"
    if s % 60 == 0 and s >= 60:
        return f"{s // 60}m"
    return f"{s}s"
