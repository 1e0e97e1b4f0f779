"""The console against a 1,000-device engine state: first paint and key latency, quiet and under a storm.

    .venv/bin/python -m bench.console [--devices 1000] [--incidents 50] [--rounds 10] [--baseline FILE]
    .venv/bin/python -m bench.console --stored [--devices 1000] [--rounds 3] [--work DIR]

``IspvmApp(StaticEngine(large_state()))`` runs headless (``App.run_test``) at 160x48 and 80x24. Figures:

* first snapshot: from entering ``run_test`` until the first snapshot is applied and the home view's incident
  table has its rows; first paint: that plus the screen refresh after it (``pilot.pause()``).
* key latency: for each key, from sending it (as ``pilot.press`` does) until the app has handled it and
  refreshed the screen after it, p50/p99/max over every press of that key, in a fixed round of keys that
  walks the tabs, moves the cursor, opens and closes a filter, an incident's and a device's detail.
* storm: the same round while another thread pushes a new snapshot every 100 ms (every incident's
  ``updated_at`` changed, a seventh of the devices' states flipped) with an ``incident.updated`` event each
  time, as the engine does on a busy network.

``--stored``: first paint through the real Engine on a database it wrote itself (bench/console_stored.py).

The last line of output is one JSON object with every figure (``--baseline`` reads one back and shows it
beside). StaticEngine and the state come from tests/console_state.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from textual.widgets import DataTable

from ispvm_tui.app import IspvmApp
from ispvm_tui.engine.api import EngineEvent, Snapshot
from tests.console_state import StaticEngine, large_state, storm_step

SIZES = ((160, 48), (80, 24))
# One round: every key leaves the console where the next one expects it (ends back on Home).
ROUND: tuple[tuple[str, str], ...] = (
    ("2", "2"), ("down", "j/down"), ("down", "j/down"), ("up", "k/up"), ("enter", "enter"), ("escape", "esc"),
    ("3", "3"), ("6", "6"), ("down", "j/down"), ("enter", "enter"), ("escape", "esc"),
    ("slash", "/"), ("escape", "esc"), ("1", "1"),
)
STORM_EVERY_S = 0.1
FIRST_PAINT_TIMEOUT_S = 60.0
PRESS_TIMEOUT_S = 300.0
IDLE_WINDOW_S = 0.005  # "answered": the loop's thread used under IDLE_CPU_S of CPU in such a window
IDLE_CPU_S = 0.0005


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Storm(threading.Thread):
    """A new snapshot every 100 ms, from another thread, as the engine's own."""

    def __init__(self, engine: StaticEngine, state: Snapshot) -> None:
        super().__init__(name="snapshot-storm", daemon=True)
        self.engine = engine
        self.state = state
        self.stopping = threading.Event()
        self.pushed = 0

    def run(self) -> None:
        while not self.stopping.wait(STORM_EVERY_S):
            self.pushed += 1
            self.state = storm_step(self.state, self.pushed)
            self.engine.set_state(self.state, EngineEvent("incident.updated", self.state.taken_at,
                                                          f"storm step {self.pushed}"))


async def timed_press(app: IspvmApp, key: str, measure: str = "settled") -> float:
    """Seconds from sending the key until the app has handled it and refreshed the screen after it.

    ``settled``: the key as ``pilot.press`` sends it (``App._press_keys``), which then waits until the whole
    process has been idle for 20 ms (its CPU time, every thread's), at most 1 s, twice; then a refresh.
    The storm's own thread counts, and the floor is ~60 ms. ``answered``: the key sent the same way, then
    until the loop's own thread has been idle for 5 ms (its CPU time only), then a refresh: ~10 ms floor.
    Not ``pilot.press``: that waits until every widget's queue is empty, which under a storm may never be.
    """
    started = time.perf_counter()
    if measure == "settled":
        await app._press_keys([key])
    else:
        await send_key(app, key)
        deadline = started + PRESS_TIMEOUT_S
        while time.perf_counter() < deadline:
            cpu = time.thread_time()
            await asyncio.sleep(IDLE_WINDOW_S)
            if time.thread_time() - cpu < IDLE_CPU_S:
                break
    handled = asyncio.Event()
    app.call_after_refresh(handled.set)  # queued behind the key: runs once it is processed and painted
    await asyncio.wait_for(handled.wait(), PRESS_TIMEOUT_S)
    return time.perf_counter() - started


