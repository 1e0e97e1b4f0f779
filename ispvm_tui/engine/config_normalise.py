"""Router configuration as canonical, secret-free text per category, its fingerprint and readable diffs.

Pure functions, no I/O. The engine fingerprints each category of a device's
configuration (``CONFIG_CATEGORIES``); what counts is decided here, by one
table of menus (``_SPECS``):

* **allow-list**: a menu keeps only its configured attributes; dynamic rows
  and rows that are state rather than configuration (connected, BGP or OSPF
  routes) are dropped; ``.id`` never counts, rows are named by a natural key
  (name, address + interface, dst-address, chain + position);
* **volatile content never counts**: counters, uptimes, running and status
  flags, clocks, lease times; they are simply not on the allow-list, and a
  global list drops them from the few open menus too;
* **secrets never survive**: an attribute is dropped if its menu names it a
  secret or its name looks like one (``*-key``, ``*secret*``,
  ``*password*``, ``*passphrase*``...). Nothing derived from a secret (no
  hash, no "has a key" flag) is kept, so a changed secret changes no
  fingerprint: secret changes are not detected, by design. SNMP communities
  are kept by position with their access flags, never by name.

Firewall rules and v6 routing filters are *open* menus: every attribute is a
matcher or an action, there are dozens and each version adds more, so they
keep every attribute except the volatile ones (they hold no secrets).

Values are compared as text: quotes stripped, RouterOS booleans
(``yes``/``no``/``true``/``false``) as ``true``/``false``, an empty value the
same as an absent one, anything else exactly as sent ("007" stays "007").
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ispvm_tui.engine.api import CONFIG_CATEGORIES

Row = dict[str, str]
Menus = dict[str, list[dict[str, str]]]  # menu path ("/routing/bgp/connection") -> rows as the router sent them

_TRUE = frozenset({"true", "yes"})
_FALSE = frozenset({"false", "no"})
# Free text is never read as a boolean: a comment "yes" stays "yes".
_FREE_TEXT = frozenset({"comment", "name", "contact", "location", "descr", "alias", "rule"})

# Never configuration, whatever the menu (the open menus rely on this list).
VOLATILE = frozenset({
    ".id", ".nextid", ".about", ".flags", "flags", "dynamic", "invalid", "inactive", "active", "running",
    "bytes", "packets", "rx-byte", "tx-byte", "rx-packet", "tx-packet", "rx-drop", "tx-drop", "tx-queue-drop",
    "rx-error", "tx-error", "fp-rx-byte", "fp-tx-byte", "fp-rx-packet", "fp-tx-packet", "link-downs",
    "last-link-up-time", "last-link-down-time", "actual-mtu", "uptime", "established", "state", "status",
    "prefix-count", "expires-after", "last-seen", "age", "last-logged-in", "updates-sent", "updates-received",
    "withdrawn-sent", "withdrawn-received", "remote-id", "used-hold-time", "used-keepalive-time",
    "remote-hold-time", "refresh-capability", "as4-capability", "time", "date", "gmt-offset", "dst-active",
    "cache-used", "dynamic-servers", "active-server", "last-update-from", "last-update-before",
    "last-adjustment", "freq-drift", "synced-server", "synced-stratum", "system-offset", "hw-offloaded",
    "actual-interface", "immediate-gw", "gateway-status", "slave", "default",
})

# Secrets by name, in every menu; per-menu lists add the ones no pattern can see (a community's name).
_SECRET_NAMES = frozenset({
    "tcp-md5-key", "auth-key", "authentication-key", "wpa-pre-shared-key", "wpa2-pre-shared-key", "passphrase",
    "secret", "password", "authentication-password", "encryption-password", "private-key", "key", "psk",
    "trap-community", "pre-shared-key", "radius-secret", "management-protection-key",
})
_SECRET_WORDS = ("secret", "password", "passwd", "passphrase", "pre-shared", "private-key", "psk")


def is_secret(attribute: str) -> bool:
    """True for an attribute whose value must never be kept (by name or by its look)."""
    name = attribute.lower()
    return (name in _SECRET_NAMES or name.endswith(("-key", ".key"))
            or any(word in name for word in _SECRET_WORDS))


# ---- the menu table ------------------------------------------------------------------


@dataclass(frozen=True)
class MenuSpec:
    """How one menu counts: which category, which attributes, how its rows are named and ordered."""

    path: str
    category: str
    noun: str  # names rows in diffs: "connection TRANSIT1"
    keep: frozenset[str] | None  # allow-listed attributes; None: an open menu (all but volatile ones)
    key: tuple[str, ...] = ("name",)  # natural key; "a|b" takes the first present; () one row (singleton)
    label: str | None = None  # how a key reads ("{address} on {interface}"); default: the key values
    order: str = "key"  # "key": sorted by key; "chain": as sent within each chain; "position": as sent
    item: str | None = None  # what summaries count ("rule"); default: the noun
    secrets: frozenset[str] = frozenset()  # secrets of this menu that no pattern recognises
    drop_when: tuple[tuple[str, str], ...] = (("dynamic", "true"),)  # rows that are state, not configuration
    query: tuple[str, ...] = ()  # API query words so that only configuration rows travel
    superseded_by: str | None = None  # ignored when this menu was read too (v7's status table of the same name)

    @property
    def counted(self) -> str:
        return self.item or self.noun

    def proplist(self) -> tuple[str, ...]:
        """Attributes to ask the router for; () for an open menu (the whole row travels)."""
        if self.keep is None:
            return ()
        wanted = set(self.keep) | {a for k in self.key for a in k.split("|")} | {a for a, _ in self.drop_when}
        return tuple(sorted(a for a in wanted if not is_secret(a) and a not in self.secrets))


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_NOT_STATE = (("dynamic", "true"),)
# A route the router made (connected, learnt) is state; so is a row that is only active, not static.
_ROUTE_STATE = (("dynamic", "true"), ("connect", "true"), ("bgp", "true"), ("ospf", "true"), ("rip", "true"),
                ("static", "false"))


def _rules(path: str, category: str, noun: str, item: str = "rule") -> MenuSpec:
    """An open menu of rules whose order within a chain is their meaning (firewall, v6 routing filters)."""
    return MenuSpec(path, category, noun, None, key=("chain",), order="chain", item=item)


_BGP_V7 = _words("""
    name instance as router-id remote.address remote.as remote.port remote.allowed-as remote.ttl local.role
    local.address local.port local.ttl routing-table vrf templates connect listen hold-time keepalive-time multihop
    nexthop-choice address-families afi cluster-id use-bfd add-path-out cisco-vpls-nlri-len-fmt input.filter
    input.accept-nlri input.accept-communities input.accept-ext-communities input.accept-large-communities
    input.accept-unknown input.limit-process-routes-ipv4 input.limit-process-routes-ipv6 input.allow-as
    input.ignore-as-path-len input.affinity output.filter-chain output.filter-select output.network
    output.redistribute output.default-originate output.default-prepend output.no-client-to-client-reflection
    output.keep-sent-attributes output.as-override output.remove-private-as output.no-early-cut output.affinity
    save-to comment disabled""")
_ROUTE = _words("""
    dst-address gateway distance scope target-scope routing-table routing-mark pref-src check-gateway blackhole
    type vrf-interface suppress-hw-offload bgp-communities route-tag comment disabled""")

_SPECS: tuple[MenuSpec, ...] = (
    # ---- system
    MenuSpec("/system/identity", "system", "identity", _words("name"), key=()),
    MenuSpec("/system/clock", "system", "clock", _words("time-zone-name time-zone-autodetect"), key=()),
    MenuSpec("/system/ntp/client", "system", "ntp client", _words(
        "enabled mode primary-ntp secondary-ntp server-dns-names servers vrf broadcast multicast manycast"), key=()),
    MenuSpec("/ip/dns", "system", "dns", _words("""
        servers allow-remote-requests max-udp-packet-size query-server-timeout query-total-timeout
        max-concurrent-queries max-concurrent-tcp-sessions cache-size cache-max-ttl use-doh-server verify-doh-cert
        doh-max-server-connections address-list-extra-time vrf mdns-repeat-ifaces"""), key=()),
    MenuSpec("/snmp", "system", "snmp", _words(
        "enabled contact location engine-id-suffix trap-target trap-version trap-generators trap-interfaces "
        "src-address vrf"), key=(), secrets=_words("trap-community")),
    # A community's name is its password: kept by position with its access flags only.
    MenuSpec("/snmp/community", "system", "community", _words(
        "addresses security read-access write-access authentication-protocol encryption-protocol disabled"),
        key=(), order="position", secrets=_words("name authentication-password encryption-password")),
    MenuSpec("/user", "system", "user", _words("name group address disabled comment"),
             secrets=_words("password")),
    MenuSpec("/ip/service", "system", "service", _words(
        "name port address disabled certificate tls-version vrf max-sessions")),
    # ---- interfaces
    MenuSpec("/interface", "interfaces", "interface", _words("name type mtu l2mtu comment disabled")),
    MenuSpec("/interface/ethernet", "interfaces", "ethernet", _words("""
        name default-name mtu l2mtu mac-address arp arp-timeout auto-negotiation advertise speed full-duplex
        tx-flow-control rx-flow-control bandwidth loop-protect poe-out comment disabled"""),
        key=("name|default-name",)),
    MenuSpec("/interface/vlan", "interfaces", "vlan", _words(
        "name vlan-id interface mtu arp use-service-tag loop-protect comment disabled")),
    # ---- addressing
    MenuSpec("/ip/address", "addressing", "address", _words("address network interface disabled comment"),
             key=("address", "interface"), label="{address} on {interface}", item="address"),
    MenuSpec("/ipv6/address", "addressing", "ipv6 address", _words(
        "address interface advertise eui-64 from-pool no-dad disabled comment"),
        key=("address", "interface"), label="{address} on {interface}", item="address"),
    MenuSpec("/ip/route", "addressing", "route", _ROUTE, key=("dst-address", "routing-table|routing-mark"),
             drop_when=_ROUTE_STATE, query=("?dynamic=no",)),
    MenuSpec("/ipv6/route", "addressing", "ipv6 route", _ROUTE, key=("dst-address", "routing-table|routing-mark"),
             drop_when=_ROUTE_STATE, query=("?dynamic=no",), item="route"),
    _rules("/routing/filter", "addressing", "route filter", item="route filter"),
    MenuSpec("/routing/filter/rule", "addressing", "route filter", _words("chain rule disabled comment"),
             key=("chain",), order="chain"),
    # ---- firewall (order within a chain is the meaning, so rows are numbered per chain)
    _rules("/ip/firewall/filter", "firewall", "filter"),
    _rules("/ip/firewall/nat", "firewall", "nat"),
    _rules("/ip/firewall/mangle", "firewall", "mangle"),
    _rules("/ip/firewall/raw", "firewall", "raw"),
    _rules("/ipv6/firewall/filter", "firewall", "ipv6 filter"),
    # ---- bgp: v6 instance + peer, v7 connection + template (7.20 brings an instance back)
    MenuSpec("/routing/bgp/instance", "bgp", "instance", _words("""
        name as router-id redistribute-connected redistribute-static redistribute-rip redistribute-ospf
        redistribute-other-bgp out-filter client-to-client-reflection ignore-as-path-len routing-table confederation
        confederation-peers cluster-id vrf comment disabled""")),
    MenuSpec("/routing/bgp/peer", "bgp", "peer", _words("""
        name instance remote-address remote-as remote-port nexthop-choice multihop route-reflect hold-time
        keepalive-time ttl max-prefix-limit max-prefix-restart-time in-filter out-filter allow-as-in
        remove-private-as as-override default-originate passive use-bfd address-families update-source
        cisco-vpls-nlri-len-fmt comment disabled"""), secrets=_words("tcp-md5-key")),
    MenuSpec("/routing/bgp/connection", "bgp", "connection", _BGP_V7, secrets=_words("tcp-md5-key")),
    MenuSpec("/routing/bgp/template", "bgp", "template", _BGP_V7, secrets=_words("tcp-md5-key")),
    # ---- ospf: v6 instance, area, interface, network; v7 instance, area, interface-template
    MenuSpec("/routing/ospf/instance", "ospf", "instance", _words("""
        name version vrf router-id distribute-default originate-default redistribute redistribute-connected
        redistribute-static redistribute-rip redistribute-bgp redistribute-other-ospf metric-default
        metric-connected metric-static metric-rip metric-bgp metric-other-ospf in-filter out-filter in-filter-chain
        out-filter-chain out-filter-select routing-table domain-id domain-tag mpls-te-area mpls-te-router-id use-dn
        comment disabled""")),
    MenuSpec("/routing/ospf/area", "ospf", "area", _words(
        "name area-id instance type default-cost no-summaries nssa-translator translator-role comment disabled")),
    MenuSpec("/routing/ospf/interface", "ospf", "interface", _words("""
        interface cost priority authentication authentication-key-id network-type instance-id passive use-bfd
        hello-interval dead-interval retransmit-interval transmit-delay comment disabled"""),
        key=("interface",), secrets=_words("authentication-key"),
        superseded_by="/routing/ospf/interface-template"),  # on v7 the same name is a status table
    MenuSpec("/routing/ospf/network", "ospf", "network", _words("network area comment disabled"), key=("network",)),
    MenuSpec("/routing/ospf/interface-template", "ospf", "interface-template", _words("""
        area interfaces networks cost priority type passive auth auth-id hello-interval dead-interval
        retransmit-interval transmit-delay instance-id prefix-list use-bfd vlink-neighbor-id vlink-transit-area
        comment disabled"""), key=("interfaces", "networks", "area"), label="{interfaces} {networks} in {area}",
        secrets=_words("auth-key")),
    # ---- what SNMP devices expose (SnmpCollector.read_config): not RouterOS menus
    MenuSpec("/snmp:system", "system", "snmp system", _words("name contact location"), key=()),
    MenuSpec("/snmp:interfaces", "interfaces", "interface", _words("descr alias admin-status mtu"), key=("descr",)),
)

SPECS: dict[str, MenuSpec] = {spec.path: spec for spec in _SPECS}
# The RouterOS API menus a configuration read asks for (each with MenuSpec.proplist and .query).
API_MENUS: tuple[str, ...] = tuple(spec.path for spec in _SPECS if ":" not in spec.path)


def menu_path(path: str) -> str:
    """``/ip firewall filter`` and ``/ip/firewall/filter/`` as ``/ip/firewall/filter``."""
    text = path.strip()
    if ":" in text:  # "/snmp:system": a pseudo menu, not a RouterOS path
        return text
    return "/" + "/".join(text.replace("/", " ").split())


def category_of(path: str) -> str | None:
    """The category a menu belongs to; None for menus that never count."""
    spec = SPECS.get(menu_path(path))
    return spec.category if spec else None


# ---- normalise and fingerprint -------------------------------------------------------


def normalise(menus: Menus) -> dict[str, str]:
    """Category -> canonical JSON of its allow-listed, secret-free, volatile-free rows.

    A category appears when at least one of its menus was read (an empty menu
    gives an empty list); a menu that was not read is absent, never "empty".
    """
    merged: dict[str, list[Row]] = {}
    for path, rows in menus.items():
        merged.setdefault(menu_path(path), []).extend(rows)
    categories: dict[str, dict[str, list[Row]]] = {}
    for path, rows in merged.items():
        spec = SPECS.get(path)
        if spec is None or (spec.superseded_by is not None and spec.superseded_by in merged):
            continue
        categories.setdefault(spec.category, {})[path] = _canonical_rows(spec, rows)
    return {cat: _dumps(categories[cat]) for cat in CONFIG_CATEGORIES if cat in categories}


def fingerprint(canonical: str) -> str:
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def is_canonical(text: str) -> bool:
    """Whether ``text`` is a category's canonical JSON as ``normalise`` writes it (an object, sorted keys, no
    spaces, UTF-8 encodable): a text from another host is hashed as it is, so any other spelling of the same
    configuration would look like a change."""
    try:
        value = json.loads(text)
        text.encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return False
    return isinstance(value, dict) and _dumps(value) == text


def canonical_value(attribute: str, value: object) -> str:
    text = "" if value is None else str(value)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if attribute not in _FREE_TEXT:
        if text in _TRUE:
            return "true"
        if text in _FALSE:
            return "false"
    return text


def _kept(spec: MenuSpec, attribute: str) -> bool:
    if attribute in VOLATILE or attribute in spec.secrets or is_secret(attribute):
        return False
    return spec.keep is None or attribute in spec.keep


def _canonical_rows(spec: MenuSpec, rows: Iterable[Mapping[str, object]]) -> list[Row]:
    out: list[Row] = []
    for raw in rows:
        row = {str(k): canonical_value(str(k), v) for k, v in raw.items()}
        if any(row.get(attr) == value for attr, value in spec.drop_when) or "D" in row.get(".flags", ""):
            continue
        out.append({k: v for k, v in row.items() if v != "" and _kept(spec, k)})
    if spec.order == "key":
        out.sort(key=lambda r: (_key_values(spec, r), _dumps(r)))
    elif spec.order == "chain":
        out.sort(key=lambda r: r.get("chain", ""))  # stable: the order within a chain is kept
    return out


def _key_values(spec: MenuSpec, row: Row) -> tuple[str, ...]:
    values = []
    for attr in spec.key:
        values.append(next((row[a] for a in attr.split("|") if row.get(a)), ""))
    return tuple(values)


# ---- RouterOS export text ------------------------------------------------------------

_COMMANDS = frozenset({"add", "set", "remove", "move", "enable", "disable", "unset", "edit", "print", "export",
                       "comment", "reset", "find"})
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "$": "$", "?": "?", "_": " ", "a": "\a",
            "b": "\b", "f": "\f", "v": "\v"}
_HEX = re.compile(r"[0-9A-Fa-f]{2}")


def parse_export(text: str) -> Menus:
    """RouterOS ``/export`` text (v6 and v7) as rows per menu, in the order they appear.

    ``add k=v`` appends a row; ``set [ find default-name=ether1 ] k=v`` and
    ``set ether1 k=v`` give a row holding the selector and the values (one row
    per selector, later sets merged in); ``set k=v`` is the menu's single row.
    Comments, the header and script lines (``:delay``) are skipped; other
    commands (remove, move) change nothing here. Unknown menus are kept: they
    belong to no category, so they never count.
    """
    menus: Menus = {}
    selected: dict[tuple[str, tuple[tuple[str, str], ...]], Row] = {}
    path: str | None = None
    for line in _logical_lines(text):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ":")):
            continue
        tokens = _tokens(stripped)
        if tokens and tokens[0].startswith("/"):
            words: list[str] = []
            while tokens and tokens[0] not in _COMMANDS and "=" not in tokens[0] and tokens[0] != "[":
                words.append(tokens.pop(0))
            path = menu_path(" ".join(words))
            menus.setdefault(path, [])
        if path is None or not tokens:
            continue
        command, args = tokens[0], tokens[1:]
        if command == "add":
            menus[path].append(_assignments(args))
        elif command == "set":
            selector, rest = _selector(args)
            key = (path, tuple(sorted(selector.items())))
            row = selected.get(key)
            if row is None:
                row = selected[key] = dict(selector)
                menus[path].append(row)
            row.update(_assignments(rest))
    return menus


def _logical_lines(text: str) -> list[str]:
    """Join ``\\``-continued lines: v7 wraps long lines, even inside a value, indenting the rest."""
    out: list[str] = []
    pending: str | None = None
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if pending is not None:
            line = pending + line.lstrip()
            pending = None
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending = line[:-1]
            continue
        out.append(line)
    if pending is not None:
        out.append(pending)
    return out


def _tokens(line: str) -> list[str]:
    """Split on spaces outside quotes; quotes removed, escapes decoded; ``[`` and ``]`` are tokens."""
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c.isspace():
            i += 1
            continue
        if c == "[":
            out.append("[")
            i += 1
            continue
        buf: list[str] = []
        quoted = False
        start = i
        while i < n:
            c = line[i]
            if c == "\\" and i + 1 < n:
                char, i = _escape(line, i + 1)
                buf.append(char)
                continue
            if c == '"':
                quoted = not quoted
            elif not quoted and (c.isspace() or c == "]"):
                break
            else:
                buf.append(c)
            i += 1
        if i > start:  # `""` is an empty value; nothing consumed is no token
            out.append("".join(buf))
        if i < n and line[i] == "]":
            out.append("]")
            i += 1
    return out


def _escape(line: str, i: int) -> tuple[str, int]:
    """The character escaped at ``line[i]`` (after a backslash) and the index after it."""
    if _HEX.fullmatch(line[i:i + 2]):
        return chr(int(line[i:i + 2], 16)), i + 2
    return _ESCAPES.get(line[i], line[i]), i + 1


def _assignments(tokens: list[str]) -> Row:
    """``k=v`` words as a row; v7's ``.as=`` after ``remote.address=`` means ``remote.as``."""
    row: Row = {}
    prefix = ""
    for token in tokens:
        if token in ("[", "]"):
            continue
        key, sep, value = token.partition("=")
        if key.startswith(".") and prefix:
            key = prefix + key
        prefix = key.rsplit(".", 1)[0] if "." in key.strip(".") else ""
        row[key] = value if sep else "true"  # a bare word is a flag that is on ("blackhole")
    return row


