"""The SNMP collector against real MikroTik recordings served by snmpsim.

Each LibreNMS recording (shared/fixtures/librenms-routeros) comes with the
results LibreNMS derived from it; what our collector reads must agree, and
every place where it legitimately differs is spelled out below.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pyasn1.codec.ber import encoder
from pysnmp.hlapi.v3arch.asyncio import SnmpEngine
from pysnmp.proto import api

from ispvm_tui.clock import SystemClock
from ispvm_tui.collectors.results import InterfaceStat, PollResult
from ispvm_tui.collectors.snmp import SnmpCollector, SnmpTarget

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures" / "librenms-routeros"
RESPONDER = Path(sys.executable).parent / "snmpsim-command-responder"
V3_USER, V3_AUTH_KEY, V3_PRIV_KEY = "ispvm-noc", "auth-key-for-tests", "priv-key-for-tests"
# A copy of one recording whose second hrProcessorLoad row answers genErr.
BROKEN_CPU = "routeros_rb750gr3_generr_cpu"

pytestmark = pytest.mark.asyncio(loop_scope="module")


def recordings_with_ports() -> list[str]:
    names = []
    for path in sorted(FIXTURES.glob("*.json")):
        if "ports" in json.loads(path.read_text()) and path.with_suffix(".snmprec").exists():
            names.append(path.stem)
    return names


RECORDINGS = recordings_with_ports()


@dataclass
class Simulator:
    port: int
    log: Path


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _probe(port: int, community: str) -> bytes:
    """One raw SNMPv2c GET sysDescr.0, to see whether snmpsim answers yet."""
    p_mod = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    pdu = p_mod.GetRequestPDU()
    p_mod.apiPDU.set_defaults(pdu)
    p_mod.apiPDU.set_varbinds(pdu, [((1, 3, 6, 1, 2, 1, 1, 1, 0), p_mod.Null(""))])
    message = p_mod.Message()
    p_mod.apiMessage.set_defaults(message)
    p_mod.apiMessage.set_community(message, community)
    p_mod.apiMessage.set_pdu(message, pdu)
    return bytes(encoder.encode(message))


def _wait_until_answering(proc: subprocess.Popen[bytes], port: int, log: Path, limit: float = 60.0) -> None:
    request = _probe(port, "routeros")
    deadline = time.monotonic() + limit
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.25)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"snmpsim exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
            sock.sendto(request, ("127.0.0.1", port))
            try:
                sock.recvfrom(65535)
                return
            except TimeoutError:
                continue
    pytest.fail(f"snmpsim did not answer within {limit:.0f} s:\n{log.read_text(errors='replace')[-4000:]}")


def _write_broken_recording(data_dir: Path) -> None:
    source = (FIXTURES / "routeros_rb750gr3.snmprec").read_text()
    broken = source.replace(
        "1.3.6.1.2.1.25.3.3.1.2.2|2|5\n",
        # snmpsim's "error" variation: this one object answers genErr.
        "1.3.6.1.2.1.25.3.3.1.2.2|2:error|op=get,status=genError,value=5\n",
    )
    assert broken != source, "the recording changed: pick another row to break"
    (data_dir / f"{BROKEN_CPU}.snmprec").write_text(broken)


@pytest.fixture(scope="module")
def snmpsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    assert RESPONDER.exists(), f"snmpsim is not installed next to {sys.executable}"
    work = tmp_path_factory.mktemp("snmpsim")
    extra = work / "data"
    extra.mkdir()
    _write_broken_recording(extra)
    port = _free_udp_port()
    log = work / "snmpsim.log"
    command = [
        str(RESPONDER),
        f"--data-dir={FIXTURES}",
        f"--data-dir={extra}",
        f"--cache-dir={work / 'cache'}",
        f"--agent-udpv4-endpoint=127.0.0.1:{port}",
        f"--v3-user={V3_USER}",
        f"--v3-auth-key={V3_AUTH_KEY}",
        "--v3-auth-proto=SHA",
        f"--v3-priv-key={V3_PRIV_KEY}",
        "--v3-priv-proto=AES",
    ]
    # Tests may run as root in containers; snmpsim refuses that unless told.
    env = {**os.environ, "SNMPSIM_ALLOW_ROOT": "true"}
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_until_answering(proc, port, log)
        yield Simulator(port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine() -> AsyncIterator[SnmpEngine]:
    engine = SnmpEngine()
    yield engine
    engine.close_dispatcher()


async def poll(sim: Simulator, engine: SnmpEngine, recording: str, **options: Any) -> PollResult:
    target = SnmpTarget(name=recording, address="127.0.0.1", port=sim.port, community=recording, **options)
    return await SnmpCollector(target, clock=SystemClock(), engine=engine).poll()


def librenms(recording: str, module: str) -> dict[str, Any]:
    """One module of LibreNMS's expected results, after polling if recorded, else after discovery."""
    data = json.loads((FIXTURES / f"{recording}.json").read_text())[module]
    return data["poller"] if isinstance(data.get("poller"), dict) else data["discovery"]


