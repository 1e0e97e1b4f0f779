"""Which ErrorKind an operating-system error means, shared by both collectors.

The rules engine treats "unreachable" as "the device could not be reached":
no route, a dead path, a connection reset or closed under us. "refused" (the
host answered, the service is off) and "timeout" (nothing came back) stay apart.
"""

from __future__ import annotations

import errno

from ispvm_tui.collectors.results import ErrorKind

_UNREACHABLE = frozenset({
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN,
    errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ENOTCONN,
})


def os_error_kind(exc: OSError) -> ErrorKind:
    """The kind of a socket error: by class first (asyncio raises the subclasses), then by errno."""
    if isinstance(exc, TimeoutError) or exc.errno == errno.ETIMEDOUT:
        return "timeout"
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "refused"
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return "unreachable"
    if exc.errno in _UNREACHABLE:
        return "unreachable"
    return "error"


def os_error_text(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__
