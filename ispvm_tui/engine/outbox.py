"""The durable outbox and its delivery loop, for every kind of target.

Rows are written in the same transaction as the incident change (see
engine/core.py), so nothing is sent that was not stored and nothing stored is
forgotten across a crash. The dispatcher delivers through ``Target`` objects
(engine/targets.py; the webhook is engine/webhook_target.py):

* Order: only the oldest pending row of each (target, incident) is ever due,
  and it stays "in flight" until its outcome is committed, so one incident's
  events reach a target one after another, in ``sequence`` order. A dead row
  does not block: later events of its incident go on, and the dead one stays
  visible until resent. A resend of an event some later event of its incident
  already overtook is sent with ``superseded = true``.
* Retries: exponential backoff with full jitter (webhooks.backoff_s, capped at
  10 minutes) or the receiver's Retry-After (bounded to an hour); a row is
  dead-lettered when an attempt fails permanently, or fails once the row has
  been queued ``max_age_s`` (its last retry is scheduled at that age), or has
  used ``max_attempts`` when that is not 0 (no count limit).
* Circuit breaker per target: ``BREAKER_FAILURES`` failed attempts in a row
  open it; its queue then waits (nothing is attempted, nothing is dropped)
  and one event probes it after a cool-down (30 s, doubling to 10 minutes).
  A probe that succeeds closes it and makes the target's whole queue due at
  once; one that fails opens it again. Other targets are unaffected.
* Throughput: up to ``concurrency`` attempts in flight per target; outcomes
  are written in batches (one transaction for all that finished meanwhile).

Every attempt is one ``deliveries`` row (time, HTTP status, outcome, error,
latency); breaker changes are kept in ``webhook_endpoints`` for the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import duckdb
import httpx

from ispvm_tui.clock import Clock
from ispvm_tui.engine import api, audit_log, http_pool, webhooks
from ispvm_tui.engine.store import Store
from ispvm_tui.engine.targets import Notice, Refs, Target

log = logging.getLogger(__name__)

CONCURRENCY = 16  # attempts in flight per target
BREAKER_FAILURES = 5  # failed attempts in a row that pause a target
BREAKER_COOLDOWN_S = 30.0  # first pause before a probe; doubles per failed probe
BREAKER_COOLDOWN_MAX_S = webhooks.BACKOFF_CAP_S
# Due heads fetched per target per round beyond what can start at once. They wait in memory and start the
# moment an attempt of that target finishes, so a busy queue is not paced by query and commit round trips
# (measured: ~40 ms per round, which capped one target at ~280 deliveries/s whatever the receiver could take).
READY_MAX = 512
REQUERY_S = 1.0  # a due-rows query at least this often (real seconds) while heads wait in memory
POOL_SLOTS = 4  # attempts in flight per HTTP connection pool

# Heads: the oldest pending row per (target, incident); of those, the due ones, numbered per target so one
# busy target cannot fill a round. One scan of the pending rows.
DUE_SQL = """
WITH heads AS (
    SELECT event_id, seq, endpoint, incident_id, event_type, incident, created_at, attempts, sequence, superseded,
           queued_at, next_attempt_at,
           row_number() OVER (PARTITION BY endpoint, incident_id ORDER BY seq) AS rn
    FROM outbox WHERE status = 'pending'),
due AS (
    SELECT *, row_number() OVER (PARTITION BY endpoint ORDER BY seq) AS k FROM heads
    WHERE rn = 1 AND (next_attempt_at <= ? OR list_contains(?::VARCHAR[], endpoint)))
SELECT event_id, seq, endpoint, incident_id, event_type, incident, created_at, attempts, sequence, superseded,
       queued_at, next_attempt_at
