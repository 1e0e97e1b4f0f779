"""Private files: the database, its WAL, the log and the secrets file are ispvm's user's alone."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ispvm_tui.cli import log_handler
from ispvm_tui.engine import audit_log
from ispvm_tui.engine.store import Store
from ispvm_tui.secrets import EncryptedFileSecrets

EXE = shutil.which("ispvm", path=str(Path(sys.executable).parent)) or "ispvm"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The common 022 umask: without care, new files would be 0644 and directories 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_database_directory_file_and_wal_are_private(tmp_path: Path, loose_umask: None) -> None:
    db = tmp_path / "var" / "ispvm" / "state.duckdb"
    store = Store(db)
    try:
        store.transaction(lambda con: audit_log.append(con, 1, "a", "b", "c", "d")).result(10)
        wal = db.with_name(db.name + ".wal")
        assert wal.exists(), "a write before a checkpoint leaves a WAL"
        assert mode(wal) == 0o600
        assert mode(db) == 0o600
        assert mode(db.parent) == 0o700 and mode(db.parent.parent) == 0o700
        assert store.permission_warnings == []
        store.transaction(lambda con: con.execute("CHECKPOINT")).result(10)  # WAL deleted ...
        store.transaction(lambda con: audit_log.append(con, 2, "a", "b", "c", "d")).result(10)
        assert mode(wal) == 0o600  # ... and made again by DuckDB: still private
    finally:
        store.close()
    assert mode(db) == 0o600
    assert mode(tmp_path) == stat.S_IMODE(tmp_path.stat().st_mode)  # an existing directory is not touched


def test_an_existing_loose_database_is_reported_not_changed(tmp_path: Path) -> None:
    db = tmp_path / "ispvm.duckdb"
    Store(db).close()
    os.chmod(db, 0o644)
    store = Store(db)
    try:
        (warning,) = store.permission_warnings
    finally:
        store.close()
    assert str(db) in warning and "everyone" in warning and f"chmod 600 {db}" in warning
    assert mode(db) == 0o644  # the operator's choice stands; they were told


def test_log_file_is_created_private_and_a_loose_one_is_reported(tmp_path: Path, loose_umask: None,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "logs" / "ispvm.log"
    log_handler(log).close()
    assert mode(log) == 0o600 and mode(log.parent) == 0o700
    assert "warning" not in capsys.readouterr().err
    os.chmod(log, 0o640)
    log_handler(log).close()
    err = capsys.readouterr().err
    assert f"warning: {log} is open to its group (mode 0640)" in err
    assert "WARNING ispvm: " in log.read_text()  # the log itself records it too


def test_secrets_file_and_directory_are_private(tmp_path: Path, loose_umask: None) -> None:
    path = tmp_path / "data" / "ispvm" / "secrets.enc"
    store = EncryptedFileSecrets(path, passphrase="perm test")
    store.set("a/b", "value-1")
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert store.permission_warnings() == []
    os.chmod(path.parent, 0o755)
    (warning,) = store.permission_warnings()
    assert str(path.parent) in warning and "chmod 700" in warning


def test_cli_warns_about_a_database_others_can_read(tmp_path: Path, address_base: str) -> None:
    """`ispvm run --headless` on a database left 0644 by an older version says so on stderr and still runs."""
    db = tmp_path / "state" / "ispvm.duckdb"
    Store(db).close()
    os.chmod(db, 0o644)
    router = address_base.rsplit(".", 1)[0] + ".1"  # nothing listens there: polls fail, that is all
    config = tmp_path / "c.toml"
    config.write_text("\n".join([
        "[ispvm]", 'database = "state/ispvm.duckdb"', "", "[console]", 'attach = ["R1"]', "",
        "[credentials.c]", 'username = "u"', 'password_secret = "c/pw"', "",
        "[[sites]]", 'name = "S"', "", "[[devices]]", 'name = "R1"', 'site = "S"', 'role = "core"',
        f'address = "{router}"', 'credential = "c"', "",
    ]))
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"), PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    result = subprocess.run([EXE, "run", "--headless", "--duration", "1", "--config", str(config)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"{db} is open to everyone (mode 0644)" in result.stderr