def _selector(tokens: list[str]) -> tuple[Row, list[str]]:
    """What ``set`` addresses: ``[ find k=v ]``, an item name, or nothing (a singleton menu)."""
    if tokens and tokens[0] == "[":
        end = tokens.index("]") if "]" in tokens else len(tokens)
        inner = [t for t in tokens[1:end] if t != "find" and "=" in t]
        return _assignments(inner), tokens[end + 1:]
    if tokens and "=" not in tokens[0]:
        return {"name": tokens[0]}, tokens[1:]
    return {}, tokens


# ---- diffs and summaries -------------------------------------------------------------


@dataclass(frozen=True)
class _Change:
    kind: str  # "+", "-", "~"
    spec: MenuSpec
    where: str  # "connection TRANSIT1"; for "+" and "-" the whole row
    detail: str = ""  # "~": "remote.as 64500 -> 64501"

    @property
    def text(self) -> str:
        return f"{self.where}: {self.detail}" if self.detail else self.where

    @property
    def same_as(self) -> tuple[str, str]:
        """One edit seen in two menus (mtu in /interface and /interface/ethernet) reads as one."""
        return self.where.removeprefix(self.spec.noun), self.detail


def diff_lines(old: str, new: str) -> list[str]:
    """A readable, per-row diff of two canonical texts of one category (``normalise()`` output)."""
    return [f"{c.kind} {c.text}" for c in _diff(_parse(old), _parse(new))]


