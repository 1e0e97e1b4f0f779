"""RouterOS API poller (TCP 8728 / API-SSL 8729) built on librouteros's asyncio client.

One ``RouterOSCollector`` per router keeps one logged-in connection between
polls and drops it after any failure, so the next poll starts clean. Which
menus exist (v6 ``/routing/bgp/peer`` or v7 ``connection`` + ``session``,
OSPF, health) is probed once per connection and again when the reported
version changes, never guessed from the version string.

Replies are read as raw words (not through librouteros's value casting) so
every value arrives exactly as the router sent it: a comment ``"yes"`` stays
a string and ``"007"`` keeps its zeros. Each family (system, interfaces,
ethernet link rates, addresses, bgp, ospf, health, neighbors, routes) is
isolated: a ``!trap`` or a missing menu marks only that family stale.
Device-level failures (timeout, refused, login, TLS, connection lost,
protocol garbage) become ``ok=False`` results.

Probes (``/ping`` from the router) run last, in the time the poll has left:
their echo interval shrinks with short poll timeouts so they finish inside
it, and a probe that fails is a ``ProbeResult`` with ``error``, never a
failed poll.

``read_config`` reads the configuration menus ``engine/config_normalise.py``
fingerprints, over the same connection, after a poll: a ``ConfigRead`` of raw
rows, asked by ``.proplist`` for the allow-listed attributes only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import itertools
import logging
import math
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from librouteros.api import AsyncApi
from librouteros.exceptions import ConnectionClosed, FatalError, ProtocolError, TrapError
from librouteros.login import async_plain

from ispvm_tui.clock import Clock
from ispvm_tui.collectors.neterrors import os_error_kind, os_error_text
from ispvm_tui.collectors.results import (
    BgpSession,
    ConfigRead,
    DhcpServer,
    ErrorKind,
    HealthSensor,
    InterfaceStat,
    IpAddress,
    LteSignal,
    Neighbor,
    OpticalModule,
    OspfNeighbor,
    PollResult,
    ProbeResult,
    SystemInfo,
    WirelessClient,
)
from ispvm_tui.collectors.routeros_wire import ReplyBudget, ReplyTooLarge, bytes_received, open_api
from ispvm_tui.engine.config_normalise import API_MENUS, SPECS

_LOG = logging.getLogger(__name__)

T = TypeVar("T")
Row = dict[str, str]

_DURATION_PART = re.compile(r"(\d+)(ms|us|w|d|h|m|s)")
_DURATION_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
_TRUE = {"true", "yes"}
_MISSING_MENU = ("no such command prefix", "no such command")

# Attributes asked for per menu (.proplist keeps replies small on busy routers).
# Errors and drops have the same names in v6 and v7; tx-queue-drop (packets the interface queue
# threw away, where congestion shows on RouterOS) is not printed by every version or interface type.
_IFACE_PROPS = ("name", "type", "mtu", "mac-address", "running", "disabled", "comment",
                "rx-byte", "tx-byte", "rx-packet", "tx-packet", "link-downs",
                "rx-error", "tx-error", "rx-drop", "tx-drop", "tx-queue-drop")
_PEER_V6_PROPS = ("name", "instance", "remote-address", "remote-as", "state", "established",
                  "uptime", "prefix-count", "disabled")
_CONN_V7_PROPS = ("name", "as", "remote.address", "remote.as", "local.role", "disabled")
_SESSION_V7_PROPS = ("name", "remote.address", "remote.as", "local.as", "established", "uptime", "prefix-count")
_OSPF_PROPS = ("router-id", "address", "interface", "state")
_NEIGHBOR_PROPS = ("interface", "identity", "address", "address4", "address6", "mac-address", "platform",
                   "interface-name", "discovered-by")
# The SFP cage's diagnostics come in the same reply (rows of copper ports have none of them).
_SFP_PROPS = ("sfp-module-present", "sfp-rx-loss", "sfp-tx-fault", "sfp-rx-power", "sfp-tx-power", "sfp-temperature",
              "sfp-supply-voltage", "sfp-tx-bias-current", "sfp-wavelength", "sfp-vendor-name",
              "sfp-vendor-part-number")
_MONITOR_PROPS = ("name", "status", "rate", *_SFP_PROPS)
_LTE_PROPS = ("name", "access-technology", "current-cellid", "rssi", "rsrp", "rsrq", "sinr")
BOOT_GRAIN_S = 300  # boot times (now - uptime) within this of each other are one boot
# A DOM reading: the API gives bare numbers ("-5.673"), the terminal units ("-5.673dBm", "38C"); a
# multi-lane module (QSFP) one per lane, comma-separated.
_READING = re.compile(r"^\s*(-?\d+(?:\.\d+)?)")
# Registration tables, newest package first: v7 wifi (wifiwave2 before 7.13), v6 and v7 legacy wireless.
_WIRELESS_MENUS = ("/interface/wifi/registration-table", "/interface/wifiwave2/registration-table",
                   "/interface/wireless/registration-table")
_WIRELESS_PROPS = ("interface", "mac-address", "ssid", "signal", "signal-strength", "tx-rate", "rx-rate", "uptime")
_SIGNAL = re.compile(r"^\s*(-?\d+(?:\.\d+)?)")

# Link rates as ``/interface/ethernet/monitor`` prints them ("1Gbps", "2.5Gbps", "100Mbps"),
# and the 7.12+ link-mode words ("10G-baseSR-LR") should a router print one instead.
_RATE = re.compile(r"^(\d+(?:\.\d+)?)([KMG])(?:bps|-base)", re.IGNORECASE)
_RATE_SCALE = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
_RTT_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|s)")
_RTT_SCALE_MS = {"s": 1000.0, "ms": 1.0, "us": 0.001}

# v6 /system/health is one row of attributes: readings beside fan and over-temperature
# settings. These are settings, not sensors.
_V6_HEALTH_SETTINGS = frozenset({"fan-mode", "use-fan", "active-fan", "fan-switch", "state", "state-after-reboot"})
_V6_HEALTH_SETTING_WORDS = ("overtemp", "threshold", "fan-on", "fan-full", "fan-target", "fan-min", "fan-control")

# With several discovery protocols on one neighbour, report LLDP first: it is what the
# SNMP collector (LLDP-MIB) sees too, so both collectors agree on the same neighbour.
_PROTOCOL_ORDER = ("lldp", "mndp", "cdp")

# Probes: the share of the poll timeout they plan for (the rest is for the other
# families), the echo interval bounds RouterOS accepts, and the part of a probe's time
# slot the echoes may fill (the rest covers the last reply and the reply's trip back).
_PROBE_SHARE = 0.5
_PROBE_INTERVAL = (0.01, 1.0)
_PROBE_FILL = 0.7


@dataclass(frozen=True)
class ProbeSpec:
    """A ping the router runs to ``target`` on every poll."""

    target: str
    count: int = 5
    size: int = 64


@dataclass(frozen=True)
class ApiTarget:
    name: str
    address: str
    username: str
    password: str = field(repr=False)
    port: int = 8728
    tls: bool = False
    tls_verify: bool = True
    ca_file: str | None = None
    probes: tuple[ProbeSpec, ...] = ()


@dataclass
class _Menus:
    """Which optional menus this router has (probed once per connection)."""

    version: str | None
    bgp: str | None  # "v7" (connection + session), "v6" (peer + instance) or None
    ospf: bool
    health: bool
    wireless: str | None = None  # the registration-table menu this router has, if any


class _LoginFailed(Exception):
    pass


class _MalformedReply(Exception):
    """The reply could not be parsed; the connection can no longer be trusted."""


class _PollTooLarge(Exception):
    """The poll's replies passed their byte budget: the whole poll stops (a protocol error)."""


