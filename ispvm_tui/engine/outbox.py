"""The durable webhook outbox and its delivery loop.

Rows are written in the same transaction as the incident change (see
engine/core.py), so nothing is sent that was not stored and nothing stored
is forgotten across a crash. The loop picks due rows in sequence order,
holds back any row whose incident has an earlier undelivered row for the
same endpoint (per-incident order), attempts them, and records every
attempt in ``deliveries``. Exhausted rows become ``dead`` and can be resent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import httpx

from ispvm_tui.clock import Clock
from ispvm_tui.engine import webhooks
from ispvm_tui.engine.store import Store

log = logging.getLogger(__name__)

DUE_SQL = """
SELECT o.event_id, o.seq, o.endpoint, o.incident_id, o.event_type, o.incident, o.created_at, o.attempts
FROM outbox o
WHERE o.status = 'pending' AND o.next_attempt_at <= ?
  AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.status = 'pending' AND p.endpoint = o.endpoint
                  AND p.incident_id = o.incident_id AND p.seq < o.seq)
ORDER BY o.seq
LIMIT 64
"""


def enqueue(con: duckdb.DuckDBPyConnection, endpoints: list[webhooks.WebhookEndpoint], incident_id: str,
            event_type: str, incident: dict[str, Any], now: float) -> int:
    """Insert one outbox row per subscribed endpoint; call inside the incident's transaction."""
    count = 0
    for ep in endpoints:
        if event_type not in ep.events:
            continue
        con.execute(
            "INSERT INTO outbox (event_id, endpoint, incident_id, event_type, incident, created_at, next_attempt_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [str(uuid.uuid4()), ep.name, incident_id, event_type, json.dumps(incident), now, now],
        )
        count += 1
    return count


@dataclass(frozen=True)
class DeliveryResult:
    event_id: str
    endpoint: str
    event_type: str
    incident_id: str
    status: str  # delivered | retry | dead
    attempts: int
    error: str | None


class OutboxDispatcher:
    def __init__(self, store: Store, endpoints: list[webhooks.WebhookEndpoint], clock: Clock,
                 tenant: webhooks.Tenant | None, *, on_result: Callable[[DeliveryResult], None] | None = None,
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.endpoints = {ep.name: ep for ep in endpoints}
        self.clock = clock
        self.tenant = tenant
        self.on_result = on_result
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._client: httpx.AsyncClient | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self, poll_real_s: float = 1.0) -> None:
        self._client = httpx.AsyncClient(follow_redirects=False)
        try:
            while True:
                try:
                    await self.dispatch_due()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the loop must survive a bad row or a locked store
                    log.exception("webhook dispatch round failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), poll_real_s)
                self._wake.clear()
        finally:
            await self._client.aclose()

    async def dispatch_due(self) -> int:
        now = self.clock.now()
        rows = await asyncio.to_thread(self.store.query_dicts, DUE_SQL, [now])
        # One row per (endpoint, incident) per round keeps order even when a round sends several.
        seen: set[tuple[str, str]] = set()
        batch = []
        for row in rows:
            key = (row["endpoint"], row["incident_id"])
            if key not in seen:
                seen.add(key)
                batch.append(row)
        await asyncio.gather(*(self._deliver(row) for row in batch))
        return len(batch)

    async def _deliver(self, row: dict[str, Any]) -> None:
        ep = self.endpoints.get(row["endpoint"])
        now = self.clock.now()
        if ep is None:  # endpoint removed from config: keep the row visible as dead, not lost
            await self._record(row, None, "dead", f"endpoint {row['endpoint']!r} is no longer configured", now)
            return
        body = webhooks.encode_body(webhooks.event_body(
            row["event_id"], row["event_type"], now, self.tenant, json.loads(row["incident"])))
        assert self._client is not None
        outcome = await webhooks.attempt(self._client, ep, row["event_type"], body, self.tenant)
        attempts = row["attempts"] + 1
        if outcome.status == "delivered":
            status = "delivered"
        elif outcome.status == "permanent" or attempts >= ep.max_attempts or now - row["created_at"] >= ep.max_age_s:
            status = "dead"
        else:
            status = "retry"
        wait = max(webhooks.backoff_s(attempts, rng=self._rng), outcome.retry_after_s or 0.0)
        await self._record(row, outcome, status, outcome.error, now, next_at=now + wait)

    async def _record(self, row: dict[str, Any], outcome: webhooks.AttemptOutcome | None, status: str,
                      error: str | None, now: float, next_at: float | None = None) -> None:
        attempts = row["attempts"] + (1 if outcome else 0)

        def write(con: duckdb.DuckDBPyConnection) -> None:
            if outcome is not None:
                con.execute(
                    "INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [outcome.delivery_id, row["event_id"], row["endpoint"], attempts, now, outcome.http_status,
                     outcome.status, outcome.error, outcome.duration_s],
                )
            if status == "retry":
                con.execute("UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE event_id = ?",
                            [attempts, next_at, error, row["event_id"]])
            else:
                con.execute("UPDATE outbox SET attempts = ?, status = ?, last_error = ?, finished_at = ? "
                            "WHERE event_id = ?", [attempts, status, error, now, row["event_id"]])

        await asyncio.wrap_future(self.store.transaction(write))
        if self.on_result is not None:
            self.on_result(DeliveryResult(row["event_id"], row["endpoint"], row["event_type"], row["incident_id"],
                                          status, attempts, error))


def resend(con: duckdb.DuckDBPyConnection, event_id: str, actor: str, now: float) -> None:
    """Put a dead (or delivered) event back in the queue; the resend is audited."""
    found = con.execute("SELECT status FROM outbox WHERE event_id = ?", [event_id]).fetchone()
    if found is None:
        raise KeyError(f"no outbox event {event_id}")
    con.execute("UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?, finished_at = NULL "
                "WHERE event_id = ?", [now, event_id])
    con.execute("INSERT INTO audit VALUES (?, ?, 'webhook.resend', ?, ?)",
                [now, actor, event_id, f"was {found[0]}"])
