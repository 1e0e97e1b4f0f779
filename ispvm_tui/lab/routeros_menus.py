"""Render a lab router (``SimDevice``) as RouterOS API reply rows.

Each menu renderer returns the ``!re`` rows that ``<menu>/print`` would
produce on a real router of the device's major version, with every value as
it travels on the wire: strings, ``true``/``false`` for flags, decimal
integers and RouterOS durations. Field names and value formats follow real
replies (see ``shared/fixtures/routeros-api``); a menu that does not exist on
that major version renders as ``None`` so the server can ``!trap`` exactly
like RouterOS does ("no such command prefix").

Deliberate realities a collector has to cope with:

* singleton menus (identity, resource, routerboard, v6 health) carry no
  ``.id``, as on a real router;
* v7 ``/routing/ospf/neighbor`` rows have no ``interface`` attribute;
* v7 ``/routing/bgp/session`` rows exist only while the connection is
  trying or up (not for idle or disabled connections) and carry no FSM state
  word, only the ``established`` flag;
* OSPF neighbours whose dead timer expired (``Down``) are gone from the
  neighbour table instead of being listed as down;
* ``/system/health`` is one row of attributes on v6, one row per sensor on v7,
  and empty on CHR/x86;
* ``/interface/ethernet`` ``speed`` is the forced-mode setting (``1Gbps``, or
  ``1G-baseT-full`` since 7.12); the negotiated rate is only in ``monitor``;
* configuration menus (``SimDevice.config``) carry their secrets in clear
  (``tcp-md5-key``, OSPF keys, community names), as RouterOS sends them to a
  user with the sensitive policy, but ``/user`` never a password; firewall
  counters move with the clock, and a fasttrack rule brings RouterOS's
  dynamic counter rule; ``/ip/route`` has connected (dynamic), static and
  OSPF-learnt (dynamic) routes, and ``?dynamic=no`` skips building the rest.

``ping_row``, ``traceroute_row`` and ``ethernet_monitor`` render the rows of
those commands; the server decides when to send them.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

from ispvm_tui.lab.sim import (
    NO_LIGHT_DBM,
    SimAddress,
    SimBgpPeer,
    SimDevice,
    SimInterface,
    SimNeighbor,
    SimOspfNeighbor,
    format_ros_duration,
)

Row = dict[str, str]
Renderer = Callable[[SimDevice, float], list[Row] | None]

# CPU names as /system/resource reports them per architecture-name.
_CPU_BY_ARCH = {
    "arm64": "ARM64",
    "arm": "ARMv7",
    "x86": "Intel(R)",
    "x86_64": "Intel(R)",
    "tile": "tilegx",
    "mipsbe": "MIPS 24Kc V7.4",
    "mmips": "MIPS 1004Kc V2.15",
}
_NON_ROUTERBOARD = {"x86", "CHR", "x86_64"}


def render_menu(device: SimDevice, path: str, now: float, queries: list[str] | None = None) -> list[Row] | None:
    """Rows for ``<path>/print`` on ``device`` at clock time ``now``; None if the menu does not exist.

    ``queries`` (the print's ``?`` words) may let a large menu skip rows no query could match; the
    caller still applies them."""
    path = _normalise(path)
    if path == "/ip/route" and configured_routes_only(queries or []):
        return _route_rows(device, configured_only=True)
    renderer = _MENUS.get(path)
    return None if renderer is None else renderer(device, now)


def count_menu(device: SimDevice, path: str, now: float) -> int | None:
    """What ``<path>/print =count-only=`` answers, without building large tables."""
    path = _normalise(path)
    if path == "/ip/route":
        # the connected, default and static routes are always there, however small route_count is
        return max(device.route_count, len(device.addresses) + 1 + len(device.config.static_routes))
    rows = render_menu(device, path, now)
    return None if rows is None else len(rows)


def menu_paths(device: SimDevice) -> list[str]:
    """The menus this lab renders for ``device`` (for diagnostics and tests)."""
    return [p for p in _MENUS if count_menu(device, p, device.boot_time) is not None]


# ---- value formatting ---------------------------------------------------------


def _normalise(path: str) -> str:
    return "/" + path.strip().strip("/")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _num(value: float) -> str:
    """Sensor readings: integral values without a decimal point, others with one digit."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split()[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _version_word(device: SimDevice) -> str:
    return device.version if "(" in device.version else f"{device.version} (stable)"


def _bare_version(device: SimDevice) -> str:
    return device.version.split()[0]


def _datetime(device: SimDevice, epoch: float) -> str:
    """v6 prints ``oct/04/2017 20:11:03``; v7 (7.10+) prints ``2017-10-04 20:11:03``."""
    tm = time.gmtime(epoch)
    if device.ros_major >= 7:
        return time.strftime("%Y-%m-%d %H:%M:%S", tm)
    return time.strftime("%b/%d/%Y %H:%M:%S", tm).lower()


def _build_time(device: SimDevice) -> str:
    if device.ros_major >= 7:
        return "2024-11-04 14:12:35"
    return "Nov/09/2023 10:30:41"


def _rid(device: SimDevice) -> str:
    return device.router_id or "0.0.0.0"


def _star(index: int) -> str:
    return f"*{index:X}"


# ---- /system ------------------------------------------------------------------


def _identity(device: SimDevice, now: float) -> list[Row]:
    return [{"name": device.name}]


def _resource(device: SimDevice, now: float) -> list[Row]:
    uptime = device.uptime(now)
    row = {
        "uptime": format_ros_duration(uptime),
        "version": _version_word(device),
        "build-time": _build_time(device),
        "factory-software": "7.1.5" if device.ros_major >= 7 else "6.44.6",
        "free-memory": str(device.free_memory),
        "total-memory": str(device.total_memory),
        "cpu": _CPU_BY_ARCH.get(device.architecture, device.architecture.upper()),
        "cpu-count": "4",
        "cpu-frequency": "1700",
        "cpu-load": str(device.cpu_load),
        "free-hdd-space": "106233856",
        "total-hdd-space": "135266304",
        "write-sect-since-reboot": str(4000 + int(uptime) // 60),
        "write-sect-total": str(550000 + int(uptime) // 60),
        "bad-blocks": "0",
        "architecture-name": device.architecture,
        "board-name": device.board,
        "platform": "MikroTik",
    }
    return [row]


def _routerboard(device: SimDevice, now: float) -> list[Row]:
    if device.board in _NON_ROUTERBOARD:
        return [{"routerboard": "false"}]
    row = {
        "routerboard": "true",
        "model": device.board,
        "serial-number": device.serial,
        "firmware-type": "al2" if device.architecture == "arm64" else "ipq8060",
        "factory-firmware": "7.1.5" if device.ros_major >= 7 else "6.44.6",
        "current-firmware": device.firmware or _bare_version(device),
        "upgrade-firmware": _bare_version(device),
    }
    if device.ros_major >= 7:
        row = {"routerboard": "true", "board-name": device.board, **row}
    return [row]


def _health(device: SimDevice, now: float) -> list[Row]:
    if device.board in _NON_ROUTERBOARD:
        return []  # CHR and x86 have no sensors: the menu exists and is empty
    if device.ros_major >= 7:
        return _health_v7(device)
    return [_health_v6(device)]


def _health_v7(device: SimDevice) -> list[Row]:
    """v7: one row per sensor with name/value/type, like the CCR2004 fixture (states have an empty type)."""
    rows = [
        {".id": "*D", "name": "voltage", "value": _num(device.voltage_v), "type": "V"},
        {".id": "*E", "name": "temperature", "value": _num(device.temperature_c), "type": "C"},
    ]
    for i, sensor in enumerate(device.sensors):
        value = sensor.state if sensor.value is None else _num(sensor.value)
        rows.append({".id": _star(0x1B59 + i), "name": sensor.name, "value": value, "type": sensor.unit})
    return rows


def _health_v6(device: SimDevice) -> Row:
    """v6: one row, one attribute per sensor (values without units), fan settings beside the readings."""
    row: Row = {"voltage": _num(device.voltage_v), "temperature": _num(device.temperature_c)}
    if any(s.name.startswith("fan") for s in device.sensors):
        row.update({"fan-mode": "auto", "use-fan": "main", "active-fan": "main"})
    for sensor in device.sensors:
        row[sensor.name] = sensor.state if sensor.value is None else _num(sensor.value)
    return row


# ---- /interface, /ip ------------------------------------------------------------


def _interface_row(device: SimDevice, itf: SimInterface) -> Row:
    row: Row = {".id": _star(itf.ifindex), "name": itf.name}
    if itf.type == "ether":
        row["default-name"] = itf.name
    row.update({"type": itf.type, "mtu": str(itf.mtu), "actual-mtu": str(itf.mtu)})
    if itf.type == "ether":
        row.update({"l2mtu": "1592", "max-l2mtu": "9578"})
    row["mac-address"] = itf.mac
    if itf.last_change > 0:
        key = "last-link-up-time" if itf.running else "last-link-down-time"
        row[key] = _datetime(device, itf.last_change)
    row.update({
        "link-downs": str(itf.link_downs),
        "rx-byte": str(itf.rx_bytes),
        "tx-byte": str(itf.tx_bytes),
        "rx-packet": str(itf.rx_packets),
        "tx-packet": str(itf.tx_packets),
        "rx-drop": str(itf.rx_drops),
        "tx-drop": str(itf.tx_drops),
        "tx-queue-drop": str(itf.tx_queue_drops),
        "rx-error": str(itf.rx_errors),
        "tx-error": str(itf.tx_errors),
        "fp-rx-byte": str(itf.rx_bytes),
        "fp-tx-byte": str(itf.tx_bytes),
        "fp-rx-packet": str(itf.rx_packets),
        "fp-tx-packet": str(itf.tx_packets),
        "running": _flag(itf.running and not itf.disabled),
        "slave": "false",
        "disabled": _flag(itf.disabled),
    })
    if itf.comment:
        row["comment"] = itf.comment
    return row


def _interfaces(device: SimDevice, now: float) -> list[Row]:
    ordered = sorted(device.interfaces.values(), key=lambda i: i.ifindex)
    return [_interface_row(device, itf) for itf in ordered]


_ADVERTISE_OLD = "10M-half,10M-full,100M-half,100M-full,1000M-half,1000M-full"
_ADVERTISE_V712 = "10M-baseT-half,10M-baseT-full,100M-baseT-half,100M-baseT-full,1G-baseT-half,1G-baseT-full"


def _rate(bps: int) -> str:
    """Link rate as ``monitor`` prints it: 10Mbps, 100Mbps, 1Gbps, 2.5Gbps, 10Gbps."""
    if bps >= 1_000_000_000:
        return f"{bps / 1e9:g}Gbps"
    return f"{bps / 1e6:g}Mbps"


def _link_mode(itf: SimInterface) -> str:
    """7.12+ link-mode words (``1G-baseT-full``, ``10G-baseSR-LR``) for the ``speed`` setting."""
    bps = itf.speed_bps
    size = f"{bps / 1e9:g}G" if bps >= 1_000_000_000 else f"{bps / 1e6:g}M"
    if itf.name.startswith(("sfp", "qsfp")):
        return f"{size}-baseSR-LR" if bps >= 10_000_000_000 else f"{size}-baseX"
    return f"{size}-baseT-full" if bps <= 1_000_000_000 else f"{size}-baseT"


def _new_link_modes(device: SimDevice) -> bool:
    return _version_tuple(device.version) >= (7, 12)


def _ethernet_row(device: SimDevice, itf: SimInterface) -> Row:
    # ``speed`` is the forced-mode setting (used with auto-negotiation=no); the
    # negotiated rate only shows in ``monitor``.
    new_modes = _new_link_modes(device)
    row: Row = {
        ".id": _star(itf.ifindex), "name": itf.name, "default-name": itf.name,
        "mtu": str(itf.mtu), "l2mtu": "1592", "mac-address": itf.mac, "orig-mac-address": itf.mac,
        "arp": "enabled", "arp-timeout": "auto", "loop-protect": "default",
        "auto-negotiation": "true",
        "advertise": _ADVERTISE_V712 if new_modes else _ADVERTISE_OLD,
        "speed": _link_mode(itf) if new_modes else _rate(itf.speed_bps),
        "full-duplex": "true", "tx-flow-control": "off", "rx-flow-control": "off",
        "bandwidth": "unlimited/unlimited",
        "running": _flag(itf.running and not itf.disabled), "slave": "false", "disabled": _flag(itf.disabled),
    }
    if itf.comment:
        row["comment"] = itf.comment
    return row


def _ethernet(device: SimDevice, now: float) -> list[Row]:
    ordered = sorted(device.interfaces.values(), key=lambda i: i.ifindex)
    return [_ethernet_row(device, itf) for itf in ordered if itf.type == "ether"]


def ethernet_monitor(device: SimDevice, numbers: str) -> list[Row] | None:
    """``/interface/ethernet/monitor numbers=... once``: one row per port; None if an item is unknown."""
    ports = [i for i in device.interfaces.values() if i.type == "ether"]
    rows: list[Row] = []
    for item in (n.strip() for n in numbers.split(",")):
        itf = next((i for i in ports if item in (i.name, _star(i.ifindex))), None)
        if itf is None:
            return None
        rows.append(_monitor_row(device, itf))
    return rows


def _monitor_row(device: SimDevice, itf: SimInterface) -> Row:
    advertising = _ADVERTISE_V712 if _new_link_modes(device) else _ADVERTISE_OLD
    if not itf.running or itf.disabled:
        row: Row = {"name": itf.name, "status": "no-link", "auto-negotiation": "incomplete",
                    "advertising": advertising}
    else:
        row = {
            "name": itf.name, "status": "link-ok", "auto-negotiation": "done", "rate": _rate(itf.speed_bps),
            "full-duplex": "true", "tx-flow-control": "false", "rx-flow-control": "false",
            "advertising": advertising, "link-partner-advertising": advertising,
        }
    if itf.sfp is not None:
        row.update(_sfp_monitor(itf))
    return row


def _sfp_monitor(itf: SimInterface) -> Row:
    """An SFP cage's part of the monitor reply. Over the API the readings are bare numbers (the terminal
    prints units: ``38C``, ``-3.1dBm``); both v6 and v7 name them the same."""
    module = itf.sfp
    assert module is not None

    def _dom(value: float) -> str:
        return f"{value:g}"  # as RouterOS gives DOM readings: -5.673, 3.302, 38
    if not module.present:
        return {"sfp-module-present": "false"}
    rx = itf.sfp_rx_dbm()
    return {
        "sfp-module-present": "true", "sfp-rx-loss": _flag(rx is None or rx <= NO_LIGHT_DBM),
        "sfp-tx-fault": "false", "sfp-type": "SFP/SFP+/SFP28/SFP56", "sfp-connector-type": "LC",
        "sfp-vendor-name": module.vendor, "sfp-vendor-part-number": module.part_number,
        "sfp-wavelength": _dom(module.wavelength_nm), "sfp-temperature": _dom(module.temperature_c),
        "sfp-supply-voltage": _dom(module.supply_v), "sfp-tx-bias-current": _dom(module.tx_bias_ma),
        "sfp-tx-power": _dom(module.tx_power_dbm), "sfp-rx-power": _dom(rx if rx is not None else NO_LIGHT_DBM),
    }


def lte_monitor(device: SimDevice, numbers: str) -> list[Row] | None:
    """``/interface/lte/monitor numbers=... once`` (v7), ``/interface/lte/info`` (v6): the same keys, bare
    numbers over the API; None if an item is no LTE interface."""
    rows: list[Row] = []
    for item in (n.strip() for n in numbers.split(",")):
        itf = next((i for i in device.interfaces.values() if i.lte is not None and item in (i.name, _star(i.ifindex))),
                   None)
        if itf is None or itf.lte is None:
            return None
        modem = itf.lte
        rows.append({
            "name": itf.name, "pin-status": "ok", "registration-status": "registered", "functionality": "full",
            "access-technology": modem.technology, "current-cellid": modem.cell_id,
            "rssi": f"{modem.rssi_dbm:g}", "rsrp": f"{modem.rsrp_dbm:g}", "rsrq": f"{modem.rsrq_db:g}",
            "sinr": f"{modem.sinr_db:g}",
        })
    return rows


def _address_row(device: SimDevice, index: int, addr: SimAddress) -> Row:
    exists = addr.interface in device.interfaces
    return {
        ".id": _star(index),
        "address": addr.address,
        "network": addr.network,
        "interface": addr.interface,
        "actual-interface": addr.interface,
        "invalid": _flag(not exists),
        "dynamic": "false",
        "disabled": "false",
    }


def _addresses(device: SimDevice, now: float) -> list[Row]:
    return [_address_row(device, i + 1, a) for i, a in enumerate(device.addresses)]


def _neighbor_row(device: SimDevice, index: int, nb: SimNeighbor, now: float) -> Row:
    row: Row = {
        ".id": _star(index),
        "interface": nb.interface,
        "address": nb.address,
        "address4": nb.address,
        "mac-address": nb.mac,
        "identity": nb.identity,
        "platform": nb.platform,
    }
    if nb.version:
        row["version"] = nb.version
    row.update({"unpack": "none", "age": f"{int(now) % 30 + 1}s"})
    if nb.board:
        row["board"] = nb.board
    if nb.interface_name:
        row["interface-name"] = nb.interface_name
    descr = " ".join(p for p in (nb.platform, "RouterOS", nb.version, nb.board) if p)
    row.update({"system-description": descr, "system-caps": "bridge,router", "system-caps-enabled": "router"})
    if device.ros_major >= 7:
        row["discovered-by"] = "lldp,mndp"
    return row


def _neighbors(device: SimDevice, now: float) -> list[Row]:
    return [_neighbor_row(device, i + 1, nb, now) for i, nb in enumerate(device.neighbors)]


def _route_rows(device: SimDevice, *, configured_only: bool = False) -> list[Row]:
    """Connected routes from the addresses, the default route and the static routes, then OSPF-learnt
    routes up to route_count. ``configured_only``: just the default and static routes (``?dynamic=no``),
    without building a full table to filter it."""
    connected = [] if configured_only else [
        _route(device, f"{addr.network}/{addr.address.partition('/')[2] or '32'}", addr.interface, "0", kind="connect")
        for addr in device.addresses
    ]
    configured = [_route(device, "0.0.0.0/0", _default_gateway(device), "1", kind="static")]
    for static in device.config.static_routes:
        row = _route(device, static.dst_address, static.gateway, str(static.distance), kind="static")
        if static.comment:
            row["comment"] = static.comment
        configured.append(row)
    learnt: list[Row] = []
    if not configured_only:
        for i in range(max(0, device.route_count - len(connected) - len(configured))):
            net = ipaddress.IPv4Address(0x64400000 + (i << 8))  # 100.64.0.0/10 space, one /24 each
            learnt.append(_route(device, f"{net}/24", _default_gateway(device), "110", kind="ospf"))
    first = 1 if not configured_only else len(device.addresses) + 1
    rows = [*connected, *configured, *learnt]
    for index, row in enumerate(rows):
        row[".id"] = _star(index + first)
    return rows


def _default_gateway(device: SimDevice) -> str:
    for addr in device.addresses:
        iface = ipaddress.IPv4Interface(addr.address)
        if iface.network.prefixlen <= 30 and iface.network.num_addresses > 1:
            hosts = [h for h in iface.network.hosts() if h != iface.ip]
            if hosts:
                return str(hosts[0])
    return "0.0.0.0"


def _route(device: SimDevice, dst: str, gateway: str, distance: str, *, kind: str) -> Row:
    connect = kind == "connect"
    row: Row = {"dst-address": dst, "gateway": gateway, "distance": distance, "scope": "30" if not connect else "10"}
    if device.ros_major >= 7:
        row.update({"routing-table": "main", "immediate-gw": gateway, "target-scope": "10"})
    row.update({
        "active": "true",
        "dynamic": _flag(kind != "static"),
        "connect": _flag(connect),
        "static": _flag(kind == "static"),
    })
    if kind == "ospf":
        row["ospf"] = "true"
    return row


def _routes(device: SimDevice, now: float) -> list[Row]:
    return _route_rows(device)


def configured_routes_only(queries: list[str]) -> bool:
    """``?dynamic=no`` (or false): the client wants the static routes only, whatever the table's size."""
    return any(q in ("dynamic=no", "dynamic=false") for q in queries)


# ---- BGP ------------------------------------------------------------------------


def _local_as(device: SimDevice) -> int:
    return device.bgp_peers[0].local_as if device.bgp_peers else 65000


def _is_up(peer: SimBgpPeer) -> bool:
    return peer.state == "established" and not peer.disabled


def _role(peer: SimBgpPeer) -> str:
    return "ibgp" if peer.remote_as == peer.local_as else "ebgp"


def _peer_uptime(peer: SimBgpPeer, now: float) -> float:
    return max(0.0, now - peer.established_since) if peer.established_since is not None else 0.0


def _bgp_instance(device: SimDevice, now: float) -> list[Row] | None:
    if device.ros_major >= 7:
        return _bgp_instance_v720(device)
    return [{
        ".id": "*0",
        "name": "default",
        "as": str(_local_as(device)),
        "router-id": _rid(device),
        "redistribute-connected": "false",
        "redistribute-static": "false",
        "redistribute-rip": "false",
        "redistribute-ospf": "false",
        "redistribute-other-bgp": "false",
        "out-filter": "",
        "client-to-client-reflection": "true",
        "ignore-as-path-len": "false",
        "routing-table": "",
        "default": "true",
        "disabled": "false",
    }]


def _bgp_instance_v720(device: SimDevice) -> list[Row] | None:
    """RouterOS 7.20 brought an instance menu back (holding the local AS and router-id)."""
    if _version_tuple(device.version) < (7, 20):
        return None
    return [{
        ".id": "*1",
        "name": "bgp-instance-1",
        "as": str(_local_as(device)),
        "router-id": _rid(device),
        "routing-table": "main",
        "vrf": "main",
        "disabled": "false",
    }]


def _bgp_peer_row(device: SimDevice, index: int, peer: SimBgpPeer, now: float) -> Row:
    row: Row = {
        ".id": _star(index),
        "name": peer.name,
        "instance": "default",
        "remote-address": peer.remote_address,
        "remote-as": str(peer.remote_as),
        "tcp-md5-key": peer.tcp_md5_key,  # RouterOS sends it in clear to a user with the sensitive policy
        "nexthop-choice": "default",
        "multihop": "false",
        "route-reflect": "false",
        "hold-time": format_ros_duration(peer.hold_time_s),
        "ttl": "default",
        "in-filter": _filter_chain(device, "bgp-in"),
        "out-filter": _filter_chain(device, "bgp-out"),
        "address-families": "ip",
        "default-originate": "never",
        "remove-private-as": "false",
        "as-override": "false",
        "passive": "false",
        "use-bfd": "false",
    }
    if _is_up(peer):
        uptime = _peer_uptime(peer, now)
        row.update({
            "remote-id": peer.remote_address,
            "local-address": _local_address_for(device, peer.remote_address),
            "uptime": format_ros_duration(uptime),
            "prefix-count": str(peer.prefix_count),
            "updates-sent": str(1 + int(uptime) // 600),
            "updates-received": str(peer.prefix_count + int(uptime) // 60),
            "withdrawn-sent": "0",
            "withdrawn-received": str(int(uptime) // 300),
            "remote-hold-time": "3m",
            "used-hold-time": "3m",
            "used-keepalive-time": "1m",
            "refresh-capability": "true",
            "as4-capability": "true",
        })
    if not peer.disabled:
        # A disabled v6 peer has no FSM, so RouterOS prints no state for it.
        row["state"] = peer.state
    row["established"] = _flag(_is_up(peer))
    row["disabled"] = _flag(peer.disabled)
    if peer.provider:
        row["comment"] = peer.provider
    return row


def _bgp_peers_v6(device: SimDevice, now: float) -> list[Row] | None:
    if device.ros_major >= 7:
        return None
    return [_bgp_peer_row(device, i, p, now) for i, p in enumerate(device.bgp_peers)]


def _local_address_for(device: SimDevice, remote: str) -> str:
    """The local address on the subnet shared with ``remote`` (what the TCP session binds to)."""
    try:
        target = ipaddress.IPv4Address(remote)
    except ValueError:
        return "0.0.0.0"
    for addr in device.addresses:
        iface = ipaddress.IPv4Interface(addr.address)
        if target in iface.network:
            return str(iface.ip)
    return _rid(device)


def _bgp_connection_row(device: SimDevice, index: int, peer: SimBgpPeer) -> Row:
    row: Row = {".id": _star(index), "name": peer.name}
    if _version_tuple(device.version) >= (7, 20):
        row["instance"] = "bgp-instance-1"
    row.update({
        "as": str(peer.local_as),
        "remote.address": peer.remote_address,
        "remote.as": str(peer.remote_as),
        "local.role": _role(peer),
        "routing-table": "main",
        "templates": "default",
        "connect": "true",
        "listen": "true",
        "hold-time": format_ros_duration(peer.hold_time_s),
        "keepalive-time": "1m",
        "multihop": "false",
    })
    if peer.tcp_md5_key:
        row["tcp-md5-key"] = peer.tcp_md5_key
    if device.config.route_filters:
        row.update({"input.filter": "bgp-in", "output.filter-chain": "bgp-out"})
    row.update({"inactive": "false", "disabled": _flag(peer.disabled)})
    if peer.provider:
        row["comment"] = peer.provider
    return row


def _bgp_connections_v7(device: SimDevice, now: float) -> list[Row] | None:
    if device.ros_major < 7:
        return None
    return [_bgp_connection_row(device, i + 1, p) for i, p in enumerate(device.bgp_peers)]


def _filter_chain(device: SimDevice, chain: str) -> str:
    return chain if any(f.chain == chain for f in device.config.route_filters) else ""


def _bgp_templates_v7(device: SimDevice, now: float) -> list[Row] | None:
    if device.ros_major < 7:
        return None
    return [{".id": "*0", "name": "default", "as": str(_local_as(device)), "inactive": "false"}]


def _bgp_session_row(device: SimDevice, index: int, peer: SimBgpPeer, now: float) -> Row:
    up = _is_up(peer)
    uptime = _peer_uptime(peer, now) if up else 0.0
    messages = 1 + int(uptime) // 60
    row: Row = {
        ".id": f"*{0x2800000 + index:X}",
        "name": f"{peer.name}-1",
        "remote.address": peer.remote_address,
        "remote.as": str(peer.remote_as),
    }
    if up:
        row.update({
            "remote.id": peer.remote_address,
            "remote.capabilities": "mp,rr,gr,as4",
            "remote.afi": "ip",
            "remote.messages": str(messages + peer.prefix_count // 50),
            "remote.bytes": str(messages * 19 + peer.prefix_count * 60),
            "remote.eor": "ip",
        })
    row.update({
        "local.role": _role(peer),
        "local.address": _local_address_for(device, peer.remote_address),
        "local.as": str(peer.local_as),
        "local.id": _rid(device),
    })
    if up:
        row.update({
            "local.capabilities": "mp,rr,gr,as4",
            "local.messages": str(messages),
            "local.bytes": str(messages * 19),
            "local.eor": "",
            "output.procid": str(20 + index),
            "input.procid": str(20 + index),
            "hold-time": "3m",
            "keepalive-time": "1m",
            "uptime": format_ros_duration(uptime),
            "last-started": _datetime(device, peer.established_since or now),
            "prefix-count": str(peer.prefix_count),
        })
    if _role(peer) == "ebgp":
        row["ebgp"] = ""
    row["established"] = _flag(up)
    return row


def _bgp_sessions_v7(device: SimDevice, now: float) -> list[Row] | None:
    if device.ros_major < 7:
        return None
    # Idle or disabled connections have no session at all.
    return [
        _bgp_session_row(device, i + 1, p, now)
        for i, p in enumerate(device.bgp_peers)
        if not p.disabled and p.state != "idle"
    ]


# ---- OSPF -----------------------------------------------------------------------


def _adjacency(nb: SimOspfNeighbor, now: float) -> str | None:
    if nb.state != "Full" or nb.adjacency_since is None:
        return None
    return format_ros_duration(now - nb.adjacency_since)


def _ospf_row_v6(device: SimDevice, index: int, nb: SimOspfNeighbor, now: float) -> Row:
    row: Row = {
        ".id": _star(index),
        "instance": "default",
        "router-id": nb.router_id,
        "address": nb.address,
        "interface": nb.interface,
        "priority": "1",
        "dr-address": "0.0.0.0",
        "backup-dr-address": "0.0.0.0",
        "state": nb.state,
        "state-changes": str(nb.state_changes),
        "ls-retransmits": "0",
        "ls-requests": "0",
        "db-summaries": "0",
    }
    adjacency = _adjacency(nb, now)
    if adjacency is not None:
        row["adjacency"] = adjacency
    return row


def _ospf_row_v7(device: SimDevice, index: int, nb: SimOspfNeighbor, now: float) -> Row:
    # Point-to-point links: no DR/BDR, and (unlike v6) no interface attribute.
    row: Row = {
        ".id": _star(index),
        "instance": "default-v2",
        "area": "backbone",
        "address": nb.address,
        "priority": "128",
        "router-id": nb.router_id,
        "state": nb.state,
        "state-changes": str(nb.state_changes),
    }
    adjacency = _adjacency(nb, now)
    if adjacency is not None:
        row["adjacency"] = adjacency
    row.update({"timeout": f"{40 - int(now) % 10}s", "dynamic": "true", "inactive": "false"})
    return row


def _ospf_neighbors(device: SimDevice, now: float) -> list[Row]:
    render = _ospf_row_v7 if device.ros_major >= 7 else _ospf_row_v6
    live = [nb for nb in device.ospf_neighbors if nb.state != "Down"]
    return [render(device, i, nb, now) for i, nb in enumerate(live)]


# ---- OSPF configuration ---------------------------------------------------------


def _ospf_instances(device: SimDevice, now: float) -> list[Row]:
    if device.ros_major < 7:
        # v6 always has its default instance, configured or not.
        return [{
            ".id": "*0", "name": "default", "router-id": _rid(device), "distribute-default": "never",
            "redistribute-connected": "no", "redistribute-static": "no", "redistribute-rip": "no",
            "redistribute-bgp": "no", "redistribute-other-ospf": "no", "metric-default": "1",
            "metric-connected": "20", "metric-static": "20", "metric-rip": "20", "metric-bgp": "auto",
            "metric-other-ospf": "auto", "in-filter": "ospf-in", "out-filter": "ospf-out", "routing-table": "",
            "default": "true", "disabled": "false",
        }]
    if not device.config.ospf_templates:
        return []
    return [{".id": "*0", "name": "default-v2", "version": "2", "vrf": "main", "router-id": _rid(device),
             "originate-default": "never", "inactive": "false", "disabled": "false"}]


def _ospf_areas(device: SimDevice, now: float) -> list[Row]:
    if device.ros_major < 7:
        return [{".id": "*0", "name": "backbone", "area-id": "0.0.0.0", "instance": "default", "type": "default",
                 "default": "true", "invalid": "false", "disabled": "false"}]
    if not device.config.ospf_templates:
        return []
    return [{".id": "*0", "name": "backbone", "area-id": "0.0.0.0", "instance": "default-v2", "type": "default",
             "inactive": "false", "disabled": "false"}]


def _ospf_interfaces_v6(device: SimDevice, now: float) -> list[Row] | None:
    if device.ros_major >= 7:
        return None  # v7 has a status table of that name; lab routers do not serve it
    return [{
        ".id": _star(i + 1), "interface": t.interface, "cost": str(t.cost), "priority": "1",
        "authentication": "md5" if t.auth_key else "none", "authentication-key": t.auth_key,
        "authentication-key-id": "1", "network-type": "point-to-point", "instance-id": "0", "passive": "false",
        "use-bfd": "false", "hello-interval": "10s", "dead-interval": "40s", "retransmit-interval": "5s",
        "transmit-delay": "1s", "dynamic": "false", "inactive": "false", "disabled": "false",
    } for i, t in enumerate(device.config.ospf_templates)]


def _ospf_networks_v6(device: SimDevice, now: float) -> list[Row] | None:
    if device.ros_major >= 7:
        return None
    return [{".id": _star(i + 1), "network": t.network, "area": t.area, "invalid": "false", "disabled": "false"}
            for i, t in enumerate(device.config.ospf_templates) if t.network]


def _ospf_templates_v7(device: SimDevice, now: float) -> list[Row] | None:
    if device.ros_major < 7:
        return None
    rows = []
    for i, t in enumerate(device.config.ospf_templates):
        row: Row = {".id": _star(i + 1), "area": t.area, "interfaces": t.interface, "instance-id": "0",
                    "type": "ptp", "retransmit-interval": "5s", "transmit-delay": "1s", "hello-interval": "10s",
                    "dead-interval": "40s", "priority": "128", "cost": str(t.cost)}
        if t.auth_key:
            row.update({"auth": "md5", "auth-key": t.auth_key, "auth-id": "1"})
        row.update({"passive": "false", "use-bfd": "false", "inactive": "false", "disabled": "false"})
        rows.append(row)
    return rows


# ---- routing filters ------------------------------------------------------------


def _route_filters_v6(device: SimDevice, now: float) -> list[Row] | None:
    if device.ros_major >= 7:
        return None
    rows = []
    for i, f in enumerate(device.config.route_filters):
        row: Row = {".id": _star(i + 1), "chain": f.chain}
        if f.prefix:
            row["prefix"] = f.prefix
        if f.prefix_length:
            row["prefix-length"] = f.prefix_length
        row.update({"invert-match": "false", "action": f.action, "set-bgp-prepend-path": "", "disabled": "false"})
        rows.append(row)
    return rows


def _route_filter_rules_v7(device: SimDevice, now: float) -> list[Row] | None:
    if device.ros_major < 7:
        return None
    rows = []
    for i, f in enumerate(device.config.route_filters):
        verb = "accept" if f.action == "accept" else "reject"
        match = f"dst in {f.prefix}" if f.prefix else ""
        if f.prefix_length:
            low, _, high = f.prefix_length.partition("-")
            match += f" && dst-len in {low}-{high or low}"
        rule = f"if ({match}) {{ {verb}; }}" if match else f"{verb};"
        rows.append({".id": _star(i + 1), "chain": f.chain, "rule": rule, "inactive": "false", "disabled": "false"})
    return rows


# ---- firewall -------------------------------------------------------------------


def _firewall_filter(device: SimDevice, now: float) -> list[Row]:
    uptime = device.uptime(now)
    rows: list[Row] = []
    if any(r.action == "fasttrack-connection" for r in device.config.firewall):
        # RouterOS adds this dynamic rule to show what fasttrack passed: counters, no configuration.
        rows.append({".id": "*0", "chain": "forward", "action": "passthrough",
                     "comment": "special dummy rule to show fasttrack counters",
                     "bytes": str(int(uptime * 40_000)), "packets": str(int(uptime * 40)),
                     "invalid": "false", "dynamic": "true", "disabled": "false"})
    for i, rule in enumerate(device.config.firewall, start=1):
        hits = int(uptime * 1000 / i)  # counters move with the clock, as on a router carrying traffic
        row: Row = {".id": _star(i), "chain": rule.chain, "action": rule.action, **rule.match,
                    "log": "false", "log-prefix": "", "bytes": str(hits * 300), "packets": str(hits),
                    "invalid": "false", "dynamic": "false", "disabled": _flag(rule.disabled)}
        if rule.comment:
            row["comment"] = rule.comment
        rows.append(row)
    return rows


def _empty(device: SimDevice, now: float) -> list[Row]:
    return []


# ---- /system, /ip services ------------------------------------------------------


def _clock(device: SimDevice, now: float) -> list[Row]:
    tm = time.gmtime(now)
    date = time.strftime("%Y-%m-%d", tm) if device.ros_major >= 7 else time.strftime("%b/%d/%Y", tm).lower()
    return [{"time": time.strftime("%H:%M:%S", tm), "date": date, "time-zone-autodetect": "false",
             "time-zone-name": device.config.time_zone, "gmt-offset": "+00:00", "dst-active": "false"}]


def _ntp_client(device: SimDevice, now: float) -> list[Row]:
    servers = device.config.ntp_servers
    since = f"{int(now) % 900}s"  # the time since the last update cycles with the poll interval
    if device.ros_major >= 7:
        row: Row = {"enabled": _flag(bool(servers)), "mode": "unicast", "servers": ",".join(servers), "vrf": "main"}
        if servers:
            row.update({"freq-drift": f"{(int(now) % 200) / 100:.2f} PPM", "status": "synchronized",
                        "synced-server": servers[0], "synced-stratum": "2",
                        "system-offset": f"{int(now) % 997 - 498} us"})
        return [row]
    row = {"enabled": _flag(bool(servers)), "mode": "unicast", "primary-ntp": servers[0] if servers else "0.0.0.0",
           "secondary-ntp": servers[1] if len(servers) > 1 else "0.0.0.0", "server-dns-names": "",
           "poll-interval": "15m"}
    if servers:
        row.update({"active-server": servers[0], "last-update-from": servers[0], "last-update-before": since,
                    "last-adjustment": f"{int(now) % 900}us"})
    return [row]


def _dns(device: SimDevice, now: float) -> list[Row]:
    return [{"servers": ",".join(device.config.dns_servers), "dynamic-servers": "", "use-doh-server": "",
             "verify-doh-cert": "false", "allow-remote-requests": "false", "max-udp-packet-size": "4096",
             "query-server-timeout": "2s", "query-total-timeout": "10s", "max-concurrent-queries": "100",
             "max-concurrent-tcp-sessions": "20", "cache-size": "2048KiB", "cache-max-ttl": "1w",
             "cache-used": f"{24 + int(now) % 100}KiB"}]


def _snmp(device: SimDevice, now: float) -> list[Row]:
    communities = device.config.communities
    row: Row = {"enabled": _flag(bool(communities)), "contact": "", "location": ""}
    row["engine-id-suffix" if device.ros_major >= 7 else "engine-id"] = ""
    row.update({"trap-community": communities[0].name if communities else "public", "trap-version": "1",
                "trap-generators": "temp-exception", "trap-target": ""})
    return [row]


def _snmp_communities(device: SimDevice, now: float) -> list[Row]:
    return [{
        ".id": _star(i), "name": c.name, "addresses": c.addresses, "security": "none",
        "read-access": _flag(c.read_access), "write-access": _flag(c.write_access),
        "authentication-protocol": "MD5", "encryption-protocol": "DES", "authentication-password": "",
        "encryption-password": "", "default": _flag(i == 0),
    } for i, c in enumerate(device.config.communities)]


def _users(device: SimDevice, now: float) -> list[Row]:
    # Like RouterOS, never the password; last-logged-in moves with every login.
    return [{".id": _star(i + 1), "name": u.name, "group": u.group, "address": "",
             "last-logged-in": _datetime(device, now - 60 * i), "disabled": "false"}
            for i, u in enumerate(device.config.users)]


_SERVICES = (("telnet", 23, True), ("ftp", 21, True), ("www", 80, True), ("ssh", 22, False),
             ("www-ssl", 443, True), ("api", 8728, False), ("winbox", 8291, False), ("api-ssl", 8729, True))


def _services(device: SimDevice, now: float) -> list[Row]:
    rows = []
    for i, (name, port, disabled) in enumerate(_SERVICES):
        row: Row = {".id": _star(i), "name": name, "port": str(port), "address": "" if disabled else "10.0.0.0/8",
                    "certificate": "none", "invalid": "false", "disabled": _flag(disabled)}
        if device.ros_major >= 7 and name in ("www-ssl", "api-ssl"):
            row["tls-version"] = "any"
        rows.append(row)
    return rows


def _vlans(device: SimDevice, now: float) -> list[Row]:
    ordered = sorted(device.interfaces.values(), key=lambda i: i.ifindex)
    parent = next((i.name for i in ordered if i.type == "ether"), "")
    rows = []
    for itf in ordered:
        if itf.type != "vlan":
            continue
        vlan_id = "".join(ch for ch in itf.name if ch.isdigit()) or "1"
        rows.append({".id": _star(itf.ifindex), "name": itf.name, "mtu": str(itf.mtu), "arp": "enabled",
                     "vlan-id": vlan_id, "interface": parent, "use-service-tag": "false",
                     "running": _flag(itf.running and not itf.disabled), "disabled": _flag(itf.disabled)})
        if itf.comment:
            rows[-1]["comment"] = itf.comment
    return rows


# ---- /ping ----------------------------------------------------------------------


def _rtt(device: SimDevice, ms: float) -> str:
    """v7 prints ``9ms445us`` (zero parts left out); v6 whole milliseconds (``0ms`` on loopback)."""
    if device.ros_major < 7:
        return f"{int(ms)}ms"
    total_us = round(ms * 1000)
    whole_ms, us = divmod(total_us, 1000)
    text = (f"{whole_ms}ms" if whole_ms else "") + (f"{us}us" if us else "")
    return text or "0ms"


def ping_row(device: SimDevice, seq: int, host: str, size: int, rtt_ms: float | None, rtts: list[float]) -> Row:
    """One ``/ping`` echo row: the echo itself, then running totals (``rtts`` = every reply so far)."""
    sent = seq + 1
    row: Row = {"seq": str(seq), "host": host}
    if rtt_ms is None:
        row["status"] = "timeout"
    else:
        row.update({"size": str(size), "ttl": "64", "time": _rtt(device, rtt_ms)})
    row.update({
        "sent": str(sent),
        "received": str(len(rtts)),
        "packet-loss": str(100 * (sent - len(rtts)) // sent),
    })
    if rtts:
        row.update({
            "min-rtt": _rtt(device, min(rtts)),
            "avg-rtt": _rtt(device, sum(rtts) / len(rtts)),
            "max-rtt": _rtt(device, max(rtts)),
        })
    return row


def _registration_v6(device: SimDevice, now: float) -> list[Row] | None:
    """/interface/wireless/registration-table (v6): signal with the rate it was read at, rates with the
    channel width, as RouterOS prints them."""
    if not device.wireless or device.ros_major != 6:
        return None
    return [{".id": _star(i), "interface": c.interface, "mac-address": c.mac,
             "signal-strength": f"{c.signal_at(now)}dBm@6Mbps", "tx-rate": f"{c.tx_rate_mbps:g}Mbps-20MHz/1S",
             "rx-rate": f"{c.rx_rate_mbps:g}Mbps-20MHz/1S", "uptime": format_ros_duration(now - c.since)}
            for i, c in enumerate(device.wireless, start=1)]


def _registration_v7(device: SimDevice, now: float) -> list[Row] | None:
    """/interface/wifi/registration-table (v7 wifi package): a plain dBm signal and the SSID."""
    if not device.wireless or device.ros_major != 7:
        return None
    return [{".id": _star(i), "interface": c.interface, "mac-address": c.mac, "ssid": c.ssid,
             "signal": str(c.signal_at(now)), "tx-rate": f"{c.tx_rate_mbps:g}Mbps",
             "rx-rate": f"{c.rx_rate_mbps:g}Mbps",
             "uptime": format_ros_duration(now - c.since)}
            for i, c in enumerate(device.wireless, start=1)]


# ---- /tool/traceroute ------------------------------------------------------------


def traceroute_row(address: str | None, rtt_ms: float | None) -> Row:
    """One hop of a ``count=1`` traceroute: one probe sent, answered in ``rtt_ms`` or lost (``timeout``).

    ``last`` carries its unit and the statistics are bare milliseconds, as RouterOS prints them; a silent
    hop has no address and 100 % loss.
    """
    if rtt_ms is None:
        return {"address": "", "loss": "100", "sent": "1", "last": "timeout", "avg": "", "best": "",
                "worst": "", "std-dev": "", "history": "timeout", "status": ""}
    ms = f"{rtt_ms:.1f}"
    return {"address": address or "", "loss": "0", "sent": "1", "last": f"{ms}ms", "avg": ms, "best": ms,
            "worst": ms, "std-dev": "0", "history": ms, "status": ""}


def _dhcp_servers(device: SimDevice, now: float) -> list[Row]:
    return [{".id": _star(n), "name": d.name, "interface": d.interface, "address-pool": d.pool,
             "lease-time": "30m", "disabled": "false"} for n, d in enumerate(device.dhcp_servers, start=1)]


def _lease_address(ranges: str, n: int) -> str:
    """The pool's n-th address (its first range's start, a network's first address, onwards)."""
    start = ranges.split(",")[0].split("-")[0].strip()
    first = ipaddress.ip_network(start, strict=False)[0] if "/" in start else ipaddress.ip_address(start)
    return str(first + n)


def _dhcp_leases(device: SimDevice, now: float) -> list[Row]:
    rows: list[Row] = []
    for d in device.dhcp_servers:
        for n in range(d.leases):
            rows.append({".id": _star(len(rows) + 1), "address": _lease_address(d.ranges, n),
                         "mac-address": f"02:00:00:{n // 65536 % 256:02X}:{n // 256 % 256:02X}:{n % 256:02X}",
                         "server": d.name, "status": "bound" if n < d.bound else "waiting", "dynamic": "true"})
    return rows


def _pools(device: SimDevice, now: float) -> list[Row]:
    return [{".id": _star(n), "name": d.pool, "ranges": d.ranges} for n, d in enumerate(device.dhcp_servers, 1)]


def _pools_used(device: SimDevice, now: float) -> list[Row]:
    return [{"pool": d.pool, "address": _lease_address(d.ranges, n), "owner": "dhcp", "info": d.name}
            for d in device.dhcp_servers for n in range(d.leases)]


_MENUS: dict[str, Renderer] = {
    "/interface/wireless/registration-table": _registration_v6,
    "/interface/wifi/registration-table": _registration_v7,
    "/system/identity": _identity,
    "/system/resource": _resource,
    "/system/routerboard": _routerboard,
    "/system/health": _health,
    "/interface": _interfaces,
    "/interface/ethernet": _ethernet,
    "/ip/address": _addresses,
    "/ip/neighbor": _neighbors,
    "/ip/route": _routes,
    "/ip/dhcp-server": _dhcp_servers,
    "/ip/dhcp-server/lease": _dhcp_leases,
    "/ip/pool": _pools,
    "/ip/pool/used": _pools_used,
    "/routing/bgp/instance": _bgp_instance,
    "/routing/bgp/peer": _bgp_peers_v6,
    "/routing/bgp/connection": _bgp_connections_v7,
    "/routing/bgp/session": _bgp_sessions_v7,
    "/routing/ospf/neighbor": _ospf_neighbors,
    # configuration menus (engine/config_normalise.py API_MENUS)
    "/system/clock": _clock,
    "/system/ntp/client": _ntp_client,
    "/ip/dns": _dns,
    "/snmp": _snmp,
    "/snmp/community": _snmp_communities,
    "/user": _users,
    "/ip/service": _services,
    "/interface/vlan": _vlans,
    "/ip/firewall/filter": _firewall_filter,
    "/ip/firewall/nat": _empty,
    "/ip/firewall/mangle": _empty,
    "/ip/firewall/raw": _empty,
    "/routing/filter": _route_filters_v6,
    "/routing/filter/rule": _route_filter_rules_v7,
    "/routing/bgp/template": _bgp_templates_v7,
    "/routing/ospf/instance": _ospf_instances,
    "/routing/ospf/area": _ospf_areas,
    "/routing/ospf/interface": _ospf_interfaces_v6,
    "/routing/ospf/network": _ospf_networks_v6,
    "/routing/ospf/interface-template": _ospf_templates_v7,
}