def snmprec_value(recording: str, oid: str) -> str | None:
    prefix = f"{oid}|"
    for line in (FIXTURES / f"{recording}.snmprec").read_text(errors="replace").splitlines():
        if line.startswith(prefix):
            return line.split("|", 2)[2]
    return None


# LibreNMS stores IANA ifType names; we use RouterOS words.
LIBRENMS_TYPES = {
    "ethernetCsmacd": "ether",
    "ieee80211": "wlan",
    "bridge": "bridge",
    "l2vlan": "vlan",
    "tunnel": "tunnel",
    "ieee8023adLag": "bond",
    "ppp": "ppp",
    "other": "other",
}


def librenms_ignores(itf: InterfaceStat) -> bool:
    # LibreNMS's default bad_if list skips ports whose ifDescr contains "pppoe-"
    # (dial-up sessions that come and go); an ISP's NOC wants its PPPoE uplink.
    # RouterOS's ifDescr equals ifName, which is our name.
    return "pppoe-" in itf.name.lower()


def port_mismatches(ours: InterfaceStat, port: dict[str, Any]) -> list[str]:
    problems: list[str] = []

    def check(field: str, got: object, want: object) -> None:
        if got != want:
            problems.append(f"ifIndex {port['ifIndex']} {field}: ours {got!r}, LibreNMS {want!r}")

    check("ifName", ours.name, port["ifName"])
    check("ifType", ours.type, LIBRENMS_TYPES.get(port["ifType"], port["ifType"]))
    # LibreNMS shows ifDescr where ifAlias is empty; we keep "no alias" as None.
    check("ifAlias", ours.alias or port["ifDescr"], port["ifAlias"])
    # LibreNMS stores speed 0 (no link) as NULL.
    check("speed", ours.speed_bps or None, port["ifSpeed"])
    check("ifOperStatus", ours.oper_up, port["ifOperStatus"] == "up")
    if port["ifAdminStatus"] is not None:  # not recorded by discovery
        check("ifAdminStatus", ours.admin_up, port["ifAdminStatus"] == "up")
    if port["ifMtu"] is not None:
        check("ifMtu", ours.mtu, port["ifMtu"])
    check("ifPhysAddress", (ours.mac or "").replace(":", "").lower() or None, port["ifPhysAddress"])
    if port["ifInOctets"] is not None:
        # LibreNMS keeps the 64-bit ifHC* counters in its ifIn/OutOctets columns.
        check("ifInOctets", ours.rx_bytes, port["ifInOctets"])
        check("ifOutOctets", ours.tx_bytes, port["ifOutOctets"])
        # Our packets are all packets (RouterOS rx-packet): unicast + multicast + broadcast.
        for direction, got in (("In", ours.rx_packets), ("Out", ours.tx_packets)):
            kinds = ("UcastPkts", "MulticastPkts", "BroadcastPkts")
            check(f"if{direction}Pkts", got, sum(port[f"if{direction}{kind}"] or 0 for kind in kinds))
    check("counter_bits", ours.counter_bits, 64)
    return problems


async def test_all_recordings_with_ports_are_found() -> None:
    # Guards against an empty parametrisation silently testing nothing.
    assert RECORDINGS == [
        "routeros",
        "routeros_crs317",
        "routeros_rb433gl",
        "routeros_rb750gr3",
        "routeros_rb760igs",
        "routeros_rblhgr",
    ]


@pytest.mark.parametrize("recording", RECORDINGS)
async def test_interfaces_match_librenms(snmpsim: Simulator, engine: SnmpEngine, recording: str) -> None:
    result = await poll(snmpsim, engine, recording)

    assert result.ok, result.error
    assert result.stale == {}
    ours = {itf.ifindex: itf for itf in result.interfaces}
    expected = {port["ifIndex"]: port for port in librenms(recording, "ports")["ports"]}
    ignored = {index for index, itf in ours.items() if librenms_ignores(itf)}
    assert set(ours) - ignored == set(expected)
    if recording == "routeros":
        assert {ours[index].name for index in ignored} == {"pppoe-out1"}
    problems = [problem for index, port in expected.items() for problem in port_mismatches(ours[index], port)]
    assert problems == []


