"""`ispvm run --headless` as a service would run it: config file, encrypted secrets, JSON events."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.clock import ScaledClock
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import load_scenario
from ispvm_tui.secrets import EncryptedFileSecrets
from tests.labconfig import write_lab_config

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def lab_with_cut_link(address_base: str):
    sc = load_scenario("core-link-cut")
    loop = BackgroundLoop("test-lab")
    lab = Lab(sc, ScaledClock(1.0), address_base=address_base)
    loop.run(lab.start(play=False))
    cut = next(e for e in sc.timeline if e.action == "link_down")
    loop.run(_apply(lab, cut))
    yield lab
    loop.run(lab.stop())
    loop.stop()


async def _apply(lab: Lab, entry) -> None:
    lab.model.apply(entry)


def _config(lab: Lab, tmp: Path) -> Path:
    return write_lab_config(lab, tmp / "lab.toml", extra=[
        "[ispvm]", 'database = "state/ispvm.duckdb"', "",
        "[polling]", "interval_s = 1", "timeout_s = 0.5", "",
        "[incidents]", "correlate_every_s = 0.5", "",
    ])


def test_headless_run_reports_the_incident_as_json(lab_with_cut_link: Lab, tmp_path: Path) -> None:
    lab = lab_with_cut_link
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"), ISPVM_SECRETS_PASSPHRASE=PASSPHRASE,
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    secrets_file = tmp_path / "data" / "ispvm" / "secrets.enc"
    store = EncryptedFileSecrets(secrets_file, passphrase=PASSPHRASE)
    store.set("lab/password", lab.scenario.lab.password)
    store.set("lab/community", lab.scenario.lab.community)
    assert lab.scenario.lab.password.encode() not in secrets_file.read_bytes()  # encrypted at rest

    config = _config(lab, tmp_path)
    exe = shutil.which("ispvm", path=str(Path(sys.executable).parent)) or "ispvm"
    check = subprocess.run([exe, "secret", "check", "--config", str(config)], env=env, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "found   lab/password" in check.stdout
    assert lab.scenario.lab.password not in check.stdout + check.stderr

    result = subprocess.run([exe, "run", "--headless", "--json", "--duration", "8", "--config", str(config)],
                            env=env, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    opened = [e for e in events if e["kind"] == "incident.opened"]
    assert opened, result.stdout + result.stderr
    assert any("CORE1:ether2--POPA-AGG:ether1" in e["summary"] for e in opened)
    assert lab.scenario.lab.password not in result.stdout + result.stderr
    assert (tmp_path / "state" / "ispvm.duckdb").exists()


def test_headless_run_on_a_locked_database_says_who_holds_it(lab_with_cut_link: Lab, tmp_path: Path) -> None:
    from ispvm_tui.engine.store import Store

    config = _config(lab_with_cut_link, tmp_path)
    (tmp_path / "state").mkdir()
    exe = shutil.which("ispvm", path=str(Path(sys.executable).parent)) or "ispvm"
    with Store(tmp_path / "state" / "ispvm.duckdb"):
        result = subprocess.run([exe, "run", "--headless", "--duration", "1", "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"is in use by process {os.getpid()}" in result.stderr
    assert "Traceback" not in result.stderr


def test_secret_set_reads_a_piped_value_into_the_encrypted_file(tmp_path: Path) -> None:
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path), ISPVM_SECRETS_PASSPHRASE=PASSPHRASE,
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    exe = shutil.which("ispvm", path=str(Path(sys.executable).parent)) or "ispvm"
    result = subprocess.run([exe, "secret", "set", "routers/noc"], input="s3cret-value\n", env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "s3cret-value" not in result.stdout + result.stderr
    stored = EncryptedFileSecrets(tmp_path / "ispvm" / "secrets.enc", passphrase=PASSPHRASE)
    assert stored.get("routers/noc") == "s3cret-value"


def test_headless_run_logs_the_config_warnings_once_at_start(lab_with_cut_link: Lab, tmp_path: Path) -> None:
    lab = lab_with_cut_link
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"), ISPVM_SECRETS_PASSPHRASE=PASSPHRASE,
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    store = EncryptedFileSecrets(tmp_path / "data" / "ispvm" / "secrets.enc", passphrase=PASSPHRASE)
    store.set("lab/password", lab.scenario.lab.password)
    store.set("lab/community", lab.scenario.lab.community)
    config = write_lab_config(lab, tmp_path / "lab.toml", omit_links={"POPB-ACC1:ether1--POPB-AGG:ether2"}, extra=[
        "[ispvm]", 'database = "state/ispvm.duckdb"', "", "[polling]", "interval_s = 1", "timeout_s = 0.5", ""])
    exe = shutil.which("ispvm", path=str(Path(sys.executable).parent)) or "ispvm"
    result = subprocess.run([exe, "run", "--headless", "--duration", "2", "--config", str(config)],
                            env=env, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "warning: no configured path from the console" in line]
    assert len(warned) == 1 and "devices[" in warned[0], result.stderr
