"""engine/config_normalise.py on real RouterOS export text and API reply rows, and on v7 export text."""

from __future__ import annotations

import json

import pytest

from ispvm_tui.engine.api import CONFIG_CATEGORIES
from ispvm_tui.engine.config_normalise import (
    API_MENUS,
    SPECS,
    Menus,
    category_of,
    diff_lines,
    fingerprint,
    is_secret,
    normalise,
    parse_export,
    summary,
)
from tests.conftest import SHARED

FIXTURES = SHARED / "fixtures" / "routeros-api"
CLI = FIXTURES / "community.routeros-cli" / "facts"
NAPALM = FIXTURES / "napalm-ros"

# What a v7 router's `/export` prints (RouterOS 7.14 wraps long lines with "\" and indents the rest).
V7_EXPORT = r"""# 2024-05-01 10:10:52 by RouterOS 7.14.3
# software id = 7KQH-XL2V
#
# model = CCR2004-16G-2S+
# serial number = HFD08A1BF2C
/interface ethernet
set [ find default-name=ether1 ] comment="to TRANSIT1 \"primary\"" mtu=1500
set [ find default-name=ether2 ] comment=core l2mtu=1592
/interface vlan
add interface=ether2 name=vlan100 vlan-id=100
/routing bgp template
set default as=65001 router-id=10.255.0.1
/routing bgp connection add as=65001 local.role=ebgp name=TRANSIT1 remote.address=192.0.2.1/32 .as=64500 \
    tcp-md5-key=s3cret-md5 templates=default
add as=65001 hold-time=1m30s input.filter=bgp-in local.role=ebgp name=TRANSIT2 output.filter-chain=\
    bgp-out remote.address=198.51.100.1/32 .as=64510
/routing filter rule
add chain=bgp-in rule="if (dst in 10.0.0.0/8 && dst-len in 8-32) { reject; }"
add chain=bgp-in rule="accept;"
/routing ospf instance
add name=default-v2 router-id=10.255.0.1
/routing ospf area
add instance=default-v2 name=backbone
/routing ospf interface-template add area=backbone interfaces=ether1 auth-key=xyz-ospf-key auth=md5 cost=10
/ip address
add address=10.0.3.1/30 interface=ether3 network=10.0.3.0
add address=192.0.2.2/30 comment=transit interface=ether1 network=192.0.2.0
/ip firewall filter
add action=accept chain=input comment="defconf: accept established,related,untracked" connection-state=\
    established,related,untracked
add action=accept chain=forward connection-state=established,related
add action=drop chain=input in-interface=ether1
/ip route
add dst-address=0.0.0.0/0 gateway=192.0.2.1
add comment="customer pools" dst-address=10.254.0.0/16 gateway=10.0.3.2
/ppp secret
add name=cpe-1001 password=pppoe-pass-1001 profile=default service=pppoe
/interface wireless security-profiles
set [ find default=yes ] wpa2-pre-shared-key=wifi-psk-secret
/snmp community
set [ find default=yes ] addresses=10.0.0.0/8 name=c0mmunity-n4me
/system clock
set time-zone-name=Europe/Berlin
/system identity
set name=EDGE1
/system ntp client
set enabled=yes servers=192.0.2.123
"""
SECRETS = ("s3cret-md5", "xyz-ospf-key", "pppoe-pass-1001", "wifi-psk-secret", "c0mmunity-n4me")


def napalm(case: str, command: str) -> list[dict[str, str]]:
    """Reply rows as the router sent them: librouteros had cast them, so booleans and ints go back to text."""
    data = json.loads((NAPALM / case / f"_{command}.json").read_text())["data"]

    def text(value: object) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    return [{k: text(v) for k, v in row.items()} for row in data]


def prints(*rows: dict[str, str]) -> list[dict[str, str]]:
    return [dict(r) for r in rows]


def fingerprints(menus: Menus) -> dict[str, str]:
    return {cat: fingerprint(text) for cat, text in normalise(menus).items()}


