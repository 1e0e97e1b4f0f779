"""`ispvm poll ADDRESS` as an engineer runs it against a new router: lab routers over real API and SNMP."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.clock import ScaledClock
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import Scenario, load_scenario
from ispvm_tui.pollcmd import BadInput, PollRequest, build_targets, prompt_secret
from ispvm_tui.secrets import EncryptedFileSecrets, StaticSecrets

PASSPHRASE = "poll passphrase"
# Distinctive values, so "never in any output" is checked for real.
PASSWORD = "Lab-Pa55-7391"
COMMUNITY = "n0c-c0mmunity-42"
EXE = shutil.which("ispvm", path=str(Path(sys.executable).parent)) or "ispvm"


def _scenario(edge_version: int) -> Scenario:
    sc = load_scenario("core-link-cut")
    devices = [d.model_copy(update={"ros_version": edge_version}) if d.name == "EDGE1" else d for d in sc.devices]
    lab = sc.lab.model_copy(update={"password": PASSWORD, "community": COMMUNITY})
    return sc.model_copy(update={"lab": lab, "devices": devices})


@pytest.fixture
def lab(request: pytest.FixtureRequest, address_base: str):
    """The core-link-cut lab, nothing played; EDGE1's RouterOS major version from the test's parameter."""
    loop = BackgroundLoop("poll-lab")
    lab_ = Lab(_scenario(getattr(request, "param", 7)), ScaledClock(1.0), address_base=address_base)
    loop.run(lab_.start(play=False))
    yield lab_
    loop.run(lab_.stop())
    loop.stop()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment whose secret store is an encrypted file holding the community (the keyring is off)."""
    store = EncryptedFileSecrets(tmp_path / "data" / "ispvm" / "secrets.enc", passphrase=PASSPHRASE)
    store.set("lab/community", COMMUNITY)
    return dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"), ISPVM_SECRETS_PASSPHRASE=PASSPHRASE,
                PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")


