"""The lab RouterOS API server against an unmodified librouteros client, over real TCP."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import librouteros
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from librouteros.connections import AsyncSocketTransport
from librouteros.exceptions import ConnectionClosed, FatalError, ProtocolError, TrapError
from librouteros.login import token
from librouteros.protocol import AsyncApiProtocol
from librouteros.query import Key, Or

from ispvm_tui.lab.routeros_api_server import Misbehaviour, RouterOSApiServer
from ispvm_tui.lab.routeros_menus import count_menu, render_menu
from ispvm_tui.lab.sim import (
    LabModelLike,
    RouterHandle,
    SimAddress,
    SimBgpPeer,
    SimDevice,
    SimInterface,
    SimNeighbor,
    SimOspfNeighbor,
    SimSensor,
)

USER, PASSWORD = "noc", "s3cret-Pa55"
HOST = "127.0.0.1"


# ---- a small lab: one device, counters at a fixed rate ------------------------------


# Targets the lab router reaches, with a base RTT; anything else is lost.
PING_RTT_MS = {"10.0.12.2": 0.8, "198.51.100.1": 9.4}
# Added to the base RTT echo after echo, so jitter has a known value (mean step 0.3 ms).
PING_WOBBLE_MS = (0.0, 0.3, 0.0, 0.3, 0.0, 0.3)


class FixedRateModel(LabModelLike):
    """Advances every running interface by ``rate_bps`` each way; answering is a switch.

    ``ping`` answers the targets in ``rtt_ms`` with their RTT plus a fixed wobble, and
    loses everything else (and everything while the router is not answering).
    """

    def __init__(self, device: SimDevice, rate_bps: int = 800_000_000) -> None:
        self.device = device
        self.rate_bps = rate_bps
        self.up = True
        self.rtt_ms = dict(PING_RTT_MS)
        self.echoes = 0
        self._last = time.time()

    def ping(self, device: str, target: str) -> float | None:
        base = self.rtt_ms.get(target)
        if not self.up or base is None:
            return None
        wobble = PING_WOBBLE_MS[self.echoes % len(PING_WOBBLE_MS)]
        self.echoes += 1
        return round(base + wobble, 3)

    def now(self) -> float:
        return time.time()

    def answering(self, device: str) -> bool:
        return self.up

    def advance(self, min_step: float = 0.0) -> None:
        now = time.time()
        dt, self._last = now - self._last, now
        nbytes = int(self.rate_bps / 8 * dt)
        for itf in self.device.interfaces.values():
            if itf.running and not itf.disabled:
                itf.rx_bytes += nbytes
                itf.tx_bytes += nbytes // 2
                itf.rx_packets += nbytes // 900
                itf.tx_packets += nbytes // 1800


def make_device(ros_major: int, *, bgp: bool = True, extra_ports: bool = False) -> SimDevice:
    now = time.time()
    version = "7.16.2" if ros_major >= 7 else "6.49.10"
    dev = SimDevice(
        name="EDGE1", address=HOST, ros_major=ros_major, version=version,
        board="CCR2004-16G-2S+" if ros_major >= 7 else "CCR1036-12G-4S",
        architecture="arm64" if ros_major >= 7 else "tile",
        serial="HEX1234ABCD", boot_time=now - 90_061, router_id="10.255.0.1",
        cpu_load=7, temperature_c=41.0, voltage_v=24.1,
    )
    dev.interfaces = {
        "ether1": SimInterface("ether1", 1, "48:A9:8A:00:00:01", comment="UPSTREAM1 transit",
                               rx_bytes=10_000, tx_bytes=5_000, link_downs=2, last_change=now - 3600),
        "ether2": SimInterface("ether2", 2, "48:A9:8A:00:00:02", comment="to CORE1"),
        "ether3": SimInterface("ether3", 3, "48:A9:8A:00:00:03", running=False, last_change=now - 60),
        "ether4": SimInterface("ether4", 4, "48:A9:8A:00:00:04", disabled=True, running=False),
    }
    if extra_ports:
        dev.interfaces.update({
            "sfp-sfpplus1": SimInterface("sfp-sfpplus1", 5, "48:A9:8A:00:00:05", speed_bps=10_000_000_000),
            "ether5": SimInterface("ether5", 6, "48:A9:8A:00:00:06", speed_bps=100_000_000),
            "vlan100": SimInterface("vlan100", 7, "48:A9:8A:00:00:01", type="vlan"),
        })
    dev.addresses = [
        SimAddress("198.51.100.2/30", "198.51.100.0", "ether1"),
        SimAddress("10.0.12.1/30", "10.0.12.0", "ether2"),
    ]
    if bgp:
        dev.bgp_peers = [
            SimBgpPeer("UPSTREAM1", "198.51.100.1", 64500, 65010, provider="Transit A",
                       established_since=now - 7200, prefix_count=1200),
            SimBgpPeer("UPSTREAM2", "203.0.113.1", 64501, 65010, state="active"),
            SimBgpPeer("IX1", "192.0.2.9", 64502, 65010, state="idle"),
        ]
    dev.ospf_neighbors = [
        SimOspfNeighbor("10.255.0.2", "10.0.12.2", "ether2", state_changes=5, adjacency_since=now - 600),
    ]
    dev.neighbors = [
        SimNeighbor("ether2", "CORE1", "10.0.12.2", "48:A9:8A:00:01:01", version="7.16.2 (stable)",
                    board="CCR2116-12G-4S+", interface_name="ether1"),
    ]
    dev.route_count = 40
    return dev


class Lab:
    def __init__(self, device: SimDevice, **server_kwargs: object) -> None:
        self.device = device
        self.model = FixedRateModel(device)
        self.router = RouterHandle(device, USER, PASSWORD, self.model)
        self.server = RouterOSApiServer(self.router, HOST, 0, **server_kwargs)  # type: ignore[arg-type]

    @property
    def port(self) -> int:
        return self.server.port


async def start_lab(device: SimDevice, **server_kwargs: object) -> Lab:
    lab = Lab(device, **server_kwargs)
    await lab.server.start()
    return lab


def make_tls(tmp: Path) -> tuple[ssl.SSLContext, Path]:
    """A self-signed certificate for 127.0.0.1: server context and the CA file a client trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab-router")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "lab.crt", tmp / "lab.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx, cert_file


