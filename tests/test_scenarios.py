"""Scenario files, their expectations, and the lab behaviour the shipped scenarios rely on.

The expectation checks and the run signature are tested on hand-made reports;
the lab behaviour (reject mode, hang, unlinked devices, flap counters) over
real TCP against the lab's RouterOS API servers with librouteros.
"""

from __future__ import annotations

import copy
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import librouteros
import pytest

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.clock import ScaledClock
from ispvm_tui.demo import check_incident, check_report, combine_runs, signature, signature_diff
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import (
    Expect,
    IncidentExpect,
    Scenario,
    TimelineEntry,
    builtin_scenarios,
    load_scenario,
    resolve_scenario_path,
)
from ispvm_tui.tomlsource import SourceError
from tests.waiting import wait_for as _wait

SHIPPED = {
    "core-link-cut", "upstream-down", "core-power-loss", "core-power-loss-one-vantage", "both-uplinks-cut",
    "root-recovers-symptom-stays", "unlinked-device", "one-of-two-transit", "flapping-port", "pop-storm",
    "routed-cut-no-route", "sfp-overheat", "lte-signal-drop",
}




# ---- the shipped files ------------------------------------------------------------


def test_every_shipped_scenario_loads_and_says_what_it_proves() -> None:
    assert set(builtin_scenarios()) >= SHIPPED
    for name in builtin_scenarios():
        sc = load_scenario(name)
        text = resolve_scenario_path(name).read_text()
        assert text.startswith("# "), f"{name}: no comment header"
        assert sc.expect is not None, f"{name}: no expectations"
        assert sc.expect.runs == 1  # five runs in a row are asked for on the command line
        assert sc.scenario.poll_interval_s in (10, 30)  # 30 only where 40+ routers share the lab's core
        faults = [e.at for e in sc.timeline]
        assert faults and max(faults) < sc.scenario.duration_s


def test_shipped_scenarios_use_distinct_lab_addresses() -> None:
    bases = [load_scenario(n).lab.address_base for n in builtin_scenarios()]
    assert len(set(bases)) == len(bases)


# ---- bad files ----------------------------------------------------------------------

def _with_expect(tmp_path: Path, expect_text: str, name: str = "bad.toml") -> Path:
    text = resolve_scenario_path("core-link-cut").read_text()
    text = text[: text.index("[expect]")] + expect_text
    path = tmp_path / name
    path.write_text(text)
    return path


def _line_of(path: Path, needle: str) -> int:
    """The last line holding ``needle`` (the expectations come last in the file)."""
    return [n for n, line in enumerate(path.read_text().splitlines(), start=1) if needle in line][-1]


@pytest.mark.parametrize(("expect_text", "needle", "message"), [
    ('[expect]\n[[expect.incident]]\nroot_causes = ["CORE1", "NOPE"]\n', "root_causes", "unknown entity 'NOPE'"),
    ('[expect]\n[[expect.incident]]\nservices = ["POP-Z broadband"]\n', "services", "unknown service"),
    ('[expect]\n[[expect.incident]]\ndevices_not_counted = ["GHOST"]\n', "devices_not_counted", "unknown device"),
    ('[expect]\n[[expect.incident]]\nseverity = "major"\nseverity_in = ["minor"]\n', "[[expect.incident]]",
     "not both"),
    ('[expect]\n[[expect.incident]]\nimpact_devices = [3, 1]\n', "impact_devices", "min <= max"),
    ('[expect]\n[[expect.incident]]\nwebhooks = ["incident.reopened"]\n', "webhooks", "unknown webhook event"),
    ('[expect]\n[[expect.incident]]\nseverity = "apocalyptic"\n', "severity", "severity"),
    ('[expect]\n[[expect.incident]]\nroot_causes = ["CORE1"]\nroot_cause_types = ["device", "link"]\n',
     "[[expect.incident]]", "one type per root cause"),
    ('[expect]\nincidents = 1\n[[expect.incident]]\nindex = 2\n', "index", "no incident 2"),
    ('[expect]\nruns = 0\n', "runs", ""),
    ('[expect]\norphan_alerts_max = -1\n', "orphan_alerts_max", ""),
    ('[expect]\nroot_cause = "CORE9"\n', "root_cause", "unknown entity"),
    ('[expect]\n[[expect.incident]]\nroot_cuases = ["CORE1"]\n', "root_cuases", "unknown field"),
])
def test_bad_expectations_name_the_file_and_line(tmp_path: Path, expect_text: str, needle: str,
                                                  message: str) -> None:
    path = _with_expect(tmp_path, expect_text)
    with pytest.raises(SourceError) as info:
        load_scenario(path)
    text = str(info.value)
    assert f"{path}:{_line_of(path, needle)}:" in text, text
    assert message in text