@dataclass
class _Poll:
    """What one poll gathers before it becomes a PollResult."""

    system: SystemInfo | None = None
    interfaces: tuple[InterfaceStat, ...] = ()
    addresses: tuple[IpAddress, ...] = ()
    bgp: tuple[BgpSession, ...] | None = None
    ospf: tuple[OspfNeighbor, ...] | None = None
    sensors: tuple[HealthSensor, ...] | None = None
    neighbors: tuple[Neighbor, ...] | None = None
    route_count: int | None = None
    probes: tuple[ProbeResult, ...] = ()
    wireless: tuple[WirelessClient, ...] | None = None
    optics: tuple[OpticalModule, ...] | None = None
    lte: tuple[LteSignal, ...] | None = None
    dhcp: tuple[DhcpServer, ...] | None = None
    stale: dict[str, str] = field(default_factory=dict)


# ---- value parsing ------------------------------------------------------------------


def parse_ros_duration(text: str | None) -> float | None:
    """``1w2d3h4m5s``, ``18h8m41s680ms`` or ``01:02:03`` to seconds."""
    if not text:
        return None
    if ":" in text:
        try:
            parts = [float(p) for p in text.split(":")]
        except ValueError:
            return None
        total = 0.0
        for part in parts:
            total = total * 60 + part
        return total
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(int(n) * _DURATION_UNITS[u] for n, u in parts)


