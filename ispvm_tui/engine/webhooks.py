"""Outbound incident webhooks: payload, signing and a single delivery attempt.

This module is the mechanics only. The durable outbox (storing an event in
the same transaction as the incident change, per-incident ordering, dead
letters, manual resend) lives elsewhere and calls :func:`attempt` and
:func:`backoff_s`. The wire contract is ``spec/webhooks.md`` (v1):

* Headers: ``Content-Type: application/json``, ``X-ISPVM-Event-Type``,
  ``X-ISPVM-Delivery-ID`` (a fresh UUID for every attempt),
  ``X-ISPVM-Tenant-ID`` (only when a tenant is configured) and
  ``X-ISPVM-Signature: sha256=<hex>`` (only when the endpoint has a secret):
  HMAC-SHA256 of the exact body bytes sent, keyed with the current secret.
  The v1 header always carries exactly one signature.
* Body: built by :func:`event_body` around :func:`incident_object`, encoded
  once by :func:`encode_body`. The outbox stores the incident object and
  ``sent_at`` is the event's creation time, so every retry sends, and signs,
  the identical body with the same ``event_id`` (only a manual resend of a
  superseded event differs: ``"superseded": true``).

Choices where the spec is open:

* No tenant configured: the top-level ``tenant`` key is present and ``null``
  (so the top-level key set never varies) and ``X-ISPVM-Tenant-ID`` is not
  sent. A tenant without a name is sent as ``{"id": ...}``.
* ``labels`` is always present (``{}`` when there are none); a root cause's
  ``name`` is omitted when it is empty; ``confidence`` is clamped to 0..1;
  evidence lines are cut to :data:`EVIDENCE_MAX_CHARS`.
* Times are RFC 3339 UTC with whole seconds and a ``Z`` suffix.
* Redirects are never followed (a signed body must not be replayed to a URL
  the operator did not configure); a 3xx is a permanent failure.
* Credentials in URLs: ``incident.url`` never carries the base URL's
  ``user:password@`` (a deep link is for people, who log in themselves). An
  endpoint URL's ``user:password@`` is sent the only way HTTP sends it, as an
  ``Authorization: Basic`` header; it is never part of a stored row, an error
  text or a log line (its password is registered with ``redact``).

Beyond v1 (the spec's recommendations), implemented as *additional* headers
so a v1 receiver sees no change:

* Replay protection: with a secret, every attempt also carries
  ``X-ISPVM-Timestamp: <unix seconds>`` and
  ``X-ISPVM-Signature-V2: t=<ts>,sha256=<hex>`` where the HMAC covers
  ``"<ts>." + body``; :func:`verify_v2` checks it and its age.
* Secret rotation without a gap: ``WebhookEndpoint.previous_secrets`` adds one
  more ``sha256=<hex>`` entry per old secret to the *V2* header (current
  secret first). A v1-only receiver rotates by accepting both secrets on its
  side before the sender switches, because the v1 header only ever carries
  the current secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from ispvm_tui import __version__, redact
from ispvm_tui.clock import Clock, SystemClock
from ispvm_tui.engine.api import IncidentView

EVENT_TYPES: tuple[str, ...] = (
    "incident.opened",
    "incident.updated",
    "incident.acked",
    "incident.closed",
)
# `ispvm notify test`: a signed body of the same shape that no receiver should take for an incident.
TEST_EVENT = "ispvm.test"
SENDABLE = (*EVENT_TYPES, TEST_EVENT)
EVIDENCE_TOP = 5
EVIDENCE_MAX_CHARS = 200
USER_AGENT = f"ispvm-webhooks/{__version__}"

# 408 Request Timeout, 425 Too Early, 429 Too Many Requests: the receiver asks to be tried again.
RETRYABLE_4XX = frozenset({408, 425, 429})
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 600.0  # a receiver back from a long outage is retried within 10 minutes
RETRY_AFTER_MAX_S = 3600.0  # a Retry-After further out than this is taken as one hour

_ERROR_SNIPPET_CHARS = 200
_DRAIN_MAX_BYTES = 64 * 1024  # a 2xx reply read to its end so its connection is reused
_SIGNATURE_RE = re.compile(r"sha256=([0-9a-f]{64})")
_RNG = random.Random()


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str | None = None


@dataclass(frozen=True, repr=False)
class WebhookEndpoint:
    name: str
    url: str
    secret: str | None = field(default=None, repr=False)
    timeout_s: float = 5.0
    max_attempts: int = 0  # 0: no limit by count; an event is retried until it is max_age_s old
    max_age_s: float = 86400.0
    events: frozenset[str] = frozenset(EVENT_TYPES)
    # Old secrets still signed with (V2 header only) while receivers rotate.
    previous_secrets: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        # Callers may pass any iterable; a frozenset keeps the endpoint hashable.
        object.__setattr__(self, "events", frozenset(self.events))
        object.__setattr__(self, "previous_secrets", tuple(self.previous_secrets))
        unknown = self.events - set(EVENT_TYPES)
        if unknown:
            raise ValueError(f"unknown event types: {sorted(unknown)}")
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError(f"webhook {self.name!r}: URL must be http or https")
        if self.timeout_s <= 0 or self.max_attempts < 0 or self.max_age_s <= 0:
            raise ValueError(f"webhook {self.name!r}: timeout and max age must be positive, attempts 0 or more")
        for secret in self.secrets():
            redact.register(secret)
        redact.register_url(self.url)

    def __repr__(self) -> str:
        # Secrets are hidden; so are URL credentials and query strings, which
        # chat and ticket systems commonly use to carry tokens.
        return (
            f"WebhookEndpoint(name={self.name!r}, url={redact_url(self.url)!r}, "
            f"secret={'set' if self.secret else None}, timeout_s={self.timeout_s}, "
            f"max_attempts={self.max_attempts}, max_age_s={self.max_age_s}, "
            f"events={sorted(self.events)})"
        )

    def secrets(self) -> tuple[str, ...]:
        """Current secret first, then the ones being rotated out."""
        return ((self.secret,) if self.secret else ()) + tuple(s for s in self.previous_secrets if s)


@dataclass(frozen=True)
class AttemptOutcome:
    delivery_id: str
    status: Literal["delivered", "retry", "permanent"]
    http_status: int | None
    error: str | None
    retry_after_s: float | None
    duration_s: float


# --- payload -----------------------------------------------------------------


def rfc3339(ts: float) -> str:
    """Epoch seconds as RFC 3339 UTC, whole seconds, ``Z`` suffix."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339_or_none(ts: float | None) -> str | None:
    return None if ts is None else rfc3339(ts)