# ---- fixtures ---------------------------------------------------------------------


@pytest.fixture
async def lab7() -> AsyncIterator[Lab]:
    lab = await start_lab(make_device(7))
    yield lab
    await lab.server.stop()


@pytest.fixture
async def lab6() -> AsyncIterator[Lab]:
    lab = await start_lab(make_device(6))
    yield lab
    await lab.server.stop()


async def aconnect(lab: Lab, password: str = PASSWORD, timeout: float = 2.0) -> librouteros.api.AsyncApi:
    return await librouteros.async_connect(HOST, USER, password, port=lab.port, timeout=timeout)


def sync_connect(lab: Lab, password: str = PASSWORD, **kw: object) -> librouteros.api.Api:
    return librouteros.connect(HOST, USER, password, port=lab.port, timeout=2, **kw)  # type: ignore[arg-type]


async def close_quietly(api: librouteros.api.AsyncApi) -> None:
    with contextlib.suppress(Exception):
        await api.close()


async def rows(api: librouteros.api.AsyncApi, *path: str) -> list[dict]:
    return [r async for r in api.path(*path)]


class RawClient:
    """librouteros's own wire codec without its reply handling, to see every sentence."""

    def __init__(self, protocol: AsyncApiProtocol) -> None:
        self.protocol = protocol

    @classmethod
    async def open(cls, lab: Lab) -> RawClient:
        reader, writer = await asyncio.open_connection(HOST, lab.port)
        return cls(AsyncApiProtocol(AsyncSocketTransport(reader, writer), "utf-8", timeout=2))

    async def talk(self, *words: str) -> list[tuple[str, ...]]:
        await self.protocol.writeSentence(*words)
        out: list[tuple[str, ...]] = []
        while True:
            reply, attrs = await self.protocol.readSentence()
            out.append((reply, *attrs))
            if reply == "!done":
                return out

    async def login(self) -> None:
        assert (await self.talk("/login", f"=name={USER}", f"=password={PASSWORD}")) == [("!done",)]

    async def close(self) -> None:
        await self.protocol.close()


