"""``ispvm poll ADDRESS``: poll one router once, the check to run before adding it to the config.

The command uses the same collectors as the engine, so what it shows is what
the engine would see. Credentials never come from the command line (they
would end up in shell history and ``ps``): each one is read from the secret
store by name, or prompted for. When stdin is not a terminal the prompt reads
one line from stdin, so a script (or a test) can pipe the value in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO, get_args

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ispvm_tui.clock import Clock
from ispvm_tui.collectors.results import PollResult
from ispvm_tui.config import SnmpProfile
from ispvm_tui.secrets import SecretError, SecretSource, read_secret

# RFC 1123 host name: labels of letters, digits and inner hyphens, separated by dots.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
SNMP_RETRIES = 1
# The protocols a config profile accepts, so a poll that works can be written into the config as it is.
AUTH_PROTOCOLS: tuple[str, ...] = get_args(SnmpProfile.model_fields["v3_auth_proto"].annotation)
PRIV_PROTOCOLS: tuple[str, ...] = get_args(SnmpProfile.model_fields["v3_priv_proto"].annotation)


class BadInput(Exception):
    """Arguments that cannot work: reported before anything is polled (exit 2)."""


@dataclass(frozen=True)
class PollRequest:
    """What the engineer asked for, straight from the command line (no secret values)."""

    address: str
    timeout: float = 5.0
    api_user: str | None = None
    api_port: int | None = None  # None: 8728, or 8729 with TLS
    api_tls: bool = False
    api_password_secret: str | None = None
    snmp_port: int | None = None  # None: 161
    snmp_community_secret: str | None = None
    snmp_community_prompt: bool = False
    snmp_v3_user: str | None = None
    snmp_v3_auth_proto: str | None = None  # None: SHA
    snmp_v3_priv_proto: str | None = None  # None: AES
    snmp_v3_auth_secret: str | None = None
    snmp_v3_priv_secret: str | None = None

    @property
    def wants_api(self) -> bool:
        return self.api_user is not None

    @property
    def wants_snmp_v2c(self) -> bool:
        return self.snmp_community_secret is not None or self.snmp_community_prompt

    @property
    def wants_snmp(self) -> bool:
        return self.wants_snmp_v2c or self.snmp_v3_user is not None


# ---- arguments ----------------------------------------------------------------------


def is_valid_address(address: str) -> bool:
    """An IP address or a syntactically valid host name (resolving it is part of the poll)."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        # All-numeric dotted names are mistyped IPv4 addresses, not host names.
        return bool(_HOSTNAME.match(address)) and not re.fullmatch(r"[\d.]+", address)
    return True


def check_request(req: PollRequest) -> list[str]:
    """Every problem with the arguments, so the engineer fixes them in one go."""
    problems: list[str] = []
    if not is_valid_address(req.address):
        problems.append(f"{req.address!r} is not an IP address or host name")
    if not (req.wants_api or req.wants_snmp):
        problems.append("nothing to poll: give --api-user for the RouterOS API and/or "
                        "--snmp-community-secret, --snmp-community-prompt or --snmp-v3-user for SNMP")
    if req.timeout <= 0:
        problems.append("--timeout must be positive")
    if not req.wants_api and (req.api_port is not None or req.api_tls or req.api_password_secret is not None):
        problems.append("--api-port, --api-tls and --api-password-secret need --api-user")
    if req.snmp_community_secret is not None and req.snmp_community_prompt:
        problems.append("give either --snmp-community-secret or --snmp-community-prompt, not both")
    if req.wants_snmp_v2c and req.snmp_v3_user is not None:
        problems.append("choose SNMP v2c (a community) or v3 (--snmp-v3-user), not both")
    v3_extras = (req.snmp_v3_auth_proto, req.snmp_v3_priv_proto, req.snmp_v3_auth_secret, req.snmp_v3_priv_secret)
    if req.snmp_v3_user is None and any(v is not None for v in v3_extras):
        problems.append("--snmp-v3-auth-*/--snmp-v3-priv-* options need --snmp-v3-user")
    for option, value, known in (("--snmp-v3-auth-proto", req.snmp_v3_auth_proto, AUTH_PROTOCOLS),
                                 ("--snmp-v3-priv-proto", req.snmp_v3_priv_proto, PRIV_PROTOCOLS)):
        if value is not None and value.upper() not in known:
            problems.append(f"{option} {value!r}: choose one of {', '.join(known)}")
    if not req.wants_snmp and req.snmp_port is not None:
        problems.append("--snmp-port needs an SNMP community or --snmp-v3-user")
    return problems