def _evidence_line(line: str) -> str:
    line = " ".join(line.split())  # receivers render these on one line
    if len(line) <= EVIDENCE_MAX_CHARS:
        return line
    return line[: EVIDENCE_MAX_CHARS - 1] + "…"


def incident_url(base_url: str, incident_id: str) -> str:
    """The deep link ``BASE/incidents/<id>``, without any credentials the base URL carries."""
    redact.register_url(base_url)
    return redact.strip_userinfo(base_url).rstrip("/") + "/incidents/" + quote(incident_id, safe="")


def incident_object(incident: IncidentView, base_url: str) -> dict[str, Any]:
    """The body's ``incident`` object, in the spec's key order."""
    root_causes = []
    for rc in incident.root_causes:
        item: dict[str, Any] = {"entity_type": rc.entity_type, "entity_id": rc.entity_id}
        if rc.name:
            item["name"] = rc.name
        item["confidence"] = min(1.0, max(0.0, float(rc.confidence)))
        root_causes.append(item)
    impact = incident.impact
    return {
        "id": incident.id,
        "title": incident.title,
        "status": incident.status,
        "severity": incident.severity,
        "starts_at": rfc3339(incident.opened_at),
        "ends_at": _rfc3339_or_none(incident.closed_at),
        "url": incident_url(base_url, incident.id),
        "ack": {"acked_by": incident.acked_by, "acked_at": _rfc3339_or_none(incident.acked_at)},
        "root_causes": root_causes,
        "impact": {
            "sites_affected": impact.sites_affected,
            "devices_affected": impact.devices_affected,
            "services_affected": impact.services_affected,
            "estimated_subscribers_affected": impact.estimated_subscribers_affected,
        },
        "evidence_top": [_evidence_line(e) for e in incident.evidence[:EVIDENCE_TOP]],
        "labels": {str(k): str(v) for k, v in incident.labels.items()},
    }


