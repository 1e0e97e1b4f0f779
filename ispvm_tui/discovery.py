"""Links from neighbour tables (MNDP/LLDP/CDP), checked against the inventory.

Every router lists the devices it sees on each port. Matching those rows to
configured devices turns them into links ``A:if -- B:if``: already in the
config (known), absent from it (missing, with a ``[[links]]`` snippet to
paste), or contradicting it (conflict: one of the ports is configured towards
something else). Rows that match no configured device are reported with what
they say about themselves, so the engineer can add the device.

Everything down to ``to_dict`` is a pure function of PollResults and a Config,
so the matching is tested with constructed values; ``poll_fleet`` at the end
does the one round of polling the ``ispvm discover`` command needs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ispvm_tui.clock import Clock
from ispvm_tui.collectors.results import Neighbor, PollResult
from ispvm_tui.config import Config, link_id
from ispvm_tui.engine.polling import DeviceSchedule, Poller, build_collectors, shared_snmp_engine
from ispvm_tui.secrets import SecretError, SecretSource

LinkStatus = Literal["known", "missing", "conflict"]
UNKNOWN_PORT = "?"


# ---- matching neighbours to devices ---------------------------------------------------


@dataclass(frozen=True)
class DeviceIndex:
    """Ways a neighbour row can name a configured device. Ambiguous keys are left out."""

    names: dict[str, str]  # case-folded name -> device
    addresses: dict[str, tuple[str, str | None]]  # IP -> (device, interface carrying it; None for management)
    macs: dict[str, tuple[str, str]]  # upper-case MAC -> (device, interface)
    interfaces: dict[str, frozenset[str]]  # device -> interface names seen in its polls


def _bare_ip(text: str | None) -> str | None:
    """``10.0.0.1/30`` or ``fe80::1%ether1`` -> the address alone; None if it is not an IP."""
    if not text:
        return None
    candidate = text.split("/")[0].split("%")[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def _unique(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Keys claimed by two different devices (VRRP addresses, factory 192.168.88.1) prove nothing."""
    seen: dict[str, Any] = {}
    owners: dict[str, set[str]] = defaultdict(set)
    for key, value in pairs:
        owners[key].add(value[0])
        if key not in seen or (seen[key][1] is None and value[1] is not None):
            seen[key] = value
    return {k: v for k, v in seen.items() if len(owners[k]) == 1}


def build_index(config: Config, results: Mapping[str, Sequence[PollResult]]) -> DeviceIndex:
    names = {d.name.casefold(): d.name for d in config.devices}
    addresses: list[tuple[str, tuple[str, str | None]]] = []
    macs: list[tuple[str, tuple[str, str]]] = []
    interfaces: dict[str, set[str]] = defaultdict(set)
    for dev in config.devices:
        ip = _bare_ip(dev.address)
        if ip:
            addresses.append((ip, (dev.name, None)))
        for result in results.get(dev.name, ()):
            for addr in result.addresses:
                ip = _bare_ip(addr.address)
                if ip:
                    addresses.append((ip, (dev.name, addr.interface or None)))
            for itf in result.interfaces:
                interfaces[dev.name].add(itf.name)
                if itf.mac:
                    macs.append((itf.mac.upper(), (dev.name, itf.name)))
    return DeviceIndex(names=names, addresses=_unique(addresses), macs=_unique(macs),
                       interfaces={k: frozenset(v) for k, v in interfaces.items()})


def port_name(raw: str, known: Collection[str] = ()) -> str:
    """The physical port in a neighbour table's interface text.

    RouterOS names a bridge port ``ether2,bridge1`` on the local side (v6) and
    ``bridge1/ether2`` as the remote interface (v7); the inventory uses the port.
    """
    if raw in known:
        return raw
    for part in re.split(r"[,/]", raw):
        if part in known:
            return part
    return raw.split(",")[0].rsplit("/", 1)[-1] or raw


