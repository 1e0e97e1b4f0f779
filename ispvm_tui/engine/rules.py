"""Turn poll results into alerts.

Each rule counts consecutive bad and good observations per entity, so an
alert fires only after ``*_after_polls`` bad polls in a row and resolves only
after ``recover_after_polls`` good ones (hysteresis: one lucky or unlucky
poll never flips an alert). An entity that could not be observed (device
unreachable, family stale) keeps its counters: absence of data is not
evidence of recovery.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from ispvm_tui.collectors.results import PollResult
from ispvm_tui.config import Config, Rules
from ispvm_tui.engine.api import AlertView, Severity


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

    def view(self) -> AlertView:
        return AlertView(
            id=self.id, rule=self.rule, entity_type=self.entity_type, entity_id=self.entity_id,
            severity=self.severity, state="firing" if self.state == "firing" else "resolved",
            starts_at=self.starts_at, ends_at=self.ends_at, summary=self.summary,
            incident_id=self.incident_id, suppressed=self.suppressed,
        )


@dataclass
class _Counter:
    bad: int = 0
    good: int = 0
    first_bad_at: float | None = None


@dataclass
class Transition:
    alert: Alert
    fired: bool  # True: fired, False: resolved


class RuleEngine:
    """Keeps per-entity counters and the set of firing alerts."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.rules: Rules = config.rules
        self.firing: dict[tuple[str, str], Alert] = {}  # (rule, entity_id) -> alert
        self._counters: dict[tuple[str, str], _Counter] = {}
        self._seen_up: set[str] = set()  # interfaces seen oper-up at least once
        self._seen_established: set[str] = set()
        self._link_ends = {end for link in config.links for end in (link.a, link.b)}
        self._link_peer = {}
        for link in config.links:
            self._link_peer[link.a] = link.b
            self._link_peer[link.b] = link.a
        self._peers = {p.id: p for p in config.bgp_peers}
        self._probes = {p.id: p for p in config.probes}
        self._roles = {d.name: d.role for d in config.devices}

    def restore(self, alerts: list[Alert]) -> None:
        """Resume after a restart: firing alerts keep their identity and start time."""
        for alert in alerts:
            self.firing[(alert.rule, alert.entity_id)] = alert
            self._counters[(alert.rule, alert.entity_id)] = _Counter(
                bad=10**6, first_bad_at=alert.starts_at)

    # ---- evaluation ----------------------------------------------------
    def observe(self, device: str, results: list[PollResult], now: float) -> list[Transition]:
        """Feed one poll cycle of one device (all its collectors)."""
        out: list[Transition] = []
        answered = [r for r in results if r.ok]
        unreachable = bool(results) and all(r.error_kind in ("timeout", "refused") for r in results if not r.ok) \
            and not answered
        auth_failed = [r for r in results if r.error_kind == "auth"]

        out += self._step("device_unreachable", "device", device, unreachable, self.rules.unreachable_after_polls,
                          now, lambda: self._unreachable_alert(device, results, now))
        # A refused login is a monitoring gap even while SNMP still answers: always worth an alert.
        out += self._step("poll_login_failed", "device", device, bool(auth_failed), 1, now,
                          lambda: self._login_alert(device, auth_failed, now))
        if not answered:
            return out
        best = {r.collector: r for r in answered}
        merged = best.get("api") or best["snmp"]
        for itf in merged.interfaces:
            entity = f"{device}:{itf.name}"
            if itf.oper_up:
                self._seen_up.add(entity)
            watched = entity in self._link_ends or entity in self._seen_up
            if not watched or itf.admin_up is None or itf.oper_up is None:
                continue
            down = bool(itf.admin_up) and not itf.oper_up
            out += self._step("interface_down", "interface", entity, down, self.rules.interface_down_after_polls,
                              now, lambda e=entity, i=itf: self._interface_alert(e, i, now))
        bgp = next((r.bgp for r in answered if r.bgp is not None), None)
        if bgp is not None:
            out += self._bgp(device, bgp, now)
        for probe in (p for r in answered for p in r.probes):
            spec = self._probes.get(f"{device}>{probe.target}")
            if spec is None or probe.error:
                continue  # a probe the router refused says nothing about the path
            lossy = probe.loss_pct >= spec.loss_alert_pct
            out += self._step("probe_loss", "probe", spec.id, lossy, self.rules.probe_loss_after_polls, now,
                              lambda s=spec, p=probe: self._probe_alert(s, p, now))
        return out

    def _bgp(self, device: str, sessions: tuple, now: float) -> list[Transition]:
        out: list[Transition] = []
        by_name = {s.name: s for s in sessions}
        expected = {pid.split(":", 1)[1] for pid in self._peers if pid.startswith(device + ":")}
        for name in expected | set(by_name):
            entity = f"{device}:{name}"
            session = by_name.get(name)
            if session is not None and session.established:
                self._seen_established.add(entity)
            watched = name in expected or entity in self._seen_established
            if not watched or (session is not None and session.disabled):
                continue
            down = session is None or not session.established
            out += self._step("bgp_session_down", "bgp_peer", entity, down, self.rules.bgp_down_after_polls, now,
                              lambda e=entity, s=session: self._bgp_alert(e, s, now))
        return out

    def _step(self, rule: str, entity_type: str, entity: str, bad: bool, after: int, now: float,
              make) -> list[Transition]:
        key = (rule, entity)
        counter = self._counters.setdefault(key, _Counter())
        if bad:
            counter.bad += 1
            counter.good = 0
            counter.first_bad_at = counter.first_bad_at or now
            alert = self.firing.get(key)
            if alert is None and counter.bad >= after:
                alert = make()
                alert.starts_at = counter.first_bad_at
                self.firing[key] = alert
                return [Transition(alert, True)]
            if alert is not None:
                fresh = make()  # keep evidence current while it fires
                alert.evidence, alert.summary = fresh.evidence, fresh.summary
            return []
        counter.good += 1
        counter.bad = 0
        counter.first_bad_at = None
        alert = self.firing.get(key)
        if alert is not None and counter.good >= self.rules.recover_after_polls:
            del self.firing[key]
            alert.state, alert.ends_at = "resolved", now
            return [Transition(alert, False)]
        return []

    # ---- alert builders ------------------------------------------------
    def _severity_for(self, device: str) -> Severity:
        return "critical" if self._roles.get(device) in ("core", "edge") else "major"

    def _unreachable_alert(self, device: str, results: list[PollResult], now: float) -> Alert:
        key = ("device_unreachable", device)
        counter = self._counters.get(key, _Counter())
        how = "; ".join(f"{r.collector.upper()}: {r.error}" for r in results if not r.ok)
        return Alert(
            id=str(uuid.uuid4()), rule="device_unreachable", entity_type="device", entity_id=device,
            severity=self._severity_for(device), starts_at=now,
            summary=f"{device} unreachable",
            evidence=[f"{device} unreachable: {counter.bad} polls in a row failed ({how})"],
        )

    def _login_alert(self, device: str, results: list[PollResult], now: float) -> Alert:
        err = results[0].error or "login refused"
        return Alert(
            id=str(uuid.uuid4()), rule="poll_login_failed", entity_type="device", entity_id=device,
            severity="warning", starts_at=now, summary=f"{device}: {err}",
            evidence=[f"{device} refused the monitoring login: {err}"],
        )

    def _interface_alert(self, entity: str, itf, now: float) -> Alert:
        peer = self._link_peer.get(entity)
        towards = f" (to {peer})" if peer else ""
        device = entity.split(":", 1)[0]
        return Alert(
            id=str(uuid.uuid4()), rule="interface_down", entity_type="interface", entity_id=entity,
            severity=self._severity_for(device) if peer else "minor", starts_at=now,
            summary=f"{entity}{towards} down",
            evidence=[f"{entity}{towards} oper-down while admin-up"],
        )

    def _probe_alert(self, spec, probe, now: float) -> Alert:
        name = spec.name or spec.target
        rtt = f", avg {probe.rtt_avg_ms:.1f} ms" if probe.rtt_avg_ms is not None else ""
        return Alert(
            id=str(uuid.uuid4()), rule="probe_loss", entity_type="probe", entity_id=spec.id,
            severity="major", starts_at=now, summary=f"Probe loss to {name} = {probe.loss_pct:.0f}% from {spec.device}",
            evidence=[f"Probe loss to {name} = {probe.loss_pct:.0f}% from {spec.device} "
                      f"({probe.received}/{probe.sent} replies{rtt})"],
        )

    def _bgp_alert(self, entity: str, session, now: float) -> Alert:
        cfg = self._peers.get(entity)
        provider = cfg.provider if cfg else None
        state = session.state if session is not None else "not present"
        remote = ""
        if session is not None and session.remote_as:
            remote = f" (AS{session.remote_as} {session.remote_address})"
        elif cfg is not None and cfg.remote_as:
            remote = f" (AS{cfg.remote_as} {cfg.remote_address or ''})".replace(" )", ")")
        labels = {"provider": provider} if provider else {}
        return Alert(
            id=str(uuid.uuid4()), rule="bgp_session_down", entity_type="bgp_peer", entity_id=entity,
            severity="critical" if provider else "major", starts_at=now,
            summary=f"BGP {entity}{remote} state={state}",
            evidence=[f"BGP peer {entity}{remote} state={state}"],
            labels=labels,
        )
