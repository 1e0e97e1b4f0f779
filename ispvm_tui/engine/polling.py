"""Scheduling polls: one APScheduler job per device, bounded concurrency.

Each device's job runs at most once at a time (``max_instances=1``). Every
device is first polled within a few seconds of start; from its second poll on
it keeps a phase of its own, drawn once and spread over the whole interval, so
a fleet never polls in lockstep and every device is polled exactly once per
interval (a jitter drawn per poll would add up: on average one poll in
twenty would be lost). A device that keeps failing is backed off
exponentially (up to ``backoff_max_s``) so dead routers do not eat the
concurrency budget of live ones. Collectors never raise for a router's
misbehaviour; anything unexpected is still caught here and recorded as a
failed poll.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from ispvm_tui.clock import Clock
from ispvm_tui.collectors import reachability
from ispvm_tui.collectors.reachability import ReachTarget
from ispvm_tui.collectors.results import ConfigRead, PollResult
from ispvm_tui.config import Config, Device
from ispvm_tui.secrets import SecretError, SecretSource

log = logging.getLogger(__name__)
# A poll still running when its next turn comes is skipped by design (no overlapping polls of one
# device); the poller counts those instead of letting the scheduler warn on every one.
logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
# Polls never raise (collectors return failures, _safe_poll catches the rest); what the executor would
# report is a poll cancelled at shutdown, which is not an error.
logging.getLogger("apscheduler.executors").setLevel(logging.CRITICAL)


BACKOFF_AFTER_FAILURES = 3  # failed polls in a row before a device is polled less often
# A storm: at least this many devices (or this share of the fleet, if more) stopped answering within one
# interval. Until it passes every poll starts with a reachability check (see Poller.in_storm).
STORM_MIN_DEVICES = 3
STORM_SHARE = 0.02
UNREACHABLE_KINDS = frozenset({"timeout", "refused", "unreachable"})


class Collector(Protocol):
    async def poll(self) -> PollResult: ...
    async def close(self) -> None: ...


@dataclass
class DeviceSchedule:
    name: str
    collectors: list[Collector]
    failures: int = 0
    next_allowed: float = 0.0  # clock time before which the device is skipped (backoff)
    polls: int = 0
    # What the device's detail shows, trimmed (_for_detail): the newest poll that answered, kept while later
    # ones do not (its figures are then the last known, flagged stale); ``unanswered`` holds the newest poll's
    # failures meanwhile, ``silent_since`` when the first of them started.
    last_results: list[PollResult] = field(default_factory=list)
    detail_interfaces: tuple[tuple[Any, ...], ...] = ()  # InterfaceRow's fields, from the result the detail shows
    unanswered: list[PollResult] = field(default_factory=list)
    silent_since: float | None = None
    setup_error: str | None = None  # e.g. a missing secret: reported, never raised
    running: bool = False
    again: bool = False  # a poll was asked for while one ran: run once more right after it
    last_done_started: float = float("-inf")  # clock time the last completed poll started
    suspect: bool = False  # something near it failed: check it answers before a full poll
    reach: ReachTarget | None = None  # what the reachability check asks (from the collectors' targets)
    checks: int = 0  # full polls replaced by a failed reachability check


def shared_snmp_engine(config: Config) -> Any | None:
    """The pysnmp engine for ``build_collectors`` to share, or None when no device polls SNMPv3.

    SNMPv1/v2c go through collectors/snmp_wire and need no engine; only a device whose SNMP
    profile is version 3 makes pysnmp load (about 24 MB of RSS) and an engine be built.
    """
    if not any(d.snmp and (p := config.snmp.get(d.snmp)) is not None and p.version == "3"
               for d in config.devices):
        return None
    from ispvm_tui.collectors.snmp_v3 import new_engine

    return new_engine()


def build_collectors(config: Config, device: Device, secrets: SecretSource, clock: Clock,
                     snmp_engine: object | None = None) -> list[Collector]:
    """The collectors a device's config asks for. Raises SecretError with a clear message.

    ``snmp_engine`` (``shared_snmp_engine``) is shared by every SNMPv3 collector: building a
    pysnmp engine costs about a second of CPU, which per device would stall the loop for the
    whole fleet at start-up. v1/v2c collectors do not use it.
    """
    collectors: list[Collector] = []
    timeout = config.polling.timeout_s
    if device.credential:
        from ispvm_tui.collectors.routeros import ApiTarget, RouterOSCollector

        cred = config.credentials[device.credential]
        password = secrets.get(cred.password_secret)
        if password is None:
            raise SecretError(f"{device.name}: secret {cred.password_secret!r} (credential {device.credential!r}) "
                              f"is not in the keyring or the secrets file; add it with "
                              f"`ispvm secret set {cred.password_secret}`")
        target = ApiTarget(name=device.name, address=device.address, username=cred.username, password=password,
                           port=device.api_port, tls=device.api_tls, tls_verify=device.api_tls_verify)
        specs = [p for p in config.probes if p.device == device.name]
        if specs:
            from ispvm_tui.collectors.routeros import ProbeSpec

            target = dataclasses.replace(target, probes=tuple(
                ProbeSpec(target=p.target, count=p.count, size=p.size) for p in specs))
        collectors.append(RouterOSCollector(target, clock=clock, timeout=timeout))
    if device.snmp:
        from ispvm_tui.collectors.snmp import SnmpCollector, SnmpTarget

        prof = config.snmp[device.snmp]

        def need(name: str | None, what: str) -> str:
            value = secrets.get(name) if name else None
            if value is None:
                raise SecretError(f"{device.name}: SNMP profile {device.snmp!r} needs {what} "
                                  f"(secret {name!r} not found)")
            return value

        port = device.snmp_port or prof.port
        if prof.version == "2c":
            target = SnmpTarget(name=device.name, address=device.address, port=port, version="2c",
                                community=need(prof.community_secret, "a community"),
                                timeout=prof.timeout_s, retries=prof.retries)
        else:
            target = SnmpTarget(
                name=device.name, address=device.address, port=port, version="3", v3_user=prof.v3_user,
                v3_auth_key=need(prof.v3_auth_secret, "an auth key"), v3_auth_proto=prof.v3_auth_proto,
                v3_priv_key=need(prof.v3_priv_secret, "a privacy key"), v3_priv_proto=prof.v3_priv_proto,
                timeout=prof.timeout_s, retries=prof.retries,
            )
        collectors.append(SnmpCollector(target, clock=clock, engine=snmp_engine,  # type: ignore[arg-type]
                                        poll_timeout=timeout))
    return collectors


def _is_snmp(collector: Collector) -> bool:
    return type(collector).__name__ == "SnmpCollector"


def _kind(collector: Collector) -> str:
    """The name a collector's results carry in ``PollResult.collector``."""
    return "snmp" if _is_snmp(collector) else "api"