def _poll(args: list[str], env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    result = subprocess.run([EXE, "poll", *args], input=stdin, env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    assert "GetPassWarning" not in result.stderr
    for secret in (PASSWORD, COMMUNITY):
        assert secret not in result.stdout + result.stderr
    return result


def _api_args(lab_: Lab, name: str) -> list[str]:
    return [lab_.model.devices[name].address, "--api-user", lab_.scenario.lab.username,
            "--api-port", str(lab_.api_servers[name].port)]


def _snmp_args(lab_: Lab, name: str) -> list[str]:
    return ["--snmp-community-secret", "lab/community", "--snmp-port", str(lab_.snmp_agents[name].port)]


@pytest.mark.parametrize("lab", [7, 6], indirect=True, ids=["v7", "v6"])
def test_api_poll_with_the_password_prompted_on_stdin(lab: Lab, env: dict[str, str]) -> None:
    result = _poll([*_api_args(lab, "EDGE1"), "--json"], env, stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["ok"] is True and out["snmp"] is None
    api: dict[str, Any] = out["api"]
    assert api["ok"] is True and api["error"] is None
    assert api["system"]["identity"] == "EDGE1"
    assert api["system"]["version"].startswith(f"{lab.model.devices['EDGE1'].ros_major}.")
    assert [i["name"] for i in api["interfaces"]] == ["ether1", "sfp1", "sfp2"]
    assert all(i["oper_up"] and i["admin_up"] for i in api["interfaces"])
    # Error and discard counters since boot: the lab keeps them at a trickle, never unknown.
    for i in api["interfaces"]:
        assert all(isinstance(i[k], int) and i[k] >= 0 for k in ("rx_errors", "tx_errors", "rx_discards",
                                                                   "tx_discards")), i
    sessions = {b["name"]: b for b in api["bgp"]}
    assert set(sessions) == {"UPSTREAM1", "UPSTREAM2"}
    assert sessions["UPSTREAM1"]["remote_as"] == 64500 and sessions["UPSTREAM1"]["established"] is True
    assert sessions["UPSTREAM2"]["prefixes"] == 948000
    assert [o["router_id"] for o in api["ospf"]] == [lab.model.devices["CORE1"].router_id]
    assert "bgp" not in api["stale"]


def test_snmp_poll_with_the_community_from_the_secrets_file(lab: Lab, env: dict[str, str]) -> None:
    address = lab.model.devices["POPA-AGG"].address
    result = _poll([address, *_snmp_args(lab, "POPA-AGG"), "--json"], env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["api"] is None
    snmp = out["snmp"]
    assert snmp["ok"] is True and snmp["collector"] == "snmp"
    assert snmp["system"]["identity"] == "POPA-AGG"
    assert snmp["system"]["version"].startswith("6.")
    assert [(i["ifindex"], i["name"], i["oper_up"]) for i in snmp["interfaces"]] == [
        (1, "ether1", True), (2, "ether2", True), (3, "ether3", True)]
    assert snmp["interfaces"][0]["speed_bps"] == 10_000_000_000
    assert snmp["interfaces"][0]["alias"] == "to CORE1 ether2"
    assert all(isinstance(i["rx_errors"], int) and isinstance(i["tx_discards"], int) for i in snmp["interfaces"])


def test_both_protocols_print_tables(lab: Lab, env: dict[str, str]) -> None:
    result = _poll([*_api_args(lab, "POPA-AGG"), *_snmp_args(lab, "POPA-AGG")], env, stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "RouterOS API" in out and "SNMP v2c" in out
    assert out.count("✔ answered") == 2
    for heading in ("system", "interfaces (3)", "OSPF neighbours", "BGP sessions: none"):
        assert heading in out, out
    assert "POPA-AGG" in out and "6.49" in out
    rows = [line.split() for line in out.splitlines()]
    assert ["1", "ether1", "to", "CORE1", "ether2", "10G", "✔", "up", "✔", "up"] in [r[:10] for r in rows]
    assert "errors rx/tx" in out and "discards rx/tx" in out
    # Both counter cells end ether1's row in each table as rx/tx pairs (the API row has no ifIndex).
    ether1 = [r for r in rows if r[:5] == ["ether1", "to", "CORE1", "ether2", "10G"] or r[:2] == ["1", "ether1"]]
    assert len(ether1) == 2 and all(re.fullmatch(r"\d+/\d+", cell) for r in ether1 for cell in r[-2:]), ether1
    assert "API password for admin" in result.stderr  # the prompt goes to stderr, never into the data


def test_a_wrong_password_is_an_auth_failure(lab: Lab, env: dict[str, str]) -> None:
    wrong = "not-the-Pa55word"
    result = _poll([*_api_args(lab, "EDGE1")], env, stdin=wrong + "\n")
    assert result.returncode == 1
    assert "api: auth:" in result.stderr
    assert "FAILED (auth)" in result.stdout
    assert wrong not in result.stdout + result.stderr


def test_an_address_where_nothing_listens_fails_with_the_reason(lab: Lab, env: dict[str, str]) -> None:
    base = lab.model.devices["CORE1"].address.rsplit(".", 1)[0]
    result = _poll([f"{base}.250", "--api-user", "admin", "--snmp-community-secret", "lab/community",
                    "--timeout", "1", "--json"], env, stdin=PASSWORD + "\n")
    assert result.returncode == 1
    out = json.loads(result.stdout)
    assert out["ok"] is False
    assert out["api"]["error_kind"] in ("refused", "timeout")
    assert out["snmp"]["error_kind"] in ("refused", "timeout")
    assert f"api: {out['api']['error_kind']}:" in result.stderr
    assert f"snmp: {out['snmp']['error_kind']}:" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["127.0.0.1"], "nothing to poll"),
    (["999.1.2.3", "--api-user", "admin"], "not an IP address or host name"),
    (["127.0.0.1", "--snmp-community-secret", "x", "--snmp-community-prompt"], "not both"),
    (["127.0.0.1", "--snmp-community-prompt", "--snmp-v3-user", "noc"], "v2c"),
    (["127.0.0.1", "--api-port", "8729", "--snmp-community-prompt"], "need --api-user"),
    (["127.0.0.1", "--snmp-v3-user", "noc", "--snmp-v3-auth-proto", "SHA1"], "choose one of SHA, SHA256"),
    (["127.0.0.1", "--api-user", "admin", "--api-password-secret", "routers/none"], "routers/none"),
    (["127.0.0.1", "--api-user", "admin"], "no API password for admin given"),  # empty stdin
])
def test_bad_arguments_exit_2_before_polling(args: list[str], message: str, env: dict[str, str]) -> None:
    result = _poll(args, env)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_snmpv3_keys_come_from_the_store_or_the_prompt_in_order() -> None:
    asked: list[str] = []

    def prompt(label: str) -> str:
        asked.append(label)
        return f"typed {len(asked)}"

    req = PollRequest(address="192.0.2.1", api_user="noc", snmp_v3_user="mon", snmp_v3_auth_proto="sha256",
                      snmp_v3_auth_secret="snmp/auth", timeout=4.0)
    targets = build_targets(req, StaticSecrets({"snmp/auth": "auth-from-store"}), prompt)
    assert asked == ["API password for noc", "SNMPv3 privacy key for mon"]
    assert (targets.api.password, targets.api.port) == ("typed 1", 8728)
    snmp = targets.snmp
    assert (snmp.version, snmp.v3_user, snmp.v3_auth_proto, snmp.v3_priv_proto) == ("3", "mon", "SHA256", "AES")
    assert (snmp.v3_auth_key, snmp.v3_priv_key) == ("auth-from-store", "typed 2")
    assert snmp.timeout * (snmp.retries + 1) == pytest.approx(4.0)  # a silent agent fails within --timeout
    assert set(targets.secret_values()) == {"typed 1", "auth-from-store", "typed 2"}


def test_prompts_read_one_line_each_from_a_pipe() -> None:
    stdin, stderr = io.StringIO("first\r\nsecond\n"), io.StringIO()
    assert prompt_secret("API password", stdin, stderr) == "first"
    assert prompt_secret("SNMP community", stdin, stderr) == "second"
    with pytest.raises(BadInput, match="stdin is empty"):
        prompt_secret("SNMPv3 auth key", stdin, stderr)
    assert "first" not in stderr.getvalue() and "API password" in stderr.getvalue()
