"""``ispvm`` with the bench's probes: where the engine's memory and main-thread time go.

    python -m bench.engine_probe run --headless --json --config config.toml

bench.engine_scale starts the engine this way with ``--probe`` (memory) or ``--profile`` (CPU). It is
``ispvm_tui.cli`` unchanged, plus, in this process only, signal handlers that write a report next to the
path in ``ISPVM_PROBE_OUT``:

* ``SIGUSR1``: a memory report, ``<out>.mem-N.json``: ``/proc/self/smaps_rollup`` (anonymous vs
  file-backed), glibc's ``mallinfo2`` (bytes malloc holds in use and free, i.e. fragmentation), DuckDB's
  own ``duckdb_memory()`` and ``pragma_database_size()``, and, when ``ISPVM_PROBE_TRACEMALLOC`` is set
  (tracemalloc then runs from the first import: slower, and its own bookkeeping adds to RSS), the top
  allocation sites by line and the sizes of the engine's biggest structures;
  with ``ISPVM_PROBE_CENSUS`` set, the objects the garbage collector tracks by type (a pause of a second or two);
* ``SIGUSR2``: cProfile of the main thread (the event loop) on, then off and dumped to ``<out>.prof``.

A report taken in a signal handler runs on the event loop, which waits for it: take it when a pause of
a few seconds is harmless (after the measured steady phase).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

OUT = os.environ.get("ISPVM_PROBE_OUT", "")
TRACE = int(os.environ.get("ISPVM_PROBE_TRACEMALLOC", "0") or 0)
if OUT and TRACE:
    tracemalloc.start(TRACE)

_stores: list[Any] = []
_engines: list[Any] = []
_reports = 0
_profile: Any = None


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def mallinfo() -> dict[str, float] | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    m = fn()
    mb = 1024 * 1024
    # arena: the main heap (sbrk); hblkhd: mmapped chunks; uordblks in use, fordblks free (sum over arenas).
    return {"heap_mb": round(m.arena / mb, 1), "mmap_mb": round(m.hblkhd / mb, 1),
            "in_use_mb": round(m.uordblks / mb, 1), "free_mb": round(m.fordblks / mb, 1),
            "trimmable_mb": round(m.keepcost / mb, 1)}


def smaps_rollup() -> dict[str, float]:
    out = {}
    try:
        text = Path("/proc/self/smaps_rollup").read_text()
    except OSError:
        return {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
            out[parts[0][:-1]] = round(int(parts[1]) / 1024, 1)
    return {k: out[k] for k in ("Rss", "Anonymous", "Pss_Anon", "Pss_File", "Shared_Clean", "Private_Clean",
                                "Private_Dirty") if k in out}


def anon_mappings() -> dict[str, float]:
    """Anonymous RSS by kind of mapping: the brk heap (glibc's main arena), 64 MiB-aligned blocks (glibc's
    per-thread arenas), 1 MiB ones (CPython's object arenas), thread stacks and other mmaps."""
    out: dict[str, float] = {}
    try:
        text = Path("/proc/self/smaps").read_text()
    except OSError:
        return out
    name, size_kb = "", 0
    for line in text.splitlines():
        head = line.split()
        if not head:
            continue
        if "-" in head[0] and not head[0].endswith(":"):
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            size_kb = (hi - lo) // 1024
            path = head[5] if len(head) > 5 else ""
            name = ("heap" if path == "[heap]" else "stack" if path.startswith("[stack") else
                    "file" if path else "arena-1MiB" if size_kb == 1024 else
                    "thread-arena" if size_kb in (65536, 65532) or 131072 >= size_kb > 60000 else
                    "stack-8MiB" if size_kb in (8192, 8196) else "other-mmap")
        elif head[0] == "Anonymous:" and name != "file":
            out[name] = out.get(name, 0.0) + int(head[1]) / 1024
    return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def pymalloc() -> dict[str, float]:
    """CPython's own allocator (sys._debugmallocstats, which writes to the C stderr): arenas and their use."""
    import re
    import tempfile

    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    out: dict[str, float] = {}
    for key, pattern in (("arenas", r"# arenas allocated current\s*=\s*([\d,]+)"),
                         ("arenas_mb", r"(\d[\d,]*) arenas \* \d+ bytes/arena\s*=\s*([\d,]+)"),
                         ("allocated_blocks_mb", r"# bytes in allocated blocks\s*=\s*([\d,]+)"),
                         ("free_blocks_mb", r"# bytes in available blocks\s*=\s*([\d,]+)"),
                         ("free_pools_mb", r"unused pools \* \d+ bytes\s*=\s*([\d,]+)")):
        m = re.search(pattern, text)
        if m:
            value = int(m.groups()[-1].replace(",", ""))
            out[key] = value if key == "arenas" else round(value / 1048576, 1)
    return out


def duckdb_figures() -> dict[str, Any]:
    if not _stores:
        return {}
    store = _stores[0]
    out: dict[str, Any] = {}
    try:
        rows = store.query("SELECT tag, memory_usage_bytes, temporary_storage_bytes FROM duckdb_memory() "
                           "WHERE memory_usage_bytes > 0 OR temporary_storage_bytes > 0")
        out["memory_mb"] = {tag: round(used / 1048576, 1) for tag, used, _tmp in rows}
        out["memory_total_mb"] = round(sum(r[1] for r in rows) / 1048576, 1)
        size = store.query_dicts("SELECT * FROM pragma_database_size()")
        out["database_size"] = {k: str(v) for k, v in size[0].items()} if size else None
        out["memory_limit"] = store.query("SELECT current_setting('memory_limit')")[0][0]
    except Exception as exc:  # a report, never a crash of the engine under test
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def deep_size(obj: Any, limit: int = 2_000_000) -> int:
    """Bytes of an object and everything reachable from it that is not shared with the frozen start-up."""
    seen: set[int] = set()
    todo = [obj]
    total = 0
    while todo and len(seen) < limit:
        o = todo.pop()
        if id(o) in seen or isinstance(o, type):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        todo.extend(gc.get_referents(o))
    return total


def structures() -> dict[str, float]:
    if not _engines:
        return {}
    eng = _engines[0]
    mb = 1048576
    out: dict[str, float] = {}
    for name in ("_counters", "runtime", "alerts", "rules", "book", "topology", "config_watch", "_snapshot",
                 "poller", "config"):
        if hasattr(eng, name):
            out[name] = round(deep_size(getattr(eng, name)) / mb, 1)
    return out


def census(top: int = 30) -> list[dict[str, Any]]:
    """Objects the garbage collector tracks (containers: not str, int or float), by type: count and own bytes,
    plus the str/int/float/bytes they refer to directly (each counted once)."""
    by_type: dict[str, list[int]] = {}
    leaves: dict[str, list[int]] = {}
    seen: set[int] = set()
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        row = by_type.setdefault(name, [0, 0])
        row[0] += 1
        row[1] += sys.getsizeof(obj)
        for ref in gc.get_referents(obj):
            if isinstance(ref, str | int | float | bytes) and id(ref) not in seen:
                seen.add(id(ref))
                leaf = leaves.setdefault(f"{type(ref).__name__} (in {name})", [0, 0])
                leaf[0] += 1
                leaf[1] += sys.getsizeof(ref)
    rows = [{"type": k, "count": c, "mb": round(b / 1048576, 2)} for k, (c, b) in {**by_type, **leaves}.items()]
    return sorted(rows, key=lambda r: -r["mb"])[:top]


def arrow_pool() -> dict[str, Any] | None:
    """pyarrow's memory pool (the samples' Arrow batches): its allocator, what it holds now and at most."""
    if "pyarrow" not in sys.modules:
        return None
    pool = sys.modules["pyarrow"].default_memory_pool()
    return {"backend": pool.backend_name, "allocated_mb": round(pool.bytes_allocated() / 1048576, 1),
            "max_mb": round(pool.max_memory() / 1048576, 1)}


def trimmed() -> dict[str, float] | None:
    """What glibc's malloc_trim(0) gives back now (anonymous RSS before and after): free pages inside its
    arenas that it keeps mapped. Done last: the process is trimmed from then on."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    before = smaps_rollup().get("Anonymous", 0.0)
    started = time.perf_counter()
    trim(0)
    took = time.perf_counter() - started
    after = smaps_rollup().get("Anonymous", 0.0)
    return {"anon_before_mb": before, "anon_after_mb": after, "returned_mb": round(before - after, 1),
            "took_ms": round(took * 1000, 1)}


def memory_report() -> dict[str, Any]:
    t0 = time.monotonic()
    report: dict[str, Any] = {"at": time.time(), "smaps": smaps_rollup(), "anon_mb": anon_mappings(),
                              "malloc": mallinfo(), "pymalloc": pymalloc(), "duckdb": duckdb_figures(),
                              "arrow": arrow_pool(), "threads": len(os.listdir("/proc/self/task"))}
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot()
        report["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 1048576, 1)
        report["tracemalloc_overhead_mb"] = round(tracemalloc.get_tracemalloc_memory() / 1048576, 1)
        report["top_lines"] = [
            {"site": str(s.traceback[0]), "mb": round(s.size / 1048576, 2), "count": s.count}
            for s in snap.statistics("lineno")[:40]]
        report["top_files"] = [{"file": str(s.traceback[0]).rsplit(":", 1)[0], "mb": round(s.size / 1048576, 2)}
                               for s in snap.statistics("filename")[:25]]
        report["structures_mb"] = structures()
    if os.environ.get("ISPVM_PROBE_CENSUS"):
        report["census"] = census()
    if os.environ.get("ISPVM_PROBE_TRIM"):
        report["malloc_trim"] = trimmed()
    report["report_s"] = round(time.monotonic() - t0, 2)
    return report


def _on_usr1(_sig: int, _frame: Any) -> None:
    global _reports
    _reports += 1
    path = Path(f"{OUT}.mem-{_reports}.json")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(memory_report(), indent=1))
    tmp.rename(path)


def _on_usr2(_sig: int, _frame: Any) -> None:
    global _profile
    import cProfile

    if _profile is None:
        _profile = cProfile.Profile()
        _profile.enable()
        return
    _profile.disable()
    tmp = Path(f"{OUT}.prof.tmp")
    _profile.dump_stats(str(tmp))
    tmp.rename(f"{OUT}.prof")
    _profile = None


def _remember() -> None:
    from ispvm_tui.engine import core, store

    # DuckDB settings to try without editing the engine: ISPVM_PROBE_DUCKDB="memory_limit=64MB,threads=1"
    settings = dict(kv.split("=", 1) for kv in os.environ.get("ISPVM_PROBE_DUCKDB", "").split(",") if "=" in kv)
    store.MEMORY_LIMIT = settings.pop("memory_limit", store.MEMORY_LIMIT)
    if settings:
        open_ = store._open

        def open_with_settings(path: Path) -> Any:
            con = open_(path)
            for key, value in settings.items():
                con.execute(f"SET {key} = '{value}'")
            return con

        store._open = open_with_settings

    store_init, engine_init = store.Store.__init__, core.Engine.__init__

    def remember_store(self: Any, *a: Any, **kw: Any) -> None:
        store_init(self, *a, **kw)
        _stores.append(self)

    def remember_engine(self: Any, *a: Any, **kw: Any) -> None:
        engine_init(self, *a, **kw)
        _engines.append(self)

    store.Store.__init__ = remember_store  # type: ignore[method-assign]
    core.Engine.__init__ = remember_engine  # type: ignore[method-assign]


def main() -> None:
    if OUT:
        _remember()
        signal.signal(signal.SIGUSR1, _on_usr1)
        signal.signal(signal.SIGUSR2, _on_usr2)
    from ispvm_tui.cli import app

    app(prog_name="ispvm")


if __name__ == "__main__":
    main()
