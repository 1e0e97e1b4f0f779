"""Inbound alerts ([inbound]) into a real demo engine over real HTTP: Alertmanager, Zabbix and JSON bodies
signed as a sender would, joining the incident of the router they are about or opening their own, and every
refusal (bad key, bad signature, old timestamp, replay, oversize body, rate limit, malformed body) answered
with its status and storing nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from ispvm_tui.config import Config, Inbound, InboundSource
from ispvm_tui.engine.inbound_formats import device_for, read
from tests.waiting import wait_for

KEYS = {"inbound/prom-key": "prom-api-key-7c1f", "inbound/prom-hmac": "prom-hmac-key-99ab",
        "inbound/zbx-key": "zbx-api-key-0d2e", "inbound/zbx-hmac": "zbx-hmac-key-41c7",
        "inbound/json-key": "json-api-key-5a5a", "inbound/json-hmac": "json-hmac-key-e3e3"}


def _configure(config: Config) -> Config:
    sources = [InboundSource(name="prom", kind="alertmanager", api_key_secret="inbound/prom-key",
                             hmac_secret="inbound/prom-hmac", rate_per_s=0.2, burst=8),
               InboundSource(name="zbx", kind="zabbix", api_key_secret="inbound/zbx-key",
                             hmac_secret="inbound/zbx-hmac"),
               InboundSource(name="scripts", kind="json", api_key_secret="inbound/json-key",
                             hmac_secret="inbound/json-hmac", rate_per_s=0.001, burst=2)]
    return config.model_copy(update={"inbound": Inbound(enabled=True, port=0, max_body_bytes=4096,
                                                        sources=sources)})


class Sender:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(timeout=20)

    def post(self, source: str, body: Any, *, key: str | None = None, hmac_key: str | None = None,
             at: float | None = None, delivery: str | None = None, raw: bytes | None = None,
             signature: str | None = None) -> httpx.Response:
        short = {"prom": "prom", "zbx": "zbx", "scripts": "json"}[source]
        data = raw if raw is not None else json.dumps(body).encode()
        stamp = str(int(at if at is not None else time.time()))
        mac = hmac.new((hmac_key or KEYS[f"inbound/{short}-hmac"]).encode(), stamp.encode() + b"." + data,
                       hashlib.sha256).hexdigest()
        return self.client.post(f"{self.base}/inbound/{source}", content=data, headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {key or KEYS[f'inbound/{short}-key']}",
            "X-Ispvm-Timestamp": stamp, "X-Ispvm-Signature": signature or f"sha256={mac}",
            "X-Ispvm-Delivery": delivery or uuid.uuid4().hex})


def _am(status: str, instance: str, name: str = "NodeHighLoad", fingerprint: str = "f00d") -> dict[str, Any]:
    return {"version": "4", "status": status, "alerts": [{
        "status": status, "fingerprint": fingerprint,
        "labels": {"alertname": name, "instance": f"{instance}:9100", "severity": "critical"},
        "annotations": {"summary": f"load 40 on {instance}"}}]}


def _stored(run: Any) -> tuple[int, int]:
    return (run.store.query("SELECT count(*) FROM inbound_deliveries")[0][0],
            run.store.query("SELECT count(*) FROM alerts WHERE rule = 'inbound_alert'")[0][0])


def test_inbound_alerts_into_a_running_engine(tmp_path: Path, address_base: str) -> None:
    from ispvm_tui.demo import start_demo
    from tests.held_faults import held

    run = start_demo(held("core-link-cut"), speed=10.0, database=tmp_path / "ispvm.duckdb",
                     address_base=address_base, configure=_configure, secrets=KEYS)
    try:
        server = run.engine.inbound_server
        assert server is not None and server.address == "127.0.0.1"
        send = Sender(server.port)
        assert wait_for(lambda: run.engine.snapshot().incidents, 60), "the cut should open an incident"
        outage = run.engine.snapshot().incidents[0]
        agg = run.engine.config.device("POPA-AGG")

        # An Alertmanager alert about a router behind the cut (by its address, as node_exporter names it)
        # joins that outage's incident instead of paging on its own.
        got = send.post("prom", _am("firing", agg.address))
        assert got.status_code == 202, got.text
        assert got.json()["accepted"] == 1 and got.json()["devices"] == 1
        joined = lambda: next((a for a in run.engine.snapshot().incident(outage.id).alerts  # noqa: E731
                               if a.rule == "inbound_alert"), None)
        assert wait_for(joined, 60), [a.rule for a in run.engine.snapshot().incident(outage.id).alerts]
        alert = joined()
        assert alert.entity_id.startswith("POPA-AGG:prom/") and alert.suppressed and alert.severity == "critical"

        # One about a healthy router opens its own incident; resolved, it clears.
        core = run.engine.config.device("CORE1")
        assert send.post("prom", _am("firing", core.address, "BgpFlap", "beef")).status_code == 202
        own = lambda: next((i for i in run.engine.snapshot().incidents  # noqa: E731
                            if i.status != "closed" and "BgpFlap on CORE1" in i.title), None)
        assert wait_for(own, 60), [i.title for i in run.engine.snapshot().incidents]
        assert send.post("prom", _am("resolved", core.address, "BgpFlap", "beef")).status_code == 202
        assert wait_for(lambda: not any(a.rule == "inbound_alert" and a.entity_id.startswith("CORE1:")
                                        for a in run.engine.snapshot().alerts), 60)

        # Zabbix and plain JSON, about something the inventory does not know: their own incidents.
        zbx = {"event_id": "31337", "status": "PROBLEM", "host": "ups-dc1", "trigger": "UPS on battery",
               "severity": "High", "message": "UPS DC1 running on battery"}
        assert send.post("zbx", zbx).status_code == 202
        assert send.post("scripts", {"id": "job-7", "status": "firing", "name": "Backup failed",
                                     "severity": "warning", "summary": "nightly config backup failed"}
                         ).status_code == 202
        titles = lambda: {i.title for i in run.engine.snapshot().incidents if i.status != "closed"}  # noqa: E731
        assert wait_for(lambda: {"UPS on battery: UPS DC1 running on battery",
                                 "Backup failed: nightly config backup failed"} <= titles(), 60), titles()

        # Refusals: each its status, nothing stored.
        before = _stored(run)
        body = _am("firing", core.address, "Refused", "0bad")
        assert send.post("prom", body, key="wrong-key").status_code == 401
        assert send.post("prom", body, hmac_key="wrong-hmac").status_code == 401
        assert send.post("prom", body, signature="sha256=" + "0" * 64).status_code == 401
        assert send.post("prom", body, at=time.time() - 3600).status_code == 401
        assert send.post("prom", body, at=time.time() + 3600).status_code == 401
        assert send.post("zbx", body, key=KEYS["inbound/prom-key"],  # another source's keys are not these
                         hmac_key=KEYS["inbound/prom-hmac"]).status_code == 401
        big = send.post("prom", None, raw=b'{"alerts": [' + b" " * 5000 + b"]}")
        assert big.status_code == 413
        assert send.post("prom", None, raw=b"{not json").status_code == 400
        bad = send.post("zbx", {"event_id": "1", "status": "MAYBE", "trigger": "x"})
        assert bad.status_code == 400 and "status" in bad.json()["error"]
        assert send.client.get(f"{send.base}/inbound/prom").status_code == 405
        assert send.client.post(f"{send.base}/inbound/nobody", content=b"{}",
                                headers={"Content-Type": "application/json"}).status_code == 404
        assert send.client.post(f"{send.base}/inbound/prom", content=b"{}",
                                headers={"Content-Type": "text/plain"}).status_code == 415
        assert _stored(run) == before

        replay_id = uuid.uuid4().hex
        first = send.post("scripts", {"id": "job-8", "status": "resolved", "name": "Backup failed"},
                          delivery=replay_id)
        assert first.status_code == 202
        after_first = _stored(run)
        again = send.post("scripts", {"id": "job-8", "status": "resolved", "name": "Backup failed"},
                          delivery=replay_id)
        assert again.status_code in (409, 429)  # the replay, or its source's rate: either way not taken
        limited = send.post("scripts", {"id": "job-9", "status": "firing", "name": "x"})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert _stored(run) == after_first
    finally:
        run.stop()


def test_a_replay_is_refused_by_its_delivery_id(tmp_path: Path, address_base: str) -> None:
    from ispvm_tui.demo import start_demo
    from tests.held_faults import held

    run = start_demo(held("core-link-cut"), speed=10.0, database=tmp_path / "ispvm.duckdb",
                     address_base=address_base, configure=_configure, secrets=KEYS)
    try:
        send = Sender(run.engine.inbound_server.port)
        delivery = uuid.uuid4().hex
        assert send.post("prom", _am("firing", "nowhere", "Once", "0001"), delivery=delivery).status_code == 202
        before = _stored(run)
        replayed = send.post("prom", _am("firing", "nowhere", "Once", "0001"), delivery=delivery)
        assert replayed.status_code == 409 and delivery in replayed.json()["error"]
        assert _stored(run) == before
    finally:
        run.stop()


def test_bodies_are_read_and_devices_found() -> None:
    inventory = [("CORE1", "10.0.0.1"), ("EDGE1", "2001:db8::1")]
    assert device_for("10.0.0.1:9100", inventory) == "CORE1"
    assert device_for("[2001:db8::1]:9100", inventory) == "EDGE1"
    assert device_for("core1", inventory) == "CORE1" and device_for("ups", inventory) is None
    am = read("alertmanager", json.dumps(_am("resolved", "10.0.0.1")).encode(), 10)
    assert (am[0].firing, am[0].key, am[0].severity, am[0].device_hint) == (False, "f00d", "critical",
                                                                             "10.0.0.1:9100")
    zbx = read("zabbix", json.dumps({"event_id": 5, "status": "0", "host": "CORE1", "trigger": "t",
                                     "severity": "Disaster"}).encode(), 10)
    assert (zbx[0].firing, zbx[0].key, zbx[0].severity) == (False, "5", "critical")
    with pytest.raises(ValueError, match="at most 1"):
        read("json", json.dumps({"alerts": [{"id": "a", "status": "firing", "name": "n"}] * 2}).encode(), 1)
    with pytest.raises(ValueError, match=r"alerts\[0\].status"):
        read("alertmanager", b'{"alerts": [{"labels": {}}]}', 10)
