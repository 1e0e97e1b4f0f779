"""The rule engine and rule packs: durations, hysteresis, what counts as unreachable, scoping.

Poll results are built by hand here: the rules are a pure function of what the
collectors return (the collectors themselves are tested against real peers).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ispvm_tui.collectors.results import BgpSession, HealthSensor, InterfaceStat, PollResult, SystemInfo
from ispvm_tui.config import Config, load_config, load_rules
from ispvm_tui.engine.rulepack import RuleOverride, load_ruleset, parse_duration
from ispvm_tui.engine.rules import RuleEngine
from ispvm_tui.tomlsource import SourceError


def _config(**extra) -> Config:
    base = {
        "console": {"attach": ["R1"]},
        "sites": [{"name": "S"}, {"name": "T"}],
        "credentials": {"c": {"username": "u", "password_secret": "x"}},
        "devices": [{"name": "R1", "site": "S", "role": "core", "address": "10.0.0.1", "credential": "c"},
                    {"name": "R2", "site": "T", "role": "access", "address": "10.0.0.2", "credential": "c",
                     "tags": ["lab"], "watch_interfaces": ["sfp*"]}],
        "links": [{"a": "R1:ether1", "b": "R2:ether1"}],
        "bgp_peers": [{"device": "R1", "name": "UP1", "remote_address": "192.0.2.1", "provider": "UP1"}],
    }
    base.update(extra)
    return Config.model_validate(base)


def _engine(cfg: Config | None = None) -> RuleEngine:
    cfg = cfg or _config()
    return RuleEngine(cfg, load_rules(cfg))


def ok(device: str = "R1", *, interfaces=(), bgp=None, sensors=None, system=None, collector="api") -> PollResult:
    return PollResult(device=device, collector=collector, started_at=0, duration_s=0.01, ok=True,
                      interfaces=tuple(interfaces), bgp=bgp, sensors=sensors, system=system)


def failed(kind: str, device: str = "R1", collector: str = "api") -> PollResult:
    return PollResult(device=device, collector=collector, started_at=0, duration_s=1, ok=False,
                      error=f"{kind} error", error_kind=kind)  # type: ignore[arg-type]


def itf(name: str, up: bool, *, admin: bool = True, downs: int | None = None, alias: str | None = None):
    return InterfaceStat(name=name, admin_up=admin, oper_up=up, link_downs=downs, alias=alias)


def fired(obs) -> list[str]:
    return [t.alert.rule for t in obs.transitions if t.fired]


def resolved(obs) -> list[str]:
    return [t.alert.rule for t in obs.transitions if not t.fired]


# ---- durations and hysteresis ---------------------------------------------------------------
def test_unreachable_needs_its_duration_and_two_polls_not_one_lost_poll() -> None:
    rules = _engine()
    assert fired(rules.observe("R1", [failed("timeout")], 0)) == []
    assert "R1" in rules.pending("device.unreachable")
    assert fired(rules.observe("R1", [failed("timeout")], 5)) == []  # 5 s < for = 10 s
    obs = rules.observe("R1", [failed("timeout")], 10)
    assert fired(obs) == ["device_unreachable"]
    assert obs.transitions[0].alert.starts_at == 0  # the condition began at the first failure
    assert resolved(rules.observe("R1", [ok()], 20)) == ["device_unreachable"]


def test_one_lost_poll_between_good_ones_never_fires() -> None:
    rules = _engine()
    for t in range(0, 600, 60):
        results = [failed("timeout")] if (t // 60) % 2 else [ok()]
        assert fired(rules.observe("R1", results, t)) == []


def test_numeric_rule_clears_only_past_its_clear_threshold_after_clear_for() -> None:
    rules = _engine()
    cpu = lambda v: [ok(system=SystemInfo(cpu_load=v))]  # noqa: E731
    for t in range(0, 301, 60):
        obs = rules.observe("R1", cpu(95), t)
    assert fired(obs) == ["cpu_high"]  # for = 5m
    assert resolved(rules.observe("R1", cpu(80), 360)) == []  # under 90, still over the clear threshold 75
    assert resolved(rules.observe("R1", cpu(50), 420)) == []  # clear_for = 2m starts now
    assert resolved(rules.observe("R1", cpu(50), 540)) == ["cpu_high"]


def test_no_data_keeps_state() -> None:
    rules = _engine()
    for t in (0, 30):
        rules.observe("R1", [failed("timeout")], t)
    assert rules.is_firing("device.unreachable", "R1")
    # An internal collector error says nothing about the device: neither worse nor recovered.
    assert rules.observe("R1", [failed("error")], 40).transitions == []
    assert rules.is_firing("device.unreachable", "R1")


# ---- what counts as unreachable ----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["timeout", "refused", "unreachable"])
def test_every_failure_to_reach_counts_as_unreachable(kind: str) -> None:
    rules = _engine()
    rules.observe("R1", [failed(kind), failed("timeout", collector="snmp")], 0)
    assert fired(rules.observe("R1", [failed(kind), failed("timeout", collector="snmp")], 30)) == [
        "device_unreachable"]


def test_a_reset_or_no_route_never_resolves_a_firing_alert() -> None:
    rules = _engine()
    rules.observe("R1", [failed("timeout")], 0)
    rules.observe("R1", [failed("timeout")], 30)
    assert resolved(rules.observe("R1", [failed("unreachable")], 40)) == []
    assert rules.is_firing("device.unreachable", "R1")


@pytest.mark.parametrize("kind", ["auth", "protocol", "tls"])
def test_a_device_that_answered_badly_is_not_unreachable(kind: str) -> None:
    rules = _engine()
    for t in (0, 30, 60):
        assert "device_unreachable" not in fired(rules.observe("R1", [failed(kind)], t))


def test_refused_login_alerts_even_while_snmp_answers() -> None:
    rules = _engine()
    assert fired(rules.observe("R1", [failed("auth"), ok(collector="snmp")], 0)) == ["poll_login_failed"]


# ---- interfaces: which ports matter, flapping ---------------------------------------------------
def test_link_ends_and_configured_ports_alert_other_ports_are_recorded_only() -> None:
    rules = _engine()
    ports = lambda up: [itf("ether1", up), itf("ether5", up), itf("sfp1", up),  # noqa: E731
                        itf("ether9", up, alias="Uplink to POP")]
    rules.observe("R2", [ok("R2", interfaces=ports(True))], 0)
    obs = rules.observe("R2", [ok("R2", interfaces=ports(False))], 10)
    assert sorted(t.alert.entity_id for t in obs.transitions if t.fired) == ["R2:ether1", "R2:ether9", "R2:sfp1"]
    assert [(e.interface, e.up) for e in obs.events] == [("ether5", False)]
    assert obs.ports_down == ["R2:ether1"]


def test_scope_all_override_watches_every_port_on_a_tag() -> None:
    cfg = _config(rules={"overrides": [{"rule": "interface_down", "tag": "lab", "scope": "all"}]})
    rules = _engine(cfg)
    rules.observe("R2", [ok("R2", interfaces=[itf("ether5", True)])], 0)
    assert fired(rules.observe("R2", [ok("R2", interfaces=[itf("ether5", False)])], 10)) == ["interface_down"]
    rules.observe("R1", [ok("R1", interfaces=[itf("ether5", True)])], 0)
    assert fired(rules.observe("R1", [ok("R1", interfaces=[itf("ether5", False)])], 10)) == []  # R1 is not tagged


def test_flapping_counts_downs_between_polls_and_clears_after_a_quiet_window() -> None:
    rules = _engine()
    rules.observe("R1", [ok(interfaces=[itf("ether1", True, downs=10)])], 0)
    # Polls only ever see the port up, but the link-downs counter says it went down three times.
    obs = rules.observe("R1", [ok(interfaces=[itf("ether1", True, downs=13)])], 60)
    assert fired(obs) == ["interface_flapping"]
    assert "3 down events in 5m" in obs.transitions[0].alert.summary
    assert resolved(rules.observe("R1", [ok(interfaces=[itf("ether1", True, downs=13)])], 300)) == []
    assert resolved(rules.observe("R1", [ok(interfaces=[itf("ether1", True, downs=13)])], 400)) == [
        "interface_flapping"]


def test_flapping_from_observed_transitions_without_a_counter() -> None:
    rules = _engine()
    out = []
    for step in range(8):
        out += fired(rules.observe("R1", [ok(interfaces=[itf("ether1", step % 2 == 0)])], step * 10))
    assert "interface_flapping" in out


# ---- BGP ---------------------------------------------------------------------------------------
def test_configured_peer_matches_an_snmp_session_by_remote_address() -> None:
    rules = _engine()
    session = BgpSession(name="192.0.2.1", remote_address="192.0.2.1", remote_as=64500, state="established",
                         established=True)
    assert rules.observe("R1", [ok(bgp=(session,), collector="snmp")], 0).transitions == []
    idle = BgpSession(name="192.0.2.1", remote_address="192.0.2.1", remote_as=64500, state="idle",
                      established=False)
    obs = rules.observe("R1", [ok(bgp=(idle,), collector="snmp")], 10)
    assert [(t.alert.rule, t.alert.entity_id, t.alert.labels.get("provider")) for t in obs.transitions] == [
        ("bgp_session_down", "R1:UP1", "UP1")]


# ---- health ------------------------------------------------------------------------------------
def test_psu_failure_and_temperature() -> None:
    rules = _engine()
    sensors = (HealthSensor("psu1-state", None, None, "fail"), HealthSensor("temperature", 80.0, "C"))
    obs = rules.observe("R1", [ok(sensors=sensors)], 0)
    assert fired(obs) == ["psu_failed"]
    for t in (60, 120):
        obs = rules.observe("R1", [ok(sensors=sensors)], t)
    assert fired(obs) == ["temperature_high"]


# ---- rule files and overrides ------------------------------------------------------------------
def test_durations() -> None:
    assert parse_duration("30s") == 30 and parse_duration("5m") == 300 and parse_duration("1h30m") == 5400
    assert parse_duration(12) == 12
    with pytest.raises(ValueError):
        parse_duration("soon")


def _rule_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site-rules.toml"
    path.write_text(text)
    return path


def test_rule_file_with_an_unknown_metric_names_file_line_and_field(tmp_path: Path) -> None:
    path = _rule_file(tmp_path, '[[rule]]\nname = "x"\nseverity = "minor"\n\n[[rule]]\nname = "y"\n'
                                'metric = "interface.banana"\nop = ">"\nthreshold = 1\n')
    with pytest.raises(SourceError) as err:
        load_ruleset([], [path], [])
    text = str(err.value)
    assert f"{path}:1: rule[0].metric: required field is missing" in text
    assert f"{path}:7: rule[1].metric" in text and "unknown metric 'interface.banana'" in text


def test_rule_file_with_a_bad_threshold_is_refused(tmp_path: Path) -> None:
    path = _rule_file(tmp_path, '[[rule]]\nname = "hot"\nmetric = "sensor.temperature_c"\nop = ">="\n'
                                'threshold = 70\nclear_threshold = 80\n')
    with pytest.raises(SourceError) as err:
        load_ruleset([], [path], [])
    assert f"{path}:1: rule[0]: " in str(err.value)
    assert "clear_threshold 80 must be at or below threshold 70" in str(err.value)


def test_rule_file_with_a_duplicate_name_is_refused(tmp_path: Path) -> None:
    path = _rule_file(tmp_path, '[[rule]]\nname = "hot"\nmetric = "sensor.temperature_c"\nop = ">="\n'
                                'threshold = 70\n\n'
                                '[[rule]]\nname = "cpu_high"\nmetric = "device.cpu_pct"\nop = ">"\nthreshold = 5\n')
    with pytest.raises(SourceError) as err:
        load_ruleset(["health"], [path], [])
    assert f"{path}:8: rule[1].name: duplicate rule name 'cpu_high'" in str(err.value)


def test_config_override_of_an_unknown_rule_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[console]\nattach = ["R1"]\n\n[[sites]]\nname = "S"\n\n[credentials.c]\nusername = "u"\n'
                    'password_secret = "x"\n\n[[devices]]\nname = "R1"\nsite = "S"\nrole = "core"\n'
                    'address = "10.0.0.1"\ncredential = "c"\n\n[[rules.overrides]]\nrule = "cpu_hgih"\n'
                    'threshold = 95\n')
    with pytest.raises(SourceError) as err:
        load_config(path)
    assert f"{path}:19: rules.overrides[0].rule: unknown rule 'cpu_hgih'" in str(err.value)


def test_overrides_most_specific_wins_and_keep_the_hysteresis_gap() -> None:
    cfg = _config()
    ruleset = load_ruleset(["health"], [], [
        RuleOverride(rule="cpu_high", threshold=95),
        RuleOverride(rule="cpu_high", site="T", threshold=80),
        RuleOverride(rule="cpu_high", device="R2", **{"for": "1m"}),
    ])
    engine = RuleEngine(cfg, ruleset)
    r1 = engine.rules_for("device.cpu_pct", "R1")[0]
    r2 = engine.rules_for("device.cpu_pct", "R2")[0]
    assert (r1.threshold, r1.clear_threshold, r1.for_s) == (95, 80, 300)
    assert (r2.threshold, r2.clear_threshold, r2.for_s) == (80, 65, 60)


def test_a_disabled_rule_never_fires() -> None:
    cfg = _config(rules={"overrides": [{"rule": "device_unreachable", "device": "R1", "enabled": False}]})
    rules = _engine(cfg)
    for t in (0, 30, 60):
        assert fired(rules.observe("R1", [failed("timeout")], t)) == []


def test_devices_alike_share_one_effective_rule_and_an_override_or_role_still_tells_them_apart() -> None:
    devices = [{"name": n, "site": site, "role": role, "address": f"10.0.0.{k}", "credential": "c"}
               for k, (n, site, role) in enumerate([("R1", "S", "core"), ("R2", "T", "access"), ("R3", "T", "access"),
                                                    ("R4", "T", "access"), ("R5", "S", "access")], start=1)]
    cfg = _config(devices=devices, links=[], bgp_peers=[], rules={"overrides": [
        {"rule": "interface_down", "device": "R4", "severity": "warning"},
        {"rule": "device_unreachable", "site": "S", "for": "5m"}]})
    engine = _engine(cfg)
    down = {n: engine.ruleset.effective("interface_down", engine._scopes[n]) for n in ("R1", "R2", "R3", "R4")}
    assert down["R2"] is down["R3"]  # same role, no override: one object
    assert down["R1"].severity == "critical" and down["R2"].severity != "critical"  # by role
    assert down["R4"].severity == "warning" and down["R2"].severity != "warning"  # its own override only
    gone = {n: engine.ruleset.effective("device_unreachable", engine._scopes[n]) for n in ("R2", "R5")}
    assert gone["R5"].for_s == 300 and gone["R2"].for_s != 300