def all_output(canonical: dict[str, str], old: dict[str, str] | None = None) -> str:
    """Everything normalise, diff_lines and summary produce for two reads."""
    parts = list(canonical.values())
    for cat, new in canonical.items():
        before = (old or {}).get(cat)
        parts.append(summary(cat, before, new))
        if before is not None:
            parts += diff_lines(before, new)
    return "\n".join(parts)


# ---- real export text (RouterOS 6.42.5) ----------------------------------------------------


def test_the_v6_fixture_export_parses_and_only_known_menus_count() -> None:
    menus = parse_export((CLI / "export").read_text())
    assert menus["/ip/address"] == [
        {"address": "192.168.88.1/24", "comment": "defconf", "interface": "ether1", "network": "192.168.88.0"}]
    # `set [ find default=yes ]` keeps its selector; `set time ...` names its item
    assert menus["/interface/wireless/security-profiles"] == [{"default": "yes", "supplicant-identity": "MikroTik"}]
    assert {"name": "time", "disabled": "yes", "display-time": "5s"} in menus["/system/lcd/page"]
    assert "/tool/user-manager/customer" in menus  # kept, but in no category
    assert category_of("/tool/user-manager/customer") is None and category_of("/ip address") == "addressing"
    canonical = normalise(menus)
    assert list(canonical) == ["addressing"]  # the other menus belong to no category: they never count
    assert json.loads(canonical["addressing"]) == {"/ip/address": [
        {"address": "192.168.88.1/24", "comment": "defconf", "interface": "ether1", "network": "192.168.88.0"}]}


def test_verbose_export_and_another_header_give_the_same_fingerprints() -> None:
    compact = (CLI / "export").read_text()
    verbose = (CLI / "export_verbose").read_text()
    later = compact.replace("# sep/25/2018 10:10:52 by RouterOS 6.42.5", "# oct/01/2018 08:00:01 by RouterOS 6.42.7")
    later = later.replace("# software id = 9EER-511K", "# software id = 9EER-511K\n# model = RB750Gr3")
    assert fingerprints(parse_export(compact)) == fingerprints(parse_export(verbose))
    assert fingerprints(parse_export(compact)) == fingerprints(parse_export(later))


# ---- real API rows (napalm-ros, RouterOS 6) -------------------------------------------------


def test_api_rows_keep_configuration_and_drop_counters_and_dynamic_rows() -> None:
    interfaces = napalm("test_get_interfaces_counters/normal", "interface_print")
    menus: Menus = {
        "/interface": interfaces,
        "/ip/address": napalm("test_get_interfaces_ip/both", "ip_address_print"),  # a DHCP (dynamic) address
    }
    canonical = normalise(menus)
    rows = json.loads(canonical["interfaces"])["/interface"]
    assert {r["name"] for r in rows} == {r["name"] for r in interfaces}
    assert all(set(r) <= {"name", "type", "mtu", "l2mtu", "comment", "disabled"} for r in rows)
    assert json.loads(canonical["addressing"]) == {"/ip/address": []}  # present, the one row being dynamic

    # A minute later: every counter, link-down count and link time moved; the fingerprint did not.
    moved = [{k: (str(int(v) + 1000) if v.isdigit() and k not in ("mtu", "l2mtu", "max-l2mtu") else v)
              for k, v in row.items()} for row in interfaces]
    for row in moved:
        row["last-link-up-time"] = "oct/05/2017 07:00:00"
        row["running"] = "true" if row["running"] == "false" else "false"
    assert moved != interfaces
    assert fingerprints({**menus, "/interface": moved}) == fingerprints(menus)


def test_v6_bgp_peer_rows_lose_their_md5_key_and_their_session_state() -> None:
    peer = napalm("test_get_bgp_neighbors_detail/normal", "routing_bgp_peer_print")
    instance = napalm("test_get_bgp_neighbors_detail/normal", "routing_bgp_instance_print")
    menus: Menus = {"/routing/bgp/peer": peer, "/routing/bgp/instance": instance}
    canonical = normalise(menus)["bgp"]
    (row,) = json.loads(canonical)["/routing/bgp/peer"]
    assert row["name"] == "A Peer" and row["remote-as"] == "65535" and row["hold-time"] == "30s"
    assert not {"tcp-md5-key", "uptime", "prefix-count", "state", "established", "updates-received"} & set(row)
    assert "*****" not in canonical
    down = [{**peer[0], "state": "active", "established": "false", "uptime": "", "prefix-count": "0"}]
    assert fingerprints({**menus, "/routing/bgp/peer": down}) == fingerprints(menus)


