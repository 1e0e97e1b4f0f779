"""The embedded DuckDB store: one file, one writer thread, batched writes.

DuckDB allows one read-write process per file, and inside a process one
connection with a cursor per thread. All writes go through a single writer
thread: sample rows are buffered and flushed in one transaction every
``flush_s`` or ``batch_rows``; ``transaction(fn)`` jobs (an incident change
and its outbox rows) run one per transaction, in submission order, so a
notification is durable exactly when the change that caused it is.
Reads use per-thread cursors and never wait for the writer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from ispvm_tui.engine.arrow_batches import ArrowBatches
from ispvm_tui.engine.schema import MIGRATIONS
from ispvm_tui.fileperms import PRIVATE_FILE, loose_mode_warning, make_private_dir, restrict_umask

log = logging.getLogger(__name__)
T = TypeVar("T")

ROWS_PER_INSERT = 400  # multi-row VALUES: the fallback for rows Arrow cannot take, and for one-by-one retries
MAX_PENDING_ROWS = 200_000  # per table, while its writes keep failing


# Failures of the database itself (disk, memory, locks): worth keeping the rows and trying again.
_TRANSIENT = (duckdb.IOException, duckdb.OutOfMemoryException, duckdb.TransactionException)


class StoreError(Exception):
    """A database problem with a message meant for the operator."""


class StoreLocked(StoreError):
    pass


@dataclass
class _Job:
    fn: Callable[[duckdb.DuckDBPyConnection], Any]
    future: Future[Any]
    samples_first: bool = False  # fail unless every sample row queued before it has been committed
    in_transaction: bool = True  # False: run as it is (a CHECKPOINT cannot run inside a transaction)


_STOP = object()


# DuckDB's own buffers (see _open). Its buffer pool fills up to the limit over hours of samples, and RSS with it:
# bench/store_memory.py, 1,000 routers x 24 interfaces x 2 collectors, 30 minutes of samples and their rollups:
# peak anonymous RSS 152 MB at 192MB, 148 at 128MB, 129 at 96MB, 103 at 64MB (ingest 0.4-0.6 s of the writer
# per minute of samples and rollup rounds under 1 s at each); at 32MB an insert ran out of memory.
MEMORY_LIMIT = "64MB"


def _open(path: Path) -> duckdb.DuckDBPyConnection:
    # DuckDB creates the file, its WAL and spill files itself, without a mode: the umask decides.
    restrict_umask()
    try:
        make_private_dir(path.parent)
    except OSError as exc:
        raise StoreError(f"cannot create the directory for database {path}: {exc}") from None
    existed = path.exists()
    try:
        con = duckdb.connect(str(path))
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            pid = re.search(r"PID (\d+)", text)
            holder = f"process {pid.group(1)}" if pid else "another process"
            raise StoreLocked(
                f"database {path} is in use by {holder} (another ispvm?). DuckDB allows one writer per file: "
                f"stop that process, or point [ispvm].database at another file."
            ) from None
        raise StoreError(f"cannot open database {path}: {text}") from None
    except duckdb.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from None
    if not existed and path.exists():
        os.chmod(path, PRIVATE_FILE)
    # DuckDB's default limit is 80 % of the machine's memory, and its buffer manager keeps the blocks it has
    # read or written cached up to it: an engine writing samples all day would grow towards that. Past the
    # limit DuckDB evicts clean blocks and spills big queries to its temp directory instead.
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    return con


def permission_warnings(path: Path) -> list[str]:
    """The database file and its WAL, when either is open to others (they are left as they are)."""
    holds = "topology, incidents and webhook payloads"
    found = (loose_mode_warning(p, holds) for p in (path, path.with_name(path.name + ".wal")))
    return [w for w in found if w]


class Store:
    def __init__(self, path: str | Path, *, flush_s: float = 1.0, batch_rows: int = 5000) -> None:
        self.path = Path(path)
        self._con = _open(self.path)
        self.permission_warnings = permission_warnings(self.path)
        for warning in self.permission_warnings:
            log.warning("%s", warning)
        self._flush_s = flush_s
        self._batch_rows = batch_rows
        self._queue: queue.Queue[Any] = queue.Queue()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursors_lock = threading.Lock()
        # Reads in flight: close() waits for them, so a read a cancelled task left running in a thread
        # (asyncio.to_thread cannot stop it) finishes before the connection goes away.
        self._reads = 0
        self._reads_idle = threading.Condition()
        self.rows_written = 0
        self.rows_dropped = 0
        self.flushes = 0
        self.last_error: str | None = None
        self.migrate()
        self._arrow = ArrowBatches(self._con)
        self._writer = threading.Thread(target=self._run, name="ispvm-store-writer", daemon=True)
        self._closed = False
        self._writer.start()

    # ---- schema -------------------------------------------------------
    def migrate(self) -> int:
        con = self._con
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, description VARCHAR, applied_at DOUBLE)"
        )
        done = {r[0] for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
        for version, description, sql in MIGRATIONS:
            if version in done:
                continue
            con.execute("BEGIN TRANSACTION")
            try:
                if callable(sql):
                    sql(con)
                else:
                    con.execute(sql)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, description, time.time()])
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
            log.info("applied migration %d: %s", version, description)
        return max((m[0] for m in MIGRATIONS), default=0)

    def schema_version(self) -> int:
        return self.query("SELECT max(version) FROM schema_migrations")[0][0]

    # ---- writes -------------------------------------------------------
    def append(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Queue sample rows; they reach disk within flush_s, in one transaction per flush."""
        if rows:
            self._queue.put((table, list(rows)))

    def append_many(self, batches: Sequence[tuple[str, Sequence[tuple[Any, ...]]]]) -> None:
        """``append`` for several tables at once (one poll's rows): one item on the queue, so the writer thread
        wakes once per poll instead of once per table, each wake taking the interpreter lock from the loop."""
        queued = [(table, list(rows)) for table, rows in batches if rows]
        if queued:
            self._queue.put(queued)

    def transaction(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> Future[T]:
        """Run ``fn(con)`` in its own transaction on the writer thread."""
        fut: Future[T] = Future()
        if self._closed:
            fut.set_exception(StoreError("store is closed"))
            return fut
        if not self._writer.is_alive():  # never leave a caller waiting on a writer that is gone
            fut.set_exception(StoreError(f"the database writer stopped: {self.last_error or 'unknown error'}"))
            return fut
        self._queue.put(_Job(fn, fut))
        return fut

    def exclusive(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> Future[T]:
        """Run ``fn(con)`` on the writer thread outside any transaction, once the samples queued before it are
        written: nothing else writes meanwhile (a consistent copy of the file: engine/backup.py)."""
        fut: Future[T] = Future()
        if self._closed or not self._writer.is_alive():
            fut.set_exception(StoreError(f"the database writer stopped: {self.last_error or 'store is closed'}"))
            return fut
        self._queue.put(_Job(fn, fut, in_transaction=False))
        return fut

    def samples_committed(self) -> Future[None]:
        """Done once every sample row queued so far is committed; failed (StoreError) if some of them
        could not be written yet (they stay queued and are retried). What a consumer acknowledging a
        message only after its rows are stored waits on."""
        fut: Future[None] = Future()
        if self._closed or not self._writer.is_alive():
            fut.set_exception(StoreError(f"the database writer stopped: {self.last_error or 'store is closed'}"))
            return fut
        self._queue.put(_Job(lambda con: None, fut, samples_first=True))
        return fut

    @property
    def writer_alive(self) -> bool:
        """False once the writer thread is gone (or the store closed): nothing queued will be written."""
        return not self._closed and self._writer.is_alive()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything queued so far is on disk."""
        self.transaction(lambda con: None).result(timeout)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported; transaction() fails fast from now on
            self.last_error = f"writer stopped: {type(exc).__name__}: {exc}"
            log.critical("database %s", self.last_error)
            self._fail_queued(exc)

    def _fail_queued(self, exc: BaseException) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Job) and item.future.set_running_or_notify_cancel():
                item.future.set_exception(StoreError(f"the database writer stopped: {exc}"))

    def _loop(self) -> None:
        buffers: dict[str, list[tuple[Any, ...]]] = {}
        pending = 0
        deadline = time.monotonic() + self._flush_s
        while True:
            timeout = max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._flush_samples(buffers)
                return
            if isinstance(item, tuple):
                item = [item]
            if isinstance(item, list):
                for table, rows in item:
                    buffers.setdefault(table, []).extend(rows)
                    pending += len(rows)
            elif isinstance(item, _Job):
                # Samples queued before a job are written before it: readers see a consistent order.
                self._flush_samples(buffers)
                pending = 0
                if item.samples_first and any(buffers.values()):
                    if item.future.set_running_or_notify_cancel():
                        item.future.set_exception(StoreError(f"samples not written yet: {self.last_error}"))
                    continue
                self._run_job(item)
            if pending >= self._batch_rows or time.monotonic() >= deadline:
                self._flush_samples(buffers)
                pending = 0
                deadline = time.monotonic() + self._flush_s

    def _run_job(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            if job.in_transaction:
                self._con.execute("BEGIN TRANSACTION")
            result = job.fn(self._con)
            if job.in_transaction:
                self._con.execute("COMMIT")
        except BaseException as exc:  # the caller gets the error; the writer lives on
            if job.in_transaction:
                with contextlib.suppress(duckdb.Error):
                    self._con.execute("ROLLBACK")
            self.last_error = str(exc)
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    def _flush_samples(self, buffers: dict[str, list[tuple[Any, ...]]]) -> None:
        """One transaction per table: a table that cannot be written never blocks the others."""
        for table in [t for t, rows in buffers.items() if rows]:
            rows = buffers[table]
            try:
                self._insert(table, rows)
            except Exception as exc:  # a bad row must not kill the writer: every later write would wait on it
                with contextlib.suppress(duckdb.Error):
                    self._con.execute("ROLLBACK")
                self.last_error = f"writing {table} failed: {type(exc).__name__}: {exc}"
                log.error("%s", self.last_error)
                if not isinstance(exc, _TRANSIENT):
                    # The rows themselves are at fault and would fail forever: write the good ones, drop
                    # and count the rest, so one poison row never holds its table back.
                    self._insert_one_by_one(table, rows)
                    continue
                # Keep the rows for the next flush, but bounded: a table that keeps failing must not
                # grow memory without end. The oldest rows go first; the loss is counted.
                if len(rows) > MAX_PENDING_ROWS:
                    self.rows_dropped += len(rows) - MAX_PENDING_ROWS
                    del rows[: len(rows) - MAX_PENDING_ROWS]
                continue
            self.rows_written += len(rows)
            self.flushes += 1
            rows.clear()

    def _insert(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """A batch through Arrow: columns handed to DuckDB as one table (measured ~250k rows/s against ~3k/s
        for parameterised VALUES, whose per-value binding also held the GIL the poller needs)."""
        batch = self._arrow.batch(table, rows)
        if batch is None:
            self._insert_values(table, rows)
            return
        name = f"_ingest_{table}"
        self._con.register(name, batch)
        try:
            self._con.execute("BEGIN TRANSACTION")
            self._con.execute(f"INSERT INTO {table} SELECT * FROM {name}")
            self._con.execute("COMMIT")
        finally:
            self._con.unregister(name)

    def _insert_values(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        self._con.execute("BEGIN TRANSACTION")
        for start in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[start:start + ROWS_PER_INSERT]
            width = len(chunk[0])
            values = ",".join(["(" + ",".join(["?"] * width) + ")"] * len(chunk))
            self._con.execute(f"INSERT INTO {table} VALUES {values}", [v for row in chunk for v in row])
        self._con.execute("COMMIT")

    def _insert_one_by_one(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            try:
                self._insert_values(table, [row])
            except Exception:
                with contextlib.suppress(duckdb.Error):
                    self._con.execute("ROLLBACK")
                self.rows_dropped += 1
            else:
                self.rows_written += 1
        self.flushes += 1
        rows.clear()

    # ---- reads --------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cursor = cur
            with self._cursors_lock:
                self._cursors.append(cur)
        return cur

    @contextlib.contextmanager
    def _reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._reads_idle:
            self._reads += 1
        try:
            yield self._cursor()
        finally:
            with self._reads_idle:
                self._reads -= 1
                self._reads_idle.notify_all()

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._reading() as cur:
            return cur.execute(sql, params or []).fetchall()

    def query_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        with self._reading() as cur:
            cur.execute(sql, params or [])
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    # ---- lifecycle ----------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._writer.join(timeout=30)
        with self._reads_idle:
            self._reads_idle.wait_for(lambda: self._reads == 0, timeout=30)
        with self._cursors_lock:
            for cur in self._cursors:
                with contextlib.suppress(duckdb.Error):
                    cur.close()
        with contextlib.suppress(duckdb.Error):
            self._con.execute("CHECKPOINT")
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