def summary(category: str, old: str | None, new: str) -> str:
    """One line for a ``config.changed.detected`` event."""
    after = _parse(new)
    if old is None:
        return f"{category}: first fingerprint ({_contents(after)})"
    changes = _diff(_parse(old), after)
    if not changes:
        return f"{category}: no change"
    if len(changes) == 1 or (all(c.kind == "~" for c in changes) and len({c.same_as for c in changes}) == 1):
        change = changes[0]
        if change.kind == "~":
            return _clip(f"{category}: {change.where} {change.detail}")
        verb = "added" if change.kind == "+" else "removed"
        return _clip(f"{category}: {verb} {change.text}")
    items = {c.spec.counted for c in changes}
    item = next(iter(items)) if len(items) == 1 else "entry"
    counts = [(sum(c.kind == kind for c in changes), word) for kind, word in
              (("+", "added"), ("~", "changed"), ("-", "removed"))]
    parts = [f"{n} {word}" for n, word in counts if n]
    first = next(n for n, _ in counts if n)
    parts[0] = f"{first} {_plural(item, first)} {parts[0].split(' ', 1)[1]}"
    nouns = "" if len(items) == 1 else f" ({', '.join(dict.fromkeys(c.spec.noun for c in changes))})"
    return _clip(f"{category}: {', '.join(parts)}{nouns}")