# ---- secrets ------------------------------------------------------------------------


def prompt_secret(label: str, stdin: TextIO | None = None, stderr: TextIO | None = None) -> str:
    try:
        return read_secret(label, stdin, stderr)
    except SecretError as exc:
        raise BadInput(str(exc)) from None


def lookup_secret(secrets: SecretSource, name: str, what: str) -> str:
    """A named secret's value; a missing or unreadable one is an argument problem, not a poll failure."""
    try:
        value = secrets.get(name)
    except SecretError as exc:
        raise BadInput(str(exc)) from None
    if value is None:
        raise BadInput(f"{what}: secret {name!r} is not in the keyring or the secrets file; "
                       f"add it with `ispvm secret set {name}`")
    return value


def _secret(secrets: SecretSource, name: str | None, label: str, prompt: Callable[[str], str]) -> str:
    return lookup_secret(secrets, name, label) if name is not None else prompt(label)


# ---- collectors ---------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    api: Any = None  # ApiTarget: typed loosely so the collectors load only when polled
    snmp: Any = None  # SnmpTarget

    def secret_values(self) -> tuple[str, ...]:
        values = [self.api.password] if self.api is not None else []
        if self.snmp is not None:
            # A v3 target still carries the default community ("public"), which is no secret there.
            community = self.snmp.community if self.snmp.version != "3" else None
            values += [community, self.snmp.v3_auth_key, self.snmp.v3_priv_key]
        return tuple(v for v in values if v)


def build_targets(req: PollRequest, secrets: SecretSource, prompt: Callable[[str], str] = prompt_secret) -> Targets:
    """Targets for the protocols asked for; prompts in a fixed order (API password first)."""
    api = snmp = None
    if req.api_user is not None:
        from ispvm_tui.collectors.routeros import ApiTarget

        password = _secret(secrets, req.api_password_secret, f"API password for {req.api_user}", prompt)
        port = req.api_port if req.api_port is not None else (8729 if req.api_tls else 8728)
        api = ApiTarget(name=req.address, address=req.address, username=req.api_user, password=password,
                        port=port, tls=req.api_tls)
    if req.wants_snmp:
        snmp = _snmp_target(req, secrets, prompt)
    return Targets(api=api, snmp=snmp)


def _snmp_target(req: PollRequest, secrets: SecretSource, prompt: Callable[[str], str]) -> Any:
    from ispvm_tui.collectors.snmp import SnmpTarget

    # The whole wait for a silent agent (every try) stays within --timeout.
    common: dict[str, Any] = {"name": req.address, "address": req.address, "port": req.snmp_port or 161,
                              "timeout": req.timeout / (SNMP_RETRIES + 1), "retries": SNMP_RETRIES}
    try:
        if req.snmp_v3_user is None:
            community = _secret(secrets, req.snmp_community_secret, "SNMP community", prompt)
            return SnmpTarget(version="2c", community=community, **common)
        auth = _secret(secrets, req.snmp_v3_auth_secret, f"SNMPv3 auth key for {req.snmp_v3_user}", prompt)
        priv = _secret(secrets, req.snmp_v3_priv_secret, f"SNMPv3 privacy key for {req.snmp_v3_user}", prompt)
        return SnmpTarget(version="3", v3_user=req.snmp_v3_user, v3_auth_key=auth, v3_priv_key=priv,
                          v3_auth_proto=(req.snmp_v3_auth_proto or "SHA").upper(),
                          v3_priv_proto=(req.snmp_v3_priv_proto or "AES").upper(), **common)
    except ValueError as exc:  # unknown protocol names: SnmpTarget knows which ones pysnmp supports
        raise BadInput(str(exc)) from None


