"""Reading configuration from the lab's routers over the real RouterOS API and SNMP, then normalising it.

The lab serves real configuration menus (v6 or v7 shaped, secrets included, as RouterOS does to a
user with the sensitive policy); config_change and secret_change edit it on the timeline.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ispvm_tui.collectors.results import ConfigRead
from ispvm_tui.collectors.routeros import ApiTarget, RouterOSCollector
from ispvm_tui.collectors.snmp import SnmpCollector, SnmpTarget
from ispvm_tui.engine.api import CONFIG_CATEGORIES
from ispvm_tui.engine.config_normalise import diff_lines, fingerprint, normalise, summary
from ispvm_tui.lab.routeros_api_server import Misbehaviour
from ispvm_tui.lab.routeros_menus import render_menu
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import TimelineEntry, load_scenario
from ispvm_tui.tomlsource import SourceError

PASSWORD = "lab-Pa55-cfg"
COMMUNITY = "lab-c0mm-cfg"
SCENARIO = f"""
[scenario]
name = "config-read"
duration_s = 600

[lab]
password = "{PASSWORD}"
community = "{COMMUNITY}"

[console]
attach = ["CORE7"]

[[sites]]
name = "DC1"

[[devices]]
name = "CORE7"
site = "DC1"
role = "core"
ros_version = 7

[[devices]]
name = "EDGE6"
site = "DC1"
role = "edge"
ros_version = 6
interfaces = ["ether1", "ether2"]

[[links]]
a = "CORE7:ether1"
b = "EDGE6:ether1"

[[bgp_peers]]
device = "EDGE6"
name = "TRANSIT6"
remote_as = 64500
remote_address = "198.51.100.1"

[[bgp_peers]]
device = "CORE7"
name = "TRANSIT7"
remote_as = 64510
remote_address = "203.0.113.1"

