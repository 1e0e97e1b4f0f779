"""Versioned DuckDB schema. Append migrations; never edit an applied one.

A migration is SQL, or a function run on the connection inside the migration's transaction when the
change needs computing row by row (10: the audit log's hash chain over the entries already there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ispvm_tui.engine import audit_log

Migration = str | Callable[[Any], None]

MIGRATIONS: list[tuple[int, str, Migration]] = [
    (
        1,
        "samples, alerts, incidents, outbox, deliveries, audit",
        """
        CREATE TABLE poll_log (
            ts DOUBLE NOT NULL, device VARCHAR NOT NULL, collector VARCHAR NOT NULL, ok BOOLEAN NOT NULL,
            duration_s DOUBLE, error_kind VARCHAR, error VARCHAR, stale VARCHAR);
        CREATE TABLE interface_samples (
            ts DOUBLE NOT NULL, device VARCHAR NOT NULL, interface VARCHAR NOT NULL, collector VARCHAR,
            ifindex INTEGER, admin_up BOOLEAN, oper_up BOOLEAN, speed_bps BIGINT,
            rx_bytes UBIGINT, tx_bytes UBIGINT, rx_bps DOUBLE, tx_bps DOUBLE);
        CREATE TABLE health_samples (
            ts DOUBLE NOT NULL, device VARCHAR NOT NULL, collector VARCHAR, uptime_s DOUBLE, cpu_load INTEGER,
            total_memory BIGINT, free_memory BIGINT, version VARCHAR);
        CREATE TABLE bgp_samples (
            ts DOUBLE NOT NULL, device VARCHAR NOT NULL, peer VARCHAR NOT NULL, remote_address VARCHAR,
            remote_as BIGINT, state VARCHAR, established BOOLEAN, uptime_s DOUBLE, prefixes BIGINT);
        CREATE TABLE ospf_samples (
            ts DOUBLE NOT NULL, device VARCHAR NOT NULL, router_id VARCHAR NOT NULL, address VARCHAR,
            interface VARCHAR, state VARCHAR, full_adjacency BOOLEAN);
        CREATE TABLE alerts (
            id VARCHAR PRIMARY KEY, rule VARCHAR NOT NULL, entity_type VARCHAR NOT NULL,
            entity_id VARCHAR NOT NULL, severity VARCHAR NOT NULL, state VARCHAR NOT NULL,
            starts_at DOUBLE NOT NULL, ends_at DOUBLE, summary VARCHAR, evidence JSON, labels JSON,
            incident_id VARCHAR, suppressed BOOLEAN DEFAULT false);
        CREATE TABLE incidents (
            id VARCHAR PRIMARY KEY, root_key VARCHAR NOT NULL, title VARCHAR NOT NULL, status VARCHAR NOT NULL,
            severity VARCHAR NOT NULL, priority VARCHAR NOT NULL, opened_at DOUBLE NOT NULL, closed_at DOUBLE,
            acked_by VARCHAR, acked_at DOUBLE, root_causes JSON, impact JSON, evidence JSON, labels JSON,
            alert_ids JSON, updated_at DOUBLE NOT NULL, recovering_since DOUBLE, entities JSON,
            notified_at DOUBLE, update_pending BOOLEAN);
        CREATE SEQUENCE outbox_seq;
        CREATE TABLE outbox (
            event_id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL DEFAULT nextval('outbox_seq'),
            endpoint VARCHAR NOT NULL, incident_id VARCHAR NOT NULL, event_type VARCHAR NOT NULL,
            incident JSON NOT NULL, created_at DOUBLE NOT NULL, status VARCHAR NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at DOUBLE NOT NULL, last_error VARCHAR,
            finished_at DOUBLE);
        CREATE TABLE deliveries (
            delivery_id VARCHAR NOT NULL, event_id VARCHAR NOT NULL, endpoint VARCHAR NOT NULL,
            attempt INTEGER NOT NULL, attempted_at DOUBLE NOT NULL, http_status INTEGER, outcome VARCHAR NOT NULL,
            error VARCHAR, duration_s DOUBLE);
        CREATE TABLE audit (
            ts DOUBLE NOT NULL, actor VARCHAR NOT NULL, action VARCHAR NOT NULL, target VARCHAR, detail VARCHAR);
        CREATE INDEX interface_samples_dev_ts ON interface_samples(device, ts);
        """,
    ),
    (
        2,
        "sensor, probe and neighbor samples; route counts; 5-minute and hourly rollups",
        # Rollup tables mirror the definitions in engine/rollups.py. They are written out here, not
        # generated from there, so this migration stays exactly what it was when it was applied.
        # <metric>_samples counts the non-NULL raw values behind each average: the hourly average
        # is the 5-minute averages weighted by it, which equals the average of the raw values.
        """
        ALTER TABLE health_samples ADD COLUMN route_count BIGINT;
        CREATE TABLE sensor_samples (
            ts DOUBLE NOT NULL, device VARCHAR NOT NULL, collector VARCHAR, name VARCHAR NOT NULL, value DOUBLE,
            unit VARCHAR, state VARCHAR);
        CREATE TABLE probe_samples (
            ts DOUBLE NOT NULL, device VARCHAR NOT NULL, target VARCHAR NOT NULL, sent INTEGER, received INTEGER,
            loss_pct DOUBLE, rtt_min_ms DOUBLE, rtt_avg_ms DOUBLE, rtt_max_ms DOUBLE, jitter_ms DOUBLE,
            error VARCHAR);
        CREATE TABLE neighbor_samples (
            ts DOUBLE NOT NULL, device VARCHAR NOT NULL, collector VARCHAR, local_interface VARCHAR NOT NULL,
            remote_identity VARCHAR, remote_interface VARCHAR, remote_address VARCHAR, remote_mac VARCHAR,
            platform VARCHAR, protocol VARCHAR);

        CREATE TABLE interface_rollup_5m (
            bucket DOUBLE NOT NULL, device VARCHAR NOT NULL, interface VARCHAR NOT NULL,
            samples INTEGER NOT NULL, oper_down_samples INTEGER NOT NULL,
            rx_bps_samples INTEGER NOT NULL, rx_bps_avg DOUBLE, rx_bps_max DOUBLE, rx_bps_p95 DOUBLE,
            tx_bps_samples INTEGER NOT NULL, tx_bps_avg DOUBLE, tx_bps_max DOUBLE, tx_bps_p95 DOUBLE,
            PRIMARY KEY (bucket, device, interface));
        CREATE TABLE interface_rollup_1h (
            bucket DOUBLE NOT NULL, device VARCHAR NOT NULL, interface VARCHAR NOT NULL,
            samples INTEGER NOT NULL, oper_down_samples INTEGER NOT NULL,
            rx_bps_samples INTEGER NOT NULL, rx_bps_avg DOUBLE, rx_bps_max DOUBLE, rx_bps_p95 DOUBLE,
            tx_bps_samples INTEGER NOT NULL, tx_bps_avg DOUBLE, tx_bps_max DOUBLE, tx_bps_p95 DOUBLE,
            PRIMARY KEY (bucket, device, interface));
        CREATE TABLE health_rollup_5m (
            bucket DOUBLE NOT NULL, device VARCHAR NOT NULL, samples INTEGER NOT NULL,
            cpu_load_samples INTEGER NOT NULL, cpu_load_avg DOUBLE, cpu_load_max DOUBLE, cpu_load_p95 DOUBLE,
            free_memory_samples INTEGER NOT NULL, free_memory_min BIGINT, free_memory_avg DOUBLE,
            PRIMARY KEY (bucket, device));
        CREATE TABLE health_rollup_1h (
            bucket DOUBLE NOT NULL, device VARCHAR NOT NULL, samples INTEGER NOT NULL,
            cpu_load_samples INTEGER NOT NULL, cpu_load_avg DOUBLE, cpu_load_max DOUBLE, cpu_load_p95 DOUBLE,
            free_memory_samples INTEGER NOT NULL, free_memory_min BIGINT, free_memory_avg DOUBLE,
            PRIMARY KEY (bucket, device));
        CREATE TABLE probe_rollup_5m (
            bucket DOUBLE NOT NULL, device VARCHAR NOT NULL, target VARCHAR NOT NULL, samples INTEGER NOT NULL,
            loss_pct_samples INTEGER NOT NULL, loss_pct_avg DOUBLE, loss_pct_max DOUBLE,
            rtt_ms_samples INTEGER NOT NULL, rtt_ms_avg DOUBLE, rtt_ms_max DOUBLE, rtt_ms_p95 DOUBLE,
            jitter_ms_samples INTEGER NOT NULL, jitter_ms_avg DOUBLE,
            PRIMARY KEY (bucket, device, target));
        CREATE TABLE probe_rollup_1h (
            bucket DOUBLE NOT NULL, device VARCHAR NOT NULL, target VARCHAR NOT NULL, samples INTEGER NOT NULL,
            loss_pct_samples INTEGER NOT NULL, loss_pct_avg DOUBLE, loss_pct_max DOUBLE,
            rtt_ms_samples INTEGER NOT NULL, rtt_ms_avg DOUBLE, rtt_ms_max DOUBLE, rtt_ms_p95 DOUBLE,
            jitter_ms_samples INTEGER NOT NULL, jitter_ms_avg DOUBLE,
            PRIMARY KEY (bucket, device, target));

        -- done_until: start of the first bucket not rolled up yet (0: nothing rolled up).
        CREATE TABLE rollup_watermarks (rollup VARCHAR PRIMARY KEY, done_until DOUBLE NOT NULL);
        INSERT INTO rollup_watermarks VALUES
            ('interface_rollup_5m', 0), ('interface_rollup_1h', 0), ('health_rollup_5m', 0),
            ('health_rollup_1h', 0), ('probe_rollup_5m', 0), ('probe_rollup_1h', 0);
        """,
    ),
    (
        3,
        "interface error and discard counters and their per-second rates; their rollups",
        # Appended columns: the engine inserts interface_samples rows positionally, in this order.
        # errors_ps / discards_ps are in + out added up, computed like rx_bps (no spike on a wrap or reset).
        """
        ALTER TABLE interface_samples ADD COLUMN rx_errors BIGINT;
        ALTER TABLE interface_samples ADD COLUMN tx_errors BIGINT;
        ALTER TABLE interface_samples ADD COLUMN rx_discards BIGINT;
        ALTER TABLE interface_samples ADD COLUMN tx_discards BIGINT;
        ALTER TABLE interface_samples ADD COLUMN errors_ps DOUBLE;
        ALTER TABLE interface_samples ADD COLUMN discards_ps DOUBLE;
        ALTER TABLE interface_rollup_5m ADD COLUMN errors_ps_samples INTEGER DEFAULT 0;
        ALTER TABLE interface_rollup_5m ADD COLUMN errors_ps_avg DOUBLE;
        ALTER TABLE interface_rollup_5m ADD COLUMN errors_ps_max DOUBLE;
        ALTER TABLE interface_rollup_5m ADD COLUMN discards_ps_samples INTEGER DEFAULT 0;
        ALTER TABLE interface_rollup_5m ADD COLUMN discards_ps_avg DOUBLE;
        ALTER TABLE interface_rollup_5m ADD COLUMN discards_ps_max DOUBLE;
        ALTER TABLE interface_rollup_1h ADD COLUMN errors_ps_samples INTEGER DEFAULT 0;
        ALTER TABLE interface_rollup_1h ADD COLUMN errors_ps_avg DOUBLE;
        ALTER TABLE interface_rollup_1h ADD COLUMN errors_ps_max DOUBLE;
        ALTER TABLE interface_rollup_1h ADD COLUMN discards_ps_samples INTEGER DEFAULT 0;
        ALTER TABLE interface_rollup_1h ADD COLUMN discards_ps_avg DOUBLE;
        ALTER TABLE interface_rollup_1h ADD COLUMN discards_ps_max DOUBLE;
        """,
    ),
    (
        4,
        "rule metrics on alerts, incident lifecycle history, recorded port events",
        """
        ALTER TABLE alerts ADD COLUMN metric VARCHAR;
        ALTER TABLE alerts ADD COLUMN runbook VARCHAR;
        ALTER TABLE incidents ADD COLUMN closed_by VARCHAR;
        ALTER TABLE incidents ADD COLUMN reopened INTEGER DEFAULT 0;
        CREATE TABLE incident_events (
            ts DOUBLE NOT NULL, incident_id VARCHAR NOT NULL, transition VARCHAR NOT NULL, actor VARCHAR,
            status VARCHAR, severity VARCHAR, title VARCHAR, detail VARCHAR, event_type VARCHAR);
        CREATE INDEX incident_events_incident ON incident_events(incident_id, ts);
        CREATE TABLE events (
            ts DOUBLE NOT NULL, kind VARCHAR NOT NULL, severity VARCHAR NOT NULL, device VARCHAR,
            entity_id VARCHAR, summary VARCHAR);
        CREATE INDEX events_ts ON events(ts);
        """,
    ),
    (
        5,
        "poll_log.late: results a remote collector delivered after a WAN cut (stored, never fed to the rules)",
        "ALTER TABLE poll_log ADD COLUMN late BOOLEAN DEFAULT false;",
    ),
    (
        6,
        "drop interface_samples_dev_ts: nothing reads raw samples by device (rollups and retention scan by time,"
        " which DuckDB's zone maps already serve), and the index was 85 % of the file and ~20 % of the insert CPU",
        "DROP INDEX IF EXISTS interface_samples_dev_ts;",
    ),
    (
        7,
        "outbox: per-incident sequence, superseded resends; target (circuit breaker) state; far-side keys per target"
        " (a Jira issue, a ServiceNow record, an e-mail thread)",
        # sequence: per (endpoint, incident), 1, 2, 3 ... in event order; numbered here for rows already queued.
        # queued_at: when the row was queued (created, or resent by hand); max_age_s counts from it.
        # superseded: set by a manual resend when a later event of the incident already reached the endpoint.
        """
        ALTER TABLE outbox ADD COLUMN sequence INTEGER;
        ALTER TABLE outbox ADD COLUMN superseded BOOLEAN DEFAULT false;
        ALTER TABLE outbox ADD COLUMN queued_at DOUBLE;
        UPDATE outbox SET queued_at = created_at;
        UPDATE outbox SET sequence = n.sequence
        FROM (SELECT event_id, row_number() OVER (PARTITION BY endpoint, incident_id ORDER BY seq) AS sequence
              FROM outbox) n
        WHERE outbox.event_id = n.event_id;
        CREATE TABLE webhook_endpoints (
            endpoint VARCHAR PRIMARY KEY, state VARCHAR NOT NULL, failures INTEGER NOT NULL,
            opened_at DOUBLE, probe_at DOUBLE, last_error VARCHAR, updated_at DOUBLE NOT NULL);
        CREATE TABLE target_refs (
            target VARCHAR NOT NULL, incident_id VARCHAR NOT NULL, ref VARCHAR NOT NULL, updated_at DOUBLE NOT NULL,
            PRIMARY KEY (target, incident_id));
        """,
    ),
    (
        8,
        "config fingerprints and versions (secrets never stored); the change calendar and maintenance windows made"
        " at run time (CLI, console), and the incidents linked to a change",
        # config_checks: every fingerprint taken (changed or not). config_versions: the canonical, allow-listed,
        # secret-free JSON of one category each time its hash changed (version 1, 2, ... per device and category).
        # Scopes are JSON objects {"sites": [], "devices": [], "tags": [], "services": []}.
        """
        CREATE TABLE config_checks (
            ts DOUBLE NOT NULL, device VARCHAR NOT NULL, category VARCHAR NOT NULL, hash VARCHAR NOT NULL,
            changed BOOLEAN NOT NULL, source VARCHAR NOT NULL);
        CREATE INDEX config_checks_device ON config_checks(device, category, ts);
        CREATE TABLE config_versions (
            device VARCHAR NOT NULL, category VARCHAR NOT NULL, version INTEGER NOT NULL, taken_at DOUBLE NOT NULL,
            hash VARCHAR NOT NULL, body JSON NOT NULL, summary VARCHAR, source VARCHAR NOT NULL,
            PRIMARY KEY (device, category, version));
        CREATE TABLE change_records (
            id VARCHAR PRIMARY KEY, title VARCHAR NOT NULL, description VARCHAR NOT NULL, starts_at DOUBLE NOT NULL,
            ends_at DOUBLE NOT NULL, scope JSON NOT NULL, owner VARCHAR NOT NULL, status VARCHAR NOT NULL,
            created_at DOUBLE NOT NULL, created_by VARCHAR NOT NULL, updated_at DOUBLE NOT NULL);
        CREATE TABLE maintenance_windows (
            id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, scope JSON NOT NULL, starts_at DOUBLE, ends_at DOUBLE,
            weekly JSON NOT NULL, timezone VARCHAR, status VARCHAR NOT NULL, note VARCHAR NOT NULL,
            created_at DOUBLE NOT NULL, created_by VARCHAR NOT NULL, updated_at DOUBLE NOT NULL);
        CREATE TABLE change_incidents (
            change_id VARCHAR NOT NULL, incident_id VARCHAR NOT NULL, linked_at DOUBLE NOT NULL,
            PRIMARY KEY (change_id, incident_id));
        """,
    ),
    (
        9,
        "incidents.assigned_to: who an incident is assigned to (its history is in incident_events, transition"
        " 'assigned')",
        "ALTER TABLE incidents ADD COLUMN assigned_to VARCHAR;",
    ),
    (
        10,
        "the audit log hash-chained: audit.seq, prev_hash, hash (existing entries chained in the order written);"
        " audit_anchor: where retention cut the chain",
        audit_log.chain_existing,
    ),
    (
        11,
        "inbound_deliveries: the delivery ids of accepted inbound alert requests (a replay is refused)",
        """
        CREATE TABLE inbound_deliveries (
            source VARCHAR NOT NULL, delivery_id VARCHAR NOT NULL, received_at DOUBLE NOT NULL,
            alerts INTEGER NOT NULL, PRIMARY KEY (source, delivery_id));
        """,
    ),
    (
        12,
        "health_samples.firmware, firmware_upgrade: the RouterBOARD firmware and the one the installed RouterOS"
        " carries (they differ until /system routerboard upgrade and a reboot)",
        "ALTER TABLE health_samples ADD COLUMN firmware VARCHAR; "
        "ALTER TABLE health_samples ADD COLUMN firmware_upgrade VARCHAR;",
    ),
]
