"""The SNMP collector against real device recordings served by snmpsim.

Each LibreNMS recording (shared/fixtures/librenms-routeros for MikroTik,
shared/fixtures/librenms-other for an EdgeRouter with BGP and a Cisco switch
with OSPF) comes with the results LibreNMS derived from it; what our collector
reads must agree, and every place where it legitimately differs is spelled out
below.
"""

from __future__ import annotations

import ipaddress
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
from ispvm_tui.collectors.results import (
    ALL_SERVERS,
    DhcpServer,
    HealthSensor,
    InterfaceStat,
    Neighbor,
    OpticalModule,
    PollResult,
)
from ispvm_tui.collectors.snmp import SnmpCollector, SnmpTarget

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures" / "librenms-routeros"
OTHER_FIXTURES = REPO.parent / "shared" / "fixtures" / "librenms-other"
RESPONDER = Path(sys.executable).parent / "snmpsim-command-responder"
V3_USER, V3_AUTH_KEY, V3_PRIV_KEY = "ispvm-noc", "auth-key-for-tests", "priv-key-for-tests"
# A copy of one recording whose second hrProcessorLoad row answers genErr.
BROKEN_CPU = "routeros_rb750gr3_generr_cpu"
# A copy of the EdgeRouter recording whose bgpPeerRemoteAs answers genErr.
BROKEN_BGP = "edgeos_generr_bgp"
# A copy of rb750gr3 with its management addresses in LLDP-MIB's own layout (see below).
STANDARD_MAN_ADDR = "routeros_rb750gr3_lldp_man_addr"
# A copy of rb433gl as a non-MikroTik agent whose LLDP port numbers are not ifIndexes.
LLDP_PORT_NUMBERS = "lldp_port_numbers"

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


def _write_derived_recording(data_dir: Path, source: str, name: str, edits: dict[str, str]) -> None:
    text = recording_path(source, ".snmprec").read_text()
    for old, new in edits.items():
        assert old in text, f"{source} changed: pick another row to edit"
        text = text.replace(old, new)
    (data_dir / f"{name}.snmprec").write_text(text)


def _write_derived_recordings(data_dir: Path) -> None:
    # snmpsim's "error" variation: this one object answers genErr.
    _write_derived_recording(
        data_dir,
        "routeros_rb750gr3",
        BROKEN_CPU,
        {"1.3.6.1.2.1.25.3.3.1.2.2|2|5\n": "1.3.6.1.2.1.25.3.3.1.2.2|2:error|op=get,status=genError,value=5\n"},
    )
    peer = "1.3.6.1.2.1.15.3.1.9.172.16.200.1"
    _write_derived_recording(
        data_dir, "edgeos", BROKEN_BGP, {f"{peer}|2|65000\n": f"{peer}|2:error|op=get,status=genError,value=65000\n"}
    )
    # RouterOS serves lldpRemManAddrSubtype/lldpRemManAddr (index columns) as objects; a
    # standard agent keeps the address in the index of lldpRemManAddrIfSubtype:
    # (time mark, local port, remote index, address family, length, address octets).
    entry = "1.0.8802.1.1.2.1.4.2.1"
    ipv6 = ".".join(str(b) for b in ipaddress.IPv6Address("fdfd:0:2:1::1").packed)
    routeros_rows = [
        f"{entry}.1.0.6.2|2|1",
        f"{entry}.1.0.10.1|2|2",
        f"{entry}.2.0.6.2|4|169.254.9.11",
        f"{entry}.2.0.10.1|4|fdfd:0:2:1::1",
    ]
    standard_rows = [f"{entry}.3.0.6.2.1.4.169.254.9.11|2|2", f"{entry}.3.0.10.1.2.16.{ipv6}|2|2"]  # ifIndex(2)
    edit = {"".join(f"{row}\n" for row in routeros_rows): "".join(f"{row}\n" for row in standard_rows)}
    _write_derived_recording(data_dir, "routeros_rb750gr3", STANDARD_MAN_ADDR, edit)
    # Neighbours seen on LLDP ports 9 and 10, which are also the ifIndexes of Vlan255 and
    # Vlan210: lldpLocPortTable names the ports (by interfaceName id, by description).
    loc = "1.0.8802.1.1.2.1.3.7.1"
    edit = {
        "1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.14988.1\n": "1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.8072.3.2.10\n",
        f"{loc}.3.1|": f"{loc}.2.9|2|5\n{loc}.2.10|2|3\n{loc}.3.1|",
        f"{loc}.3.9|4|0A:03:00:00:00:71\n": f"{loc}.3.9|4|trunk: sw72 (eth2)\n",
        f"{loc}.3.16|4|0A:03:00:00:00:71\n": f"{loc}.3.16|4|0A:03:00:00:00:71\n{loc}.4.10|4|trunk: Crkva (wifi1)\n",
    }
    rem = recording_path("routeros_rb433gl", ".snmprec").read_text().split(f"{loc}.3.16|", 1)[1]
    for line in rem.splitlines():
        if line.startswith("1.0.8802.1.1.2.1.4.1.1."):
            edit[line] = line.replace(".0.2.1|", ".0.9.1|").replace(".0.5.2|", ".0.10.2|")
    _write_derived_recording(data_dir, "routeros_rb433gl", LLDP_PORT_NUMBERS, edit)


