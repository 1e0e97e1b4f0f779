"""``ispvm audit routers``: hardening checks on stored RouterOS configuration, versions and ispvm's own way in;
crafted bodies for every check, then a demo engine whose lab routers really answer /ip/service and
/snmp/community over the API."""

from __future__ import annotations

import json
from pathlib import Path

from ispvm_tui.engine.hardening import device_checks, load_advisories, version_tuple
from tests.labconfig import write_lab_config
from tests.test_incidents_cli import ispvm, ispvm_json
from tests.waiting import wait_for


def _svc(name: str, port: int, disabled: bool, address: str | None = None) -> dict[str, str]:
    row = {"name": name, "port": str(port), "disabled": "true" if disabled else "false"}
    if address is not None:
        row["address"] = address
    return row


def _checks(system: dict | None, version: str | None = "7.16.2", plain: bool = False,
            public: bool = False) -> set[str]:
    return {f.check for f in device_checks("R1", system, version, plain, public, load_advisories())}


def test_each_check_on_crafted_configuration() -> None:
    locked = {"/ip/service": [_svc("api", 8728, True), _svc("api-ssl", 8729, False, "10.0.0.0/8"),
                              _svc("winbox", 8291, False, "10.0.0.0/8,192.168.88.0/24"), _svc("telnet", 23, True),
                              _svc("ftp", 21, True), _svc("ssh", 22, False, "10.0.0.0/8")],
              "/snmp/community": [{"addresses": "10.0.0.5/32", "read-access": "true", "security": "none"}]}
    assert _checks(locked) == set()
    loose = {"/ip/service": [_svc("api", 8728, False), _svc("api-ssl", 8729, True), _svc("winbox", 8291, False,
                                                                                       "0.0.0.0/0"),
                             _svc("telnet", 23, False, "10.0.0.0/8"), _svc("ftp", 21, True),
                             _svc("www", 80, False, "::/0")],
             "/snmp/community": [{"addresses": "0.0.0.0/0", "read-access": "true", "write-access": "true",
                                  "security": "none"},
                                 {"addresses": "0.0.0.0/0", "read-access": "true", "disabled": "true"}]}
    found = {f.check: f for f in device_checks("R1", loose, "7.16.2", False, False, load_advisories())}
    assert set(found) == {"telnet enabled", "api open to any address", "winbox open to any address",
                          "www open to any address", "API without TLS", "SNMP open to any address"}
    assert found["winbox open to any address"].severity == "high" and found["www open to any address"].severity \
        == "medium"
    assert "writable" in found["SNMP open to any address"].detail  # the disabled community is not counted
    assert _checks(None, plain=True, public=True) == {"ispvm polls without TLS", "default SNMP community"}


def test_versions_against_the_advisories() -> None:
    assert version_tuple("6.49.10 (long-term)") == (6, 49, 10) and version_tuple("7.16rc2") == (7, 16)
    affected = {v for v in ("6.28", "6.29", "6.40.7", "6.40.8", "6.41", "6.42", "6.42.1", "6.49.10", "7.16.2")
                if any("CVE-2018-14847" in c for c in _checks(None, v))}
    assert affected == {"6.29", "6.40.7", "6.41", "6.42"}
    assert not _checks(None, None)


def test_audit_routers_on_a_running_engine(tmp_path: Path, address_base: str) -> None:
    from ispvm_tui.demo import start_demo
    from tests.held_faults import held

    db = tmp_path / "ispvm.duckdb"
    run = start_demo(held("core-link-cut"), speed=10.0, database=db, address_base=address_base)
    try:
        devices = len(run.engine.config.devices)

        def fingerprinted() -> bool:
            return ispvm_json("audit", "routers", "--database", db)["fingerprinted"] >= devices - 3  # 3 are cut off
        assert wait_for(fingerprinted, 90)
        rep = ispvm_json("audit", "routers", "--database", db)
        core = {f["check"] for f in rep["findings"] if f["device"] == "CORE1"}
        # The lab's routers: API on without api-ssl, a community readable from anywhere, polled in clear text.
        assert {"API without TLS", "SNMP open to any address", "ispvm polls without TLS"} <= core
        assert ("default SNMP community" in core) == (run.scenario.lab.community == "public")
        order = [f["severity"] for f in rep["findings"]]
        assert order == sorted(order, key=["high", "medium", "low"].index)
        text = ispvm("audit", "routers", "--database", db)
        assert text.returncode == 0 and text.stdout.splitlines()[1].split() == ["SEVERITY", "DEVICE", "CHECK",
                                                                               "DETAIL"]
        config = write_lab_config(run.lab, tmp_path / "lab.toml",
                                  extra=["[ispvm]", f"database = {json.dumps(str(db))}"])
    finally:
        run.stop()
    off = ispvm("audit", "routers", "--database", db)
    assert off.returncode == 2 and "needs the inventory" in off.stderr
    # Off the file with the inventory: the same stored findings (ispvm's own secrets are not at hand here, so
    # only the check that needs them can differ).
    offline = ispvm_json("audit", "routers", "-c", config)
    assert offline["fingerprinted"] == rep["fingerprinted"]
    assert {(f["device"], f["check"]) for f in offline["findings"]} >= {
        (f["device"], f["check"]) for f in rep["findings"] if f["check"] != "default SNMP community"}
