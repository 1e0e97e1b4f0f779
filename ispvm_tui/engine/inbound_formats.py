"""What other systems send in (docs/inbound.md), read into one shape: ``Incoming``.

* ``alertmanager``: Prometheus Alertmanager's webhook (``{"alerts": [{"status", "labels", "annotations",
  "fingerprint", ...}]}``);
* ``zabbix``: the object a Zabbix webhook media type posts (``event_id``, ``status`` PROBLEM / RESOLVED or
  1 / 0, ``host``, ``trigger``, ``severity`` as Zabbix names it, ``message``), one event per request;
* ``json``: ``{"alerts": [{"id", "status": "firing" | "resolved", "name", "device", "severity",
  "summary"}]}`` or one such object.

The device an alert is about is looked up in the inventory by name or management address, from the fields
those systems put it in (``device``, ``instance`` without its port, ``host`` ...). Everything is bounded:
strings are cut, label maps capped, and anything of the wrong type is refused with the field named.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_TEXT = 500
MAX_LABELS = 30
DEVICE_FIELDS = ("device", "router", "hostname", "host", "instance", "nodename", "target")
_SEVERITIES = {"critical": "critical", "disaster": "critical", "emergency": "critical", "page": "critical",
               "high": "major", "major": "major", "error": "major", "average": "minor", "minor": "minor",
               "warning": "warning", "warn": "warning", "info": "info", "information": "info",
               "informational": "info", "not classified": "info", "none": "info"}


class InboundError(ValueError):
    """The body is not what the source's kind sends: the message names the field."""


@dataclass(frozen=True)
class Incoming:
    key: str  # the sender's identity of this alert (a fingerprint, an event id): firing and resolved match on it
    name: str
    firing: bool
    severity: str
    summary: str
    device_hint: str | None  # what the sender says the alert is about, before the inventory lookup
    labels: dict[str, str] = field(default_factory=dict)


def _text(value: Any, what: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or (required and not value.strip()):
        raise InboundError(f"{what}: expected text")
    return " ".join(value.split())[:MAX_TEXT]


def _labels(raw: Any, what: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InboundError(f"{what}: expected an object")
    return {str(k)[:100]: _text(v, f"{what}.{k}", required=False) for k, v in list(raw.items())[:MAX_LABELS]}


def severity_of(value: Any) -> str:
    return _SEVERITIES.get(str(value or "").strip().lower(), "major")


def _hint(fields: dict[str, str]) -> str | None:
    for name in DEVICE_FIELDS:
        value = fields.get(name)
        if value:
            return value
    return None


def _alertmanager(body: dict[str, Any]) -> list[Incoming]:
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise InboundError("alerts: expected a list (an Alertmanager webhook)")
    out = []
    for n, a in enumerate(alerts):
        if not isinstance(a, dict):
            raise InboundError(f"alerts[{n}]: expected an object")
        labels = _labels(a.get("labels"), f"alerts[{n}].labels")
        notes = _labels(a.get("annotations"), f"alerts[{n}].annotations")
        name = labels.get("alertname") or "alert"
        status = a.get("status", body.get("status"))
        if status not in ("firing", "resolved"):
            raise InboundError(f"alerts[{n}].status: firing or resolved, not {status!r}")
        key = a.get("fingerprint") or hashlib.sha256(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16]
        out.append(Incoming(_text(key, f"alerts[{n}].fingerprint"), name, status == "firing",
                            severity_of(labels.get("severity")),
                            notes.get("summary") or notes.get("description") or name, _hint(labels), labels))
    return out


def _zabbix(body: dict[str, Any]) -> list[Incoming]:
    status = str(body.get("status", "")).strip().upper()
    if status not in ("PROBLEM", "RESOLVED", "OK", "1", "0"):
        raise InboundError(f"status: PROBLEM or RESOLVED (or 1 / 0), not {body.get('status')!r}")
    fields = {k: _text(v, k, required=False) for k, v in body.items() if isinstance(v, str | int | float)}
    trigger = _text(body.get("trigger") or body.get("name"), "trigger")
    return [Incoming(_text(body.get("event_id"), "event_id"), trigger, status in ("PROBLEM", "1"),
                     severity_of(body.get("severity")), _text(body.get("message"), "message", required=False)
                     or trigger, _hint(fields), {k: v for k, v in fields.items() if k != "message"})]


def _generic(body: dict[str, Any]) -> list[Incoming]:
    alerts = body.get("alerts", [body])
    if not isinstance(alerts, list):
        raise InboundError("alerts: expected a list")
    out = []
    for n, a in enumerate(alerts):
        if not isinstance(a, dict):
            raise InboundError(f"alerts[{n}]: expected an object")
        status = a.get("status")
        if status not in ("firing", "resolved"):
            raise InboundError(f"alerts[{n}].status: firing or resolved, not {status!r}")
        name = _text(a.get("name"), f"alerts[{n}].name")
        out.append(Incoming(_text(a.get("id"), f"alerts[{n}].id"), name, status == "firing",
                            severity_of(a.get("severity")), _text(a.get("summary"), "summary", required=False)
                            or name, _text(a.get("device"), "device", required=False) or None,
                            _labels(a.get("labels"), f"alerts[{n}].labels")))
    return out


READERS = {"alertmanager": _alertmanager, "zabbix": _zabbix, "json": _generic}


def read(kind: str, raw: bytes, max_alerts: int) -> list[Incoming]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InboundError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InboundError("expected a JSON object")
    alerts = READERS[kind](body)
    if len(alerts) > max_alerts:
        raise InboundError(f"{len(alerts)} alerts in one request: at most {max_alerts}")
    return alerts


def device_for(hint: str | None, devices: Iterable[tuple[str, str]]) -> str | None:
    """The inventory's device a hint names: by name (any case) or management address; an ``instance`` of
    ``10.0.0.1:9100`` or ``[2001:db8::1]:9100`` by its host."""
    if not hint:
        return None
    host = hint.strip()
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    for name, address in devices:
        if host.lower() == name.lower() or host == address:
            return name
    return None
