"""The engine: polls, stores, alerts, correlates, notifies.

It runs on one asyncio loop (its own thread under the console) and is the
only writer of state. Front-ends see it through ``EngineAPI`` (api.py):
``snapshot()`` hands out an immutable copy rebuilt after every change, and
actions are coroutines scheduled onto the engine's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import duckdb

from ispvm_tui.clock import Clock
from ispvm_tui.collectors.results import InterfaceStat, PollResult
from ispvm_tui.config import Config
from ispvm_tui.engine import outbox, webhooks
from ispvm_tui.engine.api import (
    DeviceView,
    EngineEvent,
    EntityState,
    IncidentView,
    LinkView,
    SiteView,
    Snapshot,
)
from ispvm_tui.engine.correlator import correlate
from ispvm_tui.engine.incidents import UPSERT_INCIDENT, Change, Incident, IncidentBook
from ispvm_tui.engine.polling import DeviceSchedule, Poller, build_collectors
from ispvm_tui.engine.rates import CounterSample, rate_bps, summed_rate
from ispvm_tui.engine.rollups import maintenance_once
from ispvm_tui.engine.rules import Alert, RuleEngine, Transition
from ispvm_tui.engine.store import Store
from ispvm_tui.engine.topology import Topology
from ispvm_tui.secrets import SecretError, SecretSource

log = logging.getLogger(__name__)

UPSERT_ALERT = "INSERT OR REPLACE INTO alerts VALUES (" + ",".join(["?"] * 13) + ")"


@dataclass
class DeviceRuntime:
    last_poll_at: float | None = None
    ok: bool | None = None
    last_error: str | None = None
    version: str | None = None
    uptime_s: float | None = None
    cpu_load: int | None = None
    oper: dict[str, bool | None] | None = None  # interface -> oper up


async def _bounded(awaitable: Any, what: str, timeout: float = 10.0) -> None:
    """Wait for a shutdown step, but never longer than ``timeout`` (asyncio.wait does not wait
    for a stuck task to acknowledge cancellation, unlike wait_for)."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        log.error("stopping %s took longer than %.0fs; going on without it", what, timeout)
    elif not task.cancelled() and task.exception() is not None:
        log.error("stopping %s failed: %s", what, task.exception())


def _alert_row(a: Alert) -> list[Any]:
    return [a.id, a.rule, a.entity_type, a.entity_id, a.severity, a.state, a.starts_at, a.ends_at, a.summary,
            json.dumps(a.evidence), json.dumps(a.labels), a.incident_id, a.suppressed]