def test_system_menus_keep_settings_never_the_community_name() -> None:
    menus: Menus = {
        "/system/ntp/client": napalm("test_get_ntp_servers/ip_and_fqdn", "system_ntp_client_print"),
        "/snmp": napalm("test_get_snmp_information/normal", "snmp_print"),
        "/snmp/community": napalm("test_get_snmp_information/normal", "snmp_community_print"),
        "/user": napalm("test_get_users/no_keys", "user_print"),
        "/system/identity": napalm("test_get_facts/pc", "system_identity_print"),
    }
    canonical = normalise(menus)["system"]
    parsed = json.loads(canonical)
    assert parsed["/system/ntp/client"] == [{"enabled": "true", "mode": "unicast", "primary-ntp": "1.1.1.1",
                                             "secondary-ntp": "2.2.2.2",
                                             "server-dns-names": "0.pl.pool.ntp.org,1.pl.pool.ntp.org,"
                                                                 "2.pl.pool.ntp.org,3.pl.pool.ntp.org"}]
    assert parsed["/user"] == [{"comment": "system default user", "disabled": "false", "group": "full",
                                "name": "admin"}]
    assert parsed["/snmp/community"] == [{"addresses": "0.0.0.0/0", "authentication-protocol": "MD5",
                                          "encryption-protocol": "DES", "read-access": "true", "security": "none",
                                          "write-access": "false"}]
    assert "public" not in canonical  # the community's name and the trap community are both secrets
    # the NTP client's last update, adjustment and active server are state
    later = [{**menus["/system/ntp/client"][0], "last-update-before": "1m2s", "last-adjustment": "3ms",
              "active-server": "1.1.1.1"}]
    assert fingerprints({**menus, "/system/ntp/client": later}) == fingerprints(menus)


# ---- v7 export text -----------------------------------------------------------------------


def test_v7_export_parses_continuations_quotes_and_dotted_shorthand() -> None:
    menus = parse_export(V7_EXPORT)
    conns = menus["/routing/bgp/connection"]
    assert conns[0] == {"as": "65001", "local.role": "ebgp", "name": "TRANSIT1", "remote.address": "192.0.2.1/32",
                        "remote.as": "64500", "tcp-md5-key": "s3cret-md5", "templates": "default"}
    # a line wrapped inside a value joins without the continuation's indent
    assert conns[1]["output.filter-chain"] == "bgp-out" and conns[1]["remote.as"] == "64510"
    assert menus["/interface/ethernet"][0] == {"default-name": "ether1", "comment": 'to TRANSIT1 "primary"',
                                               "mtu": "1500"}
    assert menus["/ip/firewall/filter"][0]["connection-state"] == "established,related,untracked"
    assert menus["/routing/filter/rule"][0]["rule"] == "if (dst in 10.0.0.0/8 && dst-len in 8-32) { reject; }"
    assert menus["/system/identity"] == [{"name": "EDGE1"}]
    assert menus["/routing/bgp/template"] == [{"name": "default", "as": "65001", "router-id": "10.255.0.1"}]
    assert set(normalise(menus)) == set(CONFIG_CATEGORIES)


def test_a_changed_remote_as_changes_only_bgp_and_is_named() -> None:
    before = normalise(parse_export(V7_EXPORT))
    after = normalise(parse_export(V7_EXPORT.replace(".as=64500", ".as=64501")))
    changed = {cat for cat in before if fingerprint(before[cat]) != fingerprint(after[cat])}
    assert changed == {"bgp"}
    assert diff_lines(before["bgp"], after["bgp"]) == ["~ connection TRANSIT1: remote.as 64500 -> 64501"]
    assert summary("bgp", before["bgp"], after["bgp"]) == "bgp: connection TRANSIT1 remote.as 64500 -> 64501"
    assert summary("bgp", None, before["bgp"]) == "bgp: first fingerprint (2 connections, 1 template)"
    assert summary("bgp", before["bgp"], before["bgp"]) == "bgp: no change"