def event_body(
    event_id: str, event_type: str, sent_at: float, tenant: Tenant | None, incident: dict[str, Any],
    *, sequence: int | None = None, superseded: bool = False,
) -> dict[str, Any]:
    """The top-level body. ``event_id`` must stay the same on every retry.

    ``sequence`` (beyond v1): the event's number among this endpoint's events for the incident,
    1, 2, 3 ... in the order they happened. ``superseded`` (beyond v1): true only on a manual resend
    of an event after a later event of the same incident was already delivered to this endpoint.
    Both are added after the v1 keys, so a v1 receiver that ignores unknown fields sees no change.
    """
    if event_type not in SENDABLE:
        raise ValueError(f"unknown event type {event_type!r}")
    uuid.UUID(event_id)  # raises ValueError: receivers de-duplicate on it
    tenant_obj: dict[str, str] | None = None
    if tenant is not None:
        tenant_obj = {"id": tenant.id}
        if tenant.name is not None:
            tenant_obj["name"] = tenant.name
    if isinstance(incident.get("url"), str):  # rows stored by older versions may still carry credentials
        incident = {**incident, "url": redact.strip_userinfo(incident["url"])}
    body: dict[str, Any] = {
        "event_id": event_id,
        "event_type": event_type,
        "sent_at": rfc3339(sent_at),
        "tenant": tenant_obj,
        "incident": incident,
    }
    if sequence is not None:
        if sequence < 1:
            raise ValueError("sequence starts at 1")
        body["sequence"] = sequence
        body["superseded"] = bool(superseded)
    return body


