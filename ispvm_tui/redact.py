"""Keeping secrets out of logs, payloads and the database.

Three things are removed from any text that leaves the process as a log line:

* credentials in URLs (``https://user:pw@host`` -> ``https://***@host``);
* RouterOS API login words (``=password=...``);
* every secret value ispvm has read: the secret sources in ``secrets.py``
  call :func:`register` with each value they hand out, and the webhook and
  base URLs register their passwords, so a value is hidden in whatever form a
  library happens to print it (plain, ``repr``-escaped, JSON-escaped or
  percent-encoded).

:class:`RedactingFilter` does this to every record a handler emits, after
the message is formatted with its arguments and including tracebacks, so it
covers third-party loggers (librouteros, httpx, httpcore, asyncio, pysnmp)
at every level. :func:`install` puts it on handlers and also keeps
librouteros's word-by-word protocol trace (DEBUG, which includes the login
words) from being produced at all.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from urllib.parse import quote, unquote, urlsplit, urlunsplit

MASK = "***"
# Shorter values are not hidden by value: they would blank out ordinary words all over the log.
# They are still hidden where they stand as a password (API login words, URL user info).
MIN_SECRET_LEN = 4
# Libraries whose DEBUG output carries credentials verbatim: never let them produce it.
QUIET_LOGGERS: dict[str, int] = {"librouteros": logging.INFO}

_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s@'\"<>]*@")
# A login word as librouteros's repr() shows it (up to its own closing quote, escapes and all);
# a bare one hides the rest of its line, since a password may hold spaces and quotes.
_API_PASSWORD_QUOTED = re.compile(r"""(?P<q>['"])=password=(?:\\.|(?!(?P=q))[^\\\n])*(?P=q)""")
_API_PASSWORD_BARE = re.compile(r"""=password=(?!\*\*\*['"])[^\n]*""")

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None  # replaced whole on each registration: readers never lock


def _variants(value: str) -> set[str]:
    """The forms a value takes when a library prints it."""
    forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
             quote(value, safe=""), quote(value)}
    return {f for f in forms if len(f) >= MIN_SECRET_LEN}


def register(value: str | None) -> None:
    """Hide this value (in all its printed forms) from every log record from now on.

    The set only ever holds the distinct secrets the config names, so it stays small.
    """
    global _pattern
    if not value or len(value) < MIN_SECRET_LEN:
        return
    forms = _variants(value)
    with _lock:
        if forms <= _values:
            return
        _values.update(forms)
        # Longest first, so a value that contains another is hidden whole.
        alternatives = sorted(_values, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in alternatives))


def register_url(url: str | None) -> None:
    """Hide the password (and the Basic auth header value) a URL carries."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        username, password = parts.username, parts.password
    except ValueError:
        return
    if password:
        register(password)
        register(unquote(password))
        user = unquote(username or "")
        register(base64.b64encode(f"{user}:{unquote(password)}".encode()).decode())


def strip_userinfo(url: str) -> str:
    """The URL with no ``user:password@``; everything else as given."""
    try:
        parts = urlsplit(url)
        if "@" not in parts.netloc:
            return url
        netloc = parts.netloc.rpartition("@")[2]
    except ValueError:
        return _URL_USERINFO.sub(r"\g<scheme>", url)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact_urls(text: str) -> str:
    """Every ``scheme://user:password@`` in the text becomes ``scheme://***@``."""
    return _URL_USERINFO.sub(rf"\g<scheme>{MASK}@", text)


def scrub(text: str) -> str:
    """The text with URL credentials, API password words and every registered secret masked."""
    if not text:
        return text
    text = redact_urls(text)
    if "=password=" in text:
        text = _API_PASSWORD_QUOTED.sub(rf"\g<q>=password={MASK}\g<q>", text)
        text = _API_PASSWORD_BARE.sub(f"=password={MASK}", text)
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Scrubs the formatted message, the traceback and the stack of every record it sees.

    On a handler it sees records from every logger that propagates to it, whatever their
    level; the record is rewritten in place (message formatted once, arguments dropped).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: show what there is, still scrubbed
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        # Formatters that render the exception themselves (the JSON one does) take the scrubbed text instead.
        record.exc_info = None
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install(handlers: list[logging.Handler] | None = None) -> None:
    """Put the filter on these handlers (default: the root logger's) and on logging's last resort."""
    targets = list(logging.getLogger().handlers if handlers is None else handlers)
    if logging.lastResort is not None:
        targets.append(logging.lastResort)
    for handler in targets:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(_FILTER)
    for name, level in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        if logger.level < level:  # NOTSET (0) would inherit the root's DEBUG under -v
            logger.setLevel(level)