def test_changed_secrets_change_no_fingerprint_and_appear_nowhere() -> None:
    text = V7_EXPORT
    changed = text
    for secret in SECRETS:
        changed = changed.replace(secret, secret[::-1] + "-new")
    before, after = normalise(parse_export(text)), normalise(parse_export(changed))
    assert before == after
    output = all_output(after, before) + all_output(before)
    for secret in SECRETS:
        assert secret not in output and secret[::-1] + "-new" not in output
    # ...while a change next to a secret is still seen
    near = normalise(parse_export(text.replace("auth-key=xyz-ospf-key auth=md5 cost=10",
                                               "auth-key=xyz-ospf-key auth=md5 cost=20")))
    assert diff_lines(before["ospf"], near["ospf"]) == ["~ interface-template ether1 in backbone: cost 10 -> 20"]
    assert "xyz-ospf-key" not in all_output(near, before)


def test_unknown_secret_looking_attributes_are_dropped_too() -> None:
    row = {"name": "TRANSIT1", "remote.as": "64500", "future-auth-key": "k1", "bfd-secret-id": "k2",
           "api-password-hash": "k3", "x-passphrase": "k4", "remote.key": "k5"}
    canonical = normalise({"/routing/bgp/connection": [row]})["bgp"]
    assert all(f"k{i}" not in canonical for i in range(1, 6))
    assert all(is_secret(k) for k in row if k.startswith(("future", "bfd", "api", "x-", "remote.key")))
    assert not any(is_secret(a) for a in ("keepalive-time", "auth", "auth-id", "authentication-key-id", "name"))
    # the open menus (firewall) drop them as well
    rule = {"chain": "input", "action": "accept", "ipsec-psk": "k6", "my-secret": "k7"}
    assert "k6" not in normalise({"/ip/firewall/filter": [rule]})["firewall"]
    assert "k7" not in normalise({"/ip/firewall/filter": [rule]})["firewall"]


def test_v6_and_v7_bgp_both_land_in_bgp() -> None:
    v6 = normalise({"/routing/bgp/peer": napalm("test_get_bgp_neighbors_detail/normal", "routing_bgp_peer_print")})
    v7 = normalise(parse_export(V7_EXPORT))
    assert "bgp" in v6 and "bgp" in v7
    assert {SPECS[p].category for p in ("/routing/bgp/peer", "/routing/bgp/instance", "/routing/bgp/connection",
                                        "/routing/bgp/template")} == {"bgp"}
    assert {SPECS[p].category for p in ("/routing/ospf/interface", "/routing/ospf/network",
                                        "/routing/ospf/interface-template", "/routing/ospf/instance")} == {"ospf"}
    assert SPECS["/routing/filter"].category == SPECS["/routing/filter/rule"].category == "addressing"


# ---- values, rows and keys ------------------------------------------------------------------


def test_values_are_text_booleans_unified_free_text_kept() -> None:
    api = normalise({"/interface/vlan": [{"name": "vlan007", "vlan-id": "007", "arp": "enabled",
                                          "disabled": "false", "comment": "yes"}]})
    export = normalise(parse_export('/interface vlan\nadd name=vlan007 vlan-id=007 arp=enabled disabled=no '
                                    'comment="yes"\n'))
    assert api == export
    (row,) = json.loads(api["interfaces"])["/interface/vlan"]
    assert row == {"name": "vlan007", "vlan-id": "007", "arp": "enabled", "disabled": "false", "comment": "yes"}


def test_escapes_in_quoted_values() -> None:
    menus = parse_export('/system identity\nset name="core \\"A\\" \\41\\_1"\n')
    assert menus["/system/identity"] == [{"name": 'core "A" A 1'}]


