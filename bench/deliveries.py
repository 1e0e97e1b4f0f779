"""Outbox throughput: N queued webhook events drained to a local receiver, beside a plain httpx loop.

    .venv/bin/python -m bench.deliveries [--events 10000] [--incidents 2500] [--baseline previous.json]

A child process (``bench.receiver_proc``) runs an HTTP/1.1 keep-alive receiver
on 127.0.0.1 that answers 200 to every POST. Two runs go to it:

* **ceiling**: a plain ``httpx.AsyncClient`` loop posting the same number of
  pre-built signed bodies with the outbox's concurrency. No database, no
  order, no bookkeeping: the most this host's httpx can do.
* **outbox**: the events are queued in a real DuckDB file (``--incidents``
  incidents, events spread over opened/updated/acked/closed so per-incident
  order is exercised), then the real ``OutboxDispatcher`` with the real
  ``WebhookTarget`` (HMAC-signed, both headers) drains them; every attempt is
  logged to ``deliveries`` as in production.

While the outbox drains, a ticker on the same event loop measures how late it
wakes (sleep 50 ms, record the overshoot): that is how much a poll scheduled
on the engine's loop would be delayed. The last line is one JSON object with
every figure (``--baseline`` reads one back and prints it beside).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from ispvm_tui.clock import SystemClock
from ispvm_tui.engine import outbox, webhooks
from ispvm_tui.engine.store import Store
from ispvm_tui.engine.targets import MemoryRefs
from ispvm_tui.engine.webhook_target import WebhookTarget

SECRET = "bench-deliveries-secret"
EVENTS = ("incident.opened", "incident.updated", "incident.acked", "incident.closed")


def _incident(incident_id: str) -> dict[str, Any]:
    return {"id": incident_id, "title": f"Link down: CORE1:ether2--{incident_id}:ether1 (3 devices cut off)",
            "status": "open", "severity": "critical", "starts_at": "2026-02-05T11:59:30Z", "ends_at": None,
            "url": f"https://monitor.example.net/incidents/{incident_id}",
            "ack": {"acked_by": None, "acked_at": None},
            "root_causes": [{"entity_type": "link", "entity_id": f"CORE1:ether2--{incident_id}:ether1",
                             "confidence": 0.8}],
            "impact": {"sites_affected": 1, "devices_affected": 3, "services_affected": 1,
                       "estimated_subscribers_affected": 1200},
            "evidence_top": ["CORE1:ether2 oper-down while admin-up for 12s",
                             "3 devices behind it have no other path"], "labels": {"category": "access"}}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Ticker:
    """How late the event loop wakes a 50 ms sleeper: the delay a poll would see."""

    def __init__(self) -> None:
        self.late: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.05)
            self.late.append(loop.time() - t - 0.05)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, float]:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        lat = sorted(self.late) or [0.0]
        return {"p50_ms": 1000 * lat[len(lat) // 2], "p99_ms": 1000 * lat[int(len(lat) * 0.99)],
                "max_ms": 1000 * lat[-1]}


async def ceiling(url: str, events: int, concurrency: int) -> dict[str, Any]:
    bodies = [webhooks.encode_body(webhooks.event_body(str(uuid.uuid4()), "incident.opened", time.time(), None,
                                                       _incident(f"i{n}"), sequence=1)) for n in range(events)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    ok = 0
    async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=concurrency * 4)) as client:
        async def worker() -> None:
            nonlocal ok
            while not queue.empty():
                body = queue.get_nowait()
                r = await client.post(url, content=body, headers={
                    "Content-Type": "application/json", "X-ISPVM-Signature": webhooks.sign(body, SECRET)})
                ok += r.status_code == 200

        cpu0, t0 = _cpu(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    return {"events": events, "delivered": ok, "wall_s": wall, "per_s": ok / wall, "cpu_s": cpu}


async def drain(url: str, events: int, incidents: int, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ispvm-bench-") as tmp:
        store = Store(Path(tmp) / "bench.duckdb")
        try:
            target = WebhookTarget(webhooks.WebhookEndpoint(name="bench", url=url, secret=SECRET, timeout_s=10.0,
                                                            previous_secrets=("bench-old",)), None)
            now = time.time()

            def fill(con: Any) -> None:
                # One INSERT per event through the production enqueue, as incident changes would.
                for n in range(events):
                    inc = f"inc-{n % incidents}"
                    outbox.enqueue(con, [target], inc, EVENTS[(n // incidents) % len(EVENTS)], _incident(inc), now)

            t0 = time.perf_counter()
            store.transaction(fill).result(600)
            queue_s = time.perf_counter() - t0
            dispatcher = outbox.OutboxDispatcher(store, {"bench": target}, SystemClock(), MemoryRefs(),
                                                 concurrency=concurrency)
            ticker = Ticker()
            ticker.start()
            cpu0, t0 = _cpu(), time.perf_counter()
            task = asyncio.create_task(dispatcher.run(poll_real_s=0.5))
            while True:
                await asyncio.sleep(0.2)
                (pending,) = await asyncio.to_thread(
                    lambda: store.query("SELECT count(*) FROM outbox WHERE status = 'pending'")[0])
                if pending == 0:
                    break
            wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
            lag = await ticker.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            status = dict(store.query("SELECT status, count(*) FROM outbox GROUP BY status"))
            attempts = store.query("SELECT count(*) FROM deliveries")[0][0]
            order_ok = store.query(
                "SELECT count(*) = 0 FROM (SELECT incident_id, sequence, lag(sequence) OVER "
                "(PARTITION BY incident_id ORDER BY finished_at, sequence) AS prev FROM outbox) "
                "WHERE prev IS NOT NULL AND sequence < prev")[0][0]
        finally:
            store.close()
    delivered = status.get("delivered", 0)
    return {"events": events, "incidents": incidents, "queue_s": queue_s, "delivered": delivered,
            "dead": status.get("dead", 0), "attempts_logged": attempts, "wall_s": wall, "per_s": delivered / wall,
            "cpu_s": cpu, "cpu_per_delivery_ms": 1000 * cpu / max(1, delivered), "loop_late": lag,
            "order_ok": bool(order_ok)}


def start_receiver() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.receiver_proc"], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/hook"


def stop_receiver(proc: subprocess.Popen[str]) -> dict[str, Any]:
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    for line in out.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)
    return {}


def print_report(r: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    c, o = r["ceiling"], r["outbox"]

    def rows(x: dict[str, Any]) -> list[tuple[str, str, str]]:
        c, o = x["ceiling"], x["outbox"]
        return [
            ("events", f"{c['events']}", f"{o['events']} over {o['incidents']} incidents"),
            ("delivered", f"{c['delivered']}", f"{o['delivered']} ({o['dead']} dead)"),
            ("drain time, s", f"{c['wall_s']:.1f}", f"{o['wall_s']:.1f}"),
            ("deliveries/s", f"{c['per_s']:.0f}", f"{o['per_s']:.0f}"),
            ("CPU, s", f"{c['cpu_s']:.1f}", f"{o['cpu_s']:.1f} ({o['cpu_per_delivery_ms']:.2f} ms each)"),
            ("loop late p50/p99/max, ms", "-", "{p50_ms:.1f} / {p99_ms:.1f} / {max_ms:.1f}".format(**o["loop_late"])),
            ("order per incident held", "-", "yes" if o["order_ok"] else "NO"),
            ("queueing the events, s", "-", f"{o['queue_s']:.1f}"),
        ]

    now = rows(r)
    head = ["figure", "plain httpx (ceiling)", "outbox"]
    base = {k: v for k, _, v in rows(baseline)} if baseline else {}
    if baseline:
        head.append(f"baseline outbox ({baseline.get('head', '?')})")
    print("  ".join(f"{h:32}" for h in head))
    for name, ceil, out in now:
        cells = [name, ceil, out] + ([base.get(name, "-")] if baseline else [])
        print("  ".join(f"{cell:32}" for cell in cells))
    print(f"outbox / ceiling: {o['per_s'] / c['per_s']:.2f}; receiver saw {r['receiver'].get('requests', '?')} "
          f"requests ({r['receiver'].get('bad_signatures', '?')} with a bad signature)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--incidents", type=int, default=2_500)
    p.add_argument("--concurrency", type=int, default=outbox.CONCURRENCY)
    p.add_argument("--baseline", type=Path, help="a previous run's output (its last JSON line)")
    args = p.parse_args(argv)
    baseline = None
    if args.baseline:
        lines = [ln for ln in args.baseline.read_text().splitlines() if ln.startswith("{")]
        if not lines:
            p.error(f"--baseline: no JSON line in {args.baseline}")
        baseline = json.loads(lines[-1])
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    proc, url = start_receiver()
    try:
        ceil = asyncio.run(ceiling(url, args.events, args.concurrency))
        out = asyncio.run(drain(url, args.events, args.incidents, args.concurrency))
    finally:
        receiver = stop_receiver(proc)
    result = {"bench": "deliveries", "head": head, "ceiling": ceil, "outbox": out, "receiver": receiver,
              "cpus": os.cpu_count()}
    print_report(result, baseline)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
