"""Running ispvm as a service (docs/service.md): the shipped systemd unit, the secrets passphrase as a systemd
credential, and a headless engine killed with SIGKILL mid-run losing neither its incident nor the
notification it had queued for a receiver that was down."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.clock import ScaledClock
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import load_scenario
from ispvm_tui.lab.webhook_sink import WebhookSink
from ispvm_tui.secrets import PASSPHRASE_CREDENTIAL, EncryptedFileSecrets
from tests.labconfig import write_lab_config
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "docs" / "systemd" / "ispvm.service"
EXE = shutil.which("ispvm", path=str(Path(sys.executable).parent)) or "ispvm"
PASSPHRASE = "service-test passphrase"
LINK = "CORE1:ether2--POPA-AGG:ether1"


def _unit() -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            keys.setdefault(key, []).append(value)
    return keys


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_shipped_unit_verifies_and_runs_the_commands_it_names(tmp_path: Path) -> None:
    unit = tmp_path / "ispvm.service"
    unit.write_text(UNIT.read_text().replace("/opt/ispvm/bin/ispvm", EXE))  # verify checks the binaries exist
    checked = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    keys = _unit()
    assert keys["ExecStart"] == [
        "/opt/ispvm/bin/ispvm run --headless --log-format json --config /etc/ispvm/config.toml"]
    assert keys["ExecStartPost"][0].startswith("/opt/ispvm/bin/ispvm health --config /etc/ispvm/config.toml --wait")
    assert keys["LoadCredential"] == [f"{PASSPHRASE_CREDENTIAL}:/etc/ispvm/secrets-passphrase"]
    assert keys["KillSignal"] == ["SIGTERM"] and keys["UMask"] == ["0077"]
    for command in (keys["ExecStart"][0], keys["ExecStartPost"][0]):  # every option it passes exists
        args = command.split()[1:]
        helped = subprocess.run([EXE, args[0], "--help"], capture_output=True, text=True, timeout=60,
                                env=dict(os.environ, COLUMNS="200"))
        assert helped.returncode == 0, helped.stderr
        for option in (a for a in args if a.startswith("--")):
            assert option in helped.stdout, f"`ispvm {args[0]}` has no {option}"


def test_the_passphrase_comes_as_a_systemd_credential(tmp_path: Path) -> None:
    data, creds = tmp_path / "data", tmp_path / "creds"
    env = dict(os.environ, XDG_DATA_HOME=str(data), ISPVM_SECRETS_PASSPHRASE=PASSPHRASE,
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    stored = subprocess.run([EXE, "secret", "set", "routers/noc", "--file"], input="s3cret-value\n", env=env,
                            capture_output=True, text=True, timeout=60)
    assert stored.returncode == 0, stored.stderr
    creds.mkdir(mode=0o700)
    (creds / PASSPHRASE_CREDENTIAL).write_text(PASSPHRASE + "\n")
    config = tmp_path / "c.toml"
    config.write_text('[console]\nattach = ["R1"]\n[credentials.noc]\nusername = "noc"\n'
                      'password_secret = "routers/noc"\n[[sites]]\nname = "S"\n[[devices]]\nname = "R1"\n'
                      'site = "S"\nrole = "core"\naddress = "127.0.0.1"\ncredential = "noc"\n')
    service_env = {k: v for k, v in env.items() if k != "ISPVM_SECRETS_PASSPHRASE"}
    without = subprocess.run([EXE, "secret", "check", "-c", str(config)], env=service_env, capture_output=True,
                             text=True, timeout=60)
    assert without.returncode != 0 and PASSPHRASE_CREDENTIAL in without.stdout + without.stderr
    found = subprocess.run([EXE, "secret", "check", "-c", str(config)], capture_output=True, text=True, timeout=60,
                           env=dict(service_env, CREDENTIALS_DIRECTORY=str(creds)))
    assert found.returncode == 0, found.stdout + found.stderr
    assert "found" in found.stdout and "s3cret-value" not in found.stdout + found.stderr


@pytest.fixture
def cut_lab(address_base: str):
    """core-link-cut with the fibre already cut."""
    sc = load_scenario("core-link-cut")
    loop = BackgroundLoop("service-lab")
    lab = Lab(sc, ScaledClock(1.0), address_base=address_base)
    loop.run(lab.start(play=False))
    cut = next(e for e in sc.timeline if e.action == "link_down")

    async def apply() -> None:
        lab.model.apply(cut)

    loop.run(apply())
    yield lab
    loop.run(lab.stop())
    loop.stop()


def _health(config: Path, env: dict[str, str]) -> dict[str, Any] | None:
    got = subprocess.run([EXE, "health", "-c", str(config), "--json"], env=env, capture_output=True, text=True,
                         timeout=60)
    return json.loads(got.stdout) if got.stdout.startswith("{") else None


def test_a_killed_engine_loses_no_incident_and_no_queued_notification(cut_lab: Lab, tmp_path: Path) -> None:
    sc = cut_lab.scenario
    data = tmp_path / "data"
    secrets = EncryptedFileSecrets(data / "ispvm" / "secrets.enc", passphrase=PASSPHRASE)
    secrets.set("lab/password", sc.lab.password)
    secrets.set("lab/community", sc.lab.community)
    sink = WebhookSink()
    sink.start()
    sink.stop()  # the receiver is down: the event waits in the outbox, retried
    config = write_lab_config(cut_lab, tmp_path / "lab.toml", extra=[
        "[ispvm]", 'database = "state/ispvm.duckdb"', "",
        "[polling]", "interval_s = 1", "timeout_s = 0.5", "",
        "[incidents]", "correlate_every_s = 0.5", "",
        "[[notify.webhooks]]", 'name = "noc-hook"', f'url = "{sink.url}"', "",
    ])
    db = tmp_path / "state" / "ispvm.duckdb"
    env = dict(os.environ, XDG_DATA_HOME=str(data), ISPVM_SECRETS_PASSPHRASE=PASSPHRASE,
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")

    def engine() -> subprocess.Popen[str]:
        return subprocess.Popen([EXE, "run", "--headless", "--json", "-c", str(config)], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    first = engine()
    try:
        def queued() -> bool:
            verdict = _health(config, env)
            return verdict is not None and verdict.get("outbox", {}).get("pending", 0) >= 1  # none: not up yet
        assert wait_for(queued, 90), "the cut should open an incident whose notification waits for the receiver"
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL

    with duckdb.connect(str(db), read_only=True) as con:  # after the kill, before any repair
        incidents = con.execute("SELECT id, status, root_key FROM incidents").fetchall()
        pending = con.execute("SELECT event_id, incident_id, event_type FROM outbox WHERE status = 'pending' "
                              "AND endpoint = 'noc-hook'").fetchall()
    assert [(status, LINK in root) for _, status, root in incidents] == [("open", True)]
    incident_id = incidents[0][0]
    opened = [event_id for event_id, inc, kind in pending if inc == incident_id and kind == "incident.opened"]
    assert opened, pending

    sink.start()  # the receiver is back, on the same port
    second = engine()
    try:
        assert wait_for(lambda: any(w.json.get("event_id") == opened[0] for w in sink.received()), 90), \
            "the notification queued before the kill should be delivered after the restart"
        got = next(w for w in sink.received() if w.json.get("event_id") == opened[0])
        assert got.json["incident"]["id"] == incident_id  # the same incident, not a new one
        listed = subprocess.run([EXE, "incidents", "list", "-c", str(config), "--json"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert [i["id"] for i in json.loads(listed.stdout)["incidents"] if i["status"] != "closed"] == [incident_id]
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = second.communicate(timeout=90)
        sink.stop()
    assert second.returncode == 0, stderr[-3000:]
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT status FROM outbox WHERE event_id = ?", opened).fetchall() == [("delivered",)]