def test_hang_needs_a_known_device(tmp_path: Path) -> None:
    text = resolve_scenario_path("core-link-cut").read_text()
    text = text.replace('action = "restore"', 'action = "hang"\ndevice = "CORE9"')
    path = tmp_path / "hang.toml"
    path.write_text(text)
    with pytest.raises(SourceError) as info:
        load_scenario(path)
    assert f"{path}:{_line_of(path, 'CORE9')}: timeline[1].device: unknown device 'CORE9'" in str(info.value)


@pytest.mark.parametrize(("scenario", "entry", "needle", "message"), [
    ("sfp-overheat", 'action = "sfp"\ninterface = "CORE1:ether1"\ntemperature_c = 80', "CORE1:ether1",
     "timeline[1].interface: 'CORE1:ether1' is no SFP cage"),
    ("sfp-overheat", 'action = "sfp"\ninterface = "POPA-AGG:sfp-sfpplus1"', "[[timeline]]",
     "needs temperature_c or rx_power_dbm"),
    ("sfp-overheat", 'action = "sfp"\ninterface = "POPA-AGG:sfp-sfpplus1"\ntemperature_c = 900', "900",
     "timeline[1].temperature_c"),
    ("lte-signal-drop", 'action = "lte"\ninterface = "CPE-FARM:ether1"\nrsrp_dbm = -120', "CPE-FARM:ether1",
     "timeline[1].interface: 'CPE-FARM:ether1' is no LTE interface"),
    ("lte-signal-drop", 'action = "lte"\ninterface = "CPE-FARM:lte1"', "[[timeline]]", "needs rsrp_dbm or sinr_db"),
    ("lte-signal-drop", 'action = "lte"\ninterface = "CPE-FARM:lte1"\nrsrp_dbm = -20', "-20",
     "timeline[1].rsrp_dbm"),
])
def test_radio_and_optics_entries_need_their_port_and_a_reading(tmp_path: Path, scenario: str, entry: str,
                                                                needle: str, message: str) -> None:
    text = resolve_scenario_path(scenario).read_text().replace('action = "restore"', entry)
    path = tmp_path / "entry.toml"
    path.write_text(text)
    with pytest.raises(SourceError) as info:
        load_scenario(path)
    assert f"{path}:{_line_of(path, needle)}:" in str(info.value), str(info.value)
    assert message in str(info.value)


def test_unreachable_mode_is_drop_or_reject(tmp_path: Path) -> None:
    text = resolve_scenario_path("core-link-cut").read_text()
    path = tmp_path / "mode.toml"
    path.write_text(text.replace('address_base = "127.77.0.0"', 'address_base = "127.77.0.0"\nunreachable = "icmp"'))
    with pytest.raises(SourceError) as info:
        load_scenario(path)
    assert f"{path}:{_line_of(path, 'unreachable')}: lab.unreachable:" in str(info.value)


# ---- expectation checks on hand-made reports ------------------------------------------

LINK = "CORE1:ether2--POPA-AGG:ether1"


