"""Ping and traceroute run from a chosen router, streamed as events, every run audited.

``Diagnostics.start`` checks the request (a known device with an API
credential, a sane target, a count of 1..20), takes one of ``MAX_RUNNING``
slots (a further run is refused, never queued behind a slow one: the
operator sees why at once) and returns a run id; the run itself goes on as a
task on the engine's loop. Every reply row becomes one ``diagnostic.output``
event with a rendered line, the last one has ``done=True`` and the summary (or
the error). One audit row per run (actor, ``diagnostic.<kind>``, the device,
the target and the result) is written when it ends. A run opens its own API
session (collectors/routeros_tools.py), so polls go on beside it; the
password is read from the secret store for the run and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ispvm_tui.collectors import routeros_tools as tools
from ispvm_tui.collectors.routeros import ApiTarget
from ispvm_tui.config import Config

log = logging.getLogger(__name__)

KINDS = ("ping", "traceroute")
EVENT = "diagnostic.output"
MAX_RUNNING = 4
TRACEROUTE_MAX_HOPS = 15
# Real seconds. A traceroute stays under the control socket's 30 s request limit, so `ispvm diag` gets its
# answer; a ping's own deadline (count * 1 s + 5 s) is at most 25 s.
TRACEROUTE_DEADLINE_S = 25.0
KEEP_FINISHED = 50  # finished runs whose lines are kept for `result`

Publish = Callable[[str, str, dict[str, Any]], None]
Audit = Callable[[list[Any]], Awaitable[None]]
GetSecret = Callable[[str], str | None]


class DiagnosticsBusy(RuntimeError):
    """Every slot is taken."""


@dataclass
class Run:
    run_id: str
    device: str
    kind: str
    target: str
    actor: str
    count: int
    lines: list[str] = field(default_factory=list)
    summary: str | None = None
    error: str | None = None
    done: bool = False

    def result(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "device": self.device, "kind": self.kind, "target": self.target,
                "lines": list(self.lines), "summary": self.summary, "error": self.error, "done": self.done}


class Diagnostics:
    """The engine's diagnostic runs: at most ``max_running`` at once, each a task on the engine's loop."""

    def __init__(self, config: Config, get_secret: GetSecret, publish: Publish, audit: Audit, *,
                 max_running: int = MAX_RUNNING, now: Callable[[], float]) -> None:
        self.config = config
        self._get_secret = get_secret
        self._publish = publish
        self._audit = audit
        self._now = now
        self.max_running = max_running
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.runs: dict[str, Run] = {}  # running and the last finished ones

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def start(self, device: str, kind: str, target: str, actor: str, count: int = 5) -> str:
        """Check, take a slot, start; the run id. KeyError: unknown device; ValueError: bad input or no API
        credential; DiagnosticsBusy: every slot taken."""
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
        count = tools.check_range(count, "count", tools.COUNT_RANGE)
        address = tools.check_target(target)
        api = await self._api_target(device)
        if len(self._tasks) >= self.max_running:
            raise DiagnosticsBusy(f"{len(self._tasks)} diagnostics are already running (at most "
                                  f"{self.max_running} at once): try again when one has finished")
        run = Run(uuid.uuid4().hex[:12], device, kind, address, actor, count)
        self.runs[run.run_id] = run
        task = asyncio.create_task(self._run(run, api), name=f"diagnostic-{run.run_id}")
        self._tasks[run.run_id] = task
        task.add_done_callback(lambda _t, rid=run.run_id: self._tasks.pop(rid, None))
        self._forget_old()
        return run.run_id

    async def result(self, run_id: str) -> dict[str, Any]:
        """Wait for a run to end; its lines, summary and error."""
        run = self.runs.get(run_id)
        if run is None:
            raise KeyError(f"unknown diagnostic run {run_id!r}")
        task = self._tasks.get(run_id)
        if task is not None:
            await asyncio.shield(task)
        return run.result()

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- a run ----------------------------------------------------------------------------

    async def _api_target(self, name: str) -> ApiTarget:
        device = next((d for d in self.config.devices if d.name == name), None)
        if device is None:
            raise KeyError(f"unknown device {name!r}")
        if not device.credential:
            raise ValueError(f"{name} has no RouterOS API credential (polled by SNMP only): ping and "
                             f"traceroute run through the router's API")
        cred = self.config.credentials[device.credential]
        password = await asyncio.to_thread(self._get_secret, cred.password_secret)
        if password is None:
            raise ValueError(f"{name}: the password of credential {device.credential!r} is not in this "
                             f"engine's secret store (polled by a remote collector?)")
        return ApiTarget(name=name, address=device.address, username=cred.username, password=password,
                         port=device.api_port, tls=device.api_tls, tls_verify=device.api_tls_verify)

    async def _run(self, run: Run, api: ApiTarget) -> None:
        connect_s = self.config.polling.timeout_s
        try:
            if run.kind == "ping":
                self._line(run, f"PING {run.target} from {run.device}: {run.count} echoes")
                replies: list[tools.PingReply] = []
                stream = tools.ping(api, run.target, count=run.count, connect_timeout_s=connect_s)
                async with contextlib.aclosing(stream):
                    async for reply in stream:
                        replies.append(reply)
                        if reply.seq is not None:
                            self._line(run, ping_line(reply))
                run.summary = ping_summary(replies, run.count)
            else:
                self._line(run, f"TRACEROUTE {run.target} from {run.device}: at most {TRACEROUTE_MAX_HOPS} hops")
                hops: list[tools.Hop] = []
                trace = tools.traceroute(api, run.target, max_hops=TRACEROUTE_MAX_HOPS, connect_timeout_s=connect_s,
                                         deadline_s=TRACEROUTE_DEADLINE_S)
                async with contextlib.aclosing(trace):
                    async for hop in trace:
                        hops.append(hop)
                        self._line(run, hop_line(hop))
                run.summary = traceroute_summary(hops, run.target)
        except asyncio.CancelledError:
            run.error = "stopped: the engine is shutting down"
            self._finish(run)
            raise
        except tools.ToolError as exc:
            run.error = str(exc)
        except Exception as exc:  # a bug here must end the run visibly, never leave it hanging
            log.exception("diagnostic %s on %s failed", run.kind, run.device)
            run.error = f"{type(exc).__name__}: {exc}".replace(api.password, "***")
        self._finish(run)
        outcome = run.summary if run.error is None else f"error: {run.error}"
        try:
            await self._audit([self._now(), run.actor, f"diagnostic.{run.kind}", run.device,
                               f"target {run.target}, run {run.run_id}: {outcome}"])
        except Exception:
            log.exception("diagnostic %s: the audit row was not written", run.run_id)

    def _line(self, run: Run, line: str) -> None:
        run.lines.append(line)
        self._event(run, line)

    def _finish(self, run: Run) -> None:
        run.done = True
        line = run.summary if run.error is None else f"error: {run.error}"
        self._event(run, line or "")

    def _event(self, run: Run, line: str) -> None:
        self._publish(EVENT, f"{run.kind} {run.target} from {run.device}: {line}", {
            "run_id": run.run_id, "device": run.device, "kind": run.kind, "target": run.target, "line": line,
            "done": run.done, "error": run.error, "summary": run.summary if run.done else None,
        })

    def _forget_old(self) -> None:
        finished = [rid for rid, run in self.runs.items() if run.done]
        for rid in finished[:max(0, len(finished) - KEEP_FINISHED)]:
            del self.runs[rid]


# ---- rendering --------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def ping_line(reply: tools.PingReply) -> str:
    """``seq=3 10.1.1.1 time=1.2ms`` or ``seq=3 10.1.1.1 timeout``."""
    host = reply.host or "?"
    if reply.time_ms is None:
        return f"seq={reply.seq} {host} {reply.status or 'timeout'}"
    ttl = f" ttl={reply.ttl}" if reply.ttl is not None else ""
    return f"seq={reply.seq} {host} time={_ms(reply.time_ms)}ms{ttl}"


def ping_summary(replies: list[tools.PingReply], count: int) -> str:
    """``5 sent, 5 received, 0% loss, avg 0.8 ms`` from the router's running totals (or the rows)."""
    last = next((r for r in reversed(replies) if r.sent is not None), None)
    echoes = [r for r in replies if r.seq is not None]
    sent = last.sent if last and last.sent is not None else len(echoes)
    answered = [r.time_ms for r in echoes if r.time_ms is not None]
    received = last.received if last and last.received is not None else len(answered)
    if not sent:
        return f"no echo rows for {count} echoes"
    loss = last.loss_pct if last and last.loss_pct is not None else 100.0 * (sent - received) / sent
    text = f"{sent} sent, {received} received, {loss:.0f}% loss"
    avg = last.avg_ms if last and last.avg_ms is not None else (sum(answered) / len(answered) if answered else None)
    return text + (f", avg {_ms(avg)} ms" if avg is not None and received else "")


def hop_line(hop: tools.Hop) -> str:
    """``1  10.0.0.1  0.4 ms`` or ``3  *  timeout``."""
    if hop.last_ms is None:
        return f"{hop.index}  {hop.address or '*'}  {hop.status or 'timeout'}"
    status = f"  {hop.status}" if hop.status else ""
    return f"{hop.index}  {hop.address or '?'}  {_ms(hop.last_ms)} ms{status}"


def traceroute_summary(hops: list[tools.Hop], target: str) -> str:
    if not hops:
        return "no hops answered"
    word = "hop" if len(hops) == 1 else "hops"
    if hops[-1].address == target and not hops[-1].silent:
        return f"{len(hops)} {word}, reached {target}"
    silent = 0
    for hop in reversed(hops):
        if not hop.silent:
            break
        silent += 1
    why = f" (stopped after {silent} silent hops in a row)" if silent >= tools.GIVE_UP_AFTER else ""
    return f"{len(hops)} {word}, {target} not reached{why}"
