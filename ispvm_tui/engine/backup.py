"""Backups of the database, and restoring one.

A backup is the database file itself, made consistent: a CHECKPOINT folds the WAL into the file, then the
file is copied, both on the store's writer thread outside any transaction (``Store.exclusive``), so nothing
writes meanwhile; samples arriving during the copy wait in the writer's queue. Readers go on. The copy is
written beside its final name and renamed into place, mode 0600, and never over an existing file.

With the engine running, its backups go to ``backups/`` beside the database, under a name the engine
chooses (a peer on the control socket never picks a path the engine writes to). With no engine, the CLI
takes the database's lock itself and copies it the same way, without migrating it: a backup made before an
upgrade is the old schema, as it should be.

A restore needs the engine stopped. The backup must open as an ispvm database of this release's schema or
older; the current file (and its WAL) is kept aside as ``<db>.before-restore-<time>``, the backup copied in
its place, and the store opened once, which migrates it to this release's schema.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from ispvm_tui.engine import audit_log
from ispvm_tui.fileperms import PRIVATE_FILE, make_private_dir

BACKUP_DIR = "backups"


class BackupError(Exception):
    """A backup or restore refused or failed, with a message meant for the operator."""


def _stamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")


def default_target(db: Path, now: float) -> Path:
    """``backups/<db>-<UTC time>.duckdb`` beside the database, not taken yet."""
    base = db.parent / BACKUP_DIR / f"{db.stem}-{_stamp(now)}"
    target, n = base.with_suffix(".duckdb"), 1
    while target.exists() or target.with_name(target.name + ".partial").exists():
        n += 1
        target = base.with_name(f"{base.name}-{n}.duckdb")
    return target


def copy_file(source: Path, dest: Path) -> int:
    """``source`` to ``dest`` (created 0600, never replacing one): written beside it, flushed, renamed."""
    make_private_dir(dest.parent)
    partial = dest.with_name(dest.name + ".partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        raise BackupError(f"{partial} exists: another backup to that name is under way, or was cut short") \
            from None
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        if dest.exists():
            raise BackupError(f"{dest} exists: a backup never replaces a file")
        os.rename(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return dest.stat().st_size


def copy_checkpointed(con: duckdb.DuckDBPyConnection, source: Path, dest: Path) -> int:
    """On the connection that owns ``source``, with nothing else writing: checkpoint, then copy."""
    con.execute("CHECKPOINT")
    return copy_file(source, dest)


def describe(path: Path) -> dict[str, Any]:
    """What a database file holds, or BackupError when it is not an ispvm database."""
    if not path.is_file():
        raise BackupError(f"no file at {path}")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise BackupError(f"{path} is not a database ispvm can open: {exc}") from None
    try:
        try:
            (schema,) = con.execute("SELECT max(version) FROM schema_migrations").fetchone()
        except duckdb.Error:
            raise BackupError(f"{path} is a DuckDB file but not an ispvm database (no schema_migrations)") from None

        def count(sql: str) -> int | None:
            try:
                return int(con.execute(sql).fetchone()[0])
            except duckdb.Error:  # a table of a later schema than that file's
                return None

        return {"path": str(path), "bytes": path.stat().st_size, "schema": schema,
                "incidents_open": count("SELECT count(*) FROM incidents WHERE status <> 'closed'"),
                "incidents": count("SELECT count(*) FROM incidents"),
                "notifications_pending": count("SELECT count(*) FROM outbox WHERE status = 'pending'"),
                "audit_entries": count("SELECT count(*) FROM audit")}
    finally:
        con.close()


def _open_held(db: Path) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(db))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            pid = re.search(r"PID (\d+)", str(exc))
            raise BackupError(f"database {db} is in use by {'process ' + pid.group(1) if pid else 'another process'}"
                              " and no engine answered on its control socket: stop it and try again") from None
        raise BackupError(f"cannot open database {db}: {exc}") from None
    except duckdb.Error as exc:
        raise BackupError(f"cannot open database {db}: {exc}") from None


def backup_offline(db: Path, dest: Path, *, actor: str, now: float, latest_schema: int) -> dict[str, Any]:
    """No engine runs: hold the file, checkpoint it and copy it, unmigrated. Audited when its schema is this
    release's (an older file is left exactly as it was)."""
    if not db.is_file():
        raise BackupError(f"no database at {db}")
    con = _open_held(db)
    try:
        copy_checkpointed(con, db, dest)
        (schema,) = con.execute("SELECT max(version) FROM schema_migrations").fetchone()
        if schema == latest_schema:
            con.execute("BEGIN TRANSACTION")
            audit_log.append(con, now, actor, "db.backup", dest.name, str(dest))
            con.execute("COMMIT")
    finally:
        con.close()
    return describe(dest)


def restore(db: Path, source: Path, *, now: float, latest_schema: int) -> dict[str, Any]:
    """Put ``source`` in place of ``db`` (no engine may run: the caller checked its socket). The current file
    and its WAL are kept aside. Returns what the backup holds and where the old file went."""
    info = describe(source)
    if info["schema"] > latest_schema:
        raise BackupError(f"{source} is schema {info['schema']}, from a newer ispvm than this one (schema "
                          f"{latest_schema}): restore it with that release")
    if source.resolve() == db.resolve():
        raise BackupError(f"{source} is the database itself")
    aside = None
    if db.exists():
        _open_held(db).close()  # fails, naming the holder, if some process has it open
        aside = db.with_name(f"{db.name}.before-restore-{_stamp(now)}")
        os.replace(db, aside)
        wal = db.with_name(db.name + ".wal")
        if wal.exists():
            os.replace(wal, aside.with_name(aside.name + ".wal"))
    try:
        copy_file(source, db)
    except BaseException:
        if aside is not None and not db.exists():
            os.replace(aside, db)  # put the current one back: a failed restore changes nothing
            wal_aside = aside.with_name(aside.name + ".wal")
            if wal_aside.exists():
                os.replace(wal_aside, db.with_name(db.name + ".wal"))
        raise
    return {**info, "kept_aside": str(aside) if aside else None}