# ---- login ---------------------------------------------------------------------------


async def test_async_login_and_identity(lab7: Lab) -> None:
    api = await aconnect(lab7)
    assert await rows(api, "system", "identity") == [{"name": "EDGE1"}]
    await api.close()


async def test_sync_client_in_thread(lab6: Lab) -> None:
    def work() -> tuple[list[dict], list[dict]]:
        api = sync_connect(lab6)
        try:
            return list(api.path("system", "identity")), list(api.path("system", "resource"))
        finally:
            api.close()

    identity, resource = await asyncio.to_thread(work)
    assert identity == [{"name": "EDGE1"}]
    res = resource[0]
    assert res["version"] == "6.49.10 (stable)"
    assert res["platform"] == "MikroTik"
    assert res["board-name"] == "CCR1036-12G-4S"
    assert res["uptime"] == "1d1h1m1s" or res["uptime"].startswith("1d1h1m")
    assert isinstance(res["total-memory"], int) and isinstance(res["cpu-load"], int)


async def test_wrong_password_is_a_trap(lab7: Lab) -> None:
    with pytest.raises(TrapError) as err:
        await aconnect(lab7, password="wrong")
    assert err.value.message == "invalid user name or password (6)"

    def sync_wrong() -> None:
        sync_connect(lab7, password="nope")

    with pytest.raises(TrapError):
        await asyncio.to_thread(sync_wrong)


async def test_pre_643_challenge_login(lab6: Lab) -> None:
    def work() -> list[dict]:
        api = sync_connect(lab6, login_method=token)
        try:
            return list(api.path("system", "identity"))
        finally:
            api.close()

    assert await asyncio.to_thread(work) == [{"name": "EDGE1"}]

    def wrong() -> None:
        librouteros.connect(HOST, USER, "bad", port=lab6.port, timeout=2, login_method=token)

    with pytest.raises(TrapError):
        await asyncio.to_thread(wrong)


async def test_commands_before_login_trap(lab7: Lab) -> None:
    raw = await RawClient.open(lab7)
    reply = await raw.talk("/system/identity/print")
    assert reply == [("!trap", "=message=not logged in"), ("!done",)]
    await raw.login()
    assert await raw.talk("/system/identity/print") == [("!re", "=name=EDGE1"), ("!done",)]
    await raw.close()


# ---- menus ---------------------------------------------------------------------------


async def test_interface_counters_increase(lab7: Lab) -> None:
    api = await aconnect(lab7)
    first = {r["name"]: r for r in await rows(api, "interface")}
    await asyncio.sleep(0.05)
    second = {r["name"]: r for r in await rows(api, "interface")}
    assert second["ether1"]["rx-byte"] > first["ether1"]["rx-byte"]
    assert second["ether1"]["tx-packet"] > first["ether1"]["tx-packet"]
    assert second["ether3"]["rx-byte"] == first["ether3"]["rx-byte"]  # link down: no traffic
    e1 = second["ether1"]
    assert e1[".id"] == "*1" and e1["default-name"] == "ether1" and e1["type"] == "ether"
    assert e1["running"] is True and e1["disabled"] is False and e1["comment"] == "UPSTREAM1 transit"
    assert e1["mtu"] == 1500 and e1["link-downs"] == 2 and e1["mac-address"] == "48:A9:8A:00:00:01"
    assert "last-link-up-time" in e1
    assert second["ether4"]["disabled"] is True and second["ether4"]["running"] is False
    await api.close()


