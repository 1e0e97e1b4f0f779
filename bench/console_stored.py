"""First paint of ``ispvm`` on an existing database of a 1,000-device network, through the real Engine.

    .venv/bin/python -m bench.console --stored [--devices 1000] [--work DIR] [--rounds 3]

Once per work directory (default /tmp/ispvm-bench-console-<devices>): a config.toml for bench.lab_topology's
fleet (two cores, PoPs, access routers, links, sites) with every router on a loopback address where nothing
listens, and a database written by the engine itself: ``ispvm run --headless`` on that config for
``BUILD_S`` seconds, so it holds what the engine stores for that fleet (every device polled and failing,
unreachable alerts, the incidents correlated from them, poll history). No lab is needed: a refused
connection is an answer the engine handles like any other.

Then, per round, a fresh process does what ``ispvm run -c config.toml`` does (load the config, open the
store, restore the engine's stored state on a background loop, open the console, which starts the engine once
that state is drawn: ispvm_tui/run_console.py), with ``App.run_test`` instead of a terminal, and reports, from
the moment it was spawned: imports done, state restored, the first snapshot's incidents in Home's table, the
screen refreshed after it (first paint), and the engine started (collectors, scheduler, outbox: polling).

Our own package's bytecode is compiled first (``compileall``), as an installed package's is: with
PYTHONDONTWRITEBYTECODE set (as on this host), every start compiled ~100 modules from source (~0.4 s).

Secrets (a lab password and community for routers that do not exist) are in an encrypted file under the work
directory, under a passphrase made up for each run and handed to the processes in their environment only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import secrets as pysecrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BUILD_S = 60.0  # the unreachable alerts need two failed polls 10 s apart, then correlation
ADDRESS_BASE = "127.62.0.0"
CLOSED_PORT = 1  # nothing listens there on loopback: the API is refused, SNMP gets port-unreachable
INTERVAL_S = 300
PASSWORD_SECRET = "bench/router-password"
COMMUNITY_SECRET = "bench/snmp-community"
CHILD_TIMEOUT_S = 180.0


def q(value: str) -> str:
    return json.dumps(value)  # a TOML basic string for the plain ASCII written here


def write_config(path: Path, devices: int) -> None:
    from bench.lab_topology import ATTACH, build_topology

    sc = build_topology(devices, 4, ADDRESS_BASE)
    base = ipaddress.ip_address(ADDRESS_BASE)
    lines = ["# Written by bench.console --stored: a fleet on loopback addresses where nothing answers.",
             "[ispvm]", 'database = "ispvm.duckdb"', "", "[polling]", f"interval_s = {INTERVAL_S}", "",
             "[console]", f"attach = [{q(ATTACH)}]", ""]
    for site in sc.sites:
        lines += ["[[sites]]", f"name = {q(site.name)}"]
        if site.subscribers is not None:
            lines.append(f"subscribers = {site.subscribers}")
        lines.append("")
    lines += ["[credentials.lab]", 'username = "bench"', f"password_secret = {q(PASSWORD_SECRET)}", "",
              "[snmp.lab]", 'version = "2c"', f"community_secret = {q(COMMUNITY_SECRET)}", "timeout_s = 0.5",
              "retries = 0", ""]
    for i, dev in enumerate(sc.devices, start=1):
        lines += ["[[devices]]", f"name = {q(dev.name)}", f"site = {q(dev.site)}", f"role = {q(dev.role)}",
                  f"address = {q(str(base + i))}", f"api_port = {CLOSED_PORT}", 'credential = "lab"',
                  'snmp = "lab"', f"snmp_port = {CLOSED_PORT}"]
        if dev.subscribers is not None:
            lines.append(f"subscribers = {dev.subscribers}")
        lines.append("")
    for link in sc.links:
        lines += ["[[links]]", f"a = {q(link.a)}", f"b = {q(link.b)}", f"speed_mbps = {link.speed_mbps}", ""]
    path.write_text("\n".join(lines))


def secrets_env(work: Path) -> dict[str, str]:
    """A fresh passphrase and secrets file for this run; the environment the processes need for it."""
    from ispvm_tui.secrets import EncryptedFileSecrets

    passphrase = pysecrets.token_urlsafe(24)
    data = work / "data"
    path = data / "ispvm" / "secrets.enc"
    path.unlink(missing_ok=True)
    store = EncryptedFileSecrets(path, passphrase=passphrase)
    store.set(PASSWORD_SECRET, pysecrets.token_hex(8))
    store.set(COMMUNITY_SECRET, pysecrets.token_hex(8))
    project = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "XDG_DATA_HOME": str(data), "ISPVM_SECRETS_PASSPHRASE": passphrase,
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "PYTHONPATH": os.pathsep.join(filter(None, [project, os.environ.get("PYTHONPATH")]))}


def build(work: Path, devices: int, env: dict[str, str]) -> dict[str, Any]:
    """The config and the engine's database, unless the work directory has them already."""
    config = work / "config.toml"
    database = work / "ispvm.duckdb"
    if config.exists() and database.exists():
        return {"built": False}
    work.mkdir(parents=True, exist_ok=True)
    database.unlink(missing_ok=True)
    write_config(config, devices)
    print(f"building {database} ({BUILD_S:.0f} s of the engine on {devices} devices) …", file=sys.stderr, flush=True)
    started = time.monotonic()
    ispvm = Path(sys.executable).parent / "ispvm"
    cmd = [str(ispvm)] if ispvm.exists() else [sys.executable, "-m", "ispvm_tui.cli"]
    cmd += ["run", "--headless", "--json", "--config", str(config), "--duration", f"{BUILD_S:g}"]
    result = subprocess.run(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, timeout=BUILD_S + 300)
    if result.returncode != 0 or not database.exists():
        database.unlink(missing_ok=True)
        raise SystemExit(f"building the database failed ({result.returncode}): {result.stderr[-2000:]}")
    return {"built": True, "build_s": round(time.monotonic() - started, 1)}