def match_neighbor(index: DeviceIndex, nb: Neighbor) -> tuple[str | None, str | None]:
    """(configured device, its interface) a neighbour row points at; either may be None.

    Identity first (it is what the inventory is named after), then any address the
    device holds, then a MAC of one of its interfaces.
    """
    device = index.names.get((nb.remote_identity or "").casefold()) if nb.remote_identity else None
    ip = _bare_ip(nb.remote_address)
    by_address = index.addresses.get(ip) if ip else None
    by_mac = index.macs.get(nb.remote_mac.upper()) if nb.remote_mac else None
    if device is None:
        device = (by_address or by_mac or (None, None))[0]
    if device is None:
        return None, None
    if nb.remote_interface:
        return device, port_name(nb.remote_interface, index.interfaces.get(device, ()))
    # The far port is often missing (MNDP on v6): the address or MAC it answered from tells it.
    for hit in (by_mac, by_address):
        if hit is not None and hit[0] == device and hit[1]:
            return device, hit[1]
    return device, None


@dataclass(frozen=True)
class Sighting:
    """One neighbour row: ``device`` sees something on ``interface``."""

    device: str
    interface: str
    remote_device: str | None  # configured device it matched, if any
    remote_interface: str | None
    neighbor: Neighbor
    observer: str | None = None  # whose table it came from, when not ``device`` (see sightings)

    @property
    def seen_by(self) -> str:
        return self.observer or self.device


def sightings(config: Config, results: Mapping[str, Sequence[PollResult]]) -> list[Sighting]:
    index = build_index(config, results)
    out: list[Sighting] = []
    for device, polls in results.items():
        for result in polls:
            for nb in result.neighbors or ():
                remote, remote_if = match_neighbor(index, nb)
                if remote == device:
                    continue  # a device hearing itself (a loop through a switch) says nothing about links
                if not nb.local_interface:
                    # RouterOS 6 (and 7.1) LLDP over SNMP does not say which local port heard the
                    # neighbour. With the far port known, the row still says "remote:port faces this
                    # device", so record it from that end with this side's port unknown.
                    if remote is not None and remote_if:
                        out.append(Sighting(remote, remote_if, device, None, nb, observer=device))
                    elif remote is None:
                        out.append(Sighting(device, UNKNOWN_PORT, None, None, nb))
                    continue
                local = port_name(nb.local_interface, index.interfaces.get(device, ()))
                out.append(Sighting(device, local, remote, remote_if, nb))
    return out


# ---- links ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SuggestedLink:
    a: str  # "DEVICE:interface", ends sorted like config link ids
    b: str  # "DEVICE:?" when no table told the far port
    seen_from: tuple[str, ...]  # devices whose neighbour tables show the link
    status: LinkStatus
    configured: tuple[str, ...] = ()  # conflict: inventory links already using one of these ports
    speed_mbps: int | None = None  # from the ports' polled speed, for the snippet

    @property
    def complete(self) -> bool:
        return UNKNOWN_PORT not in (_port(self.a), _port(self.b))

    @property
    def id(self) -> str:
        return link_id(self.a, self.b)

    @property
    def snippet(self) -> str | None:
        """A ``[[links]]`` entry for the config, only for a missing link with both ports known."""
        if self.status != "missing" or not self.complete:
            return None
        # json.dumps quotes exactly as TOML basic strings need for interface names.
        lines = ["[[links]]", f"a = {json.dumps(self.a)}", f"b = {json.dumps(self.b)}"]
        if self.speed_mbps:
            lines.append(f"speed_mbps = {self.speed_mbps}")
        return "\n".join(lines) + "\n"


def _device(end: str) -> str:
    return end.partition(":")[0]


def _port(end: str) -> str:
    # Device names never hold a colon (config pattern); port names may.
    return end.partition(":")[2]


# (device, port, remote device, remote port or None, observing device)
_Half = tuple[str, str, str, str | None, str]