def _int(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _flag(value: str | None) -> bool | None:
    return None if value is None else value.lower() in _TRUE


def _bare_version(value: str | None) -> str | None:
    return value.split()[0] if value else None


def _bare_address(value: str | None) -> str | None:
    """v7 may print ``10.0.0.2/32`` or ``fe80::1%ether1``; keep the address only."""
    if not value:
        return None
    return value.split("/")[0].split("%")[0]


def _attrs(words: Iterable[str]) -> Row:
    row: Row = {}
    for word in words:
        if word.startswith("="):
            key, sep, value = word[1:].partition("=")
            if not sep or not key:
                raise _MalformedReply(f"attribute word without value: {word[:40]!r}")
            row[key] = value
        elif not word.startswith("."):  # .tag / .section are API words, not attributes
            raise _MalformedReply(f"unexpected word {word[:40]!r}")
    return row


# ---- collector ----------------------------------------------------------------------


class RouterOSCollector:
    """Polls one RouterOS router over the API; ``poll()`` never raises (except cancellation)."""

    def __init__(self, target: ApiTarget, *, clock: Clock, timeout: float = 5.0) -> None:
        self.target = target
        self._clock = clock
        self._timeout = timeout
        self._api: AsyncApi | None = None
        self._menus: _Menus | None = None
        # /system/routerboard changes only with an upgrade, which needs a reboot: read once per version and boot.
        self._firmware_of: tuple[str | None, int | None] | None = None
        self._firmware: tuple[str | None, str | None] = (None, None)
        self._stage = "connect"
        self._lock = asyncio.Lock()
        self._deadline = 0.0  # time.monotonic() when the running poll's timeout expires
        self._budget = ReplyBudget()  # reply bytes the running poll may still read
        self._received = 0  # bytes read on the connection that failed (0: it died before any reply)

    async def poll(self) -> PollResult:
        async with self._lock:
            started_at = self._clock.now()
            t0 = time.monotonic()
            self._deadline = t0 + self._timeout
            self._budget.reset()
            try:
                async with asyncio.timeout(self._timeout):
                    got = await self._collect()
            except asyncio.CancelledError:
                self._abort()
                raise
            except Exception as exc:
                self._abort()
                kind, message = self._classify(exc)
                _LOG.debug("%s: poll failed (%s): %s", self.target.name, kind, message)
                return PollResult(
                    device=self.target.name, collector="api", started_at=started_at,
                    duration_s=time.monotonic() - t0, ok=False, error=message, error_kind=kind,
                )
            return PollResult(
                device=self.target.name, collector="api", started_at=started_at,
                duration_s=time.monotonic() - t0, ok=True, system=got.system,
                interfaces=got.interfaces, addresses=got.addresses, bgp=got.bgp, ospf=got.ospf,
                sensors=got.sensors, neighbors=got.neighbors, probes=got.probes, route_count=got.route_count,
                stale=got.stale, wireless=got.wireless, optics=got.optics, lte=got.lte, dhcp=got.dhcp,
            )

    async def read_config(self) -> ConfigRead:
        """Read the configuration menus (``config_normalise.API_MENUS``); never raises (except cancellation).

        Runs over the poll's logged-in connection, after a poll and never beside
        one (the lock), within the collector's timeout for the whole read. Each
        menu is asked only for its allow-listed attributes (``=.proplist=``), so
        the secrets of those menus are never even sent; open menus (firewall
        rules, v6 routing filters) travel whole, they hold no secrets. A menu
        this version lacks is skipped; one that fails leaves its whole category
        out (a category read in part would look changed). Row contents are
        never logged.
        """
        async with self._lock:
            started_at = self._clock.now()
            self._deadline = time.monotonic() + self._timeout
            self._budget.reset()
            try:
                async with asyncio.timeout(self._timeout):
                    menus = await self._read_menus()
            except asyncio.CancelledError:
                self._abort()
                raise
            except Exception as exc:
                self._abort()
                kind, message = self._classify(exc)
                _LOG.debug("%s: configuration read failed (%s): %s", self.target.name, kind, message)
                return ConfigRead(device=self.target.name, collector="api", started_at=started_at, ok=False,
                                  error=message)
            return ConfigRead(device=self.target.name, collector="api", started_at=started_at, ok=True, menus=menus)

    async def _read_menus(self) -> dict[str, list[Row]]:
        await self._connection()  # device-level failures (refused, login, TLS) fail the whole read
        menus: dict[str, list[Row]] = {}
        failed: dict[str, str] = {}  # category -> the menu that failed
        for path in API_MENUS:
            spec = SPECS[path]
            if spec.category in failed:
                continue
            try:
                menus[path] = await self._print(path, spec.proplist(), *spec.query)
            except TrapError as exc:
                if not any(m in str(exc) for m in _MISSING_MENU):  # "no such command": not on this version
                    failed[spec.category] = path
            except _MalformedReply:
                self._abort()  # the stream is out of step; the next menu reconnects
                failed[spec.category] = path
        if failed:
            _LOG.debug("%s: configuration categories not read: %s", self.target.name,
                       ", ".join(f"{cat} ({path})" for cat, path in failed.items()))
        return {path: rows for path, rows in menus.items() if SPECS[path].category not in failed}

    async def close(self) -> None:
        async with self._lock:  # never pull the connection from under a running poll
            api, self._api, self._menus = self._api, None, None
            if api is None:
                return
            try:
                await asyncio.wait_for(api.close(), timeout=1.0)
            except Exception:
                _abort_api(api)

    # ---- connection -----------------------------------------------------------

    async def _connection(self) -> AsyncApi:
        if self._api is not None and _alive(self._api):
            return self._api
        self._abort()  # the router closed an idle connection: start over quietly
        t = self.target
        self._stage = "connect"
        api = await open_api(t.address, t.port, timeout=self._timeout,
                             ssl_context=self._ssl_context() if t.tls else None, budget=self._budget)
        self._api = api  # from here a failure aborts it (no goodbye to a peer that may not answer)
        await self._login(api, t.username, t.password)
        return api

    async def _login(self, api: AsyncApi, username: str, password: str) -> None:
        self._stage = "login"
        try:
            await async_plain(api, username, password)
        except TrapError as exc:
            raise _LoginFailed(str(exc)) from None
        except ReplyTooLarge as exc:
            raise _PollTooLarge(str(exc)) from None
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            # librouteros builds its reply from the words it got: a nonsense !trap or !done lands here
            raise _MalformedReply(f"{type(exc).__name__}: {exc}") from None

    def _ssl_context(self) -> ssl.SSLContext:
        t = self.target
        if t.tls_verify:
            return ssl.create_default_context(cafile=t.ca_file)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _abort(self) -> None:
        api, self._api, self._menus = self._api, None, None
        if api is not None:
            self._received = bytes_received(api)
            _abort_api(api)

    # ---- requests -------------------------------------------------------------

    async def _print(self, menu: str, props: Iterable[str] = (), *words: str) -> list[Row]:
        rows, _ = await self._command(f"{menu}/print", *_proplist(props), *words)
        return rows

    async def _count(self, menu: str) -> int | None:
        _, done = await self._command(f"{menu}/print", "=count-only=")
        return _int(done.get("ret"))

    async def _command(self, command: str, *words: str) -> tuple[list[Row], Row]:
        """Send one command and read to ``!done``: (rows, attributes of !done); raises TrapError."""
        api = await self._connection()
        self._stage = command
        await api.protocol.writeSentence(command, *words)
        rows: list[Row] = []
        traps: list[Row] = []
        while True:
            reply, raw = await self._read_sentence(api)
            attrs = _attrs(raw)
            if reply == "!re":
                rows.append(attrs)
            elif reply == "!trap":
                traps.append(attrs)
            elif reply == "!done":
                break
            elif reply != "!empty":  # 7.18+ sends !empty before !done for no rows
                raise _MalformedReply(f"unexpected reply word {reply[:40]!r}")
        if traps:
            trap = traps[0]
            raise TrapError(message=trap.get("message", "unknown error"), category=_int(trap.get("category")))
        return rows, attrs

    @staticmethod
    async def _read_sentence(api: AsyncApi) -> tuple[str, tuple[str, ...]]:
        try:
            return await api.protocol.readSentence()
        except (FatalError, ConnectionClosed):
            raise
        except ReplyTooLarge as exc:
            if exc.scope == "poll":
                raise _PollTooLarge(str(exc)) from None
            raise _MalformedReply(str(exc)) from None
        except ProtocolError as exc:
            raise _MalformedReply(str(exc)) from None
        except (IndexError, UnicodeError) as exc:  # empty sentence, undecodable word
            raise _MalformedReply(f"{type(exc).__name__}: {exc}") from None

    # ---- poll -----------------------------------------------------------------

    async def _collect(self) -> _Poll:
        await self._connection()
        got = _Poll()
        got.system = await self._family(got, "system", self._system)
        if got.system is not None:
            firmware = await self._family(got, "firmware", lambda: self._routerboard(got.system))
            if firmware is not None:
                got.system = dataclasses.replace(got.system, firmware=firmware[0], firmware_upgrade=firmware[1])
        version = got.system.version if got.system else None
        menus = self._menus
        if menus is None or (version is not None and version != menus.version):
            menus = self._menus = await self._detect(version)
        got.interfaces = await self._family(got, "interfaces", self._interfaces) or ()
        # A failed monitor leaves the optics not collected (None): "ethernet" in stale says why.
        monitored = await self._family(got, "ethernet", lambda: self._ethernet_monitor(got.interfaces))
        if monitored is not None:
            rates, got.optics = monitored
            if rates:
                got.interfaces = tuple(dataclasses.replace(i, speed_bps=rates.get(i.name)) for i in got.interfaces)
        modems = [i.name for i in got.interfaces if i.type == "lte"]
        if modems:  # no LTE interface: not collected (None), and nothing stale
            got.lte = await self._family(got, "lte", lambda: self._lte(modems, version))
        got.addresses = await self._family(got, "addresses", self._addresses) or ()
        got.dhcp = await self._family(got, "dhcp", self._dhcp)
        # menus is kept locally: a malformed reply below resets the per-connection cache
        got.bgp = await self._optional(got, "bgp", menus.bgp is not None, lambda: self._bgp(menus.bgp),
                                       "no BGP menu (/routing/bgp/connection or /routing/bgp/peer)")
        got.ospf = await self._optional(got, "ospf", menus.ospf, lambda: self._ospf(got.addresses),
                                        "no /routing/ospf/neighbor menu")
        # No health menu at all means no sensors, as on CHR (which answers an empty list).
        got.sensors = await self._family(got, "health", self._health) if menus.health else ()
        if got.sensors and got.system is not None:
            got.system = dataclasses.replace(got.system, temperature_c=_pick_sensor(got.sensors, "temperature"),
                                             voltage_v=_pick_sensor(got.sensors, "voltage"))
        got.neighbors = await self._family(got, "neighbors", self._neighbors)
        got.route_count = await self._family(got, "routes", lambda: self._count("/ip/route"))
        # No registration table: no wireless package, so not collected (None), and not stale either.
        if menus.wireless is not None:
            got.wireless = await self._family(got, "wireless", lambda: self._wireless(menus.wireless or ""))
        got.probes = await self._probes()
        return got

    async def _family(self, got: _Poll, family: str, fetch: Callable[[], Awaitable[T]]) -> T | None:
        """Run one family; a trap or malformed reply marks it stale instead of failing the device."""
        try:
            return await fetch()
        except TrapError as exc:
            got.stale[family] = self._scrub(f"{self._stage}: {exc}")
        except _MalformedReply as exc:
            got.stale[family] = self._scrub(f"{self._stage}: malformed reply ({exc})")
            self._abort()  # the stream is out of step; the next family reconnects
        return None

    async def _optional(self, got: _Poll, family: str, present: bool,
                        fetch: Callable[[], Awaitable[T]], missing: str) -> T | None:
        if not present:
            got.stale[family] = missing
            return None
        return await self._family(got, family, fetch)

    async def _detect(self, version: str | None) -> _Menus:
        """Probe optional menus with cheap count-only prints."""
        if await self._has_menu("/routing/bgp/connection"):
            bgp: str | None = "v7"
        elif await self._has_menu("/routing/bgp/peer"):
            bgp = "v6"
        else:
            bgp = None
        menus = _Menus(
            version=version, bgp=bgp,
            ospf=await self._has_menu("/routing/ospf/neighbor"),
            health=await self._has_menu("/system/health"),
            wireless=await self._first_menu(_WIRELESS_MENUS),
        )
        _LOG.debug("%s: menus %s", self.target.name, menus)
        return menus

    async def _first_menu(self, menus: Iterable[str]) -> str | None:
        for menu in menus:
            if await self._has_menu(menu):
                return menu
        return None

    async def _has_menu(self, menu: str) -> bool:
        try:
            await self._count(menu)
        except TrapError as exc:
            # Only "no such command" means absent; any other trap is a menu that exists but failed.
            return not any(m in str(exc) for m in _MISSING_MENU)
        except _MalformedReply:
            self._abort()
            return True
        return True

    # ---- families -------------------------------------------------------------

    async def _system(self) -> SystemInfo:
        identity = await self._print("/system/identity", ("name",))
        resource = await self._print(
            "/system/resource", ("uptime", "version", "cpu-load", "free-memory", "total-memory", "board-name"))
        ident = identity[0] if identity else {}
        res = resource[0] if resource else {}
        return SystemInfo(
            identity=ident.get("name"),
            version=_bare_version(res.get("version")),
            board=res.get("board-name"),
            uptime_s=parse_ros_duration(res.get("uptime")),
            cpu_load=_int(res.get("cpu-load")),
            total_memory=_int(res.get("total-memory")),
            free_memory=_int(res.get("free-memory")),
        )

    async def _dhcp(self) -> tuple[DhcpServer, ...]:
        """Each DHCP server's leases (all and bound) and its pool's use, counted on the router."""
        servers = await self._print("/ip/dhcp-server", ("name", "interface", "address-pool"))
        if not servers:
            return ()
        pools = {r.get("name"): r.get("ranges") for r in await self._print("/ip/pool", ("name", "ranges"))}
        out = []
        for srv in servers:
            name = srv.get("name") or "?"
            pool = srv.get("address-pool") or None
            leases = await self._count_where("/ip/dhcp-server/lease", f"?server={name}")
            bound = await self._count_where("/ip/dhcp-server/lease", f"?server={name}", "?status=bound")
            used = await self._count_where("/ip/pool/used", f"?pool={pool}") if pool and pool in pools else None
            out.append(DhcpServer(name, srv.get("interface") or None, leases, bound, pool,
                                  pool_size(pools.get(pool)) if pool else None, used))
        return tuple(out)

    async def _count_where(self, menu: str, *queries: str) -> int | None:
        _, done = await self._command(f"{menu}/print", "=count-only=", *queries)
        return _int(done.get("ret"))

    async def _lte(self, names: list[str], version: str | None) -> tuple[LteSignal, ...]:
        """One ``/interface/lte/monitor ... once`` (v7; ``info`` on v6) for every LTE interface."""
        command = "/interface/lte/info" if (version or "7").startswith("6.") else "/interface/lte/monitor"
        rows, _ = await self._command(command, f"=numbers={','.join(names)}", "=once=", *_proplist(_LTE_PROPS))
        return tuple(_lte_signal(r) for r in rows if r.get("name"))

    async def _routerboard(self, system: SystemInfo | None) -> tuple[str | None, str | None]:
        """(current-firmware, upgrade-firmware) of a RouterBOARD; (None, None) on CHR and x86."""
        boot = None if system is None or system.uptime_s is None else round(
            (self._clock.now() - system.uptime_s) / BOOT_GRAIN_S)
        key = (system.version if system else None, boot)
        if key != self._firmware_of or boot is None:
            rows = await self._print("/system/routerboard", ("routerboard", "current-firmware", "upgrade-firmware"))
            row = rows[0] if rows else {}
            if _flag(row.get("routerboard")):
                self._firmware = (row.get("current-firmware") or None, row.get("upgrade-firmware") or None)
            else:
                self._firmware = (None, None)
            self._firmware_of = key
        return self._firmware

    async def _health(self) -> tuple[HealthSensor, ...]:
        rows = await self._print("/system/health")
        if any("name" in r for r in rows):  # v7: one row per sensor
            return tuple(s for s in map(_sensor_v7, rows) if s is not None)
        if rows:  # v6: one row, one attribute per sensor
            return _sensors_v6(rows[0])
        return ()  # CHR/x86: no sensors

    async def _ethernet_monitor(
        self, interfaces: tuple[InterfaceStat, ...]
    ) -> tuple[dict[str, int], tuple[OpticalModule, ...]]:
        """One ``/interface/ethernet/monitor ... once`` for every Ethernet port: the negotiated rate of those
        with a link (``print``'s ``speed`` is only the forced-mode setting) and the SFP cages' diagnostics,
        down ports included (a cage without light is when its readings matter most)."""
        names = [i.name for i in interfaces if i.type == "ether"]
        if not names:
            return {}, ()
        rows, _ = await self._command("/interface/ethernet/monitor", f"=numbers={','.join(names)}", "=once=",
                                      *_proplist(_MONITOR_PROPS))
        rates = {r.get("name", ""): _rate_bps(r.get("rate")) for r in rows if r.get("status") == "link-ok"}
        optics = tuple(_optical_module(r) for r in rows if "sfp-module-present" in r and r.get("name"))
        return {name: bps for name, bps in rates.items() if bps is not None}, optics

    async def _wireless(self, menu: str) -> tuple[WirelessClient, ...]:
        rows = await self._print(menu, _WIRELESS_PROPS)
        return tuple(c for c in map(_wireless_client, rows) if c is not None)

    async def _neighbors(self) -> tuple[Neighbor, ...]:
        rows = await self._print("/ip/neighbor", _NEIGHBOR_PROPS)
        return tuple(n for n in map(_neighbor, rows) if n is not None)

    async def _probes(self) -> tuple[ProbeResult, ...]:
        specs = self.target.probes
        return tuple([await self._probe(spec, sum(s.count for s in specs[i:])) for i, spec in enumerate(specs)])

    async def _probe(self, spec: ProbeSpec, echoes_left: int) -> ProbeResult:
        """One ``/ping`` in its share (by echo count) of the time left; any failure stays inside the ProbeResult."""
        reserve = max(0.02, 0.05 * self._timeout)  # to hand the result back before the poll's own timeout
        slot = (self._deadline - time.monotonic() - reserve) * spec.count / echoes_left
        interval = self._echo_interval(spec, slot)
        if interval is None:
            return _probe_error(spec, f"skipped: {max(slot, 0):.2f}s left in the poll is too short "
                                      f"for {spec.count} echoes")
        words = (f"=address={spec.target}", f"=count={spec.count}", f"=size={spec.size}",
                 f"=interval={round(interval * 1000)}ms")
        try:
            async with asyncio.timeout(slot):
                rows, _ = await self._command("/ping", *words)
        except TrapError as exc:
            return _probe_error(spec, self._scrub(f"/ping refused: {exc}"))
        except TimeoutError:
            self._abort()  # the ping is still running on that connection
            return _probe_error(spec, f"no end of /ping within {slot:.2f}s")
        except (_MalformedReply, _PollTooLarge, ProtocolError, FatalError, ConnectionClosed, OSError,
                asyncio.IncompleteReadError, _LoginFailed) as exc:
            self._abort()
            return _probe_error(spec, self._scrub(f"/ping failed: {type(exc).__name__}: {exc}"))
        return _probe_result(spec, rows)

    def _echo_interval(self, spec: ProbeSpec, slot: float) -> float | None:
        """The same interval every poll (from the configured timeout), shrunk only if the slot is short."""
        low, high = _PROBE_INTERVAL
        echoes = sum(s.count for s in self.target.probes)
        planned = min(high, max(low, self._timeout * _PROBE_SHARE / echoes))
        interval = math.floor(min(planned, slot * _PROBE_FILL / spec.count) * 1000) / 1000
        return interval if interval >= low else None

    async def _interfaces(self) -> tuple[InterfaceStat, ...]:
        rows = await self._print("/interface", _IFACE_PROPS)
        return tuple(_interface(r) for r in rows if r.get("name"))

    async def _addresses(self) -> tuple[IpAddress, ...]:
        rows = await self._print("/ip/address", ("address", "network", "interface"), "?disabled=no")
        return tuple(
            IpAddress(address=r["address"], interface=r.get("interface", ""), network=r.get("network"))
            for r in rows if r.get("address")
        )

    async def _bgp(self, flavour: str | None) -> tuple[BgpSession, ...]:
        return await (self._bgp_v6() if flavour == "v6" else self._bgp_v7())

    async def _bgp_v6(self) -> tuple[BgpSession, ...]:
        instances = await self._print("/routing/bgp/instance", ("name", "as"))
        local_as = {r.get("name", ""): _int(r.get("as")) for r in instances}
        peers = await self._print("/routing/bgp/peer", _PEER_V6_PROPS)
        return tuple(_peer_v6(p, local_as) for p in peers if p.get("name"))

    async def _bgp_v7(self) -> tuple[BgpSession, ...]:
        connections = await self._print("/routing/bgp/connection", _CONN_V7_PROPS)
        sessions = await self._print("/routing/bgp/session", _SESSION_V7_PROPS)
        return _merge_v7(connections, sessions)

    async def _ospf(self, addresses: tuple[IpAddress, ...]) -> tuple[OspfNeighbor, ...]:
        rows = await self._print("/routing/ospf/neighbor", _OSPF_PROPS)
        return tuple(_ospf_neighbor(r, addresses) for r in rows if r.get("router-id"))

    # ---- errors ---------------------------------------------------------------

    def _classify(self, exc: Exception) -> tuple[ErrorKind, str]:
        # poll() aborts before classifying, which recorded how much the failed connection had read
        kind, message = self._describe(exc)
        return kind, self._scrub(message)

    def _scrub(self, message: str) -> str:
        password = self.target.password
        return message.replace(password, "***") if password else message

    def _waiting_for(self) -> str:
        if self._stage == "connect":
            return "waiting for TCP/TLS connect"
        if self._stage == "login":
            return "waiting for the login reply"
        return f"waiting for the reply to {self._stage}"

    def _describe(self, exc: Exception) -> tuple[ErrorKind, str]:
        where = f"{self.target.address}:{self.target.port}"
        if isinstance(exc, TimeoutError):
            return "timeout", f"no answer from {where} within {self._timeout:g}s ({self._waiting_for()})"
        if isinstance(exc, ConnectionRefusedError):
            return "refused", f"connection refused by {where} (API service disabled or wrong port?)"
        if isinstance(exc, _LoginFailed):
            return "auth", f"login as {self.target.username!r} rejected by {where}: {exc}"
        if isinstance(exc, ssl.SSLError | ssl.CertificateError):
            return "tls", f"TLS with {where} failed during {self._stage}: {exc}"
        if isinstance(exc, FatalError):
            return "protocol", f"{where} ended the API session during {self._stage}: {exc}"
        if isinstance(exc, _PollTooLarge):
            return "protocol", f"{where} sent too much during {self._stage}: {exc}"
        if isinstance(exc, ConnectionClosed | asyncio.IncompleteReadError):
            # A reset after the router had answered is still a dead path: unreachable either way.
            when = "before any reply" if self._received == 0 else "in the middle of the session"
            return "unreachable", f"connection to {where} closed {when} (during {self._stage})"
        if isinstance(exc, _MalformedReply | ProtocolError | TrapError):
            return "protocol", f"bad reply from {where} to {self._stage}: {exc}"
        if isinstance(exc, OSError):
            kind = os_error_kind(exc)
            if kind == "unreachable" and isinstance(exc, ConnectionResetError | BrokenPipeError):
                when = "before any reply" if self._received == 0 else "in the middle of the session"
                return kind, f"connection to {where} reset {when} (during {self._stage})"
            return kind, f"{where}: {os_error_text(exc)} (during {self._stage})"
        return "error", f"{type(exc).__name__} during {self._stage}: {exc}"


# ---- helpers ------------------------------------------------------------------------


def _proplist(props: Iterable[str]) -> tuple[str, ...]:
    joined = ",".join(props)
    return (f"=.proplist={joined}",) if joined else ()


def _alive(api: AsyncApi) -> bool:
    transport = api.protocol.transport
    reader, writer = transport.reader, transport.writer
    return not (writer.is_closing() or reader.at_eof() or reader.exception() is not None)


def _abort_api(api: AsyncApi) -> None:
    # No goodbye: after a failure the session state is unknown.
    api.protocol.transport.writer.transport.abort()


def _pick_sensor(sensors: tuple[HealthSensor, ...], kind: str) -> float | None:
    """Prefer the plain sensor (``temperature``), then any ``*-temperature`` one."""
    for s in sensors:
        if s.name == kind:
            return s.value
    return next((s.value for s in sensors if s.name.endswith(kind) and s.value is not None), None)


def _reading(value: str | None) -> tuple[float | None, str | None]:
    """A sensor value: a number (``46``, ``24.1``, ``46C``) or a state word (``ok``, ``fail``)."""
    text = (value or "").strip()
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*([A-Za-z%]*)", text)
    if m:
        return float(m.group(1)), None
    return None, text.lower() or None


def _sensor_v7(r: Row) -> HealthSensor | None:
    name = r.get("name")
    if not name:
        return None  # some versions add a settings row without a name
    value, state = _reading(r.get("value"))
    unit = r.get("type") or None
    return HealthSensor(name=name, value=value, unit=unit if value is not None else None, state=state)


def _v6_unit(name: str) -> str | None:
    """v6 prints readings without units; the name says what they are."""
    if re.search(r"temperature\d*$", name):
        return "C"
    if "voltage" in name:
        return "V"
    if name == "current":
        return "mA"  # board current; the PSU currents are in amperes
    if name.endswith("-current"):
        return "A"
    if name.endswith("consumption"):
        return "W"
    if name.endswith("-speed"):
        return "RPM"
    return None


def _sensors_v6(row: Row) -> tuple[HealthSensor, ...]:
    out: list[HealthSensor] = []
    for name, raw in row.items():
        if name.startswith(".") or name in _V6_HEALTH_SETTINGS or any(w in name for w in _V6_HEALTH_SETTING_WORDS):
            continue
        value, state = _reading(raw)
        if value is None and not name.endswith("-state"):
            continue  # a setting word such as "auto" or "main"
        out.append(HealthSensor(name=name, value=value, unit=_v6_unit(name) if value is not None else None,
                                state=state))
    return tuple(out)


def _dom_reading(text: str | None, worst: Callable[[list[float]], float] = min) -> float | None:
    """A DOM reading with or without its unit; of several lanes the worst (lowest power, hottest)."""
    lanes = [float(m.group(1)) for part in (text or "").split(",") if (m := _READING.match(part))]
    return worst(lanes) if lanes else None


def pool_size(ranges: str | None) -> int | None:
    """Addresses in an /ip/pool ``ranges`` value: ``10.0.0.10-10.0.0.250,10.0.1.0/24,10.0.2.7``."""
    if not ranges:
        return None
    total = 0
    try:
        for part in (p.strip() for p in ranges.split(",") if p.strip()):
            if "-" in part:
                first, last = (ipaddress.ip_address(x.strip()) for x in part.split("-", 1))
                total += max(0, int(last) - int(first) + 1)
            elif "/" in part:
                total += ipaddress.ip_network(part, strict=False).num_addresses
            else:
                ipaddress.ip_address(part)
                total += 1
    except ValueError:
        return None
    return total


def _lte_signal(r: Row) -> LteSignal:
    return LteSignal(
        interface=r.get("name", ""),
        rssi_dbm=_dom_reading(r.get("rssi")), rsrp_dbm=_dom_reading(r.get("rsrp")),
        rsrq_db=_dom_reading(r.get("rsrq")), sinr_db=_dom_reading(r.get("sinr")),
        cell_id=r.get("current-cellid") or None, technology=r.get("access-technology") or None,
    )


def _optical_module(r: Row) -> OpticalModule:
    name = r.get("name", "")
    if not _flag(r.get("sfp-module-present")):
        return OpticalModule(name, present=False)
    return OpticalModule(
        interface=name,
        rx_loss=_flag(r.get("sfp-rx-loss")),
        tx_fault=_flag(r.get("sfp-tx-fault")),
        rx_power_dbm=_dom_reading(r.get("sfp-rx-power")),
        tx_power_dbm=_dom_reading(r.get("sfp-tx-power")),
        temperature_c=_dom_reading(r.get("sfp-temperature"), max),
        supply_v=_dom_reading(r.get("sfp-supply-voltage")),
        tx_bias_ma=_dom_reading(r.get("sfp-tx-bias-current"), max),
        wavelength_nm=_dom_reading(r.get("sfp-wavelength"), max) or None,
        vendor=r.get("sfp-vendor-name") or None,
        part_number=r.get("sfp-vendor-part-number") or None,
    )


def _rate_bps(text: str | None) -> int | None:
    m = _RATE.match(text or "")
    if m is None:
        return None
    return round(float(m.group(1)) * _RATE_SCALE[m.group(2).lower()])


def _wireless_client(r: Row) -> WirelessClient | None:
    mac = r.get("mac-address")
    if not mac:
        return None
    # v6 prints the signal with the rate it was measured at ("-62dBm@6Mbps"); v7's wifi menus a bare "-62".
    signal = _SIGNAL.match(r.get("signal") or r.get("signal-strength") or "")
    return WirelessClient(
        interface=r.get("interface"), mac=mac.upper(),
        signal_dbm=float(signal.group(1)) if signal else None,
        tx_rate_bps=_rate_bps(r.get("tx-rate")), rx_rate_bps=_rate_bps(r.get("rx-rate")),
        uptime_s=parse_ros_duration(r.get("uptime")), ssid=r.get("ssid") or None,
    )


def _neighbor(r: Row) -> Neighbor | None:
    # A port in a bridge shows as "ether3,bridge": the port first, then its parent.
    local = (r.get("interface") or "").split(",")[0]
    if not local:
        return None
    found_by = [p.strip().lower() for p in (r.get("discovered-by") or "").split(",") if p.strip()]
    protocol = next((p for p in _PROTOCOL_ORDER if p in found_by), found_by[0] if found_by else None)
    address = r.get("address4") or r.get("address") or r.get("address6")
    return Neighbor(
        local_interface=local,
        remote_identity=r.get("identity") or None,
        remote_interface=r.get("interface-name") or None,
        remote_address=_bare_address(address),
        remote_mac=r.get("mac-address") or None,
        platform=r.get("platform") or None,
        protocol=protocol,
    )


def _rtt_ms(text: str | None) -> float | None:
    """``9ms445us`` (v7), ``12ms`` (v6), ``1s2ms`` to milliseconds."""
    parts = _RTT_PART.findall(text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return round(sum(float(n) * _RTT_SCALE_MS[u] for n, u in parts), 3)


def _probe_error(spec: ProbeSpec, message: str) -> ProbeResult:
    # Nothing was measured: no echo counted as sent, so no loss is claimed for the path.
    return ProbeResult(target=spec.target, sent=0, received=0, loss_pct=0.0, error=message)


def _probe_result(spec: ProbeSpec, rows: list[Row]) -> ProbeResult:
    """Echo rows carry ``seq`` and running totals; the last row with totals is the summary."""
    echoes = sorted((r for r in rows if _int(r.get("seq")) is not None), key=lambda r: _int(r.get("seq")) or 0)
    if not echoes:
        return _probe_error(spec, "/ping answered without echo rows")
    rtts = [t for t in (_rtt_ms(r.get("time")) for r in echoes if not r.get("status")) if t is not None]
    last = next((r for r in reversed(rows) if "sent" in r), echoes[-1])
    sent = _int(last.get("sent")) or len(echoes)
    received = _int(last.get("received"))
    received = len(rtts) if received is None else received
    loss = _float(last.get("packet-loss"))
    if loss is None:
        loss = 100.0 * (sent - received) / sent if sent else 100.0
    steps = [abs(b - a) for a, b in itertools.pairwise(rtts)]
    return ProbeResult(
        target=spec.target, sent=sent, received=received, loss_pct=loss,
        rtt_min_ms=_rtt_ms(last.get("min-rtt")) if "min-rtt" in last else (min(rtts) if rtts else None),
        rtt_avg_ms=_rtt_ms(last.get("avg-rtt")) if "avg-rtt" in last else (_mean(rtts) if rtts else None),
        rtt_max_ms=_rtt_ms(last.get("max-rtt")) if "max-rtt" in last else (max(rtts) if rtts else None),
        jitter_ms=round(_mean(steps), 3) if steps else None,
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _interface(r: Row) -> InterfaceStat:
    disabled = _flag(r.get("disabled"))
    return InterfaceStat(
        name=r["name"],
        type=r.get("type"),
        admin_up=None if disabled is None else not disabled,
        oper_up=_flag(r.get("running")),
        mtu=_int(r.get("mtu")),
        mac=r.get("mac-address") or None,
        alias=r.get("comment") or None,
        rx_bytes=_int(r.get("rx-byte")),
        tx_bytes=_int(r.get("tx-byte")),
        rx_packets=_int(r.get("rx-packet")),
        tx_packets=_int(r.get("tx-packet")),
        link_downs=_int(r.get("link-downs")),
        rx_errors=_int(r.get("rx-error")),
        tx_errors=_int(r.get("tx-error")),
        rx_discards=_int(r.get("rx-drop")),
        tx_discards=_sum_present(_int(r.get("tx-drop")), _int(r.get("tx-queue-drop"))),
    )


def _sum_present(*values: int | None) -> int | None:
    """The sum of the counters the router printed; None when it printed none of them."""
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _peer_v6(p: Row, local_as: dict[str, int | None]) -> BgpSession:
    established = bool(_flag(p.get("established")))
    disabled = bool(_flag(p.get("disabled")))
    state = (p.get("state") or "idle").lower()
    return BgpSession(
        name=p["name"],
        remote_address=p.get("remote-address") or None,
        remote_as=_int(p.get("remote-as")),
        state="established" if established else state,
        established=established,
        local_as=local_as.get(p.get("instance", "default")),
        uptime_s=parse_ros_duration(p.get("uptime")) if established else None,
        prefixes=_int(p.get("prefix-count")) if established else None,
        disabled=disabled,
    )


def _session_base(name: str) -> str:
    """v7 names sessions ``<connection>-<n>``."""
    base, sep, suffix = name.rpartition("-")
    return base if sep and suffix.isdigit() else name


def _merge_v7(connections: list[Row], sessions: list[Row]) -> tuple[BgpSession, ...]:
    """A configured connection plus its live session, if any; no session means idle."""
    by_name: dict[str, list[Row]] = {}
    for s in sessions:
        by_name.setdefault(_session_base(s.get("name", "")), []).append(s)
    out: list[BgpSession] = []
    for c in connections:
        name = c.get("name", "")
        matches = by_name.pop(name, None) or _pop_by_address(by_name, _bare_address(c.get("remote.address")))
        out.append(_session_v7(name, c, _best_session(matches)))
    for base, rest in by_name.items():  # dynamic sessions accepted through a template
        out.append(_session_v7(base, {}, _best_session(rest)))
    return tuple(out)


def _pop_by_address(by_name: dict[str, list[Row]], address: str | None) -> list[Row]:
    if address is None:
        return []
    for base, rows in by_name.items():
        if any(_bare_address(r.get("remote.address")) == address for r in rows):
            return by_name.pop(base)
    return []


def _best_session(rows: list[Row]) -> Row | None:
    if not rows:
        return None
    return next((r for r in rows if _flag(r.get("established"))), rows[0])


def _session_v7(name: str, conn: Row, session: Row | None) -> BgpSession:
    disabled = bool(_flag(conn.get("disabled")))
    s = session or {}
    established = bool(_flag(s.get("established"))) and not disabled
    if established:
        state = "established"
    elif session is not None and not disabled:
        state = "active"  # v7 shows no FSM word: a session that is not up is still trying
    else:
        state = "idle"
    remote = s.get("remote.address") or conn.get("remote.address")
    return BgpSession(
        name=name,
        remote_address=_bare_address(remote),
        remote_as=_int(s.get("remote.as") or conn.get("remote.as")),
        state=state,
        established=established,
        local_as=_int(s.get("local.as") or conn.get("as")),
        uptime_s=parse_ros_duration(s.get("uptime")) if established else None,
        prefixes=_int(s.get("prefix-count")) if established else None,
        disabled=disabled,
    )


def _ospf_neighbor(r: Row, addresses: tuple[IpAddress, ...]) -> OspfNeighbor:
    state = (r.get("state") or "unknown").lower()
    address = _bare_address(r.get("address"))
    interface = r.get("interface") or _interface_for(address, addresses)
    return OspfNeighbor(router_id=r["router-id"], address=address, interface=interface,
                        state=state, full=state == "full")


def _interface_for(address: str | None, addresses: tuple[IpAddress, ...]) -> str | None:
    """v7 neighbour rows carry no interface: find the local subnet the neighbour lives on."""
    if address is None:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    for a in addresses:
        try:
            if ip in ipaddress.ip_interface(a.address).network:
                return a.interface
        except ValueError:
            continue
    return None