@pytest.mark.parametrize("major", [6, 7])
async def test_bgp_menus_follow_the_major_version(major: int) -> None:
    lab = await start_lab(make_device(major))
    try:
        api = await aconnect(lab)
        present, missing = (("peer", "instance"), ("session", "connection")) if major == 6 else (
            ("connection", "session"), ("peer", "instance"))
        for menu in present:
            assert await rows(api, "routing", "bgp", menu)
        for menu in missing:
            with pytest.raises(TrapError) as err:
                await rows(api, "routing", "bgp", menu)
            assert err.value.message == "no such command prefix"
        await api.close()
    finally:
        await lab.server.stop()


async def test_v6_bgp_peer_rows(lab6: Lab) -> None:
    api = await aconnect(lab6)
    peers = {p["name"]: p for p in await rows(api, "routing", "bgp", "peer")}
    up = peers["UPSTREAM1"]
    assert up["state"] == "established" and up["established"] is True
    assert up["remote-as"] == 64500 and up["prefix-count"] == 1200 and up["uptime"].startswith("2h")
    assert up["local-address"] == "198.51.100.2"
    assert peers["UPSTREAM2"]["state"] == "active" and peers["UPSTREAM2"]["established"] is False
    assert "uptime" not in peers["UPSTREAM2"]
    (instance,) = await rows(api, "routing", "bgp", "instance")
    assert instance["as"] == 65010 and instance["router-id"] == "10.255.0.1"
    await api.close()


async def test_v7_sessions_exist_only_while_not_idle(lab7: Lab) -> None:
    api = await aconnect(lab7)
    connections = {c["name"]: c for c in await rows(api, "routing", "bgp", "connection")}
    assert set(connections) == {"UPSTREAM1", "UPSTREAM2", "IX1"}
    assert connections["UPSTREAM1"]["remote.as"] == 64500
    assert connections["UPSTREAM1"]["local.role"] == "ebgp"
    sessions = {s["name"]: s for s in await rows(api, "routing", "bgp", "session")}
    assert set(sessions) == {"UPSTREAM1-1", "UPSTREAM2-1"}
    assert sessions["UPSTREAM1-1"]["established"] is True
    assert sessions["UPSTREAM1-1"]["prefix-count"] == 1200
    assert sessions["UPSTREAM2-1"]["established"] is False
    await api.close()


async def test_ospf_neighbor_shapes_differ(lab6: Lab, lab7: Lab) -> None:
    api6, api7 = await aconnect(lab6), await aconnect(lab7)
    (v6,) = await rows(api6, "routing", "ospf", "neighbor")
    (v7,) = await rows(api7, "routing", "ospf", "neighbor")
    assert v6["interface"] == "ether2" and v6["state"] == "Full" and "dr-address" in v6
    assert "interface" not in v7 and v7["area"] == "backbone" and v7["state"] == "Full"
    for row in (v6, v7):
        assert row["router-id"] == "10.255.0.2" and row["state-changes"] == 5
        assert row["adjacency"].startswith("10m")
    await api6.close()
    await api7.close()


async def test_health_shapes_differ(lab6: Lab, lab7: Lab) -> None:
    for lab in (lab6, lab7):
        lab.device.sensors[4] = SimSensor("psu2-state", state="fail")
    api6, api7 = await aconnect(lab6), await aconnect(lab7)
    # v6: one row, a property per sensor, fan settings among the readings
    assert await rows(api6, "system", "health") == [{
        "voltage": "24.1", "temperature": 41, "fan-mode": "auto", "use-fan": "main", "active-fan": "main",
        "cpu-temperature": 52, "fan1-speed": 5880, "fan2-speed": 5940, "psu1-state": "ok", "psu2-state": "fail",
    }]
    # v7: a row per sensor, shaped like the CCR2004 fixture (states have an empty type)
    v7 = {r["name"]: r for r in await rows(api7, "system", "health")}
    assert list(v7) == ["voltage", "temperature", "cpu-temperature", "fan1-speed", "fan2-speed",
                        "psu1-state", "psu2-state"]
    assert v7["temperature"]["value"] == 41 and v7["temperature"]["type"] == "C"
    assert v7["voltage"]["type"] == "V" and v7["fan1-speed"] == {".id": "*1B5A", "name": "fan1-speed",
                                                                 "value": 5880, "type": "RPM"}
    assert v7["psu2-state"]["value"] == "fail" and v7["psu2-state"]["type"] == ""
    await api6.close()
    await api7.close()


