"""Prometheus ``/metrics`` for the engine itself ([metrics]; prometheus-client serves it).

Everything is read at scrape time from what the engine already keeps: its counters and timings
(engine/stats.py), its last snapshot (devices, incidents, alerts, the poller's lag), the store's write
counters, the outbox's rows by target and status (one grouped query through a reader cursor), the
targets' circuit breakers and the database's size. A scrape runs on prometheus-client's own HTTP thread
and never on the engine's loop; it takes no lock the loop waits on but the counters' for a copy.

Bound to 127.0.0.1 unless ``[metrics].address`` says otherwise: the names of devices, sites and targets
are in the labels.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ispvm_tui.engine.stats import Histogram

log = logging.getLogger(__name__)

OUTBOX_SQL = "SELECT endpoint, status, count(*) AS n FROM outbox GROUP BY ALL"


def _histogram(name: str, doc: str, label: str | None, series: dict[str, Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label] if label else [])
    for key, hist in sorted(series.items()):
        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, hist.buckets), "+Inf"], hist.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric([key] if label else [], buckets, hist.total)
    return family


class EngineCollector(Collector):
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        polls, poll_seconds, timings, deliveries = engine.stats.copy()
        yield GaugeMetricFamily("ispvm_up", "1 while the engine serves this endpoint", value=1)

        family = CounterMetricFamily("ispvm_polls", "Device polls by collector and outcome (ok or error kind)",
                                     labels=["collector", "outcome"])
        for (collector, outcome), n in sorted(polls.items()):
            family.add_metric([collector, outcome], n)
        yield family
        yield _histogram("ispvm_poll_duration_seconds", "How long a device poll took, by collector", "collector",
                         poll_seconds)
        for what, doc in (("rules", "Rule evaluation of one device's poll"),
                          ("correlation", "One correlation round (alerts to incident plans)"),
                          ("snapshot", "One rebuild of the front-ends' snapshot")):
            yield _histogram(f"ispvm_{what}_seconds", doc, None, {"": timings[what]} if what in timings else {})

        store = engine.store
        yield CounterMetricFamily("ispvm_samples_written", "Sample rows written to the database",
                                  value=store.rows_written)
        yield CounterMetricFamily("ispvm_samples_dropped", "Sample rows dropped (bad, or a table failing too long)",
                                  value=store.rows_dropped)
        yield GaugeMetricFamily("ispvm_store_writer_up", "1 while the database writer thread runs",
                                value=1 if store.writer_alive else 0)
        size = 0
        for path in (store.path, store.path.with_name(store.path.name + ".wal")):
            with contextlib.suppress(OSError):  # no WAL right after a checkpoint
                size += path.stat().st_size
        yield GaugeMetricFamily("ispvm_database_bytes", "Size of the database file and its WAL", value=size)

        family = GaugeMetricFamily("ispvm_outbox_events", "Notification events in the outbox by target and status "
                                   "(pending is the queue's depth)", labels=["target", "status"])
        try:
            for r in store.query_dicts(OUTBOX_SQL):
                family.add_metric([r["endpoint"], r["status"]], r["n"])
        except Exception as exc:  # a locked or failing store must not fail the scrape of the rest
            log.warning("metrics: outbox not read: %s", exc)
        yield family
        family = CounterMetricFamily("ispvm_deliveries", "Delivery attempts finished, by target and outcome "
                                     "(delivered, retry, dead)", labels=["target", "outcome"])
        for (target, outcome), n in sorted(deliveries.items()):
            family.add_metric([target, outcome], n)
        yield family
        dispatcher = engine.dispatcher
        family = GaugeMetricFamily("ispvm_target_circuit_open", "1 while a target's circuit breaker is open or "
                                   "half-open (its deliveries paused after failures)", labels=["target"])
        if dispatcher is not None:
            for name, breaker in sorted(dispatcher.breaker_states().items()):
                family.add_metric([name], 0 if breaker.state == "closed" else 1)
        yield family

        snap = engine.snapshot()
        family = GaugeMetricFamily("ispvm_devices", "Devices by state", labels=["state"])
        for state, n in sorted(Counter(d.state for d in snap.devices).items()):
            family.add_metric([state], n)
        yield family
        family = GaugeMetricFamily("ispvm_incidents_open", "Open incidents by severity", labels=["severity"])
        for severity, n in sorted(Counter(i.severity for i in snap.incidents if i.status != "closed").items()):
            family.add_metric([severity], n)
        yield family
        yield GaugeMetricFamily("ispvm_alerts_firing", "Alerts firing", value=snap.noise.alerts_firing)
        local = next((c for c in snap.collectors if c.kind == "local"), None)
        lag = GaugeMetricFamily("ispvm_poller_lag_seconds", "How far the most overdue answering device is past "
                                "its interval (0: the poller keeps up)")
        if local is not None and local.lag_s is not None:
            lag.add_metric([], local.lag_s)
        yield lag
        family = GaugeMetricFamily("ispvm_collector_up", "1 while a collector (local, or remote by name) is up",
                                   labels=["collector", "kind"])
        for c in snap.collectors:
            family.add_metric([c.name, c.kind], 1 if c.state == "up" else 0)
        yield family


class MetricsServer:
    """prometheus-client's HTTP server on its own daemon thread, with only the engine's collector."""

    def __init__(self, engine: Any, address: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(EngineCollector(engine))
        self.address, self.port = address, port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server, self._thread = start_http_server(self.port, self.address, registry=self.registry)
        self.port = self._server.server_address[1]  # the real one when 0 was asked for

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