async def poll_targets(targets: Targets, clock: Clock, timeout: float) -> list[PollResult]:
    """Poll each target once, concurrently; API first in the result."""
    collectors: list[Any] = []
    if targets.api is not None:
        from ispvm_tui.collectors.routeros import RouterOSCollector

        collectors.append(RouterOSCollector(targets.api, clock=clock, timeout=timeout))
    if targets.snmp is not None:
        from ispvm_tui.collectors.snmp import SnmpCollector

        # owns (and closes) its own engine if v3; the whole poll, not only each request, within --timeout
        collectors.append(SnmpCollector(targets.snmp, clock=clock, poll_timeout=timeout))
    try:
        return list(await asyncio.gather(*(c.poll() for c in collectors)))
    finally:
        for collector in collectors:
            await collector.close()


# ---- output -------------------------------------------------------------------------


def scrub(text: str, secrets: Sequence[str]) -> str:
    """Collectors already keep secrets out of errors; this is the last line of defence."""
    for value in secrets:
        text = text.replace(value, "***")
    return text


def scrub_tree(value: Any, secrets: Sequence[str]) -> Any:
    """``scrub`` over every string of a JSON-ready value (before encoding, so escapes stay intact)."""
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {k: scrub_tree(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_tree(v, secrets) for v in value]
    return value


def make_console(stream: TextIO | None = None) -> Console:
    """Rich console for stdout; piped output gets a wide line so table rows never wrap for a reader script."""
    stream = stream or sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 200)


def to_json(address: str, results: Sequence[PollResult]) -> dict[str, Any]:
    """One object with stable keys: ``api`` and ``snmp`` are null when not polled."""
    by_collector = {r.collector: dataclasses.asdict(r) for r in results}
    return {
        "address": address,
        "ok": all(r.ok for r in results),
        "api": by_collector.get("api"),
        "snmp": by_collector.get("snmp"),
    }


def failure_lines(results: Sequence[PollResult]) -> list[str]:
    """``api: auth: login ... rejected``: the kind first, so a script can match on it."""
    return [f"{r.collector}: {r.error_kind or 'error'}: {r.error or 'failed'}" for r in results if not r.ok]


def render(console: Console, results: Sequence[PollResult], targets: Targets) -> None:
    for result in results:
        target = targets.api if result.collector == "api" else targets.snmp
        where = f"{target.address}:{target.port}" if target is not None else result.device
        label = "RouterOS API" if result.collector == "api" else f"SNMP v{target.version if target else '?'}"
        if not result.ok:
            console.print(f"[bold]{label}[/] {where}: ✖ FAILED ({result.error_kind or 'error'}) "
                          f"after {result.duration_s:.2f}s", highlight=False)
            continue
        console.print(f"[bold]{label}[/] {where}: ✔ answered in {result.duration_s:.2f}s", highlight=False)
        for table in _tables(result):
            console.print(table)
        for what in _empty_families(result):
            console.print(f"{what}: none", highlight=False)
        if result.route_count is not None:
            console.print(f"routes: {result.route_count}", highlight=False)
        for family, reason in sorted(result.stale.items()):
            console.print(f"stale {family}: {reason}", highlight=False, markup=False)
        console.print()


def _tables(result: PollResult) -> list[Table]:
    tables = [_system_table(result)] if result.system is not None else []
    tables.append(_interfaces_table(result))
    optional = [(result.sensors, _sensors_table), (result.optics, _optics_table), (result.lte, _lte_table),
                (result.dhcp, _dhcp_table), (result.bgp, _bgp_table),
                (result.ospf, _ospf_table), (result.neighbors, _neighbors_table), (result.probes, _probes_table)]
    tables += [build(rows) for rows, build in optional if rows]
    return tables


