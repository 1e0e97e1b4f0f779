"""The config read message: real lab reads, normalised as a collector does, survive the trip as canonical texts
only; hostile bytes only ever raise CodecError."""

from __future__ import annotations

import asyncio
import json
import os
import zlib
from collections.abc import Iterator

import pytest

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.clock import ScaledClock
from ispvm_tui.collectors.results import ConfigRead
from ispvm_tui.config import ConfigWatch, load_config
from ispvm_tui.engine.config_normalise import fingerprint
from ispvm_tui.engine.config_watch import ConfigWatcher
from ispvm_tui.engine.polling import build_collectors
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import load_scenario
from ispvm_tui.remote.codec import (
    MAX_FUTURE_S,
    MAX_JSON_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_REQUEST_BYTES,
    CodecError,
    decode,
    decode_config,
    decode_request,
    encode_config,
    encode_request,
)
from ispvm_tui.secrets import StaticSecrets
from tests.labconfig import write_lab_config


@pytest.fixture
def lab(address_base: str) -> Iterator[Lab]:
    loop = BackgroundLoop("test-lab")
    lab = Lab(load_scenario("core-link-cut"), ScaledClock(1.0), address_base=address_base)
    loop.run(lab.start(play=False))
    yield lab
    loop.run(lab.stop())
    loop.stop()


def _secrets_of(lab: Lab, name: str) -> set[str]:
    dev = lab.model.devices[name]
    found = {p.tcp_md5_key for p in dev.bgp_peers if p.tcp_md5_key}
    found |= {t.auth_key for t in dev.config.ospf_templates if getattr(t, "auth_key", "")}
    found |= {c.name for c in dev.config.communities[1:]}
    return found | {u.password for u in dev.config.users if u.password}


def test_real_lab_reads_travel_as_canonical_texts_only(lab: Lab, tmp_path) -> None:
    cfg = load_config(write_lab_config(lab, tmp_path / "lab.toml"))
    secrets = StaticSecrets({"lab/password": lab.scenario.lab.password, "lab/community": lab.scenario.lab.community})
    names = ["POPA-AGG", "EDGE1", "CORE1"]  # a PoP router, and the routers with BGP and OSPF secrets

    async def read_all() -> dict[str, list[ConfigRead]]:
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

        engine = SnmpEngine()
        out = {}
        for dev in (cfg.device(n) for n in names):
            collectors = build_collectors(cfg, dev, secrets, ScaledClock(1.0), engine)
            out[dev.name] = [await c.read_config() for c in collectors]
            for c in collectors:
                await c.close()
        engine.close_dispatcher()
        return out

    watcher = ConfigWatcher(ConfigWatch(), names)
    for name, reads in asyncio.run(read_all()).items():
        assert all(r.ok for r in reads), [r.error for r in reads]
        categories = watcher.categories(reads)
        data = encode_config("pop-a", name, 1_800_000_000.5, categories)
        back = decode_config(data, now=1_800_000_000.0)
        assert (back.collector, back.device, back.read_at) == ("pop-a", name, 1_800_000_000.5)
        assert dict(back.categories) == categories  # the very texts the centre hashes
        assert {c: fingerprint(t) for c, (t, _) in back.categories.items()} == \
               {c: fingerprint(t) for c, (t, _) in categories.items()}
        # What crosses the wire is the canonical texts and nothing else: no router row (.id, counters), no secret.
        text = data if data[:1] == b"{" else zlib.decompress(data[1:])
        body = json.loads(text)
        assert set(body) == {"v", "kind", "collector", "device", "read_at", "categories"}
        assert b'.id' not in text and b"running" not in text
        for secret in _secrets_of(lab, name) | {lab.scenario.lab.password, lab.scenario.lab.community}:
            assert secret.encode() not in text, name
        if name == "POPA-AGG":
            assert {s for _, s in back.categories.values()} == {"api"}  # the API's view wins over SNMP's


def _message(**changes) -> dict:
    msg = json.loads(encode_config("pop-a", "R1", 10.0, {"system": ('{"/system/identity":[{"name":"R1"}]}', "api")}))
    msg.update(changes)
    return msg


