"""Scrub the HTTP libraries' own log records where they are made, not only where they are written.

httpx logs every request's URL at INFO, and a Telegram URL holds the bot token (a Slack webhook
URL is the secret itself). ``redact.install`` scrubs at the handlers the CLI sets up; a filter on
the loggers themselves also covers any handler added later (a test's caplog, an embedding app).
"""

from __future__ import annotations

import logging

from ispvm_tui import redact

HTTP_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy",
                "httpcore.socks")


def guard_http_loggers() -> None:
    """Put the redacting filter on the loggers httpx and httpcore create records on (idempotent)."""
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, redact.RedactingFilter) for f in logger.filters):
            logger.addFilter(redact.RedactingFilter())