@pytest.mark.parametrize("major", [6, 7])
async def test_chr_health_is_empty(major: int) -> None:
    device = make_device(major)
    device.board, device.architecture = "CHR", "x86_64"
    lab = await start_lab(device)
    try:
        raw = await RawClient.open(lab)
        await raw.login()
        expected = [("!empty",), ("!done",)] if major >= 7 else [("!done",)]
        assert await raw.talk("/system/health/print") == expected
        await raw.close()
    finally:
        await lab.server.stop()


async def test_empty_v7_print_sends_empty_before_done() -> None:
    lab7 = await start_lab(make_device(7, bgp=False))
    lab6 = await start_lab(make_device(6, bgp=False))
    try:
        api = await aconnect(lab7)
        assert await rows(api, "routing", "bgp", "session") == []
        assert await rows(api, "system", "identity") == [{"name": "EDGE1"}]  # still in step
        await api.close()
        for lab, expected in ((lab7, [("!empty",), ("!done",)]), (lab6, [("!done",)])):
            raw = await RawClient.open(lab)
            await raw.login()
            menu = "/routing/bgp/session/print" if lab is lab7 else "/routing/bgp/peer/print"
            assert await raw.talk(menu) == expected
            await raw.close()
    finally:
        await lab7.server.stop()
        await lab6.server.stop()


async def test_proplist_and_queries(lab7: Lab) -> None:
    api = await aconnect(lab7)
    name, running = Key("name"), Key("running")
    only = [r async for r in api.path("interface").select(name, running).where(name == "ether2")]
    assert only == [{"name": "ether2", "running": True}]
    either = [r async for r in api.path("interface").select(name).where(Or(name == "ether1", name == "ether3"))]
    assert either == [{"name": "ether1"}, {"name": "ether3"}]
    negated = [r async for r in api.path("interface").select(name).where(running != True)]  # noqa: E712
    assert negated == [{"name": "ether3"}, {"name": "ether4"}]
    plain = [r async for r in api.rawCmd("/interface/print", "=.proplist=name,comment", "?name=ether1")]
    assert plain == [{"name": "ether1", "comment": "UPSTREAM1 transit"}]
    with_comment = [r async for r in api.rawCmd("/interface/print", "=.proplist=name", "?comment")]
    assert with_comment == [{"name": "ether1"}, {"name": "ether2"}]
    without = [r async for r in api.rawCmd("/interface/print", "=.proplist=.id", "?-comment")]
    assert without == [{".id": "*3"}, {".id": "*4"}]
    bigger = [r async for r in api.rawCmd("/ip/route/print", "=.proplist=dst-address", "?>distance=100")]
    assert len(bigger) == lab7.device.route_count - 3  # all but two connected and the default route
    await api.close()


async def test_count_only(lab7: Lab) -> None:
    api = await aconnect(lab7)
    assert [r async for r in api.rawCmd("/ip/route/print", "=count-only=")] == [{"ret": 40}]
    counted = [r async for r in api.rawCmd("/interface/print", "=count-only=", "?running=true")]
    assert counted == [{"ret": 2}]
    assert len(render_menu(lab7.device, "/ip/route", time.time()) or []) == 40
    assert count_menu(lab7.device, "/routing/bgp/peer", time.time()) is None
    await api.close()


async def test_tag_is_echoed_on_every_sentence(lab7: Lab) -> None:
    raw = await RawClient.open(lab7)
    await raw.login()
    reply = await raw.talk("/interface/print", ".tag=7", "=.proplist=name")
    assert len(reply) == 5 and all(".tag=7" in sentence for sentence in reply)
    trap = await raw.talk("/nowhere/print", ".tag=8")
    assert trap[0][0] == "!trap" and all(".tag=8" in s for s in trap)
    assert "=message=no such command prefix" in trap[0]
    assert await raw.talk("/cancel", ".tag=9") == [("!done", ".tag=9")]
    await raw.close()


