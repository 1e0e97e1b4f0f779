"""The whole engine against a fleet with a real topology: CPU, memory, poll gaps, storms, SIGTERM.

    .venv/bin/python -m bench.engine_scale --routers 1000 --interfaces 24 --interval 60
    .venv/bin/python -m bench.engine_scale --routers 60 --interval 10 --steady-intervals 2     # ~3 minutes
    .venv/bin/python -m bench.engine_scale ... --baseline previous.json                        # side by side

One lab process (``bench.lab_topology``: two cores, PoPs, access routers, every router on
its own loopback address with the RouterOS API and SNMP v2c) serves every phase:

1. collectors only: ``bench.poll_scale``'s poller in a child process, same intervals;
2. the real engine, ``ispvm run --headless --json`` on a generated config.toml (secrets in
   the encrypted file or the keyring, a webhook to a receiver in this process): start-up,
   a steady phase (CPU per thread, peak RSS), then storms: every router behind CORE2
   powered off, later everything but the attach point; restore and wait for closing;
3. after the engine stopped: poll gaps, timeouts, incidents and alerts from its DuckDB file;
4. a second engine start, sent SIGTERM at a random moment before its first poll.

The last line of output is one JSON object with every figure (``--baseline`` reads one back).
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import secrets as pysecrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.lab_topology import ATTACH, build_topology
from bench.poll_scale import code_version, percentile, raise_fd_limit

PROJECT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
SECRET_NAMES = {"password": "bench/router-password", "community": "bench/snmp-community",
                "webhook": "bench/webhook-secret"}
# The keyring store (bench/lab_keyring.py) serves these lab values; the file store gets a random webhook key.
KEYRING_WEBHOOK_SECRET = "ispvm-bench-webhook"
CORE_LINK = "CORE1:sfp-core--CORE2:sfp-core"


def env_with_project(extra: dict[str, str] | None = None) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


# ---- processes ----------------------------------------------------------------------


class LabTopology:
    """``bench.lab_topology`` in a child process, driven over its stdin/stdout."""

    def __init__(self, args: argparse.Namespace) -> None:
        cmd = [sys.executable, "-m", "bench.lab_topology", "--routers", str(args.routers),
               "--interfaces", str(args.interfaces), "--address-base", args.address_base,
               "--snmp-view-s", str(args.lab_snmp_view_s)]
        self.proc = subprocess.Popen(cmd, cwd=PROJECT, env=env_with_project(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self._lock = threading.Lock()
        self.ready = self._read()
        if not self.ready.get("ready"):
            self.close()
            raise SystemExit(f"lab did not start: {self.ready.get('error', 'no ready line')}")

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            return {"ready": False, "error": f"lab process exited with {self.proc.wait()}"}
        return dict(json.loads(line))

    def send(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
            return self._read()

    def stats(self) -> dict[str, Any]:
        return self.send("stats")

    def stop(self) -> dict[str, Any]:
        try:
            return self.send("stop") if self.proc.poll() is None else {}
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def proc_cpu(pid: int) -> float | None:
    """utime + stime of a process (all its threads), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    out: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def proc_status_kb(pid: int, key: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


@dataclass
class EngineProc:
    """``ispvm run --headless --json`` with its event lines collected as they arrive."""

    config: Path
    env: dict[str, str]
    stderr_path: Path
    events: list[dict[str, Any]] = field(default_factory=list)  # each with "_recv" (epoch)
    spawned_at: float = 0.0
    proc: subprocess.Popen[str] | None = None
    probe_out: Path | None = None  # bench/engine_probe.py writes its reports next to this path
    mem_reports: int = 0

    def start(self) -> None:
        ispvm = Path(sys.executable).parent / "ispvm"
        cmd = [str(ispvm)] if ispvm.exists() else [sys.executable, "-m", "ispvm_tui.cli"]
        if self.probe_out is not None:
            cmd = [sys.executable, "-m", "bench.engine_probe"]
            self.env = {**self.env, "ISPVM_PROBE_OUT": str(self.probe_out)}
        cmd += ["run", "--headless", "--json", "--config", str(self.config)]
        self._stderr = self.stderr_path.open("w")
        self.spawned_at = time.time()
        self.proc = subprocess.Popen(cmd, cwd=self.config.parent, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, name="engine-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    event["_recv"] = time.time()
                    self.events.append(event)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def probe(self, sig: int, path: Path | None, timeout: float = 300.0) -> Path | None:
        """Ask bench/engine_probe.py for a report (SIGUSR1: memory, SIGUSR2: profile on/off); the file it
        wrote, once it is there (``path`` None: nothing to wait for)."""
        if self.probe_out is None or self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(sig)
        if path is None:
            return None
        return path if wait_until(path.exists, timeout, 0.2) else None

    def of_kind(self, kind: str, since: float = 0.0) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e.get("kind") == kind and (e.get("at") or 0) >= since]

    def terminate(self, timeout: float = 120.0) -> tuple[float, int | None]:
        """SIGTERM; seconds until it exited (killed after ``timeout``) and its exit status."""
        assert self.proc is not None
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc: int | None = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        elapsed = time.monotonic() - t0
        self._reader.join(timeout=10)
        self._stderr.close()
        return elapsed, rc


# ---- config and secrets -------------------------------------------------------------


def q(value: str) -> str:
    return json.dumps(value)  # a TOML basic string for the plain ASCII written here


def write_config(path: Path, args: argparse.Namespace, lab: dict[str, Any], database: str, webhook_url: str) -> None:
    sc = build_topology(args.routers, args.interfaces, args.address_base)
    address = {name: (addr, api, snmp) for name, addr, api, snmp in lab["routers"]}
    lines = [
        "# Written by bench.engine_scale for a lab fleet on loopback.",
        "[ispvm]", f"database = {q(database)}", "",
        "[polling]", f"interval_s = {args.interval:g}",
    ]
    if args.jitter is not None:
        lines.append(f"jitter = {args.jitter:g}")
    lines += ["", "[incidents]", f"close_after_s = {args.close_after:g}", "",
              "[console]", f"attach = [{q(ATTACH)}]", ""]
    for site in sc.sites:
        lines += ["[[sites]]", f"name = {q(site.name)}"]
        if site.subscribers is not None:
            lines.append(f"subscribers = {site.subscribers}")
        lines.append("")
    lines += ["[credentials.lab]", f"username = {q(lab['username'])}",
              f"password_secret = {q(SECRET_NAMES['password'])}", "",
              "[snmp.lab]", 'version = "2c"', f"community_secret = {q(SECRET_NAMES['community'])}", ""]
    for dev in sc.devices:
        addr, api_port, snmp_port = address[dev.name]
        lines += ["[[devices]]", f"name = {q(dev.name)}", f"site = {q(dev.site)}", f"role = {q(dev.role)}",
                  f"address = {q(addr)}", f"api_port = {api_port}", 'credential = "lab"', 'snmp = "lab"',
                  f"snmp_port = {snmp_port}"]
        if dev.subscribers is not None:
            lines.append(f"subscribers = {dev.subscribers}")
        lines.append("")
    for link in sc.links:
        lines += ["[[links]]", f"a = {q(link.a)}", f"b = {q(link.b)}", f"speed_mbps = {link.speed_mbps}", ""]
    for peer in sc.bgp_peers:
        lines += ["[[bgp_peers]]", f"device = {q(peer.device)}", f"name = {q(peer.name)}",
                  f"remote_as = {peer.remote_as}", f"remote_address = {q(peer.remote_address)}",
                  f"provider = {q(peer.provider or '')}", ""]
    lines += ["[[notify.webhooks]]", 'name = "bench"', f"url = {q(webhook_url)}",
              f"secret = {q(SECRET_NAMES['webhook'])}", "max_attempts = 3", ""]
    path.write_text("\n".join(lines))


def prepare_secrets(args: argparse.Namespace, work: Path, lab: dict[str, Any]) -> tuple[dict[str, str], str]:
    """The engine's environment for the chosen store, and the webhook's HMAC key."""
    if args.secrets == "keyring":
        # No desktop keyring on a bench host: a keyring backend serving the lab's public login (bench/lab_keyring.py),
        # reached through keyring's own lookup path as the engine would reach a real one.
        return env_with_project({"PYTHON_KEYRING_BACKEND": "bench.lab_keyring.LabKeyring",
                                 "XDG_DATA_HOME": str(work / "data")}), KEYRING_WEBHOOK_SECRET
    from ispvm_tui.secrets import EncryptedFileSecrets

    passphrase = pysecrets.token_urlsafe(24)
    webhook = pysecrets.token_hex(16)
    data = work / "data"
    store = EncryptedFileSecrets(data / "ispvm" / "secrets.enc", passphrase=passphrase)
    for key, value in (("password", lab["password"]), ("community", lab["community"]), ("webhook", webhook)):
        store.set(SECRET_NAMES[key], value)
    return env_with_project({"XDG_DATA_HOME": str(data), "ISPVM_SECRETS_PASSPHRASE": passphrase,
                             "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}), webhook


# ---- collectors-only phase (child process) -----------------------------------------


def collectors_child() -> None:
    """Poll the lab like bench.poll_scale (its functions), settings from one JSON line on stdin."""
    import asyncio

    from bench.poll_scale import measure

    spec = json.loads(sys.stdin.readline())
    ns = argparse.Namespace(protocols=["api", "snmp"], concurrency=spec["concurrency"], timeout=spec["timeout"],
                            snmp_timeout=spec["snmp_timeout"], snmp_retries=spec["snmp_retries"],
                            cycles=spec["cycles"], interval=spec["interval"], quiet=True,
                            gc_freeze=True, gc_gen0=20_000)  # the engine's own GC settings (engine/core.py)
    raise_fd_limit()
    stats, wall, cpu, _gc = asyncio.run(measure(ns, spec["lab"], None))
    cycles = stats.cycles
    steady = cycles[1:] or cycles
    import resource

    print(json.dumps({
        "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "cycle_cpu_s": [round(c.cpu_s, 3) for c in cycles],
        "cycle_s": [round(c.duration_s, 3) for c in cycles],
        "steady_cpu_s": round(sum(c.cpu_s for c in steady), 3), "steady_cycles": len(steady),
        "polls": sum(c.polls for c in cycles), "failed": sum(c.failed for c in cycles),
        "errors": dict(stats.errors), "stale": sum(c.stale for c in cycles),
        "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }), flush=True)


def run_collectors(args: argparse.Namespace, lab: dict[str, Any]) -> dict[str, Any]:
    spec = {"concurrency": 64, "timeout": 5.0, "snmp_timeout": 2.0, "snmp_retries": 1,  # the engine's defaults
            "cycles": args.steady_intervals + 1, "interval": args.interval,
            "lab": {k: lab[k] for k in ("routers", "username", "password", "community")}}
    proc = subprocess.Popen([sys.executable, "-m", "bench.engine_scale", "--collectors-child"], cwd=PROJECT,
                            env=env_with_project(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(json.dumps(spec) + "\n", timeout=(args.steady_intervals + 3) * args.interval + 300)
    lines = [x for x in out.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"collectors child exited with {proc.returncode}"}
    res = dict(json.loads(lines[-1]))
    res["cores"] = round(res["steady_cpu_s"] / (res["steady_cycles"] * args.interval), 4)
    return res


# ---- waiting ------------------------------------------------------------------------


def wait_until(predicate: Any, timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- storms -------------------------------------------------------------------------

STORMS = {
    # name: (lab command, what the right root is)
    "behind-core2": ("down behind CORE2", "CORE2 (device)"),
    "all-but-attach": (f"down all-but {ATTACH}", f"{ATTACH}'s neighbours or its links"),
    "all": ("down all", f"{ATTACH} (the attach point)"),
}


def root_is_right(storm: str, roots: list[dict[str, Any]], neighbours: set[str]) -> bool:
    ids = [str(r.get("entity_id", "")) for r in roots]
    if not ids:
        return False
    if storm == "behind-core2":
        # CORE2 itself; or, when no dual-homed PoP survives to see its ports die, the link to it (the engine
        # cannot tell a dead router from a cut link when only one side is left to ask).
        return all(i in ("CORE2", CORE_LINK) for i in ids)
    if storm == "all":
        return ids == [ATTACH]
    # Everything past the attach point is dark: the roots are what it sees die, its neighbours or links.
    return all(i in neighbours or f"{ATTACH}:" in i for i in ids)


def run_storm(name: str, args: argparse.Namespace, lab: LabTopology, engine: EngineProc, sink: Any,
              neighbours: set[str]) -> dict[str, Any]:
    command, expected = STORMS[name]
    fired_before = len(engine.of_kind("alert.fired"))
    stop = lab.send(command)
    stop_at = float(stop["at"])
    say(f"storm {name}: {command} ({stop['devices']} routers off)")
    out: dict[str, Any] = {"storm": name, "command": command, "devices_off": stop["devices"],
                           "expected_root": expected}
    detect_limit = 2 * args.interval + 30
    wait_until(lambda: engine.of_kind("incident.opened", stop_at), detect_limit, 0.1)
    opened = engine.of_kind("incident.opened", stop_at)
    out["detect_s"] = round(opened[0]["at"] - stop_at, 2) if opened else None
    # Keep the fault a while longer: later incidents, alerts and root changes of the same storm.
    time.sleep(args.storm_hold if opened else 0)
    in_storm = engine.of_kind("incident.opened", stop_at)
    out["incidents_opened"] = len(in_storm)
    out["incident_ids"] = [e.get("incident_id") for e in in_storm]
    out["titles"] = [e.get("summary") for e in in_storm][:5]
    out["alerts_fired"] = len(engine.of_kind("alert.fired")) - fired_before
    ids = {i for i in out["incident_ids"] if i}
    # This storm's incidents only: a late notice about the previous storm's incident is not its webhook.
    hooks = [h for h in sink.received() if h.received_at >= stop_at and h.json.get("incident", {}).get("id") in ids]
    out["webhook_first_s"] = round(hooks[0].received_at - stop_at, 2) if hooks else None
    out["webhook_after_incident_s"] = (round(hooks[0].received_at - opened[0]["at"], 2)
                                       if hooks and opened else None)
    out["webhook_signatures_ok"] = all(h.signature_ok for h in hooks) if hooks else None
    right = [h for h in hooks if root_is_right(name, h.json.get("incident", {}).get("root_causes", []), neighbours)]
    out["root_right_s"] = round(right[0].received_at - stop_at, 2) if right else None
    restore = lab.send("restore")
    restore_at = float(restore["at"])
    out["fault_s"] = round(restore_at - stop_at, 1)
    say(f"storm {name}: restored; detect {out['detect_s']} s, {out['incidents_opened']} incidents, "
        f"{out['alerts_fired']} alerts; waiting for incidents to close")
    close_limit = args.close_after + 4 * args.interval + 30

    def all_closed() -> bool:
        closed = {e.get("incident_id") for e in engine.of_kind("incident.closed", stop_at)}
        return ids <= closed

    closed = wait_until(all_closed, close_limit, 0.5)
    last = [e["at"] for e in engine.of_kind("incident.closed", stop_at) if e.get("incident_id") in ids]
    out["all_closed"] = closed
    out["closed_after_restore_s"] = round(max(last) - restore_at, 1) if closed and last else None
    out["incidents_opened_after_restore"] = len(engine.of_kind("incident.opened", restore_at))
    out["window"] = [stop_at, restore_at]
    return out


def storm_db_figures(con: Any, storm: dict[str, Any]) -> None:
    """From the engine's database: alerts of the storm and how many were suppressed, the incidents' roots."""
    t0, t1 = storm["window"]
    row = con.execute("SELECT count(*), count(*) FILTER (WHERE suppressed) FROM alerts WHERE starts_at BETWEEN ? AND ?",
                      [t0, t1]).fetchone()
    storm["db_alerts"], storm["db_alerts_suppressed"] = int(row[0]), int(row[1])
    roots = []
    for inc_id in storm["incident_ids"][:5]:
        r = con.execute("SELECT root_causes, status FROM incidents WHERE id = ?", [inc_id]).fetchone()
        if r is not None:
            roots.append({"roots": [rc.get("entity_id") for rc in json.loads(r[0] or "[]")], "status": r[1]})
    storm["db_roots"] = roots


# ---- poll log -----------------------------------------------------------------------


def poll_figures(con: Any, args: argparse.Namespace, spawned: float, s0: float, s1: float,
                 healthy_end: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    first = con.execute("SELECT min(ts), min(ts + duration_s) FROM poll_log").fetchone()
    out["first_poll_started_s"] = round(first[0] - spawned, 2) if first[0] is not None else None
    out["first_poll_s"] = round(first[1] - spawned, 2) if first[1] is not None else None
    rows = con.execute(
        "SELECT collector, ts, ts - lag(ts) OVER (PARTITION BY device, collector ORDER BY ts) FROM poll_log "
        "WHERE ts BETWEEN ? AND ?", [s0 - 3 * args.interval, s1]).fetchall()
    gaps: dict[str, list[float]] = {"api": [], "snmp": []}
    for collector, ts, gap in rows:
        if gap is not None and ts >= s0:
            gaps.setdefault(collector, []).append(gap)
    every = [g for v in gaps.values() for g in v]
    out["gap_s"] = {k: {"p50": round(percentile(v, 0.5), 2), "p99": round(percentile(v, 0.99), 2),
                        "max": round(max(v), 2), "n": len(v)} for k, v in gaps.items() if v}
    out["gap_p50_s"] = round(percentile(every, 0.5), 2) if every else None
    out["gap_p99_s"] = round(percentile(every, 0.99), 2) if every else None
    out["gap_max_s"] = round(max(every), 2) if every else None
    # Polls a device could have had in the window: one per interval, each start up to the jitter late.
    jitter = 0.1 if args.jitter is None else args.jitter
    allowed = math.floor((s1 - s0) / (args.interval * (1 + jitter)))
    counts = dict(con.execute("SELECT device || ' ' || collector, count(*) FROM poll_log WHERE ts BETWEEN ? AND ? "
                              "GROUP BY 1", [s0, s1]).fetchall())
    pairs = [f"{name} {c}" for name in build_names(args) for c in ("api", "snmp")]
    short = sorted(p for p in pairs if counts.get(p, 0) < allowed)
    out["polls_allowed_per_device"] = allowed
    out["short_polled"] = len(short)
    out["short_polled_examples"] = short[:5]
    failures = con.execute(
        "SELECT collector, coalesce(error_kind, 'none'), count(*) FROM poll_log WHERE NOT ok AND ts BETWEEN ? AND ? "
        "GROUP BY 1, 2 ORDER BY 3 DESC", [spawned, healthy_end]).fetchall()
    out["healthy_failures"] = {f"{c} {k}": n for c, k, n in failures}
    out["healthy_timeouts"] = {c: sum(n for cc, k, n in failures if cc == c and k == "timeout")
                               for c in ("api", "snmp")}
    out["healthy_stale_polls"] = con.execute(
        "SELECT count(*) FROM poll_log WHERE ok AND stale IS NOT NULL AND ts BETWEEN ? AND ?",
        [spawned, healthy_end]).fetchone()[0]
    out["healthy_polls"] = con.execute("SELECT count(*) FROM poll_log WHERE ts BETWEEN ? AND ?",
                                       [spawned, healthy_end]).fetchone()[0]
    return out


def build_names(args: argparse.Namespace) -> list[str]:
    return [d.name for d in build_topology(args.routers, args.interfaces, args.address_base).devices]


# ---- the run ------------------------------------------------------------------------


def steady_phase(args: argparse.Namespace, lab: LabTopology, engine: EngineProc) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ok = wait_until(lambda: lab.stats().get("first_read_at") is not None or engine.proc.poll() is not None,
                    args.startup_timeout, 0.5)
    first = lab.stats().get("first_read_at")
    if not ok or first is None:
        raise SystemExit(f"the engine did not poll within {args.startup_timeout:g} s "
                         f"(exit status {engine.proc.poll()}; see {engine.stderr_path})")
    out["first_lab_read_s"] = round(first - engine.spawned_at, 2)
    warmup = args.warmup_intervals * args.interval
    say(f"engine: first router read {out['first_lab_read_s']} s after start; warming up {warmup:g} s")
    # Connects, logins, menu detection and the config baselines (engine/config_watch.py reads every device once
    # after its first poll, 8 at a time: about 4 minutes at 1,000 routers): the start-up, not the steady state.
    # RSS every 5 s through the warm-up: where the start-up peak (VmHWM) comes from.
    timeline: list[tuple[float, float]] = []
    end = time.monotonic() + warmup
    while time.monotonic() < end:
        rss = proc_status_kb(engine.pid, "VmRSS")
        if rss is not None:
            timeline.append((round(time.time() - engine.spawned_at, 1), round(rss / 1024, 1)))
        time.sleep(min(5.0, max(0.0, end - time.monotonic())))
    out["rss_warmup_mb"] = timeline
    peak = max(timeline, key=lambda x: x[1], default=None)
    if peak is not None:
        say(f"engine: warm-up RSS {timeline[0][1]:.0f} -> {timeline[-1][1]:.0f} MB, peak {peak[1]:.0f} MB "
            f"at {peak[0]:.0f} s after start")
    if args.probe:
        out["memory_after_warmup"] = memory_probe(engine)
    if args.profile:
        engine.probe(signal.SIGUSR2, None)  # profile on
    cpu0, threads0, lab0, t0 = proc_cpu(engine.pid), thread_cpu(engine.pid), lab.stats(), time.time()
    say(f"engine: steady phase, {args.steady_intervals} intervals of {args.interval:g} s")
    time.sleep(args.steady_intervals * args.interval)
    cpu1, threads1, lab1, t1 = proc_cpu(engine.pid), thread_cpu(engine.pid), lab.stats(), time.time()
    if args.profile:
        assert engine.probe_out is not None
        prof = engine.probe(signal.SIGUSR2, Path(f"{engine.probe_out}.prof"))
        out["profile"] = profile_summary(prof) if prof else {"error": "no profile written"}
    if args.probe:
        out["memory_steady"] = memory_probe(engine)
    wall = t1 - t0
    out["window"] = [t0, t1]
    out["cpu_s"] = round((cpu1 or 0) - (cpu0 or 0), 3)
    out["cores"] = round(out["cpu_s"] / wall, 4)
    by_thread: dict[str, float] = {}
    for tid, (name, cpu) in threads1.items():
        # Python's threads keep the process's name: the main thread (the event loop) is told apart by its id.
        key = f"{name} (main)" if tid == engine.pid else f"{name}/{tid}"
        by_thread[key] = cpu - threads0.get(tid, (name, 0.0))[1]
    out["threads_cores"] = {k: round(v / wall, 4) for k, v in sorted(by_thread.items(), key=lambda kv: -kv[1])
                            if v > 0.005 * wall}
    out["threads"] = len(threads1)
    out["rss_hwm_mb"] = round((proc_status_kb(engine.pid, "VmHWM") or 0) / 1024, 1)
    out["lab_cores"] = round((lab1["cpu_s"] - lab0["cpu_s"]) / wall, 4)
    out["lab_reads_per_s"] = round((lab1["reads"] - lab0["reads"]) / wall, 1)
    return out


def memory_probe(engine: EngineProc) -> dict[str, Any]:
    """The engine's memory report (bench/engine_probe.py), printed in short as it arrives."""
    assert engine.probe_out is not None
    engine.mem_reports += 1
    path = engine.probe(signal.SIGUSR1, Path(f"{engine.probe_out}.mem-{engine.mem_reports}.json"))
    if path is None:
        return {"error": "no memory report written"}
    report = dict(json.loads(path.read_text()))
    say(f"memory: smaps {report.get('smaps')}; anon {report.get('anon_mb')}; malloc {report.get('malloc')}; "
        f"pymalloc {report.get('pymalloc')}; threads {report.get('threads')}; "
        f"duckdb {report.get('duckdb', {}).get('memory_total_mb')} MB; traced {report.get('traced_mb')} MB; "
        f"structures {report.get('structures_mb')}")
    for row in report.get("top_lines", [])[:25]:
        print(f"    {row['mb']:8.2f} MB {row['count']:9d}  {row['site']}", flush=True)
    for row in report.get("census", []):
        print(f"    {row['mb']:8.2f} MB {row['count']:9d}  {row['type']}", flush=True)
    return report


def profile_summary(path: Path, top: int = 30) -> dict[str, Any]:
    """Own time and cumulative time of the main thread's functions over the steady phase, printed."""
    import io
    import pstats

    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    print(buf.getvalue(), flush=True)
    own: dict[str, float] = {}
    for (file, _line, _fn), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        key = ("ispvm_tui." + file.split("ispvm_tui/", 1)[1].split("/", 1)[0] if "ispvm_tui/" in file
               else file.split("site-packages/", 1)[1].split("/", 1)[0] if "site-packages/" in file
               else "asyncio" if "/asyncio/" in file else "other")
        own[key] = own.get(key, 0.0) + tt
    total = sum(own.values())
    print("own time by package: " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(own.items(), key=lambda kv: -kv[1])
                                               if v > 0.01 * total), flush=True)
    return {"file": str(path), "own_s_by_package": {k: round(v, 2) for k, v in own.items()}, "total_s": round(total, 2)}


def sigterm_check(args: argparse.Namespace, work: Path, env: dict[str, str], lab: LabTopology,
                  sink_url: str, lab_ready: dict[str, Any], first_poll_s: float | None) -> dict[str, Any]:
    config = work / "config-sigterm.toml"
    write_config(config, args, lab_ready, "engine-sigterm.duckdb", sink_url)
    startup = max(1.0, first_poll_s or 5.0)
    delay = random.Random(args.seed).uniform(0.1, 0.9) * startup
    engine = EngineProc(config, env, work / "engine-sigterm.stderr")
    reads0 = lab.send("mark")["reads"]
    engine.start()
    time.sleep(delay)
    polled = lab.stats()["reads"] > reads0
    exit_s, rc = engine.terminate(timeout=max(120.0, 2 * startup))
    say(f"SIGTERM {delay:.1f} s after start: exited in {exit_s:.2f} s (status {rc})")
    return {"sent_after_s": round(delay, 2), "exit_s": round(exit_s, 2), "exit_status": rc,
            "polled_before_signal": polled, "killed": rc is None}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ispvm_tui.lab.webhook_sink import WebhookSink

    raise_fd_limit()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="engine-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    # A kept workdir is reused: each run starts from nothing (a new passphrase cannot open the old secrets
    # file, and an old database would carry the last run's incidents and polls into this one's figures).
    for old in ("data", "engine.duckdb", "engine.duckdb.wal", "engine-sigterm.duckdb", "engine-sigterm.duckdb.wal"):
        target = work / old
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    result: dict[str, Any] = {
        "routers": args.routers, "interfaces": args.interfaces, "interval_s": args.interval,
        "steady_intervals": args.steady_intervals, "secrets": args.secrets, "code": code_version(),
        "load_before": list(os.getloadavg()), "cpus": os.cpu_count(),
    }
    say(f"engine_scale: {args.routers} routers x {args.interfaces} interfaces every {args.interval:g} s; "
        f"workdir {work}")
    lab = LabTopology(args)
    sink = None
    try:
        ready = lab.ready
        result["lab"] = {"start_s": ready["start_s"], "links": ready["links"], "sites": ready["sites"]}
        say(f"lab: {len(ready['routers'])} routers, {ready['links']} links, {ready['sites']} sites, "
            f"started in {ready['start_s']:.1f} s")
        if not args.skip_collectors:
            say(f"collectors only: {args.steady_intervals + 1} cycles every {args.interval:g} s")
            lab0 = lab.stats()
            result["collectors"] = run_collectors(args, ready)
            lab1 = lab.stats()
            result["collectors"]["lab_cpu_s"] = round(lab1["cpu_s"] - lab0["cpu_s"], 3)
            say(f"collectors only: {result['collectors'].get('cores')} of a core")
        env, webhook_secret = prepare_secrets(args, work, ready)
        sink = WebhookSink(secret=webhook_secret)
        sink.start()
        config = work / "config.toml"
        write_config(config, args, ready, "engine.duckdb", sink.url)
        engine = EngineProc(config, env, work / "engine.stderr")
        if args.probe or args.profile:
            engine.probe_out = work / "engine-probe"
            for old in work.glob("engine-probe.*"):
                old.unlink()
            if args.census:
                engine.env = {**engine.env, "ISPVM_PROBE_CENSUS": "1"}
            if args.duckdb:
                engine.env = {**engine.env, "ISPVM_PROBE_DUCKDB": args.duckdb}
            if args.tracemalloc:
                engine.env = {**engine.env, "ISPVM_PROBE_TRACEMALLOC": str(args.tracemalloc)}
        lab.send("mark")  # the engine's first read, not the collectors'
        engine.start()
        say(f"engine: pid {engine.pid}, config {config}")
        try:
            result["engine"] = steady_phase(args, lab, engine)
            healthy_end = time.time()
            neighbours = neighbours_of(args, ATTACH)
            result["storms"] = []
            for name in args.storms:
                result["storms"].append(run_storm(name, args, lab, engine, sink, neighbours))
            result["engine"]["rss_hwm_end_mb"] = round((proc_status_kb(engine.pid, "VmHWM") or 0) / 1024, 1)
            if args.probe:
                result["engine"]["memory_end"] = memory_probe(engine)
            result["engine"]["cpu_total_s"] = proc_cpu(engine.pid)
        finally:
            stop_s, rc = engine.terminate()
        result["engine"]["stop_s"] = round(stop_s, 2)
        result["engine"]["exit_status"] = rc
        summary = [e for e in engine.events if e.get("kind") == "summary"]
        result["engine"]["summary"] = ({k: v for k, v in summary[-1].items() if not k.startswith("_")}
                                       if summary else None)
        result["engine"]["engine_errors"] = len(engine.of_kind("engine.error"))
        import duckdb

        con = duckdb.connect(str(work / "engine.duckdb"), read_only=True)
        try:
            s0, s1 = result["engine"].pop("window")
            result["engine"].update(poll_figures(con, args, engine.spawned_at, s0, s1, healthy_end))
            for storm in result["storms"]:
                storm_db_figures(con, storm)
                storm.pop("window")
        finally:
            con.close()
        if not args.skip_sigterm:
            result["sigterm"] = sigterm_check(args, work, env, lab, sink.url, ready,
                                              result["engine"].get("first_poll_s"))
    finally:
        if sink is not None:
            sink.stop()
        final = lab.stop()
        result.setdefault("lab", {})["maxrss_mb"] = round(final.get("maxrss_kb", 0) / 1024, 1)
    result["load_after"] = list(os.getloadavg())
    result["code_changed_during_run"] = code_version() != result["code"]
    result["targets"] = verdicts(result)
    return result


def neighbours_of(args: argparse.Namespace, device: str) -> set[str]:
    sc = build_topology(args.routers, args.interfaces, args.address_base)
    out = set()
    for link in sc.links:
        a, b = link.a.split(":", 1)[0], link.b.split(":", 1)[0]
        if device in (a, b):
            out.add(b if a == device else a)
    return out


# ---- report -------------------------------------------------------------------------


def verdicts(r: dict[str, Any]) -> dict[str, bool | None]:
    e, c, interval = r.get("engine", {}), r.get("collectors", {}), r["interval_s"]
    storms = r.get("storms", [])

    def all_of(values: list[Any]) -> bool | None:
        return None if not values or any(v is None for v in values) else all(values)

    ratio = (e["cores"] / c["cores"]) if c.get("cores") and e.get("cores") is not None else None
    return {
        "engine_cores_below_0.5": e.get("cores", 1) < 0.5 if "cores" in e else None,
        "engine_over_collectors_at_most_1.3": ratio <= 1.3 if ratio is not None else None,
        "gap_p99_within_interval_plus_10pct": (e["gap_p99_s"] <= 1.1 * interval) if e.get("gap_p99_s") else None,
        "no_timeouts_healthy": (sum(e["healthy_timeouts"].values()) == 0) if "healthy_timeouts" in e else None,
        "rss_below_200mb": (max(e.get("rss_hwm_mb", 0), e.get("rss_hwm_end_mb", 0)) < 200) if e else None,
        "first_poll_within_10s": (e["first_poll_s"] <= 10) if e.get("first_poll_s") is not None else None,
        "sigterm_honoured": (r["sigterm"]["exit_s"] <= 5 and not r["sigterm"]["killed"]) if "sigterm" in r else None,
        "incident_within_interval_plus_15s": all_of(
            [s["detect_s"] <= interval + 15 if s["detect_s"] is not None else False for s in storms]),
        "one_incident_per_storm": all_of([s["incidents_opened"] == 1 for s in storms]),
        "webhook_within_2s_of_incident": all_of(
            [s["webhook_after_incident_s"] <= 2 if s["webhook_after_incident_s"] is not None else False
             for s in storms]),
    }


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, str, bool | None]]:
    """(figure, collectors only, whole engine, target, met)."""
    e, c, t, interval = r.get("engine", {}), r.get("collectors", {}), r.get("targets", {}), r["interval_s"]
    ratio = (e["cores"] / c["cores"]) if c.get("cores") and e.get("cores") is not None else None

    def f(v: Any, fmt: str = "{}") -> str:
        return "-" if v is None else fmt.format(v)

    threads = ", ".join(f"{k} {v:.3f}" for k, v in list(e.get("threads_cores", {}).items())[:4])
    out = [
        ("CPU, share of one core", f(c.get("cores"), "{:.3f}"), f(e.get("cores"), "{:.3f}"), "< 0.5",
         t.get("engine_cores_below_0.5")),
        ("engine / collectors CPU", "1", f(ratio, "{:.2f}x"), "<= 1.3x", t.get("engine_over_collectors_at_most_1.3")),
        ("busiest threads (cores)", "", threads or "-", "", None),
        ("peak RSS (VmHWM)", f(c.get("maxrss_mb"), "{:.0f} MB"),
         f(max(e.get("rss_hwm_mb", 0), e.get("rss_hwm_end_mb", 0)) or None, "{:.0f} MB"), "< 200 MB",
         t.get("rss_below_200mb")),
        ("first poll after start", "", f(e.get("first_poll_s"), "{:.1f} s"), "<= 10 s", t.get("first_poll_within_10s")),
        ("poll gap p50 / p99 / max", "",
         f"{f(e.get('gap_p50_s'))} / {f(e.get('gap_p99_s'))} / {f(e.get('gap_max_s'))} s",
         f"p99 <= {1.1 * interval:g} s", t.get("gap_p99_within_interval_plus_10pct")),
        ("devices polled too few times", "", f"{f(e.get('short_polled'))} (of {2 * r['routers']} device x collector)",
         "0", (e.get("short_polled") == 0) if "short_polled" in e else None),
        ("timeouts, healthy lab (api/snmp)",
         " ".join(f"{k} {v}" for k, v in c.get("errors", {}).items()) or ("0" if c else "-"),
         f"{e['healthy_timeouts']['api']} / {e['healthy_timeouts']['snmp']}" if "healthy_timeouts" in e else "-",
         "0", t.get("no_timeouts_healthy")),
    ]
    for s in r.get("storms", []):
        out += [
            (f"{s['storm']}: detection", "", f"{f(s['detect_s'])} s (right root {f(s['root_right_s'])} s)",
             f"<= {interval + 15:g} s", (s["detect_s"] <= interval + 15) if s["detect_s"] is not None else False),
            (f"{s['storm']}: incidents opened", "", f"{s['incidents_opened']} ({s['devices_off']} routers off)", "1",
             s["incidents_opened"] == 1),
            (f"{s['storm']}: alerts raised / suppressed", "",
             f"{s['alerts_fired']} / {f(s.get('db_alerts_suppressed'))} (db {f(s.get('db_alerts'))})", "", None),
            (f"{s['storm']}: first webhook", "",
             f"{f(s['webhook_first_s'])} s after fault, {f(s['webhook_after_incident_s'])} s after incident",
             "<= 2 s after incident",
             (s["webhook_after_incident_s"] <= 2) if s["webhook_after_incident_s"] is not None else False),
            (f"{s['storm']}: closed after restore", "",
             f"{f(s['closed_after_restore_s'])} s" if s["all_closed"] else "NOT all closed", "", None),
        ]
    if "sigterm" in r:
        s = r["sigterm"]
        out.append(("SIGTERM during start-up", "", f"exit in {s['exit_s']:.2f} s (sent at {s['sent_after_s']:.1f} s, "
                    f"status {s['exit_status']})", "honoured (<= 5 s)", t.get("sigterm_honoured")))
    return out


def baseline_figures(r: dict[str, Any]) -> dict[str, str]:
    return {label: engine for label, _c, engine, _t, _m in rows(r)}


def print_report(r: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    table = rows(r)
    base = baseline_figures(baseline) if baseline else {}
    head = ["figure", "collectors only", "whole engine", "target", "met"]
    if baseline:
        head.insert(3, f"baseline ({baseline.get('code', {}).get('head', '?')})")
    lines = []
    for label, coll, eng, target, met in table:
        cells = [label, coll, eng, target, "-" if met is None else ("yes" if met else "NO")]
        if baseline:
            cells.insert(3, base.get(label, "-"))
        lines.append(cells)
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
    print(f"\n== engine_scale: {r['routers']} routers x {r['interfaces']} interfaces, every {r['interval_s']:g} s, "
          f"secrets {r['secrets']}, code {r['code'].get('head')} ==")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for cells in lines:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(cells, widths, strict=True)) + " |")
    print(f"host: {r['cpus']} CPUs, load {r['load_before'][0]:.2f} before, {r['load_after'][0]:.2f} after; "
          f"lab {r.get('engine', {}).get('lab_cores', '-')} of a core during the steady phase"
          + ("; CODE CHANGED on disk during the run" if r.get("code_changed_during_run") else ""))
    print(json.dumps(r), flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.engine_scale", description=__doc__.split("\n")[0])
    p.add_argument("--routers", type=int, default=60)
    p.add_argument("--interfaces", type=int, default=24)
    p.add_argument("--interval", type=float, default=60.0, help="[polling].interval_s (s)")
    p.add_argument("--steady-intervals", type=int, default=4)
    p.add_argument("--warmup-intervals", type=float, default=1.0,
                   help="intervals between the first poll and the steady phase (start-up, config baselines)")
    p.add_argument("--secrets", choices=("file", "keyring"), default="file",
                   help="where the engine finds the lab's secrets (default: the encrypted file)")
    p.add_argument("--storms", default="behind-core2,all-but-attach",
                   help=f"comma-separated, in order, from: {', '.join(STORMS)}; 'none' for no storm")
    p.add_argument("--close-after", type=float, default=None,
                   help="[incidents].close_after_s (default: 2 intervals, at least 20 s)")
    p.add_argument("--storm-hold", type=float, default=None,
                   help="seconds a fault stays after its first incident (default: one interval + 15 s)")
    p.add_argument("--jitter", type=float, default=None, help="[polling].jitter (default: the engine's)")
    p.add_argument("--address-base", default="127.61.0.0", help="router i listens on base+i")
    p.add_argument("--lab-snmp-view-s", type=float, default=5.0)
    p.add_argument("--startup-timeout", type=float, default=900.0, help="seconds to wait for the first poll")
    p.add_argument("--skip-collectors", action="store_true")
    p.add_argument("--skip-sigterm", action="store_true")
    p.add_argument("--seed", type=int, default=None, help="for the SIGTERM moment")
    p.add_argument("--workdir", help="keep config, database and logs here (default: a new temp directory)")
    p.add_argument("--baseline", metavar="FILE", help="a previous run's JSON line (or output) to print beside")
    p.add_argument("--probe", action="store_true",
                   help="memory reports from the engine after the warm-up, the steady phase and the storms "
                        "(bench/engine_probe.py: smaps, malloc, DuckDB)")
    p.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                   help="with --probe: tracemalloc in the engine from its start, top allocation sites "
                        "(slows the engine: its CPU figures are not the engine's)")
    p.add_argument("--census", action="store_true",
                   help="with --probe: the engine's objects by type in each memory report (pauses it a second or two)")
    p.add_argument("--duckdb", default="", metavar="SETTINGS",
                   help="with --probe: DuckDB settings for the engine's store instead of engine/store.py's, "
                        "e.g. memory_limit=64MB,checkpoint_threshold=4MB,threads=1")
    p.add_argument("--profile", action="store_true",
                   help="cProfile of the engine's main thread over the steady phase (slows it: CPU figures too)")
    p.add_argument("--collectors-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.collectors_child:
        return args
    args.probe = args.probe or args.tracemalloc > 0 or bool(args.duckdb) or args.census
    if args.routers < 4 or args.interfaces < 1 or args.interval <= 0 or args.steady_intervals < 1:
        p.error("--routers must be at least 4, --interfaces and --steady-intervals at least 1, --interval positive")
    storms = [s.strip() for s in args.storms.split(",") if s.strip() and s.strip() != "none"]
    bad = [s for s in storms if s not in STORMS]
    if bad:
        p.error(f"--storms: unknown {', '.join(bad)} (choose from {', '.join(STORMS)})")
    args.storms = storms
    if args.storm_hold is None:
        args.storm_hold = args.interval + 15
    if args.close_after is None:
        args.close_after = max(20.0, 2 * args.interval)
    if args.baseline:
        args.baseline_data = load_baseline(p, Path(args.baseline))
    return args


def load_baseline(p: argparse.ArgumentParser, path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        p.error(f"--baseline: cannot read {path}: {exc.strerror}")
    for line in reversed(text.splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict) and "engine" in data and "interval_s" in data:
                return data
    p.error(f"--baseline: no engine_scale JSON line in {path}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.collectors_child:
        collectors_child()
        return
    result = run(args)
    print_report(result, getattr(args, "baseline_data", None))


if __name__ == "__main__":
    main()