async def send_key(app: IspvmApp, key: str) -> None:
    """One key into the app's driver, as ``App._press_keys`` sends it, without its waits."""
    import unicodedata

    from textual import events
    from textual.keys import REPLACED_KEYS, _character_to_key, _get_unicode_name_from_key

    if len(key) == 1 and not key.isalnum():
        key = _character_to_key(key)
    try:
        char: str | None = unicodedata.lookup(_get_unicode_name_from_key(REPLACED_KEYS.get(key, key)))
    except KeyError:
        char = key if len(key) == 1 else None
    event = events.Key(key, char)
    event.set_sender(app)
    assert app._driver is not None
    app._driver.send_message(event)
    await asyncio.sleep(0)


async def press_round(app: IspvmApp, latencies: dict[str, list[float]], measure: str) -> None:
    for key, label in ROUND:
        latencies.setdefault(label, []).append(await timed_press(app, key, measure))


async def measure(size: tuple[int, int], state: Snapshot, rounds: int, storm_rounds: int,
                  how: str = "settled") -> dict[str, Any]:
    engine = StaticEngine(state)
    app = IspvmApp(engine, actor="bench")  # type: ignore[arg-type]
    started = time.perf_counter()
    async with app.run_test(size=size) as pilot:
        table = app.query_one("#home-incidents", DataTable)
        while not (app.snapshots_taken and table.row_count):
            if time.perf_counter() - started > FIRST_PAINT_TIMEOUT_S:
                raise SystemExit(f"no incidents shown after {FIRST_PAINT_TIMEOUT_S:g}s")
            await asyncio.sleep(0.002)
        first_snapshot = time.perf_counter() - started
        await pilot.pause()
        first_paint = time.perf_counter() - started

        quiet: dict[str, list[float]] = {}
        for _ in range(rounds):
            await press_round(app, quiet, how)

        storm = Storm(engine, state)
        taken = app.snapshots_taken
        storm.start()
        stormy: dict[str, list[float]] = {}
        storm_started = time.perf_counter()
        try:
            for _ in range(storm_rounds):
                await press_round(app, stormy, how)
        finally:
            storm.stopping.set()
            storm.join()
        storm_s = time.perf_counter() - storm_started
        applied = app.snapshots_taken - taken
    return {
        "size": f"{size[0]}x{size[1]}",
        "first_snapshot_s": round(first_snapshot, 4),
        "first_paint_s": round(first_paint, 4),
        "quiet": summarise(quiet),
        "storm": summarise(stormy),
        "storm_pushed": storm.pushed,
        "storm_snapshots_taken": applied,
        "storm_s": round(storm_s, 2),
    }