def test_path_spellings_are_one_menu() -> None:
    spaced = parse_export("/ip firewall filter\nadd chain=input action=drop\n")
    slashed = parse_export("/ip/firewall/filter\nadd chain=input action=drop\n")
    assert spaced == slashed == {"/ip/firewall/filter": [{"chain": "input", "action": "drop"}]}
    assert normalise({"/ip firewall filter": [{"chain": "input", "action": "drop"}]}) == normalise(slashed)


def test_only_static_routes_are_configuration() -> None:
    route = {"dst-address": "10.9.0.0/24", "gateway": "10.0.0.1", "distance": "1", "static": "true",
             "active": "true", "dynamic": "false"}
    learnt = [
        {"dst-address": "10.0.0.0/30", "gateway": "ether1", "dynamic": "true", "connect": "true"},
        {"dst-address": "100.64.0.0/24", "gateway": "10.0.0.1", "dynamic": "true", "bgp": "true"},
        {"dst-address": "100.65.0.0/24", "gateway": "10.0.0.1", "dynamic": "true", "ospf": "true"},
        {"dst-address": "100.66.0.0/24", "gateway": "10.0.0.1", "active": "true", "static": "false"},
    ]
    canonical = normalise({"/ip/route": [route, *learnt]})["addressing"]
    assert json.loads(canonical) == {"/ip/route": [
        {"dst-address": "10.9.0.0/24", "gateway": "10.0.0.1", "distance": "1"}]}
    moved = normalise({"/ip/route": [route, *learnt[:2]]})["addressing"]
    assert moved == canonical
    assert SPECS["/ip/route"].query == ("?dynamic=no",)  # the router sends only configured routes


def test_rows_are_named_by_natural_keys_never_by_id() -> None:
    addresses = [{".id": "*1", "address": "10.0.3.1/30", "interface": "ether3", "network": "10.0.3.0"},
                 {".id": "*2", "address": "10.0.4.1/30", "interface": "ether4", "network": "10.0.4.0"}]
    renumbered = [{**a, ".id": f"*{9 - i}"} for i, a in enumerate(reversed(addresses))]
    before = normalise({"/ip/address": addresses})["addressing"]
    assert normalise({"/ip/address": renumbered})["addressing"] == before
    after = normalise({"/ip/address": addresses[1:]})["addressing"]
    assert diff_lines(before, after) == ["- address 10.0.3.1/30 on ether3"]
    assert summary("addressing", before, after) == "addressing: removed address 10.0.3.1/30 on ether3"


def test_firewall_rules_by_chain_and_position() -> None:
    rules = [
        {"chain": "input", "action": "accept", "connection-state": "established,related", "bytes": "1", "packets": "1"},
        {"chain": "forward", "action": "fasttrack-connection", "bytes": "5", "packets": "9"},
        {"chain": "input", "action": "drop", "bytes": "1", "packets": "1"},
    ]
    counters = {"chain": "forward", "action": "passthrough", "dynamic": "true", "bytes": "77",
                "comment": "special dummy rule to show fasttrack counters"}
    before = normalise({"/ip/firewall/filter": [counters, *rules]})["firewall"]
    # chains interleaved differently, counters moved: the same rules
    shuffled = [{**rules[0], "bytes": "900"}, {**rules[2], "packets": "3"}, rules[1]]
    assert normalise({"/ip/firewall/filter": shuffled})["firewall"] == before
    # within a chain the order is the meaning
    swapped = [rules[2], rules[1], rules[0]]
    assert normalise({"/ip/firewall/filter": swapped})["firewall"] != before

    added = [rules[0], {"chain": "input", "action": "accept", "src-address": "10.0.0.0/8"},
             {"chain": "input", "action": "accept", "protocol": "icmp"}, rules[1],
             {**rules[2], "in-interface": "ether1"}]
    after = normalise({"/ip/firewall/filter": added})["firewall"]
    assert diff_lines(before, after) == [
        "+ filter input accept src-address=10.0.0.0/8",
        "+ filter input accept protocol=icmp",
        "~ filter input #4: in-interface (none) -> ether1",
    ]
    assert summary("firewall", before, after) == "firewall: 2 rules added, 1 changed"
    assert summary("firewall", None, after) == "firewall: first fingerprint (5 rules)"


