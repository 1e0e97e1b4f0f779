"""Is the engine doing its job? What ``ispvm health`` (and a service manager through it) asks.

One verdict from what the engine knows of itself, with the reasons. *Failing* is the engine not doing its
work: still starting, the database writer stopped, a background task ended, polling stalled (devices that
answer are polled far past their interval, or nothing has been polled long after the start). *Warnings*
are the network's or a receiver's trouble that the engine is handling and showing elsewhere: every device
failing (this host cut off?), a remote collector silent, notifications dead or waiting long. A warning
never fails the check: restarting the engine would not fix any of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ispvm_tui.engine.api import CollectorView

STALL_FACTOR = 2.0  # polling is stalled past this many intervals of lag ...
STALL_MIN_S = 120.0  # ... and never under this
PENDING_WARN_S = 900.0  # a notification queued this long is worth a warning


def stall_after(interval_s: float) -> float:
    """Lag past which polling counts as stalled (both ``ispvm health`` and the poller_stalled alert)."""
    return max(STALL_MIN_S, STALL_FACTOR * interval_s)


@dataclass(frozen=True)
class Outbox:
    pending: int = 0
    dead: int = 0
    oldest_pending_at: float | None = None


@dataclass(frozen=True)
class Health:
    ok: bool
    state: str  # "healthy" | "degraded" (warnings only) | "failing" | "starting"
    pid: int
    now: float
    started_at: float | None
    failing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    collectors: list[dict[str, Any]] = field(default_factory=list)
    outbox: dict[str, Any] = field(default_factory=dict)
    database: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def assess(*, pid: int, now: float, started_at: float | None, interval_s: float, collectors: tuple[CollectorView, ...],
           writer_alive: bool, writer_error: str | None, rows_dropped: int, stopped_tasks: list[str],
           outbox: Outbox, extra_warnings: Sequence[str] = ()) -> Health:
    """The verdict. ``started_at`` None: the engine has not finished starting. ``interval_s`` is the longest
    polling interval of the devices this host polls; clock seconds like ``now``."""
    failing: list[str] = []
    warnings: list[str] = []
    if started_at is None:
        failing.append("the engine is still starting (restoring its state, reading secrets, building collectors)")
    if not writer_alive:
        failing.append(f"the database writer stopped: {writer_error or 'unknown error'}")
    failing += [f"background task {name} stopped" for name in stopped_tasks]
    stall_s = stall_after(interval_s)
    for c in collectors:
        if c.kind == "local":
            if c.lag_s is not None and c.lag_s > stall_s:
                failing.append(f"polling is stalled: a device that answers is {c.lag_s:.0f} s past its interval "
                               f"(over {stall_s:.0f} s)")
            if c.last_poll_at is None and started_at is not None and now - started_at > stall_s:
                failing.append(f"no poll has completed in the {now - started_at:.0f} s since the start")
            if c.devices and c.failing == c.devices:
                warnings.append(f"every device's last poll failed ({c.devices}): is this host cut off from the "
                                "network?")
        elif c.state == "down":
            warnings.append(f"remote collector {c.name} is silent"
                            + (f" since {now - c.last_poll_at:.0f} s" if c.last_poll_at is not None else ""))
    if outbox.dead:
        warnings.append(f"{outbox.dead} notification(s) dead (`ispvm deliveries list --dead`, resend with "
                        "`ispvm deliveries resend`)")
    if outbox.oldest_pending_at is not None and now - outbox.oldest_pending_at > PENDING_WARN_S:
        warnings.append(f"a notification has waited {now - outbox.oldest_pending_at:.0f} s to be delivered "
                        f"({outbox.pending} pending)")
    warnings += list(extra_warnings)  # e.g. /metrics not served: the engine itself works
    state = ("starting" if started_at is None else "failing" if failing else "degraded" if warnings else "healthy")
    return Health(ok=not failing, state=state, pid=pid, now=now, started_at=started_at, failing=failing,
                  warnings=warnings, collectors=[asdict(c) for c in collectors], outbox=asdict(outbox),
                  database={"writer_alive": writer_alive, "rows_dropped": rows_dropped, "last_error": writer_error})


OUTBOX_SQL = ("SELECT count(*) FILTER (WHERE status = 'pending') AS pending, "
              "count(*) FILTER (WHERE status = 'dead') AS dead, "
              "min(created_at) FILTER (WHERE status = 'pending') AS oldest_pending_at FROM outbox")


# ---- alerts on the monitoring itself ------------------------------------------------------------------------
@dataclass(frozen=True)
class SelfCheck:
    """One observation for the rules: ``metric`` on ``entity`` is ``bad`` (None: unknown, keep the state)."""

    metric: str
    entity: str
    kind: str
    bad: bool | None
    summary: str
    evidence: tuple[str, ...] = ()


def self_checks(collectors: Sequence[CollectorView], breakers: Mapping[str, Any], interval_s: float) -> list[SelfCheck]:
    """What the engine tells its own rules every few seconds: the poller stalled (``engine.lagging``, the
    same threshold ``ispvm health`` fails on), and each notification target whose circuit breaker is open
    (``notify.failing``: its deliveries failed several times in a row). Their alerts become incidents like
    any other, and are sent to every other target."""
    stall_s = stall_after(interval_s)
    out: list[SelfCheck] = []
    local = next((c for c in collectors if c.kind == "local"), None)
    if local is not None:
        lag = local.lag_s
        out.append(SelfCheck("engine.lagging", "ispvm:poller", "engine", None if lag is None else lag > stall_s,
                             f"ispvm's poller is stalled: {lag or 0:.0f} s behind",
                             (f"a device that answers is {lag or 0:.0f} s past its interval (over {stall_s:.0f} s): "
                              "the jump host is overloaded, or the engine's loop is blocked",)))
    for name, breaker in sorted(breakers.items()):
        open_ = breaker.state != "closed"
        error = breaker.last_error or "no error recorded"
        out.append(SelfCheck("notify.failing", f"target:{name}", "target", open_,
                             f"Notifications to {name} failing",
                             (f"{breaker.failures} delivery attempts to {name} failed in a row; the last: {error}",
                              f"its queue waits (circuit {breaker.state}); other targets are not held up")))
    return out
