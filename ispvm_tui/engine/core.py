"""The engine: polls, stores, alerts, correlates, notifies.

It runs on one asyncio loop (its own thread under the console) and is the
only writer of state. Front-ends see it through ``EngineAPI`` (api.py):
``snapshot()`` hands out an immutable copy rebuilt after every change, and
actions are coroutines scheduled onto the engine's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from ispvm_tui.clock import Clock
from ispvm_tui.collectors.results import ConfigRead, InterfaceStat, OpticalModule, PollResult
from ispvm_tui.config import Config, load_rules, remote_devices
from ispvm_tui.engine import audit_log, calendar, config_watch, control, home_status, outbox, webhooks
from ispvm_tui.engine.api import (
    AuditEntryView,
    ChangeRecordView,
    CollectorView,
    ConfigChangeView,
    DeliveryReport,
    DeviceView,
    EngineEvent,
    EntityState,
    HardeningFindingView,
    IncidentView,
    LinkView,
    MaintenanceView,
    Noise,
    ServiceView,
    SiteView,
    Snapshot,
)
from ispvm_tui.engine.config_watch import ConfigWatcher
from ispvm_tui.engine.correlator import LINK_METRICS, NetworkState, correlate, human_duration
from ispvm_tui.engine.holds import HoldBound
from ispvm_tui.engine.incidents import UPSERT_INCIDENT, Change, Incident, IncidentBook, Round
from ispvm_tui.engine.maintenance_windows import LABEL as MAINT_LABEL
from ispvm_tui.engine.maintenance_windows import Maintenance, entity_devices, scope_devices
from ispvm_tui.engine.notify import routing
from ispvm_tui.engine.notify.build import build_targets
from ispvm_tui.engine.polling import DeviceSchedule, Poller, build_collectors, shared_snmp_engine
from ispvm_tui.engine.rates import counter_delta, interval_s, summed_delta
from ispvm_tui.engine.rollups import maintenance_once
from ispvm_tui.engine.rules import Alert, Observed, RuleEngine, Transition
from ispvm_tui.engine.stats import EngineStats
from ispvm_tui.engine.store import Store
from ispvm_tui.engine.target_refs import StoreRefs
from ispvm_tui.engine.targets import Refs, Target
from ispvm_tui.engine.topology import Topology
from ispvm_tui.secrets import AuditedSecrets, MemoSecrets, SecretError, SecretSource

log = logging.getLogger(__name__)
SNAPSHOT_CONFIG_CHANGES = 50  # newest detected config changes a front-end sees
SELF_WATCH_S = 15.0  # clock seconds between the engine's checks on itself (health.self_checks)

UPSERT_ALERT = "INSERT OR REPLACE INTO alerts VALUES (" + ",".join(["?"] * 15) + ")"
MAX_UNASSIGNED = 2000
# Resolved alerts are kept for the incidents that show them; past this many the rest are let go.
ALERTS_KEPT = 20_000
UNASSIGNED_KEEP_S = 3600.0
# Real seconds between two snapshot rebuilds caused by polls. At 1,000 devices a rebuild costs ~10 ms: at 0.25 s
# that was 4 % of a core for device figures no one reads that fast (incident changes still rebuild at once).
SNAPSHOT_MIN_PAUSE_S = 1.0
INSERT_TRANSITION = "INSERT INTO incident_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


@dataclass
class DeviceRuntime:
    last_poll_at: float | None = None
    ok: bool | None = None
    last_error: str | None = None
    version: str | None = None
    uptime_s: float | None = None
    cpu_load: int | None = None
    oper: dict[str, bool | None] | None = None  # interface -> oper up
    interfaces_up: int = 0  # of oper, counted once per poll instead of once per snapshot
    answered_at: float | None = None  # the newest poll that answered: version, uptime, CPU are from it


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
            json.dumps(a.evidence), json.dumps(a.labels), a.incident_id, a.suppressed, a.metric, a.runbook]


class Engine:
    def __init__(self, config: Config, *, store: Store, clock: Clock, secrets: SecretSource) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        if config.ispvm.audit_secret_reads:
            secrets = AuditedSecrets(secrets, self._audit_secret_read)
        self.secrets = MemoSecrets(secrets)
        self.topology = Topology(config)
        self.rules = RuleEngine(config, load_rules(config))
        self.book = IncidentBook(config.incidents.close_after_s, config.incidents.update_every_s,
                                 config.incidents.reopen_window_s)
        self.alerts: dict[str, Alert] = {}
        self._alerts_cap = ALERTS_KEPT
        self.runtime: dict[str, DeviceRuntime] = {d.name: DeviceRuntime() for d in config.devices}
        self.setup_errors: dict[str, str] = {}
        tenant = config.tenant
        self.tenant = webhooks.Tenant(str(tenant.id), tenant.name) if tenant else None
        self.targets: dict[str, Target] = build_targets(config.notify, self.secrets.get, tenant=self.tenant,
                                                            clock=clock)
        self.routes = {t.name: t.route for t in config.notify.all()}
        self._tz = ZoneInfo(config.ispvm.timezone)
        # Escalation targets: sent an incident once it is unacknowledged for their route's time.
        self._escalations = [name for name, route in self.routes.items() if route.unacked_for_s > 0]
        self._escalated: set[tuple[str, str]] = set()  # (target, incident) already queued by the sweep
        self.maintenance = Maintenance(config)
        self._held_back: set[str] = set()  # incidents that notified nobody because of a maintenance window
        self.calendar_windows: list[MaintenanceView] = []  # run-time windows (canceled too): the calendar block
        self.calendar_changes: list[ChangeRecordView] = []
        self.control: control.ControlServer | None = None
        self.refs: Refs = StoreRefs(store)  # far-side keys (Jira issue, ServiceNow record) survive restarts
        self._subscribers: list[Callable[[EngineEvent], None]] = []
        self._sub_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._correlate_soon = asyncio.Event()
        self._book_lock = asyncio.Lock()
        # (device, collector) -> interface -> its last counters (see _rates)
        self._counters: dict[tuple[str, str], dict[str, tuple[Any, ...]]] = {}
        self.poller: Poller | None = None
        self.remote_devices = remote_devices(config)  # device -> its remote collector: not polled here
        self._linked: set[tuple[str, str]] = set()  # (incident, change ids) recorded in change_incidents
        self.config_watch = ConfigWatcher(config.config_watch,
                                          [d.name for d in config.devices if d.name not in self.remote_devices])
        self.centre: Any = None  # remote.centre.Centre while [remote] is configured
        self._snmp_engine: Any = None
        self.dispatcher: outbox.OutboxDispatcher | None = None
        self.polls_total = 0
        self.polls_failed = 0
        self.last_maintenance: dict[str, Any] | None = None
        # device -> clock time since which a fresh poll is needed before deciding about it
        self._settle_after: dict[str, float] = {}
        self._holds = HoldBound(config.incidents.hold_max_s)
        self._unsaved: dict[str, Alert] = {}  # alert rows whose write failed: retried every round
        self._unassigned: dict[str, Alert] = {}  # resolved alerts that no incident has claimed yet
        self.alerts_suppressed = 0  # alerts ever suppressed since start (noise figures)
        self.incidents_opened = 0
        self._critical = frozenset(d.name for d in config.devices if "critical" in d.tags)
        self._device_views: dict[str, tuple[tuple[Any, ...], DeviceView]] = {}  # see _build_snapshot
        self._link_ids = [link.id for link in config.links]
        self._snapshot = self._build_snapshot()
        self._snapshot_stale = asyncio.Event()
        self._snapshot_cost_s = 0.0  # real seconds the last rebuild took
        self._loop_thread: int | None = None
        self._stopping = threading.Event()
        self._restored = False
        self.started_at: float | None = None  # clock time the start finished (polling, outbox, socket up)
        self.stats = EngineStats()  # counters and timings for /metrics (engine/stats.py)
        self.metrics_server: Any = None  # engine/metrics.py, when [metrics] is on
        self.metrics_error: str | None = None  # why it is not served, when it is on but could not start
        self.inbound_server: Any = None  # engine/inbound.py, when [inbound] is on
        self.inbound_error: str | None = None

    # ---- lifecycle ------------------------------------------------------
    async def restore(self) -> None:
        """Take up what the store holds (open incidents, firing alerts, the calendar, config fingerprints)
        and make it the snapshot, without polling or delivering: what a console shows while the rest starts.
        ``start`` does it when nobody has; once per engine, on the loop the engine then runs on."""
        if self._restored:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._correlate_soon = asyncio.Event()
        self._book_lock = asyncio.Lock()
        self._snapshot_stale = asyncio.Event()
        await asyncio.to_thread(self._restore)
        self._restored = True
        self._refresh_snapshot()

    async def start(self) -> None:
        await self.restore()
        # Off the loop: a keyring or the encrypted file may take a while, and the loop must stay free
        # to take a SIGTERM meanwhile. Collectors are then built from the remembered values.
        await asyncio.to_thread(self._prefetch_secrets)
        schedules: dict[str, DeviceSchedule] = {}
        snmp_engine = shared_snmp_engine(self.config)  # None unless some device polls SNMPv3
        self._snmp_engine = snmp_engine
        for dev in self.config.devices:
            if dev.name in self.remote_devices:
                continue  # its collector polls it; its results arrive through the centre
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
        self.poller = Poller(self.config, self.clock, schedules, self.ingest)
        self.poller.config_due = self.config_watch.due
        self.poller.on_config = self._on_config
        self.poller.start()
        self.dispatcher = outbox.OutboxDispatcher(self.store, self.targets, self.clock, self.refs,
                                                  on_result=self._on_delivery)
        self._tasks = [
            asyncio.create_task(self._correlation_loop(), name="correlator"),
            asyncio.create_task(self.dispatcher.run(poll_real_s=min(1.0, self.clock.to_real(2.0))), name="outbox"),
            asyncio.create_task(self._maintenance_loop(), name="rollups"),
            asyncio.create_task(self._snapshot_loop(), name="snapshots"),
            asyncio.create_task(self._self_watch_loop(), name="self-watch"),
        ]
        if self.config.remote is not None:
            from ispvm_tui.remote.centre import Centre  # imports nats: only when [remote] is set

            self.centre = Centre(self)
            await self.centre.start()
        await self._start_control()
        if self.config.metrics.enabled:
            await self._start_metrics()
        if self.config.inbound.enabled:
            await self._start_inbound()
        self.started_at = self.clock.now()
        self._refresh_snapshot()

    def _longest_interval(self) -> float:
        """The longest polling interval of the devices this host polls (what a stall is measured against)."""
        return max((self.config.interval_of(d.name) for d in self.config.devices if d.name not in self.remote_devices),
                   default=self.config.polling.interval_s)

    async def _self_watch_loop(self) -> None:
        """Every SELF_WATCH_S: the engine's own poller and targets through the rules (health.self_checks)."""
        from ispvm_tui.engine import health

        interval = self._longest_interval()
        while True:
            await asyncio.sleep(self.clock.to_real(SELF_WATCH_S))
            try:
                breakers = self.dispatcher.breaker_states() if self.dispatcher is not None else {}
                now = self.clock.now()
                transitions = []
                for check in health.self_checks(self.snapshot().collectors, breakers, interval):
                    transitions += self.rules.observe_self(check.metric, check.entity, check.kind, check.bad, now,
                                                           check.summary, list(check.evidence))
                await self.apply_transitions(transitions)
            except asyncio.CancelledError:
                raise
            except Exception:  # the watcher must outlive a bad round: it is what notices the rest
                log.exception("self-watch round failed")

    def _audit_secret_read(self, name: str, found: bool) -> None:
        """[ispvm].audit_secret_reads: one audit entry per read of the secret store (the memo reads each name
        once per start). From any thread; the entry is queued on the store's writer."""
        now = self.clock.now()
        self.store.transaction(lambda con: audit_log.append(
            con, now, "engine", "secret.read", name, "found" if found else "not found"))

    async def _start_inbound(self) -> None:
        """The inbound alert endpoint on its own thread (engine/inbound.py). Like /metrics, a port taken or a
        key missing is logged and shown (ispvm health), and the engine runs on without it."""
        from ispvm_tui.engine.inbound import InboundServer, SourceKeys

        cfg = self.config.inbound
        loop = asyncio.get_running_loop()
        try:
            sources = {}
            for src in cfg.sources:
                api_key = await asyncio.to_thread(self.secrets.get, src.api_key_secret)
                hmac_key = await asyncio.to_thread(self.secrets.get, src.hmac_secret)
                if not api_key or not hmac_key:
                    missing = src.api_key_secret if not api_key else src.hmac_secret
                    raise SecretError(f"inbound source {src.name}: secret {missing!r} not found; add it with "
                                      "`ispvm secret set`")
                sources[src.name] = SourceKeys(src.kind, api_key, hmac_key, src.rate_per_s, src.burst)
            server = await asyncio.to_thread(
                InboundServer, cfg.address, cfg.port, sources,
                lambda source, alerts, delivery: asyncio.run_coroutine_threadsafe(
                    self.accept_inbound(source, alerts, delivery), loop),
                max_body_bytes=cfg.max_body_bytes, max_alerts=cfg.max_alerts, max_age_s=cfg.max_age_s)
        except (OSError, SecretError) as exc:
            self.inbound_error = f"inbound alerts not served on {cfg.address}:{cfg.port}: " + (
                exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc))
            log.error("%s", self.inbound_error)
            self._publish("engine.error", self.inbound_error)
            return
        server.start()
        self.inbound_server = server
        log.info("accepting inbound alerts on http://%s:%d/inbound/SOURCE", cfg.address, server.port)

    async def accept_inbound(self, source: str, alerts: list[Any], delivery: str) -> dict[str, Any]:
        """Alerts another system sent (engine/inbound.py, already authenticated and read): the delivery id
        recorded (one seen before: Replayed), then each alert through the rules as ``inbound.firing`` on the
        device the inventory knows it by, or standing alone; then correlation as for any alert."""
        from ispvm_tui.engine.inbound import Replayed
        from ispvm_tui.engine.inbound_formats import device_for

        now = self.clock.now()

        def record(con: duckdb.DuckDBPyConnection) -> bool:
            if con.execute("SELECT 1 FROM inbound_deliveries WHERE source = ? AND delivery_id = ?",
                           [source, delivery]).fetchone():
                return False
            con.execute("INSERT INTO inbound_deliveries VALUES (?, ?, ?, ?)", [source, delivery, now, len(alerts)])
            con.execute("DELETE FROM inbound_deliveries WHERE received_at < ?", [now - 86400])
            return True

        if not await asyncio.wrap_future(self.store.transaction(record)):
            raise Replayed(delivery)
        inventory = [(d.name, d.address) for d in self.config.devices]
        transitions: list[Transition] = []
        matched = 0
        for a in alerts:
            device = device_for(a.device_hint, inventory)
            matched += device is not None
            entity = f"{device or 'inbound'}:{source}/{a.key[:48]}"
            summary = f"{a.name} on {device}: {a.summary}" if device else f"{a.name}: {a.summary}"
            evidence = [f"{source} says: {a.summary}", *(f"{k}={v}" for k, v in sorted(a.labels.items())[:10])]
            transitions += self.rules.observe_inbound(device, entity, a.firing, now, a.severity, summary, evidence,
                                                      {"source": source, "alertname": a.name})
        await self.apply_transitions(transitions)
        return {"devices": matched, "fired": sum(1 for t in transitions if t.fired),
                "resolved": sum(1 for t in transitions if not t.fired)}

    async def _start_metrics(self) -> None:
        """/metrics on its own thread (engine/metrics.py). A port already taken is logged and shown, and the
        engine runs on without it: monitoring the monitor must not stop the monitoring."""
        from ispvm_tui.engine.metrics import MetricsServer

        m = self.config.metrics
        server = MetricsServer(self, m.address, m.port)
        try:
            await asyncio.to_thread(server.start)
        except OSError as exc:
            self.metrics_error = f"/metrics not served on {m.address}:{m.port}: {exc.strerror or exc}"
            log.error("%s", self.metrics_error)
            self._publish("engine.error", self.metrics_error)
            return
        self.metrics_server = server
        log.info("serving /metrics on http://%s:%d/metrics", m.address, server.port)

    async def health(self) -> dict[str, Any]:
        """engine/health.py's verdict on this engine now (``ispvm health``; the control socket's ``health``)."""
        from ispvm_tui.engine import health

        rows = await asyncio.to_thread(self.store.query_dicts, health.OUTBOX_SQL)
        verdict = health.assess(
            pid=os.getpid(), now=self.clock.now(), started_at=self.started_at, interval_s=self._longest_interval(),
            collectors=self.snapshot().collectors, writer_alive=self.store.writer_alive,
            writer_error=self.store.last_error, rows_dropped=self.store.rows_dropped,
            stopped_tasks=[t.get_name() for t in self._tasks if t.done()], outbox=health.Outbox(**rows[0]),
            extra_warnings=[e for e in (self.metrics_error, self.inbound_error) if e])
        return verdict.as_dict()

    async def backup(self, actor: str) -> dict[str, Any]:
        """A consistent copy of the database in backups/ beside it, made on the writer thread while nothing
        writes (engine/backup.py); audited. What the copy holds."""
        from ispvm_tui.engine import backup

        path = self.store.path.resolve()  # the client's working directory is not the engine's
        dest = backup.default_target(path, time.time())
        await asyncio.wrap_future(self.store.exclusive(lambda con: backup.copy_checkpointed(con, path, dest)))
        now = self.clock.now()
        await asyncio.wrap_future(self.store.transaction(
            lambda con: audit_log.append(con, now, actor, "db.backup", dest.name, str(dest))))
        return await asyncio.to_thread(backup.describe, dest)

    async def stop(self) -> None:
        """Stop polling and delivery; every step is bounded so quitting never hangs."""
        self._stopping.set()
        await _bounded(self._stop_control(), "control socket")
        if self.metrics_server is not None:
            await _bounded(asyncio.to_thread(self.metrics_server.stop), "metrics endpoint")
            self.metrics_server = None
        if self.inbound_server is not None:
            await _bounded(asyncio.to_thread(self.inbound_server.stop), "inbound endpoint")
            self.inbound_server = None
        if self._diagnostics is not None:
            await _bounded(self._diagnostics.stop(), "diagnostics")
        if self.centre is not None:
            await _bounded(self.centre.stop(), "remote results")
        for task in self._tasks:
            task.cancel()
        await _bounded(asyncio.gather(*self._tasks, return_exceptions=True), "background tasks")
        if self.poller is not None:
            await _bounded(self.poller.stop(), "pollers")
        if self._snmp_engine is not None:
            self._snmp_engine.close_dispatcher()  # its timer task would outlive the loop otherwise
            self._snmp_engine = None
        await _bounded(asyncio.to_thread(self.store.flush), "store flush", timeout=30)
        self._refresh_snapshot()  # what a front-end shows last is what the engine ended with

    def _prefetch_secrets(self) -> None:
        # a remote collector's devices: their secrets live in that collector's store
        names = self.config.secret_names(polled_elsewhere=self.remote_devices)
        for name in sorted(names):
            if self._stopping.is_set():
                return  # asked to stop while starting: asyncio.run would wait for this thread
            with contextlib.suppress(SecretError):  # reported per device when its collectors are built
                self.secrets.get(name)

    def _restore(self) -> None:
        rows = self.store.query_dicts(
            "SELECT * FROM incidents WHERE status <> 'closed' OR closed_at >= ? ORDER BY opened_at",
            [self.clock.now() - 86400])
        self.book.restore([Incident.from_row(r) for r in rows])
        self._held_back = {inc.id for inc in self.book.open.values() if MAINT_LABEL in inc.labels}
        firing = []
        for r in self.store.query_dicts("SELECT * FROM alerts WHERE state = 'firing'"):
            alert = Alert(id=r["id"], rule=r["rule"], entity_type=r["entity_type"], entity_id=r["entity_id"],
                          severity=r["severity"], starts_at=r["starts_at"], summary=r["summary"],
                          evidence=json.loads(r["evidence"] or "[]"), labels=json.loads(r["labels"] or "{}"),
                          incident_id=r["incident_id"], suppressed=bool(r["suppressed"]),
                          metric=r.get("metric") or self._metric_of(r["rule"]), runbook=r.get("runbook"))
            firing.append(alert)
            self.alerts[alert.id] = alert
        self.rules.restore(firing)
        self._restore_calendar()
        self.config_watch.restore(self.store.query_dicts)

    def _metric_of(self, rule: str) -> str:
        spec = self.rules.ruleset.rules.get(rule)
        return spec.metric if spec is not None else ""

    # ---- polling results ------------------------------------------------
    async def ingest(self, device: str, results: list[PollResult], *, late: bool = False) -> None:
        """One device's poll results, from the local poller or a remote collector: the same path for both.

        ``late``: a remote collector's backlog replayed after a WAN cut. It is history: stored (marked
        late), but never fed to the rules, so it neither raises past alerts nor clears current ones.
        """
        now = self.clock.now()
        self.polls_total += len(results)
        self.polls_failed += sum(1 for r in results if not r.ok)
        for r in results:
            self.stats.poll(r.collector, "ok" if r.ok else (r.error_kind or "error"), r.duration_s)
        derived = self._store_samples(device, results, late)
        if late:
            self._snapshot_stale.set()
            return
        self._update_runtime(device, results, now)
        was_pending = self.rules.is_pending("device.unreachable", device)
        started = time.perf_counter()
        observed = self.rules.observe(device, results, now, derived)
        self.stats.took("rules", time.perf_counter() - started)
        self._store_events(observed)
        self._ask_around(device, observed, was_pending, now)
        if observed.transitions:
            await self._persist_alerts(observed.transitions)
        if observed.transitions or self._settle_after or was_pending:
            self._correlate_soon.set()
        self._snapshot_stale.set()

    # ---- settling: fresh answers before a decision -----------------------
    def _ask_around(self, device: str, observed: Observed, was_pending: bool, now: float) -> None:
        """Re-poll what a change could explain, so the decision never waits on schedules.

        A device that stops answering: its neighbours (do they see its ports go down?) decide whether it
        is dead or cut off, so the decision waits for them; what is behind it is polled too, so its alerts
        come at once, but nothing waits on it (it is cut off either way). A link end seen down: the far
        end decides, and the reporter is asked again (a port already back up was a flap). Anything
        recovering: what was behind it and its neighbours are polled, and its incident waits for them,
        so what is behind a recovering root stays suppressed until it has answered (or not) again.
        """
        topo = self.topology
        settle: set[str] = set()
        poll: set[str] = set()
        suspect: set[str] = set()  # probably cut off too: checked for an answer before a full poll
        if observed.reachable is False and not was_pending and not self.rules.is_firing("device.unreachable", device):
            # Only a neighbour still answering can say whether this device's ports went down.
            near = {topo.links[lid].far(device)[0] for lid in topo.links_of.get(device, ())}
            settle |= {n for n in near if self.runtime[n].ok}
            poll |= near | topo.downstream_of(device)
            suspect |= topo.downstream_of(device) | {n for n in near if not self.runtime[n].ok}
            rules = self.rules.rules_for("device.unreachable", device)
            if rules and self.poller is not None:
                self.poller.poll_soon([device], delay_s=max(r.for_s for r in rules) + 0.01)
        for end in observed.ports_down:
            lid = topo.link_of_end[end]
            settle |= {topo.links[lid].far(device)[0], device}
            poll |= topo.downstream_of(f"link:{lid}")
            suspect |= topo.downstream_of(f"link:{lid}")
        for t in observed.transitions:
            if t.fired:
                lid = self._link_under_adjacency(device, t.alert)
                if lid is not None:
                    # An adjacency lost over a link: the API and SNMP reads of one poll are moments apart,
                    # so the port may have been seen up while OSPF saw it down (a flap). Both ends are asked
                    # again before the adjacency is judged the link's symptom or a problem of its own.
                    settle |= {device, topo.links[lid].far(device)[0]}
                continue
            if t.alert.metric == "device.unreachable":
                # Its neighbours still report its links down until they are polled again.
                settle |= topo.downstream_of(device)
                settle |= {topo.links[lid].far(device)[0] for lid in topo.links_of.get(device, ())}
            elif t.alert.entity_id in topo.link_of_end:
                lid = topo.link_of_end[t.alert.entity_id]
                settle |= topo.downstream_of(f"link:{lid}") | {topo.links[lid].far(device)[0]}
        if observed.reachable:
            settle |= self._contradicted_reporters(device, now)
        if self.poller is None:
            return
        for name in settle:
            self._settle_after[name] = now  # a poll that began before this news cannot answer it
        # What the decision waits for goes first (the poll slots are shared with everything behind it),
        # and within each group parents before children: a dead parent explains what is behind it.
        suspect -= settle
        first = topo.parents_first(settle - {device}) + ([device] if device in settle else [])
        self.poller.poll_soon(first + topo.parents_first(poll - settle - suspect - {device}))
        self.poller.poll_soon(topo.parents_first(suspect - {device}), suspect=True)

    def _link_under_adjacency(self, device: str, alert: Alert) -> str | None:
        """The configured link an OSPF adjacency alert runs over, if any."""
        itf = alert.labels.get("interface")
        if alert.metric != "ospf.down" or not itf:
            return None
        return self.topology.link_of_end.get(f"{device}:{itf}")

    def _contradicted_reporters(self, device: str, now: float) -> set[str]:
        """Devices reporting a link down although ``device``, only reachable through that link, answered
        since: one of the two is already stale (the link came back, or flapped). Ask the reporter again
        (one question at a time) before deciding anything on it."""
        out: set[str] = set()
        answered = self.rules.last_ok_at.get(device, -math.inf)
        for alert in self.rules.firing.values():
            if alert.metric not in LINK_METRICS or alert.entity_id not in self.topology.link_of_end:
                continue
            if alert.starts_at >= answered:
                continue
            lid = self.topology.link_of_end[alert.entity_id]
            if device not in self.topology.downstream_of(f"link:{lid}"):
                continue
            reporter = alert.entity_id.split(":", 1)[0]
            waiting = self._settle_after.get(reporter)
            sched = self.poller.schedules.get(reporter) if self.poller is not None else None
            if waiting is not None and sched is not None and sched.last_done_started < waiting:
                continue  # already being asked again: one question in flight is enough
            out.add(reporter)
        return out

    def _unsettled(self, now: float, pending_down: dict[str, float]) -> frozenset[str]:
        """``pending_down``: device -> first bad observation, for pending unreachable alerts still in time."""
        limit = self.config.incidents.settle_max_s
        out: set[str] = set()
        schedules = self.poller.schedules if self.poller is not None else {}
        for name, since in list(self._settle_after.items()):
            sched = schedules.get(name)
            if sched is None or sched.last_done_started >= since or now - since > limit:
                del self._settle_after[name]  # answered (or not) since; or waited long enough
            else:
                out.add(name)
        for entity, first_bad in self.rules.pending_since("interface.down").items():
            if now - first_bad <= limit and entity in self.topology.link_of_end:
                lid = self.topology.link_of_end[entity]
                out |= {self.topology.links[lid].a_device, self.topology.links[lid].b_device}
        out |= {d for d, first_bad in pending_down.items() if self._could_be_dead(d, first_bad)}
        return frozenset(out)

    def _could_be_dead(self, device: str, since: float) -> bool:
        """Whether this device's alert, once it fires, could make it the root cause instead of a link.

        Only a device seen from two sides (two links whose far ends answered since it went quiet), or one a
        neighbour still sees carrier to, can be called dead rather than cut off (see correlator.py).
        A neighbour not heard from since then, but not known to be down either, may still turn out to be
        one of those sides: it counts until its own poll says otherwise. Waiting on any other pending
        device would only delay a decision it cannot change.
        """
        failed = live = undecided = 0
        for lid in self.topology.links_of.get(device, ()):
            far_dev, far_end, _ = self.topology.links[lid].far(device)
            if not self.runtime[far_dev].ok:
                continue  # down or never heard from: it cannot tell us anything
            if self.rules.last_ok_at.get(far_dev, -math.inf) <= since:
                undecided += 1
            elif self.rules.is_firing("interface.down", far_end):
                failed += 1
            else:
                live += 1
        return live >= 1 or failed + live + undecided >= 2

    def _store_events(self, observed: Observed) -> None:
        if observed.events:
            self.store.append("events", [
                (e.at, "port.up" if e.up else "port.down", "info", e.device, f"{e.device}:{e.interface}",
                 f"{e.device}:{e.interface} {'up' if e.up else 'down'} (not watched: recorded only)")
                for e in observed.events])

    async def apply_transitions(self, transitions: list[Transition]) -> None:
        """Alerts that come from outside the device polls (a remote collector lost or back)."""
        if transitions:
            await self._persist_alerts(transitions)
            self._correlate_soon.set()
            self._snapshot_stale.set()

    def _store_samples(self, device: str, results: list[PollResult],
                       late: bool = False) -> dict[str, dict[str, float | None]]:
        """Queue this poll's rows; returns per-interface derived rates for the rules."""
        polls, itfs, health, bgp, ospf, sensors, probes, neighbors = [], [], [], [], [], [], [], []
        derived: dict[str, dict[str, float | None]] = {}
        for r in results:
            ts = r.started_at
            stale = ",".join(f"{k}: {v}" for k, v in r.stale.items()) or None
            polls.append((ts, device, r.collector, r.ok, r.duration_s, r.error_kind, r.error, stale, late))
            if not r.ok:
                continue
            uptime = r.system.uptime_s if r.system else None
            if r.system:
                s = r.system
                health.append((ts, device, r.collector, s.uptime_s, s.cpu_load, s.total_memory, s.free_memory,
                               s.version, r.route_count, s.firmware, s.firmware_upgrade))
            for i in r.interfaces:
                rx_bps, tx_bps, errors_ps, discards_ps = self._rates(device, r.collector, i, ts, uptime)
                # The column order of interface_samples (migration 1, then 3's additions at the end).
                itfs.append((ts, device, i.name, r.collector, i.ifindex, i.admin_up, i.oper_up, i.speed_bps,
                             i.rx_bytes, i.tx_bytes, rx_bps, tx_bps,
                             i.rx_errors, i.tx_errors, i.rx_discards, i.tx_discards, errors_ps, discards_ps))
                if i.name not in derived:  # the first collector's figures (API before SNMP) feed the rules
                    util = (100.0 * max(rx_bps, tx_bps) / i.speed_bps
                            if i.speed_bps and rx_bps is not None and tx_bps is not None else None)
                    derived[i.name] = {"utilisation_pct": util, "errors_ps": errors_ps, "discards_ps": discards_ps}
            for b in r.bgp or ():
                bgp.append((ts, device, b.name, b.remote_address, b.remote_as, b.state, b.established, b.uptime_s,
                            b.prefixes))
            for o in r.ospf or ():
                ospf.append((ts, device, o.router_id, o.address, o.interface, o.state, o.full))
            for h in r.sensors or ():
                sensors.append((ts, device, r.collector, h.name, h.value, h.unit, h.state))
            # An SFP module's readings are kept as the port's sensors, named as RouterOS names them.
            for m in r.optics or ():
                if m.present:
                    sensors += [(ts, device, r.collector, f"{m.interface} {name}", value, unit, None)
                                for name, value, unit in _optic_readings(m) if value is not None]
            for srv in r.dhcp or ():
                sensors += [(ts, device, r.collector, f"dhcp {srv.name} {name}", value, unit, None)
                            for name, value, unit in (("leases", srv.leases, None), ("bound", srv.bound, None),
                                                      ("pool-used", srv.pool_used, None)) if value is not None]
            for lte in r.lte or ():
                sensors += [(ts, device, r.collector, f"{lte.interface} {name}", value, unit, None)
                            for name, value, unit in (("rssi", lte.rssi_dbm, "dBm"), ("rsrp", lte.rsrp_dbm, "dBm"),
                                                      ("rsrq", lte.rsrq_db, "dB"), ("sinr", lte.sinr_db, "dB"))
                            if value is not None]
            for p in r.probes:
                probes.append((ts, device, p.target, p.sent, p.received, p.loss_pct, p.rtt_min_ms, p.rtt_avg_ms,
                               p.rtt_max_ms, p.jitter_ms, p.error))
            for n in r.neighbors or ():
                neighbors.append((ts, device, r.collector, n.local_interface, n.remote_identity, n.remote_interface,
                                  n.remote_address, n.remote_mac, n.platform, n.protocol))
        self.store.append_many((("poll_log", polls), ("interface_samples", itfs), ("health_samples", health),
                                ("bgp_samples", bgp), ("ospf_samples", ospf), ("sensor_samples", sensors),
                                ("probe_samples", probes), ("neighbor_samples", neighbors)))
        return derived

    def _rates(self, device: str, collector: str, itf: InterfaceStat, ts: float,
               uptime: float | None) -> tuple[float | None, float | None, float | None, float | None]:
        """Since this interface's previous sample from the same collector: rx and tx bits per second,
        errors and discards per second (in + out)."""
        # One flat tuple per interface, (ts, uptime, rx, tx, rx/tx errors, rx/tx discards), in a dict per
        # device and collector: a CounterSample per counter cost ~500 bytes an interface, 30 MB at 1,000
        # routers x 24 interfaces x 2 collectors, where the rates need only the bare figures.
        last = self._counters.get((device, collector))
        if last is None:
            last = self._counters[(device, collector)] = {}
        cur = (ts, uptime, itf.rx_bytes, itf.tx_bytes, itf.rx_errors, itf.tx_errors, itf.rx_discards,
               itf.tx_discards)
        prev = last.get(itf.name)
        last[itf.name] = cur
        if prev is None:
            return None, None, None, None
        # sysUpTime has 10 ms ticks and times the interval; RouterOS uptime has 1 s resolution.
        dt = interval_s(prev[0], prev[1], ts, uptime, collector == "snmp")
        if dt is None:
            return None, None, None, None
        rx_bps = tx_bps = None
        if None not in (prev[2], prev[3], cur[2], cur[3]):
            rx, tx = (counter_delta(prev[2], cur[2], itf.counter_bits),  # type: ignore[arg-type]
                      counter_delta(prev[3], cur[3], itf.counter_bits))  # type: ignore[arg-type]
            rx_bps = None if rx is None else rx * 8 / dt
            tx_bps = None if tx is None else tx * 8 / dt
        # IF-MIB errors and discards are Counter32 even where the octets are 64-bit; RouterOS's are 64-bit.
        loss_bits = 32 if collector == "snmp" else 64
        errors = summed_delta(prev[4:6], cur[4:6], loss_bits)
        discards = summed_delta(prev[6:8], cur[6:8], loss_bits)
        return (rx_bps, tx_bps, None if errors is None else errors / dt,
                None if discards is None else discards / dt)

    def _update_runtime(self, device: str, results: list[PollResult], now: float) -> None:
        rt = self.runtime[device]
        rt.last_poll_at = now
        ok = [r for r in results if r.ok]
        rt.ok = bool(ok)
        rt.last_error = None if ok else "; ".join(f"{r.collector}: {r.error}" for r in results)
        if ok:
            rt.answered_at = now
            best = next((r for r in ok if r.collector == "api"), ok[0])
            if best.system:
                rt.version, rt.uptime_s, rt.cpu_load = best.system.version, best.system.uptime_s, best.system.cpu_load
            rt.oper = {i.name: i.oper_up for i in best.interfaces}
            rt.interfaces_up = sum(1 for v in rt.oper.values() if v)

    def _prune_alerts(self) -> None:
        """Forget resolved alerts no open or recently closed incident shows (they stay in the database):
        a long run with a flapping port would otherwise keep every alert it ever raised in memory."""
        shown = {aid for inc in self.book.all() for aid in inc.alert_ids} | set(self._unassigned)
        self.alerts = {aid: a for aid, a in self.alerts.items() if a.state == "firing" or aid in shown}
        self._alerts_cap = max(ALERTS_KEPT, 2 * len(self.alerts))  # pruning stays rare when most are shown

    async def _persist_alerts(self, transitions: list[Transition]) -> None:
        for t in transitions:
            self.alerts[t.alert.id] = t.alert
            self._publish("alert.fired" if t.fired else "alert.resolved", t.alert.summary)
            if not t.fired and t.alert.incident_id is None:
                # Resolved while its decision was still held: it joins the incident it belonged to
                # once that incident exists, instead of being left outside every incident.
                self._unassigned[t.alert.id] = t.alert
                while len(self._unassigned) > MAX_UNASSIGNED:
                    self._unassigned.pop(next(iter(self._unassigned)))
        if len(self.alerts) > self._alerts_cap:
            self._prune_alerts()
        rows = [_alert_row(t.alert) for t in transitions]

        def write(con: duckdb.DuckDBPyConnection) -> None:
            for row in rows:
                con.execute(UPSERT_ALERT, row)

        try:
            await asyncio.wrap_future(self.store.transaction(write))
        except Exception as exc:  # kept in memory and written with the next correlation round
            for t in transitions:
                self._unsaved[t.alert.id] = t.alert
            self._write_failed("alerts", exc)

    def _write_failed(self, what: str, exc: BaseException) -> None:
        log.error("writing %s failed (will retry): %s", what, exc)
        self._publish("engine.error", f"writing {what} failed, will retry: {exc}")

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
                await self.release_held_back()
                await self.escalate_now()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("correlation failed")
                self._publish("engine.error", f"correlation failed: {exc}")

    def network_state(self, now: float) -> NetworkState:
        limit = self.config.incidents.settle_max_s
        pending = {d: first_bad for d, first_bad in self.rules.pending_since("device.unreachable").items()
                   if now - first_bad <= limit}
        return NetworkState(
            answering=frozenset(name for name, rt in self.runtime.items() if rt.ok),
            last_ok_at=dict(self.rules.last_ok_at), unsettled=self._unsettled(now, pending),
            pending_down=frozenset(pending))

    async def correlate_now(self) -> list[Change]:
        # One change of the incident book at a time: a round copies the book, writes, then adopts its copy, so
        # an ack or a close between its copy and its adoption would be lost from memory (not from the store).
        async with self._book_lock:
            return await self._correlate()

    async def _correlate(self) -> list[Change]:
        now = self.clock.now()
        firing = list(self.rules.firing.values())
        state = self.network_state(now)
        started = time.perf_counter()
        plans = correlate(firing, self.topology, self.config, now, state)
        self.stats.took("correlation", time.perf_counter() - started)
        self.maintenance.label(plans, now)
        self._annotate_changes(plans, state, now)
        self._holds.apply(plans, now)
        rnd = self.book.reconcile(plans, now, state.unsettled)
        held = {aid for p in plans if p.held for aid in p.alert_ids}
        owner = {aid: inc.id for inc in rnd.open.values() for aid in inc.alert_ids}
        suppressed = {aid for p in plans if not p.held for aid in p.suppressed_ids}
        assign: list[tuple[Alert, str | None, bool]] = []
        for alert in firing:
            if alert.id in held:
                continue  # keeps what it had until the state settles
            inc_id, sup = owner.get(alert.id), alert.id in suppressed
            if (alert.incident_id, alert.suppressed) != (inc_id, sup):
                assign.append((alert, inc_id, sup))
        assign += self._claim_unassigned(rnd, now)
        await self._commit_round(rnd, now, assign)
        await self._link_changes(rnd, now)
        return rnd.changes

    def _claim_unassigned(self, rnd: Round, now: float) -> list[tuple[Alert, str | None, bool]]:
        """Resolved alerts no incident took yet, given to the open incident that covers their entity."""
        out = []
        topo = self.topology
        for aid, alert in list(self._unassigned.items()):
            if alert.ends_at is not None and now - alert.ends_at > UNASSIGNED_KEEP_S:
                del self._unassigned[aid]
                continue
            keys = {alert.entity_id}
            if alert.entity_id in topo.link_of_end:
                keys.add(topo.link_of_end[alert.entity_id])
            itf = alert.labels.get("interface")
            if itf and f"{alert.entity_id.split(':', 1)[0]}:{itf}" in topo.link_of_end:
                keys.add(topo.link_of_end[f"{alert.entity_id.split(':', 1)[0]}:{itf}"])
            owner = next((inc for inc in rnd.open.values() if keys & (set(inc.entities) | set(inc.roots))), None)
            if owner is not None:
                del self._unassigned[aid]
                owner.alert_ids.append(aid)
                out.append((alert, owner.id, alert.entity_id not in owner.roots
                            and alert.metric not in ("interface.down", "interface.flaps")))
        return out

    async def _commit_round(self, rnd: Round, now: float, assign: list[tuple[Alert, str | None, bool]] = (),
                            audit: tuple[str, str, str, str] | None = None) -> None:
        """Store a round's changes, their notifications and alert assignments in one transaction, then adopt it.

        If the write fails nothing moves in memory either: the next round computes the same changes
        again, so no event is lost and none is sent for a change that was not stored.
        """
        if not rnd.changes and not assign and not self._unsaved:
            self.book.commit(rnd)
            return
        alert_rows = []
        for alert, inc_id, sup in assign:
            row = _alert_row(alert)
            row[11], row[12] = inc_id, sup
            alert_rows.append(row)
        assigned = {a.id for a, _, _ in assign}
        alert_rows += [_alert_row(a) for a in self._unsaved.values() if a.id not in assigned]
        prepared = []
        for change in rnd.changes:
            view = change.snapshot.view(self.alerts, now, self._critical)
            payload = webhooks.incident_object(view, self.config.ispvm.base_url) if change.event else None
            prepared.append((change, view, payload))

        def write(con: duckdb.DuckDBPyConnection) -> None:
            for change, view, payload in prepared:
                con.execute(UPSERT_INCIDENT, change.snapshot.row())
                snap = change.snapshot
                con.execute(INSERT_TRANSITION, [now, snap.id, change.transition, change.actor, snap.status,
                                                snap.severity, snap.title, change.detail, change.event])
                if change.event is not None:
                    outbox.enqueue(con, self.targets.values(), view.id, change.event, payload, now,
                                   routed=self._router(payload, now))
            for row in alert_rows:
                con.execute(UPSERT_ALERT, row)
            if audit is not None:
                audit_log.append(con, now, *audit)

        try:
            await asyncio.wrap_future(self.store.transaction(write))
        except Exception as exc:
            self._write_failed("incidents", exc)
            raise
        self.book.commit(rnd)
        self._unsaved.clear()
        for alert, inc_id, sup in assign:
            if sup and not alert.ever_suppressed:
                alert.ever_suppressed = True
                self.alerts_suppressed += 1
            alert.incident_id, alert.suppressed = inc_id, sup
        for change, view, payload in prepared:
            if payload is not None and MAINT_LABEL in (payload.get("labels") or {}):
                self._held_back.add(view.id)
            if change.transition == "opened":
                self.incidents_opened += 1
            if change.event is not None:
                self._publish(change.event, view.title, view.id)
        if any(c.event for c in rnd.changes) and self.dispatcher is not None:
            self.dispatcher.wake()
        if rnd.changes or assign:
            self._refresh_snapshot()

    def _router(self, payload: dict[str, Any], now: float) -> Callable[[str], bool]:
        if MAINT_LABEL in (payload.get("labels") or {}):
            # Planned work: only targets that already had the incident hear of it (enqueue's rule).
            return lambda name: False

        def routed(name: str) -> bool:
            route = self.routes.get(name)
            return route is None or routing.matches(route, payload, now, self._tz)

        return routed

    async def release_held_back(self) -> int:
        """Notify incidents still open when the maintenance window that held them back has ended, as
        ``incident.opened`` to every target whose route takes them now. Returns the events queued."""
        if not self._held_back:
            return 0
        now = self.clock.now()
        due: list[tuple[str, dict[str, Any]]] = []
        for inc_id in list(self._held_back):
            inc = self.book.open.get(inc_id)
            if inc is None:
                self._held_back.discard(inc_id)  # closed inside the window: nobody needed to know
            elif MAINT_LABEL not in inc.labels:
                view = inc.view(self.alerts, now, self._critical)
                due.append((inc_id, webhooks.incident_object(view, self.config.ispvm.base_url)))
        if not due:
            return 0

        def write(con: duckdb.DuckDBPyConnection) -> int:
            return sum(outbox.enqueue(con, self.targets.values(), inc_id, "incident.opened", payload, now,
                                      routed=self._router(payload, now), only_new=True)
                       for inc_id, payload in due)

        queued = await asyncio.wrap_future(self.store.transaction(write))
        for inc_id, _ in due:
            self._held_back.discard(inc_id)
            self._publish("incident.maintenance_ended", "still open after its maintenance window: notified",
                          inc_id)
        if queued and self.dispatcher is not None:
            self.dispatcher.wake()
        return queued

    async def escalate_now(self) -> int:
        """Queue each open, unacknowledged incident for the escalation targets whose time it reached.

        The first event such a target gets is ``incident.opened`` with the incident as it is now; the
        rest of the incident's events follow it as for any target. Returns the events queued."""
        if not self._escalations:
            return 0
        now = self.clock.now()
        open_ids = set(self.book.open)
        self._escalated = {key for key in self._escalated if key[1] in open_ids}
        shortest = min(self.routes[n].unacked_for_s for n in self._escalations)
        due: list[tuple[str, dict[str, Any], list[Target]]] = []
        for inc in list(self.book.open.values()):
            if inc.acked_by or now - inc.opened_at < shortest or MAINT_LABEL in inc.labels:
                continue  # acknowledged, not yet due, or planned work (nobody is paged for it)
            view = inc.view(self.alerts, now, self._critical)
            payload = webhooks.incident_object(view, self.config.ispvm.base_url)
            targets = [self.targets[n] for n in self._escalations if (n, inc.id) not in self._escalated
                       and routing.matches(self.routes[n], payload, now, self._tz)]
            if targets:
                due.append((inc.id, payload, targets))
        if not due:
            return 0

        def write(con: duckdb.DuckDBPyConnection) -> int:
            return sum(outbox.enqueue(con, targets, inc_id, "incident.opened", payload, now, only_new=True)
                       for inc_id, payload, targets in due)

        queued = await asyncio.wrap_future(self.store.transaction(write))
        for inc_id, _, targets in due:
            self._escalated |= {(t.name, inc_id) for t in targets}
            self._publish("incident.escalated", f"unacknowledged: sent to {', '.join(t.name for t in targets)}",
                          inc_id)
        if queued and self.dispatcher is not None:
            self.dispatcher.wake()
        return queued

    def _on_delivery(self, result: outbox.DeliveryResult) -> None:
        self.stats.delivery(result.endpoint, result.status)
        if result.status == "dead":
            self._publish("delivery.dead", f"{result.event_type} to {result.endpoint} dead-lettered: {result.error}",
                          result.incident_id)
        elif result.status == "retry":
            self._publish("delivery.failed", f"{result.event_type} to {result.endpoint} failed "
                                             f"(attempt {result.attempts}): {result.error}", result.incident_id)

    # ---- actions (engine loop) -----------------------------------------------
    async def ack(self, incident_id: str, actor: str) -> IncidentView:
        async with self._book_lock:
            now = self.clock.now()
            rnd = self.book.acknowledge(incident_id, actor, now)
            await self._commit_round(rnd, now,
                                     audit=(actor, "incident.ack", incident_id, "") if rnd.changes else None)
        self._refresh_snapshot()
        return rnd.open[incident_id].view(self.alerts, now, self._critical)

    async def close_incident(self, incident_id: str, actor: str, note: str = "") -> IncidentView:
        async with self._book_lock:
            now = self.clock.now()
            rnd = self.book.close(incident_id, actor, now, note)
            await self._commit_round(rnd, now, audit=(actor, "incident.close", incident_id, note))
        self._refresh_snapshot()
        return rnd.changes[-1].snapshot.view(self.alerts, now, self._critical)

    async def resend_delivery(self, event_id: str, actor: str) -> bool:
        now = self.clock.now()
        superseded = await asyncio.wrap_future(
            self.store.transaction(lambda con: outbox.resend(con, event_id, actor, now)))
        if self.dispatcher is not None:
            self.dispatcher.wake()
        return bool(superseded)

    async def resend_all_dead_deliveries(self, actor: str) -> list[str]:
        now = self.clock.now()
        ids = await asyncio.wrap_future(self.store.transaction(lambda con: outbox.resend_all_dead(con, actor, now)))
        if self.dispatcher is not None:
            self.dispatcher.wake()
        return list(ids)

    async def _delivery_report(self, limit: int) -> DeliveryReport:
        breakers = self.dispatcher.breaker_states() if self.dispatcher is not None else None
        now = self.clock.now()
        return await asyncio.to_thread(outbox.delivery_report, self.store.query_dicts, now, breakers=breakers,
                                       limit=limit)

    # ---- config changes (engine/config_watch.py) -------------------------
    async def _on_config(self, device: str, reads: list[ConfigRead]) -> None:
        now = self.clock.now()
        cw = self.config_watch
        if not any(r.ok for r in reads):
            cw.failed(device, now)
            return
        categories = await config_watch.normalise_off_loop(cw, reads)
        if not categories:
            cw.failed(device, now)
            return
        await self._apply_config(device, categories, now)

    async def _apply_config(self, device: str, categories: dict[str, tuple[str, str]], at: float) -> bool:
        """Fingerprint one read's categories, taken at ``at`` (a remote collector's read: its own time); whether
        it was stored."""
        cw = self.config_watch
        try:
            changes = await asyncio.wrap_future(self.store.transaction(
                lambda con: cw.apply(device, categories, at, con)))
        except Exception as exc:  # the next scheduled read compares against the same stored baseline
            self._write_failed("config fingerprints", exc)
            cw.failed(device, at)
            return False
        cw.commit(device, categories, changes, at)
        for change in changes:
            self._publish(config_watch.EVENT, f"{device} {change.summary}",
                          data={"device": device, "category": change.category, "version": change.version,
                                "old_hash": change.old_hash, "new_hash": change.new_hash})
        if changes:
            self._snapshot_stale.set()
        self._correlate_soon.set()  # a change may explain an open incident: the next round says so
        return True

    def _annotate_changes(self, plans: list[Any], state: NetworkState, now: float) -> None:
        """Ask for a fault's config reads; mark plans whose root devices changed configuration, or sat in a
        change record's scope, within lookback_s before the fault began."""
        cw = self.config_watch
        settings = self.config.config_watch
        for plan in plans:
            devices = {d for root in plan.roots for d in entity_devices(root)}
            starts = [a.starts_at for aid in plan.alert_ids if (a := self.alerts.get(aid)) is not None]
            if not devices or not starts:
                continue
            start = min(starts)
            lines: list[str] = []
            changed: set[str] = set()
            if settings.enabled:
                asked = cw.request(sorted(d for d in devices & cw.devices if d in state.answering), now, start)
                if asked and self.poller is not None:
                    self.poller.poll_soon(asked)
                detected = cw.near(devices, start)
                lines += [_change_evidence(c, start) for c in detected[:2]]
                changed |= {c.device for c in detected}
            records = [c for c in self.calendar_changes if c.status != "canceled" and c.starts_at <= start
                       and c.ends_at >= start - settings.lookback_s]
            covering = [(c, hit) for c in records if (hit := scope_devices(c.scope, self.config) & devices)]
            for record, hit in covering[:2]:
                lines.append(_record_evidence(record, sorted(hit), start))
                changed |= hit
            if not lines:
                continue
            labels = {**plan.labels, "change_related": "possible"}
            if covering:
                labels["change"] = ",".join(c.id for c, _ in covering)
            plan.labels = labels
            # Second, after the line saying what failed: the webhook shows only the first few lines.
            plan.evidence[1:1] = lines
            plan.root_causes = [dataclasses.replace(rc, confidence=min(0.99, round(rc.confidence + 0.05, 2)))
                                if entity_devices(rc.entity_id) & changed else rc for rc in plan.root_causes]

    async def _link_changes(self, rnd: Round, now: float) -> None:
        """Incidents that began during a change record are listed with it (``change_incidents``)."""
        links = [(inc.id, ids.split(",")) for inc in rnd.open.values()
                 if (ids := inc.labels.get("change")) and (inc.id, ids) not in self._linked]
        if not links:
            return
        try:
            await asyncio.wrap_future(self.store.transaction(
                lambda con: [calendar.link_incident(con, inc_id, ids, now) for inc_id, ids in links]))
        except Exception as exc:  # tried again next round: the label is still there
            self._write_failed("change links", exc)
            return
        self._linked |= {(inc_id, ",".join(ids)) for inc_id, ids in links}

    # ---- EngineAPI (any thread) -------------------------------------------
    def snapshot(self) -> Snapshot:
        if self._snapshot_stale.is_set() and threading.get_ident() == self._loop_thread:
            self._refresh_snapshot()  # on the engine's own loop it is safe, and callers there expect news
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

    def close(self, incident_id: str, actor: str, note: str = "") -> Future[IncidentView]:
        return self._submit(self.close_incident(incident_id, actor, note))

    def resend(self, event_id: str, actor: str) -> Future[bool]:
        return self._submit(self.resend_delivery(event_id, actor))

    def resend_all_dead(self, actor: str) -> Future[list[str]]:
        return self._submit(self.resend_all_dead_deliveries(actor))

    def delivery_report(self, limit: int = 200) -> Future[DeliveryReport]:
        """Dead letters, recent attempts, breakers: read in a thread, never on the console's loop."""
        return self._submit(self._delivery_report(limit))

    def config_changes(self, device: str | None = None, limit: int = 200) -> Future[list[ConfigChangeView]]:
        return self._submit(asyncio.to_thread(config_watch.list_changes, self.store.query_dicts, device=device,
                                              limit=limit))

    def config_diff(self, device: str, category: str, old_version: int | None = None,
                    new_version: int | None = None) -> Future[list[str]]:
        return self._submit(asyncio.to_thread(config_watch.diff, self.store.query_dicts, device, category,
                                              old_version, new_version))

    def capture_config(self, device: str | None = None, actor: str = "engine") -> Future[int]:
        return self._submit(self._capture_config(device, actor))

    async def _capture_config(self, device: str | None, actor: str) -> int:
        cw = self.config_watch
        if device is not None and device not in cw.devices:
            raise ValueError(f"unknown device {device!r}: no [[devices]] entry of that name")
        now = self.clock.now()
        asked = cw.request([device] if device else sorted(cw.devices), now, now, forced=True)
        if asked and self.poller is not None:
            self.poller.poll_soon(asked)
        row = [now, actor, device or "*", f"{len(asked)} devices asked"]
        await asyncio.wrap_future(self.store.transaction(
            lambda con: audit_log.append(con, row[0], row[1], "config.capture", row[2], row[3])))
        return len(asked)

    # ---- one device in detail (the console's Devices tab) ---------------------------------------
    def device_detail(self, name: str) -> Future[Any]:
        return self._submit(self._device_detail(name))

    async def _device_detail(self, name: str) -> Any:
        """Built on the loop from what is in memory: the last poll's results and the recent changes.

        Rates are not kept between polls (only the previous counters are), so the rows carry the
        counters and the poll's start time; a front-end gets rates from two details.
        """
        # Imported here so this block stays the only change to the module for it.
        from ispvm_tui.engine.api import (
            BgpRow,
            DeviceDetail,
            DhcpRow,
            InterfaceRow,
            LteRow,
            OpticRow,
            OspfRow,
            SensorRow,
            WirelessClientRow,
        )

        view = next((d for d in self.snapshot().devices if d.name == name), None)
        if view is None:
            raise KeyError(f"unknown device {name!r}")
        sched = self.poller.schedules.get(name) if self.poller is not None else None
        results = list(sched.last_results) if sched is not None else []
        ok = sorted((r for r in results if r.ok), key=lambda r: r.collector != "api")  # the API first
        failed = sched.unanswered if sched is not None and sched.unanswered else results
        errors = tuple(f"{r.collector}: {r.error}" for r in failed if not r.ok)

        def first(family: str) -> Any:
            return next((getattr(r, family) for r in ok if getattr(r, family) is not None), None)

        best = ok[0] if ok else None
        system = first("system")
        sensors, bgp, ospf = first("sensors"), first("bgp"), first("ospf")
        changes = [c for c in self.config_watch.recent if c.device == name][-20:][::-1]
        return DeviceDetail(
            device=view,
            sampled_at=best.started_at if best else None,
            silent_since=sched.silent_since if sched is not None and sched.unanswered else None,
            collectors=tuple(r.collector for r in ok),
            errors=errors,
            stale=tuple(f"{family}: {why}" for r in ok for family, why in r.stale.items()),
            identity=system.identity if system else None,
            board=system.board if system else None,
            firmware=system.firmware if system else None,
            firmware_upgrade=system.firmware_upgrade if system else None,
            descr=system.descr if system else None,
            total_memory=system.total_memory if system else None,
            free_memory=system.free_memory if system else None,
            route_count=first("route_count"),
            interfaces=tuple(InterfaceRow(*row) for row in (sched.detail_interfaces if sched is not None else ())),
            sensors=None if sensors is None else tuple(SensorRow(h.name, h.value, h.unit, h.state)
                                                         for h in sensors),
            bgp=None if bgp is None else tuple(BgpRow(b.name, b.remote_address, b.remote_as, b.state,
                                                      b.established, b.uptime_s, b.prefixes, b.disabled)
                                               for b in bgp),
            ospf=None if ospf is None else tuple(OspfRow(o.router_id, o.address, o.interface, o.state, o.full)
                                                 for o in ospf),
            config_changes=tuple(changes),
            wireless=None if (wl := first("wireless")) is None else tuple(
                WirelessClientRow(c.mac, c.interface, c.signal_dbm, c.tx_rate_bps, c.rx_rate_bps, c.uptime_s, c.ssid)
                for c in wl),
            dhcp=None if (dh := first("dhcp")) is None else tuple(
                DhcpRow(x.name, x.interface, x.leases, x.bound, x.pool, x.pool_size, x.pool_used) for x in dh),
            lte=None if (lt := first("lte")) is None else tuple(
                LteRow(x.interface, x.rssi_dbm, x.rsrp_dbm, x.rsrq_db, x.sinr_db, x.cell_id, x.technology)
                for x in lt),
            optics=None if (op := first("optics")) is None else tuple(
                OpticRow(m.interface, m.present, m.rx_loss, m.tx_fault, m.rx_power_dbm, m.tx_power_dbm,
                         m.temperature_c, m.supply_v, m.tx_bias_ma, m.wavelength_nm, m.vendor, m.part_number)
                for m in op),
        )

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
    def _publish(self, kind: str, summary: str, incident_id: str | None = None,
                 data: dict[str, Any] | None = None) -> None:
        event = EngineEvent(kind=kind, at=self.clock.now(), summary=summary, incident_id=incident_id,
                            data=data or {})
        with self._sub_lock:
            subscribers = list(self._subscribers)
        for cb in subscribers:
            try:
                cb(event)
            except Exception:  # a front-end's bug must not stop the engine
                log.exception("event subscriber failed")

    def _refresh_snapshot(self) -> None:
        started = time.perf_counter()
        self._snapshot = self._build_snapshot()
        self._snapshot_cost_s = time.perf_counter() - started
        self.stats.took("snapshot", self._snapshot_cost_s)
        self._snapshot_stale.clear()

    async def _snapshot_loop(self) -> None:
        """Rebuild the snapshot after polls, at most a few times a second.

        Rebuilding after every device's poll costs the square of the fleet (measured: 10 ms per rebuild
        at 1,000 devices, 1,000 rebuilds a minute, all on the loop the pollers need). Incident changes and
        actions still rebuild at once; device figures may be up to one pause old. The pause grows with
        the rebuild's own cost so that rebuilding never takes more than about 5 % of the loop.
        """
        while True:
            await self._snapshot_stale.wait()
            await asyncio.sleep(max(SNAPSHOT_MIN_PAUSE_S, 20 * self._snapshot_cost_s))
            if self._snapshot_stale.is_set():
                self._refresh_snapshot()

    def _device_state(self, name: str) -> EntityState:
        if self.rules.is_firing("device.unreachable", name):
            return "down"
        rt = self.runtime[name]
        if rt.ok is None:
            return "unknown"
        return "up" if rt.ok else "degraded"

    def _build_snapshot(self) -> Snapshot:
        now = self.clock.now()
        # Asked once per device and twice per link end: one pass over the firing alerts instead.
        firing: dict[str, set[str]] = {}
        specs = self.rules.ruleset.rules
        for rule, entity in self.rules.firing:
            spec = specs.get(rule)
            if spec is not None:
                firing.setdefault(spec.metric, set()).add(entity)
        unreachable = firing.get("device.unreachable", set())
        port_down = firing.get("interface.down", set()) | firing.get("interface.flaps", set())
        devices = []
        by_site: dict[str, list[DeviceView]] = {}
        views = self._device_views
        for d in self.config.devices:
            rt = self.runtime[d.name]
            dev_state: EntityState = ("down" if d.name in unreachable else "unknown" if rt.ok is None else
                                      "up" if rt.ok else "degraded")  # _device_state's rule
            # A device not polled since the last rebuild keeps its view (a frozen dataclass costs more to build
            # than its inputs cost to compare); between two rebuilds only a few devices have been polled.
            key = (dev_state, rt.last_poll_at, rt.last_error or self.setup_errors.get(d.name), rt.version, rt.uptime_s,
                   rt.cpu_load, rt.interfaces_up if rt.oper else 0, len(rt.oper or ()), rt.answered_at)
            held = views.get(d.name)
            if held is not None and held[0] == key:
                view = held[1]
            else:
                view = DeviceView(name=d.name, site=d.site, role=d.role, address=d.address, state=dev_state,
                                  last_poll_at=key[1], last_error=key[2], version=key[3], uptime_s=key[4],
                                  cpu_load=key[5], interfaces_up=key[6], interfaces_total=key[7],
                                  answered_at=key[8])
                views[d.name] = (key, view)
            devices.append(view)
            by_site.setdefault(d.site, []).append(view)
        states = {d.name: d.state for d in devices}
        links = []
        for link, link_id in zip(self.config.links, self._link_ids, strict=True):
            ends = []
            for end in (link.a, link.b):
                dev, itf = end.split(":", 1)
                if end in port_down:
                    ends.append("down")
                elif states[dev] in ("down", "unknown"):
                    ends.append("unknown")
                else:
                    up = (self.runtime[dev].oper or {}).get(itf)
                    ends.append("up" if up else "unknown" if up is None else "down")
            state: EntityState = "down" if "down" in ends else "up" if ends == ["up", "up"] else "unknown"
            if state == "unknown" and "up" in ends and any(states[e.split(":")[0]] == "down" for e in (link.a, link.b)):
                state = "down"
            links.append(LinkView(id=link_id, a=link.a, b=link.b, state=state, speed_mbps=link.speed_mbps))
        sites = []
        windows = self.maintenance.windows
        for s in self.config.sites:
            members = by_site.get(s.name, [])
            down = sum(1 for d in members if d.state == "down")
            st: EntityState = "unknown" if all(d.state == "unknown" for d in members) else (
                "down" if members and down == len(members) else "degraded" if down else "up")
            sites.append(SiteView(name=s.name, devices=len(members), devices_down=down, subscribers=s.subscribers,
                                  state=st, maintenance=home_status.window_over(
                                      windows, (d.name for d in members), now) if windows else None))
        services, collectors = self._home_status(devices, links, sites, windows, now)
        incidents = [inc.view(self.alerts, now, self._critical) for inc in self.book.all()[:200]]
        noise = Noise(alerts_raised=self.rules.raised, alerts_suppressed=self.alerts_suppressed,
                      incidents=self.incidents_opened, alerts_firing=len(self.rules.firing))
        return Snapshot(
            taken_at=now, vantage=tuple(self.config.console.attach), sites=tuple(sites), devices=tuple(devices),
            links=tuple(links), incidents=tuple(incidents),
            alerts=tuple(a.view() for a in self.rules.firing.values()),
            polls_total=self.polls_total, polls_failed=self.polls_failed, noise=noise,
            config_changes=tuple(list(self.config_watch.recent)[-SNAPSHOT_CONFIG_CHANGES:][::-1]),
            services=services, collectors=collectors,
        )

    def _home_status(self, devices: list[DeviceView], links: list[LinkView], sites: list[SiteView],
                     windows: list[Any], now: float) -> tuple[tuple[ServiceView, ...], tuple[CollectorView, ...]]:
        """Services from what they depend on; this host's poller and the remote collectors (home_status.py)."""
        services = home_status.services(
            self.config, {d.name: d for d in devices}, {lk.id: lk for lk in links}, {s.name: s for s in sites},
            lambda peer: self.rules.is_firing("bgp.down", peer), windows, now) if self.config.services else ()
        scheds = self.poller.schedules if self.poller is not None else {}
        interval_of = self.config.interval_of
        local = home_status.local_collector(
            ((sc.last_done_started if sc.polls else None, sc.failures, sc.next_allowed > now, interval_of(name))
             for name, sc in scheds.items()), now, storm=self.poller is not None and self.poller.in_storm())
        remote = self.centre.collector_views(now) if self.centre is not None else ()
        return services, ((local,) if local is not None else ()) + tuple(remote)

    # ---- change calendar, run-time maintenance windows, control socket ------------------------------
    # (engine/calendar.py does the work, in the store's transactions; the hooks elsewhere are one line
    # each in __init__, start, stop and _restore)
    def _restore_calendar(self) -> None:
        now = self.clock.now()
        windows, changes = self.store.transaction(
            lambda con: (calendar.list_windows(con, None, now), calendar.list_changes(con))).result(60)
        self.calendar_windows, self.calendar_changes = windows, changes
        self.maintenance = Maintenance(self.config, windows)

    async def _calendar_op(self, op: str, args: dict[str, Any], actor: str) -> Any:
        """One calendar operation (calendar.OPS) in a transaction; then what the engine holds follows it."""
        now = self.clock.now()
        result = calendar.unwrap(await asyncio.wrap_future(self.store.transaction(calendar.refusing(
            lambda con: calendar.run_op(con, op, args, self.config, actor, now)))))
        if op in calendar.WINDOW_OPS:
            self.calendar_windows = [w for w in self.calendar_windows if w.id != result.id] + [result]
            # At once: the very next correlation round (asked for now) labels with the new set, and a
            # canceled window's incidents still open are released by the sweep after it.
            self.maintenance = Maintenance(self.config, self.calendar_windows)
            self._correlate_soon.set()
            self._publish("maintenance.changed", f"{actor}: {op.split('.')[1]} {result.id} {result.name} "
                                                 f"({result.status})")
        elif op in calendar.CHANGE_OPS:
            self.calendar_changes = [c for c in self.calendar_changes if c.id != result.id] + [result]
            self._publish("change.changed", f"{actor}: {op.split('.')[1]} {result.id} {result.title} "
                                            f"({result.status})")
        return result

    def maintenance_list(self) -> Future[list[MaintenanceView]]:
        return self._submit(self._calendar_op("maint.list", {}, "engine"))

    def maintenance_add(self, fields: dict[str, Any], actor: str) -> Future[MaintenanceView]:
        return self._submit(self._calendar_op("maint.add", {"fields": fields}, actor))

    def maintenance_edit(self, window_id: str, fields: dict[str, Any], actor: str) -> Future[MaintenanceView]:
        return self._submit(self._calendar_op("maint.edit", {"id": window_id, "fields": fields}, actor))

    def maintenance_cancel(self, window_id: str, actor: str) -> Future[MaintenanceView]:
        return self._submit(self._calendar_op("maint.cancel", {"id": window_id}, actor))

    def changes_list(self) -> Future[list[ChangeRecordView]]:
        return self._submit(self._calendar_op("change.list", {}, "engine"))

    def change_add(self, fields: dict[str, Any], actor: str) -> Future[ChangeRecordView]:
        return self._submit(self._calendar_op("change.add", {"fields": fields}, actor))

    def change_edit(self, change_id: str, fields: dict[str, Any], actor: str) -> Future[ChangeRecordView]:
        return self._submit(self._calendar_op("change.edit", {"id": change_id, "fields": fields}, actor))

    def change_cancel(self, change_id: str, actor: str) -> Future[ChangeRecordView]:
        return self._submit(self._calendar_op("change.cancel", {"id": change_id}, actor))

    async def note_incident(self, incident_id: str, actor: str, text: str) -> dict[str, Any]:
        """A note on an incident: a timeline row (``incident_events``, transition ``note``) and an audit row in
        one transaction. It changes the incident in nothing and notifies nobody."""
        from ispvm_tui.engine import incident_queries

        held = next((i for i in self.book.all() if i.id == incident_id), None)
        current = (held.status, held.severity, held.title) if held is not None else await asyncio.to_thread(
            incident_queries.current_state, self.store.query_dicts, incident_id)
        now = self.clock.now()
        result = await asyncio.wrap_future(self.store.transaction(
            lambda con: incident_queries.add_note(con, incident_id, actor, text, now, current)))
        # Every console with this incident open reads its timeline again (attached ones too).
        self._publish("incident.noted", f"{actor}: note on {incident_id[:8]}", incident_id)
        return result

    def _control_ops(self) -> dict[str, control.Handler]:
        """What the control socket serves: the calendar, resends and incident actions (which the CLI could not
        do while the engine holds the database), and reads answered from the engine's own state."""
        from ispvm_tui.engine import incident_queries

        def calendar_op(op: str) -> control.Handler:
            return lambda args, actor: self._calendar_op(op, args, actor)

        async def resend(args: dict[str, Any], actor: str) -> dict[str, Any]:
            event_id = args.get("event_id")
            if not isinstance(event_id, str) or not event_id:
                raise ValueError("event_id: expected an outbox event id")
            return {"event_id": event_id, "superseded": await self.resend_delivery(event_id, actor)}

        async def resend_all_dead(args: dict[str, Any], actor: str) -> list[str]:
            return await self.resend_all_dead_deliveries(actor)

        async def ping(args: dict[str, Any], actor: str) -> dict[str, Any]:
            return {"pid": os.getpid(), "at": self.clock.now()}

        async def health_op(args: dict[str, Any], actor: str) -> dict[str, Any]:
            return await self.health()

        async def db_backup(args: dict[str, Any], actor: str) -> dict[str, Any]:
            return await self.backup(actor)

        async def audit_routers(args: dict[str, Any], actor: str) -> dict[str, Any]:
            from ispvm_tui.engine import hardening

            return await asyncio.to_thread(hardening.report, self.store.query_dicts, self.config, self.secrets.get)

        async def report_sla(args: dict[str, Any], actor: str) -> dict[str, Any]:
            from ispvm_tui.engine import sla

            start, end = sla.window(args, self.clock.now(), self.config.ispvm.timezone)
            return await asyncio.to_thread(sla.report, self.store.query_dicts, self.config, start, end)

        async def report_capacity(args: dict[str, Any], actor: str) -> dict[str, Any]:
            from ispvm_tui.engine import capacity

            return await asyncio.to_thread(capacity.report, self.store.query_dicts, self.config, self.clock.now())

        async def config_changes(args: dict[str, Any], actor: str) -> list[ConfigChangeView]:
            device, limit = args.get("device"), args.get("limit", 200)
            if (device is not None and not isinstance(device, str)) or not isinstance(limit, int) or limit < 1:
                raise ValueError("device: a device name or null; limit: a positive integer")
            return await asyncio.to_thread(config_watch.list_changes, self.store.query_dicts, device=device,
                                           limit=limit)

        async def config_diff(args: dict[str, Any], actor: str) -> list[str]:
            device, category = args.get("device"), args.get("category")
            old, new = args.get("old_version"), args.get("new_version")
            if not isinstance(device, str) or not isinstance(category, str) \
                    or not all(v is None or isinstance(v, int) for v in (old, new)):
                raise ValueError("device and category: names; old_version, new_version: integers or null")
            return await asyncio.to_thread(config_watch.diff, self.store.query_dicts, device, category, old, new)

        async def config_capture(args: dict[str, Any], actor: str) -> dict[str, int]:
            device = args.get("device")
            if device is not None and not isinstance(device, str):
                raise ValueError("device: a device name or null")
            return {"asked": await self._capture_config(device, actor)}

        # Incidents: the live views (snapshot) first, the store for the rest and for history; ack and close
        # through the engine's own actions, so their notifications follow as from the console.
        async def incidents_list(args: dict[str, Any], actor: str) -> dict[str, Any]:
            status, limit = incident_queries.list_args(args)
            return await asyncio.to_thread(incident_queries.list_incidents, self.store.query_dicts, status, limit,
                                           self.clock.now(), self._critical, self.snapshot().incidents)

        async def incidents_show(args: dict[str, Any], actor: str) -> dict[str, Any]:
            return await asyncio.to_thread(incident_queries.show_incident, self.store.query_dicts, args.get("id"),
                                           self.clock.now(), self._critical, self.snapshot().incidents)

        async def named(args: dict[str, Any]) -> str:
            return await asyncio.to_thread(incident_queries.resolve_id, self.store.query_dicts, args.get("id"),
                                           [i.id for i in self.book.all()])

        async def incidents_ack(args: dict[str, Any], actor: str) -> dict[str, Any]:
            incident_id = await named(args)
            held = self.book.open.get(incident_id)
            if held is None:
                raise ValueError(f"incident {incident_id[:8]} is closed: there is nothing to acknowledge")
            already = held.status == "acked"
            view = await self.ack(incident_id, actor)
            return {"incident": incident_queries.summary(view), "changed": not already}

        async def incidents_close(args: dict[str, Any], actor: str) -> dict[str, Any]:
            note = incident_queries.check_text(args.get("note", ""), "note", required=False)
            incident_id = await named(args)
            if incident_id not in self.book.open:
                raise ValueError(f"incident {incident_id[:8]} is already closed")
            view = await self.close_incident(incident_id, actor, note)
            return {"incident": incident_queries.summary(view), "changed": True}

        async def incidents_postmortem(args: dict[str, Any], actor: str) -> dict[str, Any]:
            from ispvm_tui.engine import postmortem

            windows = list(self.maintenance.windows)  # config-file windows too, which the database lacks
            data = await asyncio.to_thread(
                postmortem.gather, self.store.query_dicts, incident_queries.check_prefix(args.get("id")),
                now=self.clock.now(), lookback_s=self.config.config_watch.lookback_s, windows=windows,
                critical=self._critical, live=self.snapshot().incidents)
            return {"id": data["incident"]["id"], "markdown": postmortem.render(data, self.config.ispvm.timezone)}

        async def incidents_note(args: dict[str, Any], actor: str) -> dict[str, Any]:
            text = incident_queries.check_text(args.get("text"), "note")
            return await self.note_incident(await named(args), actor, text)

        async def devices_list(args: dict[str, Any], actor: str) -> dict[str, Any]:
            from ispvm_tui.engine import device_list

            return {"now": self.clock.now(), "devices": device_list.from_views(self.snapshot().devices)}

        async def audit_list(args: dict[str, Any], actor: str) -> list[dict[str, Any]]:
            return await asyncio.to_thread(audit_log.list_entries, self.store.query_dicts,
                                           **audit_log.list_args(args))

        async def audit_verify(args: dict[str, Any], actor: str) -> dict[str, Any]:
            head = audit_log.head_arg(args.get("head"))
            return (await asyncio.to_thread(audit_log.verify, self.store.query_dicts, head)).as_dict()

        ops: dict[str, control.Handler] = {op: calendar_op(op) for op in calendar.OPS}
        ops.update({"audit.list": audit_list, "audit.verify": audit_verify, "health": health_op,
                    "db.backup": db_backup, "report.sla": report_sla, "report.capacity": report_capacity,
                    "audit.routers": audit_routers, "devices.list": devices_list})
        ops.update({"deliveries.resend": resend, "deliveries.resend_all_dead": resend_all_dead, "ping": ping,
                    "config.changes": config_changes, "config.diff": config_diff, "config.capture": config_capture,
                    "incidents.list": incidents_list, "incidents.show": incidents_show, "incidents.ack": incidents_ack,
                    "incidents.close": incidents_close, "incidents.note": incidents_note,
                    "incidents.postmortem": incidents_postmortem})
        ops.update(self._diagnostic_ops())
        from ispvm_tui.engine.api_ops import ApiOps  # attached consoles: api.call, api.snapshot, api.events

        self.api_ops = ApiOps(self)
        ops.update(self.api_ops.ops())
        ops["incidents.assign"] = self._assign_op
        return ops

    def _role_checks(self) -> tuple[control.Authorize | None, Callable[[Any], str] | None]:
        """[roles] (engine/roles.py): the check of every control request and the role ``whoami`` reports;
        (None, None) without roles: everyone admitted is admin."""
        roles = self.config.roles
        if roles is None:
            return None, None
        from ispvm_tui.engine import roles as role_checks

        methods = self.api_ops.methods

        def authorize(op: str, args: dict[str, Any], actor: Any, who: Any) -> tuple[str | None, str | None]:
            return role_checks.check(op, args, actor, who, roles, methods)

        return authorize, lambda who: role_checks.role_of(who, roles) or "none"

    async def _start_control(self) -> None:
        """Serve the control socket next to the database. Without it the engine still runs: the CLI then
        says the database is held, as it did before there was a socket."""
        ops = self._control_ops()  # builds api_ops, which the role checks read
        authorize, role_of = self._role_checks()
        server = control.ControlServer(self.store.path, ops, check_actor=calendar.check_actor,
                                       group=self.config.console.control_group, authorize=authorize, role_of=role_of)
        try:
            path = await server.start()
        except (control.ControlError, OSError) as exc:
            log.error("no control socket: %s", exc)
            self._publish("engine.error", f"no control socket (the CLI cannot reach this engine): {exc}")
            return
        self.control = server
        log.info("control socket %s", path)

    async def _stop_control(self) -> None:
        if self.control is not None:
            await self.control.stop()
            self.control = None

    # ---- a device's history for the console's charts (engine/device_history.py) ----------------------
    def device_history(self, name: str, hours: float = 6.0, interfaces: tuple[str, ...] = ()) -> Future[Any]:
        return self._submit(self._device_history(name, hours, tuple(interfaces)))

    async def _device_history(self, name: str, hours: float, interfaces: tuple[str, ...]) -> Any:
        from ispvm_tui.engine import device_history

        if name not in self.runtime:
            raise KeyError(f"unknown device {name!r}")
        return await asyncio.to_thread(device_history.read_history, self.store.query, name, self.clock.now(),
                                       hours, interfaces)

    # ---- diagnostics: ping and traceroute from a router (engine/diagnostics.py) ------------------
    _diagnostics: Any = None

    @property
    def diagnostics(self) -> Any:
        if self._diagnostics is None:
            from ispvm_tui.engine.diagnostics import Diagnostics

            async def audit(row: list[Any]) -> None:
                await asyncio.wrap_future(self.store.transaction(
                    lambda con: audit_log.append(con, *row)))

            self._diagnostics = Diagnostics(
                self.config, self.secrets.get, lambda kind, summary, data: self._publish(kind, summary, data=data),
                audit, now=self.clock.now)
        return self._diagnostics

    def run_diagnostic(self, device: str, kind: str, target: str, actor: str, count: int = 5) -> Future[str]:
        return self._submit(self.diagnostics.start(device, kind, target, actor, count))

    def _diagnostic_ops(self) -> dict[str, control.Handler]:
        async def run(args: dict[str, Any], actor: str) -> dict[str, Any]:
            """Start a run and answer with all its lines once it has ended (runs end within 25 s)."""
            device, kind, target, count = args.get("device"), args.get("kind"), args.get("target"), args.get("count", 5)
            if not all(isinstance(v, str) for v in (device, kind, target)):
                raise ValueError("device, kind and target: strings; count: a whole number")
            run_id = await self.diagnostics.start(device, kind, target, actor, count)
            return await self.diagnostics.result(run_id)

        return {"diag.run": run}

    # ---- one incident in detail: timeline, notes, assignment, runbooks ----------------------------
    def incident_timeline(self, incident_id: str) -> Future[Any]:
        return self._submit(self._incident_timeline(incident_id))

    async def _incident_timeline(self, incident_id: str) -> Any:
        from ispvm_tui.engine import incident_timeline

        windows = list(self.maintenance.windows)  # copied on the loop; the windows themselves are frozen
        return await asyncio.to_thread(incident_timeline.read_timeline, self.store.query_dicts, incident_id,
                                       now=self.clock.now(), lookback_s=self.config.config_watch.lookback_s,
                                       windows=windows)

    def add_note(self, incident_id: str, text: str, actor: str) -> Future[None]:
        return self._submit(self._add_note(incident_id, text, actor))

    async def _add_note(self, incident_id: str, text: str, actor: str) -> None:
        from ispvm_tui.engine import incident_queries

        await self.note_incident(incident_id, actor, incident_queries.check_text(text, "note"))

    def assign(self, incident_id: str, assignee: str, actor: str) -> Future[IncidentView]:
        return self._submit(self.assign_incident(incident_id, assignee, actor))

    async def assign_incident(self, incident_id: str, assignee: str, actor: str) -> IncidentView:
        """Kept on the incident, in its timeline and the audit, in one transaction; notifies nobody."""
        from ispvm_tui.engine.incident_assign import assign_round, check_assignee

        assignee = check_assignee(assignee)
        async with self._book_lock:
            now = self.clock.now()
            rnd = assign_round(self.book, incident_id, assignee, actor, now)
            await self._commit_round(rnd, now, audit=(actor, "incident.assign", incident_id, assignee)
                                     if rnd.changes else None)
        if rnd.changes:
            self._publish("incident.assigned", f"{actor}: {incident_id[:8]} assigned to {assignee}", incident_id)
        return rnd.open[incident_id].view(self.alerts, now, self._critical)

    async def _assign_op(self, args: dict[str, Any], actor: str) -> dict[str, Any]:
        from ispvm_tui.engine import incident_queries
        from ispvm_tui.engine.incident_assign import check_assignee

        assignee = check_assignee(args.get("assignee"))
        incident_id = await asyncio.to_thread(incident_queries.resolve_id, self.store.query_dicts, args.get("id"),
                                              [i.id for i in self.book.all()])
        held = self.book.open.get(incident_id)
        if held is None:
            raise ValueError(f"incident {incident_id[:8]} is closed: there is nothing to assign")
        already = held.assigned_to == assignee
        view = await self.assign_incident(incident_id, assignee, actor)
        return {"incident": incident_queries.summary(view), "changed": not already}

    def audit_entries(self, limit: int = 100) -> Future[list[AuditEntryView]]:
        def read() -> list[AuditEntryView]:
            rows = audit_log.list_entries(self.store.query_dicts, **audit_log.list_args({"limit": limit}))
            return [AuditEntryView(**{k: r[k] for k in ("seq", "ts", "actor", "action", "target", "detail")})
                    for r in rows]

        return self._submit(asyncio.to_thread(read))

    def hardening_findings(self) -> Future[list[HardeningFindingView]]:
        from ispvm_tui.engine import hardening

        return self._submit(asyncio.to_thread(
            lambda: hardening.findings(self.store.query_dicts, self.config, self.secrets.get)[1]))

    def incident_runbooks(self, incident_id: str) -> Future[list[str]]:
        from ispvm_tui.engine import incident_timeline

        by_rule = {name: spec.runbook for name, spec in self.rules.ruleset.rules.items()}
        return self._submit(asyncio.to_thread(incident_timeline.runbook_links, self.store.query_dicts, incident_id,
                                              by_rule))

    async def apply_remote_config(self, device: str, categories: dict[str, tuple[str, str]], at: float) -> bool:
        """A remote collector's config read of ``device`` (normalised at its PoP), read at ``at``: stored and
        compared as a local read is (remote/centre_config.py); whether it was stored."""
        return await self._apply_config(device, categories, at)