def test_snmp_communities_are_kept_by_position_not_name() -> None:
    public = {"name": "public", "addresses": "0.0.0.0/0", "read-access": "true", "write-access": "false"}
    before = normalise({"/snmp/community": [public]})["system"]
    assert normalise({"/snmp/community": [{**public, "name": "n3w-secret"}]})["system"] == before
    after = normalise({"/snmp/community": [{**public, "name": "n3w-secret", "write-access": "true"}]})["system"]
    assert diff_lines(before, after) == ["~ community #1: write-access false -> true"]
    assert "public" not in before + after and "n3w-secret" not in summary("system", before, after)


def test_v7_ospf_status_table_does_not_count_beside_templates() -> None:
    templates = [{"area": "backbone", "interfaces": "ether1", "cost": "10"}]
    status = [{"interface": "ether1", "cost": "10", "state": "ptp", "dynamic": "true"},
              {"interface": "ether2", "cost": "10", "state": "ptp"}]
    with_status = normalise({"/routing/ospf/interface-template": templates, "/routing/ospf/interface": status})
    alone = normalise({"/routing/ospf/interface-template": templates})
    assert with_status == alone
    v6 = normalise({"/routing/ospf/interface": status})["ospf"]
    assert json.loads(v6) == {"/routing/ospf/interface": [{"cost": "10", "interface": "ether2"}]}


def test_absent_menus_are_absent_and_empty_menus_empty() -> None:
    canonical = normalise({"/ip/firewall/filter": [], "/tool/sniffer": [{"filter-ip-address": "1.2.3.4"}]})
    assert canonical == {"firewall": '{"/ip/firewall/filter":[]}'}
    assert summary("firewall", None, canonical["firewall"]) == "firewall: first fingerprint (nothing configured)"
    assert normalise({}) == {}


def test_canonical_text_is_compact_and_sorted() -> None:
    text = normalise({"/system/identity": [{"name": "R1", ".id": "*1"}], "/ip/dns": [{"servers": "1.1.1.1"}]})
    assert text["system"] == '{"/ip/dns":[{"servers":"1.1.1.1"}],"/system/identity":[{"name":"R1"}]}'
    assert fingerprint(text["system"]) == fingerprint(text["system"]) and len(fingerprint(text["system"])) == 64


def test_several_kinds_of_change_summarised() -> None:
    before = normalise({"/system/ntp/client": [{"servers": "a"}], "/ip/dns": [{"servers": "b"}]})["system"]
    after = normalise({"/system/ntp/client": [{"servers": "c"}], "/ip/dns": [{"servers": "d"}]})["system"]
    assert summary("system", before, after) == "system: 2 entries changed (ntp client, dns)"


@pytest.mark.parametrize("bad", ["", "not json", "[1, 2]", '{"/ip/address": {"a": 1}}', '{"/ip/address": [1]}'])
def test_diff_of_a_bad_text_is_a_clear_error(bad: str) -> None:
    good = normalise({"/ip/address": []})["addressing"]
    with pytest.raises(ValueError, match="not a canonical configuration text"):
        diff_lines(bad, good)
    with pytest.raises(ValueError, match="not a canonical configuration text"):
        summary("addressing", good, bad)


def test_every_category_has_menus_and_every_menu_a_category() -> None:
    assert {spec.category for spec in SPECS.values()} == set(CONFIG_CATEGORIES)


def test_every_api_menu_asks_only_for_what_it_keeps() -> None:
    for path in API_MENUS:
        spec = SPECS[path]
        props = spec.proplist()
        assert not any(is_secret(p) or p in spec.secrets for p in props), path
        if spec.keep is not None:
            assert set(spec.keep) <= set(props) | spec.secrets, path
        else:  # the open menus: rules without secrets, asked for whole
            assert spec.category in ("firewall", "addressing"), path
    assert "name" not in SPECS["/snmp/community"].proplist()
    assert "tcp-md5-key" not in SPECS["/routing/bgp/connection"].proplist()

