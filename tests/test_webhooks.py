"""Webhook contract tests against a real HTTP receiver on loopback.

The example payloads in ``docs/examples/webhooks`` come from a real scenario
run; tests/test_webhook_examples.py checks them.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import socket
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from ispvm_tui.engine.api import Impact, IncidentView, RootCause
from ispvm_tui.engine.webhooks import (
    EVENT_TYPES,
    AttemptOutcome,
    Tenant,
    WebhookEndpoint,
    attempt,
    backoff_s,
    encode_body,
    event_body,
    incident_object,
    parse_retry_after,
    sign,
    sign_v2,
    verify,
    verify_v2,
)
from ispvm_tui.lab.webhook_sink import ReceivedWebhook, WebhookSink

SECRET = "whsec-0f3c9a7e5b21-do-not-log"
TENANT = Tenant(id="6d0f2d8e-3c1b-4a57-9a8e-2f4b7c9d1e05", name="ExampleISP")
BASE_URL = "https://monitor.example.net/"
T0 = datetime(2026, 2, 5, 11, 59, 30, tzinfo=UTC).timestamp()

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RFC3339_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")


# --- spec-shape validator ------------------------------------------------------


def _check_time(value: Any, where: str, *, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    assert isinstance(value, str) and RFC3339_Z.fullmatch(value), f"{where}: not RFC 3339 UTC: {value!r}"


def _check_uuid(value: Any, where: str) -> None:
    assert isinstance(value, str) and UUID_RE.fullmatch(value), f"{where}: not a UUID: {value!r}"


def _check_int(value: Any, where: str, *, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, f"{where}: {value!r}"


RC_KEYS = {"entity_type", "entity_id", "name", "confidence"}


def validate_event(body: dict[str, Any]) -> None:
    """Assert that ``body`` has the v1 spec shape (keys and types), plus the documented beyond-v1 keys."""
    v1 = {"event_id", "event_type", "sent_at", "tenant", "incident"}
    assert v1 <= set(body) <= v1 | {"sequence", "superseded"}, set(body) ^ v1
    if "sequence" in body:
        assert isinstance(body["sequence"], int) and body["sequence"] >= 1
        assert isinstance(body["superseded"], bool)
    _check_uuid(body["event_id"], "event_id")
    assert body["event_type"] in EVENT_TYPES
    _check_time(body["sent_at"], "sent_at")
    tenant = body["tenant"]
    if tenant is not None:
        assert set(tenant) in ({"id"}, {"id", "name"})
        _check_uuid(tenant["id"], "tenant.id")
        assert isinstance(tenant.get("name", ""), str)

    inc = body["incident"]
    required = {"id", "title", "status", "severity", "starts_at", "ends_at", "url", "ack"}
    required |= {"root_causes", "impact", "evidence_top"}
    assert required <= set(inc) <= required | {"labels"}, set(inc) ^ required
    assert isinstance(inc["id"], str) and inc["id"]
    assert isinstance(inc["title"], str) and inc["title"]
    assert inc["status"] in ("open", "acked", "closed")
    assert inc["severity"] in ("critical", "major", "minor", "warning", "info")
    _check_time(inc["starts_at"], "starts_at")
    _check_time(inc["ends_at"], "ends_at", nullable=True)
    assert (inc["ends_at"] is None) == (inc["status"] != "closed")
    assert isinstance(inc["url"], str) and inc["url"].startswith(("http://", "https://"))
    assert inc["url"].endswith("/incidents/" + inc["id"])
    assert set(inc["ack"]) == {"acked_by", "acked_at"}
    assert inc["ack"]["acked_by"] is None or isinstance(inc["ack"]["acked_by"], str)
    _check_time(inc["ack"]["acked_at"], "ack.acked_at", nullable=True)
    assert (inc["ack"]["acked_by"] is None) == (inc["ack"]["acked_at"] is None)

    assert isinstance(inc["root_causes"], list)
    for rc in inc["root_causes"]:
        assert {"entity_type", "entity_id", "confidence"} <= set(rc) <= RC_KEYS
        assert isinstance(rc["entity_type"], str) and isinstance(rc["entity_id"], str)
        assert isinstance(rc.get("name", ""), str)
        assert isinstance(rc["confidence"], int | float) and 0 <= rc["confidence"] <= 1

    impact = inc["impact"]
    assert set(impact) == {
        "sites_affected",
        "devices_affected",
        "services_affected",
        "estimated_subscribers_affected",
    }
    for key in ("sites_affected", "devices_affected", "services_affected"):
        _check_int(impact[key], key)
    _check_int(impact["estimated_subscribers_affected"], "estimated_subscribers_affected", nullable=True)

    assert isinstance(inc["evidence_top"], list)
    assert all(isinstance(e, str) and e and "\n" not in e for e in inc["evidence_top"])
    if "labels" in inc:
        assert isinstance(inc["labels"], dict)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in inc["labels"].items())


# --- a core link cut, for the builder tests ---------------------------

INCIDENT_ID = "3f9a2c41-7b5e-4d08-a1c6-92e4d7b0f315"
EVENT_IDS = {
    "incident.opened": "a1e7c3d9-5f24-4b8a-9c61-0d3e8f2b7a54",
    "incident.acked": "b8d2f6a0-1c39-4e7d-8a5b-6f0c2e9d4b17",
    "incident.closed": "c4f0a8e2-9d17-4b63-b2e5-7a1d3c6f8e90",
}


def link_cut_incident(stage: str = "incident.opened") -> IncidentView:
    acked = stage in ("incident.acked", "incident.closed")
    closed = stage == "incident.closed"
    return IncidentView(
        id=INCIDENT_ID,
        title="Link down: CORE1:ether2 -- POPA-AGG:ether1 (POP-A isolated)",
        status="closed" if closed else "acked" if acked else "open",
        severity="critical",
        priority="P1",
        opened_at=T0,
        closed_at=T0 + 1290 if closed else None,
        acked_by="noc.maria" if acked else None,
        acked_at=T0 + 145 if acked else None,
        root_causes=(
            RootCause(
                entity_type="link",
                entity_id="CORE1:ether2--POPA-AGG:ether1",
                name="CORE1 ether2 <-> POPA-AGG ether1",
                confidence=0.93,
            ),
        ),
        impact=Impact(
            sites_affected=1,
            devices_affected=6,
            services_affected=2,
            estimated_subscribers_affected=412,
            sites=("POP-A",),
            devices=("POPA-AGG", "POPA-SW1", "POPA-AP1", "POPA-AP2", "POPA-AP3", "POPA-OLT1"),
            services=("residential-fixed-wireless", "ftth-popa"),
        ),
        evidence=(
            "CORE1 ether2 oper-status down since 11:59:28 (link-downs 0 -> 1)",
            "POPA-AGG unreachable from CORE1 (RouterOS API and SNMP timeouts, 3 polls)",
            "OSPF neighbor 10.255.0.6 (POPA-AGG) on CORE1 ether2 went Full -> Down",
            "5 devices behind POPA-AGG unreachable; alerts suppressed as downstream",
            "No other core links changed state in the last 5 minutes",
            "CORE1 CPU 7%, uptime 41d: not a device reboot",
        ),
        labels={"category": "backbone", "site": "POP-A", "link": "CORE1:ether2--POPA-AGG:ether1"},
    )


def example_event(event_type: str) -> dict[str, Any]:
    sent_at = {"incident.opened": T0 + 40, "incident.acked": T0 + 146, "incident.closed": T0 + 1291}
    incident = incident_object(link_cut_incident(event_type), BASE_URL)
    return event_body(EVENT_IDS[event_type], event_type, sent_at[event_type], TENANT, incident)


# --- fixtures -----------------------------------------------------------------


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink(secret=SECRET) as s:
        yield s


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


def endpoint_for(sink: WebhookSink, **kw: Any) -> WebhookEndpoint:
    kw.setdefault("secret", SECRET)
    kw.setdefault("timeout_s", 2.0)
    return WebhookEndpoint(name="test", url=sink.url, **kw)


def opened_bytes(tenant: Tenant | None = TENANT) -> bytes:
    incident = incident_object(link_cut_incident(), BASE_URL)
    return encode_body(event_body(str(uuid.uuid4()), "incident.opened", time.time(), tenant, incident))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- payload ------------------------------------------------------------------


def test_incident_object_fields() -> None:
    opened = incident_object(link_cut_incident(), "https://monitor.example.net///")
    assert opened["url"] == f"https://monitor.example.net/incidents/{INCIDENT_ID}"
    assert opened["starts_at"] == "2026-02-05T11:59:30Z"
    assert opened["ends_at"] is None
    assert opened["ack"] == {"acked_by": None, "acked_at": None}
    assert len(opened["evidence_top"]) == 5
    assert opened["root_causes"][0]["entity_id"] == "CORE1:ether2--POPA-AGG:ether1"
    assert opened["impact"]["estimated_subscribers_affected"] == 412

    closed = incident_object(link_cut_incident("incident.closed"), BASE_URL)
    assert closed["ends_at"] == "2026-02-05T12:21:00Z"
    assert closed["ack"] == {"acked_by": "noc.maria", "acked_at": "2026-02-05T12:01:55Z"}


def test_event_body_tenant_variants() -> None:
    incident = incident_object(link_cut_incident(), BASE_URL)
    eid = str(uuid.uuid4())
    with_name = event_body(eid, "incident.opened", T0, TENANT, incident)
    assert with_name["tenant"] == {"id": TENANT.id, "name": "ExampleISP"}
    no_name = event_body(eid, "incident.opened", T0, Tenant(id=TENANT.id), incident)
    assert no_name["tenant"] == {"id": TENANT.id}
    none = event_body(eid, "incident.opened", T0, None, incident)
    assert none["tenant"] is None
    for body in (with_name, no_name, none):
        validate_event(body)
    with pytest.raises(ValueError):
        event_body(eid, "incident.deleted", T0, None, incident)
    with pytest.raises(ValueError):
        event_body("not-a-uuid", "incident.opened", T0, None, incident)


def test_encode_body_is_compact_utf8() -> None:
    body = example_event("incident.opened")
    raw = encode_body(body)
    assert json.loads(raw) == body
    assert b"\n" not in raw and b'", "' not in raw
    assert "↔".encode() in encode_body({"x": "↔"})
    with pytest.raises(ValueError):
        encode_body({"x": float("nan")})


# --- signatures ---------------------------------------------------------------


def test_sign_and_verify_raw_bytes() -> None:
    raw = opened_bytes()
    header = sign(raw, SECRET)
    assert re.fullmatch(r"sha256=[0-9a-f]{64}", header)
    assert verify(raw, SECRET, header)
    assert not verify(raw + b" ", SECRET, header)
    assert not verify(raw.replace(b"critical", b"minor   "), SECRET, header)
    assert not verify(raw, "other-secret", header)
    # Re-serialising the parsed body is not the raw body: receivers must use the bytes.
    assert not verify(json.dumps(json.loads(raw)).encode(), SECRET, header)


def test_v2_timestamp_and_rotation() -> None:
    raw = opened_bytes()
    header = sign_v2(raw, ["new-secret", "old-secret"], 1_770_000_000)
    assert re.fullmatch(r"t=1770000000,sha256=[0-9a-f]{64},sha256=[0-9a-f]{64}", header)
    assert verify_v2(raw, "new-secret", header, now=1_770_000_010)
    assert verify_v2(raw, "old-secret", header, now=1_770_000_010)
    assert not verify_v2(raw, "third-secret", header, now=1_770_000_010)
    assert not verify_v2(raw, "new-secret", header, now=1_770_000_000 + 301)  # replayed later
    assert not verify_v2(raw + b"x", "new-secret", header, now=1_770_000_010)
    forged_ts = header.replace("t=1770000000", "t=1770000300")
    assert not verify_v2(raw, "new-secret", forged_ts, now=1_770_000_300)


# --- delivery against the real sink ---------------------------------------------


async def test_delivery_headers_body_and_signature(sink: WebhookSink, client: httpx.AsyncClient) -> None:
    raw = opened_bytes()
    out = await attempt(client, endpoint_for(sink), "incident.opened", raw, TENANT)
    assert out.status == "delivered" and out.http_status == 200 and out.error is None
    assert out.duration_s >= 0
    [got] = sink.received()
    assert got.body == raw
    assert got.signature_ok is True
    validate_event(got.json)
    assert got.header("Content-Type") == "application/json"
    assert got.header("X-ISPVM-Event-Type") == "incident.opened"
    assert got.header("X-ISPVM-Delivery-ID") == out.delivery_id
    assert uuid.UUID(out.delivery_id).version == 4
    assert got.header("X-ISPVM-Tenant-ID") == TENANT.id
    assert got.header("X-ISPVM-Signature") == sign(raw, SECRET)
    ispvm = {k for k in got.headers if k.startswith("x-ispvm-")}
    assert ispvm == {
        "x-ispvm-event-type",
        "x-ispvm-delivery-id",
        "x-ispvm-tenant-id",
        "x-ispvm-signature",
        "x-ispvm-timestamp",
        "x-ispvm-signature-v2",
    }
    ts = int(got.headers["x-ispvm-timestamp"])
    assert abs(ts - time.time()) < 60
    assert got.headers["x-ispvm-signature-v2"].startswith(f"t={ts},")
    assert verify_v2(raw, SECRET, got.headers["x-ispvm-signature-v2"])


async def test_no_tenant_no_secret_headers(sink: WebhookSink, client: httpx.AsyncClient) -> None:
    raw = opened_bytes(tenant=None)
    out = await attempt(client, endpoint_for(sink, secret=None), "incident.opened", raw, None)
    assert out.status == "delivered"
    [got] = sink.received()
    assert {k for k in got.headers if k.startswith("x-ispvm-")} == {
        "x-ispvm-event-type",
        "x-ispvm-delivery-id",
    }
    assert got.signature_ok is False  # the sink has a secret, the sender does not
    assert got.json["tenant"] is None
    validate_event(got.json)


async def test_altered_body_fails_at_receiver(client: httpx.AsyncClient) -> None:
    with WebhookSink(secret="a-different-secret") as wrong:
        await attempt(client, endpoint_for(wrong), "incident.opened", opened_bytes(), TENANT)
        [got] = wrong.received()
    assert got.signature_ok is False
    assert verify(got.body, SECRET, got.headers["x-ispvm-signature"])
    assert not verify(got.body[:-1] + b" ", SECRET, got.headers["x-ispvm-signature"])


async def test_delivery_id_new_per_attempt_event_id_stable(sink: WebhookSink, client: httpx.AsyncClient) -> None:
    sink.set_responses([500, 200])
    raw = opened_bytes()
    ep = endpoint_for(sink)
    first = await attempt(client, ep, "incident.opened", raw, TENANT)
    second = await attempt(client, ep, "incident.opened", raw, TENANT)
    assert (first.status, second.status) == ("retry", "delivered")
    a, b = sink.received()
    assert a.headers["x-ispvm-delivery-id"] != b.headers["x-ispvm-delivery-id"]
    assert [a.headers["x-ispvm-delivery-id"], b.headers["x-ispvm-delivery-id"]] == [
        first.delivery_id,
        second.delivery_id,
    ]
    assert a.json["event_id"] == b.json["event_id"]
    assert a.response_status == 500 and b.response_status == 200


@pytest.mark.parametrize(
    ("scripted", "status", "http_status"),
    [
        (500, "retry", 500),
        (503, "retry", 503),
        (408, "retry", 408),
        (429, "retry", 429),
        (425, "retry", 425),
        (404, "permanent", 404),
        (410, "permanent", 410),
        (400, "permanent", 400),
        (401, "permanent", 401),
        (204, "delivered", 204),
        (202, "delivered", 202),
    ],
)
async def test_status_classification(
    sink: WebhookSink, client: httpx.AsyncClient, scripted: int, status: str, http_status: int
) -> None:
    sink.set_responses([scripted])
    out = await attempt(client, endpoint_for(sink), "incident.updated", opened_bytes(), TENANT)
    assert (out.status, out.http_status) == (status, http_status)
    assert (out.error is None) == (status == "delivered")
    if out.error:
        assert out.error.startswith(f"HTTP {http_status}")
    assert len(sink.received()) == 1


async def test_retry_after_seconds_and_date(sink: WebhookSink, client: httpx.AsyncClient) -> None:
    later = format_datetime(datetime.fromtimestamp(time.time() + 120, tz=UTC), usegmt=True)
    sink.set_responses([(429, {"Retry-After": "7"}), (503, {"Retry-After": later}), 500])
    ep = endpoint_for(sink)
    raw = opened_bytes()
    first = await attempt(client, ep, "incident.opened", raw, TENANT)
    second = await attempt(client, ep, "incident.opened", raw, TENANT)
    third = await attempt(client, ep, "incident.opened", raw, TENANT)
    assert (first.status, first.http_status, first.retry_after_s) == ("retry", 429, 7.0)
    assert second.status == "retry" and second.retry_after_s is not None
    assert 110 <= second.retry_after_s <= 121
    assert third.retry_after_s is None


def test_parse_retry_after() -> None:
    now = datetime(2026, 2, 5, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after("Thu, 05 Feb 2026 12:01:30 GMT", now) == 90.0
    assert parse_retry_after("Thu, 05 Feb 2026 11:00:00 GMT", now) == 0.0  # past: retry now
    assert parse_retry_after("-5", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("inf", now) is None
    assert parse_retry_after(None, now) is None


async def test_redirect_is_permanent_and_not_followed(sink: WebhookSink, client: httpx.AsyncClient) -> None:
    sink.set_responses([(301, {"Location": sink.url.replace("/hook", "/elsewhere")})])
    out = await attempt(client, endpoint_for(sink), "incident.opened", opened_bytes(), TENANT)
    assert (out.status, out.http_status) == ("permanent", 301)
    assert "redirect" in (out.error or "")
    assert [r.path for r in sink.received()] == ["/hook"]


async def test_connection_refused_is_retry(client: httpx.AsyncClient) -> None:
    with WebhookSink() as gone:
        ep = WebhookEndpoint(name="gone", url=gone.url, secret=SECRET, timeout_s=2.0)
    out = await attempt(client, ep, "incident.opened", opened_bytes(), TENANT)
    assert out.status == "retry" and out.http_status is None
    assert out.error and "Connect" in out.error

    ep = WebhookEndpoint(name="closed", url=f"http://127.0.0.1:{closed_port()}/hook", timeout_s=2.0)
    out = await attempt(client, ep, "incident.opened", opened_bytes(), TENANT)
    assert out.status == "retry" and out.error


async def test_slow_receiver_times_out_as_retry(sink: WebhookSink, client: httpx.AsyncClient) -> None:
    sink.set_delay(3.0)
    ep = endpoint_for(sink, timeout_s=0.3)
    started = time.monotonic()
    out = await attempt(client, ep, "incident.opened", opened_bytes(), TENANT)
    assert time.monotonic() - started < 2.0
    assert out.status == "retry" and out.http_status is None
    assert out.error and out.error.startswith("timeout after 0.3s")
    assert len(sink.received()) == 1  # it did arrive; the receiver was just too slow


async def test_invalid_endpoint_url_is_permanent(client: httpx.AsyncClient) -> None:
    ep = WebhookEndpoint(name="bad", url="http://", timeout_s=1.0)
    out = await attempt(client, ep, "incident.opened", opened_bytes(), TENANT)
    assert out.status == "permanent"
    with pytest.raises(ValueError):
        WebhookEndpoint(name="ftp", url="ftp://127.0.0.1/hook")
    with pytest.raises(ValueError):
        WebhookEndpoint(name="x", url="http://127.0.0.1/hook", events=frozenset({"incident.deleted"}))


# --- backoff ------------------------------------------------------------------


def test_backoff_grows_with_full_jitter() -> None:
    rng = random.Random(42)
    means = []
    for n in range(1, 13):
        ceiling = min(600.0, 2.0 * 2 ** (n - 1))
        samples = [backoff_s(n, rng=rng) for _ in range(400)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert len(set(samples)) > 300  # jittered, not a fixed schedule
        assert max(samples) > 0.9 * ceiling and min(samples) < 0.1 * ceiling  # full range
        means.append(statistics.fmean(samples))
    assert all(b > a * 1.5 for a, b in itertools.pairwise(means[:9]))  # doubling
    assert means[-1] == pytest.approx(300, rel=0.1)  # capped at 10 minutes
    assert backoff_s(10_000, rng=rng) <= 600.0
    assert backoff_s(3, base=1.0, cap=3.0, rng=rng) <= 3.0
    with pytest.raises(ValueError):
        backoff_s(0)


# --- secrets stay secret ------------------------------------------------------


async def test_secrets_never_leak(client: httpx.AsyncClient) -> None:
    token_url = f"http://user:{SECRET}@127.0.0.1:{closed_port()}/hook?token={SECRET}"
    ep = WebhookEndpoint(name="leaky", url=token_url, secret=SECRET, previous_secrets=("old-" + SECRET,), timeout_s=1.0)
    assert SECRET not in repr(ep) and SECRET not in str(ep)
    assert "127.0.0.1" in repr(ep) and "secret=set" in repr(ep)

    outcomes: list[AttemptOutcome] = [await attempt(client, ep, "incident.opened", opened_bytes(), TENANT)]
    with WebhookSink(secret=SECRET) as s:
        for scripted in (500, 410, 301):
            s.set_responses([scripted])
            outcomes.append(await attempt(client, endpoint_for(s), "incident.opened", opened_bytes(), None))
        s.set_delay(2.0)
        outcomes.append(await attempt(client, endpoint_for(s, timeout_s=0.2), "incident.opened", b"{}", None))
    assert all(o.error for o in outcomes)
    for o in outcomes:
        assert SECRET not in (o.error or "") and SECRET not in repr(o)


async def test_sink_records_error_answers_and_waits(sink: WebhookSink, client: httpx.AsyncClient) -> None:
    sink.set_responses([500, 500, 200])
    ep = endpoint_for(sink)
    statuses = [(await attempt(client, ep, "incident.closed", opened_bytes(), TENANT)).status for _ in range(4)]
    assert statuses == ["retry", "retry", "delivered", "delivered"]

    def four(received: list[ReceivedWebhook]) -> bool:
        return len(received) == 4

    assert sink.wait_for(four, timeout=1.0)
    assert [r.response_status for r in sink.received()] == [500, 500, 200, 200]
    assert not sink.wait_for(lambda r: len(r) > 4, timeout=0.1)
    r = httpx.get(sink.url)
    assert r.status_code == 405 and sink.received()[-1].method == "GET"

