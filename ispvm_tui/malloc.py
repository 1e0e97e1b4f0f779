"""glibc malloc settings for a long-running engine with a few busy threads.

glibc gives each thread that allocates its own arena (up to 8 per core). The
DuckDB writer, the thread pool behind ``asyncio.to_thread`` and the SNMP
decoding each leave freed blocks in their arena that the process keeps as
RSS. Two arenas keep that spread small; ``trim`` hands free heap pages back
after a burst (a storm's alerts and snapshots). Elsewhere (musl, macOS) both
are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # from glibc's malloc.h


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def limit_arenas(count: int = 2) -> bool:
    """Cap glibc's malloc arenas; call before threads start. True if applied."""
    if _LIBC is None:
        return False
    ok = bool(_LIBC.mallopt(_M_ARENA_MAX, count))
    log.debug("malloc arenas capped at %d: %s", count, ok)
    return ok


def trim() -> bool:
    """Return free heap memory to the OS; True if any was released."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))