@pytest.fixture(scope="module")
def snmpsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    assert RESPONDER.exists(), f"snmpsim is not installed next to {sys.executable}"
    work = tmp_path_factory.mktemp("snmpsim")
    extra = work / "data"
    extra.mkdir()
    _write_derived_recordings(extra)
    port = _free_udp_port()
    log = work / "snmpsim.log"
    command = [
        str(RESPONDER),
        # snmpsim serves several data dirs at once; each file name is a community.
        f"--data-dir={FIXTURES}",
        f"--data-dir={OTHER_FIXTURES}",
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


def recording_path(recording: str, suffix: str) -> Path:
    for folder in (FIXTURES, OTHER_FIXTURES):
        if (folder / f"{recording}.snmprec").exists():
            return folder / f"{recording}{suffix}"
    raise FileNotFoundError(recording)


def librenms(recording: str, module: str) -> dict[str, Any]:
    """One module of LibreNMS's expected results, after polling if recorded, else after discovery."""
    data = json.loads(recording_path(recording, ".json").read_text())[module]
    return data["poller"] if isinstance(data.get("poller"), dict) else data["discovery"]


def snmprec_value(recording: str, oid: str) -> str | None:
    prefix = f"{oid}|"
    for line in recording_path(recording, ".snmprec").read_text(errors="replace").splitlines():
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
    # Errors and discards: only LibreNMS's poller results have them (discovery leaves them NULL).
    for field, got in (("ifInErrors", ours.rx_errors), ("ifOutErrors", ours.tx_errors),
                       ("ifInDiscards", ours.rx_discards), ("ifOutDiscards", ours.tx_discards)):
        if port.get(field) is not None:
            check(field, got, port[field])
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


IF_ENTRY = "1.3.6.1.2.1.2.2.1"
# (recording, ifIndex): interfaces whose recorded errors or discards are not zero.
BUSY_PORTS = [("routeros_rb750gr3", 8), ("routeros_rb750gr3", 9), ("ios", 1), ("ios", 10108), ("ios", 10115),
              ("edgeos", 5), ("edgeos", 26)]


@pytest.mark.parametrize(("recording", "ifindex"), BUSY_PORTS)
async def test_errors_and_discards_are_the_recorded_counters(
        snmpsim: Simulator, engine: SnmpEngine, recording: str, ifindex: int) -> None:
    result = await poll(snmpsim, engine, recording)

    assert result.ok, result.error
    [ours] = [itf for itf in result.interfaces if itf.ifindex == ifindex]
    recorded = {column: snmprec_value(recording, f"{IF_ENTRY}.{column}.{ifindex}") for column in (13, 14, 19, 20)}
    assert all(recorded.values()) and any(v != "0" for v in recorded.values())
    assert (ours.rx_discards, ours.rx_errors, ours.tx_discards, ours.tx_errors) == tuple(
        int(recorded[column] or -1) for column in (13, 14, 19, 20))
    # What LibreNMS's poller read from the same recording.
    [port] = [p for p in librenms(recording, "ports")["ports"] if p["ifIndex"] == ifindex]
    assert (ours.rx_discards, ours.rx_errors, ours.tx_discards, ours.tx_errors) == (
        port["ifInDiscards"], port["ifInErrors"], port["ifOutDiscards"], port["ifOutErrors"])


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


# -- health sensors, LLDP, BGP, OSPF ---------------------------------------------

ALL_RECORDINGS = sorted(path.stem for folder in (FIXTURES, OTHER_FIXTURES) for path in folder.glob("*.snmprec"))
HEALTH_OID = ".1.3.6.1.4.1.14988.1.1.3."  # MIKROTIK-MIB mtxrHealth
# LibreNMS sensor classes as our units; a state sensor has none.
LIBRENMS_UNITS = {"temperature": "C", "voltage": "V", "fanspeed": "RPM", "current": "A", "power": "W", "state": None}
# LibreNMS names the classic mtxrHlVoltage scalar after its index ("Voltage 0"); RouterOS calls it "voltage".
LIBRENMS_SCALAR_NAMES = {f"{HEALTH_OID}8.0": "voltage"}
# Which MIB's rows make a family collectable.
FAMILY_MIBS = {"neighbors": "1.0.8802.1.1.2.", "bgp": "1.3.6.1.2.1.15.", "ospf": "1.3.6.1.2.1.14."}


def recordings_with(module: str) -> list[str]:
    return [name for name in ALL_RECORDINGS if recording_path(name, ".json").exists() and module in _json(name)]


def _json(recording: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(recording_path(recording, ".json").read_text())
    return data


def snmprec_rows(recording: str, prefix: str) -> dict[str, str]:
    rows = {}
    for line in recording_path(recording, ".snmprec").read_text(errors="replace").splitlines():
        oid, _, rest = line.partition("|")
        if oid.startswith(prefix):
            rows[oid.removeprefix(prefix)] = rest.split("|", 1)[1]
    return rows


Reading = tuple[float | None, str | None, str | None]  # value, unit, state


def librenms_health(recording: str) -> dict[str, set[Reading]]:
    """LibreNMS's MIKROTIK-MIB health sensors as name -> readings (optics, PoE, DHCP counts are no health)."""
    module = librenms(recording, "sensors")
    states = {(s["state_name"], s["state_value"]): s["state_descr"] for s in module.get("state_indexes", [])}
    found: dict[str, set[Reading]] = {}
    for sensor in module["sensors"]:
        if not sensor["sensor_oid"].startswith(HEALTH_OID):
            continue
        name = LIBRENMS_SCALAR_NAMES.get(sensor["sensor_oid"], sensor["sensor_descr"])
        if sensor["sensor_class"] == "state":
            reading: Reading = (None, None, states[(sensor["sensor_type"], sensor["sensor_current"])])
        else:
            reading = (sensor["sensor_current"], LIBRENMS_UNITS[sensor["sensor_class"]], None)
        found.setdefault(name, set()).add(reading)
    return found


def reading(sensor: HealthSensor) -> Reading:
    return sensor.value, sensor.unit, sensor.state


async def test_recordings_of_each_family_are_found() -> None:
    # Guards against an empty parametrisation silently testing nothing.
    assert recordings_with("sensors") == [
        "ios",
        "routeros",
        "routeros_crs317",
        "routeros_rb433gl",
        "routeros_rb750gr3",
        "routeros_rb760igs",
        "routeros_rblhgr",
    ]
    assert recordings_with("bgp-peers") == ["edgeos"]
    assert recordings_with("ospf") == ["ios"]


@pytest.mark.parametrize("recording", recordings_with("sensors"))
async def test_health_sensors_match_librenms(snmpsim: Simulator, engine: SnmpEngine, recording: str) -> None:
    result = await poll(snmpsim, engine, recording)

    assert result.ok, result.error
    assert result.stale == {}
    expected = librenms_health(recording)
    if not recording.startswith("routeros"):
        # MIKROTIK-MIB is the only health MIB we read (ios's LibreNMS "sensors" are syslog counters).
        assert result.sensors is None and expected == {}
        return
    assert result.sensors is not None
    ours = {sensor.name: reading(sensor) for sensor in result.sensors}
    assert len(ours) == len(result.sensors), "one sensor per name"
    # LibreNMS lists mtxrHlVoltage and the gauge table's "voltage" as two sensors (rb433gl,
    # rb750gr3); they are one reading, which we report once.
    assert all(len(readings) == 1 for readings in expected.values())
    assert {name: ours.get(name) for name in expected} == {name: r.pop() for name, r in expected.items()}
    extra = {name: value for name, value in ours.items() if name not in expected}
    # LibreNMS makes no sensor of the classic mtxrHlTemperature (tenths of a degree); RouterOS
    # shows it as "temperature" in /system/health, so we do report it.
    classic = snmprec_value(recording, "1.3.6.1.4.1.14988.1.1.3.10.0")
    assert extra == ({"temperature": (int(classic) / 10, "C", None)} if classic else {})


async def test_gauge_table_wins_over_classic_scalars(snmpsim: Simulator, engine: SnmpEngine) -> None:
    # The CRS317 has both: classic cpu temperature 44.0, fans 4200/4245 rpm, both PSUs ok;
    # the gauge table (hand-edited in this recording) 36, 0, 0 and psu2 failed. The table's
    # named rows are what RouterOS >= 6.44 shows in /system/health.
    result = await poll(snmpsim, engine, "routeros_crs317")

    assert result.sensors is not None
    assert [s for s in result.sensors if s.name in ("cpu-temperature", "fan1-speed", "psu2-state")] == [
        HealthSensor("cpu-temperature", 36.0, "C"),
        HealthSensor("fan1-speed", 0.0, "RPM"),
        HealthSensor("psu2-state", None, None, "fail"),
    ]


def lldp(local: str, identity: str | None, port: str | None, mac: str, platform: str | None = None,
         address: str | None = None) -> Neighbor:  # fmt: skip
    return Neighbor(local, identity, port, address, mac, platform, "lldp")


# No recording's json has a LibreNMS links module, so these are read off the snmprec rows.
# RouterOS 6 indexes lldpRemTable by one number (no time mark, no local port) and 7.1
# reports local port 0: the local interface is then unknown (""). Rows that repeat another
# row exactly (routeros .2, .11, .12) are one neighbour; all-empty rows (.25, .26) none.
EXPECTED_LLDP = {
    "routeros": [
        lldp("", "Spoj Jizak-Kupeckeho-60G", "bridge/wlan60-1", "B8:69:F4:7F:41:70",
             "MikroTik RouterOS 6.48.2 (stable) RBLHGG-60ad"),
        lldp("", "Jizak", "eth1-kupeckeho_lan", "74:4D:28:E3:17:31"),
        # sysDesc holds CR/LF: its first line is the platform.
        lldp("", "S5120-Tech", "GigabitEthernet1/0/17", "3C:E5:A6:37:DF:DA",
             "H3C Comware Platform Software, Software Version 5.20 Release 2221P04-US"),
        lldp("", "2530-blue_shed", "8", "20:67:7C:97:A3:48",
             "HP J9774A 2530-8G-PoEP Switch, revision YA.16.04.0008, ROM YA.15.19 "
             "(/ws/swbuildm/rel_ukiah_qaoff/code/build/lakes(swbuildm_rel_ukiah_qaoff_rel_ukiah))"),
        lldp("", "blue_shed-wirelesswire", "vlan200", "CC:2D:E0:E2:F0:9E"),
        lldp("", "MikroTik", "1 managment", "6C:3B:6B:E4:21:3E"),
        lldp("", "MikroTik", "200 curric", "6C:3B:6B:E4:21:3E"),
        # .13 and .14 differ in sysDesc only, so both stay.
        lldp("", "Tech-wirelesswire", "vlan200", "CC:2D:E0:E2:F1:FC", "MikroTik RouterOS 6.43.2 (stable) RBwAPG-60ad"),
        lldp("", "Tech-wirelesswire", "vlan200", "CC:2D:E0:E2:F1:FC"),
    ],
    # RouterOS 7: the local port number is the ifIndex (lldpLocPortTable only lists port MACs).
    "routeros_rb433gl": [
        lldp("trunk: sw72 (eth2)", "sw72.hemiko", "trunk: mkt71", "5C:62:8B:37:A5:87",
             "Omada 10-Port Gigabit Smart Switch with 8-Port PoE+"),
        lldp("trunk: Crkva (wifi1)", "mkt202.hemiko", "trunk: Switch (br1)/trunk: Silos (wifi1)", "6C:3B:6B:AD:A2:29",
             "MikroTik RouterOS 7.18.2 (stable) 2025-03-11 11:59:04 RBDynaDishG-5HacDr3"),
    ],
    "routeros_rb750gr3": [
        lldp("trunk: Down (eth5)", "sw11.mzmol", "trunk: Up (p24)", "E8:28:C1:3C:1C:D8",
             "MES2324B 28-port 1G/10G Managed Switch, Software version: 4.0.24.1", "169.254.9.11"),
        lldp("trunk: SoAda (eoip1)", "r1.soada", "trunk: switch (br1)/trunk: MzMol (eoip1)", "02:E8:54:FB:7C:76",
             "MikroTik RouterOS 7.19.1 (stable) 2025-05-23 14:27:17 RB5009UG+S+", "fdfd:0:2:1::1"),
    ],
}  # fmt: skip
EXPECTED_LLDP[STANDARD_MAN_ADDR] = EXPECTED_LLDP["routeros_rb750gr3"]
EXPECTED_LLDP[LLDP_PORT_NUMBERS] = EXPECTED_LLDP["routeros_rb433gl"]


@pytest.mark.parametrize("recording", list(EXPECTED_LLDP))
async def test_lldp_neighbors_match_the_recording(snmpsim: Simulator, engine: SnmpEngine, recording: str) -> None:
    result = await poll(snmpsim, engine, recording)

    assert result.ok, result.error
    assert result.stale == {}
    assert list(result.neighbors or ()) == EXPECTED_LLDP[recording]


@pytest.mark.parametrize(
    "recording", [name for name in ALL_RECORDINGS if snmprec_rows(name, "1.0.8802.1.1.2.1.4.1.1.5.")]
)
async def test_every_lldp_chassis_is_a_neighbor(snmpsim: Simulator, engine: SnmpEngine, recording: str) -> None:
    result = await poll(snmpsim, engine, recording)

    assert result.neighbors is not None
    # RouterOS sends lldpRemChassisId as MAC text; the null MAC marks an empty row.
    chassis = set(snmprec_rows(recording, "1.0.8802.1.1.2.1.4.1.1.5.").values()) - {"00:00:00:00:00:00"}
    assert {n.remote_mac for n in result.neighbors} == chassis
    assert {n.protocol for n in result.neighbors} == {"lldp"}


@pytest.mark.parametrize("recording", ALL_RECORDINGS)
async def test_families_a_device_lacks_are_absent_not_stale(
    snmpsim: Simulator, engine: SnmpEngine, recording: str
) -> None:
    result = await poll(snmpsim, engine, recording)

    assert result.ok, result.error
    assert result.stale == {}
    collected = {family: getattr(result, family) is not None for family in FAMILY_MIBS}
    assert collected == {family: bool(snmprec_rows(recording, mib)) for family, mib in FAMILY_MIBS.items()}
    assert (result.sensors is not None) == recording.startswith("routeros")


async def test_bgp_peers_match_librenms(snmpsim: Simulator, engine: SnmpEngine) -> None:
    result = await poll(snmpsim, engine, "edgeos")

    assert result.ok, result.error
    assert result.stale == {}
    [peer] = librenms("edgeos", "bgp-peers")["bgpPeers"]
    assert result.bgp is not None
    [ours] = result.bgp
    # LibreNMS keys the peer by the table index (bgpPeerRemoteAddr) and calls it
    # bgpPeerIdentifier; its bgpPeerRemoteAddr column is 0.0.0.0 because the recording
    # lacks that (redundant) column. BGP4-MIB names no peer: the address is its name.
    assert (ours.name, ours.remote_address) == (peer["bgpPeerIdentifier"], peer["bgpPeerIdentifier"])
    assert ours.remote_as == peer["bgpPeerRemoteAs"]
    assert ours.local_as == peer["bgpLocalAs"]
    assert (ours.state, ours.established) == (peer["bgpPeerState"], peer["bgpPeerState"] == "established")
    assert ours.disabled == (peer["bgpPeerAdminStatus"] == "stop")
    assert ours.uptime_s == peer["bgpPeerFsmEstablishedTime"]
    assert ours.prefixes is None  # BGP4-MIB counts updates, not prefixes


async def test_ospf_neighbors_match_librenms(snmpsim: Simulator, engine: SnmpEngine) -> None:
    result = await poll(snmpsim, engine, "ios")

    assert result.ok, result.error
    assert result.stale == {}
    [nbr] = librenms("ios", "ospf")["ospf_nbrs"]
    assert result.ospf is not None
    [ours] = result.ospf
    assert (ours.router_id, ours.address) == (nbr["ospfNbrRtrId"], nbr["ospfNbrIpAddr"])
    assert (ours.state, ours.full) == (nbr["ospfNbrState"], True)
    # A numbered neighbour names no interface in OSPF-MIB (LibreNMS's port_id is null too).
    assert ours.interface is None and nbr["port_id"] is None


async def test_one_failing_optional_table_is_stale(snmpsim: Simulator, engine: SnmpEngine) -> None:
    result = await poll(snmpsim, engine, BROKEN_BGP)

    assert result.ok, result.error
    assert set(result.stale) == {"bgp"}
    assert "bgpPeerTable" in result.stale["bgp"] and "genErr" in result.stale["bgp"]
    assert result.bgp is None  # not a partial peer without its AS
    assert result.neighbors is None and result.ospf is None
    assert len(result.interfaces) == 26


async def test_snmpv1_probe_past_the_end_of_the_mib(snmpsim: Simulator, engine: SnmpEngine) -> None:
    # This recording holds two objects: SNMPv1 answers the probe's GETNEXTs past them
    # with noSuchName, which means "nothing there", not an error.
    result = await poll(snmpsim, engine, "routeros_rb952ui", version="1")

    assert result.ok, result.error
    assert result.stale == {}
    assert (result.neighbors, result.bgp, result.ospf, result.sensors) == (None, None, None, ())


# -- wireless registrations and storage -------------------------------------------

MTXR_WIRELESS = "1.3.6.1.4.1.14988.1.1.1."  # MIKROTIK-MIB mtxrWireless
MTXR_WL_RTAB_STRENGTH = "1.3.6.1.4.1.14988.1.1.1.2.1.3."  # mtxrWlRtabStrength.<MAC>.<ifIndex>
HR_STORAGE_ENTRY = "1.3.6.1.2.1.25.2.3.1."


def librenms_wireless_clients(recording: str) -> dict[str, int]:
    """LibreNMS's per-interface client counts (mtxrWlApClientCount), by ifName, zeros left out."""
    sensors = librenms(recording, "wireless")["wireless_sensors"]
    counts = {}
    for sensor in sensors:
        if sensor["sensor_class"] == "clients" and sensor["sensor_current"]:
            ifname = snmprec_value(recording, f"1.3.6.1.2.1.31.1.1.1.1.{sensor['sensor_index']}")
            counts[ifname or sensor["sensor_index"]] = sensor["sensor_current"]
    return counts


async def test_wireless_clients_match_librenms(snmpsim: Simulator, engine: SnmpEngine) -> None:
    result = await poll(snmpsim, engine, "routeros")

    assert result.ok, result.error
    assert result.stale == {}
    assert result.wireless is not None
    # LibreNMS counts an access point's stations with the mtxrWlApClientCount scalar;
    # we list the registration table, so the stations per interface must add up to it.
    per_interface: dict[str, int] = {}
    for client in result.wireless:
        assert client.interface is not None
        per_interface[client.interface] = per_interface.get(client.interface, 0) + 1
    assert per_interface == librenms_wireless_clients("routeros") == {"wlan1": 7, "wlan4": 4}
    # LibreNMS keeps no per-station reading (its only rssi sensor is the 60 GHz
    # mtxrW60GTable, a different table), so signals are checked against the recording.
    strengths = snmprec_rows("routeros", MTXR_WL_RTAB_STRENGTH)
    assert len(strengths) == len(result.wireless) == 11
    for client in result.wireless:
        octets = ".".join(str(int(part, 16)) for part in client.mac.split(":"))
        ifindex = {"wlan1": 1, "wlan4": 9}[client.interface or ""]
        assert client.signal_dbm == float(strengths[f"{octets}.{ifindex}"])
    # This recording has only the strength column: rates and uptime are unknown, not zero.
    assert {(c.tx_rate_bps, c.rx_rate_bps, c.uptime_s) for c in result.wireless} == {(None, None, None)}
    assert sorted(c.signal_dbm for c in result.wireless if c.signal_dbm is not None)[:2] == [-91.0, -87.0]


@pytest.mark.parametrize("recording", ["routeros_ltap-mini", "routeros_rb433gl"])
async def test_access_point_without_registration_rows_has_no_clients(
    snmpsim: Simulator, engine: SnmpEngine, recording: str
) -> None:
    result = await poll(snmpsim, engine, recording)

    assert result.ok, result.error
    assert result.stale == {}
    # Both recordings have mtxrWireless (the AP table) but no mtxrWlRtabTable rows: the
    # family is present and empty. LibreNMS agrees for the ltAP mini (0 clients); for the
    # RB433GL it reports 1 client on wlan ifIndex 4 from mtxrWlApClientCount, a station
    # whose registration row was not captured in the recording (LibreNMS's discovery
    # never walks mtxrWlRtabTable), so there is no row snmpsim could serve.
    assert snmprec_rows(recording, MTXR_WIRELESS)
    assert not snmprec_rows(recording, MTXR_WL_RTAB_STRENGTH)
    assert result.wireless == ()


@pytest.mark.parametrize("recording", ALL_RECORDINGS)
async def test_wireless_and_storage_are_none_without_their_tables(
    snmpsim: Simulator, engine: SnmpEngine, recording: str
) -> None:
    result = await poll(snmpsim, engine, recording)

    assert result.ok, result.error
    assert result.stale == {}
    # Wireless is only asked of MikroTik devices; none of the others has MIKROTIK-MIB.
    assert (result.wireless is not None) == bool(snmprec_rows(recording, MTXR_WIRELESS))
    assert (result.storage is not None) == bool(snmprec_rows(recording, HR_STORAGE_ENTRY))


def librenms_storage(recording: str) -> set[tuple[str, str, int, int]]:
    """LibreNMS's hrStorageTable rows as (name, kind, size, used): disks from ``storage``, RAM from ``mempools``."""
    rows = set()
    for disk in librenms(recording, "storage")["storage"]:
        if disk["type"] == "hrstorage":
            kind = "disk" if disk["storage_type"] == "hrStorageFixedDisk" else "other"
            rows.add((disk["storage_descr"], kind, disk["storage_size"], disk["storage_used"]))
    for pool in librenms(recording, "mempools")["mempools"]:
        if pool["mempool_type"] == "hrstorage":
            # LibreNMS's class "system" is hrStorageRam; "virtual" is the tmpfs row (hrStorageVirtualMemory).
            kind = "ram" if pool["mempool_class"] == "system" else "other"
            rows.add((pool["mempool_descr"], kind, pool["mempool_total"], pool["mempool_used"]))
    return rows


# RouterOS maps one to one; Net-SNMP's memory rows differ by design (see the EdgeOS test below).
@pytest.mark.parametrize("recording", [r for r in recordings_with("storage") if r.startswith("routeros")])
async def test_storage_matches_librenms(snmpsim: Simulator, engine: SnmpEngine, recording: str) -> None:
    result = await poll(snmpsim, engine, recording)

    assert result.ok, result.error
    assert result.stale == {}
    assert result.storage is not None
    ours = {(s.name, s.kind, s.size_bytes, s.used_bytes) for s in result.storage}
    assert ours == librenms_storage(recording)
    # The RAM row is the one SystemInfo's memory figures come from.
    [ram] = [s for s in result.storage if s.kind == "ram"]
    assert result.system is not None
    assert ram.size_bytes == result.system.total_memory
    assert ram.used_bytes is not None and ram.size_bytes is not None
    assert result.system.free_memory == ram.size_bytes - ram.used_bytes


async def test_net_snmp_storage_matches_librenms(snmpsim: Simulator, engine: SnmpEngine) -> None:
    result = await poll(snmpsim, engine, "edgeos")

    assert result.ok, result.error
    assert result.storage is not None
    disks = {(s.name, s.size_bytes, s.used_bytes) for s in result.storage if s.kind == "disk"}
    rows = librenms("edgeos", "storage")["storage"]
    want = {(d["storage_descr"], d["storage_size"], d["storage_used"]) for d in rows}
    # Every row LibreNMS lists; it leaves out /sys/fs/cgroup (empty, filtered on its side),
    # which the recording has and we report like any other fixed disk.
    cgroup_units = int(snmprec_value("edgeos", f"{HR_STORAGE_ENTRY}4.40") or 0)
    assert disks - want == {("/sys/fs/cgroup", 254563 * cgroup_units, 0)}
    assert want <= disks
    [ram] = [s for s in result.storage if s.kind == "ram"]
    [physical] = [m for m in librenms("edgeos", "mempools")["mempools"] if m["mempool_class"] == "system"]
    assert (ram.name, ram.size_bytes) == (physical["mempool_descr"], physical["mempool_total"])
    # Net-SNMP counts buffers and cache as used RAM; LibreNMS subtracts them, we keep hrStorageUsed.
    buffers, cached = (next(s for s in result.storage if s.name == n) for n in ("Memory buffers", "Cached memory"))
    assert ram.used_bytes is not None and buffers.used_bytes is not None and cached.used_bytes is not None
    assert ram.used_bytes - buffers.used_bytes - cached.used_bytes == physical["mempool_used"]
    # The swap, virtual-memory and other hrStorageOther rows are "other".
    assert {s.name for s in result.storage if s.kind == "other"} == {
        "Virtual memory", "Memory buffers", "Cached memory", "Shared memory", "Swap space"
    }


# -- SFP optics (MIKROTIK-MIB mtxrOpticalTable) ------------------------------------------------------------------

OPTICAL_OID = ".1.3.6.1.4.1.14988.1.1.19.1.1."
# mtxrOpticalTable column -> how LibreNMS's sensor for it reads (descr suffix, class)
LIBRENMS_OPTICAL = {"10": ("Rx", "dbm"), "9": ("Tx", "dbm"), "6": ("", "temperature")}


def librenms_optics(recording: str) -> dict[tuple[str, str], float]:
    """LibreNMS's optical sensors as (ifIndex, column) -> value, read off its sensors module."""
    found = {}
    for sensor in librenms(recording, "sensors")["sensors"]:
        oid = sensor["sensor_oid"]
        if oid.startswith(OPTICAL_OID):
            column, _, index = oid.removeprefix(OPTICAL_OID).partition(".")
            found[(index, column)] = float(sensor["sensor_current"])
    return found


def recordings_with_optics() -> list[str]:
    return [name for name in ALL_RECORDINGS
            if recording_path(name, ".json").exists() and "sensors" in _json(name) and librenms_optics(name)]


async def test_recordings_with_optics_are_found() -> None:
    assert recordings_with_optics() == ["routeros", "routeros_crs317", "routeros_rb760igs"]


@pytest.mark.parametrize("recording", recordings_with_optics())
async def test_optics_match_librenms(snmpsim: Simulator, engine: SnmpEngine, recording: str) -> None:
    result = await poll(snmpsim, engine, recording)

    assert result.ok, result.error
    assert result.optics is not None, result.stale
    expected = librenms_optics(recording)
    cages = sorted({index for index, _ in expected})
    ports = {str(i.ifindex): i.name for i in result.interfaces}
    by_name = {m.interface: m for m in result.optics}
    assert sorted(by_name) == sorted(ports.get(index) or snmprec_value(recording, f"1.3.6.1.4.1.14988.1.1.19.1.1.2."
                                                                        f"{index}") for index in cages)
    for index in cages:
        module = by_name[ports.get(index) or snmprec_value(recording, f"1.3.6.1.4.1.14988.1.1.19.1.1.2.{index}")]
        ours = {"10": module.rx_power_dbm, "9": module.tx_power_dbm, "6": module.temperature_c}
        if all(expected[(index, column)] == 0 for column in LIBRENMS_OPTICAL):
            # LibreNMS makes 0 dBm and 0 C sensors of an empty cage (every column zero); we say there is
            # no module, since 0 dBm would read as a strong signal.
            assert not module.present and set(ours.values()) == {None}, module
            continue
        assert module.present
        assert {column: ours[column] for column in LIBRENMS_OPTICAL} == {
            column: expected[(index, column)] for column in LIBRENMS_OPTICAL}


async def test_optics_of_the_rb952_sfp_in_full(snmpsim: Simulator, engine: SnmpEngine) -> None:
    # The one recording with a module in its cage: every column, in the MIB's units.
    result = await poll(snmpsim, engine, "routeros")

    wavelength = librenms("routeros", "transceivers")["transceivers"][0]["wavelength"]
    assert result.optics is not None
    (module,) = result.optics
    assert module == OpticalModule(
        interface=module.interface, present=True, rx_loss=False, tx_fault=False, rx_power_dbm=-5.673,
        tx_power_dbm=-4.879, temperature_c=40.0, supply_v=3.302, tx_bias_ma=7.0, wavelength_nm=float(wavelength))
    assert module.interface == "sfp1"


async def test_optics_are_absent_on_devices_without_the_table(snmpsim: Simulator, engine: SnmpEngine) -> None:
    # MIKROTIK-MIB without mtxrOptical: not collected (None), and not stale either.
    result = await poll(snmpsim, engine, "routeros_rblhgr")

    assert result.ok, result.error
    assert result.optics is None
    assert "optics" not in result.stale


# -- LTE (MIKROTIK-MIB mtxrLTEModemTable) ------------------------------------------------------------------------

LTE_OID = ".1.3.6.1.4.1.14988.1.1.16.1.1."
LTE_COLUMNS = {"rsrp": "4", "rsrq": "3", "sinr": "7"}  # LibreNMS's wireless sensor class -> the table's column


def librenms_lte(recording: str) -> dict[tuple[str, str], float]:
    """LibreNMS's LTE wireless sensors as (ifIndex, column) -> value."""
    found = {}
    for sensor in librenms(recording, "wireless")["wireless_sensors"]:
        (oid,) = json.loads(sensor["sensor_oids"]) if isinstance(sensor["sensor_oids"], str) else sensor["sensor_oids"]
        if oid.startswith(LTE_OID):
            column, _, index = oid.removeprefix(LTE_OID).partition(".")
            found[(index, column)] = float(sensor["sensor_current"])
    return found


def recordings_with_lte() -> list[str]:
    return [name for name in ALL_RECORDINGS
            if recording_path(name, ".json").exists() and "wireless" in _json(name) and librenms_lte(name)]


async def test_recordings_with_lte_are_found() -> None:
    assert recordings_with_lte() == ["routeros_ltap-mini", "routeros_rblhgr"]


@pytest.mark.parametrize("recording", recordings_with_lte())
async def test_lte_matches_librenms(snmpsim: Simulator, engine: SnmpEngine, recording: str) -> None:
    result = await poll(snmpsim, engine, recording)

    assert result.ok, result.error
    assert result.lte is not None, result.stale
    expected = librenms_lte(recording)
    ports = {str(i.ifindex): i.name for i in result.interfaces}
    indexes = sorted({index for index, _ in expected})
    assert [m.interface for m in result.lte] == [ports.get(index, f"ifIndex {index}") for index in indexes]
    for signal, index in zip(result.lte, indexes, strict=True):
        ours = {"4": signal.rsrp_dbm, "3": signal.rsrq_db, "7": signal.sinr_db}
        assert ours == {column: expected[(index, column)] for column in LTE_COLUMNS.values()}


async def test_lte_of_the_ltap_in_full(snmpsim: Simulator, engine: SnmpEngine) -> None:
    # RSSI 0 (this modem does not report it: no reading, not 0 dBm), the serving cell and the technology.
    result = await poll(snmpsim, engine, "routeros_ltap-mini")

    assert result.lte is not None
    (signal,) = result.lte
    assert (signal.rssi_dbm, signal.cell_id, signal.technology) == (None, "2100006", "Evolved 3G (LTE)")


# -- DHCP lease count (MIKROTIK-MIB mtxrDHCPLeaseCount) ----------------------------------------------------------

def librenms_dhcp_leases(recording: str) -> float | None:
    return next((float(s["sensor_current"]) for s in librenms(recording, "sensors")["sensors"]
                 if s["sensor_oid"] == ".1.3.6.1.4.1.14988.1.1.6.1.0"), None)


def recordings_with_dhcp() -> list[str]:
    return [name for name in ALL_RECORDINGS if recording_path(name, ".json").exists() and "sensors" in _json(name)
            and librenms_dhcp_leases(name) is not None]


async def test_recordings_with_dhcp_leases_are_found() -> None:
    assert recordings_with_dhcp() == ["routeros", "routeros_rb433gl", "routeros_rb750gr3", "routeros_rb760igs",
                                      "routeros_rblhgr"]


@pytest.mark.parametrize("recording", recordings_with_dhcp())
async def test_dhcp_lease_count_matches_librenms(snmpsim: Simulator, engine: SnmpEngine, recording: str) -> None:
    result = await poll(snmpsim, engine, recording)

    assert result.ok, result.error
    assert result.dhcp == (DhcpServer(ALL_SERVERS, leases=int(librenms_dhcp_leases(recording) or 0)),)


async def test_no_dhcp_scalar_is_not_collected(snmpsim: Simulator, engine: SnmpEngine) -> None:
    result = await poll(snmpsim, engine, "routeros_crs317")  # this recording has no mtxrDHCPLeaseCount
    assert result.ok and result.dhcp is None and "dhcp" not in result.stale
