"""How much CPU the collectors need to poll a fleet: N lab routers x M interfaces.

    .venv/bin/python -m bench.poll_scale --routers 200 --interfaces 24 --cycles 3
    .venv/bin/python -m bench.poll_scale --routers 1000 --cycles 2 --interval 60
    .venv/bin/python -m bench.poll_scale --routers 200 --protocols snmp --profile

The lab (``bench.lab_proc``) runs in a child process, so only the poller's own
work is measured here: one RouterOSCollector and/or SnmpCollector (v2c, no
pysnmp) per router, polls bounded by an asyncio.Semaphore, every
router polled once per cycle. Without ``--interval`` cycles run back to back
(throughput); with it, cycle k starts k x interval seconds after the first one
whether or not the previous one has finished, and the run lasts cycles x
interval seconds. See bench/README.md for how to read the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import hashlib
import io
import itertools
import json
import os
import pstats
import resource
import subprocess
import sys
import sysconfig
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ispvm_tui.clock import SystemClock
from ispvm_tui.collectors.results import PollResult
from ispvm_tui.collectors.routeros import ApiTarget, RouterOSCollector
from ispvm_tui.collectors.snmp import SnmpCollector, SnmpTarget

PROJECT = Path(__file__).resolve().parent.parent
PROTOCOLS = ("api", "snmp")


@dataclass
class CycleStats:
    index: int
    started: float  # seconds since the run began
    duration_s: float = 0.0  # first poll queued to last poll finished
    cpu_s: float = 0.0  # poller CPU between the cycle's start and end
    polls: int = 0
    failed: int = 0
    stale: int = 0  # answered, but at least one family (table/menu) missing
    samples: int = 0
    slowest_poll_s: float = 0.0


@dataclass
class RunStats:
    cycles: list[CycleStats] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # "api timeout" -> count
    example_errors: dict[str, str] = field(default_factory=dict)
    stale: Counter[str] = field(default_factory=Counter)  # "snmp interfaces" -> count
    example_stale: dict[str, str] = field(default_factory=dict)
    poll_seconds: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PROTOCOLS})


def code_version() -> dict[str, str]:
    """Which code was measured: git HEAD plus a hash of the collector and lab sources as they are on disk."""
    out = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True,
                              text=True, timeout=5)
        if head.returncode == 0:
            out["head"] = head.stdout.strip()
    for part in ("collectors", "lab"):
        digest = hashlib.sha1()
        for path in sorted((PROJECT / "ispvm_tui" / part).glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        out[part] = digest.hexdigest()[:10]
    return out


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class GcTimer:
    """Wall time the process spends in garbage collection, per generation (a part of its CPU time)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._t0
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---- lab process --------------------------------------------------------------------