def stored_counts(database: Path) -> dict[str, int]:
    import duckdb

    con = duckdb.connect(str(database), read_only=True)
    try:
        def count(sql: str) -> int:
            row = con.execute(sql).fetchone()
            return int(row[0]) if row else 0

        return {"incidents_open": count("SELECT count(*) FROM incidents WHERE status <> 'closed'"),
                "alerts_firing": count("SELECT count(*) FROM alerts WHERE state = 'firing'"),
                "database_mb": round(database.stat().st_size / 2**20)}
    finally:
        con.close()


def child(config: Path, size: tuple[int, int], spawned_at: float) -> None:
    """One console start, as ``ispvm run -c config`` does it; prints its figures as one JSON line."""
    marks = {"interpreter": time.time()}
    from textual.widgets import DataTable

    from ispvm_tui import cli
    from ispvm_tui.aioloop import BackgroundLoop
    from ispvm_tui.clock import SystemClock
    from ispvm_tui.engine.core import Engine
    from ispvm_tui.engine.store import Store
    from ispvm_tui.run_console import engine_console, stop_engine
    from ispvm_tui.secrets import default_secrets

    marks["imports"] = time.time()
    cfg = cli._load_config(config, [])
    store = Store(cfg.database_path(config.resolve().parent))
    engine = Engine(cfg, store=store, clock=SystemClock(), secrets=default_secrets())
    loop = BackgroundLoop()
    rows = 0
    app = None

    async def console() -> None:
        nonlocal rows
        assert app is not None
        async with app.run_test(size=size):
            table = app.query_one("#home-incidents", DataTable)
            deadline = time.monotonic() + CHILD_TIMEOUT_S
            while not (app.snapshots_taken and table.row_count):
                if time.monotonic() > deadline:
                    raise SystemExit("no incidents shown")
                await asyncio.sleep(0.002)
            marks["first_snapshot"] = time.time()
            # The refresh after the rows went in; not pilot.pause(), which waits for the whole process to
            # idle, and the engine's thread is busy with its first polls.
            painted = asyncio.Event()
            app.call_after_refresh(painted.set)
            await asyncio.wait_for(painted.wait(), CHILD_TIMEOUT_S)
            marks["first_paint"] = time.time()
            rows = table.row_count
            # The console starts the engine once the state is drawn: polling begins when that returns.
            while app.engine_starting is None or not app.engine_starting.done():
                if time.monotonic() > deadline:
                    raise SystemExit("the engine did not start")
                await asyncio.sleep(0.005)
            marks["engine_started"] = time.time()

    try:
        app = engine_console(engine, loop, title=f"ispvm · {config.name}")  # restores the stored state
        marks["restored"] = time.time()
        asyncio.run(console())
    finally:
        stop_engine(engine, loop, app)
        store.close()
    print(json.dumps({**{k: round(v - spawned_at, 3) for k, v in marks.items()}, "rows": rows}), flush=True)