FROM due WHERE k <= ? ORDER BY seq
"""

DeliveryStatus = str  # delivered | retry | dead


class _Named(Protocol):
    name: str
    events: frozenset[str]


def enqueue(con: duckdb.DuckDBPyConnection, targets: Iterable[_Named], incident_id: str,
            event_type: str, incident: dict[str, Any], now: float, *,
            routed: Callable[[str], bool] | None = None, only_new: bool = False) -> int:
    """Insert one outbox row per subscribed target; call inside the incident's transaction.

    ``routed(name)`` says whether the target's route takes the incident as it is now; a target that
    already has an event of this incident gets the rest whatever its route says (a ticket opened in
    office hours is closed at night too). ``only_new``: only targets that have none yet (escalation).
    Two statements whatever the number of targets: DuckDB costs ~1.7 ms of CPU per statement here, and
    this runs on the writer thread for every incident change.
    """
    names = [t.name for t in targets if event_type in t.events]
    if not names:
        return 0
    last = dict(con.execute("SELECT endpoint, max(sequence) FROM outbox WHERE incident_id = ? "
                            "AND list_contains(?::VARCHAR[], endpoint) GROUP BY endpoint",
                            [incident_id, names]).fetchall())
    if only_new:
        names = [n for n in names if n not in last]
    if routed is not None:
        names = [n for n in names if n in last or routed(n)]
    if not names:
        return 0
    body = json.dumps(incident)
    rows = [[str(uuid.uuid4()), name, incident_id, event_type, body, now, now, (last.get(name) or 0) + 1, now]
            for name in names]
    con.execute(
        "INSERT INTO outbox (event_id, endpoint, incident_id, event_type, incident, created_at, next_attempt_at,"
        " sequence, queued_at) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(rows)),
        [v for row in rows for v in row])
    return len(rows)


@dataclass(frozen=True)
class DeliveryResult:
    event_id: str
    endpoint: str
    event_type: str
    incident_id: str
    status: str  # delivered | retry | dead
    attempts: int
    error: str | None


@dataclass
class Breaker:
    """One target's circuit: closed (normal), open (paused until ``probe_at``), half-open (one probe out)."""

    state: str = "closed"
    failures: int = 0  # failed attempts in a row
    opened_at: float | None = None
    probe_at: float | None = None
    cooldown_s: float = BREAKER_COOLDOWN_S
    last_error: str | None = None

    def quota(self, now: float, in_flight: int, concurrency: int) -> int:
        if self.state == "closed":
            return max(0, concurrency - in_flight)
        if self.state == "open" and self.probe_at is not None and now >= self.probe_at and in_flight == 0:
            return 1
        return 0

    def failed(self, now: float, error: str | None) -> bool:
        """Record a failed attempt; True when the state changed."""
        self.failures += 1
        self.last_error = error
        if self.state == "half-open":
            self.cooldown_s = min(BREAKER_COOLDOWN_MAX_S, self.cooldown_s * 2)
        elif self.state != "closed" or self.failures < BREAKER_FAILURES:
            return False
        self.state, self.opened_at, self.probe_at = "open", self.opened_at or now, now + self.cooldown_s
        return True

    def succeeded(self) -> bool:
        changed = self.state != "closed"
        self.state, self.failures, self.opened_at, self.probe_at = "closed", 0, None, None
        self.cooldown_s = BREAKER_COOLDOWN_S
        self.last_error = None
        return changed


@dataclass
class _Outcome:
    row: dict[str, Any]
    outcome: webhooks.AttemptOutcome
    status: DeliveryStatus
    attempts: int
    now: float
    next_at: float | None
    error: str | None


@dataclass
class _Pending:
    outcomes: list[_Outcome] = field(default_factory=list)
    breakers: set[str] = field(default_factory=set)  # targets whose breaker changed
    resume: set[str] = field(default_factory=set)  # targets whose queue becomes due at once (breaker closed)