def _incident(iid: str, roots: list[tuple[str, str]], **kw: Any) -> dict[str, Any]:
    impact = {"sites_affected": 1, "devices_affected": 3, "services_affected": 1,
              "estimated_subscribers_affected": 1200, "sites": ["POP-A"],
              "devices": ["POPA-AGG", "POPA-ACC1", "POPA-ACC2"], "services": ["POP-A broadband"]}
    impact.update(kw.pop("impact", {}))
    inc = {"id": iid, "title": f"Link down: {roots[0][1]} (3 devices cut off)", "status": "closed",
           "severity": "critical", "opened_at": "2025-01-01T00:01:00Z", "closed_at": "2025-01-01T00:06:00Z",
           "root_causes": [{"entity_type": t, "entity_id": e, "confidence": 0.9} for t, e in roots],
           "impact": impact, "evidence_top": [], "labels": {}}
    inc.update(kw)
    return inc


def _report() -> dict[str, Any]:
    return {
        "incidents": [_incident("i-1", [("link", LINK)])],
        "alert_rows": [
            {"rule": "interface_down", "entity_id": "CORE1:ether2", "state": "resolved", "incident_id": "i-1",
             "suppressed": False},
            *({"rule": "device_unreachable", "entity_id": d, "state": "resolved", "incident_id": "i-1",
               "suppressed": True} for d in ("POPA-AGG", "POPA-ACC1", "POPA-ACC2")),
        ],
        "webhooks": [{"event_type": e, "incident_id": "i-1", "accepted": True, "signature_ok": True}
                     for e in ("incident.opened", "incident.closed")],
    }


def _expect(**kw: Any) -> Expect:
    return Expect.model_validate(kw)


def test_a_matching_report_passes_every_kind_of_check() -> None:
    expect = _expect(
        incidents=1, root_cause=LINK, root_cause_type="link", impact_devices_min=3, all_closed=True,
        webhook_events=["incident.opened", "incident.closed"], orphan_alerts_max=0,
        incident=[{
            "root_causes": ["POPA-AGG:ether1--CORE1:ether2"],  # either spelling of a link
            "root_cause_types": ["link"], "title_contains": "CORE1:ether2", "severity_in": ["critical"],
            "impact_devices": [3, 3], "subscribers": [1000, 1200], "services": ["POP-A broadband"],
            "devices_not_counted": ["CORE1", "EDGE1"], "alert_rules": ["device_unreachable", "interface_down"],
            "suppressed_min": 3, "webhooks": ["incident.opened", "incident.closed"], "status": "closed",
            "confidence_min": 0.8, "confidence_max": 1.0,
        }],
    )
    assert check_report(expect, _report()) == []


@pytest.mark.parametrize(("field", "value", "failure"), [
    ("root_causes", ["CORE1"], "expected root causes ['CORE1']"),
    ("root_causes", [LINK, "EDGE1"], "expected root causes"),  # a set: one missing fails
    ("title_contains", "POP-B", "title containing 'POP-B'"),
    ("severity", "major", "expected severity major, got critical"),
    ("severity_in", ["major", "minor"], "expected severity in"),
    ("impact_devices", [4, 10], "expected 4..10 devices affected, got 3"),
    ("subscribers", [0, 0], "expected 0..0 subscribers affected, got 1200"),
    ("services", [], "expected services []"),
    ("labels", {"provider": "UPSTREAM1"}, "expected label provider=UPSTREAM1"),
    ("devices_not_counted", ["POPA-ACC1"], "POPA-ACC1 not counted"),
    ("alert_rules", ["interface_flapping"], "interface_flapping among its alerts"),
    ("suppressed_min", 4, "at least 4 suppressed alert(s), got 3"),
    ("webhooks", ["incident.opened", "incident.updated", "incident.closed"], "expected webhooks"),
    ("status", "open", "expected status open, got closed"),
    ("confidence_max", 0.79, "confidence in 0..0.79, got 0.9"),
    ("confidence_min", 0.95, "confidence in 0.95..1, got 0.9"),
])
def test_each_incident_check_fails_on_its_own(field: str, value: Any, failure: str) -> None:
    report = _report()
    inc_expect = IncidentExpect.model_validate({field: value})
    failures = check_incident(inc_expect, report["incidents"][0], report["alert_rows"], report["webhooks"])
    assert len(failures) == 1 and failure in failures[0], failures


