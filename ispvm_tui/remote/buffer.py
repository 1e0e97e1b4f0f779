"""The collector's store-and-forward file: every poll message waits here until JetStream has it.

SQLite (the standard library's), not DuckDB or a JetStream leaf node: it is one small table of
(subject, message id, payload) appended to and deleted from in order, which SQLite's WAL does in
microseconds, from any process, with no server to run at the PoP. Every message is written here
first and deleted once the stream acknowledged it, so one path keeps the order, and a collector
restarted during a WAN cut still sends what it polled before. At about 17 polls a second (1,000
devices every 60 s) that costs well under 1 % of a core.

Bounded: past ``max_polls`` the oldest messages are dropped, counted, and logged as a warning.

A message the stream can never take (over the server's max_payload, a subject this collector may not
publish to, or one that failed ``MAX_ATTEMPTS`` times while others got through) moves to the
``dead`` table, counted and logged once per reason, so the rest of the queue moves on; it is kept
(bounded like the queue) for an operator to look at, never sent again.
The file also keeps the last configuration the centre sent, so a collector restarted while the
centre is out of reach goes on polling what it was told to.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from ispvm_tui.fileperms import create_private_file, make_private_dir

log = logging.getLogger(__name__)


MAX_ATTEMPTS = 5  # failures of one message while others were accepted: it is the message, not the link


class Buffer:
    def __init__(self, path: Path, max_polls: int) -> None:
        self.path = path
        self.max_polls = max_polls
        make_private_dir(path.parent)
        create_private_file(path)  # 0600 before SQLite writes anything into it
        self._con = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")  # durable across a crash of the process, not the OS
        self._con.execute("CREATE TABLE IF NOT EXISTS polls (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                          "subject TEXT NOT NULL, msg_id TEXT NOT NULL, payload BLOB NOT NULL)")
        columns = {row[1] for row in self._con.execute("PRAGMA table_info(polls)")}
        if "attempts" not in columns:  # a buffer file from before dead-lettering
            self._con.execute("ALTER TABLE polls ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
        if "queued_at" not in columns:
            self._con.execute("ALTER TABLE polls ADD COLUMN queued_at REAL")
        self._con.execute("CREATE TABLE IF NOT EXISTS dead (seq INTEGER PRIMARY KEY AUTOINCREMENT, subject TEXT, "
                          "msg_id TEXT, payload BLOB, reason TEXT NOT NULL, at REAL NOT NULL)")
        self._con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB)")
        self._lock = threading.Lock()
        self.count = self._con.execute("SELECT count(*) FROM polls").fetchone()[0]
        self.dead = self._con.execute("SELECT count(*) FROM dead").fetchone()[0]  # kept in the file
        self.dead_now = 0  # dead-lettered since this process started
        self._dead_reasons: set[str] = set()
        self.dropped = 0
        self.pushed = 0

    def push(self, subject: str, msg_id: str, payload: bytes, queued_at: float | None = None) -> None:
        with self._lock:
            self._con.execute("INSERT INTO polls (subject, msg_id, payload, queued_at) VALUES (?, ?, ?, ?)",
                              (subject, msg_id, payload, queued_at))
            self.count += 1
            self.pushed += 1
            over = self.count - self.max_polls
            if over > 0:
                self._con.execute("DELETE FROM polls WHERE seq IN (SELECT seq FROM polls ORDER BY seq LIMIT ?)",
                                  (over,))
                self.count -= over
                self.dropped += over
                # Every drop is counted; the log says so at the first and then every 1,000th.
                if self.dropped == over or self.dropped % 1000 < over:
                    log.warning("local buffer full (%d polls): dropped the oldest, %d dropped so far",
                                self.max_polls, self.dropped)

    def peek(self, limit: int) -> list[tuple[int, str, str, bytes, float | None]]:
        """The oldest ``limit`` messages: (seq, subject, msg_id, payload, queued_at)."""
        with self._lock:
            return self._con.execute("SELECT seq, subject, msg_id, payload, queued_at FROM polls ORDER BY seq "
                                     "LIMIT ?", (limit,)).fetchall()

    def failed(self, seq: int) -> int:
        """One more failed attempt at this message; how many it has had."""
        with self._lock:
            row = self._con.execute("UPDATE polls SET attempts = attempts + 1 WHERE seq = ? RETURNING attempts",
                                    (seq,)).fetchone()
        return row[0] if row else 0

    def dead_letter(self, seq: int, reason: str, at: float) -> None:
        """Out of the queue, into ``dead``: never sent again."""
        with self._lock:
            self._con.execute("BEGIN")
            moved = self._con.execute("INSERT INTO dead (subject, msg_id, payload, reason, at) SELECT subject, "
                                      "msg_id, payload, ?, ? FROM polls WHERE seq = ?", (reason, at, seq)).rowcount
            self._con.execute("DELETE FROM polls WHERE seq = ?", (seq,))
            self._trim_dead()
            self._con.execute("COMMIT")
            self.count = max(0, self.count - moved)
            self._counted_dead(moved, reason)

    def refuse(self, subject: str, msg_id: str, payload: bytes, reason: str, at: float) -> None:
        """A message that can never be sent, straight into ``dead``."""
        with self._lock:
            self._con.execute("INSERT INTO dead (subject, msg_id, payload, reason, at) VALUES (?, ?, ?, ?, ?)",
                              (subject, msg_id, payload, reason, at))
            self._trim_dead()
            self._counted_dead(1, reason)

    def _trim_dead(self) -> None:
        over = self._con.execute("SELECT count(*) FROM dead").fetchone()[0] - self.max_polls
        if over > 0:
            self._con.execute("DELETE FROM dead WHERE seq IN (SELECT seq FROM dead ORDER BY seq LIMIT ?)", (over,))

    def _counted_dead(self, n: int, reason: str) -> None:
        if not n:
            return
        self.dead += n
        self.dead_now += n
        kind = reason.split(":", 1)[0]
        if kind not in self._dead_reasons:  # once per kind of reason; every one is counted
            self._dead_reasons.add(kind)
            log.error("a poll message can never be sent (%s): kept in the buffer's dead table, not retried; "
                      "%d dead so far", reason, self.dead)

    def delete(self, seqs: list[int]) -> None:
        if not seqs:
            return
        with self._lock:
            cur = self._con.executemany("DELETE FROM polls WHERE seq = ?", [(s,) for s in seqs])
            self.count = max(0, self.count - max(cur.rowcount, 0))

    def get_meta(self, key: str) -> bytes | None:
        with self._lock:
            row = self._con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: bytes) -> None:
        with self._lock:
            self._con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def close(self) -> None:
        with self._lock:
            self._con.close()