async def test_quit_is_fatal(lab7: Lab) -> None:
    api = await aconnect(lab7)
    with pytest.raises(FatalError):
        [r async for r in api("/quit")]
    await close_quietly(api)


async def test_write_commands_are_refused(lab7: Lab) -> None:
    api = await aconnect(lab7)
    with pytest.raises(TrapError) as err:
        [r async for r in api("/system/identity/set", name="x")]
    assert "not enough permissions" in err.value.message
    assert await rows(api, "system", "identity") == [{"name": "EDGE1"}]
    await api.close()


# ---- faults --------------------------------------------------------------------------


async def test_black_hole_times_out_then_recovers(lab7: Lab) -> None:
    lab7.model.up = False
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await aconnect(lab7, timeout=0.3)
    assert time.monotonic() - t0 < 1.0
    lab7.model.up = True
    api = await aconnect(lab7)
    assert await rows(api, "system", "identity") == [{"name": "EDGE1"}]
    await api.close()


async def test_black_hole_mid_session(lab7: Lab) -> None:
    api = await librouteros.async_connect(HOST, USER, PASSWORD, port=lab7.port, timeout=0.3)
    lab7.model.up = False
    with pytest.raises(TimeoutError):
        await rows(api, "interface")
    lab7.model.up = True
    await close_quietly(api)


async def test_trap_and_garbage_misbehaviour(lab7: Lab) -> None:
    lab7.server.misbehaviour = Misbehaviour(trap_paths=frozenset({"/routing/ospf/neighbor"}),
                                            garbage_paths=frozenset({"/ip/address"}))
    api = await aconnect(lab7)
    with pytest.raises(TrapError) as err:
        await rows(api, "routing", "ospf", "neighbor")
    assert "action timed out" in err.value.message
    assert await rows(api, "system", "identity") == [{"name": "EDGE1"}]
    with pytest.raises(ProtocolError):
        await rows(api, "ip", "address")
    await close_quietly(api)


async def test_drop_after_sentences(lab7: Lab) -> None:
    lab7.server.misbehaviour = Misbehaviour(drop_after_sentences=2)
    api = await aconnect(lab7)
    with pytest.raises(ConnectionClosed):
        await rows(api, "interface")
    await close_quietly(api)


async def test_reply_delay(lab7: Lab) -> None:
    lab7.server.misbehaviour = Misbehaviour(reply_delay_s=0.2)
    t0 = time.monotonic()
    api = await aconnect(lab7)
    assert await rows(api, "system", "identity") == [{"name": "EDGE1"}]
    assert time.monotonic() - t0 >= 0.4  # login and print each waited
    await api.close()


async def test_many_concurrent_clients(lab7: Lab) -> None:
    async def one(i: int) -> int:
        api = await aconnect(lab7)
        try:
            return len(await rows(api, "interface"))
        finally:
            await api.close()

    assert await asyncio.gather(*(one(i) for i in range(25))) == [4] * 25


async def test_client_error_does_not_kill_server(lab7: Lab) -> None:
    reader, writer = await asyncio.open_connection(HOST, lab7.port)
    writer.write(b"\xf8garbage")  # a reserved length byte
    await writer.drain()
    assert await reader.read() == b""  # the server hangs up on that client only
    writer.close()
    api = await aconnect(lab7)
    assert await rows(api, "system", "identity") == [{"name": "EDGE1"}]
    await api.close()


async def test_stop_closes_open_connections() -> None:
    lab = await start_lab(make_device(7))
    api = await aconnect(lab)
    await lab.server.stop()
    with pytest.raises((ConnectionClosed, ConnectionResetError)):
        await rows(api, "system", "identity")
    await close_quietly(api)
    with pytest.raises(ConnectionRefusedError):
        await aconnect(lab)


