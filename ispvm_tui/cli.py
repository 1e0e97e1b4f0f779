"""Command line: ``ispvm demo | run | lab | config check | secret | deliveries``.

stdout carries data (JSON, tables a script may read); diagnostics and
progress go to stderr. Textual is imported only by the commands that open
the console, so headless commands start fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ispvm_tui.tomlsource import SourceError

# Locals in tracebacks could include passwords: never show them. Help text is plain, not rich
# markup: it names TOML tables ([[links]], [lab]) that markup would swallow as tags.
app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
                  rich_markup_mode=None, help="ispvm: a NOC console for small ISPs.")
config_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Check configuration files.")
secret_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Store secrets in the keyring or the encrypted file.")
deliveries_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                             help="The webhook outbox: dead letters, the delivery log, resends.")
app.add_typer(config_app, name="config")
app.add_typer(secret_app, name="secret")
app.add_typer(deliveries_app, name="deliveries")
notify_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Notification targets: webhooks, Jira, ServiceNow, Telegram, Slack, e-mail.")
app.add_typer(notify_app, name="notify")

EXIT_BAD_INPUT = 2
T = TypeVar("T")


def err(message: str) -> None:
    typer.echo(message, err=True)


log = logging.getLogger("ispvm")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_handler(to_file: Path | None = None) -> logging.Handler:
    """stderr, or a private (0600) log file; it scrubs secrets from every record it writes."""
    from ispvm_tui import redact
    from ispvm_tui.fileperms import create_private_file, loose_mode_warning, make_private_dir

    handler: logging.Handler
    loose = None
    if to_file is not None:
        try:
            make_private_dir(to_file.parent)
            if not create_private_file(to_file):
                loose = loose_mode_warning(to_file, "the engine's log")
            handler = logging.FileHandler(to_file)
        except OSError as exc:
            err(f"cannot write the log {to_file}: {exc}")
            raise typer.Exit(1) from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    redact.install([handler])
    if loose:
        err(f"warning: {loose}")
        handler.handle(log.makeRecord(log.name, logging.WARNING, __file__, 0, "%s", (loose,), None))
    return handler


def _setup_logging(verbose: bool, to_file: Path | None = None) -> None:
    from ispvm_tui import redact

    handler = log_handler(to_file)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler])
    redact.install()  # and any handler that was there before


def _warn(warnings: list[str], *, logged_to_file: bool) -> None:
    """Warnings the operator must see: logged, and also on stderr when the log goes to a file."""
    for warning in warnings:
        log.warning("%s", warning)
        if logged_to_file:
            err(f"warning: {warning}")


def _secrets_file_warnings() -> list[str]:
    from ispvm_tui.secrets import EncryptedFileSecrets

    return EncryptedFileSecrets().permission_warnings()


def _or_exit(load: Callable[[Any], T], source: Any) -> T:
    """Run a loader; a bad file prints every problem (FILE:LINE: field: message) and exits 2."""
    try:
        return load(source)
    except SourceError as exc:
        for p in exc.problems:
            err(str(p))
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _load_config(path: Path, warnings: list[Any] | None = None):  # -> Config
    from ispvm_tui.config import load_config

    return _or_exit(lambda p: load_config(p, warnings), path)


# A config with thousands of unlinked devices would print a warning each: show the first ones.
MAX_WARNINGS_SHOWN = 200


def _load_scenario(name: str):  # -> Scenario
    from ispvm_tui.lab.scenario import load_scenario

    return _or_exit(load_scenario, name)


def _check_lab_addresses(sc: Any, address_base: str | None) -> None:
    """Refuse (exit 2) a lab whose routers would not all be on loopback, before anything binds."""
    from ispvm_tui.lab.addresses import LabAddressError, lab_addresses

    try:
        lab_addresses(address_base or sc.lab.address_base, len(sc.devices))
    except LabAddressError as exc:
        err(f"--address-base: {exc}" if address_base else str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None


# ---- config -----------------------------------------------------------------
@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="config.toml to check")]) -> None:
    """Validate a config file; print every problem as FILE:LINE: field: message.

    Warnings (FILE:LINE: field: warning: message) point at what is allowed but probably
    wrong; with only warnings the file is OK and the exit status is 0.
    """
    warnings: list[Any] = []
    cfg = _load_config(file, warnings)
    for w in warnings[:MAX_WARNINGS_SHOWN]:
        err(str(w))
    if len(warnings) > MAX_WARNINGS_SHOWN:
        err(f"{file}: ... and {len(warnings) - MAX_WARNINGS_SHOWN} more warnings")
    note = f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else ""
    n_targets = len(cfg.notify.all())
    typer.echo(f"{file}: OK: {len(cfg.sites)} sites, {len(cfg.devices)} devices, {len(cfg.links)} links, "
               f"{len(cfg.services)} services, {n_targets} notification target{'s' if n_targets != 1 else ''}{note}")


# ---- secrets ----------------------------------------------------------------
@secret_app.command("set")
def secret_set(
    name: Annotated[str, typer.Argument(help="secret name as used in the config, e.g. routers/noc")],
    file: Annotated[bool, typer.Option("--file", help="use the encrypted file even if a keyring exists")] = False,
) -> None:
    """Prompt for a secret's value (never echoed) and store it."""
    from ispvm_tui.secrets import PASSPHRASE_ENV, EncryptedFileSecrets, KeyringSecrets, SecretError, read_secret

    try:
        value = read_secret(f"value for {name}")
    except SecretError as exc:
        err(f"{exc}: nothing stored")
        raise typer.Exit(1) from None
    ring = KeyringSecrets()
    try:
        if not file and ring.available():
            ring.set(name, value)
            err(f"stored {name} in the OS keyring")
        else:
            store = EncryptedFileSecrets()
            store.set(name, value)
            err(f"stored {name} in {store.path} (encrypted; readers need {PASSPHRASE_ENV})")
            for warning in store.permission_warnings():
                err(f"warning: {warning}")
    except SecretError as exc:
        err(str(exc))
        raise typer.Exit(1) from None


