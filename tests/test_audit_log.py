"""The audit log's hash chain (engine/audit_log.py) on real DuckDB files: every kind of tampering named at the
entry it starts, retention cutting the chain without breaking it, a database from before the chain upgraded
in place, and ``ispvm audit list|verify`` through a running engine's control socket and off the file."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ispvm_tui.config import Retention
from ispvm_tui.engine import audit_log
from ispvm_tui.engine.rollups import DAY_S, apply_retention
from ispvm_tui.engine.schema import MIGRATIONS
from ispvm_tui.engine.store import Store
from tests.test_incidents_cli import ispvm, ispvm_json

NOW = 1_800_000_000.0
ENTRIES = [  # (age in days, actor, action, target, detail)
    (40, "alice", "maint.add", "MW-1", '{"name": "fibre works"}'),
    (30, "bob", "incident.ack", "3f0c", None),
    (20, "carol", "incident.note", "3f0c", "spliced at 14:05 — ünïcode kept"),
    (10, "dave", "webhook.resend", "evt-9", "was dead"),
    (1, "erin", "incident.close", "3f0c", "fibre spliced"),
]


def _tx(store: Store, fn: Any) -> Any:
    return store.transaction(fn).result(30)


def _filled(path: Path) -> Store:
    store = Store(path)
    for age, *entry in ENTRIES:
        _tx(store, lambda con, age=age, entry=entry: audit_log.append(con, NOW - age * DAY_S, *entry))
    return store


def _verify(store: Store, head: tuple[int, str] | None = None) -> audit_log.Verdict:
    return audit_log.verify(store.query_dicts, head)


def test_an_untouched_log_verifies_and_each_entry_links_to_the_one_before(tmp_path: Path) -> None:
    with _filled(tmp_path / "a.duckdb") as store:
        verdict = _verify(store)
        assert verdict.ok and verdict.problem is None
        assert (verdict.entries, verdict.first_seq, verdict.head_seq) == (5, 1, 5)
        rows = store.query("SELECT seq, prev_hash, hash FROM audit ORDER BY seq")
        assert rows[0][1] == audit_log.GENESIS
        assert all(later[1] == earlier[2] for earlier, later in itertools.pairwise(rows))
        assert verdict.head_hash == rows[-1][2]
        assert _verify(store, (5, rows[-1][2])).ok


@pytest.mark.parametrize(("tamper", "seq", "what"), [
    ("UPDATE audit SET actor = 'mallory' WHERE seq = 3", 3, "changed"),
    ("UPDATE audit SET detail = NULL WHERE seq = 1", 1, "changed"),
    ("UPDATE audit SET ts = ts + 1 WHERE seq = 4", 4, "changed"),
    ("DELETE FROM audit WHERE seq = 2", 2, "missing"),
    ("DELETE FROM audit WHERE seq IN (2, 3)", 2, "missing"),
    ("DELETE FROM audit WHERE seq = 1", 1, "missing"),
])
def test_tampering_is_named_at_the_first_entry_it_touches(tmp_path: Path, tamper: str, seq: int, what: str) -> None:
    path = tmp_path / "t.duckdb"
    _filled(path).close()
    with duckdb.connect(str(path)) as con:  # someone with the file and a DuckDB shell
        con.execute(tamper)
    with Store(path) as store:
        verdict = _verify(store)
    assert not verdict.ok
    assert verdict.problem is not None
    assert (verdict.problem.seq, verdict.problem.what) == (seq, what)
    assert str(seq) in verdict.problem.message


def test_an_entry_rewritten_with_its_own_hash_recomputed_breaks_the_next_link(tmp_path: Path) -> None:
    """Whoever knows the format can give a changed entry a matching hash; the entry after it still points at
    the old one."""
    path = tmp_path / "r.duckdb"
    _filled(path).close()
    with duckdb.connect(str(path)) as con:
        seq, ts, action, target, detail, prev = con.execute(
            "SELECT seq, ts, action, target, detail, prev_hash FROM audit WHERE seq = 2").fetchone()
        forged = audit_log.entry_hash(seq, ts, "mallory", action, target, detail, prev)
        con.execute("UPDATE audit SET actor = 'mallory', hash = ? WHERE seq = 2", [forged])
    with Store(path) as store:
        verdict = _verify(store)
    assert verdict.problem is not None and (verdict.problem.seq, verdict.problem.what) == (3, "relinked")


def test_a_kept_head_shows_entries_cut_from_the_end(tmp_path: Path) -> None:
    path = tmp_path / "h.duckdb"
    with _filled(path) as store:
        kept = _verify(store)
    assert kept.head_seq == 5 and kept.head_hash is not None
    with duckdb.connect(str(path)) as con:
        con.execute("DELETE FROM audit WHERE seq >= 4")  # the chain that is left is still a chain
    with Store(path) as store:
        assert _verify(store).ok
        verdict = _verify(store, (kept.head_seq, kept.head_hash))
        assert verdict.problem is not None and verdict.problem.what == "missing" and verdict.problem.seq == 5
        assert not _verify(store, (3, "0" * 64)).ok  # an entry that is there but not with that hash


def test_a_chain_rehashed_after_a_change_is_caught_by_a_kept_head(tmp_path: Path) -> None:
    """With write access to the file, a changed entry and every hash after it can be recomputed: the chain is
    consistent again, but the head kept elsewhere no longer matches."""
    path = tmp_path / "k.duckdb"
    with _filled(path) as store:
        kept = _verify(store)
    with duckdb.connect(str(path)) as con:
        rows = con.execute("SELECT seq, ts, actor, action, target, detail FROM audit ORDER BY seq").fetchall()
        prev = audit_log.GENESIS
        for seq, ts, actor, action, target, detail in rows:
            actor = "mallory" if seq == 2 else actor
            digest = audit_log.entry_hash(seq, ts, actor, action, target, detail, prev)
            con.execute("UPDATE audit SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?", [actor, prev, digest, seq])
            prev = digest
    with Store(path) as store:
        assert _verify(store).ok  # consistent on its own
        verdict = _verify(store, (kept.head_seq, kept.head_hash))
        assert verdict.problem is not None and (verdict.problem.seq, verdict.problem.what) == (5, "head")


def test_retention_cuts_the_oldest_entries_and_the_chain_goes_on_from_the_anchor(tmp_path: Path) -> None:
    with _filled(tmp_path / "p.duckdb") as store:
        head = _verify(store)
        deleted = _tx(store, lambda con: apply_retention(con, NOW, Retention(days={"audit": 15})))
        assert deleted["audit"] == 3
        assert [r[0] for r in store.query("SELECT seq FROM audit ORDER BY seq")] == [4, 5]
        verdict = _verify(store)
        assert verdict.ok, verdict.problem
        assert verdict.anchor is not None and (verdict.anchor["seq"], verdict.anchor["pruned"]) == (3, 3)
        assert _verify(store, (head.head_seq, head.head_hash)).ok
        # Everything pruned: the next entry still follows the last one that was there.
        _tx(store, lambda con: apply_retention(con, NOW + 30 * DAY_S, Retention(days={"audit": 1})))
        assert store.query("SELECT count(*) FROM audit") == [(0,)]
        _tx(store, lambda con: audit_log.append(con, NOW + 30 * DAY_S, "frank", "maint.add", "MW-2", None))
        assert store.query("SELECT seq FROM audit") == [(6,)]
        assert _verify(store).ok
        # A pruned entry deleted again by hand past the anchor is still seen.
        _tx(store, lambda con: audit_log.append(con, NOW + 30 * DAY_S, "gina", "maint.add", "MW-3", None))
        _tx(store, lambda con: con.execute("DELETE FROM audit WHERE seq = 6"))
        verdict = _verify(store)
        assert verdict.problem is not None and (verdict.problem.seq, verdict.problem.what) == (6, "missing")


def test_an_entry_with_an_older_time_after_a_newer_one_is_not_pruned_out_of_order(tmp_path: Path) -> None:
    """The clock stepped back: retention cuts only a run from the start, so the chain never gets a hole."""
    with Store(tmp_path / "s.duckdb") as store:
        for ts in (NOW - 40 * DAY_S, NOW - 2 * DAY_S, NOW - 50 * DAY_S, NOW - DAY_S):
            _tx(store, lambda con, ts=ts: audit_log.append(con, ts, "noc", "maint.add", "MW-1", None))
        assert _tx(store, lambda con: audit_log.prune(con, NOW - 10 * DAY_S, NOW)) == 1
        assert [r[0] for r in store.query("SELECT seq FROM audit ORDER BY seq")] == [2, 3, 4]
        assert _verify(store).ok


def test_a_database_from_before_the_chain_is_chained_in_the_order_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.duckdb"
    monkeypatch.setattr("ispvm_tui.engine.store.MIGRATIONS", MIGRATIONS[:9])  # the release before the chain
    with Store(path) as old:
        assert old.schema_version() == 9
        for age, *entry in reversed(ENTRIES):  # inserted newest first: the chain follows time, then insertion
            _tx(old, lambda con, age=age, entry=entry: con.execute(
                "INSERT INTO audit VALUES (?, ?, ?, ?, ?)", [NOW - age * DAY_S, *entry]))
        _tx(old, lambda con: con.execute("INSERT INTO audit VALUES (?, 'zed', 'maint.edit', 'MW-1', NULL)",
                                         [NOW - 40 * DAY_S]))
    monkeypatch.undo()
    with Store(path) as store:
        assert store.schema_version() == MIGRATIONS[-1][0]
        rows = store.query("SELECT seq, actor FROM audit ORDER BY seq")
        assert rows == [(1, "alice"), (2, "zed"), (3, "bob"), (4, "carol"), (5, "dave"), (6, "erin")]
        assert _verify(store).ok
        _tx(store, lambda con: audit_log.append(con, NOW, "new", "maint.add", "MW-9", None))
        assert _verify(store).ok and _verify(store).head_seq == 7


def test_reading_the_log_is_bounded_and_filtered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_log, "BATCH", 2)  # verify reads in batches: several of them here
    with _filled(tmp_path / "l.duckdb") as store:
        assert _verify(store).entries == 5
        q = store.query_dicts
        assert [e["seq"] for e in audit_log.list_entries(q, limit=2)] == [5, 4]
        assert [e["actor"] for e in audit_log.list_entries(q, action="incident.")] == ["erin", "carol", "bob"]
        assert [e["seq"] for e in audit_log.list_entries(q, actor="bob")] == [2]
        assert [e["seq"] for e in audit_log.list_entries(q, since=NOW - 15 * DAY_S)] == [5, 4]
    for bad in ({"limit": 0}, {"limit": "5"}, {"actor": ""}, {"since": "yesterday"}):
        with pytest.raises(ValueError):
            audit_log.list_args(bad)
    for bad in ("5", "x:" + "0" * 64, "5:abc", "5:" + "g" * 64):
        with pytest.raises(ValueError):
            audit_log.head_arg(bad)
    assert audit_log.head_arg("5:sha256:" + "A" * 64) == (5, "a" * 64)


def test_audit_commands_through_the_engine_then_off_the_file(tmp_path: Path, address_base: str) -> None:
    from ispvm_tui.demo import start_demo
    from tests.held_faults import held
    from tests.waiting import wait_for

    db = tmp_path / "ispvm.duckdb"
    run = start_demo(held("core-link-cut"), speed=10.0, database=db, address_base=address_base)
    try:
        assert wait_for(lambda: run.engine.snapshot().incidents, 60), "the cut should open an incident"
        short = run.engine.snapshot().incidents[0].id[:8]
        assert ispvm("incidents", "ack", short, "--database", db, "--actor", "oncall-alice").returncode == 0
        assert ispvm("incidents", "note", short, "on", "site", "--database", db, "--actor", "bob").returncode == 0

        listed = ispvm_json("audit", "list", "--database", db)  # the engine holds the file: its socket answers
        assert [(e["actor"], e["action"]) for e in listed[:2]] == [("bob", "incident.note"),
                                                                 ("oncall-alice", "incident.ack")]
        table = ispvm("audit", "list", "--database", db, "--action", "incident.")
        assert table.returncode == 0, table.stderr
        assert table.stdout.splitlines()[0].split() == ["SEQ", "WHEN", "ACTOR", "ACTION", "TARGET", "DETAIL"]
        assert max(len(line) for line in table.stdout.splitlines()) <= 80
        live = ispvm("audit", "verify", "--database", db)
        assert live.returncode == 0, live.stderr
        assert live.stdout.startswith("audit log intact: ")
        head = next(line.split()[1] for line in live.stdout.splitlines() if line.startswith("head: "))
        bad = ispvm("audit", "verify", "--database", db, "--head", "nonsense")
        assert bad.returncode == 2 and "--head" in bad.stderr
    finally:
        run.stop()

    assert ispvm_json("audit", "verify", "--database", db, "--head", head)["ok"]  # off the file now
    ack_seq = next(e["seq"] for e in listed if e["action"] == "incident.ack")
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE audit SET actor = 'someone-else' WHERE seq = ?", [ack_seq])
    tampered = ispvm("audit", "verify", "--database", db)
    assert tampered.returncode == 1
    assert f"audit log TAMPERED: entry {ack_seq} was changed after it was written" in tampered.stdout
    assert "someone-else incident.ack" in tampered.stdout
    verdict = json.loads(ispvm("audit", "verify", "--database", db, "--json").stdout)
    assert verdict["problem"]["seq"] == ack_seq and verdict["problem"]["what"] == "changed"
