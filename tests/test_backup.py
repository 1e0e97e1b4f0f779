"""``ispvm db backup|restore`` on real DuckDB files: a consistent copy while a real engine polls the lab and
keeps writing, restoring with the engine stopped, older schemas upgraded on restore, and the refusals."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import duckdb
import pytest

from ispvm_tui.engine import audit_log
from ispvm_tui.engine.backup import describe
from ispvm_tui.engine.schema import MIGRATIONS
from ispvm_tui.engine.store import Store
from tests.test_incidents_cli import ispvm, ispvm_json
from tests.waiting import wait_for

LATEST = MIGRATIONS[-1][0]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_backup_while_the_engine_runs_then_restore_once_it_stopped(tmp_path: Path, address_base: str) -> None:
    from ispvm_tui.demo import start_demo
    from tests.held_faults import held

    db = tmp_path / "state" / "ispvm.duckdb"
    run = start_demo(held("core-link-cut"), speed=10.0, database=db, address_base=address_base)
    try:
        assert wait_for(lambda: run.engine.snapshot().incidents, 60), "the cut should open an incident"
        incident = run.engine.snapshot().incidents[0].id
        made = ispvm_json("db", "backup", "--database", db, "--actor", "ops-anna")
        copy = Path(made["path"])
        assert copy.is_absolute() and copy.parent == db.parent / "backups" and _mode(copy) == 0o600
        assert made["schema"] == LATEST and made["incidents_open"] >= 1
        with duckdb.connect(str(copy), read_only=True) as con:  # a whole database, opened on its own
            assert con.execute("SELECT count(*) FROM incidents WHERE id = ?", [incident]).fetchone() == (1,)
            polls_in_copy = con.execute("SELECT count(*) FROM poll_log").fetchone()[0]
        assert polls_in_copy > 0
        # The engine did not stop for it: it polls and writes on.
        assert wait_for(lambda: run.store.query("SELECT count(*) FROM poll_log")[0][0] > polls_in_copy + 10, 60)
        assert wait_for(lambda: ispvm("health", "--database", db).returncode == 0, 30)

        elsewhere = tmp_path / "offsite" / "ispvm-copy.duckdb"
        text = ispvm("db", "backup", "--database", db, "--to", elsewhere)
        assert text.returncode == 0, text.stderr
        assert text.stdout.startswith(f"backed up to {elsewhere}: ") and elsewhere.is_file()
        again = ispvm("db", "backup", "--database", db, "--to", elsewhere)
        assert again.returncode == 2 and "never replaces" in again.stderr
        audited = ispvm_json("audit", "list", "--database", db, "--action", "db.")
        assert [(e["actor"], e["action"]) for e in audited][-1] == ("ops-anna", "db.backup")

        refused = ispvm("db", "restore", copy, "--database", db)
        assert refused.returncode == 1 and "stop it first" in refused.stderr
    finally:
        run.stop()

    before = describe(db)
    restored = ispvm("db", "restore", copy, "--database", db, "--actor", "ops-anna")
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith(f"restored {copy} to {db}: ")
    aside = next(db.parent.glob("ispvm.duckdb.before-restore-*"))
    assert aside.name in restored.stdout and not aside.name.endswith(".wal")
    assert describe(aside)["incidents"] == before["incidents"]  # the file as it was, kept
    with Store(db) as store:
        assert store.query("SELECT count(*) FROM poll_log")[0][0] == polls_in_copy  # the backup's, no more
        assert store.query("SELECT status FROM incidents WHERE id = ?", [incident]) == [("open",)]
        assert store.query("SELECT actor, action FROM audit ORDER BY seq DESC LIMIT 1") == [("ops-anna", "db.restore")]
        assert audit_log.verify(store.query_dicts).ok
    assert _mode(db) == 0o600


def test_an_older_database_is_backed_up_as_it_is_and_upgraded_on_restore(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old_db = tmp_path / "old.duckdb"
    monkeypatch.setattr("ispvm_tui.engine.store.MIGRATIONS", MIGRATIONS[:9])  # the release before the audit chain
    with Store(old_db) as old:
        old.transaction(lambda con: con.execute(
            "INSERT INTO audit VALUES (1700000000.0, 'noc', 'maint.add', 'MW-1', NULL)")).result(30)
    monkeypatch.undo()
    kept = tmp_path / "kept.duckdb"
    made = ispvm("db", "backup", "--database", old_db, "--to", kept)
    assert made.returncode == 0, made.stderr
    assert describe(kept)["schema"] == 9 and describe(old_db)["schema"] == 9  # neither migrated by a backup

    target = tmp_path / "new" / "ispvm.duckdb"  # nothing there yet: nothing to keep aside
    restored = ispvm_json("db", "restore", kept, "--database", target)
    assert (restored["schema"], restored["schema_now"], restored["kept_aside"]) == (9, LATEST, None)
    with Store(target) as store:
        assert store.query("SELECT seq, actor, action FROM audit ORDER BY seq")[0] == (1, "noc", "maint.add")
        assert audit_log.verify(store.query_dicts).ok


def test_what_a_restore_refuses_leaves_the_database_alone(tmp_path: Path) -> None:
    db = tmp_path / "ispvm.duckdb"
    with Store(db) as store:
        store.transaction(lambda con: audit_log.append(con, 1.0, "noc", "maint.add", "MW-1", None)).result(30)
    original = db.read_bytes()

    not_db = tmp_path / "config.toml"
    not_db.write_text("[ispvm]\n")
    got = ispvm("db", "restore", not_db, "--database", db)
    assert got.returncode == 1 and "is not a database ispvm can open" in got.stderr

    foreign = tmp_path / "foreign.duckdb"
    with duckdb.connect(str(foreign)) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    got = ispvm("db", "restore", foreign, "--database", db)
    assert got.returncode == 1 and "not an ispvm database" in got.stderr

    newer = tmp_path / "newer.duckdb"
    with Store(newer) as store:
        store.transaction(lambda con: con.execute(
            "INSERT INTO schema_migrations VALUES (999, 'a later release', 0)")).result(30)
    got = ispvm("db", "restore", newer, "--database", db)
    assert got.returncode == 1 and "from a newer ispvm" in got.stderr

    missing = ispvm("db", "restore", tmp_path / "nope.duckdb", "--database", db)
    assert missing.returncode == 1 and "no file at" in missing.stderr
    assert db.read_bytes() == original and not list(tmp_path.glob("*.before-restore-*"))

    good = tmp_path / "good.duckdb"
    assert ispvm("db", "backup", "--database", db, "--to", good).returncode == 0
    original = db.read_bytes()  # the backup's own audit entry is in it now
    with Store(db):  # held by another process that is no engine: named, and nothing moved
        got = ispvm("db", "restore", good, "--database", db)
        assert got.returncode == 1 and f"in use by process {os.getpid()}" in got.stderr
        held = ispvm("db", "backup", "--database", db, "--json")
        assert held.returncode == 1 and f"in use by process {os.getpid()}" in held.stderr
    assert not list(tmp_path.glob("*.before-restore-*")) and db.read_bytes() == original
    assert json.loads(ispvm("db", "backup", "--database", db, "--json").stdout)["audit_entries"] == 2
