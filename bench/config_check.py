"""How long `ispvm config check` takes, and how much memory, on a large generated config.

    .venv/bin/python -m bench.config_check --devices 200000
    .venv/bin/python -m bench.config_check --devices 200000 --profile

Writes a config with N devices (one site per 100 devices, a chain of links, one
BGP peer and one service per site), then runs the same load, validation,
cross-check and warnings as `ispvm config check` in this process, and prints
wall time and peak memory (tracemalloc, and the process's peak RSS) beside the
figures measured before the check was made linear: 32 s and 762 MB (RSS) for
200,000 devices (an 18 MB file).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

BASELINE = {"devices": 200_000, "seconds": 32.0, "rss_mb": 762.0}


def generate(devices: int) -> str:
    out = io.StringIO()
    sites = max(1, devices // 100)
    out.write('[console]\nattach = ["R0"]\n\n[credentials.noc]\nusername = "monitor"\n'
              'password_secret = "routers/noc"\n\n')
    for s in range(sites):
        out.write(f'[[sites]]\nname = "S{s}"\nsubscribers = 100\n\n')
    for i in range(devices):
        out.write(f'[[devices]]\nname = "R{i}"\nsite = "S{i // 100}"\nrole = "access"\n'
                  f'address = "10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"\ncredential = "noc"\n'
                  f'tags = ["gen"]\n\n')
    for i in range(1, devices):
        out.write(f'[[links]]\na = "R{i - 1}:ether2"\nb = "R{i}:ether1"\n\n')
    for s in range(sites):
        out.write(f'[[bgp_peers]]\ndevice = "R{s * 100}"\nname = "UP{s}"\n\n'
                  f'[[services]]\nname = "svc{s}"\ndepends_on = ["S{s}", "R{s * 100}"]\n\n')
    return out.getvalue()


def check(path: Path) -> tuple[int, int]:
    from ispvm_tui.config import Config, config_warnings, cross_check
    from ispvm_tui.tomlsource import read_toml, validate

    source = read_toml(path)
    cfg = validate(source, Config)
    return len(cross_check(cfg, source)), len(config_warnings(cfg, source))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument("--profile", action="store_true", help="print the top functions by cumulative time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(generate(args.devices))
        size_mb = path.stat().st_size / 1e6
        profiler = cProfile.Profile() if args.profile else None
        tracemalloc.start()
        t0 = time.perf_counter()
        if profiler:
            profiler.enable()
        errors, warnings = check(path)
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"config check: {args.devices} devices, {size_mb:.1f} MB file: {errors} errors, {warnings} warnings")
    print(f"  time {seconds:.1f} s, traced peak {peak / 1e6:.0f} MB, process peak RSS {rss_mb:.0f} MB "
          f"(tracing slows the run; RSS includes it)")
    print(f"  before: {BASELINE['seconds']:.0f} s, {BASELINE['rss_mb']:.0f} MB RSS for {BASELINE['devices']} devices")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(20)


if __name__ == "__main__":
    main()