def _cat(text: str, source: str = "api", category: str = "system") -> bytes:
    return json.dumps(_message(categories={category: [text, source]})).encode()


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"\x00\xff garbage", "not a JSON object"),
    (b"{" * 100_000, "Invalid JSON"),
    (json.dumps(_message(v=2)).encode(), "unsupported message version"),
    (json.dumps(_message(kind="poll")).encode(), "kind"),
    (json.dumps({k: v for k, v in _message().items() if k != "kind"}).encode(), "kind"),
    (json.dumps(_message(extra=1)).encode(), "extra"),
    (json.dumps(_message(device="R 1")).encode(), "device"),
    (json.dumps(_message(collector="a.b")).encode(), "collector"),
    (json.dumps(_message(read_at="10")).encode(), "read_at"),
    (json.dumps(_message(categories={})).encode(), "categories"),
    (_cat("{}", category="routing"), "unknown category"),
    (_cat("{}", source="ssh"), "'api' or 'snmp'"),
    (_cat('{"b":1,"a":2}'), "not canonical"),  # another spelling of the same JSON: would hash as a change
    (_cat('{"a": 1}'), "not canonical"),
    (_cat("[1,2]"), "not canonical"),  # JSON, but not a category's object
    (_cat("{not json"), "not canonical"),
    (_cat("[" * 100_000), "not canonical"),
    (_cat('{"a":"\\ud800"}'), "not canonical"),  # a lone surrogate: it could not even be hashed
    (json.dumps(_message(categories={"system": ["{}", "api", "extra"]})).encode(), "categories"),
    (json.dumps(_message(categories={"system": "{}"})).encode(), "categories"),
    (b'{"v":1,"kind":"config","collector":"p","device":"D","read_at":1.0,"categories":{"system":["{\\"a\\":'
     b'\\"\\ud800\\"}","api"]}}', "Invalid JSON"),  # in the envelope too
    (b"Z" + zlib.compress(b"{" + b" " * (40 * 2**20) + b"}"), "inflates past"),
    (b"Z" + zlib.compress(json.dumps(_message()).encode())[:-8], "truncated"),
    (b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "limit"),
    (b'{"v":1,"collector":"pop-a","device":"R1","started_at":1.0,"results":[]}', "kind"),  # a poll, misrouted
])
def test_hostile_config_messages_raise_codec_error_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(CodecError, match=reason):
        decode_config(data)


def test_a_config_message_is_no_poll_and_non_bytes_are_refused() -> None:
    with pytest.raises(CodecError, match=r"Extra inputs|Field required"):
        decode(encode_config("pop-a", "R1", 1.0, {"system": ("{}", "api")}))
    with pytest.raises(CodecError):
        decode_config("a str")  # type: ignore[arg-type]


def test_large_reads_are_compressed_and_too_large_ones_refused_where_they_are_made() -> None:
    rows = [{"chain": "input", "comment": f"rule {i}", "src-address": f"10.{i // 256 % 256}.{i % 256}.0/24"}
            for i in range(5000)]
    big = json.dumps({"/ip/firewall/filter": rows}, sort_keys=True, separators=(",", ":"))
    data = encode_config("pop-a", "R1", 1.0, {"firewall": (big, "api")})
    assert data[:1] == b"Z" and len(data) < len(big) // 4
    assert decode_config(data).categories["firewall"][0] == big
    noise = json.dumps({"/system/note": [{"note": os.urandom(MAX_JSON_BYTES // 2).hex()}]}, separators=(",", ":"))
    with pytest.raises(CodecError, match="over the"):
        encode_config("pop-a", "R1", 1.0, {"system": (noise, "api")})
    with pytest.raises(CodecError, match="not canonical"):
        encode_config("pop-a", "R1", 1.0, {"system": ('{"a": 1}', "api")})


def test_a_read_from_far_in_the_future_is_refused() -> None:
    now = 1_800_000_000.0
    assert decode_config(encode_config("pop-a", "R1", now + 30, {"system": ("{}", "api")}), now).read_at == now + 30
    later = encode_config("pop-a", "R1", now + MAX_FUTURE_S + 60, {"system": ("{}", "api")})
    with pytest.raises(CodecError, match="in the future"):
        decode_config(later, now)
    with pytest.raises(CodecError, match="finite"):
        decode_config(b'{"v":1,"kind":"config","collector":"p","device":"D","read_at":Infinity,'
                      b'"categories":{"system":["{}","api"]}}')


def test_read_requests_round_trip_and_hostile_ones_raise_codec_error() -> None:
    assert decode_request(encode_request(["POPA-AGG", "POPA-ACC1"])) == ["POPA-AGG", "POPA-ACC1"]
    for data, reason in [(b"", "Invalid JSON"), (b'{"v":1,"devices":[]}', "devices"),
                         (b'{"v":1,"devices":["A B"]}', "device name"), (b'{"v":1,"devices":[1]}', "devices"),
                         (b'{"v":1,"devices":["A"],"x":1}', "Extra inputs"), (b'{"v":2,"devices":["A"]}', "version"),
                         (b'{"v":1,"devices":"A"}', "devices"), (b" " * (MAX_REQUEST_BYTES + 1), "limit"),
                         (b"\xff\xfe", "Invalid JSON")]:
        with pytest.raises(CodecError, match=reason):
            decode_request(data)
    with pytest.raises(CodecError):
        decode_request(None)  # type: ignore[arg-type]