def _clip(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plural(word: str, n: int) -> str:
    if n == 1:
        return word
    if word.endswith("y"):
        return word[:-1] + "ies"
    return word + ("es" if word.endswith(("s", "x", "ch")) else "s")


def _contents(menus: dict[str, list[Row]]) -> str:
    parts = []
    for path in sorted(menus, key=_menu_order):
        rows = menus[path]
        spec = SPECS.get(path) or _generic(path, rows)
        if not rows:
            continue
        singleton = not spec.key and spec.order == "key"
        parts.append(spec.noun if singleton else f"{len(rows)} {_plural(spec.counted, len(rows))}")
    return ", ".join(parts) if parts else "nothing configured"


def _menu_order(path: str) -> int:
    return next((i for i, spec in enumerate(_SPECS) if spec.path == path), len(_SPECS))


def _parse(canonical: str) -> dict[str, list[Row]]:
    try:
        value = json.loads(canonical)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a canonical configuration text: {exc}") from None
    if not isinstance(value, dict) or not all(
            isinstance(rows, list) and all(isinstance(r, dict) for r in rows) for rows in value.values()):
        raise ValueError("not a canonical configuration text: expected {menu: [rows]}")
    return {str(path): [{str(k): str(v) for k, v in r.items()} for r in rows] for path, rows in value.items()}


def _generic(path: str, rows: list[Row]) -> MenuSpec:
    """A menu this table no longer knows (an older canonical text): named rows or rows by position."""
    named = bool(rows) and all("name" in r for r in rows)
    noun = path.rsplit("/", 1)[-1] or path
    return MenuSpec(path, "", noun, None, key=("name",) if named else (), order="key" if named else "position")


def _diff(old: dict[str, list[Row]], new: dict[str, list[Row]]) -> list[_Change]:
    changes: list[_Change] = []
    for path in sorted(set(old) | set(new), key=lambda p: (_menu_order(p), p)):
        before, after = old.get(path, []), new.get(path, [])
        spec = SPECS.get(path) or _generic(path, before + after)
        if spec.order == "key":
            changes += _diff_keyed(spec, before, after)
        else:
            changes += _diff_ordered(spec, before, after)
    return changes


def _label(spec: MenuSpec, row: Row) -> str:
    if spec.label is not None:
        text = re.sub(r"\{([^}]+)\}", lambda m: row.get(m.group(1), ""), spec.label)
        text = " ".join(text.split())
        text = re.sub(r"^(on|in) |\s(on|in)$", "", text).strip()
    else:
        # "main" is every router's default routing table: it names nothing.
        text = " ".join(v for v in _key_values(spec, row) if v and v != "main")
    return f"{spec.noun} {text}".strip()


def _keyed(spec: MenuSpec, rows: list[Row]) -> dict[str, Row]:
    out: dict[str, Row] = {}
    for row in rows:
        label = _label(spec, row)
        name, n = label, 1
        while name in out:  # the same key twice (ECMP routes): told apart by their order
            n += 1
            name = f"{label} #{n}"
        out[name] = row
    return out


def _shown(value: str | None) -> str:
    if value is None:
        return "(none)"
    return f'"{value}"' if (not value or any(c.isspace() for c in value)) else value


def _attrs_text(row: Row, skip: Iterable[str]) -> str:
    """A row as ``k=v`` words; flags that are off (``disabled=false``) say nothing about an added row."""
    skipped = set(skip)
    return " ".join(f"{k}={_shown(v)}" for k, v in sorted(row.items()) if k not in skipped and v != "false")


def _changed(before: Row, after: Row) -> str:
    parts = [f"{k} {_shown(before.get(k))} -> {_shown(after.get(k))}"
             for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    return ", ".join(parts)


def _key_attrs(spec: MenuSpec) -> set[str]:
    return {a for k in spec.key for a in k.split("|")}


def _diff_keyed(spec: MenuSpec, before: list[Row], after: list[Row]) -> list[_Change]:
    old, new = _keyed(spec, before), _keyed(spec, after)
    changes: list[_Change] = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            changes.append(_Change("-", spec, name))
        elif name not in old:
            attrs = _attrs_text(new[name], _key_attrs(spec))
            changes.append(_Change("+", spec, f"{name} {attrs}".strip()))
        elif old[name] != new[name]:
            changes.append(_Change("~", spec, name, _changed(old[name], new[name])))
    return changes


def _describe(spec: MenuSpec, row: Row) -> str:
    """A rule by its content: ``filter input accept src-address=10.0.0.0/8``."""
    lead = [row[a] for a in ("chain", "action") if row.get(a)]
    rest = _attrs_text(row, ("chain", "action"))
    return " ".join([spec.noun, *lead, rest]).strip()


def _diff_ordered(spec: MenuSpec, before: list[Row], after: list[Row]) -> list[_Change]:
    """Rules matched by sequence within each chain: one inserted rule is one addition, not a shift of all."""
    changes: list[_Change] = []
    chains = list(dict.fromkeys([r.get("chain", "") for r in before + after]))
    for chain in chains:
        old = [r for r in before if r.get("chain", "") == chain]
        new = [r for r in after if r.get("chain", "") == chain]
        matcher = difflib.SequenceMatcher(a=[_dumps(r) for r in old], b=[_dumps(r) for r in new], autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                continue
            pairs = _pair(old[i1:i2], new[j1:j2])
            paired_old = set(pairs.values())
            changes += [_Change("-", spec, _describe(spec, r)) for k, r in enumerate(old[i1:i2]) if k not in paired_old]
            for k, row in enumerate(new[j1:j2]):
                if k in pairs:
                    where = " ".join(w for w in (spec.noun, chain, f"#{j1 + k + 1}") if w)
                    changes.append(_Change("~", spec, where, _changed(old[i1 + pairs[k]], row)))
                else:
                    changes.append(_Change("+", spec, _describe(spec, row)))
    return changes


_PAIR_SEARCH_MAX = 40_000  # row comparisons for one block of edited rules (200 x 200: a few ms)


def _pair(old: list[Row], new: list[Row]) -> dict[int, int]:
    """Which new rule (index) is which old one edited: in order, each to its most alike, if alike enough."""
    if len(old) * len(new) > _PAIR_SEARCH_MAX:
        return {k: k for k in range(min(len(old), len(new)))}  # a rewritten chain: by position, in linear time
    pairs: dict[int, int] = {}
    start = 0
    for i, row in enumerate(old):
        scores = [(_alike(row, other), j) for j, other in enumerate(new) if j >= start]
        best = max(scores, default=(0.0, -1), key=lambda s: (s[0], -s[1]))
        if best[0] >= 0.5:
            pairs[best[1]] = i
            start = best[1] + 1
    return pairs


def _alike(a: Row, b: Row) -> float:
    keys = set(a) | set(b)
    return sum(a.get(k) == b.get(k) for k in keys) / len(keys) if keys else 1.0
