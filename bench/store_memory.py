"""The store alone under a fleet's sample load: DuckDB's memory, ingest and rollup time per setting.

    .venv/bin/python -m bench.store_memory --routers 1000 --minutes 30 --settings memory_limit=64MB
    .venv/bin/python -m bench.store_memory ... --settings memory_limit=192MB --settings memory_limit=48MB

For each ``--settings`` (engine/store.py's own when none), a child process opens a fresh store, feeds it what
the engine writes per poll interval (a poll_log and health row per router and collector, an interface row per
router x interface x collector, both collectors API and SNMP), as fast as it takes it, one simulated minute at
a time, with a rollup and retention round (rollups.maintenance_once) every 5 simulated minutes, as the engine
does. It prints per setting: the writer's seconds per simulated minute (what the engine's writer thread would
spend), the slowest rollup round, DuckDB's own figure (duckdb_memory()) and the process's anonymous RSS at the
end and at most. The child imports only the store, so its RSS is the store's plus Python's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.engine_probe import smaps_rollup
from bench.engine_scale import env_with_project

PROJECT = Path(__file__).resolve().parent.parent


def child(spec: dict[str, Any]) -> dict[str, Any]:
    from ispvm_tui.config import Retention
    from ispvm_tui.engine import store as store_mod
    from ispvm_tui.engine.rollups import maintenance_once

    settings = dict(spec["settings"])
    store_mod.MEMORY_LIMIT = settings.pop("memory_limit", store_mod.MEMORY_LIMIT)
    store = store_mod.Store(Path(spec["dir"]) / "store.duckdb")
    for key, value in settings.items():
        store.transaction(lambda con, k=key, v=value: con.execute(f"SET {k} = '{v}'")).result()
    routers, itfs = spec["routers"], spec["interfaces"]
    names = [f"R{i}" for i in range(routers)]
    itf_names = [f"ether{k}" for k in range(1, itfs + 1)]
    t_sim = time.time() - spec["minutes"] * 60
    writer_s: list[float] = []
    rollup_s: list[float] = []
    peak_anon = 0.0
    for minute in range(spec["minutes"]):
        ts0 = t_sim + minute * 60
        t0 = time.monotonic()
        for d, dev in enumerate(names):
            ts = ts0 + d * 60 / routers
            for col in ("api", "snmp"):
                store.append("poll_log", [(ts, dev, col, True, 0.05, None, None, None, False)])
                store.append("health_samples",
                             [(ts, dev, col, 86400.0 + ts, 5, 2**30, 2**29, "7.16", 900, "7.16", "7.16")])
                n = minute * 60
                store.append("interface_samples", [
                    (ts, dev, name, col, k, True, True, 10**9, n * 125_000 + k, n * 62_500 + k, 1e6, 5e5,
                     0, 0, 0, 0, 0.0, 0.0) for k, name in enumerate(itf_names)])
        store.flush(timeout=600)
        writer_s.append(time.monotonic() - t0)
        if minute % 5 == 4:
            t1 = time.monotonic()
            asyncio.run(maintenance_once(store, ts0 + 60, Retention(), grace_s=60))
            rollup_s.append(time.monotonic() - t1)
        peak_anon = max(peak_anon, smaps_rollup().get("Anonymous", 0.0))
    mem = store.query("SELECT tag, memory_usage_bytes FROM duckdb_memory() WHERE memory_usage_bytes > 0")
    out = {"settings": spec["settings"], "writer_s_per_min_p50": round(sorted(writer_s)[len(writer_s) // 2], 3),
           "writer_s_per_min_max": round(max(writer_s), 3), "rollup_s_max": round(max(rollup_s, default=0), 3),
           "duckdb_mb": {t: round(b / 1048576, 1) for t, b in mem},
           "duckdb_total_mb": round(sum(b for _, b in mem) / 1048576, 1),
           "anon_end_mb": smaps_rollup().get("Anonymous"), "anon_peak_mb": peak_anon,
           "rows": store.rows_written}
    store.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.store_memory", description=__doc__.split("\n")[0])
    p.add_argument("--routers", type=int, default=1000)
    p.add_argument("--interfaces", type=int, default=24)
    p.add_argument("--minutes", type=int, default=30, help="simulated minutes of samples")
    p.add_argument("--settings", action="append", default=[],
                   help="DuckDB settings, e.g. memory_limit=64MB,checkpoint_threshold=4MB (repeat to compare)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(sys.stdin.readline()))), flush=True)
        return
    results = []
    for text in args.settings or [""]:
        settings = dict(kv.split("=", 1) for kv in text.split(",") if "=" in kv)
        with tempfile.TemporaryDirectory(prefix="store-memory-") as work:
            spec = {"settings": settings, "dir": work, "routers": args.routers, "interfaces": args.interfaces,
                    "minutes": args.minutes}
            run = subprocess.run([sys.executable, "-m", "bench.store_memory", "--child"], cwd=PROJECT,
                                 env=env_with_project(), input=json.dumps(spec) + "\n", capture_output=True,
                                 text=True, timeout=3600)
            lines = [x for x in run.stdout.splitlines() if x.startswith("{")]
            res = json.loads(lines[-1]) if lines else {"settings": settings, "error": run.stderr[-400:]}
        results.append(res)
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
