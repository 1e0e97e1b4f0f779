"""Router secrets never reach ispvm's storage, logs or events, and changing one is not a config change.

The lab's routers hold a BGP MD5 key, OSPF authentication keys, a second SNMP community and a second user's
password, and serve them as RouterOS does. The scenario changes each of them on a live router; the engine
fingerprints the routers before and after (at DEBUG, every logger). Then every stored byte — the database
file and its WAL — every log line, every event row and every webhook body is searched for every secret value
the routers ever held. ispvm's decision (docs/security.md): nothing derived from a secret is kept, so a secret
change is not reported as a change at all.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ispvm_tui import redact
from ispvm_tui.demo import start_demo
from ispvm_tui.lab.model import lab_secret
from ispvm_tui.lab.scenario import TimelineEntry, load_scenario
from tests.waiting import wait_for


def _secrets_of(run) -> set[str]:  # type: ignore[no-untyped-def]
    found = set()
    for dev in run.lab.model.devices.values():
        found |= {p.tcp_md5_key for p in dev.bgp_peers if p.tcp_md5_key}
        found |= {t.auth_key for t in dev.config.ospf_templates if getattr(t, "auth_key", "")}
        found |= {c.name for c in dev.config.communities[1:]}
        found |= {u.password for u in dev.config.users if u.password}
    return found


def test_changed_router_secrets_are_neither_stored_logged_nor_reported(tmp_path: Path, address_base: str) -> None:
    db = tmp_path / "ispvm.duckdb"
    timeline = [TimelineEntry(at=30, action="secret_change", device="EDGE1", section=section)
                for section in ("bgp", "system")]
    timeline.append(TimelineEntry(at=30, action="secret_change", device="CORE1", section="ospf"))
    scenario = load_scenario("upstream-down").model_copy(update={"timeline": timeline})
    records: list[str] = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    quiet = {name: logging.getLogger(name).level for name in redact.QUIET_LOGGERS}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    redact.install([handler])  # what `ispvm run -v` sets up: every logger at DEBUG but the API word trace
    run = start_demo(scenario, speed=10.0, database=db, address_base=address_base)
    try:
        before = _secrets_of(run)
        assert before, "the lab routers hold secrets"
        changed_at = run.lab.model.started_at + 30
        after_names = [lab_secret("EDGE1", "bgp", 1), lab_secret("EDGE1", "system", 1), lab_secret("CORE1", "ospf", 1)]

        def read_twice_after_the_change() -> bool:
            rows = run.store.query("SELECT device, count(DISTINCT ts) FROM config_checks WHERE ts > ? "
                                   "AND device IN ('EDGE1', 'CORE1') GROUP BY device", [changed_at])
            return len(rows) == 2 and all(n >= 2 for _, n in rows)

        assert wait_for(read_twice_after_the_change, 90)
        now_held = _secrets_of(run)
        assert set(after_names) & now_held, "the scenario changed the routers' secrets"
        assert run.store.query("SELECT count(*) FROM config_checks WHERE changed")[0][0] == 0
        assert run.store.query("SELECT max(version) FROM config_versions")[0][0] == 1
        events = run.store.query("SELECT kind, summary FROM events")
        bodies = [w.body.decode("utf-8", "replace") for w in run.sink.received()]
    finally:
        run.stop()
        root.removeHandler(handler)
        root.setLevel(old_level)
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
    secrets = {s for s in before | now_held | set(after_names) if len(s) >= 6}
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(db.name))
    logs = "\n".join(records)
    assert records, "the engine logged at DEBUG"
    for secret in sorted(secrets):
        assert secret.encode() not in stored, "a router secret is in the database file"
        assert secret not in logs, "a router secret is in the logs"
        assert all(secret not in str(e) for e in events), "a router secret is in an event"
        assert all(secret not in b for b in bodies), "a router secret is in a webhook"
