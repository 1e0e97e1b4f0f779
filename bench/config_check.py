"""How long `ispvm config check` takes, and how much memory, on a large generated config.

    .venv/bin/python -m bench.config_check --devices 200000
    .venv/bin/python -m bench.config_check --devices 200000 --profile

Writes a config with N devices (one site per 100 devices, a chain of links, one
BGP peer and one service per site), runs `ispvm config check` on it in a child
process and prints its wall time and peak RSS beside the figures measured before
the check was made linear: 32 s and 762 MB for 200,000 devices (an 18 MB file).
``--profile`` runs the same load, validation, cross-check and warnings in this
process under cProfile instead.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE = {"devices": 200_000, "seconds": 32.0, "rss_mb": 762.0}


def generate(devices: int, links: bool = True) -> str:
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
    for i in range(1, devices if links else 0):
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


def run_command(path: Path) -> tuple[float, float, int, str]:
    """`ispvm config check FILE` as a user runs it: (seconds, peak RSS in MB, exit status, last stdout line)."""
    exe = Path(sys.executable).parent / "ispvm"
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(exe), "config", "check", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_maxrss / 1024, proc.returncode, (out.strip().splitlines() or [""])[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument("--no-links", action="store_true",
                        help="no [[links]]: every device but the first is warned about (the line map is built)")
    parser.add_argument("--profile", action="store_true", help="check in this process under cProfile instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(generate(args.devices, links=not args.no_links))
        size_mb = path.stat().st_size / 1e6
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            errors, warnings = check(path)
            profiler.disable()
            print(f"{errors} errors, {warnings} warnings")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
            return
        seconds, rss_mb, status, summary = run_command(path)
    print(f"ispvm config check: {args.devices} devices{' (no links)' if args.no_links else ''}, "
          f"{size_mb:.1f} MB file: exit {status}: {summary}")
    print(f"  now:    {seconds:.1f} s, peak RSS {rss_mb:.0f} MB")
    print(f"  before: {BASELINE['seconds']:.0f} s, {BASELINE['rss_mb']:.0f} MB for {BASELINE['devices']} devices "
          f"(18 MB file)")


if __name__ == "__main__":
    main()