class LabProcess:
    """``bench.lab_proc`` in a child process, driven over its stdin/stdout."""

    def __init__(self, args: argparse.Namespace) -> None:
        cmd = [sys.executable, "-m", "bench.lab_proc", "--routers", str(args.routers),
               "--interfaces", str(args.interfaces), "--address-base", args.address_base,
               "--api-port", str(args.api_port), "--snmp-port", str(args.snmp_port),
               "--protocols", ",".join(args.protocols), "--layout", args.lab_layout]
        if args.profile_lab:
            cmd += ["--profile", args.profile_lab]
        if args.lab_snmp_view_s > 0:
            cmd += ["--snmp-view-s", str(args.lab_snmp_view_s)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(cmd, cwd=PROJECT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
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

    def _send(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def stats(self) -> dict[str, Any]:
        return self._send("stats")

    def stop(self) -> dict[str, Any]:
        try:
            return self._send("stop")
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---- poller -------------------------------------------------------------------------


def build_collectors(args: argparse.Namespace, lab: dict[str, Any], engine: Any) -> list[Any]:
    clock = SystemClock()
    collectors: list[Any] = []
    for name, address, api_port, snmp_port in lab["routers"]:
        if "api" in args.protocols:
            target = ApiTarget(name=name, address=address, username=lab["username"], password=lab["password"],
                               port=api_port)
            collectors.append(RouterOSCollector(target, clock=clock, timeout=args.timeout))
        if "snmp" in args.protocols:
            snmp = SnmpTarget(name=name, address=address, port=snmp_port, community=lab["community"],
                              timeout=args.snmp_timeout, retries=args.snmp_retries)
            collectors.append(SnmpCollector(snmp, clock=clock, engine=engine))
    return collectors


async def run_cycles(args: argparse.Namespace, collectors: list[Any], stats: RunStats) -> float:
    """Poll every collector once per cycle; returns the run's wall seconds."""
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(args.concurrency)
    t_start = loop.time()

    async def poll_one(collector: Any, cycle: CycleStats) -> None:
        async with sem:
            result: PollResult = await collector.poll()
        cycle.polls += 1
        stats.poll_seconds[result.collector].append(result.duration_s)
        cycle.slowest_poll_s = max(cycle.slowest_poll_s, result.duration_s)
        if result.ok:
            cycle.samples += len(result.interfaces)
            if result.stale:
                cycle.stale += 1
            for family, reason in result.stale.items():
                key = f"{result.collector} {family}"
                stats.stale[key] += 1
                stats.example_stale.setdefault(key, f"{result.device}: {reason}")
        else:
            cycle.failed += 1
            key = f"{result.collector} {result.error_kind}"
            stats.errors[key] += 1
            stats.example_errors.setdefault(key, f"{result.device}: {result.error}")

    async def one_cycle(k: int) -> None:
        cycle = CycleStats(index=k + 1, started=loop.time() - t_start)
        stats.cycles.append(cycle)
        t0, cpu0 = loop.time(), cpu_seconds()
        await asyncio.gather(*(poll_one(c, cycle) for c in collectors))
        cycle.duration_s = loop.time() - t0
        cycle.cpu_s = cpu_seconds() - cpu0
        if not args.quiet:
            print(f"  cycle {cycle.index}: {cycle.duration_s:7.2f} s  cpu {cycle.cpu_s:6.2f} s  "
                  f"polls {cycle.polls}  failed {cycle.failed}  stale {cycle.stale}  samples {cycle.samples}  "
                  f"slowest poll {cycle.slowest_poll_s:.2f} s", flush=True)

    tasks = []
    for k in range(args.cycles):
        if args.interval:
            await asyncio.sleep(max(0.0, t_start + k * args.interval - loop.time()))
            tasks.append(asyncio.create_task(one_cycle(k)))
        else:
            await one_cycle(k)
    await asyncio.gather(*tasks)
    if args.interval:  # the run covers whole intervals, so CPU/wall is the duty cycle
        await asyncio.sleep(max(0.0, t_start + args.cycles * args.interval - loop.time()))
    return loop.time() - t_start


async def measure(args: argparse.Namespace, lab: dict[str, Any],
                  profiler: cProfile.Profile | None) -> tuple[RunStats, float, float, GcTimer]:
    # Every target here is v2c (snmp_wire): no SnmpEngine, as the engine builds one only for v3 profiles.
    engine = None
    collectors = build_collectors(args, lab, engine)
    if args.gc_gen0:
        gc.set_threshold(args.gc_gen0, *gc.get_threshold()[1:])
    if args.gc_freeze:
        # Everything built so far (modules, pysnmp's MIB tree, collectors) lives for the whole
        # run: keep it out of every later collection.
        gc.collect()
        gc.freeze()
    stats = RunStats()
    cpu0 = cpu_seconds()
    if profiler is not None:
        profiler.enable()
    try:
        with GcTimer() as gc_timer:
            wall = await run_cycles(args, collectors, stats)
    finally:
        if profiler is not None:
            profiler.disable()
    cpu = cpu_seconds() - cpu0
    for collector in collectors:
        with contextlib.suppress(Exception):
            await collector.close()
    if engine is not None:
        engine.close_dispatcher()
    return stats, wall, cpu, gc_timer


# ---- report -------------------------------------------------------------------------


def _bucket(filename: str) -> str:
    path = filename.replace("\\", "/")
    for marker, name in (("/ispvm_tui/collectors/", "ispvm_tui.collectors"), ("/ispvm_tui/", "ispvm_tui (other)"),
                         ("/librouteros/", "librouteros"), ("/pysnmp/", "pysnmp"), ("/pyasn1/", "pyasn1"),
                         ("/asyncio/", "asyncio")):
        if marker in path:
            return name
    if filename.startswith("<built-in") or filename == "~":
        return "builtins (C)"
    return "other python"


def print_profile(profiler: cProfile.Profile | str, top: int, who: str = "poller",
                  orders: tuple[str, ...] = ("cumulative", "tottime")) -> dict[str, float]:
    st = pstats.Stats(profiler)
    prefixes = sorted({sysconfig.get_paths()["purelib"] + "/", str(PROJECT) + "/",
                       sysconfig.get_paths()["stdlib"] + "/"}, key=len, reverse=True)
    titles = {"cumulative": "cumulative time", "tottime": "total (own) time"}
    for order in orders:
        buf = io.StringIO()
        st.stream = buf  # type: ignore[attr-defined]
        st.sort_stats(order).print_stats(top)
        text = buf.getvalue()
        for prefix in prefixes:
            text = text.replace(prefix, "")
        body = text[text.find("   ncalls"):] if "   ncalls" in text else text
        print(f"\n== {who} profile: top {top} by {titles[order]} ==\n{body.rstrip()}")
    # Own time per package: where the CPU actually goes.
    by_bucket: Counter[str] = Counter()
    for (filename, _line, _func), (_cc, _nc, tt, _ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        by_bucket[_bucket(filename)] += tt
    total = sum(by_bucket.values()) or 1.0
    print(f"\n== {who} profile: own time by package ==")
    for name, tt in by_bucket.most_common():
        print(f"  {name:<22} {tt:8.2f} s  {100 * tt / total:5.1f} %")
    return {name: round(tt, 3) for name, tt in by_bucket.items()}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(args: argparse.Namespace, stats: RunStats, wall: float, cpu: float, gc_timer: GcTimer,
              lab_ready: dict[str, Any], lab_before: dict[str, Any], lab_after: dict[str, Any],
              lab_final: dict[str, Any], profile: dict[str, float] | None) -> dict[str, Any]:
    cycles = stats.cycles
    polls = sum(c.polls for c in cycles)
    failed = sum(c.failed for c in cycles)
    stale = sum(c.stale for c in cycles)
    samples = sum(c.samples for c in cycles)
    # The first cycle also connects, logs in and detects menus; later ones are the steady state.
    steady = cycles[1:] or cycles
    steady_cpu = sum(c.cpu_s for c in steady) / len(steady)
    steady_samples = sum(c.samples for c in steady) / len(steady)
    # Overlapping cycles (an overrun interval) share CPU, so per-cycle figures become the average.
    overlapped = any(a.started + a.duration_s > b.started for a, b in itertools.pairwise(cycles))
    if overlapped:
        steady_cpu, steady_samples = cpu / len(cycles), samples / len(cycles)
    slowest = max(cycles, key=lambda c: c.duration_s)
    lab_cpu = lab_after["cpu_s"] - lab_before["cpu_s"]
    return {
        "routers": args.routers,
        "interfaces": args.interfaces,
        "protocols": "+".join(args.protocols),
        "cycles": args.cycles,
        "interval_s": args.interval,
        "concurrency": args.concurrency,
        "lab_layout": args.lab_layout,
        "lab_snmp_view_s": args.lab_snmp_view_s,
        "wall_s": round(wall, 3),
        "devices_polled_per_s": round(args.routers * len(cycles) / wall, 2),
        "polls_per_s": round(polls / wall, 2),
        "samples_per_s": round(samples / wall, 1),
        "polls": polls,
        "samples": samples,
        "failed_polls": failed,
        "errors": dict(stats.errors),
        "stale_polls": stale,
        "stale_families": dict(stats.stale),
        "cpu_s": round(cpu, 3),
        "cpu_s_per_1000_samples": round(1000 * cpu / samples, 4) if samples else None,
        "cpu_fraction_of_core": round(cpu / wall, 4),
        "gc_freeze": args.gc_freeze,
        "gc_gen0": args.gc_gen0 or gc.get_threshold()[0],
        "gc_s": round(sum(gc_timer.seconds), 3),
        "gc_s_by_generation": [round(x, 3) for x in gc_timer.seconds],
        "gc_collections": gc_timer.collections,
        "cycles_overlapped": overlapped,
        "first_cycle_cpu_s": round(cycles[0].cpu_s, 3),
        "steady_cycle_cpu_s": round(steady_cpu, 3),
        "steady_cpu_s_per_1000_samples": round(1000 * steady_cpu / steady_samples, 4) if steady_samples else None,
        "implied_cores_at_60s": round(steady_cpu / 60.0, 4),
        "first_cycle_implied_cores_at_60s": round(cycles[0].cpu_s / 60.0, 4),
        "slowest_cycle_s": round(slowest.duration_s, 3),
        "slowest_cycle": slowest.index,
        "cycles_inside_interval": (all(c.duration_s <= args.interval for c in cycles) if args.interval else None),
        "cycle_s": [round(c.duration_s, 3) for c in cycles],
        "cycle_cpu_s": [round(c.cpu_s, 3) for c in cycles],
        "poll_s_p50": {p: round(percentile(v, 0.5), 4) for p, v in stats.poll_seconds.items() if v},
        "poll_s_p99": {p: round(percentile(v, 0.99), 4) for p, v in stats.poll_seconds.items() if v},
        "poll_s_max": {p: round(max(v), 4) for p, v in stats.poll_seconds.items() if v},
        "poller_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "lab_maxrss_mb": round(lab_final.get("maxrss_kb", 0) / 1024, 1),
        "lab_start_s": lab_ready.get("start_s"),
        "lab_cpu_s": round(lab_cpu, 3),
        "lab_cpu_fraction_of_core": round(lab_cpu / wall, 4),
        "code": args.code,
        "code_changed_during_run": code_version() != args.code,
        "profiled": profile is not None,
        "profile_own_s_by_package": profile,
    }


def print_summary(s: dict[str, Any], stats: RunStats) -> None:
    interval = s["interval_s"]
    if interval:
        verdict = "every cycle inside the interval" if s["cycles_inside_interval"] else "OVERRUN"
        slowest = f"{s['slowest_cycle_s']:.2f} s (cycle {s['slowest_cycle']}) vs interval {interval:g} s: {verdict}"
    else:
        slowest = f"{s['slowest_cycle_s']:.2f} s (cycle {s['slowest_cycle']}), no interval (back to back)"
    rows = [
        ("routers x interfaces", f"{s['routers']} x {s['interfaces']}"),
        ("protocols", s["protocols"]),
        ("cycles", f"{s['cycles']}" + (f" every {interval:g} s" if interval else " back to back")),
        ("concurrency", s["concurrency"]),
        ("wall seconds", f"{s['wall_s']:.2f}"),
        ("devices polled/s", f"{s['devices_polled_per_s']:.1f}  ({s['polls_per_s']:.1f} polls/s)"),
        ("samples/s", f"{s['samples_per_s']:.0f}  ({s['samples']} samples)"),
        ("failed polls", f"{s['failed_polls']} of {s['polls']}"),
        ("polls with stale families", f"{s['stale_polls']}"),
        ("poller CPU seconds", f"{s['cpu_s']:.2f}  (first cycle {s['first_cycle_cpu_s']:.2f}, "
                               f"steady cycle {s['steady_cycle_cpu_s']:.2f}"
                               + (", cycles overlapped: per-cycle = average)" if s["cycles_overlapped"] else ")")),
        ("garbage collection", f"{s['gc_s']:.2f} s (gen0/1/2 "
                               f"{'/'.join(f'{x:.2f}' for x in s['gc_s_by_generation'])} s, "
                               f"{'/'.join(str(n) for n in s['gc_collections'])} runs)"),
        ("CPU s / 1000 samples", f"{s['cpu_s_per_1000_samples']}  (steady {s['steady_cpu_s_per_1000_samples']})"),
        ("avg CPU, fraction of a core", f"{s['cpu_fraction_of_core']:.3f}"),
        ("implied cores at 60 s", f"{s['implied_cores_at_60s']:.3f}  "
                                  f"(first cycle {s['first_cycle_implied_cores_at_60s']:.3f})"),
        ("slowest cycle", slowest),
        ("poll seconds p50/p99/max", "  ".join(
            f"{p} {s['poll_s_p50'][p]:.3f}/{s['poll_s_p99'][p]:.3f}/{s['poll_s_max'][p]:.3f}"
            for p in s["poll_s_p50"])),
        ("peak RSS poller / lab", f"{s['poller_maxrss_mb']:.0f} MB / {s['lab_maxrss_mb']:.0f} MB"),
        ("code", " ".join(f"{k} {v}" for k, v in s["code"].items())
                 + ("  (CHANGED on disk during the run)" if s["code_changed_during_run"] else "")),
        ("lab CPU seconds", f"{s['lab_cpu_s']:.2f}  ({s['lab_cpu_fraction_of_core']:.3f} of a core, "
                            f"{s['lab_layout']} model)"),
    ]
    if s["profiled"]:
        rows.append(("note", "cProfile was on: CPU figures include its overhead"))
    print("\n== poll_scale ==")
    for label, value in rows:
        print(f"  {label:<28} {value}")
    for key, count in stats.errors.most_common():
        print(f"  error {key}: {count}, e.g. {stats.example_errors[key]}")
    for key, count in stats.stale.most_common():
        print(f"  stale {key}: {count}, e.g. {stats.example_stale[key]}")
    print(json.dumps(s, sort_keys=False), flush=True)


# ---- main ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.poll_scale",
                                description="Poller CPU and throughput against N lab routers on loopback.")
    p.add_argument("--routers", type=int, default=50)
    p.add_argument("--interfaces", type=int, default=24)
    p.add_argument("--cycles", type=int, default=3)
    p.add_argument("--interval", type=float, default=None,
                   help="seconds between cycle starts (default: back to back, throughput mode)")
    p.add_argument("--protocols", default="api,snmp", help="api, snmp or api,snmp")
    p.add_argument("--concurrency", type=int, default=64, help="polls in flight at once (engine default: 64)")
    p.add_argument("--timeout", type=float, default=5.0, help="RouterOS API poll timeout (s)")
    p.add_argument("--snmp-timeout", type=float, default=2.0, help="SNMP timeout per try (s)")
    p.add_argument("--snmp-retries", type=int, default=1)
    p.add_argument("--address-base", default="127.60.0.0", help="router i listens on base+i")
    p.add_argument("--api-port", type=int, default=8728)
    p.add_argument("--snmp-port", type=int, default=1161)
    p.add_argument("--lab-layout", choices=("per-router", "shared"), default="per-router",
                   help="one lab model per router (default) or one for the whole fleet")
    p.add_argument("--lab-snmp-view-s", type=float, default=5.0,
                   help="lab SNMP agents reuse one MIB rendering this long; 0: the agent's own burst rule, "
                        "which re-renders on nearly every request once the poller is busy (default: 5)")
    p.add_argument("--gc-freeze", action="store_true",
                   help="gc.freeze() once the engine and collectors exist (a process setting to try)")
    p.add_argument("--gc-gen0", type=int, default=0, metavar="N",
                   help="generation-0 GC threshold (Python's default: 700)")
    p.add_argument("--profile", action="store_true", help="cProfile the polling and print the top functions")
    p.add_argument("--profile-top", type=int, default=25)
    p.add_argument("--profile-lab", metavar="FILE", help="also cProfile the lab process (stats dumped to FILE)")
    p.add_argument("--quiet", action="store_true", help="no per-cycle lines")
    args = p.parse_args(argv)
    args.protocols = [x.strip() for x in args.protocols.split(",") if x.strip()]
    bad = [x for x in args.protocols if x not in PROTOCOLS]
    if bad or not args.protocols:
        p.error(f"--protocols: choose from {', '.join(PROTOCOLS)} (got {bad or 'nothing'})")
    if args.routers < 1 or args.interfaces < 1 or args.cycles < 1 or args.concurrency < 1:
        p.error("--routers, --interfaces, --cycles and --concurrency must be at least 1")
    if args.interval is not None and args.interval <= 0:
        p.error("--interval must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raise_fd_limit()
    args.code = code_version()  # the sources the two processes are about to import
    mode = f"every {args.interval:g} s" if args.interval else "back to back"
    print(f"poll_scale: {args.routers} routers x {args.interfaces} interfaces, {'+'.join(args.protocols)}, "
          f"{args.cycles} cycles {mode}, concurrency {args.concurrency}", flush=True)
    lab = LabProcess(args)
    try:
        first, last = lab.ready["routers"][0][1], lab.ready["routers"][-1][1]
        print(f"  lab: pid {lab.proc.pid}, {args.lab_layout} model, {first} .. {last}, "
              f"started in {lab.ready['start_s']:.1f} s", flush=True)
        before = lab.stats()
        profiler = cProfile.Profile() if args.profile else None
        stats, wall, cpu, gc_timer = asyncio.run(measure(args, lab.ready, profiler))
        after = lab.stats()
    finally:
        final = lab.stop() if lab.proc.poll() is None else {"maxrss_kb": 0}
    profile = print_profile(profiler, args.profile_top) if profiler is not None else None
    if args.profile_lab and Path(args.profile_lab).exists():
        print_profile(args.profile_lab, args.profile_top, "lab", ("tottime",))
    summary = summarise(args, stats, wall, cpu, gc_timer, lab.ready, before, after, final, profile)
    print_summary(summary, stats)


if __name__ == "__main__":
    main()