def reach_target(name: str, collectors: list[Collector]) -> ReachTarget | None:
    """The reachability check for a device, from its collectors' own targets (same address, ports, community)."""
    api_port = snmp_port = address = community = None
    tls, version = False, "2c"
    for c in collectors:
        target: Any = getattr(c, "target", None)
        if target is None:
            continue
        address = target.address
        if _is_snmp(c):
            snmp_port, version, community = target.port, target.version, target.community
        else:
            api_port, tls = target.port, target.tls
    if address is None:
        return None
    return ReachTarget(name=name, address=address, api_port=api_port, api_tls=tls, snmp_port=snmp_port,
                       snmp_version=version, community=community)


def _slow(result: PollResult) -> PollResult:
    """A poll that timed out right after the device answered the reachability check: the device is there,
    the poll was slow (a busy router or a loaded host). Slow is not unreachable: it never pages as down."""
    if result.ok or result.error_kind != "timeout":
        return result
    return dataclasses.replace(result, error_kind="slow",
                               error=f"answered a reachability check, then the poll timed out: {result.error}")


def _for_detail(results: list[PollResult]) -> tuple[list[PollResult], tuple[tuple[Any, ...], ...]]:
    """What a device's detail is built from (Engine.device_detail): the results without what it never shows
    (addresses, neighbours, probes, storage, every interface row), and the interfaces of the result it shows
    (the API's when it answered) as bare tuples of InterfaceRow's fields. Whole results were ~18 MB at 1,000
    routers x 24 interfaces, most of it interface rows with their MACs, types and packet counters."""
    shown = next((r for r in results if r.ok and r.collector == "api"), None) or next((r for r in results if r.ok),
                                                                                     None)
    rows = tuple((i.name, i.admin_up, i.oper_up, i.speed_bps, i.rx_bytes, i.tx_bytes, i.rx_errors, i.tx_errors,
                  i.rx_discards, i.tx_discards, i.alias) for i in (shown.interfaces if shown else ()))
    kept = [r if not (r.interfaces or r.addresses or r.neighbors or r.probes or r.storage) else
            dataclasses.replace(r, interfaces=(), addresses=(), neighbors=None, probes=(), storage=None)
            for r in results]
    return kept, rows