class Engine:
    def __init__(self, config: Config, *, store: Store, clock: Clock, secrets: SecretSource) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.secrets = secrets
        self.topology = Topology(config)
        self.rules = RuleEngine(config)
        self.book = IncidentBook(config.incidents.close_after_s, config.incidents.update_every_s)
        self.alerts: dict[str, Alert] = {}
        self.runtime: dict[str, DeviceRuntime] = {d.name: DeviceRuntime() for d in config.devices}
        self.setup_errors: dict[str, str] = {}
        self.endpoints = self._endpoints()
        tenant = config.tenant
        self.tenant = webhooks.Tenant(str(tenant.id), tenant.name) if tenant else None
        self._subscribers: list[Callable[[EngineEvent], None]] = []
        self._sub_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._correlate_soon = asyncio.Event()
        self._counters: dict[tuple[str, str, str], tuple[CounterSample | None, ...]] = {}
        self.poller: Poller | None = None
        self._snmp_engine: Any = None
        self.dispatcher: outbox.OutboxDispatcher | None = None
        self.polls_total = 0
        self.polls_failed = 0
        self.last_maintenance: dict[str, Any] | None = None
        self._snapshot = self._build_snapshot()

    def _endpoints(self) -> list[webhooks.WebhookEndpoint]:
        out = []
        for hook in self.config.notify.webhooks:
            secret = None
            if hook.secret:
                secret = self.secrets.get(hook.secret)
                if secret is None:
                    raise SecretError(f"webhook {hook.name!r}: secret {hook.secret!r} not found; "
                                      f"add it with `ispvm secret set {hook.secret}`")
            out.append(webhooks.WebhookEndpoint(
                name=hook.name, url=hook.url, secret=secret, timeout_s=hook.timeout_s,
                max_attempts=hook.max_attempts, max_age_s=hook.max_age_s, events=frozenset(hook.events)))
        return out

    # ---- lifecycle ------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._correlate_soon = asyncio.Event()
        await asyncio.to_thread(self._restore)
        schedules: dict[str, DeviceSchedule] = {}
        snmp_engine = None
        if any(d.snmp for d in self.config.devices):
            from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

            snmp_engine = SnmpEngine()
        self._snmp_engine = snmp_engine
        for dev in self.config.devices:
            try:
                collectors = build_collectors(self.config, dev, self.secrets, self.clock, snmp_engine)
            except (SecretError, ValueError) as exc:
                self.setup_errors[dev.name] = str(exc)
                self.runtime[dev.name].last_error = str(exc)
                self._publish("engine.error", str(exc))
                collectors = []
            schedules[dev.name] = DeviceSchedule(dev.name, collectors)
        # pysnmp's MIB tree and the inventory are long-lived: freezing them keeps every later
        # collection from walking them again (measured: 15-25 % of SNMP polling CPU), and a higher
        # gen-0 threshold suits a poller that allocates many short-lived objects per reply.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 10, 10)
        self.poller = Poller(self.config, self.clock, schedules, self._on_results)
        self.poller.start()
        self.dispatcher = outbox.OutboxDispatcher(self.store, self.endpoints, self.clock, self.tenant,
                                                  on_result=self._on_delivery)
        self._tasks = [
            asyncio.create_task(self._correlation_loop(), name="correlator"),
            asyncio.create_task(self.dispatcher.run(poll_real_s=min(1.0, self.clock.to_real(2.0))), name="outbox"),
            asyncio.create_task(self._maintenance_loop(), name="rollups"),
        ]
        self._refresh_snapshot()

    async def stop(self) -> None:
        """Stop polling and delivery; every step is bounded so quitting never hangs."""
        for task in self._tasks:
            task.cancel()
        await _bounded(asyncio.gather(*self._tasks, return_exceptions=True), "background tasks")
        if self.poller is not None:
            await _bounded(self.poller.stop(), "pollers")
        if self._snmp_engine is not None:
            self._snmp_engine.close_dispatcher()  # its timer task would outlive the loop otherwise
            self._snmp_engine = None
        await _bounded(asyncio.to_thread(self.store.flush), "store flush", timeout=30)

    def _restore(self) -> None:
        rows = self.store.query_dicts(
            "SELECT * FROM incidents WHERE status <> 'closed' OR closed_at >= ? ORDER BY opened_at",
            [self.clock.now() - 86400])
        self.book.restore([Incident.from_row(r) for r in rows])
        firing = []
        for r in self.store.query_dicts("SELECT * FROM alerts WHERE state = 'firing'"):
            alert = Alert(id=r["id"], rule=r["rule"], entity_type=r["entity_type"], entity_id=r["entity_id"],
                          severity=r["severity"], starts_at=r["starts_at"], summary=r["summary"],
                          evidence=json.loads(r["evidence"] or "[]"), labels=json.loads(r["labels"] or "{}"),
                          incident_id=r["incident_id"], suppressed=bool(r["suppressed"]))
            firing.append(alert)
            self.alerts[alert.id] = alert
        self.rules.restore(firing)

    # ---- polling results ------------------------------------------------
    async def _on_results(self, device: str, results: list[PollResult]) -> None:
        now = self.clock.now()
        self.polls_total += len(results)
        self.polls_failed += sum(1 for r in results if not r.ok)
        self._store_samples(device, results)
        self._update_runtime(device, results, now)
        transitions = self.rules.observe(device, results, now)
        if any(not t.fired for t in transitions) and self.poller is not None:
            # Something came back: whatever was backed off behind it may be back too, so ask now.
            for sched in self.poller.schedules.values():
                sched.next_allowed = 0.0
        if transitions:
            await self._persist_alerts(transitions)
            self._correlate_soon.set()
        self._refresh_snapshot()

    def _store_samples(self, device: str, results: list[PollResult]) -> None:
        polls, itfs, health, bgp, ospf, sensors, probes, neighbors = [], [], [], [], [], [], [], []
        for r in results:
            ts = r.started_at
            stale = ",".join(f"{k}: {v}" for k, v in r.stale.items()) or None
            polls.append((ts, device, r.collector, r.ok, r.duration_s, r.error_kind, r.error, stale))
            if not r.ok:
                continue
            uptime = r.system.uptime_s if r.system else None
            if r.system:
                s = r.system
                health.append((ts, device, r.collector, s.uptime_s, s.cpu_load, s.total_memory, s.free_memory,
                               s.version, r.route_count))
            for i in r.interfaces:
                rx_bps, tx_bps, errors_ps, discards_ps = self._rates(device, r.collector, i, ts, uptime)
                # The column order of interface_samples (migration 1, then 3's additions at the end).
                itfs.append((ts, device, i.name, r.collector, i.ifindex, i.admin_up, i.oper_up, i.speed_bps,
                             i.rx_bytes, i.tx_bytes, rx_bps, tx_bps,
                             i.rx_errors, i.tx_errors, i.rx_discards, i.tx_discards, errors_ps, discards_ps))
            for b in r.bgp or ():
                bgp.append((ts, device, b.name, b.remote_address, b.remote_as, b.state, b.established, b.uptime_s,
                            b.prefixes))
            for o in r.ospf or ():
                ospf.append((ts, device, o.router_id, o.address, o.interface, o.state, o.full))
            for h in r.sensors or ():
                sensors.append((ts, device, r.collector, h.name, h.value, h.unit, h.state))
            for p in r.probes:
                probes.append((ts, device, p.target, p.sent, p.received, p.loss_pct, p.rtt_min_ms, p.rtt_avg_ms,
                               p.rtt_max_ms, p.jitter_ms, p.error))
            for n in r.neighbors or ():
                neighbors.append((ts, device, r.collector, n.local_interface, n.remote_identity, n.remote_interface,
                                  n.remote_address, n.remote_mac, n.platform, n.protocol))
        for table, rows in (("poll_log", polls), ("interface_samples", itfs), ("health_samples", health),
                            ("bgp_samples", bgp), ("ospf_samples", ospf), ("sensor_samples", sensors),
                            ("probe_samples", probes), ("neighbor_samples", neighbors)):
            self.store.append(table, rows)

    def _rates(self, device: str, collector: str, itf: InterfaceStat, ts: float,
               uptime: float | None) -> tuple[float | None, float | None, float | None, float | None]:
        """Since this interface's previous sample from the same collector: rx and tx bits per second,
        errors and discards per second (in + out)."""
        key = (device, collector, itf.name)
        clock = collector == "snmp"  # sysUpTime: 10 ms ticks; RouterOS uptime has 1 s resolution
        # IF-MIB errors and discards are Counter32 even where the octets are 64-bit; RouterOS's are 64-bit.
        loss_bits = 32 if collector == "snmp" else 64
        counters = ((itf.rx_bytes, itf.counter_bits), (itf.tx_bytes, itf.counter_bits),
                    (itf.rx_errors, loss_bits), (itf.tx_errors, loss_bits),
                    (itf.rx_discards, loss_bits), (itf.tx_discards, loss_bits))
        cur = tuple(None if value is None else CounterSample(ts, value, uptime, bits, clock)
                    for value, bits in counters)
        prev = self._counters.get(key) or (None,) * len(cur)
        self._counters[key] = cur
        rx_bps = tx_bps = None
        if all(s is not None for s in (*prev[:2], *cur[:2])):
            rx_bps, tx_bps = rate_bps(prev[0], cur[0]), rate_bps(prev[1], cur[1])  # type: ignore[arg-type]
        errors_ps = summed_rate([(prev[2], cur[2]), (prev[3], cur[3])])
        discards_ps = summed_rate([(prev[4], cur[4]), (prev[5], cur[5])])
        return rx_bps, tx_bps, errors_ps, discards_ps

    def _update_runtime(self, device: str, results: list[PollResult], now: float) -> None:
        rt = self.runtime[device]
        rt.last_poll_at = now
        ok = [r for r in results if r.ok]
        rt.ok = bool(ok)
        rt.last_error = None if ok else "; ".join(f"{r.collector}: {r.error}" for r in results)
        if ok:
            best = next((r for r in ok if r.collector == "api"), ok[0])
            if best.system:
                rt.version, rt.uptime_s, rt.cpu_load = best.system.version, best.system.uptime_s, best.system.cpu_load
            rt.oper = {i.name: i.oper_up for i in best.interfaces}

    async def _persist_alerts(self, transitions: list[Transition]) -> None:
        for t in transitions:
            self.alerts[t.alert.id] = t.alert
            self._publish("alert.fired" if t.fired else "alert.resolved", t.alert.summary)
        rows = [_alert_row(t.alert) for t in transitions]

        def write(con: duckdb.DuckDBPyConnection) -> None:
            for row in rows:
                con.execute(UPSERT_ALERT, row)

        await asyncio.wrap_future(self.store.transaction(write))

    # ---- rollups and retention -----------------------------------------
    async def _maintenance_loop(self) -> None:
        every = self.clock.to_real(self.config.retention.run_every_s)
        # Samples reach disk within a flush, but a slow poll can stamp them up to a timeout late.
        grace = max(60.0, 2 * self.config.polling.timeout_s)
        while True:
            await asyncio.sleep(every)
            try:
                counts = await maintenance_once(self.store, self.clock.now(), self.config.retention, grace_s=grace)
                self.last_maintenance = counts
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # next round retries; the raw samples are still there
                log.exception("rollup/retention round failed")
                self._publish("engine.error", f"rollup/retention failed: {exc}")

    # ---- correlation ----------------------------------------------------
    async def _correlation_loop(self) -> None:
        every = self.clock.to_real(self.config.incidents.correlate_every_s)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._correlate_soon.wait(), every)
            self._correlate_soon.clear()
            try:
                await self.correlate_now()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("correlation failed")
                self._publish("engine.error", f"correlation failed: {exc}")

    async def correlate_now(self) -> list[Change]:
        now = self.clock.now()
        firing = list(self.rules.firing.values())
        plans = correlate(firing, self.topology, self.config, now)
        changes = self.book.reconcile(plans, now)
        ids_by_incident = {}
        for inc in self.book.open.values():
            for aid in inc.alert_ids:
                ids_by_incident[aid] = inc.id
        suppressed = {aid for p in plans for aid in p.suppressed_ids}
        dirty = []
        for alert in firing:
            inc_id, sup = ids_by_incident.get(alert.id), alert.id in suppressed
            if (alert.incident_id, alert.suppressed) != (inc_id, sup):
                alert.incident_id, alert.suppressed = inc_id, sup
                dirty.append(_alert_row(alert))
        for change in changes:
            await self._persist_change(change, now, extra_alert_rows=dirty)
            dirty = []
        if dirty:
            rows = dirty
            await asyncio.wrap_future(self.store.transaction(lambda con: [con.execute(UPSERT_ALERT, r) for r in rows]))
        if changes:
            self._refresh_snapshot()
        return changes

    async def _persist_change(self, change: Change, now: float, *, extra_alert_rows: list[list[Any]] = (),
                              audit: tuple[str, str, str] | None = None) -> None:
        view = change.snapshot.view(self.alerts)
        payload = webhooks.incident_object(view, self.config.ispvm.base_url)
        row = change.snapshot.row()

        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(UPSERT_INCIDENT, row)
            for alert_row in extra_alert_rows:
                con.execute(UPSERT_ALERT, alert_row)
            if change.event is not None:
                outbox.enqueue(con, self.endpoints, view.id, change.event, payload, now)
            if audit is not None:
                con.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?)", [now, audit[0], audit[1], view.id, audit[2]])

        await asyncio.wrap_future(self.store.transaction(write))
        if change.event is not None:
            self._publish(change.event, view.title, view.id)
            if self.dispatcher is not None:
                self.dispatcher.wake()

    def _on_delivery(self, result: outbox.DeliveryResult) -> None:
        if result.status == "dead":
            self._publish("delivery.dead", f"{result.event_type} to {result.endpoint} dead-lettered: {result.error}",
                          result.incident_id)
        elif result.status == "retry":
            self._publish("delivery.failed", f"{result.event_type} to {result.endpoint} failed "
                                             f"(attempt {result.attempts}): {result.error}", result.incident_id)

    # ---- actions (engine loop) -----------------------------------------------
    async def ack(self, incident_id: str, actor: str) -> IncidentView:
        now = self.clock.now()
        change = self.book.acknowledge(incident_id, actor, now)
        if change.event is not None:
            await self._persist_change(change, now, audit=(actor, "incident.ack", ""))
        self._refresh_snapshot()
        return change.incident.view(self.alerts)

    async def resend_delivery(self, event_id: str, actor: str) -> None:
        now = self.clock.now()
        await asyncio.wrap_future(self.store.transaction(lambda con: outbox.resend(con, event_id, actor, now)))
        if self.dispatcher is not None:
            self.dispatcher.wake()

    # ---- EngineAPI (any thread) -------------------------------------------
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def subscribe(self, callback: Callable[[EngineEvent], None]) -> Callable[[], None]:
        with self._sub_lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._sub_lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def acknowledge(self, incident_id: str, actor: str) -> Future[IncidentView]:
        return self._submit(self.ack(incident_id, actor))

    def resend(self, event_id: str, actor: str) -> Future[None]:
        return self._submit(self.resend_delivery(event_id, actor))

    def _submit(self, coro: Any) -> Future[Any]:
        if self._loop is None:
            coro.close()
            fut: Future[Any] = Future()
            fut.set_exception(RuntimeError("engine is not running"))
            return fut
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def deliveries(self, limit: int = 200) -> list[dict[str, Any]]:
        """Outbox rows, newest first (reads only; safe from any thread)."""
        return self.store.query_dicts(
            "SELECT event_id, endpoint, incident_id, event_type, status, attempts, created_at, next_attempt_at, "
            "last_error, finished_at FROM outbox ORDER BY seq DESC LIMIT ?", [limit])

    # ---- events and snapshots -----------------------------------------------
    def _publish(self, kind: str, summary: str, incident_id: str | None = None) -> None:
        event = EngineEvent(kind=kind, at=self.clock.now(), summary=summary, incident_id=incident_id)
        with self._sub_lock:
            subscribers = list(self._subscribers)
        for cb in subscribers:
            try:
                cb(event)
            except Exception:  # a front-end's bug must not stop the engine
                log.exception("event subscriber failed")

    def _refresh_snapshot(self) -> None:
        self._snapshot = self._build_snapshot()

    def _device_state(self, name: str) -> EntityState:
        if ("device_unreachable", name) in self.rules.firing:
            return "down"
        rt = self.runtime[name]
        if rt.ok is None:
            return "unknown"
        return "up" if rt.ok else "degraded"

    def _build_snapshot(self) -> Snapshot:
        now = self.clock.now()
        devices = []
        for d in self.config.devices:
            rt = self.runtime[d.name]
            oper = rt.oper or {}
            devices.append(DeviceView(
                name=d.name, site=d.site, role=d.role, address=d.address, state=self._device_state(d.name),
                last_poll_at=rt.last_poll_at, last_error=rt.last_error or self.setup_errors.get(d.name),
                version=rt.version, uptime_s=rt.uptime_s, cpu_load=rt.cpu_load,
                interfaces_up=sum(1 for v in oper.values() if v), interfaces_total=len(oper),
            ))
        states = {d.name: d.state for d in devices}
        links = []
        for link in self.config.links:
            ends = []
            for end in (link.a, link.b):
                dev, itf = end.split(":", 1)
                if ("interface_down", end) in self.rules.firing:
                    ends.append("down")
                elif states[dev] in ("down", "unknown"):
                    ends.append("unknown")
                else:
                    up = (self.runtime[dev].oper or {}).get(itf)
                    ends.append("up" if up else "unknown" if up is None else "down")
            state: EntityState = "down" if "down" in ends else "up" if ends == ["up", "up"] else "unknown"
            if state == "unknown" and "up" in ends and any(states[e.split(":")[0]] == "down" for e in (link.a, link.b)):
                state = "down"
            links.append(LinkView(id=link.id, a=link.a, b=link.b, state=state, speed_mbps=link.speed_mbps))
        sites = []
        for s in self.config.sites:
            members = [d for d in devices if d.site == s.name]
            down = sum(1 for d in members if d.state == "down")
            st: EntityState = "unknown" if all(d.state == "unknown" for d in members) else (
                "down" if members and down == len(members) else "degraded" if down else "up")
            sites.append(SiteView(name=s.name, devices=len(members), devices_down=down, subscribers=s.subscribers,
                                  state=st))
        incidents = [inc.view(self.alerts) for inc in self.book.all()[:200]]
        return Snapshot(
            taken_at=now, vantage=tuple(self.config.console.attach), sites=tuple(sites), devices=tuple(devices),
            links=tuple(links), incidents=tuple(incidents),
            alerts=tuple(a.view() for a in self.rules.firing.values()),
            polls_total=self.polls_total, polls_failed=self.polls_failed,
        )
