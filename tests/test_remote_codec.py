"""The poll message: real lab polls survive the trip; hostile bytes only ever raise CodecError."""

from __future__ import annotations

import asyncio
import json
import math
import zlib
from collections.abc import Iterator

import pytest

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.clock import ScaledClock
from ispvm_tui.collectors.results import InterfaceStat, PollResult
from ispvm_tui.config import load_config
from ispvm_tui.engine.polling import build_collectors
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import load_scenario
from ispvm_tui.remote.codec import MAX_MESSAGE_BYTES, CodecError, decode, encode
from ispvm_tui.secrets import StaticSecrets
from tests.labconfig import write_lab_config


@pytest.fixture
def lab(address_base: str) -> Iterator[tuple[Lab, BackgroundLoop]]:
    loop = BackgroundLoop("test-lab")
    lab = Lab(load_scenario("core-link-cut"), ScaledClock(1.0), address_base=address_base)
    loop.run(lab.start(play=False))
    yield lab, loop
    loop.run(lab.stop())
    loop.stop()


def test_real_lab_polls_round_trip(lab, tmp_path) -> None:
    lab_, _loop = lab
    cfg = load_config(write_lab_config(lab_, tmp_path / "lab.toml"))
    secrets = StaticSecrets({"lab/password": lab_.scenario.lab.password, "lab/community": lab_.scenario.lab.community})

    async def poll_all() -> list[list[PollResult]]:
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

        engine = SnmpEngine()
        out = []
        for dev in cfg.devices:
            collectors = build_collectors(cfg, dev, secrets, ScaledClock(1.0), engine)
            out.append([await c.poll() for c in collectors])
            for c in collectors:
                await c.close()
        engine.close_dispatcher()
        return out

    polls = asyncio.run(poll_all())
    assert all(r.ok for results in polls for r in results), [r.error for p in polls for r in p if not r.ok]
    for results in polls:
        data = encode("pop-a", results[0].device, results)
        text = data if data[:1] == b"{" else zlib.decompress(data[1:])
        assert json.loads(text)["v"] == 1
        collector, device, started_at, back = decode(data)
        assert (collector, device) == ("pop-a", results[0].device)
        assert started_at == min(r.started_at for r in results)
        assert back == results  # every nested dataclass, tuple and dict comes back equal
    assert any(r.interfaces and r.system for p in polls for r in p)


def _message(**changes) -> dict:
    r = PollResult(device="R1", collector="api", started_at=10.0, duration_s=0.1, ok=True,
                   interfaces=(InterfaceStat(name="ether1", rx_bytes=2**64 - 1),))
    msg = json.loads(encode("pop-a", "R1", [r]))
    msg.update(changes)
    return msg


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"\x00\xff garbage", "not a JSON object"),
    (b"[1, 2]", "not a JSON object"),
    (b"{" * 100_000, "Invalid JSON"),
    (b"{\"v\": 1", "Invalid JSON"),
    (json.dumps(_message(v=2)).encode(), "unsupported message version"),
    (json.dumps(_message(results=[])).encode(), "results"),
    (json.dumps(_message(device="R 1")).encode(), "device"),
    (json.dumps(_message(collector="a.b")).encode(), "collector"),
    (json.dumps(_message(started_at="10")).encode(), "started_at"),
    (json.dumps(_message(extra=1)).encode(), "extra"),
    (json.dumps(_message(results=[{**_message()["results"][0], "device": "R2"}])).encode(), "another device"),
    (json.dumps(_message(results=[{**_message()["results"][0], "interfaces": [{"name": 5}]}])).encode(),
     "interfaces.0.name"),
    (json.dumps(_message(results=[{**_message()["results"][0], "ok": "yes"}])).encode(), "ok"),
    (b"Z" + zlib.compress(b"{" + b" " * (40 * 2**20) + b"}"), "inflates past"),
    (b"Z" + zlib.compress(json.dumps(_message()).encode())[:-8], "truncated"),
    (b"Z not zlib", "compressed"),
    (b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "limit"),
])
def test_hostile_messages_raise_codec_error_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(CodecError, match=reason):
        decode(data)


def test_non_finite_readings_survive_and_non_bytes_are_refused() -> None:
    r = PollResult(device="R1", collector="snmp", started_at=1.0, duration_s=math.inf, ok=False, error="x",
                   error_kind="timeout")
    assert math.isinf(decode(encode("c", "R1", [r]))[3][0].duration_s)
    with pytest.raises(CodecError):
        decode("a str")  # type: ignore[arg-type]


def test_a_poll_larger_than_any_centre_takes_is_refused_where_it_is_made() -> None:
    import os

    from ispvm_tui.remote.codec import MAX_JSON_BYTES

    noise = os.urandom(MAX_JSON_BYTES // 2).hex()  # incompressible, and over the limit as JSON
    huge = PollResult(device="A1", collector="api", started_at=1.0, duration_s=0.1, ok=False, error=noise,
                      error_kind="internal")
    with pytest.raises(CodecError, match="over the"):
        encode("pop-a", "A1", [huge])


def test_a_poll_from_far_in_the_future_is_refused() -> None:
    from ispvm_tui.remote.codec import MAX_FUTURE_S

    now = 1_800_000_000.0
    soon = encode("pop-a", "A1", [PollResult(device="A1", collector="api", started_at=now + 30, duration_s=0.1,
                                             ok=True)])
    assert decode(soon, now)[2] == now + 30  # a clock a little ahead: accepted (and warned about by heartbeat)
    later = encode("pop-a", "A1", [PollResult(device="A1", collector="api", started_at=now + MAX_FUTURE_S + 60,
                                              duration_s=0.1, ok=True)])
    with pytest.raises(CodecError, match="in the future"):
        decode(later, now)
    assert decode(later)[2] > now  # without a clock to compare with, the codec does not judge