def _keep_for_detail(sched: DeviceSchedule, results: list[PollResult], started_at: float) -> None:
    """A poll that answered replaces what the detail shows; one that did not leaves the last answer there."""
    if any(r.ok for r in results) or not any(r.ok for r in sched.last_results):
        sched.last_results, sched.detail_interfaces = _for_detail(results)
        sched.unanswered, sched.silent_since = [], None
        return
    sched.unanswered = [dataclasses.replace(r, interfaces=(), addresses=()) for r in results]
    if sched.silent_since is None:
        sched.silent_since = started_at


class Poller:
    """Runs every device's collectors on schedule and hands results to ``on_results``."""

    def __init__(self, config: Config, clock: Clock, schedules: dict[str, DeviceSchedule],
                 on_results: Callable[[str, list[PollResult]], Awaitable[None]],
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.clock = clock
        self.schedules = schedules
        self.on_results = on_results
        self._sem = asyncio.Semaphore(config.polling.concurrency)
        self._snmp_sem = asyncio.Semaphore(min(config.polling.snmp_concurrency, config.polling.concurrency))
        self._check_sem = asyncio.Semaphore(config.polling.check_concurrency)
        for name, sched in schedules.items():
            if sched.reach is None:
                sched.reach = reach_target(name, sched.collectors)
        self._rng = rng or random.Random()
        self._scheduler: AsyncIOScheduler | None = None
        self._went_dark: deque[float] = deque()  # clock times devices that answered stopped answering
        self.storm_threshold = max(STORM_MIN_DEVICES, math.ceil(STORM_SHARE * len(schedules)))
        self._storm = False
        self.first_at: dict[str, float] = {}  # device -> epoch time of its first poll
        self._first_calls: list[asyncio.TimerHandle] = []
        self.poll_seconds: deque[float] = deque(maxlen=1000)  # real seconds per device poll, recent
        self.skipped_overlaps = 0  # turns skipped because the previous poll of that device still ran
        self._running: set[asyncio.Task[object]] = set()
        # Config reads (engine/config_watch.py): asked for after a poll, run in the device's slot so they never
        # share its API session with a poll, bounded apart from the polls.
        self.config_due: Callable[[str, float], bool] | None = None
        self.on_config: Callable[[str, list[ConfigRead]], Awaitable[None]] | None = None
        self._config_sem = asyncio.Semaphore(config.config_watch.concurrency)

    def interval_of(self, name: str) -> float:
        """Clock seconds between polls of one device (its own interval_s, else the fleet's)."""
        return self.config.interval_of(name)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._scheduler = AsyncIOScheduler(event_loop=loop)
        self._scheduler.add_listener(self._on_overlap, EVENT_JOB_MAX_INSTANCES)
        now = time.time()
        for name in self.schedules:
            interval = self.clock.to_real(self.interval_of(name))
            first, phase = self.first_and_phase(interval, now)
            grace = int(interval) + 1
            # The first poll, soon, so the console fills: a loop timer, not a job (a scheduler job costs
            # ~0.2 ms to add: 0.2 s of start-up per 1,000 devices). Then the device's own phase, once per interval.
            self.first_at[name] = first
            self._first_calls.append(loop.call_later(first - now, self._first_poll, name))
            self._scheduler.add_job(
                self.poll_device, IntervalTrigger(seconds=interval, start_date=datetime.fromtimestamp(phase, UTC)),
                args=[name], id=f"poll:{name}", max_instances=1, coalesce=True, misfire_grace_time=grace,
            )
        self._scheduler.start()

    def _first_poll(self, name: str) -> None:
        asyncio.get_running_loop().create_task(self.poll_device(name), name=f"first-poll:{name}")

    def first_and_phase(self, interval: float, now: float | None = None) -> tuple[float, float]:
        """Epoch times of a device's first poll (within 5 s) and of its second, which sets its phase.

        The second comes 10 %..100 % of an interval after the first, uniformly: the fleet's polls are
        spread over the whole interval from then on, never more than one interval apart.
        """
        now = time.time() if now is None else now
        first = now + self._rng.uniform(0.05, max(0.1, min(interval, 5.0)))
        return first, first + interval * self._rng.uniform(0.1, 1.0)

    def _on_overlap(self, event: JobSubmissionEvent) -> None:
        self.skipped_overlaps += 1

    async def stop(self) -> None:
        for call in self._first_calls:
            call.cancel()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        for sched in self.schedules.values():
            for c in sched.collectors:
                try:
                    await asyncio.wait_for(c.close(), 2)
                except Exception:  # closing a dead connection may fail; nothing to keep
                    log.debug("closing collector for %s failed", sched.name, exc_info=True)

    def poll_soon(self, names: Iterable[str], delay_s: float = 0.0, suspect: bool = False) -> None:
        """Poll these devices now (or after ``delay_s`` clock seconds), backoff or not, in the order given.

        The correlator asks for this when something near them failed or recovered, so it decides
        on fresh answers instead of whatever each device's schedule happened to bring last. ``suspect``:
        they are probably cut off too, so each is checked for an answer before it gets a full poll.
        """
        for name in names:
            sched = self.schedules.get(name)
            if sched is None or not sched.collectors:
                continue
            if suspect:
                sched.suspect = True
            if delay_s <= 0 and sched.running:
                sched.again = True
                continue
            task = asyncio.get_running_loop().create_task(self._forced(name, delay_s), name=f"poll-now:{name}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _forced(self, name: str, delay_s: float) -> None:
        if delay_s > 0:
            await self.clock.sleep(delay_s)
        await self.poll_device(name, forced=True)

    async def poll_device(self, name: str, forced: bool = False) -> list[PollResult] | None:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        try:
            return await self._poll_device(name, forced)
        except asyncio.CancelledError:
            # Only stop() cancels polls; ending quietly keeps the scheduler from logging a failure.
            return None

    async def _poll_device(self, name: str, forced: bool = False) -> list[PollResult] | None:
        sched = self.schedules[name]
        now = self.clock.now()
        if not sched.collectors or (not forced and now < sched.next_allowed):
            return None
        if sched.running:
            if forced:
                sched.again = True
            else:
                self.skipped_overlaps += 1
            return None
        sched.running = True
        try:
            checked = self._should_check(sched)
            results = await self._check(name, sched) if checked else None
            if results is None:
                async with self._sem:
                    started_at = self.clock.now()
                    started = time.monotonic()
                    results = list(await asyncio.gather(*(self._safe_poll(name, c) for c in sched.collectors)))
                    self.poll_seconds.append(time.monotonic() - started)
                if checked:
                    results = [_slow(r) for r in results]
            else:
                started_at = results[0].started_at
            reads = await self._read_config(name, sched, results) if self._config_wanted(name, results) else None
        finally:
            sched.running = False
        sched.polls += 1
        _keep_for_detail(sched, results, started_at)
        sched.last_done_started = started_at
        if any(r.ok for r in results):
            sched.failures, sched.next_allowed, sched.suspect = 0, 0.0, False
        else:
            if sched.failures == 0 and all(r.error_kind in UNREACHABLE_KINDS for r in results):
                self._went_dark.append(now)
            sched.failures += 1
            grace = BACKOFF_AFTER_FAILURES
            # The attach points are never backed off: everything is reached through them, so their answer
            # is the first sign that a total outage is over (recovery then re-polls what is behind them).
            if sched.failures > grace and name not in self.config.console.attach:
                delay = min(self.interval_of(name) * 2 ** (sched.failures - grace - 1),
                            self.config.polling.backoff_max_s)
                sched.next_allowed = now + delay
        await self.on_results(name, results)
        if reads is not None and self.on_config is not None:
            await self.on_config(name, reads)
        if sched.again:
            sched.again = False
            self.poll_soon([name])
        return results

    def _config_wanted(self, name: str, results: list[PollResult]) -> bool:
        # A read waiting for a free config slot would hold the device's poll slot (sched.running) and skip its
        # polls meanwhile: at start-up every device wants its baseline, and 300 devices behind 8 slots kept
        # some unpolled for two minutes. A device that finds every slot taken reads after a later poll instead.
        return (self.config_due is not None and self.on_config is not None and any(r.ok for r in results)
                and not self._config_sem.locked() and self.config_due(name, self.clock.now()))

    async def _read_config(self, name: str, sched: DeviceSchedule, results: list[PollResult]) -> list[ConfigRead]:
        """Each collector that answered this poll and can read configuration, one after the other."""
        ok = {r.collector for r in results if r.ok}
        reads: list[ConfigRead] = []
        async with self._config_sem:
            for collector in sched.collectors:
                reader = getattr(collector, "read_config", None)
                if reader is None or _kind(collector) not in ok:
                    continue
                try:
                    reads.append(await reader())
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a reader bug is a failed read, never a stopped poller
                    log.exception("config read of %s raised", name)
                    reads.append(ConfigRead(device=name, collector=_kind(collector), started_at=self.clock.now(),
                                            ok=False, error=f"internal error: {type(exc).__name__}"))
        return reads

    def _should_check(self, sched: DeviceSchedule) -> bool:
        return (self.config.polling.check_timeout_s > 0 and sched.reach is not None
                and (sched.failures > 0 or sched.suspect or self.in_storm()))

    def in_storm(self) -> bool:
        """Several devices stopped answering within one interval (a power cut, a fibre cut before the engine
        knows what is behind it): every poll then starts with a reachability check until the storm passes.
        A dead router costs a check in the wide pool instead of a full poll holding a poll slot (and an SNMP
        slot) for its whole timeout, so the live routers' polls and the dead ones' confirmations are not
        queued behind hundreds of timeouts; a live router answers the check in milliseconds."""
        horizon = self.clock.now() - self.config.polling.interval_s
        dark = self._went_dark
        while dark and dark[0] < horizon:
            dark.popleft()
        storm = len(dark) >= self.storm_threshold
        if storm != self._storm:
            self._storm = storm
            if storm:
                log.warning("%d devices stopped answering within %.0f s: polls start with a reachability check",
                            len(dark), self.config.polling.interval_s)
            else:
                log.info("no more devices stopping to answer: polls without a reachability check again")
        return storm

    async def _check(self, name: str, sched: DeviceSchedule) -> list[PollResult] | None:
        """None when the device answers (it gets a full poll); else its failed poll, one result per collector."""
        timeout = min(self.config.polling.check_timeout_s, self.config.polling.timeout_s)
        started_at = self.clock.now()
        assert sched.reach is not None
        async with self._check_sem:
            reach = await reachability.check(sched.reach, timeout)
        if reach.ok:
            return None
        sched.checks += 1
        return [PollResult(device=name, collector=_kind(c), started_at=started_at,
                           duration_s=reach.seconds, ok=False, error=reach.detail, error_kind=reach.kind)
                for c in sched.collectors]

    async def _safe_poll(self, name: str, collector: Collector) -> PollResult:
        try:
            if _is_snmp(collector):
                async with self._snmp_sem:
                    return await collector.poll()
            return await collector.poll()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a collector bug must not stop the fleet
            log.exception("collector for %s raised", name)
            return PollResult(device=name, collector=_kind(collector), started_at=self.clock.now(), duration_s=0.0,
                              ok=False, error=f"internal error: {type(exc).__name__}", error_kind="error")