async def test_api_ssl(tmp_path: Path) -> None:
    server_ctx, ca_file = make_tls(tmp_path)
    lab = await start_lab(make_device(7), ssl_context=server_ctx)
    try:
        client_ctx = ssl.create_default_context(cafile=str(ca_file))
        api = await librouteros.async_connect(HOST, USER, PASSWORD, port=lab.port, timeout=2,
                                              ssl_wrapper=client_ctx)
        assert await rows(api, "system", "identity") == [{"name": "EDGE1"}]
        await api.close()
    finally:
        await lab.server.stop()


# ---- ethernet and /ping ----------------------------------------------------------------


@pytest.mark.parametrize(("major", "version", "ten_g", "one_g"), [
    (6, "6.49.10", "10Gbps", "1Gbps"),
    (7, "7.10.2", "10Gbps", "1Gbps"),
    (7, "7.16.2", "10G-baseSR-LR", "1G-baseT-full"),  # 7.12 renamed the link modes
])
async def test_ethernet_speed_setting_follows_the_version(major: int, version: str, ten_g: str, one_g: str) -> None:
    device = make_device(major, extra_ports=True)
    device.version = version
    lab = await start_lab(device)
    try:
        api = await aconnect(lab)
        ports = {r["name"]: r for r in await rows(api, "interface", "ethernet")}
        assert list(ports) == ["ether1", "ether2", "ether3", "ether4", "sfp-sfpplus1", "ether5"]  # no vlan100
        assert ports["sfp-sfpplus1"]["speed"] == ten_g and ports["ether1"]["speed"] == one_g
        assert ports["ether1"]["auto-negotiation"] is True and ports["ether1"]["comment"] == "UPSTREAM1 transit"
        await api.close()
    finally:
        await lab.server.stop()


async def test_ethernet_monitor_once() -> None:
    lab = await start_lab(make_device(7, extra_ports=True))
    try:
        api = await aconnect(lab)
        got = [r async for r in api.rawCmd("/interface/ethernet/monitor", "=numbers=ether1,*5,ether3,ether5",
                                           "=once=", "=.proplist=name,status,rate")]
        assert got == [
            {"name": "ether1", "status": "link-ok", "rate": "1Gbps"},
            {"name": "sfp-sfpplus1", "status": "link-ok", "rate": "10Gbps"},
            {"name": "ether3", "status": "no-link"},
            {"name": "ether5", "status": "link-ok", "rate": "100Mbps"},
        ]
        for missing in ("ether9", "vlan100"):  # not an Ethernet port
            with pytest.raises(TrapError) as err:
                [r async for r in api.rawCmd("/interface/ethernet/monitor", f"=numbers={missing}", "=once=")]
            assert err.value.message == "no such item"
        await api.close()
    finally:
        await lab.server.stop()


@pytest.mark.parametrize("major", [6, 7])
async def test_ping_sends_one_row_per_echo_interval_apart(major: int) -> None:
    lab = await start_lab(make_device(major))
    try:
        api = await aconnect(lab)
        t0 = time.monotonic()
        echoes = [r async for r in api("/ping", address="10.0.12.2", count=4, interval="50ms", size=100)]
        elapsed = time.monotonic() - t0
        assert 0.15 <= elapsed < 0.5  # three intervals, then the last reply
        assert [r["seq"] for r in echoes] == [0, 1, 2, 3]
        assert [(r["sent"], r["received"], r["packet-loss"]) for r in echoes] == [(n, n, 0) for n in range(1, 5)]
        last = echoes[-1]
        assert last["host"] == "10.0.12.2" and last["size"] == 100 and last["ttl"] == 64
        if major >= 7:  # 0.8 and 1.1 ms as v7 prints them
            assert [r["time"] for r in echoes] == ["800us", "1ms100us", "800us", "1ms100us"]
            assert (last["min-rtt"], last["avg-rtt"], last["max-rtt"]) == ("800us", "950us", "1ms100us")
        else:  # v6: whole milliseconds
            assert [r["time"] for r in echoes] == ["0ms", "1ms", "0ms", "1ms"]
        await api.close()
    finally:
        await lab.server.stop()