def _halves(found: Iterable[Sighting]) -> set[_Half]:
    return {(s.device, s.interface, s.remote_device, s.remote_interface, s.seen_by)
            for s in found if s.remote_device is not None}


def _fill_far_ports(halves: set[_Half]) -> set[_Half]:
    """Take a missing far port from the other side's table when exactly one of its rows points back."""
    filled: set[_Half] = set()
    for dev, port, remote, remote_port, observer in halves:
        if remote_port is None:
            back = {h[1] for h in halves if h[0] == remote and h[2] == dev and h[3] in (port, None)}
            if len(back) == 1:
                remote_port = back.pop()
        filled.add((dev, port, remote, remote_port, observer))
    return filled


def pair_links(found: Iterable[Sighting]) -> dict[tuple[str, str], set[str]]:
    """(end, end) -> observing devices; a link seen from both sides is one entry.

    Ends are "DEVICE:port" sorted; an unknown far port is ``DEVICE:?``, folded
    into the complete link on the same local port when one exists.
    """
    links: dict[tuple[str, str], set[str]] = defaultdict(set)
    partial: list[tuple[str, str, str]] = []  # (observer, local end, remote device)
    for dev, port, remote, remote_port, observer in sorted(_fill_far_ports(_halves(found)), key=str):
        here = f"{dev}:{port}"
        if remote_port is None:
            partial.append((observer, here, remote))
            continue
        a, b = sorted((here, f"{remote}:{remote_port}"))
        links[(a, b)].add(observer)
    for observer, here, remote in partial:
        complete = [k for k in links if here in k and any(_device(e) == remote for e in k if e != here)]
        if complete:
            links[complete[0]].add(observer)
        else:
            a, b = sorted((here, f"{remote}:{UNKNOWN_PORT}"))
            links[(a, b)].add(observer)
    return links


def _classify(a: str, b: str, config: Config) -> tuple[LinkStatus, tuple[str, ...], tuple[str, str]]:
    """Status against the inventory, the inventory links in the way, and the ends (a far ``?`` filled in)."""
    by_end = {end: link for link in config.links for end in (link.a, link.b)}
    ids = {link.id for link in config.links}
    if UNKNOWN_PORT not in (_port(a), _port(b)):
        if link_id(a, b) in ids:
            return "known", (), (a, b)
        clashes = tuple(sorted({by_end[e].id for e in (a, b) if e in by_end}))
        return ("conflict" if clashes else "missing"), clashes, (a, b)
    here, far = (b, a) if _port(a) == UNKNOWN_PORT else (a, b)
    link = by_end.get(here)
    if link is None:
        return "missing", (), (a, b)
    other = link.b if link.a == here else link.a
    if _device(other) == _device(far):
        ends = sorted((here, other))
        return "known", (), (ends[0], ends[1])
    return "conflict", (link.id,), (a, b)


def _speed_mbps(ends: Sequence[str], results: Mapping[str, Sequence[PollResult]]) -> int | None:
    for end in ends:
        device, port = _device(end), _port(end)
        for result in results.get(device, ()):
            for itf in result.interfaces:
                if itf.name == port and itf.speed_bps and itf.speed_bps >= 1_000_000:
                    return itf.speed_bps // 1_000_000
    return None


def suggest_links(config: Config, results: Mapping[str, Sequence[PollResult]],
                  found: Iterable[Sighting]) -> list[SuggestedLink]:
    out: list[SuggestedLink] = []
    for (a, b), seen in pair_links(found).items():
        status, clashes, (a, b) = _classify(a, b, config)
        out.append(SuggestedLink(a=a, b=b, seen_from=tuple(sorted(seen)), status=status, configured=clashes,
                                 speed_mbps=_speed_mbps((a, b), results)))
    order = {"missing": 0, "conflict": 1, "known": 2}
    return sorted(out, key=lambda s: (order[s.status], s.id))