def test_root_cause_types_pair_with_root_causes_as_written() -> None:
    report = _report()
    report["incidents"][0]["root_causes"] = [
        {"entity_type": "link", "entity_id": LINK, "confidence": 0.9},
        {"entity_type": "device", "entity_id": "EDGE1", "confidence": 0.5}]
    ok = IncidentExpect(root_causes=["EDGE1", LINK], root_cause_types=["device", "link"])
    bad = IncidentExpect(root_causes=["EDGE1", LINK], root_cause_types=["link", "device"])
    args = (report["incidents"][0], report["alert_rows"], report["webhooks"])
    assert check_incident(ok, *args) == []
    assert len(check_incident(bad, *args)) == 2


def test_null_subscribers_count_as_zero() -> None:
    report = _report()
    report["incidents"][0]["impact"]["estimated_subscribers_affected"] = None
    inc = report["incidents"][0]
    assert check_incident(IncidentExpect(subscribers=[0, 0]), inc, [], []) == []


def test_incident_tables_match_in_order_of_opening_and_by_index() -> None:
    report = _report()
    report["incidents"].append(_incident("i-2", [("device", "POPA-AGG")], title="POPA-AGG unreachable"))
    expect = _expect(incident=[{"root_causes": [LINK]}, {"root_causes": ["POPA-AGG"]}])
    assert check_report(expect, report) == []
    last = _expect(incident=[{"index": -1, "root_causes": ["POPA-AGG"]}])
    assert check_report(last, report) == []
    swapped = _expect(incident=[{"root_causes": ["POPA-AGG"]}])
    (failure,) = check_report(swapped, report)
    assert failure.startswith("incident 1 (Link down")
    missing = _expect(incident=[{}, {}, {"status": "closed"}])
    assert check_report(missing, report) == ["incident 3: expected, but only 2 incident(s) opened"]


def test_orphan_alerts_are_those_in_no_incident_and_not_suppressed() -> None:
    report = _report()
    report["alert_rows"] += [
        {"rule": "interface_down", "entity_id": "POPB-AGG:ether1", "state": "firing", "incident_id": None,
         "suppressed": False},
        {"rule": "device_unreachable", "entity_id": "POPB-ACC1", "state": "resolved", "incident_id": None,
         "suppressed": True},  # suppressed: explained, even without an incident id
    ]
    assert check_report(_expect(orphan_alerts_max=1), report) == []
    (failure,) = check_report(_expect(orphan_alerts_max=0), report)
    assert "got 1: interface_down POPB-AGG:ether1" in failure


def test_webhook_events_count_only_accepted_deliveries() -> None:
    report = _report()
    report["webhooks"].insert(1, {"event_type": "incident.closed", "incident_id": "i-1", "accepted": False,
                                  "signature_ok": True})
    assert check_report(_expect(webhook_events=["incident.opened", "incident.closed"]), report) == []
    report["webhooks"][0]["signature_ok"] = False
    assert check_report(_expect(webhook_events=["incident.opened", "incident.closed"]), report) == [
        "1 webhook(s) with a bad signature"]


# ---- signatures of repeated runs ----------------------------------------------------

def _two_incidents(first_id: str, second_id: str, *, swap_opening: bool = False) -> dict[str, Any]:
    a = _incident(first_id, [("link", LINK)])
    b = _incident(second_id, [("bgp_peer", "EDGE1:UPSTREAM1")], title="BGP down: EDGE1:UPSTREAM1",
                  severity="major", impact={"devices_affected": 0, "devices": [], "services": ["Transit"]})
    report = _report()
    report["incidents"] = [b, a] if swap_opening else [a, b]
    for row in report["alert_rows"]:
        row["incident_id"] = first_id
    report["alert_rows"].append({"rule": "bgp_session_down", "entity_id": "EDGE1:UPSTREAM1", "state": "resolved",
                                 "incident_id": second_id, "suppressed": False})
    report["webhooks"] = [{"event_type": e, "incident_id": i, "accepted": True, "signature_ok": True}
                          for e, i in (("incident.opened", first_id), ("incident.opened", second_id),
                                       ("incident.closed", first_id), ("incident.closed", second_id))]
    return report