@secret_app.command("check")
def secret_check(config: Annotated[Path, typer.Option("--config", "-c")]) -> None:
    """List the secrets a config needs and whether each is found (values are never shown)."""
    from ispvm_tui.secrets import SecretError, default_secrets

    cfg = _load_config(config)
    names = cfg.secret_names()
    for warning in _secrets_file_warnings():
        err(f"warning: {warning}")
    source, missing = default_secrets(), 0
    errors: list[str] = []
    for name in sorted(names):
        try:
            state = "found  " if source.get(name) is not None else "MISSING"
        except SecretError as exc:
            # A wrong passphrase or a locked keyring says nothing about whether the secret is there.
            state = "UNKNOWN"
            if str(exc) not in errors:
                errors.append(str(exc))
                err(str(exc))
        missing += state != "found  "
        typer.echo(f"{state} {name}")
    if errors:
        err("UNKNOWN: the secret store could not be read, so these were not checked")
    raise typer.Exit(1 if missing else 0)


# ---- notify -----------------------------------------------------------------

def _route_text(route: Any) -> str:
    parts = [f"{key}={','.join(value) if isinstance(value, list) else value}"
             for key, value in route.model_dump(exclude_defaults=True).items()]
    if route.labels:
        parts = [p for p in parts if not p.startswith("labels=")]
        parts.append("labels=" + ",".join(f"{k}:{v}" for k, v in route.labels.items()))
    return " ".join(parts) or "every incident"


@notify_app.command("list")
def notify_list(config: Annotated[Path, typer.Option("--config", "-c")]) -> None:
    """The configured targets: kind, events and route (secrets are names, never values)."""
    cfg = _load_config(config)
    targets = [(kind, t) for kind, _, items in cfg.notify.kinds() for t in items]
    if not targets:
        typer.echo("no notification targets configured ([[notify.webhooks]], [[notify.jira]], ...)")
        return
    width = max(len(t.name) for _, t in targets)
    for kind, t in targets:
        events = "all events" if len(t.events) == 4 else ",".join(e.removeprefix("incident.") for e in t.events)
        typer.echo(f"{t.name:<{width}}  {kind:<10}  {events:<12}  {_route_text(t.route)}")