def _empty_families(result: PollResult) -> list[str]:
    """Families read and found empty (None means not collected: those show up as stale instead)."""
    families = (("health sensors", result.sensors), ("SFP cages", result.optics), ("BGP sessions", result.bgp),
                ("OSPF neighbours", result.ospf), ("neighbours", result.neighbors))
    return [what for what, rows in families if rows is not None and not rows]


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column)
    return table


def _row(table: Table, *cells: object) -> None:
    # Text, not str: a router's comment like "[uplink]" must not be read as Rich markup.
    table.add_row(*(Text(_text(c)) for c in cells))


def _system_table(result: PollResult) -> Table:
    s = result.system
    assert s is not None
    table = _table("system", "field", "value")
    memory = None
    if s.total_memory:
        used = s.total_memory - (s.free_memory or 0)
        memory = f"{_bytes(used)} used of {_bytes(s.total_memory)}"
    rows = [("identity", s.identity), ("version", s.version), ("board", s.board),
            ("uptime", _duration(s.uptime_s)), ("cpu", _pct(s.cpu_load)), ("memory", memory),
            ("temperature", f"{s.temperature_c:g} C" if s.temperature_c is not None else None),
            ("voltage", f"{s.voltage_v:g} V" if s.voltage_v is not None else None),
            ("description", s.descr)]
    for name, value in rows:
        if value is not None:
            _row(table, name, value)
    return table


def _interfaces_table(result: PollResult) -> Table:
    # Errors and discards are counters since boot (or the last reset), rx/tx: one poll has no rate.
    table = _table(f"interfaces ({len(result.interfaces)})", "index", "name", "alias", "speed", "admin", "oper",
                   "rx bytes", "tx bytes", "errors rx/tx", "discards rx/tx")
    for i in result.interfaces:
        _row(table, _text(i.ifindex), i.name, i.alias or "", _speed(i.speed_bps), _updown(i.admin_up),
                      _updown(i.oper_up), _text(i.rx_bytes), _text(i.tx_bytes),
                      _pair(i.rx_errors, i.tx_errors), _pair(i.rx_discards, i.tx_discards))
    return table


def _pair(rx: int | None, tx: int | None) -> str:
    """``12/0``; ``?`` for a direction the device does not report, empty when it reports neither."""
    if rx is None and tx is None:
        return ""
    return f"{_text(rx) or '?'}/{_text(tx) or '?'}"


def _sensors_table(rows: Sequence[Any]) -> Table:
    table = _table("health", "sensor", "value", "state")
    for s in rows:
        value = f"{s.value:g}{' ' + s.unit if s.unit else ''}" if s.value is not None else ""
        _row(table, s.name, value, s.state or "")
    return table


def _optics_table(rows: Sequence[Any]) -> Table:
    table = _table("optics", "port", "module", "rx", "tx", "temp", "supply", "bias", "wavelength")

    def unit(value: float | None, suffix: str, fmt: str = "g") -> str:
        return "" if value is None else f"{value:{fmt}} {suffix}"

    for m in rows:
        if not m.present:
            _row(table, m.interface, "empty")
            continue
        rx = "no light" if m.rx_loss else unit(m.rx_power_dbm, "dBm", ".2f")
        _row(table, m.interface, " ".join(p for p in (m.vendor, m.part_number) if p), rx,
             unit(m.tx_power_dbm, "dBm", ".2f") + (" fault" if m.tx_fault else ""), unit(m.temperature_c, "C"),
             unit(m.supply_v, "V", ".2f"), unit(m.tx_bias_ma, "mA"), unit(m.wavelength_nm, "nm"))
    return table