def encode_body(body: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are signed and sent."""
    # allow_nan=False: NaN/Infinity are not JSON and would break receivers.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


# --- signatures --------------------------------------------------------------


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str) -> str:
    """The v1 ``X-ISPVM-Signature`` value: ``sha256=<hex>`` over the raw body."""
    return "sha256=" + _hmac_hex(secret, body)


def verify(body: bytes, secret: str, header: str) -> bool:
    """Check a v1 signature header against the raw body, in constant time."""
    expected = sign(body, secret)
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def sign_v2(body: bytes, secrets: tuple[str, ...] | list[str], timestamp: int) -> str:
    """The ``X-ISPVM-Signature-V2`` value: ``t=<ts>,sha256=<hex>[,sha256=<hex>…]``."""
    if not secrets:
        raise ValueError("at least one secret is needed")
    message = f"{timestamp}.".encode() + body
    return ",".join([f"t={timestamp}", *("sha256=" + _hmac_hex(s, message) for s in secrets)])


def verify_v2(body: bytes, secret: str, header: str, *, now: float | None = None, tolerance_s: float = 300.0) -> bool:
    """Check a V2 header: any listed signature matches and the timestamp is fresh."""
    parts = [p.strip() for p in header.split(",")]
    if not parts or not parts[0].startswith("t="):
        return False
    try:
        timestamp = int(parts[0][2:])
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = _hmac_hex(secret, f"{timestamp}.".encode() + body).encode()
    ok = False
    for part in parts[1:]:
        m = _SIGNATURE_RE.fullmatch(part)
        # No early exit: the time taken must not reveal which entry matched.
        if m and hmac.compare_digest(expected, m.group(1).encode()):
            ok = True
    return ok


# --- delivery ----------------------------------------------------------------


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment (places tokens hide)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "<invalid url>"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _scrub(text: str, endpoint: WebhookEndpoint) -> str:
    """Remove anything secret from a string destined for logs and the console."""
    if endpoint.url != redact_url(endpoint.url):
        text = text.replace(endpoint.url, redact_url(endpoint.url))
    for secret in endpoint.secrets():
        text = text.replace(secret, "***")
    return redact.scrub(text)  # URL user info in any spelling httpx used, and every known secret


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from ``now``: delay-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _classify(status: int) -> Literal["delivered", "retry", "permanent"]:
    if 200 <= status < 300:
        return "delivered"
    if status in RETRYABLE_4XX or 500 <= status < 600:
        return "retry"
    return "permanent"  # 3xx (not followed), other 4xx, nonsense codes


def _headers(
    endpoint: WebhookEndpoint, event_type: str, body: bytes, tenant: Tenant | None, delivery_id: str, now: float
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-ISPVM-Event-Type": event_type,
        "X-ISPVM-Delivery-ID": delivery_id,
    }
    if tenant is not None:
        headers["X-ISPVM-Tenant-ID"] = tenant.id
    if endpoint.secret:
        timestamp = int(now)
        headers["X-ISPVM-Signature"] = sign(body, endpoint.secret)
        headers["X-ISPVM-Timestamp"] = str(timestamp)
        headers["X-ISPVM-Signature-V2"] = sign_v2(body, endpoint.secrets(), timestamp)
    return headers


async def _read_snippet(response: httpx.Response) -> str:
    """At most a few hundred bytes of the reply, for the error message."""
    chunks = bytearray()
    async for chunk in response.aiter_bytes():
        chunks += chunk
        if len(chunks) >= _ERROR_SNIPPET_CHARS:
            break
    text = chunks[:_ERROR_SNIPPET_CHARS].decode("utf-8", errors="replace")
    return " ".join(text.split())


async def _drain(response: httpx.Response) -> None:
    """Read a short reply to its end so the connection goes back to the pool (an unread one is closed:
    measured, a new TCP connection per delivery cost ~15 % of the outbox's throughput). A long one is not
    worth reading: closing that connection is cheaper."""
    seen = 0
    async for chunk in response.aiter_raw():
        seen += len(chunk)
        if seen > _DRAIN_MAX_BYTES:
            break


def _http_error(response: httpx.Response, snippet: str) -> str:
    error = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    if 300 <= response.status_code < 400:
        error += " (redirects are not followed; fix the endpoint URL)"
    return f"{error}: {snippet}" if snippet else error


async def attempt(
    client: httpx.AsyncClient,
    endpoint: WebhookEndpoint,
    event_type: str,
    body: bytes,
    tenant: Tenant | None,
    *,
    clock: Clock | None = None,
) -> AttemptOutcome:
    """POST ``body`` once. Network failures become outcomes, never exceptions.

    ``clock`` supplies the V2 timestamp and the reference for an HTTP-date
    Retry-After; it defaults to wall-clock time, which is what receivers use.
    """
    if event_type not in SENDABLE:
        raise ValueError(f"unknown event type {event_type!r}")
    clock = clock or SystemClock()
    delivery_id = str(uuid.uuid4())
    headers = _headers(endpoint, event_type, body, tenant, delivery_id, clock.now())
    started = time.monotonic()

    def outcome(
        status: Literal["delivered", "retry", "permanent"],
        http_status: int | None = None,
        error: str | None = None,
        retry_after_s: float | None = None,
    ) -> AttemptOutcome:
        return AttemptOutcome(
            delivery_id=delivery_id,
            status=status,
            http_status=http_status,
            error=None if error is None else _scrub(error, endpoint),
            retry_after_s=retry_after_s,
            duration_s=time.monotonic() - started,
        )

    try:
        # httpx timeouts apply per operation; the outer deadline bounds the
        # whole exchange so a receiver trickling bytes cannot hold a worker.
        async with asyncio.timeout(endpoint.timeout_s):
            async with client.stream(
                "POST",
                endpoint.url,
                content=body,
                headers=headers,
                timeout=endpoint.timeout_s,
                follow_redirects=False,
            ) as response:
                status = _classify(response.status_code)
                if status == "delivered":
                    await _drain(response)
                    return outcome(status, response.status_code)
                snippet = await _read_snippet(response)
                retry_after = None
                if status == "retry":
                    retry_after = parse_retry_after(response.headers.get("Retry-After"), clock.now())
                    if retry_after is not None:
                        retry_after = min(retry_after, RETRY_AFTER_MAX_S, endpoint.max_age_s)
                return outcome(status, response.status_code, _http_error(response, snippet), retry_after)
    except (TimeoutError, httpx.TimeoutException) as exc:
        detail = f" ({type(exc).__name__})" if isinstance(exc, httpx.TimeoutException) else ""
        return outcome("retry", error=f"timeout after {endpoint.timeout_s:g}s{detail}")
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        return outcome("permanent", error=f"invalid endpoint URL: {exc}")
    except (httpx.TransportError, OSError) as exc:
        return outcome("retry", error=f"{type(exc).__name__}: {str(exc) or 'connection failed'}")


def backoff_s(attempt_no: int, *, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S,
              rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt_no`` (1 = after the first failure).

    Full jitter (uniform between 0 and the exponential ceiling) spreads the
    retries of many events that failed together, e.g. when a receiver
    comes back after an outage, instead of hitting it in waves.
    """
    if attempt_no < 1:
        raise ValueError("attempt_no starts at 1")
    # Clamp the exponent so huge attempt numbers cannot overflow a float.
    ceiling = min(cap, base * 2.0 ** min(attempt_no - 1, 64))
    return (rng or _RNG).uniform(0.0, ceiling)