# ---- neighbours that are not in the inventory ------------------------------------------


@dataclass(frozen=True)
class UnknownNeighbor:
    identity: str | None
    addresses: tuple[str, ...]
    macs: tuple[str, ...]
    platform: str | None
    seen_by: tuple[str, ...]  # "DEVICE:interface" ports it was seen on


def unknown_neighbors(found: Iterable[Sighting]) -> list[UnknownNeighbor]:
    """Unmatched rows grouped per remote device (by identity, else MAC, else address)."""
    groups: dict[str, list[Sighting]] = defaultdict(list)
    for s in found:
        if s.remote_device is not None:
            continue
        nb = s.neighbor
        key = (nb.remote_identity or "").casefold() or (nb.remote_mac or "").upper() or nb.remote_address
        groups[key or f"{s.device}:{s.interface}"].append(s)
    out = []
    for rows in groups.values():
        nbs = [s.neighbor for s in rows]
        out.append(UnknownNeighbor(
            identity=next((n.remote_identity for n in nbs if n.remote_identity), None),
            addresses=tuple(sorted({n.remote_address for n in nbs if n.remote_address})),
            macs=tuple(sorted({n.remote_mac.upper() for n in nbs if n.remote_mac})),
            platform=next((n.platform for n in nbs if n.platform), None),
            seen_by=tuple(sorted({f"{s.device}:{s.interface}" for s in rows})),
        ))
    return sorted(out, key=lambda u: (u.identity or "", u.addresses, u.seen_by))


# ---- the report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DiscoveryReport:
    links: tuple[SuggestedLink, ...]
    unknown: tuple[UnknownNeighbor, ...]
    unseen: tuple[str, ...]  # inventory link ids that no neighbour table shows
    unanswered: dict[str, str] = field(default_factory=dict)  # device -> why it gave nothing
    without_neighbors: dict[str, str] = field(default_factory=dict)  # answered, but no neighbour table

    @property
    def missing(self) -> tuple[SuggestedLink, ...]:
        return tuple(s for s in self.links if s.status == "missing")


def _failure(polls: Sequence[PollResult]) -> str | None:
    """Why a device gave nothing, or None when one of its collectors answered."""
    if any(r.ok for r in polls):
        return None
    if not polls:
        return "not polled (no collector configured)"
    return "; ".join(f"{r.collector}: {r.error_kind or 'error'}: {r.error or 'failed'}" for r in polls)


def _no_table_reason(polls: Sequence[PollResult]) -> str | None:
    """Why an answering device has no neighbour table, or None when it has one."""
    answered = [r for r in polls if r.ok]
    if any(r.neighbors is not None for r in answered):
        return None
    reasons = [r.stale[k] for r in answered for k in r.stale if k.startswith("neighbo")]
    return "; ".join(reasons) or "the collectors reported no neighbour table"


def discover(config: Config, results: Mapping[str, Sequence[PollResult]],
             setup_errors: Mapping[str, str] | None = None) -> DiscoveryReport:
    """The whole comparison of what the routers see with what the config says."""
    setup_errors = setup_errors or {}
    unanswered: dict[str, str] = {}
    without: dict[str, str] = {}
    for dev in config.devices:
        polls = results.get(dev.name, ())
        why = setup_errors.get(dev.name) or _failure(polls)
        if why is not None:
            unanswered[dev.name] = why
        elif (reason := _no_table_reason(polls)) is not None:
            without[dev.name] = reason
    found = sightings(config, results)
    links = suggest_links(config, results, found)
    known = {s.id for s in links if s.status == "known"}
    with_tables = {d.name for d in config.devices if d.name not in unanswered and d.name not in without}
    unseen = tuple(sorted(link.id for link in config.links if link.id not in known
                          and {_device(link.a), _device(link.b)} & with_tables))
    return DiscoveryReport(links=tuple(links), unknown=tuple(unknown_neighbors(found)), unseen=unseen,
                           unanswered=unanswered, without_neighbors=without)