def summarise(latencies: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    out = {}
    for label, values in latencies.items():
        out[label] = {"n": len(values), "p50_ms": round(statistics.median(values) * 1000, 1),
                      "p99_ms": round(pct(values, 0.99) * 1000, 1), "max_ms": round(max(values) * 1000, 1)}
    every = [v for values in latencies.values() for v in values]
    out["all"] = {"n": len(every), "p50_ms": round(statistics.median(every) * 1000, 1),
                  "p99_ms": round(pct(every, 0.99) * 1000, 1), "max_ms": round(max(every) * 1000, 1)}
    return out


def read_baseline(path: Path) -> dict[str, Any]:
    lines = [line for line in path.read_text().splitlines() if line.strip().startswith("{")]
    if not lines:
        raise SystemExit(f"{path}: no JSON line in it (the last line of a previous run)")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{path}: its last JSON line does not parse: {exc}") from None


def print_report(result: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    old = {r["size"]: r for r in (baseline or {}).get("runs", [])}
    print(f"console bench: {result['devices']} devices, {result['sites']} sites, {result['incidents']} incidents, "
          f"{result['rounds']} rounds of {len(ROUND)} keys quiet, {result['storm_rounds']} under the storm, "
          f"keys timed until {result.get('measure', 'settled')}")
    for run in result["runs"]:
        before = old.get(run["size"])
        print(f"\n{run['size']}: first snapshot {run['first_snapshot_s'] * 1000:.0f} ms, first paint "
              f"{run['first_paint_s'] * 1000:.0f} ms"
              + (f"   (baseline {before['first_paint_s'] * 1000:.0f} ms)" if before else ""))
        print(f"  storm: {run['storm_pushed']} snapshots pushed in {run['storm_s']:.1f}s, "
              f"{run['storm_snapshots_taken']} taken by the console")
        header = f"  {'key':<8} {'phase':<6} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        if before:
            header += f"   {'base p50':>8} {'base p99':>8} {'base max':>8}"
        print(header)
        for label in [*dict.fromkeys(label for _, label in ROUND), "all"]:
            for phase in ("quiet", "storm"):
                fig = run[phase].get(label)
                if fig is None:
                    continue
                line = (f"  {label:<8} {phase:<6} {fig['n']:>4} {fig['p50_ms']:>8.1f} {fig['p99_ms']:>8.1f} "
                        f"{fig['max_ms']:>8.1f}")
                was = before[phase].get(label) if before else None
                if was:
                    line += f"   {was['p50_ms']:>8.1f} {was['p99_ms']:>8.1f} {was['max_ms']:>8.1f}"
                print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--incidents", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10, help="rounds of keys per phase (default 10)")
    parser.add_argument("--storm-rounds", type=int, default=2, help="rounds under the storm (default 2)")
    parser.add_argument("--baseline", type=Path, help="a previous run's output (its last line is read)")
    parser.add_argument("--stored", action="store_true",
                        help="instead: first paint of the real engine on a stored database (bench/console_stored.py)")
    parser.add_argument("--work", type=Path, help="--stored: where the config and database are kept")
    parser.add_argument("--measure", choices=("settled", "answered"), default="settled",
                        help="when a key counts as done (see timed_press; default settled)")
    args = parser.parse_args(argv)
    if args.devices < 20 or args.incidents < 0 or args.rounds < 1 or args.storm_rounds < 1:
        parser.error("--devices must be at least 20, --incidents at least 0, --rounds and --storm-rounds at least 1")
    baseline = read_baseline(args.baseline) if args.baseline else None
    if args.stored:
        from bench.console_stored import print_stored, run_stored

        stored = run_stored(args.devices, args.work, args.rounds, SIZES)
        print_stored(stored, baseline)
        print(json.dumps({"bench": "console", "stored": stored}))
        return 0
    state = large_state(args.devices, args.incidents)
    runs = []
    for size in SIZES:
        run = asyncio.run(measure(size, state, args.rounds, args.storm_rounds, args.measure))
        runs.append(run)
        # As it goes: a run under a storm at fleet scale can take minutes.
        print(f"{run['size']}: first paint {run['first_paint_s'] * 1000:.0f} ms, keys p50/p99 quiet "
              f"{run['quiet']['all']['p50_ms']:.0f}/{run['quiet']['all']['p99_ms']:.0f} ms, storm "
              f"{run['storm']['all']['p50_ms']:.0f}/{run['storm']['all']['p99_ms']:.0f} ms", file=sys.stderr,
              flush=True)
    result = {"bench": "console", "measure": args.measure, "devices": len(state.devices), "sites": len(state.sites),
              "incidents": len(state.incidents), "rounds": args.rounds,
              "storm_rounds": args.storm_rounds, "runs": runs}
    print_report(result, baseline)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