def run_stored(devices: int, work: Path | None, rounds: int, sizes: tuple[tuple[int, int], ...]) -> dict[str, Any]:
    work = work or Path(f"/tmp/ispvm-bench-console-{devices}")
    env = secrets_env(work)
    built = build(work, devices, env)
    counts = stored_counts(work / "ispvm.duckdb")
    import compileall

    import ispvm_tui

    compileall.compile_dir(str(Path(ispvm_tui.__file__).parent), quiet=1)  # as an installed package has it
    runs = []
    for size in sizes:
        starts = []
        for _ in range(rounds):
            spawned = time.time()
            result = subprocess.run(
                [sys.executable, "-m", "bench.console_stored", str(work / "config.toml"), f"{size[0]}x{size[1]}",
                 repr(spawned)], cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=CHILD_TIMEOUT_S + 120)
            lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
            if result.returncode != 0 or not lines:
                raise SystemExit(f"console start failed ({result.returncode}): {result.stderr[-2000:]}")
            starts.append(json.loads(lines[-1]))
            print(f"  {size[0]}x{size[1]}: first paint {starts[-1]['first_paint'] * 1000:.0f} ms after spawn",
                  file=sys.stderr, flush=True)
        summary = {key: round(statistics.median(s[key] for s in starts), 3)
                   for key in ("interpreter", "imports", "restored", "first_snapshot", "first_paint", "engine_started")}
        runs.append({"size": f"{size[0]}x{size[1]}", "median_s": summary,
                     "first_paint_s": [s["first_paint"] for s in starts], "rows": starts[-1]["rows"]})
    return {"devices": devices, "work": str(work), **built, **counts, "runs": runs}


def print_stored(result: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    old = {r["size"]: r for r in (baseline or {}).get("stored", {}).get("runs", [])}
    print(f"stored database: {result['devices']} devices, {result['incidents_open']} open incidents, "
          f"{result['alerts_firing']} firing alerts, {result['database_mb']} MB ({result['work']})")
    for run in result["runs"]:
        m = run["median_s"]
        line = (f"  {run['size']}: from spawn, median of {len(run['first_paint_s'])}: imports {m['imports']:.2f} s, "
                f"state restored {m['restored']:.2f} s, first snapshot {m['first_snapshot']:.2f} s, "
                f"first paint {m['first_paint']:.2f} s; polling started {m['engine_started']:.2f} s")
        before = old.get(run["size"])
        if before:
            line += f"   (baseline first paint {before['median_s']['first_paint']:.2f} s)"
        print(line)


if __name__ == "__main__":
    width, height = (int(x) for x in sys.argv[2].split("x"))
    child(Path(sys.argv[1]), (width, height), float(sys.argv[3]))
