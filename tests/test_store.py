"""The DuckDB store: versioned schema, batched writes, crash safety, one writer per file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ispvm_tui.engine.schema import MIGRATIONS
from ispvm_tui.engine.store import Store, StoreLocked

# A plain table of the tests' own: the store writes any table (the audit log has its own chain to keep).
LOG_T = "CREATE TABLE IF NOT EXISTS log_t (ts DOUBLE, actor VARCHAR, action VARCHAR, target VARCHAR, detail VARCHAR)"


def with_log_t(store: Store) -> Store:
    store.transaction(lambda con: con.execute(LOG_T)).result(10)
    return store


def test_migrations_apply_once(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    with Store(db) as store:
        assert store.schema_version() == MIGRATIONS[-1][0]
    with Store(db) as store:  # reopening applies nothing twice
        rows = store.query("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in rows] == [m[0] for m in MIGRATIONS]


def test_batched_samples_and_transactions_keep_order(tmp_path: Path) -> None:
    with Store(tmp_path / "b.duckdb", flush_s=5.0) as store:
        with_log_t(store)
        store.append("log_t", [(float(i), "t", "sample", None, None) for i in range(2500)])
        # A transaction queued after samples sees them written first.
        count = store.transaction(lambda con: con.execute("SELECT count(*) FROM log_t").fetchone()[0]).result(10)
        assert count == 2500
        assert store.flushes >= 1


def test_failed_transaction_rolls_back_and_writer_lives_on(tmp_path: Path) -> None:
    with Store(tmp_path / "c.duckdb") as store:
        with_log_t(store)
        def bad(con):
            con.execute("INSERT INTO log_t VALUES (1, 'x', 'y', NULL, NULL)")
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            store.transaction(bad).result(10)
        store.transaction(lambda con: con.execute("INSERT INTO log_t VALUES (2, 'x', 'ok', NULL, NULL)")).result(10)
        assert store.query("SELECT action FROM log_t") == [("ok",)]


WRITER = textwrap.dedent("""
    import sys, time
    from ispvm_tui.engine.store import Store
    store = Store(sys.argv[1], flush_s=0.05)
    store.transaction(lambda con: con.execute(sys.argv[2])).result()
    i = 0
    while True:
        store.append("log_t", [(float(i), "writer", "tick", None, None)] * 50)
        if i % 10 == 0:
            store.transaction(lambda con, i=i: con.execute(
                "INSERT INTO log_t VALUES (?, 'writer', 'txn', NULL, NULL)", [float(i)])).result()
            print(i, flush=True)
        i += 1
        time.sleep(0.005)
""")


def test_reopens_cleanly_after_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "crash.duckdb"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), LOG_T], stdout=subprocess.PIPE, text=True)
    committed = -1
    deadline = time.monotonic() + 30
    while committed < 60 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            committed = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert committed >= 60
    with Store(db) as store:  # WAL replay on open; no repair step needed
        txns = store.query("SELECT count(*) FROM log_t WHERE action = 'txn'")[0][0]
        assert txns >= committed // 10 + 1  # every acknowledged transaction survived
        assert store.schema_version() == MIGRATIONS[-1][0]


def test_second_process_gets_a_clear_message(tmp_path: Path) -> None:
    db = tmp_path / "locked.duckdb"
    with Store(db):
        code = f"from ispvm_tui.engine.store import Store\nStore({str(db)!r})"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        assert StoreLocked.__name__ in result.stderr
        assert f"database {db} is in use by process {os.getpid()}" in result.stderr


def test_a_table_that_cannot_be_written_does_not_block_the_others(tmp_path: Path) -> None:
    with Store(tmp_path / "d.duckdb") as store:
        with_log_t(store)
        store.append("no_such_table", [(1, 2, 3)])
        store.append("log_t", [(1.0, "t", "kept", None, None)])
        store.flush()
        assert store.query("SELECT action FROM log_t") == [("kept",)]
        assert "no_such_table" in (store.last_error or "")


def test_bulk_insert_keeps_full_width_counters_and_all_null_columns(tmp_path: Path) -> None:
    top = 2**64 - 1  # a 64-bit interface counter about to wrap: beyond a signed 64-bit integer
    rows = [(float(i), "R1", f"ether{i}", "snmp", i, True, None, None, top - i, i, None, None,
             None, None, None, None, None, None) for i in range(3000)]
    with Store(tmp_path / "e.duckdb") as store:
        store.append("interface_samples", rows)
        store.flush()
        got = store.query("SELECT count(*), max(rx_bytes), count(oper_up) FROM interface_samples")
        assert got == [(3000, top, 0)]
        assert store.rows_dropped == 0


def test_a_bad_value_costs_only_its_own_row(tmp_path: Path) -> None:
    good = [(float(i), "R1", "api", True, 0.1, None, None, None, False) for i in range(10)]
    bad = [(11.0, "R1", "api", True, "not a number", None, None, None, False),  # a string in a DOUBLE column
           (12.0, "R1", "api", True, 0.1, None, None, None)]  # one value short
    with Store(tmp_path / "f.duckdb") as store:
        store.append("poll_log", good[:5] + bad + good[5:])
        store.flush()
        assert store.query("SELECT count(*) FROM poll_log") == [(10,)]
        assert store.rows_dropped == 2


def test_one_polls_rows_for_several_tables_arrive_together_and_a_bad_one_stays_its_own(tmp_path: Path) -> None:
    polls = [(float(i), "R1", "api", True, 0.1, None, None, None, False) for i in range(3)]
    health = [(1.0, "R1", "api", 3600.0, 5, 2**30, 2**29, "7.16", 900, "7.16", "7.16")]
    bad = [(1.0, "R1", "api", True, "not a number", None, None, None, False)]
    with Store(tmp_path / "g.duckdb") as store:
        store.append_many([("poll_log", polls), ("health_samples", health), ("bgp_samples", [])])
        store.append_many([("poll_log", bad + polls)])
        store.flush()
        assert store.query("SELECT count(*) FROM poll_log") == [(6,)]
        assert store.query("SELECT version, route_count FROM health_samples") == [("7.16", 900)]
        assert store.rows_dropped == 1
