"""The redaction rules and the logging filter, on the real libraries' own log calls."""

from __future__ import annotations

import io
import json
import logging
from urllib.parse import quote

import httpx
import pytest
from librouteros import protocol

from ispvm_tui import redact
from ispvm_tui.engine import webhooks
from ispvm_tui.lab.webhook_sink import WebhookSink
from ispvm_tui.secrets import StaticSecrets


@pytest.mark.parametrize(("url", "stripped"), [
    ("https://user:pw@host.example/x?y=1#f", "https://host.example/x?y=1#f"),
    ("http://only-user@127.0.0.1:8080/hook", "http://127.0.0.1:8080/hook"),
    ("http://u:p%40ss@[::1]:9/h", "http://[::1]:9/h"),
    ("https://host.example/path?email=a@b", "https://host.example/path?email=a@b"),
    ("https://host.example", "https://host.example"),
])
def test_strip_userinfo_drops_credentials_and_keeps_the_rest(url: str, stripped: str) -> None:
    assert redact.strip_userinfo(url) == stripped


def test_urls_in_text_lose_their_user_info() -> None:
    text = "POST http://hook:s3cr%40t@127.0.0.1:9/hook failed; see https://docs.example/a@b and ftp://x@y"
    assert redact.redact_urls(text) == ("POST http://***@127.0.0.1:9/hook failed; see https://docs.example/a@b "
                                        "and ftp://***@y")


def _capture(logger_name: str, level: int = logging.DEBUG) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    redact.install([handler])
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    return logger, stream, handler


def test_librouteros_login_words_never_reach_a_handler() -> None:
    logger, stream, handler = _capture("librouteros")
    try:
        assert logger.level >= logging.INFO, "install() keeps librouteros's word trace from being produced"
        logger.setLevel(logging.DEBUG)  # someone turned it on anyway: the filter still holds
        protocol.log("<---", "/login", "=name=admin", "=password=it's-a \\secret")
        protocol.log("<---", "/login", '=password=say "hi"')
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.INFO)
    out = stream.getvalue()
    assert "=name=admin" in out and out.count("=password=***") == 2
    assert "secret" not in out and "hi" not in out


def test_registered_secrets_are_hidden_in_args_repr_json_urls_and_tracebacks() -> None:
    value = 'Reg-"Pw"\\é-7731'
    StaticSecrets({"x": value}).get("x")  # reading a secret registers it
    logger, stream, handler = _capture("some.library")
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("plain %s", value)
        logger.debug("repr %r", value)
        logger.info("json %s", json.dumps({"k": value}))
        logger.info("quoted %s", quote(value, safe=""))
        try:
            raise RuntimeError(f"boom {value}")
        except RuntimeError:
            logger.exception("failed")
        logger.warning("stack", stack_info=True, extra={})
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "Reg-" not in out, out
    assert out.count("***") >= 5 and "RuntimeError: boom ***" in out


def test_short_values_are_not_hidden_everywhere() -> None:
    redact.register("abc")
    assert redact.scrub("abcdef") == "abcdef"


async def test_httpx_request_log_keeps_no_url_password() -> None:
    password = "Httpx-Pw-4410"
    logger, stream, handler = _capture("httpx")
    logger.setLevel(logging.DEBUG)
    with WebhookSink() as sink:
        url = sink.url.replace("http://", f"http://hook:{password}@")
        endpoint = webhooks.WebhookEndpoint(name="t", url=url)
        try:
            async with httpx.AsyncClient() as client:
                outcome = await webhooks.attempt(client, endpoint, "incident.opened", b"{}", None)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)
        assert outcome.status == "delivered"
        assert sink.received()[0].header("Authorization").startswith("Basic ")
    out = stream.getvalue()
    assert "HTTP Request: POST http://***@127.0.0.1" in out
    assert password not in out


def test_incident_url_never_carries_the_base_urls_credentials() -> None:
    assert webhooks.incident_url("https://noc:Pw-1@noc.example/ispvm/", "a b") == \
        "https://noc.example/ispvm/incidents/a%20b"
    assert redact.scrub("x Pw-1 y") == "x *** y"  # and its password is hidden from logs from now on


def test_an_outbox_row_stored_with_credentials_is_sent_without_them() -> None:
    """Rows written before the base URL lost its credentials are cleaned when they are sent."""
    stored = {"id": "i1", "url": "https://noc:Old-Pw-1@noc.example/incidents/i1"}
    body = webhooks.event_body("8a3c3f4e-8a0f-4f55-9d39-9c6c2c7d1a11", "incident.opened", 0, None, stored)
    assert body["incident"]["url"] == "https://noc.example/incidents/i1"