@pytest.mark.parametrize("recording", RECORDINGS)
async def test_system_matches_librenms(snmpsim: Simulator, engine: SnmpEngine, recording: str) -> None:
    result = await poll(snmpsim, engine, recording)

    assert result.ok, result.error
    system = result.system
    assert system is not None
    device = librenms(recording, "os")["devices"][0]
    assert system.identity == device["sysName"]
    assert system.descr == device["sysDescr"]
    assert system.object_id == device["sysObjectID"].lstrip(".")
    assert system.version == device["version"]
    # "router" (RouterOS <= 6.40 sysDescr) names no board: both leave it empty.
    assert system.board == device["hardware"]
    uptime = snmprec_value(recording, "1.3.6.1.2.1.1.3.0")
    assert system.uptime_s == (int(uptime) / 100 if uptime else None)

    processors = librenms(recording, "processors")["processors"]
    loads = [p["processor_usage"] for p in processors if p["processor_type"] == "hr"]
    assert system.cpu_load == round(sum(loads) / len(loads))
    ram = [m for m in librenms(recording, "mempools")["mempools"] if m["mempool_class"] == "system"]
    assert (system.total_memory, system.free_memory) == (ram[0]["mempool_total"], ram[0]["mempool_free"])

    sensors = librenms(recording, "sensors")["sensors"]
    health = ".1.3.6.1.4.1.14988.1.1.3."
    volts = [
        s["sensor_current"] for s in sensors if s["sensor_class"] == "voltage" and s["sensor_oid"].startswith(health)
    ]
    assert system.voltage_v == (volts[0] if volts else None)
    board_temp = [s["sensor_current"] for s in sensors if s["sensor_oid"] == f"{health}100.1.3.14"]
    if board_temp:
        assert system.temperature_c == board_temp[0]
    else:
        # LibreNMS makes no sensor of the classic mtxrHlTemperature scalar (tenths of a
        # degree); we fall back to it when the gauge table has no board temperature.
        classic = snmprec_value(recording, "1.3.6.1.4.1.14988.1.1.3.10.0")
        assert system.temperature_c == (int(classic) / 10 if classic else None)


async def test_recording_without_interfaces_is_not_an_error(snmpsim: Simulator, engine: SnmpEngine) -> None:
    # routeros_rb2011il holds only system and queue objects: empty tables, nothing stale.
    result = await poll(snmpsim, engine, "routeros_rb2011il")

    assert result.ok, result.error
    assert result.interfaces == ()
    assert result.stale == {}
    assert result.system is not None and result.system.board == "RB2011iL" and result.system.uptime_s is None


async def test_one_failing_table_is_stale_and_the_rest_is_returned(snmpsim: Simulator, engine: SnmpEngine) -> None:
    result = await poll(snmpsim, engine, BROKEN_CPU)

    assert result.ok, result.error
    assert set(result.stale) == {"cpu"}
    assert "hrProcessorTable" in result.stale["cpu"] and "genErr" in result.stale["cpu"]
    assert result.system is not None
    assert result.system.cpu_load is None  # no average from a partial table
    assert result.system.total_memory == 268435456
    assert len(result.interfaces) == 14


async def test_snmpv3_authpriv_reads_the_same_as_v2c(snmpsim: Simulator, engine: SnmpEngine) -> None:
    recording = "routeros_rb750gr3"
    v3 = {"v3_user": V3_USER, "v3_auth_key": V3_AUTH_KEY, "v3_priv_key": V3_PRIV_KEY}

    via_v3 = await poll(snmpsim, engine, recording, version="3", context=recording, **v3)
    via_v2c = await poll(snmpsim, engine, recording)

    assert via_v3.ok, via_v3.error
    assert via_v3.stale == {}
    assert via_v3.system == via_v2c.system
    assert via_v3.interfaces == via_v2c.interfaces
    assert len(via_v3.interfaces) == 14


async def test_snmpv3_wrong_key_is_an_auth_error_without_secrets(snmpsim: Simulator, engine: SnmpEngine) -> None:
    recording = "routeros_rb750gr3"
    wrong = "not-the-auth-key"

    result = await poll(
        snmpsim, engine, recording, version="3", context=recording, timeout=1.0, retries=0,
        v3_user=V3_USER, v3_auth_key=wrong, v3_priv_key=V3_PRIV_KEY,
    )  # fmt: skip

    assert not result.ok
    assert result.error_kind == "auth"
    assert result.error and wrong not in result.error and V3_PRIV_KEY not in result.error