def test_signature_ignores_ids_order_of_opening_and_repeated_alerts() -> None:
    one = _two_incidents("i-1", "i-2")
    other = _two_incidents("x-9", "x-8", swap_opening=True)
    other["alert_rows"].append(dict(other["alert_rows"][1]))  # the same alert fired twice
    sig = signature(one)
    assert sig == signature(other)
    assert sig["incidents"][0][0] == [LINK]  # sorted by content, not in opening order
    assert sig["incidents"][1][:3] == [["EDGE1:UPSTREAM1"], "BGP down: EDGE1:UPSTREAM1", "major"]
    assert ["bgp_session_down", "EDGE1:UPSTREAM1", False, 1] in sig["alerts"]
    assert ["device_unreachable", "POPA-AGG", True, 0] in sig["alerts"]
    assert sig["webhooks"] == [["incident.opened", 0], ["incident.opened", 1], ["incident.closed", 0],
                               ["incident.closed", 1]]


def test_signature_sees_suppression_severity_impact_and_webhook_differences() -> None:
    base = signature(_two_incidents("i-1", "i-2"))
    changes = []
    r = _two_incidents("i-1", "i-2")
    r["alert_rows"][1]["suppressed"] = False
    changes.append(r)
    r = _two_incidents("i-1", "i-2")
    r["incidents"][0]["severity"] = "major"
    changes.append(r)
    r = _two_incidents("i-1", "i-2")
    r["incidents"][0]["impact"]["devices"] = ["POPA-AGG"]
    changes.append(r)
    r = _two_incidents("i-1", "i-2")
    r["webhooks"].insert(1, {"event_type": "incident.updated", "incident_id": "i-1", "accepted": True,
                             "signature_ok": True})
    changes.append(r)
    r = _two_incidents("i-1", "i-2")
    r["alert_rows"][0]["incident_id"] = None
    changes.append(r)
    for changed in changes:
        assert signature(changed) != base


def _passed(report: dict[str, Any]) -> dict[str, Any]:
    return dict(copy.deepcopy(report), expect={"passed": True, "failures": []})


def test_runs_that_agree_pass_and_carry_their_signatures() -> None:
    runs = [_passed(_two_incidents("a", "b")), _passed(_two_incidents("c", "d", swap_opening=True))]
    combined = combine_runs(runs)
    assert combined["expect"] == {"passed": True, "failures": []}
    assert combined["runs"] == [signature(runs[0])] * 2
    assert "runs" not in combine_runs(runs[:1])


def test_a_differing_run_fails_with_a_readable_diff() -> None:
    third = _two_incidents("e", "f")
    third["alert_rows"][1]["suppressed"] = False
    runs = [_passed(_two_incidents("a", "b")), _passed(_two_incidents("c", "d")), _passed(third)]
    runs[1]["expect"] = {"passed": False, "failures": ["expected 1 incident(s), got 2"]}
    combined = combine_runs(runs)
    assert combined["expect"]["passed"] is False
    assert "run 2: expected 1 incident(s), got 2" in combined["expect"]["failures"]
    assert any("run 3" in f for f in combined["expect"]["failures"])
    diff = combined["expect"]["signature_diff"]
    assert diff[:2] == ["--- run 1", "+++ run 3"]
    assert '-alerts: ["device_unreachable", "POPA-AGG", true, 0]' in diff
    assert '+alerts: ["device_unreachable", "POPA-AGG", false, 0]' in diff
    assert signature_diff(signature(runs[0]), signature(runs[0]), "run 2") == []


# ---- the lab ----------------------------------------------------------------------------

@pytest.fixture
def loop() -> Iterator[BackgroundLoop]:
    bg = BackgroundLoop("test-scenarios")
    yield bg
    bg.stop()


