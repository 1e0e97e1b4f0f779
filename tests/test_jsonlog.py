"""--log-format json: one object per record, the fixed fields only, secrets scrubbed from the message and the
traceback alike (the formatter renders exceptions itself, so it must get the scrubbed text)."""

from __future__ import annotations

import io
import json
import logging

from ispvm_tui import jsonlog, redact


def test_json_lines_carry_the_fixed_fields_and_no_secret() -> None:
    secret = "hunter2-json-log-secret"
    redact.register(secret)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(jsonlog.ServiceJsonFormatter())
    redact.install([handler])
    log = logging.getLogger("ispvm_tui.test_jsonlog")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("login to %s with %s", "CORE1", secret, extra={"password": secret, "peer": "10.0.0.1"})
        try:
            raise ConnectionError(f"refused: password={secret}")
        except ConnectionError:
            log.exception("poll of %s failed", "CORE1")
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert set(first) <= set(jsonlog.FIELDS) and "password" not in first and "peer" not in first
    assert (first["level"], first["logger"]) == ("WARNING", "ispvm_tui.test_jsonlog")
    assert first["message"] == f"login to CORE1 with {redact.MASK}"
    assert first["timestamp"].endswith("+00:00")
    assert second["message"] == "poll of CORE1 failed"
    assert "ConnectionError: refused" in second["exc_info"] and redact.MASK in second["exc_info"]
    assert secret not in stream.getvalue()
