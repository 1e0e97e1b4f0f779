"""Link discovery from neighbour tables: the matching on constructed polls, then `ispvm discover` on the lab."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.clock import ScaledClock
from ispvm_tui.collectors.results import InterfaceStat, IpAddress, Neighbor, PollResult
from ispvm_tui.config import Config
from ispvm_tui.discovery import DiscoveryReport, discover, port_name, render_lines, to_dict
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import load_scenario
from ispvm_tui.secrets import EncryptedFileSecrets
from tests.labconfig import write_lab_config

PASSPHRASE = "discover passphrase"


def _config(links: list[tuple[str, str]], devices: tuple[str, ...] = ("R1", "R2", "R3")) -> Config:
    return Config.model_validate({
        "console": {"attach": [devices[0]]},
        "sites": [{"name": "S"}],
        "credentials": {"c": {"username": "noc", "password_secret": "x"}},
        "devices": [{"name": d, "site": "S", "role": "core", "address": f"192.0.2.{i}", "credential": "c"}
                    for i, d in enumerate(devices, start=1)],
        "links": [{"a": a, "b": b} for a, b in links],
    })


def _poll(device: str, neighbors: tuple[Neighbor, ...] | None = (), *, ok: bool = True,
          interfaces: tuple[InterfaceStat, ...] = (), addresses: tuple[IpAddress, ...] = ()) -> PollResult:
    if not ok:
        return PollResult(device=device, collector="api", started_at=0.0, duration_s=0.1, ok=False,
                          error="no answer from 192.0.2.9:8728 within 5s", error_kind="timeout")
    return PollResult(device=device, collector="api", started_at=0.0, duration_s=0.1, ok=True,
                      interfaces=interfaces, addresses=addresses, neighbors=neighbors)


def _by_id(report: DiscoveryReport) -> dict[str, Any]:
    return {s.id: s for s in report.links}


def test_a_link_seen_from_both_sides_is_one_known_link() -> None:
    cfg = _config([("R1:ether1", "R2:ether1")])
    report = discover(cfg, {
        "R1": [_poll("R1", (Neighbor("ether1", "R2", "ether1", "10.0.0.2"),))],
        "R2": [_poll("R2", (Neighbor("ether1", "R1", "ether1", "10.0.0.1"),))],
        "R3": [_poll("R3")],
    })
    assert [(s.id, s.status, s.seen_from) for s in report.links] == [("R1:ether1--R2:ether1", "known", ("R1", "R2"))]
    assert report.missing == () and report.unknown == () and report.unseen == ()
    assert report.links[0].snippet is None


def test_a_link_seen_from_one_side_is_missing_with_a_snippet() -> None:
    cfg = _config([("R1:ether1", "R2:ether1")])
    speed = InterfaceStat("ether2", speed_bps=1_000_000_000)
    report = discover(cfg, {
        "R1": [_poll("R1", (Neighbor("ether1", "R2", "ether1"),))],
        "R2": [_poll("R2", (Neighbor("ether1", "R1", "ether1"), Neighbor("ether2", "R3", "sfp1")),
                     interfaces=(speed,))],
        "R3": [_poll("R3", None)],  # answered, but no neighbour table (a menu the collector could not read)
    })
    missing = _by_id(report)["R2:ether2--R3:sfp1"]
    assert (missing.status, missing.seen_from, missing.speed_mbps) == ("missing", ("R2",), 1000)
    assert tomllib.loads(missing.snippet or "") == {"links": [{"a": "R2:ether2", "b": "R3:sfp1",
                                                               "speed_mbps": 1000}]}
    assert report.without_neighbors == {"R3": "the collectors reported no neighbour table"}
    lines = render_lines(report)
    assert any("MISSING" in line and "R2:ether2 -- R3:sfp1" in line and "seen from R2 only" in line
               for line in lines)
    assert "[[links]]" in lines and 'a = "R2:ether2"' in lines


def test_unknown_neighbours_are_listed_with_what_they_say_about_themselves() -> None:
    cfg = _config([])
    seen = Neighbor("ether5", "SW-CUSTOMER", "ether1", "10.9.0.7", "4c:5e:0c:aa:bb:cc", platform="MikroTik")
    report = discover(cfg, {
        "R1": [_poll("R1", (seen,))],
        "R2": [_poll("R2", (Neighbor("ether7", "SW-CUSTOMER", "ether2", "10.9.1.7"),))],
        "R3": [_poll("R3")],
    })
    assert report.links == ()
    [unknown] = report.unknown
    assert unknown.identity == "SW-CUSTOMER"
    assert unknown.addresses == ("10.9.0.7", "10.9.1.7")
    assert unknown.macs == ("4C:5E:0C:AA:BB:CC",)
    assert unknown.platform == "MikroTik"
    assert unknown.seen_by == ("R1:ether5", "R2:ether7")
    assert to_dict(report)["unknown_neighbors"][0]["seen_by"] == ["R1:ether5", "R2:ether7"]


def test_neighbours_match_by_address_and_mac_and_fill_the_far_port() -> None:
    cfg = _config([("R1:ether1", "R2:ether1")])
    r2_ports = (InterfaceStat("ether1", mac="4C:5E:0C:00:02:01"), InterfaceStat("sfp1", mac="4C:5E:0C:00:02:09"))
    report = discover(cfg, {
        # Identity differs from the config name: the address the row carries is one R2 holds on ether1.
        "R1": [_poll("R1", (Neighbor("ether1,bridge1", "core-r2", None, "10.0.0.2"),
                            Neighbor("ether3", None, None, None, "4c:5e:0c:00:02:09"),
                            Neighbor("ether4", None, None, "192.0.2.3")))],  # R3's management address
        "R2": [_poll("R2", (), interfaces=r2_ports, addresses=(IpAddress("10.0.0.2/30", "ether1"),))],
        "R3": [_poll("R3")],
    })
    links = _by_id(report)
    assert links["R1:ether1--R2:ether1"].status == "known"
    assert links["R1:ether3--R2:sfp1"].status == "missing"  # far port from the MAC
    far_unknown = links["R1:ether4--R3:?"]
    assert (far_unknown.status, far_unknown.complete, far_unknown.snippet) == ("missing", False, None)
    assert report.unknown == ()


def test_a_port_configured_towards_another_device_is_a_conflict() -> None:
    cfg = _config([("R1:ether1", "R3:ether1")])
    report = discover(cfg, {
        "R1": [_poll("R1", (Neighbor("ether1", "R2", "ether1"),))],
        "R2": [_poll("R2", (Neighbor("ether1", "R1", None),))],  # far port taken from R1's row
        "R3": [_poll("R3")],
    })
    [link] = report.links
    assert (link.id, link.status, link.configured, link.seen_from) == (
        "R1:ether1--R2:ether1", "conflict", ("R1:ether1--R3:ether1",), ("R1", "R2"))
    assert link.snippet is None
    assert report.unseen == ("R1:ether1--R3:ether1",)


def test_devices_that_did_not_answer_are_reported_and_links_to_them_still_suggested() -> None:
    cfg = _config([])
    report = discover(cfg, {
        "R1": [_poll("R1", (Neighbor("ether2", "R3", "ether9"),))],
        "R3": [_poll("R3", ok=False)],
    }, setup_errors={"R2": "R2: secret 'x' is not in the keyring"})
    assert report.unanswered == {"R2": "R2: secret 'x' is not in the keyring",
                                 "R3": "api: timeout: no answer from 192.0.2.9:8728 within 5s"}
    assert [(s.id, s.status, s.seen_from) for s in report.links] == [("R1:ether2--R3:ether9", "missing", ("R1",))]


def test_port_names_drop_the_bridge() -> None:
    assert port_name("ether2,bridge1") == "ether2"
    assert port_name("bridge1/ether2") == "ether2"
    assert port_name("sfp-sfpplus1") == "sfp-sfpplus1"
    assert port_name("bridge/ether2", known={"bridge/ether2"}) == "bridge/ether2"


# ---- end to end against the lab ----------------------------------------------------------


@pytest.fixture
def lab(address_base: str):
    loop = BackgroundLoop("discover-lab")
    lab_ = Lab(load_scenario("core-link-cut"), ScaledClock(1.0), address_base=address_base)
    loop.run(lab_.start(play=False))
    yield lab_
    loop.run(lab_.stop())
    loop.stop()


def _lab_config(lab_: Lab, tmp: Path, omit: str) -> Path:
    return write_lab_config(lab_, tmp / "lab.toml", extra=["[polling]", "timeout_s = 3", ""],
                            omit_links={omit}, snmp_timeout_s=1, snmp_retries=1)


def test_discover_reports_the_link_missing_from_the_config(lab: Lab, tmp_path: Path) -> None:
    sc = lab.scenario
    omitted = next(link for link in sc.links if link.a == "POPA-AGG:ether3")
    a, b = sorted((omitted.a, omitted.b))  # reports name ends in link-id order
    config = _lab_config(lab, tmp_path, omit=omitted.id)
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"), ISPVM_SECRETS_PASSPHRASE=PASSPHRASE,
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    store = EncryptedFileSecrets(tmp_path / "data" / "ispvm" / "secrets.enc", passphrase=PASSPHRASE)
    store.set("lab/password", sc.lab.password)
    store.set("lab/community", sc.lab.community)
    exe = shutil.which("ispvm", path=str(Path(sys.executable).parent)) or "ispvm"

    result = subprocess.run([exe, "discover", "--config", str(config), "--json"], env=env, capture_output=True,
                            text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["unanswered"] == {} and report["no_neighbor_table"] == {}, result.stderr
    links = {link["id"]: link for link in report["links"]}
    assert set(links) == {link.id for link in sc.links}
    missing = links[omitted.id]
    assert missing["status"] == "missing"
    assert missing["seen_from"] == ["POPA-ACC2", "POPA-AGG"]
    assert tomllib.loads(missing["snippet"]) == {"links": [{"a": a, "b": b, "speed_mbps": omitted.speed_mbps}]}
    for link in sc.links:
        if link.id != omitted.id:
            assert links[link.id]["status"] == "known", links[link.id]
            assert len(links[link.id]["seen_from"]) == 2
    assert report["unknown_neighbors"] == [] and report["unseen_links"] == []
    assert sc.lab.password not in result.stdout + result.stderr

    human = subprocess.run([exe, "discover", "--config", str(config)], env=env, capture_output=True,
                           text=True, timeout=90)
    assert human.returncode == 0, human.stderr
    assert f"MISSING   {a} -- {b}  seen from both sides" in human.stdout
    snippet = human.stdout[human.stdout.index("[[links]]"):]
    assert tomllib.loads(snippet)["links"] == [{"a": a, "b": b, "speed_mbps": omitted.speed_mbps}]
    assert "known     CORE1:ether1 -- EDGE1:ether1" in human.stdout
    assert "7 of 7 devices answered; 1 links missing" in human.stderr


def test_lldp_row_without_local_port_still_places_the_link() -> None:
    """RouterOS 6 LLDP over SNMP leaves the local port empty; the far port still tells the link."""
    cfg = _config([])
    report = discover(cfg, {
        "R1": [_poll("R1", (Neighbor("", "R2", "ether4"),))],  # R1 knows R2:ether4 faces it, not its own port
        "R2": [_poll("R2", (Neighbor("ether4", "R1", "ether7"),))],
        "R3": [_poll("R3")],
    })
    (link,) = report.links
    assert (link.id, link.status, link.seen_from) == ("R1:ether7--R2:ether4", "missing", ("R1", "R2"))
    assert not any(end.endswith(":") for end in (link.a, link.b))