@notify_app.command("test")
def notify_test(
    name: Annotated[str, typer.Argument(help="a target's name (ispvm notify list)")],
    config: Annotated[Path, typer.Option("--config", "-c")],
) -> None:
    """Send a test message to one target (ticket systems: check credentials and project, open nothing).

    Exit status 0 when the target answered as it should, 1 when it did not, 2 for a bad name or config.
    """
    import asyncio

    import httpx

    from ispvm_tui import redact
    from ispvm_tui.engine import webhooks
    from ispvm_tui.engine.notify.build import build_target
    from ispvm_tui.engine.targets import ProbeFailed
    from ispvm_tui.secrets import SecretError, default_secrets

    redact.install()
    cfg = _load_config(config)
    found = next(((kind, t) for kind, _, items in cfg.notify.kinds() for t in items if t.name == name), None)
    if found is None:
        known = ", ".join(t.name for t in cfg.notify.all()) or "none configured"
        err(f"{config}: no notification target {name!r} (targets: {known})")
        raise typer.Exit(EXIT_BAD_INPUT)
    kind, target_cfg = found
    tenant = webhooks.Tenant(str(cfg.tenant.id), cfg.tenant.name) if cfg.tenant else None
    try:
        target = build_target(target_cfg, default_secrets().get, tenant=tenant)
    except SecretError as exc:
        err(redact.scrub(str(exc)))
        raise typer.Exit(1) from None

    async def probe() -> str:
        async with httpx.AsyncClient() as client:
            try:
                return await target.probe(client)
            finally:
                close = getattr(target, "aclose", None)
                if close is not None:
                    await close()

    try:
        result = asyncio.run(probe())
    except ProbeFailed as exc:
        typer.echo(f"FAILED {name} ({kind}): {redact.scrub(str(exc))}")
        raise typer.Exit(1) from None
    typer.echo(f"OK {name} ({kind}): {redact.scrub(result)}")


