"""``ispvm secret rotate``: the encrypted file re-encrypted under a new passphrase with the old one still
reading (the previous key version) until --finish, a headless engine started on either passphrase meanwhile,
and [ispvm].audit_secret_reads recording every read of the store, never a value."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from ispvm_tui.config import Config
from ispvm_tui.lab.runner import Lab
from ispvm_tui.secrets import EncryptedFileSecrets
from tests.labconfig import write_lab_config
from tests.test_service import EXE, cut_lab  # noqa: F401 (the fixture)
from tests.waiting import wait_for

OLD, NEW = "old passphrase 1f2e", "new passphrase 9a8b"


def _env(data: Path, passphrase: str | None) -> dict[str, str]:
    env = dict(os.environ, XDG_DATA_HOME=str(data), PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    env.pop("ISPVM_SECRETS_PASSPHRASE", None)
    if passphrase is not None:
        env["ISPVM_SECRETS_PASSPHRASE"] = passphrase
    return env


def _ispvm(env: dict[str, str], *args: str | Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *map(str, args)], input=stdin, env=env, capture_output=True, text=True, timeout=120)


def test_rotation_keeps_the_old_passphrase_reading_until_finished(cut_lab: Lab, tmp_path: Path) -> None:  # noqa: F811
    sc = cut_lab.scenario
    data = tmp_path / "data"
    store = EncryptedFileSecrets(data / "ispvm" / "secrets.enc", passphrase=OLD)
    store.set("lab/password", sc.lab.password)
    store.set("lab/community", sc.lab.community)
    config = write_lab_config(cut_lab, tmp_path / "lab.toml", extra=[
        "[ispvm]", 'database = "state/ispvm.duckdb"', "", "[polling]", "interval_s = 1", "timeout_s = 0.5", ""])

    def engine(passphrase: str) -> subprocess.Popen[str]:
        return subprocess.Popen([EXE, "run", "--headless", "-c", str(config)], env=_env(data, passphrase),
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def healthy(passphrase: str) -> bool:
        got = _ispvm(_env(data, passphrase), "health", "-c", config, "--json")
        return got.returncode == 0 and json.loads(got.stdout)["collectors"][0]["failing"] < len(sc.devices)

    def stop(proc: subprocess.Popen[str]) -> str:
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=60)[1]

    running = engine(OLD)
    try:
        assert wait_for(lambda: healthy(OLD), 60)
        rotated = _ispvm(_env(data, OLD), "secret", "rotate", stdin=NEW + "\n")
        assert rotated.returncode == 0, rotated.stderr
        assert "key version 2" in rotated.stderr and sc.lab.password not in rotated.stdout + rotated.stderr
        assert wait_for(lambda: healthy(OLD), 30)  # the engine never noticed
    finally:
        assert running.returncode is None, running.stderr
        stop(running)

    checked = _ispvm(_env(data, NEW), "secret", "check", "-c", config)
    assert checked.returncode == 0 and "found   lab/password" in checked.stdout
    assert "key version 2 (a rotation under way: key version 1 still reads" in checked.stderr
    for passphrase in (OLD, NEW):  # restarted before and after its passphrase was updated: both start and poll
        again = engine(passphrase)
        try:
            assert wait_for(lambda p=passphrase: healthy(p), 60), passphrase
        finally:
            stop(again)

    refused = _ispvm(_env(data, OLD), "secret", "set", "lab/other", "--file", stdin="x\n")
    assert refused.returncode == 1 and "rotated to key version 2" in refused.stderr
    assert _ispvm(_env(data, OLD), "secret", "rotate", "--finish").returncode == 1  # only the new one finishes
    finished = _ispvm(_env(data, NEW), "secret", "rotate", "--finish")
    assert finished.returncode == 0 and "key version 2 only" in finished.stderr
    stale = _ispvm(_env(data, OLD), "secret", "check", "-c", config)
    assert stale.returncode == 1 and "UNKNOWN lab/password" in stale.stdout and "wrong passphrase" in stale.stderr
    late = subprocess.run([EXE, "run", "--headless", "-c", str(config), "--duration", "5"], env=_env(data, OLD),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "wrong passphrase" in late.stderr  # every device says why it is not polled
    raw = json.loads((data / "ispvm" / "secrets.enc").read_text())
    assert raw["key_version"] == 2 and "previous" not in raw
    assert sc.lab.password not in (data / "ispvm" / "secrets.enc").read_text()


def test_every_read_of_the_secret_store_can_be_audited(tmp_path: Path, address_base: str) -> None:
    from ispvm_tui.demo import start_demo
    from tests.held_faults import held

    def configure(config: Config) -> Config:
        return config.model_copy(update={"ispvm": config.ispvm.model_copy(update={"audit_secret_reads": True})})

    run = start_demo(held("core-link-cut"), speed=10.0, database=tmp_path / "ispvm.duckdb",
                     address_base=address_base, configure=configure)
    try:
        def reads() -> list[tuple[Any, ...]]:
            return run.store.query("SELECT actor, target, detail FROM audit WHERE action = 'secret.read' "
                                   "ORDER BY target")
        assert wait_for(lambda: len(reads()) >= len(run.engine.config.secret_names()), 30)
        got = reads()
        named = run.engine.config.secret_names()
        assert {r[1] for r in got} == named and len(got) == len(named)  # each once: the memo reads it once
        assert all(r[0] == "engine" and r[2] in ("found", "not found") for r in got)
        values = set(run.engine.secrets.source.source.values().values())  # the lab's own
        dump = repr(run.store.query("SELECT * FROM audit"))
        assert not any(v in dump for v in values if v)
    finally:
        run.stop()
