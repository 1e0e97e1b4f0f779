"""The encrypted secrets file at fleet scale: one key derivation, not one per lookup; a stop asked
for while a big fleet's engine is still starting is honoured."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ispvm_tui.secrets import EncryptedFileSecrets, MemoSecrets, StaticSecrets

PASSPHRASE = "fleet passphrase"


def test_lookups_decrypt_once_per_version_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "secrets.enc"
    writer = EncryptedFileSecrets(path, passphrase=PASSPHRASE)
    writer.set("routers/noc", "first")
    writer.set("snmp/community", "c0mmunity")
    reader = EncryptedFileSecrets(path, passphrase=PASSPHRASE)
    for _ in range(1000):
        assert reader.get("routers/noc") == "first"
        assert reader.get("snmp/community") == "c0mmunity"
    # One decryption costs a scrypt derivation (~0.1 s of CPU by design); 2,000 of them would be minutes.
    assert reader.decryptions == 1
    writer.set("routers/noc", "second")  # another process (here: another instance) rewrites the file
    assert reader.get("routers/noc") == "second"
    assert reader.decryptions == 2


def test_a_wrong_passphrase_is_not_remembered_as_an_answer(tmp_path: Path) -> None:
    path = tmp_path / "secrets.enc"
    EncryptedFileSecrets(path, passphrase=PASSPHRASE).set("a", "1")
    wrong = EncryptedFileSecrets(path, passphrase="not it")
    memo = MemoSecrets(wrong)
    for _ in range(2):
        try:
            memo.get("a")
        except Exception as exc:
            assert "wrong passphrase" in str(exc)
        else:
            raise AssertionError("a wrong passphrase must fail every time")


def test_memo_asks_its_source_once_per_name() -> None:
    asked: list[str] = []

    class Counting(StaticSecrets):
        def get(self, name: str) -> str | None:
            asked.append(name)
            return super().get(name)

    memo = MemoSecrets(Counting({"a": "1"}))
    assert [memo.get("a") for _ in range(5)] == ["1"] * 5
    assert [memo.get("missing") for _ in range(5)] == [None] * 5
    assert asked == ["a", "missing"]
    assert "1" not in repr(memo)


def _fleet_config(tmp: Path, base: str, devices: int) -> Path:
    a, b, _, _ = (int(x) for x in base.split("."))
    lines = ['[ispvm]', 'database = "state/fleet.duckdb"', '',
             '[polling]', 'interval_s = 60', 'timeout_s = 2', '',
             '[[sites]]', 'name = "POP"', '',
             '[credentials.noc]', 'username = "monitor"', 'password_secret = "routers/noc"', '',
             '[snmp.v2]', 'version = "2c"', 'community_secret = "snmp/community"', '']
    for i in range(devices):
        # Nothing listens there: every poll is refused at once, which is all this test needs.
        lines += ['[[devices]]', f'name = "R{i:04d}"', 'site = "POP"',
                  f'address = "{a}.{b}.{1 + i // 250}.{1 + i % 250}"', 'credential = "noc"', 'snmp = "v2"', '']
    path = tmp / "fleet.toml"
    path.write_text("\n".join(lines))
    return path


def test_sigterm_while_a_big_fleet_starts_stops_the_engine_cleanly(tmp_path: Path, address_base: str) -> None:
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"), ISPVM_SECRETS_PASSPHRASE=PASSPHRASE,
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    store = EncryptedFileSecrets(tmp_path / "data" / "ispvm" / "secrets.enc", passphrase=PASSPHRASE)
    store.set("routers/noc", "pw-not-used")
    store.set("snmp/community", "community-not-used")
    config = _fleet_config(tmp_path, address_base, 1000)
    exe = shutil.which("ispvm", path=str(Path(sys.executable).parent)) or "ispvm"
    for delay in (0.5, 2.0, 5.0):  # somewhere in start-up, or just after it: either must stop
        proc = subprocess.Popen([exe, "run", "--headless", "--json", "--config", str(config)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        try:
            out, errors = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"SIGTERM {delay}s after start was not honoured") from None
        assert proc.returncode in (0, -signal.SIGTERM), errors
        assert "Traceback" not in errors, errors
        assert "pw-not-used" not in out + errors