# ---- lab --------------------------------------------------------------------
@app.command()
def lab(
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="scenario file or built-in name")] = "core-link-cut",
    speed: Annotated[float, typer.Option(help="simulated seconds per real second")] = 1.0,
    address_base: Annotated[str | None, typer.Option(help="first loopback address, overrides [lab]")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start a scenario's routers on loopback (RouterOS API + SNMP) until Ctrl-C."""
    from ispvm_tui.clock import ScaledClock
    from ispvm_tui.lab.runner import Lab, LabStartError

    _setup_logging(verbose)
    sc = _load_scenario(scenario)
    _check_lab_addresses(sc, address_base)

    async def main() -> None:
        lab_ = Lab(sc, ScaledClock(speed), address_base=address_base)
        try:
            await lab_.start()
        except LabStartError as exc:
            err(str(exc))
            raise typer.Exit(1) from None
        typer.echo(f"lab {sc.scenario.name}: {len(lab_.model.devices)} routers, speed x{speed:g}; "
                   f"login {sc.lab.username} / {sc.lab.password}, SNMP community {sc.lab.community}")
        typer.echo(f"{'router':<14} {'address':<15} {'api':>6} {'snmp':>6}  RouterOS")
        for name, addr, api_port, snmp_port in lab_.routers():
            typer.echo(f"{name:<14} {addr:<15} {api_port:>6} {snmp_port:>6}  {lab_.model.devices[name].version}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        seen = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            for event in lab_.model.history[seen:]:
                err(f"t={event.offset:6.0f}s {event.action} {event.target} {event.note}".rstrip())
            seen = len(lab_.model.history)
        await lab_.stop()

    asyncio.run(main())


# ---- run --------------------------------------------------------------------
@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="config.toml")],
    headless: Annotated[bool, typer.Option(help="no console: events to stdout/stderr")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="headless: one JSON event per line on stdout")] = False,
    duration: Annotated[float | None, typer.Option(help="headless: stop after this many seconds")] = None,
    readonly: Annotated[bool, typer.Option(help="console without write actions")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Poll the configured network: the console, or --headless for services and scripts."""
    from ispvm_tui.clock import SystemClock
    from ispvm_tui.engine.core import Engine
    from ispvm_tui.engine.store import Store, StoreError
    from ispvm_tui.secrets import SecretError, default_secrets

    warnings: list[Any] = []
    cfg = _load_config(config, warnings)
    db = cfg.database_path(config.resolve().parent)
    # Before the store opens, so its warnings (a database open to others) reach the log.
    _setup_logging(verbose, to_file=None if headless else db.with_suffix(".log"))
    _log_warnings(warnings)
    try:
        store = Store(db)
    except StoreError as exc:
        err(str(exc))
        raise typer.Exit(1) from None
    if not headless:  # the store has logged them; the log is a file the operator may not read
        for warning in store.permission_warnings:
            err(f"warning: {warning}")
    _warn(_secrets_file_warnings(), logged_to_file=not headless)
    try:
        engine = Engine(cfg, store=store, clock=SystemClock(), secrets=default_secrets())
    except SecretError as exc:
        store.close()
        err(str(exc))
        raise typer.Exit(1) from None
    if headless:
        try:
            asyncio.run(_headless(engine, json_out, duration))
        except SecretError as exc:  # e.g. [remote]'s NATS password not in the store
            err(str(exc))
            raise typer.Exit(1) from None
        finally:
            store.close()
        return
    from ispvm_tui.aioloop import BackgroundLoop

    loop = BackgroundLoop()
    try:
        loop.run(engine.start(), timeout=60)
        _open_console(engine, title=f"ispvm · {config.name}", readonly=readonly)
    finally:
        with contextlib.suppress(Exception):
            loop.run(engine.stop(), timeout=30)
        loop.stop()
        store.close()


# ---- collector ----------------------------------------------------------------
@app.command()
def collector(
    config: Annotated[Path, typer.Option("--config", "-c", help="a file with [remote] (and [[collectors]])")],
    site: Annotated[str | None, typer.Option(help="the site this collector polls (its [[collectors]] entry)")] = None,
    name: Annotated[str | None, typer.Option(help="the collector's name, as in the centre's [[collectors]]")] = None,
    buffer: Annotated[Path | None, typer.Option(help="local buffer file (SQLite) for polls the centre "
                                                     "has not acknowledged yet")] = None,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run at a PoP: poll the devices the centre assigns to this collector, publish to NATS JetStream."""
    from ispvm_tui.clock import SystemClock
    from ispvm_tui.config import load_remote_settings
    from ispvm_tui.secrets import SecretError, default_secrets

    remote, collectors = _or_exit(load_remote_settings, config)
    if (site is None) == (name is None):
        err("give --site or --name (one of them)")
        raise typer.Exit(EXIT_BAD_INPUT)
    if name is None:
        found = [c.name for c in collectors if c.site == site]
        if len(found) != 1:
            err(f"{config}: no [[collectors]] entry with site = {site!r}; add one, or pass --name"
                if not found else f"{config}: several [[collectors]] poll site {site!r}: pass --name")
            raise typer.Exit(EXIT_BAD_INPUT)
        name = found[0]
    import re

    if not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", name):
        err(f"--name {name!r}: letters, digits, '-' and '_' only (it is a NATS subject token)")
        raise typer.Exit(EXIT_BAD_INPUT)
    _setup_logging(verbose)
    from ispvm_tui.remote.collector import RemoteCollector
    from ispvm_tui.secrets import DEFAULT_FILE

    path = buffer or DEFAULT_FILE.parent / f"collector-{name}.sqlite"
    entry = next((c for c in collectors if c.name == name), None)
    if entry is not None:
        remote = remote.for_collector(entry)  # its own NATS user, when it has one
    try:
        worker = RemoteCollector(remote, name, secrets=default_secrets(), clock=SystemClock(), buffer_path=path)
    except OSError as exc:
        err(f"cannot open the buffer {path}: {exc}")
        raise typer.Exit(1) from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if duration is not None:
            loop.call_later(duration, stop.set)
        await worker.run(stop)

    try:
        asyncio.run(main())
    except SecretError as exc:
        err(str(exc))
        raise typer.Exit(1) from None
    err(worker.summary())


@app.command("nats-config")
def nats_config(
    config: Annotated[Path, typer.Option("--config", "-c", help="the engine's config, with [remote] and "
                                                             "[[collectors]] users")],
) -> None:
    """Print the nats-server `authorization` block: one user per collector and one for the engine, each
    allowed only its own subjects. Passwords are variables named after their secrets, never values."""
    from ispvm_tui.remote.natsauth import authorization_block

    block, problems = authorization_block(_load_config(config))
    for problem in problems:
        err(f"{config}: {problem}")
    if problems:
        raise typer.Exit(EXIT_BAD_INPUT)
    typer.echo(block, nl=False)


def _log_warnings(warnings: list[Any]) -> None:
    """The config's warnings, once at start (as `config check` prints them)."""
    log = logging.getLogger("ispvm_tui.config")
    for w in warnings[:MAX_WARNINGS_SHOWN]:
        log.warning("%s", w)
    if len(warnings) > MAX_WARNINGS_SHOWN:
        log.warning("... and %d more config warnings (see `ispvm config check`)", len(warnings) - MAX_WARNINGS_SHOWN)


def _event_line(event: Any, as_json: bool) -> str:
    from ispvm_tui.redact import scrub

    summary = scrub(event.summary)  # error texts are scrubbed where made; this is the last line of defence
    if as_json:
        return json.dumps({"kind": event.kind, "at": event.at, "summary": summary,
                           "incident_id": event.incident_id})
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(event.at, UTC).strftime("%H:%M:%SZ")
    return f"{at} {event.kind:<18} {summary}"


async def _headless(engine: Any, as_json: bool, duration: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def on_event(event: Any) -> None:
        line = _event_line(event, as_json)
        if as_json or event.kind.startswith("incident."):
            print(line, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    engine.subscribe(on_event)
    # A stop asked for while the engine is still starting (secrets, restoring state) is honoured at once.
    starting = asyncio.ensure_future(engine.start())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
    elif starting.exception() is not None:
        stopping.cancel()
        raise starting.exception()  # type: ignore[misc]
    else:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping, duration)
    await engine.stop()
    noise = engine.snapshot().noise
    summary = {"kind": "summary", "alerts_raised": noise.alerts_raised, "alerts_suppressed": noise.alerts_suppressed,
               "incidents": noise.incidents, "alerts_firing": noise.alerts_firing}
    if as_json:
        print(json.dumps(summary), flush=True)
    else:
        print(f"noise: {noise.alerts_raised} alerts raised, {noise.alerts_suppressed} suppressed, "
              f"{noise.incidents} incidents", file=sys.stderr, flush=True)


def _open_console(engine: Any, *, title: str, readonly: bool = False, subtitle: str | None = None) -> None:
    from ispvm_tui.app import IspvmApp

    app_ = IspvmApp(engine, title=title, readonly=readonly)
    if subtitle:
        app_.sub_title = subtitle
    app_.run()


# ---- demo -------------------------------------------------------------------
@app.command()
def demo(
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="scenario file or built-in name")] = "core-link-cut",
    speed: Annotated[float, typer.Option(help="simulated seconds per real second")] = 4.0,
    headless: Annotated[bool, typer.Option(help="run the scenario to the end without the console")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="headless: print the result as JSON on stdout")] = False,
    database: Annotated[Path | None, typer.Option(help="keep the demo's database here (default: temporary)")] = None,
    address_base: Annotated[str | None, typer.Option(help="first loopback address, overrides [lab]")] = None,
    list_: Annotated[bool, typer.Option("--list", help="list the built-in scenarios")] = False,
    runs: Annotated[int | None, typer.Option(
        min=1, max=50, help="headless: play it N times (fresh lab and database each); all must agree")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start the built-in lab and the engine on it: the console, or --headless to check a scenario."""
    from ispvm_tui.demo import describe_expectations, play_headless, start_demo
    from ispvm_tui.lab.runner import LabStartError
    from ispvm_tui.lab.scenario import builtin_scenarios

    if list_:
        for name in builtin_scenarios():
            typer.echo(name)
        return
    sc = _load_scenario(scenario)
    _check_lab_addresses(sc, address_base)
    if speed <= 0:
        err("--speed must be positive")
        raise typer.Exit(EXIT_BAD_INPUT)
    if runs is not None and not headless:
        err("--runs needs --headless")
        raise typer.Exit(EXIT_BAD_INPUT)
    n_runs = runs or (sc.expect.runs if sc.expect else 1)
    if n_runs > 1 and database is not None:
        err("--database keeps one run's database: drop it or play a single run (--runs 1)")
        raise typer.Exit(EXIT_BAD_INPUT)
    if not headless:
        log_dir = database.parent if database else Path.cwd()
        _setup_logging(verbose, to_file=log_dir / "ispvm-demo.log")
        try:
            run_ = start_demo(sc, speed=speed, database=database, address_base=address_base)
        except LabStartError as exc:
            err(str(exc))
            raise typer.Exit(1) from None
        try:
            _open_console(run_.engine, title=f"ispvm · lab {sc.scenario.name}",
                          subtitle=f"simulated ISP on loopback, x{speed:g} speed")
        finally:
            run_.stop()
        return
    _setup_logging(verbose)
    err(f"scenario {sc.scenario.name}: {sc.scenario.description}")
    times = f"{n_runs} times " if n_runs > 1 else ""
    err(f"runs {sc.scenario.duration_s:g} simulated seconds {times}at x{speed:g} "
        f"(about {sc.scenario.duration_s * n_runs / speed:.0f}s); expecting:")
    for line in describe_expectations(sc.expect, runs):
        err(f"  - {line}")

    def progress(k: int, result: dict[str, Any]) -> None:
        if n_runs > 1:
            err(f"run {k + 1}/{n_runs}: {len(result['incidents'])} incident(s), "
                f"{'pass' if result['expect']['passed'] else 'FAIL'}")

    try:
        result = play_headless(sc, speed=speed, runs=n_runs, database=database, address_base=address_base,
                               on_run=progress)
    except LabStartError as exc:
        err(str(exc))
        raise typer.Exit(1) from None
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        for inc in result["incidents"]:
            rc = inc["root_causes"][0] if inc["root_causes"] else {}
            typer.echo(f"{inc['severity']:<8} {inc['status']:<6} {inc['title']}  "
                       f"[root {rc.get('entity_id')} {rc.get('confidence', 0):.0%}]")
    passed = result["expect"]["passed"]
    err("PASS" if passed else "FAIL")
    for failure in result["expect"]["failures"]:
        err(f"  - {failure}")
    for line in result["expect"].get("signature_diff", []):
        err(f"    {line}")
    raise typer.Exit(0 if passed else 1)


# ---- poll -------------------------------------------------------------------
@app.command()
def poll(
    address: Annotated[str, typer.Argument(help="the router's management address (IP or host name)")],
    api_user: Annotated[str | None, typer.Option(help="RouterOS API user: poll over the API")] = None,
    api_port: Annotated[int | None, typer.Option(min=1, max=65535, help="default 8728, 8729 with --api-tls")] = None,
    api_tls: Annotated[bool, typer.Option("--api-tls/--no-api-tls", help="API-SSL (certificate verified)")] = False,
    api_password_secret: Annotated[str | None, typer.Option(
        help="secret-store name of the API password (prompted for when not given)")] = None,
    snmp_community_secret: Annotated[str | None, typer.Option(
        help="secret-store name of the SNMP v2c community: poll over SNMP")] = None,
    snmp_community_prompt: Annotated[bool, typer.Option(
        "--snmp-community-prompt", help="prompt for the SNMP v2c community: poll over SNMP")] = False,
    snmp_port: Annotated[int | None, typer.Option(min=1, max=65535, help="default 161")] = None,
    snmp_v3_user: Annotated[str | None, typer.Option(help="SNMPv3 user (authPriv): poll over SNMP")] = None,
    snmp_v3_auth_proto: Annotated[str | None, typer.Option(help="SHA (default), SHA256, SHA512, MD5")] = None,
    snmp_v3_priv_proto: Annotated[str | None, typer.Option(help="AES (default), AES256, DES")] = None,
    snmp_v3_auth_secret: Annotated[str | None, typer.Option(
        help="secret-store name of the SNMPv3 auth key (prompted for when not given)")] = None,
    snmp_v3_priv_secret: Annotated[str | None, typer.Option(
        help="secret-store name of the SNMPv3 privacy key (prompted for when not given)")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for each protocol")] = 5.0,
    json_out: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Poll one router once and show what the engine would see: run it before adding the router.

    Secrets are never taken from the command line: each comes from the secret store by name or is
    prompted for (from a pipe, one line of stdin each: API password, then community or v3 keys).
    Exit 0 when every protocol asked for answered, 1 when one failed, 2 for bad arguments.
    """
    from ispvm_tui import pollcmd
    from ispvm_tui.clock import SystemClock
    from ispvm_tui.secrets import default_secrets

    _setup_logging(verbose)
    _warn(_secrets_file_warnings(), logged_to_file=False)
    req = pollcmd.PollRequest(
        address=address, timeout=timeout, api_user=api_user, api_port=api_port, api_tls=api_tls,
        api_password_secret=api_password_secret, snmp_port=snmp_port, snmp_community_secret=snmp_community_secret,
        snmp_community_prompt=snmp_community_prompt, snmp_v3_user=snmp_v3_user,
        snmp_v3_auth_proto=snmp_v3_auth_proto, snmp_v3_priv_proto=snmp_v3_priv_proto,
        snmp_v3_auth_secret=snmp_v3_auth_secret, snmp_v3_priv_secret=snmp_v3_priv_secret,
    )
    raise typer.Exit(pollcmd.run(req, as_json=json_out, secrets=default_secrets(), clock=SystemClock()))


# ---- discover ---------------------------------------------------------------
@app.command()
def discover(
    config: Annotated[Path, typer.Option("--config", "-c", help="config.toml")],
    json_out: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Poll every configured device once and compare its neighbour table with the [[links]].

    Prints each link the neighbours show as known, MISSING (with a [[links]] snippet to paste) or
    CONFLICT, and neighbours that match no configured device. Devices that did not answer go to
    stderr. Exit 0 when every device answered, 1 when some did not, 2 for a bad config.
    """
    from ispvm_tui import discovery
    from ispvm_tui.clock import SystemClock
    from ispvm_tui.secrets import default_secrets

    _setup_logging(verbose)
    _warn(_secrets_file_warnings(), logged_to_file=False)
    cfg = _load_config(config)
    results, setup_errors = asyncio.run(discovery.poll_fleet(cfg, default_secrets(), SystemClock()))
    report = discovery.discover(cfg, results, setup_errors)
    if json_out:
        typer.echo(json.dumps(discovery.to_dict(report), indent=2))
    else:
        typer.echo("\n".join(discovery.render_lines(report)))
    for name, why in sorted(report.unanswered.items()):
        err(f"did not answer: {name}: {why}")
    for name, why in sorted(report.without_neighbors.items()):
        err(f"no neighbour table from {name}: {why}")
    err(f"{len(cfg.devices) - len(report.unanswered)} of {len(cfg.devices)} devices answered; "
        f"{len(report.missing)} links missing from the inventory")
    raise typer.Exit(1 if report.unanswered else 0)


# ---- deliveries ---------------------------------------------------------------
def _open_outbox(config: Path | None, database: Path | None) -> Any:
    """The database named by --database or the config's [ispvm].database; a clear exit when the engine holds it."""
    from ispvm_tui.engine.store import Store, StoreError, StoreLocked

    if (config is None) == (database is None):
        err("give --config F (its [ispvm].database) or --database F")
        raise typer.Exit(EXIT_BAD_INPUT)
    db = database if database is not None else _load_config(config).database_path(config.resolve().parent)
    if not db.exists():
        err(f"no database at {db}: nothing has been queued yet")
        raise typer.Exit(1)
    try:
        return Store(db)
    except StoreLocked as exc:
        err(f"{exc}\nThe running engine holds it: use the console's Deliveries screen (key d), or stop the engine "
            "and run this again.")
        raise typer.Exit(1) from None
    except StoreError as exc:
        err(str(exc))
        raise typer.Exit(1) from None


def _when(ts: float | None) -> str:
    import time

    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@deliveries_app.command("list")
def deliveries_list(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="config.toml")] = None,
    database: Annotated[Path | None, typer.Option(help="the database file (instead of --config)")] = None,
    dead: Annotated[bool, typer.Option("--dead", help="only dead letters")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="JSON on stdout: events, attempts, endpoints")] = False,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="at most this many events")] = 200,
) -> None:
    """Queued, delivered and dead webhook events (newest first), each endpoint's circuit, recent attempts.

    Reads the database file; while the engine runs it holds the file, and this says so.
    """
    import dataclasses
    import time

    from ispvm_tui.engine import outbox

    store = _open_outbox(config, database)
    try:
        events = outbox.list_deliveries(store.query_dicts, dead_only=dead, limit=limit)
        report = outbox.delivery_report(store.query_dicts, time.time(), limit=limit)
    finally:
        store.close()
    if json_out:
        typer.echo(json.dumps({
            "events": [dataclasses.asdict(e) for e in events],
            "endpoints": [dataclasses.asdict(e) for e in report.endpoints],
            "attempts": [] if dead else [dataclasses.asdict(a) for a in report.recent],
        }, indent=2))
        return
    for ep in report.endpoints:
        extra = f", probing at {_when(ep.probe_at)}" if ep.state != "closed" and ep.probe_at else ""
        typer.echo(f"endpoint {ep.name}: {ep.state} (last recorded{extra}), {ep.pending} queued, {ep.dead} dead"
                   + (f", last error: {ep.last_error}" if ep.last_error and ep.state != "closed" else ""))
    if not events:
        typer.echo("no dead letters" if dead else "no webhook events")
        return
    typer.echo(f"{'EVENT ID':36}  {'ENDPOINT':12} {'EVENT':17} {'SEQ':>3} {'STATUS':9} {'TRIES':>5} "
               f"{'CREATED':19}  LAST ERROR")
    for e in events:
        flag = " (superseded)" if e.superseded else ""
        typer.echo(f"{e.event_id:36}  {e.target[:12]:12} {e.event_type:17} {e.sequence:>3} {e.status:9} "
                   f"{e.attempts:>5} {_when(e.created_at):19}  {(e.last_error or '')[:80]}{flag}")