[[ospf_neighbors]]
device = "CORE7"
neighbor = "EDGE6"
"""
DEVICES = ("CORE7", "EDGE6")


class StepClock:
    """Lab time that moves only when the test says so: counters and uptimes move exactly between reads."""

    speed = 1.0

    def __init__(self) -> None:
        self.t = time.time()

    def now(self) -> float:
        return self.t

    def to_real(self, seconds: float) -> float:
        return seconds

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
async def lab(tmp_path: Path, address_base: str) -> AsyncIterator[Lab]:
    path = tmp_path / "config-read.toml"
    path.write_text(SCENARIO)
    lab = Lab(load_scenario(path), StepClock(), address_base=address_base)
    await lab.start(play=False)
    yield lab
    await lab.stop()


def api(lab: Lab, name: str, *, password: str = PASSWORD, timeout: float = 3.0) -> RouterOSCollector:
    dev = lab.model.devices[name]
    target = ApiTarget(name=name, address=dev.address, username=lab.scenario.lab.username, password=password,
                       port=lab.api_servers[name].port)
    return RouterOSCollector(target, clock=lab.clock, timeout=timeout)


def snmp(lab: Lab, name: str, *, community: str = COMMUNITY) -> SnmpCollector:
    dev = lab.model.devices[name]
    target = SnmpTarget(name=name, address=dev.address, port=lab.snmp_agents[name].port, community=community,
                        timeout=0.5, retries=1)
    return SnmpCollector(target, clock=lab.clock, poll_timeout=5.0)


async def read(col: RouterOSCollector | SnmpCollector) -> ConfigRead:
    got = await col.read_config()
    assert got.ok, got.error
    return got


def change(lab: Lab, action: str, device: str, section: str) -> None:
    lab.model.apply(TimelineEntry(at=0, action=action, device=device, section=section))  # type: ignore[arg-type]


def prints(canonical: dict[str, str]) -> dict[str, str]:
    return {cat: fingerprint(text) for cat, text in canonical.items()}


# ---- RouterOS API ---------------------------------------------------------------------------


async def test_v6_and_v7_lab_routers_give_all_six_categories(lab: Lab) -> None:
    for name in DEVICES:
        col = api(lab, name)
        try:
            poll = await col.poll()
            assert poll.ok, poll.error
            connection = col._api
            got = await read(col)
            assert col._api is connection  # read over the poll's logged-in connection
        finally:
            await col.close()
        assert (got.device, got.collector) == (name, "api") and got.error is None
        canonical = normalise(got.menus)
        assert list(canonical) == list(CONFIG_CATEGORIES)
        bgp = json.loads(canonical["bgp"])
        if name == "EDGE6":  # v6 shapes; the v7 menus are skipped as missing, silently
            assert [p["name"] for p in bgp["/routing/bgp/peer"]] == ["TRANSIT6"]
            assert "/routing/bgp/connection" not in got.menus and "/routing/ospf/interface-template" not in got.menus
            assert json.loads(canonical["ospf"])["/routing/ospf/network"] == [
                {"area": "backbone", "disabled": "false", "network": "10.0.1.0/30"}]
        else:
            assert [c["name"] for c in bgp["/routing/bgp/connection"]] == ["TRANSIT7"]
            assert "/routing/bgp/peer" not in got.menus and "/routing/ospf/network" not in got.menus
            assert json.loads(canonical["ospf"])["/routing/ospf/interface-template"][0]["interfaces"] == "ether1"
        routes = json.loads(canonical["addressing"])["/ip/route"]
        assert {r["dst-address"] for r in routes} == {"0.0.0.0/0", "10.254.0.0/16"}  # static only, never learnt
        system = json.loads(canonical["system"])
        assert system["/system/identity"] == [{"name": name}]
        assert [u["name"] for u in system["/user"]] == ["admin", "noc"]
        assert COMMUNITY not in canonical["system"] and PASSWORD not in json.dumps(got.menus)


async def test_no_change_no_new_fingerprint_while_counters_and_uptimes_move(lab: Lab) -> None:
    for name in DEVICES:
        col = api(lab, name)
        try:
            reads = []
            for _ in range(3):
                reads.append(await read(col))
                lab.clock.t += 600  # type: ignore[attr-defined]
            poll = await col.poll()
        finally:
            await col.close()
        assert poll.ok and poll.system is not None
        fingerprints = [prints(normalise(r.menus)) for r in reads]
        assert fingerprints[0] == fingerprints[1] == fingerprints[2]
        # the firewall travels whole (an open menu): its counters moved between the reads
        counters = [[row["bytes"] for row in r.menus["/ip/firewall/filter"]] for r in reads]
        assert counters[0] != counters[1] != counters[2]


EXPECTED = {
    "bgp": "hold-time 3m -> 1m30s",
    "ospf": "cost 10 -> 20",
    "interfaces": "mtu 1500 -> 1492",
    "addressing": "added route 10.253.1.0/24",
    "firewall": 'added filter input accept comment="lab change 1"',
    "system": "203.0.113.2",
}


@pytest.mark.parametrize("section", list(EXPECTED))
async def test_config_change_changes_only_its_category_and_is_named(lab: Lab, section: str) -> None:
    for name in DEVICES:
        col = api(lab, name)
        try:
            before = normalise((await read(col)).menus)
            change(lab, "config_change", name, section)
            after = normalise((await read(col)).menus)
        finally:
            await col.close()
        changed = {cat for cat in before if before[cat] != after[cat]}
        assert changed == {section}, name
        line = summary(section, before[section], after[section])
        assert line.startswith(f"{section}: ") and EXPECTED[section] in line, line
        assert diff_lines(before[section], after[section])


def _secret(lab: Lab, name: str, section: str) -> str:
    dev = lab.model.devices[name]
    if section == "bgp":
        return dev.bgp_peers[0].tcp_md5_key
    if section == "ospf":
        return dev.config.ospf_templates[0].auth_key
    return dev.config.communities[1].name


@pytest.mark.parametrize("section", ["bgp", "ospf", "system"])
async def test_a_changed_secret_changes_no_fingerprint_and_never_reaches_the_output(lab: Lab, section: str) -> None:
    for name in DEVICES:
        dev = lab.model.devices[name]
        col = api(lab, name)
        try:
            first = await read(col)
            old_secret = _secret(lab, name, section)
            old_password = dev.config.users[1].password
            change(lab, "secret_change", name, section)
            new_secret = _secret(lab, name, section)
            second = await read(col)
        finally:
            await col.close()
        assert new_secret != old_secret and len(new_secret) >= 16
        if section == "system":
            assert dev.config.users[1].password != old_password
        # the lab really serves the secret to a client that asks for everything...
        served = {"bgp": "/routing/bgp/peer" if dev.ros_major < 7 else "/routing/bgp/connection",
                  "ospf": "/routing/ospf/interface" if dev.ros_major < 7 else "/routing/ospf/interface-template",
                  "system": "/snmp/community"}[section]
        assert new_secret in json.dumps(render_menu(dev, served, lab.model.now()))
        # ...but the proplist never asked for it, and the normalised output holds no trace of it
        before, after = normalise(first.menus), normalise(second.menus)
        assert before == after
        raw = json.dumps(first.menus) + json.dumps(second.menus)
        output = "".join(after.values()) + "".join(summary(c, before[c], after[c]) for c in after)
        output += "".join(line for c in after for line in diff_lines(before[c], after[c]))
        for secret in (old_secret, new_secret):
            assert secret not in raw and secret not in output
        if section == "system":
            assert COMMUNITY not in output and old_password not in raw + output
            poller = snmp(lab, name)  # the engine's community still answers
            try:
                assert (await poller.read_config()).ok
            finally:
                await poller.close()


async def test_a_version_without_a_menu_skips_it_and_a_failing_menu_leaves_its_category_out(lab: Lab) -> None:
    server = lab.api_servers["CORE7"]
    server.misbehaviour = Misbehaviour(trap_paths=frozenset({"/routing/bgp/template"}),
                                       garbage_paths=frozenset({"/ip/dns"}))
    col = api(lab, "CORE7")
    try:
        got = await read(col)
    finally:
        await col.close()
    canonical = normalise(got.menus)
    # bgp half read would look changed: it is not read at all; a garbled reply reconnects and moves on
    assert "bgp" not in canonical and "system" not in canonical
    left_out = ("/routing/bgp", "/system", "/user", "/snmp", "/ip/service", "/ip/dns")
    assert not any(p.startswith(left_out) for p in got.menus)
    assert set(canonical) == set(CONFIG_CATEGORIES) - {"bgp", "system"}


async def test_a_device_failure_is_a_failed_read_without_secrets(lab: Lab) -> None:
    col = api(lab, "EDGE6", password="wrong-" + PASSWORD)
    try:
        got = await col.read_config()
    finally:
        await col.close()
    assert not got.ok and got.menus == {} and got.error is not None
    assert "rejected" in got.error and PASSWORD not in got.error

    lab.model.apply(TimelineEntry(at=0, action="hang", device="CORE7"))
    col = api(lab, "CORE7", timeout=0.3)
    try:
        got = await col.read_config()
    finally:
        await col.close()
    assert not got.ok and got.error is not None and "no answer" in got.error and PASSWORD not in got.error


# ---- SNMP -----------------------------------------------------------------------------------


async def test_snmp_devices_give_system_and_interfaces(lab: Lab) -> None:
    for agent in lab.snmp_agents.values():
        agent.cache_max_age = 0.0  # a change shows at the next request
    for name in DEVICES:
        col = snmp(lab, name)
        try:
            first = await read(col)
            lab.clock.t += 600  # type: ignore[attr-defined]
            second = await read(col)
            change(lab, "config_change", name, "interfaces")
            third = await read(col)
        finally:
            await col.close()
        assert first.collector == "snmp"
        canonical = normalise(first.menus)
        assert list(canonical) == ["interfaces", "system"]
        assert json.loads(canonical["system"]) == {"/snmp:system": [{"name": name}]}
        rows = json.loads(canonical["interfaces"])["/snmp:interfaces"]
        assert rows[0] == {"descr": "ether1", "alias": f"to {'EDGE6' if name == 'CORE7' else 'CORE7'} ether1",
                           "admin-status": "up", "mtu": "1500"}
        assert prints(normalise(second.menus)) == prints(canonical)  # uptime and counters moved meanwhile
        after = normalise(third.menus)
        assert diff_lines(canonical["interfaces"], after["interfaces"]) == ["~ interface ether1: mtu 1500 -> 1492"]
        assert after["system"] == canonical["system"]
        assert COMMUNITY not in json.dumps(first.menus)


async def test_snmp_without_an_answer_is_a_failed_read(lab: Lab) -> None:
    col = snmp(lab, "CORE7", community="not-" + COMMUNITY)
    try:
        got = await col.read_config()
    finally:
        await col.close()
    assert not got.ok and got.menus == {} and got.error is not None
    assert "no SNMP response" in got.error and COMMUNITY not in got.error


# ---- scenario files -------------------------------------------------------------------------


def _scenario_with(tmp_path: Path, entry: str) -> Path:
    path = tmp_path / "changes.toml"
    path.write_text(SCENARIO + "\n[[timeline]]\nat = 10\n" + entry + "\n")
    return path


@pytest.mark.parametrize("entry", [
    'action = "config_change"\ndevice = "EDGE6"\nsection = "addressing"',
    'action = "secret_change"\ndevice = "CORE7"\nsection = "ospf"',
    'action = "secret_change"\ndevice = "EDGE6"\nsection = "system"',
])
def test_change_entries_load(tmp_path: Path, entry: str) -> None:
    assert load_scenario(_scenario_with(tmp_path, entry)).timeline[0].section is not None


@pytest.mark.parametrize(("entry", "message"), [
    ('action = "secret_change"\ndevice = "EDGE6"\nsection = "firewall"',
     "timeline[0].section: secret_change changes a secret of bgp, ospf, system; 'firewall' has none"),
    ('action = "config_change"\ndevice = "EDGE6"\nsection = "routing"', "timeline[0].section:"),
    ('action = "secret_change"\ndevice = "EDGE6"', "action 'secret_change' needs: section"),
])
def test_bad_change_entries_name_the_file_and_line(tmp_path: Path, entry: str, message: str) -> None:
    path = _scenario_with(tmp_path, entry)
    with pytest.raises(SourceError) as info:
        load_scenario(path)
    assert f"{path}:" in str(info.value) and message in str(info.value), str(info.value)


def test_a_change_needs_something_to_change(tmp_path: Path) -> None:
    text = SCENARIO.replace('[[bgp_peers]]\ndevice = "CORE7"', '[[bgp_peers]]\ndevice = "EDGE6"')
    text = text.replace('name = "TRANSIT7"', 'name = "TRANSIT7B"')
    path = tmp_path / "nobgp.toml"
    path.write_text(text + '\n[[timeline]]\nat = 10\naction = "config_change"\ndevice = "CORE7"\nsection = "bgp"\n')
    with pytest.raises(SourceError) as info:
        load_scenario(path)
    line = path.read_text().splitlines().index('section = "bgp"') + 1
    assert f"{path}:{line}: timeline[0].section: device 'CORE7' has no BGP peer to change" in str(info.value)


async def test_an_api_read_that_fails_while_snmp_answers_is_no_change(lab: Lab, tmp_path: Path) -> None:
    """On a loaded host the API read can time out while SNMP answers: SNMP's view of the interfaces differs
    from the API's, so comparing the two paged a change nobody made. A fingerprint is compared only with the
    last one from the same source; a real change is still found by both."""
    from ispvm_tui.config import ConfigWatch as ConfigWatchSettings
    from ispvm_tui.engine import config_watch
    from ispvm_tui.engine.store import Store

    store = Store(tmp_path / "cw.duckdb")
    query = store.query_dicts
    watcher = config_watch.ConfigWatcher(ConfigWatchSettings(), ["EDGE6"])

    def take(reads: list[ConfigRead]) -> list[object]:
        lab.clock.t += 600  # type: ignore[attr-defined]
        categories = watcher.categories(reads)
        now = lab.clock.now()
        changes = store.transaction(lambda con: watcher.apply("EDGE6", categories, now, con)).result(timeout=30)
        watcher.commit("EDGE6", categories, changes, now)
        return changes

    for agent in lab.snmp_agents.values():
        agent.cache_max_age = 0.0
    a, s = api(lab, "EDGE6"), snmp(lab, "EDGE6")
    try:
        assert take([await read(a), await read(s)]) == []  # the baseline (the API's)
        assert take([await read(s)]) == []  # the API failed: SNMP's first view is its own baseline
        assert take([await read(a), await read(s)]) == []
        assert take([await read(s)]) == []
        change(lab, "config_change", "EDGE6", "interfaces")
        via_snmp = take([await read(s)])
        via_api = take([await read(a), await read(s)])
    finally:
        await a.close()
        await s.close()
    assert [c.category for c in via_snmp] == ["interfaces"]
    assert [c.category for c in via_api] == ["interfaces"]
    listed = config_watch.list_changes(query)
    assert sorted(c.version for c in listed) == sorted(c.version for c in via_snmp + via_api)
    # The default diff of the newest version pairs it with the same source's version before it.
    assert all(line.startswith(("~", "+", "-")) for line in config_watch.diff(query, "EDGE6", "interfaces"))
    assert config_watch.diff(query, "EDGE6", "interfaces")
    # A restart keeps comparing like with like.
    again = config_watch.ConfigWatcher(ConfigWatchSettings(), ["EDGE6"])
    again.restore(query)
    assert again._last.keys() == watcher._last.keys()
    store.close()