class OutboxDispatcher:
    def __init__(self, store: Store, targets: dict[str, Target], clock: Clock, refs: Refs, *,
                 on_result: Callable[[DeliveryResult], None] | None = None, rng: random.Random | None = None,
                 concurrency: int = CONCURRENCY) -> None:
        self.store = store
        self.targets = dict(targets)
        self.clock = clock
        self.refs = refs
        self.on_result = on_result
        self.concurrency = max(1, concurrency)
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._clients: list[httpx.AsyncClient] = []
        self._next_client = 0
        self.breakers: dict[str, Breaker] = {name: Breaker() for name in self.targets}
        self._in_flight: dict[str, int] = {name: 0 for name in self.targets}  # target -> attempts out
        self._busy: set[str] = set()  # event ids sent or waiting for their outcome's commit
        self._busy_keys: set[tuple[str, str]] = set()  # (target, incident) with an event in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = _Pending()
        self._pending_ready = asyncio.Event()
        self._to_release: list[dict[str, Any]] = []
        self._ready: dict[str, deque[dict[str, Any]]] = {}  # target -> due heads not started yet (this round's)
        self._queried_at = float("-inf")  # monotonic time of the last due-rows query
        self.delivered = 0  # attempts that delivered, since start (the bench reads it)

    def wake(self) -> None:
        self._wake.set()

    def breaker_states(self) -> dict[str, Breaker]:
        """Each target's circuit as it is now (copies; any thread)."""
        return {name: Breaker(**vars(b)) for name, b in self.breakers.items()}

    async def run(self, poll_real_s: float = 1.0) -> None:
        # Several small pools instead of one: httpcore scans every pooled connection for every queued request,
        # so one pool's CPU per request grows with the attempts in flight (measured, one receiver: 4 in flight
        # 1.0 ms per POST, 16 in flight 2.1 ms).
        self._clients = [http_pool.async_client(keepalive=POOL_SLOTS * 2)
                         for _ in range(-(-self.concurrency * max(1, len(self.targets)) // POOL_SLOTS))]
        flusher = asyncio.create_task(self._flush_loop(), name="outbox-writes")
        try:
            try:
                await self._write_breakers(set(self.targets))
            except Exception as exc:  # only the CLI's view of the breakers suffers
                log.error("recording webhook endpoint state failed: %s", exc)
            while True:
                try:
                    await self.dispatch_due()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the loop must survive a bad row or a locked store
                    log.exception("outbox dispatch round failed")
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands as the
                # wake-up fires, and the dispatcher then never stops.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll_real_s):
                        await self._wake.wait()
                self._wake.clear()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            # Outcomes already known are kept: an attempt whose outcome is lost is simply made again.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush_once(), 5.0)
            for client in self._clients:
                await client.aclose()

    async def _write_breakers(self, names: set[str]) -> None:
        rows = self._breaker_rows(names, self.clock.now())
        if rows:
            await asyncio.wrap_future(self.store.transaction(lambda con: _upsert_breakers(con, rows)))

    def _breaker_rows(self, names: set[str], now: float) -> list[list[Any]]:
        return [[n, b.state, b.failures, b.opened_at, b.probe_at, b.last_error, now]
                for n in sorted(names) if (b := self.breakers.get(n)) is not None]

    async def dispatch_due(self) -> int:
        """Start every due attempt there is room for; returns how many were started."""
        for row in self._to_release:
            self._release(row)
        self._to_release.clear()
        now = self.clock.now()
        probing = [name for name, b in self.breakers.items() if b.quota(now, self._in_flight[name], 1) == 1
                   and b.state != "closed"]
        room = {name: self.breakers[name].quota(now, self._in_flight[name], self.concurrency)
                for name in self.targets}
        if not any(room.values()):
            return 0
        # Enough heads already waiting for every target with room, and a query not long ago: start from memory.
        # Each query scans every pending row, so at a backlog of 10,000 it is the outbox's largest cost.
        if time.monotonic() - self._queried_at < REQUERY_S and all(
                len(self._ready.get(name, ())) >= self.concurrency for name, free in room.items() if free > 0):
            before = sum(self._in_flight.values())
            for name, free in room.items():
                if free > 0:
                    self._start_ready(self.targets[name])
            return sum(self._in_flight.values()) - before
        self._queried_at = time.monotonic()
        per_target = self.concurrency + max(self._in_flight.values(), default=0) + READY_MAX
        rows = await asyncio.to_thread(self.store.query_dicts, DUE_SQL, [now, probing, per_target])
        self._ready = {}
        started = 0
        for row in rows:
            name = row["endpoint"]
            if row["event_id"] in self._busy or (name, row["incident_id"]) in self._busy_keys:
                continue
            target = self.targets.get(name)
            if target is None:  # removed from the config: keep the row visible as dead, not lost
                self._busy.add(row["event_id"])
                self._busy_keys.add((name, row["incident_id"]))
                self._settle(row, _no_attempt(f"target {name!r} is no longer configured"), "dead", self.clock.now())
                continue
            if room.get(name, 0) <= 0:
                if self.breakers[name].state == "closed":
                    self._ready.setdefault(name, deque()).append(row)
                continue
            room[name] -= 1
            self._start(target, row)
            started += 1
        return started

    def _start(self, target: Target, row: dict[str, Any]) -> None:
        name = target.name
        breaker = self.breakers[name]
        if breaker.state == "open":
            breaker.state = "half-open"  # this attempt is the probe
            self._pending.breakers.add(name)
        self._busy.add(row["event_id"])
        self._busy_keys.add((name, row["incident_id"]))
        self._in_flight[name] += 1
        task = asyncio.create_task(self._deliver(target, row))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_ready(self, target: Target) -> None:
        """An attempt of ``target`` finished: start its next waiting heads, while its breaker is closed."""
        ready = self._ready.get(target.name)
        breaker = self.breakers[target.name]
        while ready and breaker.state == "closed" and self._in_flight[target.name] < self.concurrency:
            row = ready.popleft()
            if row["event_id"] in self._busy or (target.name, row["incident_id"]) in self._busy_keys:
                continue
            self._start(target, row)

    async def _deliver(self, target: Target, row: dict[str, Any]) -> None:
        notice = Notice(
            event_id=row["event_id"], target=target.name, incident_id=row["incident_id"],
            event_type=row["event_type"], incident=json.loads(row["incident"]), created_at=row["created_at"],
            sequence=int(row["sequence"] or 1), attempt=row["attempts"] + 1, superseded=bool(row["superseded"]))
        assert self._clients
        client = self._clients[self._next_client % len(self._clients)]
        self._next_client += 1
        try:
            outcome = await target.send(notice, client, self.refs)
        except asyncio.CancelledError:
            self._release(row)
            raise
        except Exception as exc:  # a target's bug is a failed attempt, never a stopped queue
            log.exception("target %s failed to send", target.name)
            outcome = _no_attempt(f"{type(exc).__name__}: {exc}", status="retry")
        finally:
            self._in_flight[target.name] -= 1
        now = self.clock.now()
        attempts = row["attempts"] + 1
        queued_at = row["queued_at"] if row["queued_at"] is not None else row["created_at"]
        deadline = queued_at + target.max_age_s
        next_at = None
        if outcome.status == "delivered":
            status = "delivered"
            self.delivered += 1
        elif outcome.status == "permanent" or now >= deadline or (target.max_attempts and
                                                                   attempts >= target.max_attempts):
            status = "dead"
        else:
            status = "retry"
            wait = (outcome.retry_after_s if outcome.retry_after_s is not None
                    else webhooks.backoff_s(attempts, rng=self._rng))
            next_at = min(now + min(wait, webhooks.RETRY_AFTER_MAX_S), deadline)
        breaker = self.breakers[target.name]
        # A permanent refusal is an answer: the receiver is up, so it does not trip the breaker.
        if outcome.status == "retry":
            if breaker.failed(now, outcome.error):
                self._pending.breakers.add(target.name)
                log.warning("target %s paused after %d failed attempts in a row; probing in %.0fs",
                            target.name, breaker.failures, breaker.cooldown_s)
        elif breaker.succeeded():
            self._pending.breakers.add(target.name)
            self._pending.resume.add(target.name)
            log.info("target %s answers again; its queue resumes", target.name)
        elif breaker.failures:
            breaker.failures = 0
        self._settle(row, outcome, status, now, attempts=attempts, next_at=next_at)
        self._start_ready(target)

    def _release(self, row: dict[str, Any]) -> None:
        self._busy.discard(row["event_id"])
        self._busy_keys.discard((row["endpoint"], row["incident_id"]))

    def _settle(self, row: dict[str, Any], outcome: webhooks.AttemptOutcome, status: DeliveryStatus, now: float,
                *, attempts: int | None = None, next_at: float | None = None) -> None:
        self._pending.outcomes.append(_Outcome(row, outcome, status, row["attempts"] if attempts is None else attempts,
                                               now, next_at, outcome.error))
        self._pending_ready.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._pending_ready.wait()
            try:
                await self._flush_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # kept in memory and written with the next batch
                log.error("recording webhook outcomes failed (kept, retried): %s", exc)
                await asyncio.sleep(self.clock.to_real(1.0) if self.clock.speed > 1 else 1.0)

    async def _flush_once(self) -> None:
        self._pending_ready.clear()
        pending, self._pending = self._pending, _Pending()
        if not (pending.outcomes or pending.breakers):
            return
        outcomes = pending.outcomes
        now = self.clock.now()
        breaker_rows = self._breaker_rows(pending.breakers, now)
        try:
            await asyncio.wrap_future(self.store.transaction(
                lambda con: _write_outcomes(con, outcomes, breaker_rows, pending.resume, now)))
        except BaseException:
            # Nothing was written: merge back so the next flush tries again (the rows stay in flight meanwhile).
            self._pending.outcomes[:0] = outcomes
            self._pending.breakers |= pending.breakers
            self._pending.resume |= pending.resume
            self._pending_ready.set()
            raise
        # Released at the start of the next round, so its query (begun after this commit) sees them finished:
        # a query already running could still return them as pending.
        self._to_release.extend(o.row for o in outcomes)
        for o in outcomes:
            if self.on_result is not None:
                try:
                    self.on_result(DeliveryResult(o.row["event_id"], o.row["endpoint"], o.row["event_type"],
                                                  o.row["incident_id"], o.status, o.attempts, o.error))
                except Exception:
                    log.exception("delivery result callback failed")
        self._wake.set()


def _no_attempt(error: str, status: str = "dead") -> webhooks.AttemptOutcome:
    return webhooks.AttemptOutcome(str(uuid.uuid4()), status, None, error, None, 0.0)  # type: ignore[arg-type]


def _upsert_breakers(con: duckdb.DuckDBPyConnection, rows: list[list[Any]]) -> None:
    for row in rows:
        con.execute("INSERT OR REPLACE INTO webhook_endpoints VALUES (?, ?, ?, ?, ?, ?, ?)", row)


_DELIVERY_COLUMNS = (("delivery_id", "string"), ("event_id", "string"), ("endpoint", "string"),
                     ("attempt", "int32"), ("attempted_at", "float64"), ("http_status", "int32"),
                     ("outcome", "string"), ("error", "string"), ("duration_s", "float64"))
_UPDATE_COLUMNS = (("event_id", "string"), ("attempts", "int32"), ("status", "string"), ("next_at", "float64"),
                   ("err", "string"), ("fin", "float64"))


def _arrow(columns: tuple[tuple[str, str], ...], rows: list[tuple[Any, ...]]) -> Any:
    """Rows as a pyarrow Table: DuckDB scans it in bulk, where bound VALUES parameters cost ~0.3 ms of CPU
    per row, with the interpreter lock held (measured: 512 outcomes stalled the engine's loop ~150 ms)."""
    import pyarrow as pa

    data = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    return pa.Table.from_arrays([pa.array(col, type=getattr(pa, kind)()) for col, (_, kind) in zip(data, columns,
                                                                                                  strict=True)],
                                names=[name for name, _ in columns])


def _write_outcomes(con: duckdb.DuckDBPyConnection, outcomes: list[_Outcome], breaker_rows: list[list[Any]],
                    resume: set[str], now: float) -> None:
    """One transaction for a batch: the attempts' log rows, the outbox rows' new state, breaker changes."""
    attempted = [o for o in outcomes if o.attempts > o.row["attempts"]]  # not: a row whose target is gone
    if attempted:
        log_rows = _arrow(_DELIVERY_COLUMNS, [
            (o.outcome.delivery_id, o.row["event_id"], o.row["endpoint"], o.attempts, o.now, o.outcome.http_status,
             o.outcome.status, o.outcome.error, o.outcome.duration_s) for o in attempted])
        con.register("outcome_log", log_rows)
        try:
            con.execute("INSERT INTO deliveries SELECT * FROM outcome_log")
        finally:
            con.unregister("outcome_log")
    if outcomes:
        updates = _arrow(_UPDATE_COLUMNS, [
            (o.row["event_id"], o.attempts, "pending" if o.status == "retry" else o.status,
             o.next_at if o.status == "retry" else o.row["next_attempt_at"], o.error,
             None if o.status == "retry" else o.now) for o in outcomes])
        con.register("outcome_state", updates)
        try:
            con.execute(
                "UPDATE outbox SET attempts = v.attempts, status = v.status, next_attempt_at = v.next_at, "
                "last_error = v.err, finished_at = v.fin FROM outcome_state AS v WHERE outbox.event_id = v.event_id")
        finally:
            con.unregister("outcome_state")
    for name in sorted(resume):  # the breaker closed: what waited behind it is due now, not at its own backoff
        con.execute("UPDATE outbox SET next_attempt_at = ? WHERE endpoint = ? AND status = 'pending' "
                    "AND next_attempt_at > ?", [now, name, now])
    _upsert_breakers(con, breaker_rows)


def resend(con: duckdb.DuckDBPyConnection, event_id: str, actor: str, now: float) -> bool:
    """Put a dead (or delivered) event back in the queue; the resend is audited.

    Returns whether it is superseded: a later event of its incident already reached the target, and the
    resent body says so (``"superseded": true``).
    """
    found = con.execute("SELECT status, endpoint, incident_id, sequence FROM outbox WHERE event_id = ?",
                        [event_id]).fetchone()
    if found is None:
        raise KeyError(f"no outbox event {event_id}")
    status, endpoint, incident_id, sequence = found
    if status == "pending":
        raise ValueError(f"event {event_id} is still queued; only dead or delivered events can be resent")
    (superseded,) = con.execute(
        "SELECT count(*) > 0 FROM outbox WHERE endpoint = ? AND incident_id = ? AND status = 'delivered' "
        "AND sequence > ?", [endpoint, incident_id, sequence or 0]).fetchone()
    con.execute("UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?, queued_at = ?, "
                "finished_at = NULL, superseded = ? WHERE event_id = ?", [now, now, superseded, event_id])
    detail = f"was {status}" + ("; superseded by a later delivered event" if superseded else "")
    audit_log.append(con, now, actor, "webhook.resend", event_id, detail)
    return bool(superseded)


def resend_all_dead(con: duckdb.DuckDBPyConnection, actor: str, now: float) -> list[str]:
    """Resend every dead event, oldest first; each one audited."""
    ids = [r[0] for r in con.execute("SELECT event_id FROM outbox WHERE status = 'dead' ORDER BY seq").fetchall()]
    for event_id in ids:
        resend(con, event_id, actor, now)
    return ids


# ---- reading the queue and the log (engine API, CLI) ------------------------

_DELIVERY_COLS = ("o.event_id, o.endpoint, o.incident_id, o.event_type, o.sequence, o.status, o.attempts, "
                  "o.created_at, o.next_attempt_at, o.finished_at, o.last_error, o.superseded, "
                  "(SELECT d.http_status FROM deliveries d WHERE d.event_id = o.event_id ORDER BY d.attempted_at DESC "
                  "LIMIT 1) AS http_status, "
                  "(SELECT d.duration_s FROM deliveries d WHERE d.event_id = o.event_id ORDER BY d.attempted_at DESC "
                  "LIMIT 1) AS latency_s")


def _delivery_view(r: dict[str, Any]) -> api.DeliveryView:
    return api.DeliveryView(
        event_id=r["event_id"], target=r["endpoint"], incident_id=r["incident_id"], event_type=r["event_type"],
        sequence=int(r["sequence"] or 0), status=r["status"], attempts=r["attempts"], created_at=r["created_at"],
        next_attempt_at=r["next_attempt_at"] if r["status"] == "pending" else None, finished_at=r["finished_at"],
        last_error=r["last_error"], superseded=bool(r["superseded"]), last_http_status=r["http_status"],
        last_latency_s=r["latency_s"])


def list_deliveries(query: Callable[[str, list[Any]], list[dict[str, Any]]], *, dead_only: bool = False,
                    limit: int = 200) -> list[api.DeliveryView]:
    """Outbox rows, newest first; ``query`` is Store.query_dicts."""
    where = "WHERE o.status = 'dead'" if dead_only else ""
    rows = query(f"SELECT {_DELIVERY_COLS} FROM outbox o {where} ORDER BY o.seq DESC LIMIT ?", [limit])
    return [_delivery_view(r) for r in rows]


def delivery_report(query: Callable[[str, list[Any]], list[dict[str, Any]]], now: float, *,
                    breakers: dict[str, Breaker] | None = None, limit: int = 200) -> api.DeliveryReport:
    """Dead letters, the latest attempts and each target's breaker; ``breakers`` from a running dispatcher."""
    counts = {r["endpoint"]: r for r in query(
        "SELECT endpoint, count(*) FILTER (WHERE status = 'pending') AS pending, "
        "count(*) FILTER (WHERE status = 'dead') AS dead FROM outbox GROUP BY endpoint", [])}
    stored = {r["endpoint"]: r for r in query("SELECT * FROM webhook_endpoints", [])}
    endpoints = []
    for name in sorted(set(breakers or {}) | (set() if breakers is not None else set(stored)) | set(counts)):
        c = counts.get(name, {})
        if breakers is not None and name in breakers:
            b = breakers[name]
            state, failures, opened_at, probe_at, error = b.state, b.failures, b.opened_at, b.probe_at, b.last_error
        elif name in stored:
            s = stored[name]
            state, failures, opened_at, probe_at, error = (s["state"], s["failures"], s["opened_at"], s["probe_at"],
                                                           s["last_error"])
        else:
            state, failures, opened_at, probe_at, error = "unknown", 0, None, None, None
        endpoints.append(api.EndpointView(name, state, failures, opened_at, probe_at, error,
                                          int(c.get("pending") or 0), int(c.get("dead") or 0)))
    attempts = query(
        "SELECT d.*, o.event_type, o.incident_id FROM deliveries d LEFT JOIN outbox o USING (event_id) "
        "ORDER BY d.attempted_at DESC LIMIT ?", [limit])
    recent = tuple(api.AttemptView(
        delivery_id=r["delivery_id"], event_id=r["event_id"], target=r["endpoint"], attempt=r["attempt"],
        attempted_at=r["attempted_at"], http_status=r["http_status"], outcome=r["outcome"], error=r["error"],
        latency_s=r["duration_s"], event_type=r["event_type"], incident_id=r["incident_id"]) for r in attempts)
    dead = tuple(list_deliveries(query, dead_only=True, limit=limit))
    return api.DeliveryReport(now, tuple(endpoints), dead, recent, live=breakers is not None)