@deliveries_app.command("resend")
def deliveries_resend(
    event_ids: Annotated[list[str] | None, typer.Argument(help="event ids (ispvm deliveries list)")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="every dead letter, oldest first")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="config.toml")] = None,
    database: Annotated[Path | None, typer.Option(help="the database file (instead of --config)")] = None,
    actor: Annotated[str | None, typer.Option(help="who resends (audit); default: your user name")] = None,
) -> None:
    """Queue dead (or delivered) events again; each resend is audited. The engine sends them when it runs.

    A resent event that a later event of its incident has overtaken is sent with "superseded": true.
    """
    import getpass
    import time

    from ispvm_tui.engine import outbox

    if bool(event_ids) == all_dead:
        err("give event ids or --all-dead (not both)")
        raise typer.Exit(EXIT_BAD_INPUT)
    who = actor or getpass.getuser()
    store = _open_outbox(config, database)
    failed = 0
    try:
        now = time.time()
        if all_dead:
            ids = store.transaction(lambda con: outbox.resend_all_dead(con, who, now)).result(60)
            typer.echo(f"queued {len(ids)} dead event(s) again")
        for event_id in event_ids or []:
            try:
                superseded = store.transaction(
                    lambda con, e=event_id: outbox.resend(con, e, who, now)).result(60)
            except (KeyError, ValueError) as exc:
                err(str(exc).strip("'\""))
                failed += 1
                continue
            typer.echo(f"queued {event_id} again" + (" (superseded: a later event was delivered)" if superseded
                                                      else ""))
    finally:
        store.close()
    raise typer.Exit(1 if failed else 0)


def main() -> None:
    from ispvm_tui.fileperms import restrict_umask

    restrict_umask()  # whatever ispvm creates (database, WAL, logs, secrets) is its user's alone
    app()


if __name__ == "__main__":
    main()