def _dhcp_table(rows: Sequence[Any]) -> Table:
    table = _table("DHCP", "server", "interface", "leases", "bound", "pool", "used")
    for d in rows:
        used = "" if d.pool_used is None else f"{d.pool_used}" + (f"/{d.pool_size}" if d.pool_size else "")
        _row(table, d.name, d.interface or "", _text(d.leases), _text(d.bound), d.pool or "", used)
    return table


def _lte_table(rows: Sequence[Any]) -> Table:
    table = _table("LTE", "interface", "RSRP", "RSRQ", "SINR", "RSSI", "cell", "technology")

    def unit(value: float | None, suffix: str) -> str:
        return "" if value is None else f"{value:g} {suffix}"

    for m in rows:
        _row(table, m.interface, unit(m.rsrp_dbm, "dBm"), unit(m.rsrq_db, "dB"), unit(m.sinr_db, "dB"),
             unit(m.rssi_dbm, "dBm"), m.cell_id or "", m.technology or "")
    return table


def _bgp_table(rows: Sequence[Any]) -> Table:
    table = _table("BGP", "session", "remote", "remote AS", "state", "prefixes", "uptime")
    for b in rows:
        state = ("✔ " if b.established else "✖ ") + b.state + (" (disabled)" if b.disabled else "")
        _row(table, b.name, b.remote_address or "", _text(b.remote_as), state, _text(b.prefixes),
                      _duration(b.uptime_s) or "")
    return table


def _ospf_table(rows: Sequence[Any]) -> Table:
    table = _table("OSPF neighbours", "router id", "address", "interface", "state")
    for o in rows:
        _row(table, o.router_id, o.address or "", o.interface or "", ("✔ " if o.full else "✖ ") + o.state)
    return table


def _neighbors_table(rows: Sequence[Any]) -> Table:
    table = _table("neighbours", "interface", "identity", "remote interface", "address", "mac", "platform")
    for n in rows:
        _row(table, n.local_interface, n.remote_identity or "", n.remote_interface or "", n.remote_address or "",
                      n.remote_mac or "", n.platform or "")
    return table


def _probes_table(rows: Sequence[Any]) -> Table:
    table = _table("probes", "target", "sent", "received", "loss", "avg ms", "error")
    for p in rows:
        avg = f"{p.rtt_avg_ms:.1f}" if p.rtt_avg_ms is not None else ""
        _row(table, p.target, str(p.sent), str(p.received), f"{p.loss_pct:g}%", avg, p.error or "")
    return table


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _updown(value: bool | None) -> str:
    return "?" if value is None else ("✔ up" if value else "✖ down")


def _pct(value: int | None) -> str | None:
    return None if value is None else f"{value}%"


def _speed(bps: int | None) -> str:
    if not bps:
        return ""
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if bps >= size:
            return f"{bps / size:g}{unit}"
    return f"{bps}"


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}d {hours:02d}:{minutes:02d}:{secs:02d}" if days else f"{hours:02d}:{minutes:02d}:{secs:02d}"


# ---- the command --------------------------------------------------------------------


def run(req: PollRequest, *, as_json: bool, secrets: SecretSource, clock: Clock,
        stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """The whole command: 0 when every protocol answered, 1 when one failed, 2 for bad arguments."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    problems = check_request(req)
    try:
        targets = build_targets(req, secrets) if not problems else Targets()
    except BadInput as exc:
        problems = [str(exc)]
    if problems:
        for problem in problems:
            print(problem, file=stderr)
        return 2
    results = asyncio.run(poll_targets(targets, clock, req.timeout))
    hidden = targets.secret_values()
    if as_json:
        print(json.dumps(scrub_tree(to_json(req.address, results), hidden), indent=2), file=stdout)
    else:
        console = make_console(stdout)
        with console.capture() as captured:
            render(console, results, targets)
        stdout.write(scrub(captured.get(), hidden))
    for line in failure_lines(results):
        print(scrub(line, hidden), file=stderr)
    return 0 if all(r.ok for r in results) else 1