def _lab(loop: BackgroundLoop, sc: Scenario, address_base: str, speed: float = 1.0) -> Lab:
    lab = Lab(sc, ScaledClock(speed), address_base=address_base, api_port=0, snmp_port=0)
    loop.run(lab.start(play=False))
    return lab


async def _apply(lab: Lab, entry: TimelineEntry) -> None:
    lab.model.apply(entry)


def _do(loop: BackgroundLoop, lab: Lab, action: str, **fields: Any) -> None:
    loop.run(_apply(lab, TimelineEntry(at=0, action=action, **fields)))  # type: ignore[arg-type]


def _api(lab: Lab, device: str, timeout: float = 5.0) -> librouteros.api.Api:
    sc = lab.scenario
    return librouteros.connect(lab.model.devices[device].address, sc.lab.username, sc.lab.password,
                               port=lab.api_servers[device].port, timeout=timeout)


def _interfaces(lab: Lab, device: str) -> dict[str, dict[str, Any]]:
    api = _api(lab, device)
    try:
        return {row["name"]: row for row in api.path("interface")}
    finally:
        api.close()


def _raw_connect(lab: Lab, device: str, timeout: float) -> socket.socket:
    return socket.create_connection((lab.model.devices[device].address, lab.api_servers[device].port),
                                    timeout=timeout)