def _record_evidence(record: ChangeRecordView, devices: list[str], start: float) -> str:
    """One evidence line for a change record whose scope holds a root device."""
    if record.starts_at <= start <= record.ends_at:
        when = f"under way since {human_duration(start - record.starts_at)} before it began"
    else:
        when = f"ended {human_duration(start - record.ends_at)} before it began"
    return (f"Change {record.id} ({record.status}, owner {record.owner}) covers {', '.join(devices[:3])}, "
            f"{when}: {record.title}")


def _change_evidence(change: Any, start: float) -> str:
    """One evidence line: which change, on what, and when relative to the incident's start."""
    if change.detected_at <= start:
        when = f"detected {human_duration(start - change.detected_at)} before it began"
    elif change.since is not None and change.since <= start:
        when = f"made within {human_duration(start - change.since)} before it began or just after"
    else:
        when = "detected just after it began"
    return f"Config change on {change.device} ({change.category}), {when}: {change.summary}"


def _optic_readings(m: OpticalModule) -> tuple[tuple[str, float | None, str], ...]:
    return (("sfp-rx-power", m.rx_power_dbm, "dBm"), ("sfp-tx-power", m.tx_power_dbm, "dBm"),
            ("sfp-temperature", m.temperature_c, "C"), ("sfp-supply-voltage", m.supply_v, "V"),
            ("sfp-tx-bias-current", m.tx_bias_ma, "mA"))
