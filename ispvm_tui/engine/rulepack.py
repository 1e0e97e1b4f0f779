"""Alert rules as data: TOML rule packs, the metric catalogue, and per-scope overrides.

Built-in packs ship in ``ispvm_tui/rules/`` (availability, capacity, health).
A site adds its own rule files and overrides built-in rules per site, device
or tag from ``[rules]`` in config.toml. Every problem in a rule file or an
override (unknown metric, bad threshold, duplicate name) is reported as
``FILE:LINE: field: message``, like the rest of the configuration.

A rule watches one metric of one kind of entity. Boolean metrics fire while
they are true; numeric ones compare with ``op``/``threshold`` and clear only
past ``clear_threshold`` (hysteresis). ``for`` is how long the condition must
hold and ``clear_for`` how long it must stay clear, both measured in clock
time from the first observation, never in poll counts; ``min_samples`` adds a
floor of observations so one lost poll never pages on a short ``for``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ispvm_tui.tomlsource import Problem, SourceError, TomlSource, parse_toml, read_toml, validate

Severity = Literal["critical", "major", "minor", "warning", "info"]
RoleName = Literal["core", "edge", "aggregation", "access", "cpe"]
Op = Literal[">", ">=", "<", "<="]
BUILTIN_PACKS = ("availability", "capacity", "health")


@dataclass(frozen=True, slots=True)
class Metric:
    entity_type: str  # device | interface | bgp_peer | ospf_neighbor | probe | sensor
    kind: Literal["bool", "number"]
    unit: str
    description: str


METRICS: dict[str, Metric] = {
    "device.unreachable": Metric("device", "bool", "", "no collector reached the device (timeout, refused, "
                                                      "no route, reset)"),
    "device.login_failed": Metric("device", "bool", "", "the RouterOS API refused the monitoring login"),
    "device.cpu_pct": Metric("device", "number", "%", "CPU load"),
    "device.memory_pct": Metric("device", "number", "%", "memory in use"),
    "device.firmware_behind": Metric("device", "bool", "", "the RouterBOARD firmware is older than the one its "
                                     "RouterOS carries (no built-in rule: drift is a report, see audit routers)"),
    "interface.down": Metric("interface", "bool", "", "admin-up but oper-down"),
    "interface.flaps": Metric("interface", "number", "", "times the port went down within the rule's window"),
    "interface.utilisation_pct": Metric("interface", "number", "%", "the busier direction against the port speed"),
    "interface.errors_ps": Metric("interface", "number", "/s", "receive + transmit errors per second"),
    "interface.discards_ps": Metric("interface", "number", "/s", "receive + transmit discards per second"),
    "bgp.down": Metric("bgp_peer", "bool", "", "a configured (or once established) session not established"),
    "ospf.down": Metric("ospf_neighbor", "bool", "", "a neighbour once seen Full is no longer Full"),
    "probe.loss_pct": Metric("probe", "number", "%", "ping loss from the router to the probe's target"),
    "probe.rtt_ms": Metric("probe", "number", "ms", "average ping round trip"),
    "sensor.temperature_c": Metric("sensor", "number", "C", "a temperature sensor"),
    "optic.rx_power_dbm": Metric("interface", "number", " dBm", "an SFP module's receive power (link up)"),
    "optic.tx_power_dbm": Metric("interface", "number", " dBm", "an SFP module's transmit power"),
    "optic.temperature_c": Metric("interface", "number", "C", "an SFP module's temperature"),
    "lte.rsrp_dbm": Metric("interface", "number", " dBm", "an LTE interface's reference signal power (RSRP)"),
    "lte.sinr_db": Metric("interface", "number", " dB", "an LTE interface's signal to interference and noise"),
    "dhcp.pool_used_pct": Metric("dhcp_pool", "number", "%", "a DHCP server's address pool in use"),
    "sensor.voltage_v": Metric("sensor", "number", "V", "a supply voltage sensor"),
    "sensor.psu_failed": Metric("sensor", "bool", "", "a power supply reports a failed state"),
    "sensor.fan_failed": Metric("sensor", "bool", "", "a fan reports a failed state"),
    "collector.lost": Metric("collector", "bool", "", "a remote collector sent no heartbeat for 3 intervals"),
    "stream.unreachable": Metric("stream", "bool", "", "the engine has lost its own link to the result stream "
                                                       "(NATS) for 3 heartbeat intervals"),
    "engine.lagging": Metric("engine", "bool", "", "the engine's own poller is stalled: an answering device is over "
                                                   "two intervals (and 2 minutes) past its interval"),
    "notify.failing": Metric("target", "bool", "", "a notification target's circuit breaker is open: its deliveries "
                                                   "failed several times in a row"),
    "inbound.firing": Metric("inbound", "bool", "", "another system ([inbound]: Alertmanager, Zabbix, JSON) says "
                                                    "its alert fires; on a device the inventory knows, that device"),
}

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``"30s"``, ``"5m"`` or ``"1h30m"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '1h'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _DURATION.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _UNIT_S[u] for n, u in parts)
    raise ValueError(f"not a duration: {value!r} (use seconds or a string like '30s', '5m', '1h')")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Tunable(_Strict):
    """The fields an override may change; None leaves the rule's own value."""

    enabled: bool | None = None
    threshold: float | None = None
    clear_threshold: float | None = None
    for_s: float | None = Field(None, alias="for")
    clear_for_s: float | None = Field(None, alias="clear_for")
    min_samples: int | None = Field(None, ge=1, le=1000)
    window_s: float | None = Field(None, alias="window", gt=0)
    severity: Severity | None = None
    labels: dict[str, str] | None = None
    runbook: str | None = None
    scope: Literal["watched", "all"] | None = None

    @field_validator("for_s", "clear_for_s", "window_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)


class RuleSpec(_Tunable):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    metric: str
    op: Op | None = None
    description: str = ""
    severity_by_role: dict[RoleName, Severity] = {}

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"unknown metric {v!r}; metrics: {', '.join(sorted(METRICS))}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RuleSpec:
        metric = METRICS[self.metric]
        if metric.kind == "bool":
            if self.op is not None or self.threshold is not None or self.clear_threshold is not None:
                raise ValueError(f"{self.metric} is true/false: a rule on it takes no op or thresholds")
        else:
            if self.op is None or self.threshold is None:
                raise ValueError(f"{self.metric} is a number: set op (>, >=, <, <=) and threshold")
            _check_clear(self.op, self.threshold, self.clear_threshold)
        if self.metric == "interface.flaps" and self.window_s is None:
            raise ValueError("interface.flaps counts changes within a window: set window (e.g. '10m')")
        return self


def _check_clear(op: str, threshold: float, clear: float | None) -> None:
    if clear is None:
        return
    if op in (">", ">=") and clear > threshold:
        raise ValueError(f"clear_threshold {clear:g} must be at or below threshold {threshold:g} for op {op!r}")
    if op in ("<", "<=") and clear < threshold:
        raise ValueError(f"clear_threshold {clear:g} must be at or above threshold {threshold:g} for op {op!r}")


class RuleFile(_Strict):
    rule: list[RuleSpec] = Field(min_length=1)


class RuleOverride(_Tunable):
    """Change one rule for everything, or for one site, device or tag (most specific wins)."""

    rule: str
    site: str | None = None
    device: str | None = None
    tag: str | None = None

    @model_validator(mode="after")
    def _one_scope(self) -> RuleOverride:
        if sum(x is not None for x in (self.site, self.device, self.tag)) > 1:
            raise ValueError("an override applies to one site, one device or one tag (or, with none, everywhere)")
        return self

    @property
    def rank(self) -> int:
        return 3 if self.device else 2 if self.site else 1 if self.tag else 0


@dataclass(frozen=True, slots=True)
class EffectiveRule:
    """One rule as it applies to one device after overrides."""

    name: str
    metric: str
    op: str | None
    threshold: float | None
    clear_threshold: float | None
    for_s: float
    clear_for_s: float
    min_samples: int
    window_s: float | None
    severity: Severity
    labels: dict[str, str]
    runbook: str | None
    scope: str

    def bad(self, value: float | bool) -> bool:
        if self.op is None:
            return bool(value)
        return _compare(self.op, float(value), float(self.threshold or 0))

    def clear(self, value: float | bool) -> bool:
        """Past the clear threshold: for a numeric rule, the other side of clear_threshold."""
        if self.op is None:
            return not value
        limit = self.clear_threshold if self.clear_threshold is not None else self.threshold
        return not _compare(self.op, float(value), float(limit or 0))


def _compare(op: str, value: float, limit: float) -> bool:
    return {">": value > limit, ">=": value >= limit, "<": value < limit, "<=": value <= limit}[op]


@dataclass(frozen=True, slots=True)
class DeviceScope:
    name: str
    site: str
    role: str
    tags: tuple[str, ...]


class RuleSet:
    """Every loaded rule, and how each applies to a device (cached)."""

    def __init__(self, rules: list[RuleSpec], overrides: list[RuleOverride]) -> None:
        self.rules: dict[str, RuleSpec] = {r.name: r for r in rules}
        self.overrides = sorted(overrides, key=lambda o: o.rank)
        self._cache: dict[tuple[str, str], EffectiveRule | None] = {}
        self._shared: dict[tuple[Any, ...], EffectiveRule | None] = {}
        self._by_device: dict[tuple[str, str], list[EffectiveRule]] = {}
        self.by_metric: dict[str, list[str]] = {}
        for r in rules:
            self.by_metric.setdefault(r.metric, []).append(r.name)

    def for_metric(self, metric: str, device: DeviceScope) -> list[EffectiveRule]:
        """The enabled rules on ``metric`` for one device (cached: asked for every poll)."""
        key = (metric, device.name)
        rules = self._by_device.get(key)
        if rules is None:
            rules = self._by_device[key] = [r for r in (self.effective(n, device)
                                                        for n in self.by_metric.get(metric, ())) if r is not None]
        return rules

    def effective(self, name: str, device: DeviceScope) -> EffectiveRule | None:
        key = (name, device.name)
        if key not in self._cache:
            # What a device's rule depends on: the overrides that apply to it and its role. Devices that agree
            # on both share one EffectiveRule (1,000 devices x ~14 rules were as many objects, labels and all).
            spec = self.rules[name]
            shape = (name, device.role if spec.severity_by_role else "",
                     tuple(i for i, o in enumerate(self.overrides) if o.rule == name and _applies(o, device)))
            if shape not in self._shared:
                self._shared[shape] = self._resolve(name, device)
            self._cache[key] = self._shared[shape]
        return self._cache[key]

    def _resolve(self, name: str, device: DeviceScope) -> EffectiveRule | None:
        spec = self.rules[name]
        fields: dict[str, Any] = {k: getattr(spec, k) for k in _Tunable.model_fields}
        severity_set = False
        for o in self.overrides:
            if o.rule != name or not _applies(o, device):
                continue
            if o.threshold is not None and o.clear_threshold is None:
                fields["clear_threshold"] = _shifted_clear(fields["threshold"], fields["clear_threshold"], o.threshold)
            for k in _Tunable.model_fields:
                v = getattr(o, k)
                if v is None:
                    continue
                fields[k] = {**(fields.get(k) or {}), **v} if k == "labels" else v
            severity_set |= o.severity is not None
        if fields["enabled"] is False:
            return None
        # An explicit override beats the rule's per-role default.
        severity = fields["severity"] if severity_set else (
            spec.severity_by_role.get(device.role) or fields["severity"] or "major")  # type: ignore[call-overload]
        return EffectiveRule(
            name=name, metric=spec.metric, op=spec.op, threshold=fields["threshold"],
            clear_threshold=fields["clear_threshold"], for_s=fields["for_s"] or 0.0,
            clear_for_s=fields["clear_for_s"] or 0.0, min_samples=fields["min_samples"] or 1,
            window_s=fields["window_s"], severity=severity, labels=dict(fields["labels"] or {}),
            runbook=fields["runbook"], scope=fields["scope"] or "watched",
        )


def _shifted_clear(threshold: float | None, clear: float | None, new_threshold: float) -> float | None:
    """A new threshold without a new clear threshold keeps the rule's hysteresis gap."""
    if clear is None or threshold is None:
        return None
    return new_threshold - (threshold - clear)


def _applies(o: RuleOverride, device: DeviceScope) -> bool:
    if o.device is not None:
        return o.device == device.name
    if o.site is not None:
        return o.site == device.site
    if o.tag is not None:
        return o.tag in device.tags
    return True


_SCHEMED = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S*")  # one word with a scheme: meant as a link


def runbook_problem(runbook: str | None) -> str | None:
    """A runbook is a line of advice or a link; a link must be http(s) with a host (the console opens it).

    Only the scheme is quoted back: a link may carry a token."""
    text = (runbook or "").strip()
    if not _SCHEMED.fullmatch(text):
        return None
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        return f"runbook: a link must start with http:// or https:// (not {parts.scheme}:)"
    if not parts.hostname:
        return "runbook: the link names no host"
    return None


def _builtin_source(pack: str) -> TomlSource:
    ref = resources.files("ispvm_tui") / "rules" / f"{pack}.toml"
    return parse_toml(ref.read_text(encoding="utf-8"), f"<builtin rules {pack}>")


def load_ruleset(packs: list[str], files: list[str | Path], overrides: list[RuleOverride],
                 override_problem: Any = None, config_name: str = "<config>") -> RuleSet:
    """Load packs and rule files and check overrides; raises SourceError listing every problem.

    ``override_problem(index, field, message)`` places an override's problem at its line in
    config.toml (the caller owns that source).
    """
    problems: list[Problem] = []
    rules: list[RuleSpec] = []
    where: dict[str, str] = {}
    sources: list[TomlSource] = []
    for pack in packs:
        if pack not in BUILTIN_PACKS:
            problems.append(Problem(config_name, None, "rules.packs", f"unknown rule pack {pack!r}; built-in packs: "
                                                                       f"{', '.join(BUILTIN_PACKS)}"))
            continue
        sources.append(_builtin_source(pack))
    for path in files:
        try:
            sources.append(read_toml(path))
        except SourceError as exc:
            problems += exc.problems
    for source in sources:
        try:
            parsed = validate(source, RuleFile)
        except SourceError as exc:
            problems += exc.problems
            continue
        for i, spec in enumerate(parsed.rule):
            if (bad := runbook_problem(spec.runbook)) is not None:
                problems.append(source.problem(("rule", i, "runbook"), f"rule {spec.name!r}: {bad}"))
            if spec.name in where:
                first = where[spec.name]
                problems.append(source.problem(("rule", i, "name"),
                                               f"duplicate rule name {spec.name!r} (first defined in {first})"))
                continue
            where[spec.name] = source.path
            rules.append(spec)
    names = {r.name: r for r in rules}
    for i, o in enumerate(overrides):
        def report(field: str, message: str, i: int = i) -> None:
            if override_problem is not None:
                problems.append(override_problem(i, field, message))
            else:
                problems.append(Problem(config_name, None, f"rules.overrides[{i}].{field}", message))

        spec = names.get(o.rule)
        if spec is None:
            report("rule", f"unknown rule {o.rule!r}; rules: {', '.join(sorted(names))}")
            continue
        if (bad := runbook_problem(o.runbook)) is not None:
            report("runbook", f"rule {o.rule!r}: {bad}")
        if spec.op is None and (o.threshold is not None or o.clear_threshold is not None):
            report("threshold", f"{spec.name} watches a true/false metric: it takes no threshold")
            continue
        if spec.op is not None:
            threshold = o.threshold if o.threshold is not None else spec.threshold
            clear = o.clear_threshold if o.clear_threshold is not None else (
                _shifted_clear(spec.threshold, spec.clear_threshold, o.threshold) if o.threshold is not None
                else spec.clear_threshold)
            try:
                _check_clear(spec.op, float(threshold or 0), clear)
            except ValueError as exc:
                report("clear_threshold" if o.clear_threshold is not None else "threshold", str(exc))
    if problems:
        raise SourceError(problems)
    return RuleSet(rules, overrides)