def _tlv(tag: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes([tag, len(body)]) + body


def _snmp_get_sysname(lab: Lab, device: str) -> bytes | None:
    """One SNMPv2c GET of sysName.0, hand-encoded; the reply datagram or None after a short wait."""
    oid = _tlv(0x06, bytes([0x2B, 6, 1, 2, 1, 1, 5, 0]))
    pdu = _tlv(0xA0, _tlv(0x02, b"\x07") + _tlv(0x02, b"\x00") + _tlv(0x02, b"\x00")
               + _tlv(0x30, _tlv(0x30, oid + b"\x05\x00")))
    message = _tlv(0x30, _tlv(0x02, b"\x01") + _tlv(0x04, lab.scenario.lab.community.encode()) + pdu)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(message, (lab.model.devices[device].address, lab.snmp_agents[device].port))
        try:
            return sock.recv(2048)
        except TimeoutError:
            return None


def _login_words() -> bytes:
    from ispvm_tui.lab.routeros_api_server import encode_sentence
    return encode_sentence(["/login", "=name=admin", "=password=x"])


def _assert_reset(lab: Lab, device: str) -> None:
    """Connect, log in, read: the reset may surface at any of the three, never as a timeout or a FIN."""
    with pytest.raises(ConnectionResetError), _raw_connect(lab, device, timeout=10) as s:
        s.sendall(_login_words())
        if s.recv(100) == b"":
            raise AssertionError("closed with FIN, not reset")


def test_reject_mode_resets_connections_to_a_cut_off_router(loop: BackgroundLoop, address_base: str) -> None:
    sc = load_scenario("routed-cut-no-route")
    assert sc.lab.unreachable == "reject"
    lab = _lab(loop, sc, address_base)
    try:
        _do(loop, lab, "link_down", link=LINK)
        # The TCP handshake completes (the router's gateway answers) and the connection is reset at once.
        _assert_reset(lab, "POPA-AGG")
        with pytest.raises((ConnectionResetError, librouteros.exceptions.ConnectionClosed, BrokenPipeError)):
            _api(lab, "POPA-ACC1", timeout=10)
        assert _interfaces(lab, "CORE1")["ether2"]["running"] is False  # the near end still answers
        _do(loop, lab, "device_down", device="POPB-AGG")  # powered off: reset too
        _assert_reset(lab, "POPB-AGG")
        # SNMP stays silent: the agent has no answer for a cut-off router (and one for a reachable one).
        assert b"CORE1" in (_snmp_get_sysname(lab, "CORE1") or b"")
        assert _snmp_get_sysname(lab, "POPA-AGG") is None
        _do(loop, lab, "link_up", link=LINK)
        assert _interfaces(lab, "POPA-AGG")["ether1"]["running"] is True
    finally:
        loop.run(lab.stop())


def test_drop_mode_stays_silent(loop: BackgroundLoop, address_base: str) -> None:
    lab = _lab(loop, load_scenario("core-link-cut"), address_base)
    try:
        _do(loop, lab, "link_down", link=LINK)
        with _raw_connect(lab, "POPA-AGG", timeout=10) as s:
            s.settimeout(0.5)
            s.sendall(_login_words())
            with pytest.raises(TimeoutError):
                s.recv(100)
    finally:
        loop.run(lab.stop())


def test_a_hung_router_keeps_carrier_but_does_not_answer(loop: BackgroundLoop, address_base: str) -> None:
    lab = _lab(loop, load_scenario("root-recovers-symptom-stays"), address_base)
    try:
        _do(loop, lab, "hang", device="AGG")
        with pytest.raises((TimeoutError, librouteros.exceptions.ConnectionClosed)):
            _api(lab, "AGG", timeout=0.5)
        assert lab.model.answering("AGG") is False
        # Its ports stay up: the core still sees carrier, and the switches behind it still answer.
        assert _interfaces(lab, "CORE1")["ether2"]["running"] is True
        assert _interfaces(lab, "ACC1")["ether1"]["running"] is True
        assert _interfaces(lab, "ACC2")["ether1"]["running"] is True
        assert _snmp_get_sysname(lab, "AGG") is None
        assert b"ACC1" in (_snmp_get_sysname(lab, "ACC1") or b"")
        _do(loop, lab, "unhang", device="AGG")
        itfs = _interfaces(lab, "AGG")
        assert all(itfs[n]["running"] is True for n in ("ether1", "ether2", "ether3"))
        assert itfs["ether1"]["link-downs"] == 0
    finally:
        loop.run(lab.stop())


def test_a_reboot_clears_a_hang(loop: BackgroundLoop, address_base: str) -> None:
    lab = _lab(loop, load_scenario("root-recovers-symptom-stays"), address_base)
    try:
        _do(loop, lab, "hang", device="AGG")
        _do(loop, lab, "device_down", device="AGG")
        assert _interfaces(lab, "CORE1")["ether2"]["running"] is False
        _do(loop, lab, "device_up", device="AGG")
        api = _api(lab, "AGG")
        try:
            assert list(api.path("system", "identity")) == [{"name": "AGG"}]
        finally:
            api.close()
    finally:
        loop.run(lab.stop())


def test_a_device_with_no_links_answers_directly(loop: BackgroundLoop, address_base: str) -> None:
    sc = load_scenario("unlinked-device")
    assert not any(lk.a.startswith("NAS1:") or lk.b.startswith("NAS1:") for lk in sc.links)
    lab = _lab(loop, sc, address_base)
    try:
        api = _api(lab, "NAS1")
        try:
            assert list(api.path("system", "identity")) == [{"name": "NAS1"}]
        finally:
            api.close()
        _do(loop, lab, "device_down", device="NAS1")
        assert lab.model.answering("NAS1") is False
        _do(loop, lab, "device_up", device="NAS1")
        assert lab.model.answering("NAS1") is True
    finally:
        loop.run(lab.stop())


def test_each_flap_counts_a_link_down(loop: BackgroundLoop, address_base: str) -> None:
    # 3 flaps over 120 simulated seconds pass in about a second and a half at x100.
    lab = _lab(loop, load_scenario("flapping-port"), address_base, speed=100.0)
    try:
        before = _interfaces(lab, "CORE1")["ether2"]["link-downs"]
        _do(loop, lab, "flap", interface="CORE1:ether2", count=3, period_s=120)
        assert _wait(lambda: lab.elapsed() > 125, timeout=60)  # every down and up has fallen due
        assert _interfaces(lab, "CORE1")["ether2"]["link-downs"] == before + 3
        assert _interfaces(lab, "POPA-AGG")["ether1"]["link-downs"] == 3
    finally:
        loop.run(lab.stop())
