"""The audit log: append-only and hash-chained.

Every entry carries a sequence number, the hash of the entry before it and its own hash: SHA-256 over
the canonical JSON of ``[seq, ts, actor, action, target, detail, prev_hash]`` (no spaces, UTF-8; ``ts``
as Python writes a float, which reads back exactly). The first entry's ``prev_hash`` is ``GENESIS``.
Changing, removing or inserting an entry anywhere breaks the chain from there on, which ``verify``
finds and names.

Entries are only ever appended (``append``, in the caller's transaction, so the entry commits with the
action it records) and only ever deleted by retention, oldest first (``prune``), which keeps the last
pruned entry's sequence number and hash in ``audit_anchor``: the remaining chain is then checked from
that anchor. What a chain cannot show by itself is its newest entries cut off; ``verify`` prints the head
(sequence number and hash) so it can be kept elsewhere, and ``expect_head`` checks one kept earlier.

Writers: the engine's store writer thread, or one CLI process holding the database when no engine runs,
so two appends never race for a sequence number (``seq`` is the primary key besides).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import duckdb

GENESIS = "0" * 64
BATCH = 5_000  # rows read per query while verifying: memory stays flat whatever the log's length

QueryDicts = Callable[[str, list[Any]], list[dict[str, Any]]]


def entry_hash(seq: int, ts: float, actor: str, action: str, target: str | None, detail: str | None,
               prev_hash: str) -> str:
    body = json.dumps([seq, float(ts), actor, action, target, detail, prev_hash], ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def append(con: duckdb.DuckDBPyConnection, ts: float, actor: str, action: str, target: str | None,
           detail: str | None) -> int:
    """Add one entry after the newest (or after the anchor when retention pruned them all); its seq."""
    last = con.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    if last is None:
        last = con.execute("SELECT seq, hash FROM audit_anchor ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (last[0] + 1, last[1]) if last is not None else (1, GENESIS)
    con.execute("INSERT INTO audit (ts, actor, action, target, detail, seq, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [ts, actor, action, target, detail, seq, prev, entry_hash(seq, ts, actor, action, target, detail,
                                                                          prev)])
    return seq


def prune(con: duckdb.DuckDBPyConnection, cutoff: float, now: float) -> int:
    """Delete the oldest entries written before ``cutoff``: the longest run from the start of the chain
    (an entry with a clock-skewed older time after a newer one stays, as does everything after it), and
    keep the last deleted entry as the anchor the rest is checked from. Entries deleted."""
    (keep_from,) = con.execute("SELECT min(seq) FROM audit WHERE ts >= ?", [cutoff]).fetchone()
    where, args = ("seq < ?", [keep_from]) if keep_from is not None else ("true", [])
    last = con.execute(f"SELECT seq, hash, count(*) OVER () FROM audit WHERE {where} ORDER BY seq DESC LIMIT 1",
                       args).fetchone()
    if last is None:
        return 0
    seq, hash_, count = last
    con.execute("INSERT INTO audit_anchor VALUES (?, ?, ?, ?)", [seq, hash_, now, count])
    con.execute(f"DELETE FROM audit WHERE {where}", args)
    return int(count)


@dataclass(frozen=True)
class Problem:
    seq: int
    what: str  # "changed" | "missing" | "relinked" | "head"
    message: str
    entry: dict[str, Any] | None = None


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    first_seq: int | None
    head_seq: int | None
    head_hash: str | None
    anchor: dict[str, Any] | None  # the last prune: {"seq", "hash", "pruned_at", "pruned"}
    problem: Problem | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rows(query: QueryDicts) -> Iterator[dict[str, Any]]:
    after = -1
    while True:
        batch = query("SELECT seq, ts, actor, action, target, detail, prev_hash, hash FROM audit "
                      "WHERE seq > ? ORDER BY seq LIMIT ?", [after, BATCH])
        yield from batch
        if len(batch) < BATCH:
            return
        after = batch[-1]["seq"]


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("seq", "ts", "actor", "action", "target", "detail")}


def verify(query: QueryDicts, expect_head: tuple[int, str] | None = None) -> Verdict:
    """Walk the chain from its anchor (or from the first entry) and name the first entry that is not what
    was written: changed (its hash is not its content's), relinked (it does not follow the entry before
    it: that one was changed or replaced), or missing (a gap in the sequence). With ``expect_head``, a
    head kept earlier must still be in the chain with that hash."""
    anchors = query("SELECT seq, hash, pruned_at, pruned FROM audit_anchor ORDER BY seq DESC LIMIT 1", [])
    anchor = anchors[0] if anchors else None
    want_seq, want_prev = (anchor["seq"] + 1, anchor["hash"]) if anchor else (1, GENESIS)
    first = head = None
    head_hash = None
    count = 0
    problem: Problem | None = None
    kept_seen = False
    for row in _rows(query):
        count += 1
        first = row["seq"] if first is None else first
        if problem is None:
            problem = _check(row, want_seq, want_prev)
        if expect_head is not None and row["seq"] == expect_head[0]:
            kept_seen = True
            if row["hash"] != expect_head[1] and problem is None:
                problem = Problem(row["seq"], "head", f"entry {row['seq']} is not the one recorded as the head: "
                                  f"its hash is {row['hash'][:16]}…, {expect_head[1][:16]}… was kept",
                                  _public(row))
        want_seq, want_prev = row["seq"] + 1, row["hash"]
        head, head_hash = row["seq"], row["hash"]
    if problem is None and expect_head is not None and not kept_seen:
        seq = expect_head[0]
        if head is None or seq > head:
            problem = Problem(seq, "missing", f"entry {seq}, recorded as the head, is gone: the log ends at "
                              f"{head if head is not None else 'nothing'} (entries were cut from the end)")
        elif anchor is None or seq != anchor["seq"] or expect_head[1] != anchor["hash"]:
            problem = Problem(seq, "missing", f"entry {seq}, recorded as the head, is no longer in the log "
                              "(pruned by retention, or removed)")
    return Verdict(problem is None, count, first, head, head_hash, anchor, problem)


def _check(row: dict[str, Any], want_seq: int, want_prev: str) -> Problem | None:
    seq = row["seq"]
    if seq != want_seq:
        gone = f"entry {want_seq}" if seq == want_seq + 1 else f"entries {want_seq}-{seq - 1}"
        return Problem(want_seq, "missing", f"{gone} missing: the next entry is {seq}", _public(row))
    if row["prev_hash"] != want_prev:
        return Problem(seq, "relinked", f"entry {seq} does not follow the entry before it (that one was "
                       "changed, replaced or removed)", _public(row))
    if entry_hash(seq, row["ts"], row["actor"], row["action"], row["target"], row["detail"],
                  row["prev_hash"]) != row["hash"]:
        return Problem(seq, "changed", f"entry {seq} was changed after it was written", _public(row))
    return None


def list_entries(query: QueryDicts, *, limit: int = 50, actor: str | None = None, action: str | None = None,
                 since: float | None = None) -> list[dict[str, Any]]:
    """The newest entries first; ``action`` matches a prefix (``maint.`` for every maintenance action)."""
    where, args = [], []
    if actor is not None:
        where.append("actor = ?")
        args.append(actor)
    if action is not None:
        where.append("starts_with(action, ?)")
        args.append(action)
    if since is not None:
        where.append("ts >= ?")
        args.append(since)
    sql = "SELECT seq, ts, actor, action, target, detail, hash FROM audit"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return query(sql + " ORDER BY seq DESC LIMIT ?", [*args, limit])


def list_args(args: dict[str, Any]) -> dict[str, Any]:
    """The control socket's (and the CLI's) arguments for ``list_entries``, checked."""
    limit = args.get("limit", 50)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10_000:
        raise ValueError("limit: an integer from 1 to 10000")
    out: dict[str, Any] = {"limit": limit}
    for key in ("actor", "action"):
        value = args.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"{key}: a non-empty string or null")
        out[key] = value
    since = args.get("since")
    if since is not None and (not isinstance(since, int | float) or isinstance(since, bool)):
        raise ValueError("since: a Unix time or null")
    out["since"] = since
    return out


def head_arg(value: Any) -> tuple[int, str] | None:
    """``SEQ:HASH`` (as ``verify`` prints the head) or null."""
    if value is None:
        return None
    seq, sep, hash_ = value.partition(":") if isinstance(value, str) else ("", "", "")
    hash_ = hash_.removeprefix("sha256:").lower()
    if not sep or not seq.isdigit() or len(hash_) != 64 or any(c not in "0123456789abcdef" for c in hash_):
        raise ValueError("head: SEQ:HASH as `ispvm audit verify` prints it (e.g. 1234:9f2c…, 64 hex digits)")
    return int(seq), hash_


# ---- migration 10: the log gains its chain ----------------------------------------------------------------
def chain_existing(con: duckdb.DuckDBPyConnection) -> None:
    """Rebuild ``audit`` with seq / prev_hash / hash, chaining the entries already there in the order they
    were written (time, then insertion). Part of schema migration 10; runs inside its transaction."""
    rows = con.execute("SELECT ts, actor, action, target, detail FROM audit ORDER BY ts, rowid").fetchall()
    con.execute("""
        CREATE TABLE audit_chained (
            ts DOUBLE NOT NULL, actor VARCHAR NOT NULL, action VARCHAR NOT NULL, target VARCHAR, detail VARCHAR,
            seq BIGINT PRIMARY KEY, prev_hash VARCHAR NOT NULL, hash VARCHAR NOT NULL)""")
    columns: list[list[Any]] = [[] for _ in range(8)]
    prev = GENESIS
    for seq, (ts, actor, action, target, detail) in enumerate(rows, start=1):
        digest = entry_hash(seq, ts, actor, action, target, detail, prev)
        for column, value in zip(columns, (ts, actor, action, target, detail, seq, prev, digest), strict=True):
            column.append(value)
        prev = digest
    if rows:
        con.execute("INSERT INTO audit_chained SELECT unnest(?::DOUBLE[]), unnest(?::VARCHAR[]), "
                    "unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::BIGINT[]), "
                    "unnest(?::VARCHAR[]), unnest(?::VARCHAR[])", columns)
    con.execute("DROP TABLE audit")
    con.execute("ALTER TABLE audit_chained RENAME TO audit")
    con.execute("CREATE TABLE audit_anchor (seq BIGINT NOT NULL, hash VARCHAR NOT NULL, pruned_at DOUBLE NOT NULL, "
                "pruned BIGINT NOT NULL)")