def to_dict(report: DiscoveryReport) -> dict[str, Any]:
    """JSON-ready, stable keys (the same data the human output shows)."""
    return {
        "links": [{"id": s.id, "a": s.a, "b": s.b, "status": s.status, "complete": s.complete,
                   "seen_from": list(s.seen_from), "configured": list(s.configured), "speed_mbps": s.speed_mbps,
                   "snippet": s.snippet} for s in report.links],
        "unknown_neighbors": [{"identity": u.identity, "addresses": list(u.addresses), "macs": list(u.macs),
                               "platform": u.platform, "seen_by": list(u.seen_by)} for u in report.unknown],
        "unseen_links": list(report.unseen),
        "unanswered": dict(sorted(report.unanswered.items())),
        "no_neighbor_table": dict(sorted(report.without_neighbors.items())),
    }


def seen_text(link: SuggestedLink) -> str:
    if len(link.seen_from) > 1:
        return "seen from both sides"
    return f"seen from {link.seen_from[0]} only"


def render_lines(report: DiscoveryReport) -> list[str]:
    """The human report for stdout; snippets last so they can be copied in one piece."""
    lines = [f"links the neighbour tables show ({len(report.links)}):"]
    width = max((len(f"{s.a} -- {s.b}") for s in report.links), default=0)
    for s in report.links:
        label = s.status if s.status == "known" else s.status.upper()
        note = seen_text(s)
        if s.status == "conflict":
            note += f"; the inventory has {', '.join(s.configured)}"
        elif not s.complete:
            note += "; far port unknown"
        lines.append(f"  {label:<8}  {f'{s.a} -- {s.b}':<{width}}  {note}")
    if report.unseen:
        lines += ["", f"inventory links no neighbour table shows ({len(report.unseen)}):"]
        lines += [f"  {link}" for link in report.unseen]
    if report.unknown:
        lines += ["", f"neighbours that match no configured device ({len(report.unknown)}):"]
        for u in report.unknown:
            about = "  ".join(p for p in (", ".join(u.addresses), ", ".join(u.macs), u.platform or "") if p)
            lines.append(f"  {u.identity or '(no identity)'}  {about}  seen on {', '.join(u.seen_by)}")
    snippets = [s.snippet for s in report.missing if s.snippet]
    if snippets:
        lines += ["", f"missing links, ready to paste into the config ({len(snippets)}):", ""]
        lines += "\n".join(snippets).splitlines()
    return lines


# ---- one round of polling -------------------------------------------------------------------


async def poll_fleet(config: Config, secrets: SecretSource,
                     clock: Clock) -> tuple[dict[str, list[PollResult]], dict[str, str]]:
    """Poll every configured device once through the engine's own poller: (results, setup errors).

    The engine's Poller gives the same bounded concurrency, per-poll timeouts and
    crash isolation as a running ``ispvm run``; only its scheduler is not started.
    """
    snmp_engine = shared_snmp_engine(config)  # one for all v3 devices; None without any
    setup_errors: dict[str, str] = {}
    schedules: dict[str, DeviceSchedule] = {}
    for dev in config.devices:
        try:
            collectors = build_collectors(config, dev, secrets, clock, snmp_engine)
        except (SecretError, ValueError) as exc:
            setup_errors[dev.name] = str(exc)
            collectors = []
        schedules[dev.name] = DeviceSchedule(dev.name, collectors)
    results: dict[str, list[PollResult]] = {}

    async def keep(name: str, polled: list[PollResult]) -> None:
        results[name] = polled

    poller = Poller(config, clock, schedules, keep)
    try:
        await asyncio.gather(*(poller.poll_device(name) for name, s in schedules.items() if s.collectors))
    finally:
        await poller.stop()
        if snmp_engine is not None:
            snmp_engine.close_dispatcher()
    return results, setup_errors