async def test_lost_echoes_are_timeout_rows(lab7: Lab) -> None:
    api = await aconnect(lab7)
    echoes = [r async for r in api("/ping", address="192.0.2.200", count=3, interval="20ms")]
    assert echoes[0] == {"seq": 0, "host": "192.0.2.200", "status": "timeout", "sent": 1, "received": 0,
                         "packet-loss": 100}
    assert [r["status"] for r in echoes] == ["timeout"] * 3 and "min-rtt" not in echoes[-1]
    lab7.model.rtt_ms["192.0.2.200"] = 30.0  # slower than the interval: still a timeout
    slow = [r async for r in api("/ping", address="192.0.2.200", count=2, interval="20ms")]
    assert [r["status"] for r in slow] == ["timeout", "timeout"]
    await api.close()


async def test_ping_arguments_are_checked(lab7: Lab) -> None:
    api = await aconnect(lab7)
    for kwargs, message in (
        ({"count": 1}, "missing value(s) of argument(s) address"),
        ({"address": "core1.example", "count": 1}, "invalid value for argument address"),
        ({"address": "10.0.12.2", "count": 0}, "invalid value for argument count"),
        ({"address": "10.0.12.2", "interval": "1ms"}, "value of interval out of range (00:00:00.010..00:00:05)"),
    ):
        with pytest.raises(TrapError) as err:
            [r async for r in api("/ping", **kwargs)]
        assert err.value.message == message
    assert await rows(api, "system", "identity") == [{"name": "EDGE1"}]
    await api.close()


async def read_until(raw: RawClient, done_tag: str) -> list[tuple[str, ...]]:
    """Sentences up to and including the ``!done`` of the command tagged ``done_tag``."""
    out: list[tuple[str, ...]] = []
    while True:
        reply, words = await raw.protocol.readSentence()
        out.append((reply, *words))
        if reply == "!done" and f".tag={done_tag}" in words:
            return out


async def test_ping_runs_beside_other_commands_until_cancelled(lab7: Lab) -> None:
    raw = await RawClient.open(lab7)
    await raw.login()
    await raw.protocol.writeSentence("/ping", "=address=10.0.12.2", "=interval=20ms", ".tag=p")  # no count
    reply, words = await raw.protocol.readSentence()
    assert reply == "!re" and ".tag=p" in words and "=seq=0" in words
    # another command on the same connection is answered while the ping runs
    await raw.protocol.writeSentence("/system/identity/print", ".tag=i")
    assert ("!re", ".tag=i", "=name=EDGE1") in await read_until(raw, "i")
    await raw.protocol.writeSentence("/cancel", "=tag=p", ".tag=c")
    tail = await read_until(raw, "c")
    stopped = tail.index(("!trap", ".tag=p", "=category=2", "=message=interrupted"))
    assert tail[stopped + 1] == ("!done", ".tag=p") and tail[-1] == ("!done", ".tag=c")
    assert await raw.talk("/system/identity/print") == [("!re", "=name=EDGE1"), ("!done",)]  # still in step
    await raw.close()


async def test_monitor_without_once_repeats_until_cancelled(lab7: Lab) -> None:
    raw = await RawClient.open(lab7)
    await raw.login()
    await raw.protocol.writeSentence("/interface/ethernet/monitor", "=numbers=ether1", "=.proplist=name,rate",
                                     ".tag=m")
    assert await raw.protocol.readSentence() == ("!re", (".tag=m", "=name=ether1", "=rate=1Gbps"))
    await raw.protocol.writeSentence("/cancel", ".tag=c")  # no tag: cancels everything running
    tail = await read_until(raw, "c")
    assert ("!trap", ".tag=m", "=category=2", "=message=interrupted") in tail
    await raw.close()


async def test_ping_across_a_dead_path_stays_silent(lab7: Lab) -> None:
    api = await librouteros.async_connect(HOST, USER, PASSWORD, port=lab7.port, timeout=0.3)
    lab7.model.up = False
    with pytest.raises(TimeoutError):
        [r async for r in api("/ping", address="10.0.12.2", count=2, interval="20ms")]
    lab7.model.up = True
    await close_quietly(api)
