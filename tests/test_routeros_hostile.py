"""RouterOSCollector against hostile API peers on loopback: bounded memory and time, a clear error kind."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.clock import ScaledClock
from ispvm_tui.collectors.neterrors import os_error_kind
from ispvm_tui.collectors.results import PollResult
from ispvm_tui.collectors.routeros import ApiTarget, RouterOSCollector
from ispvm_tui.collectors.routeros_wire import MAX_POLL_BYTES
from tests import hostile_api as hostile

TIMEOUT = 1.0
SLACK = 4.0  # a loaded 2-core host may be slow to schedule us; the point is "bounded", not "fast"
MEMORY_BOUND = 24 << 20  # far below the hundreds of MB a trusted length prefix cost
EXE = shutil.which("ispvm", path=str(Path(sys.executable).parent)) or "ispvm"


async def poll_hostile(handler: hostile.Handler, timeout: float = TIMEOUT) -> tuple[PollResult, int, float]:
    """Poll a hostile peer once: (result, traced peak bytes, seconds)."""
    server = await hostile.HostileServer(handler).start()
    target = ApiTarget(name="HOSTILE", address=hostile.HOST, username="admin", password="pw-7781", port=server.port)
    col = RouterOSCollector(target, clock=ScaledClock(1.0), timeout=timeout)
    tracemalloc.start()
    try:
        t0 = time.monotonic()
        result = await col.poll()
        elapsed = time.monotonic() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await col.close()
        await server.stop()
    assert "pw-7781" not in (result.error or "") + str(result.stale)
    return result, peak, elapsed


@pytest.mark.parametrize("handler", [hostile.huge_word_at_login, hostile.http_garbage, hostile.random_garbage,
                                     hostile.empty_sentence])
async def test_oversize_and_garbage_at_login_are_protocol_errors(handler: hostile.Handler) -> None:
    result, peak, elapsed = await poll_hostile(handler)
    assert not result.ok and result.error_kind == "protocol", result.error
    assert "IndexError" not in (result.error or "")
    assert peak < MEMORY_BOUND and elapsed < TIMEOUT + SLACK


async def test_huge_word_says_so() -> None:
    result, _, _ = await poll_hostile(hostile.huge_word_at_login)
    assert result.error is not None and "256 MiB" in result.error and "limit" in result.error


async def test_huge_word_after_login_fails_the_families_not_the_memory() -> None:
    result, peak, elapsed = await poll_hostile(hostile.huge_word_after_login)
    # Every family gets the same answer: each is stale with the limit named, the poll ends in time.
    assert result.ok and "system" in result.stale and "limit" in result.stale["system"], result
    assert "interfaces" in result.stale
    assert peak < MEMORY_BOUND and elapsed < TIMEOUT + SLACK


async def test_a_poll_reading_past_its_budget_stops() -> None:
    result, peak, elapsed = await poll_hostile(hostile.endless_rows, timeout=20.0)
    assert not result.ok and result.error_kind == "protocol", result.error
    assert result.error is not None and "sent too much" in result.error
    # The rows are kept until the reply ends, so the peak is about the budget, and no more.
    assert peak < MAX_POLL_BYTES * 3 and elapsed < 20.0 + SLACK


async def test_trickle_times_out_in_time() -> None:
    result, peak, elapsed = await poll_hostile(hostile.trickle)
    assert not result.ok and result.error_kind == "timeout", result.error
    assert peak < MEMORY_BOUND and elapsed < TIMEOUT + SLACK


async def test_close_mid_reply_is_unreachable() -> None:
    result, _, elapsed = await poll_hostile(hostile.close_mid_reply)
    assert not result.ok and result.error_kind == "unreachable", result.error
    assert elapsed < TIMEOUT + SLACK


async def test_reset_before_any_reply_is_unreachable() -> None:
    result, _, _ = await poll_hostile(hostile.reset_at_once)
    assert not result.ok and result.error_kind == "unreachable", result.error
    assert result.error is not None and "before any reply" in result.error


async def test_reset_mid_session_is_unreachable() -> None:
    result, _, _ = await poll_hostile(hostile.reset_after_login)
    assert not result.ok and result.error_kind == "unreachable", result.error
    assert result.error is not None and "middle of the session" in result.error


@pytest.mark.parametrize(("code", "kind"), [
    (errno.EHOSTUNREACH, "unreachable"), (errno.ENETUNREACH, "unreachable"), (errno.ECONNRESET, "unreachable"),
    (errno.EPIPE, "unreachable"), (errno.ECONNREFUSED, "refused"), (errno.ETIMEDOUT, "timeout"),
    (errno.EACCES, "error"),
])
def test_os_errors_map_to_kinds(code: int, kind: str) -> None:
    assert os_error_kind(OSError(code, os.strerror(code))) == kind


def test_collector_names_no_route_unreachable() -> None:
    col = RouterOSCollector(ApiTarget(name="X", address="192.0.2.1", username="u", password="p"),
                            clock=ScaledClock(1.0))
    for code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        kind, message = col._describe(OSError(code, os.strerror(code)))
        assert kind == "unreachable" and os.strerror(code) in message


# ---- ispvm poll -----------------------------------------------------------------------------


@pytest.mark.parametrize("handler", [hostile.huge_word_at_login, hostile.random_garbage])
def test_ispvm_poll_against_a_hostile_router(handler: hostile.Handler, tmp_path: Path) -> None:
    loop = BackgroundLoop("hostile")
    server = loop.run(hostile.HostileServer(handler).start())
    try:
        env = dict(os.environ, XDG_DATA_HOME=str(tmp_path), PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
        t0 = time.monotonic()
        proc = subprocess.Popen([EXE, "poll", hostile.HOST, "--api-user", "admin", "--api-port", str(server.port),
                                 "--timeout", "2", "--json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, text=True)
        out, errs = proc.communicate("pw-7781\n", timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        loop.run(server.stop())
        loop.stop()
    assert "Traceback" not in errs and "pw-7781" not in out + errs
    assert proc.returncode == 1, errs
    assert '"protocol"' in out, out
    assert elapsed < 2 + 20  # interpreter start-up included


_REPORT_PEAK = """
import re, sys
from ispvm_tui.cli import main
sys.argv = ["ispvm", *sys.argv[1:]]
try:
    main()
finally:
    # VmHWM is this process's own peak; ru_maxrss would include the test runner's, copied at fork
    status = open("/proc/self/status").read()
    print("VmHWM", re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1), file=sys.stderr)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_ispvm_poll_memory_stays_small(tmp_path: Path) -> None:
    """Peak RSS of the whole command against a 256 MB word (it reached 565 MB before the limits)."""
    loop = BackgroundLoop("hostile-rss")
    server = loop.run(hostile.HostileServer(hostile.huge_word_at_login).start())
    try:
        env = dict(os.environ, XDG_DATA_HOME=str(tmp_path), PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
        result = subprocess.run([sys.executable, "-c", _REPORT_PEAK, "poll", hostile.HOST, "--api-user", "admin",
                                 "--api-port", str(server.port), "--timeout", "2", "--json"], input="pw-7781\n",
                                env=env, capture_output=True, text=True, timeout=60)
    finally:
        loop.run(server.stop())
        loop.stop()
    assert result.returncode == 1 and '"protocol"' in result.stdout, result.stderr
    peak_kb = int(result.stderr.rsplit("VmHWM", 1)[1].split()[0])
    assert peak_kb * 1024 < 200 << 20, peak_kb  # the interpreter and its imports: ~40 MB
