"""Command line: ``ispvm demo | run | attach | lab | config check | secret | notify | deliveries | maint | changes |
incidents``.

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
# markup: it names TOML tables ([[links]], [lab]) that markup would swallow as tags. And help is
# rendered by Click's plain formatter, never rich's tables: at 80 columns those cut option names
# short ("--api-password-se…"); the plain one wraps the help text instead. Every group is made by
# _group so none can miss it (tests/test_cli_help.py reads every command's help at 80 columns).
app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
                  rich_markup_mode=None, help="ispvm: a NOC console for small ISPs.")


def _group(name: str, help: str) -> typer.Typer:
    group = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help=help)
    app.add_typer(group, name=name)
    return group


config_app = _group("config", "Check configuration files.")
secret_app = _group("secret", "Store secrets in the keyring or the encrypted file.")
deliveries_app = _group("deliveries", "The webhook outbox: dead letters, the delivery log, resends.")
notify_app = _group("notify", "Notification targets: webhooks, Jira, ServiceNow, Telegram, Slack, e-mail.")
maint_app = _group("maint", "Maintenance windows: planned work that pages nobody (made here, or in the config "
                            "file).")
changes_app = _group("changes", "The change calendar (planned work with an owner and a status) and the "
                                "configuration changes the engine detected.")
devices_app = _group("devices", "Devices: state and last known figures (kept, flagged stale, while one does "
                                "not answer). Through the running engine, or off the database file.")
incidents_app = _group("incidents", "Incidents: list, show, acknowledge, close, add notes, assign. Through the "
                                    "running engine; list and show also read the database file when none runs.")

EXIT_BAD_INPUT = 2
T = TypeVar("T")


def err(message: str) -> None:
    typer.echo(message, err=True)


log = logging.getLogger("ispvm")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


LogFormatOpt = Annotated[str, typer.Option("--log-format", help="text, or json: one JSON object per line "
                                                                 "(timestamp, level, logger, message)")]


def log_handler(to_file: Path | None = None, log_format: str = "text") -> logging.Handler:
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
    if log_format == "json":
        from ispvm_tui.jsonlog import ServiceJsonFormatter

        handler.setFormatter(ServiceJsonFormatter())
    elif log_format == "text":
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    else:
        err(f"--log-format: {log_format!r} is not text or json")
        raise typer.Exit(EXIT_BAD_INPUT)
    redact.install([handler])
    if loose:
        err(f"warning: {loose}")
        handler.handle(log.makeRecord(log.name, logging.WARNING, __file__, 0, "%s", (loose,), None))
    return handler


def _setup_logging(verbose: bool, to_file: Path | None = None, log_format: str = "text") -> None:
    from ispvm_tui import redact

    handler = log_handler(to_file, log_format)
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


@secret_app.command("rotate")
def secret_rotate(
    finish: Annotated[bool, typer.Option("--finish", help="drop the previous key version: the old passphrase "
                                                          "reads nothing any more")] = False,
) -> None:
    """Re-encrypt the encrypted secrets file under a new passphrase (prompted twice, never echoed; or one
    line of stdin). The current passphrase (ISPVM_SECRETS_PASSPHRASE or the systemd credential) reads it. The old
    encryption is kept as the previous key version, so a running engine, or one restarted before its
    passphrase is updated, keeps reading; --finish then drops it. Values are never shown."""
    from ispvm_tui.secrets import EncryptedFileSecrets, SecretError, read_secret

    store = EncryptedFileSecrets()
    if not store.path.exists():
        err(f"no encrypted secrets file at {store.path}: nothing to rotate")
        raise typer.Exit(1)
    try:
        if finish:
            dropped = store.finish_rotation()
            current, _ = store.key_versions()
            err(f"{store.path}: key version {current} only" + ("" if dropped else " (no previous one to drop)"))
            return
        new = read_secret("new passphrase")
        if sys.stdin.isatty() and read_secret("new passphrase again") != new:
            err("the two entries differ: nothing changed")
            raise typer.Exit(1)
        version = store.rotate(new)
    except SecretError as exc:
        err(f"{exc}: nothing changed")
        raise typer.Exit(1) from None
    err(f"{store.path}: re-encrypted as key version {version}; key version {version - 1} (the old passphrase) "
        "still reads until `ispvm secret rotate --finish`. Give the engine the new passphrase (its "
        "environment or systemd credential), restart it when convenient, then finish.")


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
    from ispvm_tui.secrets import EncryptedFileSecrets

    encrypted = EncryptedFileSecrets()
    if encrypted.path.exists():
        with contextlib.suppress(OSError, ValueError, KeyError):
            current, previous = encrypted.key_versions()
            err(f"{encrypted.path}: key version {current}" + (
                f" (a rotation under way: key version {previous} still reads; `ispvm secret rotate --finish`)"
                if previous is not None else ""))
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
    log_format: LogFormatOpt = "text",
) -> None:
    """Poll the configured network: the console, or --headless for services and scripts (docs/service.md:
    a systemd unit). SIGTERM or SIGINT stops it: samples flushed, queued notifications kept for the next start."""
    from ispvm_tui.clock import SystemClock
    from ispvm_tui.engine.core import Engine
    from ispvm_tui.engine.store import Store, StoreError, StoreLocked
    from ispvm_tui.secrets import SecretError, default_secrets

    warnings: list[Any] = []
    cfg = _load_config(config, warnings)
    db = cfg.database_path(config.resolve().parent)
    # Before the store opens, so its warnings (a database open to others) reach the log.
    _setup_logging(verbose, to_file=None if headless else db.with_suffix(".log"), log_format=log_format)
    _log_warnings(warnings)
    try:
        store = Store(db)
    except StoreLocked as exc:
        if headless or not _engine_answers(db):
            err(str(exc))
            raise typer.Exit(1) from None
        # An engine already runs on it: open the console on that one instead of refusing.
        err(f"an engine is already running on {db}: attaching to it (as `ispvm attach --database {db}`)")
        _attach_console(db, actor=None, readonly=readonly)
        return
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
    from ispvm_tui.run_console import engine_console, stop_engine

    loop = BackgroundLoop()
    console = None
    try:
        # The stored state on screen first; the console starts the engine once it is drawn (run_console.py).
        console = engine_console(engine, loop, title=f"ispvm · {config.name}", readonly=readonly)
        console.run()
    finally:
        stop_engine(engine, loop, console)
        store.close()
    if console.start_error is not None:
        err(f"the engine could not start: {console.start_error}")
        raise typer.Exit(1)


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
    log_format: LogFormatOpt = "text",
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
    _setup_logging(verbose, log_format=log_format)
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
        line = {"kind": event.kind, "at": event.at, "summary": summary, "incident_id": event.incident_id}
        return json.dumps(line | ({"data": event.data} if getattr(event, "data", None) else {}))
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
        if as_json or event.kind.startswith(("incident.", "config.changed")):
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


def _open_console(engine: Any, *, title: str, readonly: bool = False, subtitle: str | None = None,
                  actor: str | None = None) -> None:
    from ispvm_tui.app import IspvmApp

    app_ = IspvmApp(engine, title=title, readonly=readonly, actor=actor)
    if subtitle:
        app_.sub_title = subtitle
    app_.run()


# ---- attach -------------------------------------------------------------------
def _engine_answers(db: Path) -> bool:
    from ispvm_tui.engine import control

    try:
        control.request(db, "ping", {}, "cli", timeout=5)
    except (control.NoEngine, control.ControlError, control.Refused):
        return False
    return True


def _attach_console(db: Path, *, actor: str | None, readonly: bool) -> None:
    from ispvm_tui.engine import control
    from ispvm_tui.engine.attached import AttachedEngine

    who = _actor(actor)
    try:
        pong = control.request(db, "ping", {}, who, timeout=10)
    except control.NoEngine:
        err(f"no engine is running on {db} (nothing answers on its control socket): start one with "
            "`ispvm run -c CONFIG`, then attach")
        raise typer.Exit(1) from None
    except (control.ControlError, control.Refused) as exc:
        err(f"cannot attach to the engine of {db}: {exc}")
        raise typer.Exit(1) from None
    me = control.request(db, "whoami", {}, who, timeout=10)
    if me["role"] == "viewer" and not readonly:  # [roles]: a viewer's console is the read-only one
        err(f"{me['user']} is a viewer in the engine's [roles]: the console opens read-only")
        readonly = True
    if me["role"] not in ("viewer", "operator", "admin"):
        err(f"{me['user']} has no role in the engine's [roles]: ask for one (viewer, operator or admin)")
        raise typer.Exit(1)
    if me["user"] != who and me["role"] != "admin" and actor is None:
        who = me["user"]  # with [roles] the engine records the OS user
    engine = AttachedEngine(db, actor=who)
    try:
        _open_console(engine, title=f"ispvm · attached to {db.name}", readonly=readonly, actor=who,
                      subtitle=f"{who} · engine pid {pong.get('pid', '?')} · {db}" +
                               (" · READ-ONLY" if readonly else ""))
    finally:
        engine.detach()


@app.command()
def attach(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="config.toml (its [ispvm].database)")] = None,
    database: Annotated[Path | None, typer.Option(help="the database file (instead of --config)")] = None,
    readonly: Annotated[bool, typer.Option(help="console without write actions")] = False,
    actor: Annotated[str | None, typer.Option(help="who acts from this console (default: your user name)")] = None,
) -> None:
    """Open the console on the engine already running on a database (`ispvm run`, `ispvm demo`), through its
    control socket: several consoles at once, each acting as its own actor."""
    _attach_console(_database_of(config, database), actor=actor, readonly=readonly)


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
def _database_of(config: Path | None, database: Path | None) -> Path:
    """--database, or the [ispvm].database of --config (exactly one of them)."""
    if (config is None) == (database is None):
        err("give --config F (its [ispvm].database) or --database F")
        raise typer.Exit(EXIT_BAD_INPUT)
    return database if database is not None else _load_config(config).database_path(config.resolve().parent)


NO_ANSWER = "no engine answered on its control socket (an ispvm from before the socket, or one still starting?)"


def _file_store(db: Path) -> Any:
    """The database file for a command no engine answered: a clear exit when it is missing or held."""
    from ispvm_tui.engine.store import Store, StoreLocked

    if not db.exists():
        err(f"no database at {db}")
        raise typer.Exit(1)
    try:
        return Store(db)
    except StoreLocked as exc:
        err(f"{exc}\nIt is held, and {NO_ANSWER}")
        raise typer.Exit(1) from None


def _engine_or_file(db: Path, op: str, args: dict[str, Any], read: Callable[[Any], Any], *,
                    before_file: Callable[[], None] | None = None, option_errors: bool = False) -> Any:
    """The running engine's answer to ``op``; with none, ``read(store)`` on the database file (after
    ``before_file``, which may refuse). Bad input exits 2 (``--`` in front when it names an option), a
    failure 1."""
    from ispvm_tui.engine import control
    from ispvm_tui.engine.store import StoreError

    def direct() -> Any:
        if before_file is not None:
            before_file()
        store = _file_store(db)
        try:
            return read(store)
        finally:
            store.close()

    try:
        return control.call(db, op, args, _reader(), direct)[0]
    except (ValueError, LookupError) as exc:
        err(("--" if option_errors else "") + str(exc).strip("'\""))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except (control.ControlError, StoreError, OSError, TimeoutError) as exc:
        err(str(exc) or type(exc).__name__)
        raise typer.Exit(1) from None


def _open_outbox(config: Path | None, database: Path | None, db: Path | None = None,
                 locked_hint: str = "The running engine holds it: use the console's Deliveries screen (key d), "
                                    "or stop the engine and run this again.") -> Any:
    """The database named by --database or the config's [ispvm].database; a clear exit when the engine holds it."""
    from ispvm_tui.engine.store import Store, StoreError, StoreLocked

    db = db if db is not None else _database_of(config, database)
    if not db.exists():
        err(f"no database at {db}: nothing has been queued yet")
        raise typer.Exit(1)
    try:
        return Store(db)
    except StoreLocked as exc:
        err(f"{exc}\n{locked_hint}")
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
    import time

    from ispvm_tui.engine import control, outbox

    if bool(event_ids) == all_dead:
        err("give event ids or --all-dead (not both)")
        raise typer.Exit(EXIT_BAD_INPUT)
    who = _actor(actor)
    db = _database_of(config, database)
    try:  # a running engine holds the file: it resends (and wakes its outbox at once)
        failed = _resend_live(db, event_ids or [], all_dead, who)
    except control.NoEngine:
        pass
    except control.ControlError as exc:
        err(str(exc))
        raise typer.Exit(1) from None
    else:
        raise typer.Exit(1 if failed else 0)
    store = _open_outbox(config, database, db, locked_hint=f"It is held, and {NO_ANSWER} Stop it and run this "
                                                           "again, or use the console's Deliveries screen (key d).")
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


def _resend_live(db: Path, event_ids: list[str], all_dead: bool, who: str) -> int:
    """Resend through the running engine; NoEngine when none answers (before anything was asked)."""
    from ispvm_tui.engine import control

    if all_dead:
        ids = control.request(db, "deliveries.resend_all_dead", {}, who)
        typer.echo(f"queued {len(ids)} dead event(s) again")
        return 0
    failed = 0
    for i, event_id in enumerate(event_ids):
        try:
            done = control.request(db, "deliveries.resend", {"event_id": event_id}, who)
        except control.Refused as exc:
            err(str(exc))
            failed += 1
            continue
        except control.NoEngine:
            if i == 0:
                raise
            # Gone halfway: the file may be free now, but mixing the two paths would confuse the count.
            raise control.ControlError(f"the engine stopped after {i} resend(s): run this again for the "
                                       "rest") from None
        typer.echo(f"queued {event_id} again" + (" (superseded: a later event was delivered)" if done["superseded"]
                                                  else ""))
    return failed


# ---- maintenance windows and the change calendar ---------------------------------

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="config.toml (its [ispvm].database)")]
DatabaseOpt = Annotated[Path | None, typer.Option(help="the database file (instead of --config)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON on stdout")]
ActorOpt = Annotated[str | None, typer.Option(help="who does it (audit); default: your user name")]
SitesOpt = Annotated[list[str] | None, typer.Option("--site", help="scope: a site (repeat for more)")]
DevicesOpt = Annotated[list[str] | None, typer.Option("--device", help="scope: a device (repeat for more)")]
TagsOpt = Annotated[list[str] | None, typer.Option("--tag", help="scope: devices with this tag (repeat)")]
ServicesOpt = Annotated[list[str] | None, typer.Option(
    "--service", help="scope: what a service depends on (repeat)")]
StartOpt = Annotated[str | None, typer.Option("--start", help="RFC 3339 with an offset "
                                                              "(2026-12-08T02:00:00+01:00), or now")]
EndOpt = Annotated[str | None, typer.Option("--end", help="RFC 3339 with an offset, or now")]
DurationOpt = Annotated[str | None, typer.Option("--duration", help="instead of --end: 2h, 90m, 1h30m, 1d")]


def _actor(actor: str | None) -> str:
    import getpass

    from ispvm_tui.engine.calendar import check_actor

    try:
        return check_actor(actor if actor is not None else getpass.getuser())
    except ValueError as exc:
        err(f"--actor: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except (KeyError, OSError):  # no user name to be had (a container without a passwd entry)
        err("--actor: cannot tell your user name: give --actor NAME")
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _reader() -> str:
    """Who reads (the request names someone; a read is not audited)."""
    import getpass

    try:
        return _actor(getpass.getuser())
    except (KeyError, OSError, typer.Exit):
        return "cli"


def _scope(sites: list[str] | None, devices: list[str] | None, tags: list[str] | None,
           services: list[str] | None) -> dict[str, list[str]] | None:
    given = {"sites": sites or [], "devices": devices or [], "tags": tags or [], "services": services or []}
    return given if any(given.values()) else None


def _times(start: str | None, end: str | None, duration: str | None) -> dict[str, Any]:
    from ispvm_tui.engine.calendar import parse_duration

    out: dict[str, Any] = {}
    if end is not None and duration is not None:
        err("give --end or --duration, not both")
        raise typer.Exit(EXIT_BAD_INPUT)
    if start is not None:
        out["starts_at"] = start
    if end is not None:
        out["ends_at"] = end
    if duration is not None:
        try:
            out["duration_s"] = parse_duration(duration)
        except ValueError as exc:
            err(f"--duration: {exc}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
    return out


def _calendar(op: str, args: dict[str, Any], actor: str, config: Path | None, database: Path | None) -> Any:
    """Ask the running engine (control socket); with none running, run the same calendar code on the file.
    Bad input exits 2 with one line, a failure exits 1."""
    import time

    from ispvm_tui.engine import calendar, control
    from ispvm_tui.engine.store import Store, StoreError, StoreLocked

    db = _database_of(config, database)
    cfg = _load_config(config) if config is not None else None

    def direct() -> Any:
        if op not in calendar.READ_OPS and cfg is None and op.endswith((".add", ".edit")):
            err(f"{NO_ANSWER.capitalize()}: checking a scope needs the inventory: give --config F")
            raise typer.Exit(EXIT_BAD_INPUT)
        if not db.exists():
            if database is not None:
                err(f"no database at {db}")
                raise typer.Exit(1)
            if op in calendar.READ_OPS:
                return calendar.run_op(None, op, args, cfg, actor, time.time())
        try:
            store = Store(db)
        except StoreLocked as exc:
            err(f"{exc}\nIt is held, and {NO_ANSWER} Try again in a moment, or stop that process.")
            raise typer.Exit(1) from None
        try:
            job = calendar.refusing(lambda con: calendar.run_op(con, op, args, cfg, actor, time.time()))
            return calendar.unwrap(store.transaction(job).result(60))
        finally:
            store.close()

    try:
        result, live = control.call(db, op, args, actor, direct)
    except ValueError as exc:  # the fields, an id, a status move: refused by the engine or here
        err(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except (control.ControlError, StoreError, OSError, TimeoutError) as exc:
        err(str(exc) or type(exc).__name__)
        raise typer.Exit(1) from None
    if not live and op not in calendar.READ_OPS:
        err("no engine running: written to the database; the engine takes it up when it starts")
    if not live and cfg is None and op == "maint.list":
        err("(the config file's windows are listed with --config, or while the engine runs)")
    return result


def _local(ts: float | None, tz: str | None = None) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    if ts is None:
        return "-"
    moment = datetime.fromtimestamp(ts, ZoneInfo(tz)) if tz else datetime.fromtimestamp(ts).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M%z")


def _span(start: float | None, end: float | None) -> str:
    a, b = _local(start), _local(end)
    if a[:10] == b[:10] and a[-5:] == b[-5:]:
        b = b[11:]  # same day and offset: the end's time is enough
    return f"{a} -> {b}"


def _scope_text(scope: dict[str, list[str]]) -> str:
    return " ".join(f"{k}={','.join(v)}" for k, v in scope.items() if v) or "-"


def _window_when(w: dict[str, Any]) -> str:
    parts = []
    if w["starts_at"] is not None:
        parts.append(_span(w["starts_at"], w["ends_at"]))
    if w["weekly"]:
        parts.append(f"{', '.join(w['weekly'])} {w['timezone']}")
    return "; ".join(parts)


def _window_line(w: dict[str, Any]) -> str:
    now = " (active now)" if w["active_now"] else ""
    return f"{w['id']} {w['name']!r} {w['status']}{now}: {_window_when(w)}; {_scope_text(w['scope'])}"


def _change_line(c: dict[str, Any]) -> str:
    return (f"{c['id']} {c['title']!r} {c['status']}, owner {c['owner']}: {_span(c['starts_at'], c['ends_at'])}; "
            f"{_scope_text(c['scope'])}")


def _table(headers: list[str], rows: list[list[str]]) -> None:
    """A compact table: each column as wide as its widest cell, the last one free."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:-1])]
    for row in [headers, *rows]:
        typer.echo("  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip())


def _print(result: Any, as_json: bool, line: Callable[[dict[str, Any]], str], verb: str) -> None:
    typer.echo(json.dumps(result, indent=2) if as_json else f"{verb} {line(result)}")


@maint_app.command("list")
def maint_list(config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False) -> None:
    """Every maintenance window: the config file's (config:NAME, read-only here) and the run-time ones
    (MW-1, ...), canceled ones included; "now" marks those silencing at this moment."""
    windows = _calendar("maint.list", {}, _reader(), config, database)
    if json_out:
        typer.echo(json.dumps(windows, indent=2))
        return
    if not windows:
        typer.echo("no maintenance windows")
        return
    _table(["ID", "STATUS", "NOW", "NAME", "WHEN", "BY", "SCOPE"],
           [[w["id"], w["status"], "now" if w["active_now"] else "-", w["name"], _window_when(w),
             w["created_by"] or ("(config file)" if w["source"] == "config" else "-"), _scope_text(w["scope"])]
            for w in windows])


@maint_app.command("add")
def maint_add(
    name: Annotated[str, typer.Argument(help="the window's name: incidents in it are labelled maintenance = NAME")],
    site: SitesOpt = None, device: DevicesOpt = None, tag: TagsOpt = None, service: ServicesOpt = None,
    start: StartOpt = None, end: EndOpt = None, duration: DurationOpt = None,
    weekly: Annotated[list[str] | None, typer.Option(
        "--weekly", help='recurring, as route hours: "Tue 02:00-04:00" (repeat for more)')] = None,
    timezone: Annotated[str | None, typer.Option(help="for --weekly (default [ispvm].timezone)")] = None,
    note: Annotated[str | None, typer.Option(help="a note shown with the window")] = None,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False, actor: ActorOpt = None,
) -> None:
    """Add a window: a scope (--site/--device/--tag/--service) and a time, one-off (--start, --end or
    --duration; --start defaults to now) or weekly (--weekly, --timezone). While it is active, incidents whose
    every root cause is in scope are recorded and shown but notify nobody. Audited."""
    fields: dict[str, Any] = {"name": name, **_times(start, end, duration)}
    if "starts_at" not in fields and ("ends_at" in fields or "duration_s" in fields):
        fields["starts_at"] = "now"
    scope = _scope(site, device, tag, service)
    if scope is not None:
        fields["scope"] = scope
    else:
        err("give a scope: --site, --device, --tag or --service")
        raise typer.Exit(EXIT_BAD_INPUT)
    if weekly:
        fields["weekly"] = weekly
    if timezone is not None:
        fields["timezone"] = timezone
    if note is not None:
        fields["note"] = note
    _print(_calendar("maint.add", {"fields": fields}, _actor(actor), config, database), json_out, _window_line,
           "added")


@maint_app.command("edit")
def maint_edit(
    window_id: Annotated[str, typer.Argument(metavar="ID", help="MW-1, ... (ispvm maint list)")],
    name: Annotated[str | None, typer.Option(help="a new name")] = None,
    site: SitesOpt = None, device: DevicesOpt = None, tag: TagsOpt = None, service: ServicesOpt = None,
    start: StartOpt = None, end: EndOpt = None, duration: DurationOpt = None,
    weekly: Annotated[list[str] | None, typer.Option("--weekly", help="recurring windows (replace the old)")] = None,
    timezone: Annotated[str | None, typer.Option(help="for --weekly")] = None,
    note: Annotated[str | None, typer.Option(help="a new note")] = None,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False, actor: ActorOpt = None,
) -> None:
    """Change a run-time window. Scope options replace the whole scope. --end or --duration alone moves the
    end (from the window's start); --start makes it one-off (dropping --weekly hours unless given), --weekly
    makes it weekly (dropping a one-off time unless --start is given). Config-file windows change in the file."""
    fields: dict[str, Any] = _times(start, end, duration)
    if start is not None and not weekly:
        fields["weekly"] = []
    if weekly:
        fields["weekly"] = weekly
        if start is None:
            if end is not None or duration is not None:
                err("--end/--duration with --weekly needs --start too (a window can be both)")
                raise typer.Exit(EXIT_BAD_INPUT)
            fields.update(starts_at=None, ends_at=None)
    scope = _scope(site, device, tag, service)
    for key, value in (("name", name), ("scope", scope), ("timezone", timezone), ("note", note)):
        if value is not None:
            fields[key] = value
    if not fields:
        err("nothing to change: give --name, a scope, times, --weekly, --timezone or --note")
        raise typer.Exit(EXIT_BAD_INPUT)
    _print(_calendar("maint.edit", {"id": window_id, "fields": fields}, _actor(actor), config, database), json_out,
           _window_line, "edited")


@maint_app.command("cancel")
def maint_cancel(
    window_id: Annotated[str, typer.Argument(metavar="ID", help="MW-1, ... (ispvm maint list)")],
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False, actor: ActorOpt = None,
) -> None:
    """Cancel a run-time window: it stops silencing at once, and incidents it held back that are still open
    are notified. It stays listed, canceled. Audited."""
    _print(_calendar("maint.cancel", {"id": window_id}, _actor(actor), config, database), json_out, _window_line,
           "canceled")


@changes_app.command("list")
def changes_list(config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False) -> None:
    """Every change record, by start time, with the incidents linked to it."""
    changes = _calendar("change.list", {}, _reader(), config, database)
    if json_out:
        typer.echo(json.dumps(changes, indent=2))
        return
    if not changes:
        typer.echo("no changes")
        return
    _table(["ID", "STATUS", "WHEN", "OWNER", "SCOPE", "INCIDENTS", "TITLE"],
           [[c["id"], c["status"], _span(c["starts_at"], c["ends_at"]), c["owner"], _scope_text(c["scope"]),
             ",".join(c["incidents"]) or "-", c["title"]] for c in changes])


@changes_app.command("show")
def changes_show(
    change_id: Annotated[str, typer.Argument(metavar="ID", help="CHG-1, ... (ispvm changes list)")],
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False,
) -> None:
    """One change: every field, the incidents linked to it and its history (who changed what, when)."""
    shown = _calendar("change.show", {"id": change_id}, _reader(), config, database)
    if json_out:
        typer.echo(json.dumps(shown, indent=2))
        return
    c = shown["change"]
    for key, value in (("id", c["id"]), ("title", c["title"]), ("status", c["status"]), ("owner", c["owner"]),
                       ("when", _span(c["starts_at"], c["ends_at"])), ("scope", _scope_text(c["scope"])),
                       ("incidents", ", ".join(c["incidents"]) or "-"),
                       ("created", f"{_local(c['created_at'])} by {c['created_by']}")):
        typer.echo(f"{key + ':':<11}{value}")
    if c["description"]:
        typer.echo("description:")
        for text in c["description"].splitlines():
            typer.echo(f"  {text}")
    typer.echo("history:")
    for h in shown["history"]:
        typer.echo(f"  {_local(h['ts'])}  {h['actor']}  {h['action']}  {h['detail'] or ''}")


def _change_fields(title: str | None, description: str | None, scope: dict[str, list[str]] | None,
                   times: dict[str, Any], owner: str | None, status: str | None) -> dict[str, Any]:
    fields = dict(times)
    for key, value in (("title", title), ("description", description), ("scope", scope), ("owner", owner),
                       ("status", status)):
        if value is not None:
            fields[key] = value
    return fields


StatusOpt = Annotated[str | None, typer.Option(help="planned, in-progress, completed (or canceled: use cancel)")]


@changes_app.command("add")
def changes_add(
    title: Annotated[str, typer.Argument(help="what the change is")],
    description: Annotated[str | None, typer.Option(help="the plan, the rollback, a ticket number")] = None,
    site: SitesOpt = None, device: DevicesOpt = None, tag: TagsOpt = None, service: ServicesOpt = None,
    start: StartOpt = None, end: EndOpt = None, duration: DurationOpt = None,
    owner: Annotated[str | None, typer.Option(help="who runs it (default: the actor)")] = None,
    status: StatusOpt = None,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False, actor: ActorOpt = None,
) -> None:
    """Record a change: a scope, a start (--start, default now) and an end (--end or --duration), an owner
    (default: the actor) and a status (default planned). It silences nothing: that is a maintenance window."""
    times = _times(start, end, duration)
    times.setdefault("starts_at", "now")
    scope = _scope(site, device, tag, service)
    if scope is None:
        err("give a scope: --site, --device, --tag or --service")
        raise typer.Exit(EXIT_BAD_INPUT)
    if "ends_at" not in times and "duration_s" not in times:
        err("give --end or --duration")
        raise typer.Exit(EXIT_BAD_INPUT)
    fields = _change_fields(title, description, scope, times, owner, status)
    _print(_calendar("change.add", {"fields": fields}, _actor(actor), config, database), json_out, _change_line,
           "added")


@changes_app.command("edit")
def changes_edit(
    change_id: Annotated[str, typer.Argument(metavar="ID", help="CHG-1, ... (ispvm changes list)")],
    title: Annotated[str | None, typer.Option(help="a new title")] = None,
    description: Annotated[str | None, typer.Option(help="a new description")] = None,
    site: SitesOpt = None, device: DevicesOpt = None, tag: TagsOpt = None, service: ServicesOpt = None,
    start: StartOpt = None, end: EndOpt = None, duration: DurationOpt = None,
    owner: Annotated[str | None, typer.Option(help="a new owner")] = None,
    status: StatusOpt = None,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False, actor: ActorOpt = None,
) -> None:
    """Change a change: scope options replace the whole scope; --duration counts from its start. Status moves
    planned -> in-progress -> completed; completed and canceled changes are final. Audited."""
    fields = _change_fields(title, description, _scope(site, device, tag, service), _times(start, end, duration),
                            owner, status)
    if not fields:
        err("nothing to change: give --title, --description, a scope, times, --owner or --status")
        raise typer.Exit(EXIT_BAD_INPUT)
    _print(_calendar("change.edit", {"id": change_id, "fields": fields}, _actor(actor), config, database), json_out,
           _change_line, "edited")


@changes_app.command("cancel")
def changes_cancel(
    change_id: Annotated[str, typer.Argument(metavar="ID", help="CHG-1, ... (ispvm changes list)")],
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False, actor: ActorOpt = None,
) -> None:
    """Cancel a planned or in-progress change (final). Audited."""
    _print(_calendar("change.cancel", {"id": change_id}, _actor(actor), config, database), json_out, _change_line,
           "canceled")

# ---- detected configuration changes ------------------------------------------------------------------


def _config_read(op: str, args: dict[str, Any], config: Path | None, database: Path | None) -> Any:
    """Detected changes and diffs: from the running engine, else read off the database file."""
    from ispvm_tui.engine import config_watch

    def read(store: Any) -> Any:
        if op == "config.changes":
            return config_watch.list_changes(store.query_dicts, device=args.get("device"),
                                             limit=args.get("limit", 200))
        return config_watch.diff(store.query_dicts, args["device"], args["category"], args.get("old_version"),
                                 args.get("new_version"))

    return _engine_or_file(_database_of(config, database), op, args, read)


@changes_app.command("detected")
def changes_detected(
    device: Annotated[str | None, typer.Option(help="only this device")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 200,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False,
) -> None:
    """Configuration changes the engine detected, newest first: device, category, version, summary."""
    changes = _config_read("config.changes", {"device": device, "limit": limit}, config, database)
    if json_out:
        typer.echo(json.dumps(changes, indent=2))
        return
    if not changes:
        typer.echo("no configuration changes detected")
        return
    _table(["DETECTED", "DEVICE", "CATEGORY", "VERSION", "SUMMARY"],
           [[_local(c["detected_at"]), c["device"], c["category"], str(c["version"]), c["summary"]]
            for c in changes])


@changes_app.command("diff")
def changes_diff(
    device: Annotated[str, typer.Argument(help="the device")],
    category: Annotated[str, typer.Argument(help="bgp, ospf, interfaces, addressing, firewall or system")],
    old: Annotated[int | None, typer.Option("--from", min=1, help="older version (default: the one before --to)")]
    = None,
    new: Annotated[int | None, typer.Option("--to", min=1, help="newer version (default: the latest)")] = None,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False,
) -> None:
    """A readable diff between two stored versions of one device's configuration category (secrets are never
    stored, so never shown)."""
    lines = _config_read("config.diff", {"device": device, "category": category, "old_version": old,
                                         "new_version": new}, config, database)
    if json_out:
        typer.echo(json.dumps(lines, indent=2))
        return
    typer.echo("\n".join(lines) if lines else "no difference")


@changes_app.command("capture")
def changes_capture(
    device: Annotated[str | None, typer.Argument(help="one device (default: every device)")] = None,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False, actor: ActorOpt = None,
) -> None:
    """Ask the running engine to fingerprint now (one device or all) instead of waiting for the schedule.
    Audited. Needs a running engine: it reads the routers over its own sessions."""
    from ispvm_tui.engine import control

    db = _database_of(config, database)
    try:
        result = control.request(db, "config.capture", {"device": device}, _actor(actor))
    except control.NoEngine:
        err(f"no engine is running on {db}: `ispvm run` reads configuration as it polls")
        raise typer.Exit(1) from None
    except control.Refused as exc:
        err(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except (control.ControlError, OSError, TimeoutError) as exc:
        err(str(exc) or type(exc).__name__)
        raise typer.Exit(1) from None
    if json_out:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"{result['asked']} device(s) will be fingerprinted at their next poll "
                   "(`ispvm changes detected` lists what changed)")


# ---- incidents ------------------------------------------------------------------------------------

# What acting on an incident needs an engine for; said when none runs (exit 1).
_INCIDENT_WRITES = {
    "incidents.ack": "acknowledging needs the engine, which notifies the targets",
    "incidents.close": "closing needs the engine, which notifies the targets",
    "incidents.note": "notes are written by the engine, which holds the incidents",
    "incidents.assign": "assigning is done by the engine, which holds the incidents",
}
# As the console shows them (screens/widgets.py): never colour alone.
_STATUS_MARK = {"open": "!", "acked": "◑", "closed": "·"}
IncidentIdArg = Annotated[str, typer.Argument(metavar="ID", help="an incident id, or its first 6+ characters "
                                                                 "(ispvm incidents list)")]


def _incidents(op: str, args: dict[str, Any], actor: str, config: Path | None, database: Path | None) -> Any:
    """Ask the running engine; with none running, list and show read the database file (the same
    engine/incident_queries.py code) and actions refuse. Bad input exits 2 with one line, a failure 1."""
    import time

    from ispvm_tui.engine import control, incident_queries
    from ispvm_tui.engine.store import StoreError

    db = _database_of(config, database)

    def direct() -> Any:
        if op in _INCIDENT_WRITES:
            err(f"no engine is running: {_INCIDENT_WRITES[op]}")
            raise typer.Exit(1)
        if not db.exists():
            err(f"no database at {db}")
            raise typer.Exit(1)
        cfg = _load_config(config) if config is not None else None
        critical = frozenset(d.name for d in cfg.devices if "critical" in d.tags) if cfg else frozenset()
        store = _file_store(db)
        try:
            if op == "incidents.list":
                status, limit = incident_queries.list_args(args)
                return incident_queries.list_incidents(store.query_dicts, status, limit, time.time(), critical)
            return incident_queries.show_incident(store.query_dicts, args.get("id"), time.time(), critical)
        finally:
            store.close()

    try:
        if "id" in args:
            args = {**args, "id": incident_queries.check_prefix(args["id"])}
        return control.call(db, op, args, actor, direct)[0]
    except (ValueError, LookupError) as exc:  # refused by the engine or here: an id, a status, a note
        err(str(exc).strip("'\""))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except (control.ControlError, StoreError, OSError, TimeoutError) as exc:
        err(str(exc) or type(exc).__name__)
        raise typer.Exit(1) from None


def _incident_text(text: str, what: str, required: bool = True) -> str:
    from ispvm_tui.engine.incident_queries import check_text

    try:
        return check_text(text, what, required=required)
    except ValueError as exc:
        err(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _age(seconds: float) -> str:
    s = int(max(0.0, seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172_800:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _status_word(status: str) -> str:
    return f"{_STATUS_MARK.get(status, '?')} {status}"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(0, width - 1)] + "…"


def _incident_line(inc: dict[str, Any]) -> str:
    return f"{inc['id'][:8]} {_status_word(inc['status'])} {inc['severity']}: {inc['title']}"


@incidents_app.command("list")
def incidents_list(
    status: Annotated[str, typer.Option(help="open, acked, closed or all")] = "all",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="at most this many")] = 100,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False,
) -> None:
    """Incidents, open and acknowledged first (newest first), then closed ones (last closed first): short id,
    status, severity, age (since it opened), owner (when any is assigned), title."""
    import shutil

    from ispvm_tui.engine.incident_queries import list_args

    try:
        list_args({"status": status, "limit": limit})
    except ValueError as exc:
        err(f"--{exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    listed = _incidents("incidents.list", {"status": status, "limit": limit}, _reader(), config, database)
    if json_out:
        typer.echo(json.dumps(listed, indent=2))
        return
    incidents = listed["incidents"]
    if not incidents:
        typer.echo("no incidents" if status == "all" else f"no {status} incidents")
        return
    rows = [[i["id"][:8], _status_word(i["status"]), i["severity"],
             _age(listed["now"] - i["opened_at"]), i["title"]] for i in incidents]
    headers = ["ID", "STATUS", "SEVERITY", "AGE", "TITLE"]
    if any(i.get("assigned_to") for i in incidents):  # a column only when someone owns one: 80 columns are dear
        rows = [[*r[:-1], i.get("assigned_to") or "-", r[-1]] for r, i in zip(rows, incidents, strict=True)]
        headers = [*headers[:-1], "OWNER", headers[-1]]
    used = sum(max(len(h), *(len(r[k]) for r in rows)) + 2 for k, h in enumerate(headers[:-1]))
    room = max(20, shutil.get_terminal_size((80, 24)).columns - used)
    _table(headers, [[*r[:-1], _fit(r[-1], room)] for r in rows])


def _show_lines(shown: dict[str, Any]) -> list[str]:
    inc, now = shown["incident"], shown["now"]
    lines = [f"{'id:':<11}{inc['id']}", f"{'title:':<11}{inc['title']}",
             f"{'status:':<11}{_status_word(inc['status'])}",
             f"{'severity:':<11}{inc['severity']} (priority {inc['priority']}, score {inc['score']})",
             f"{'opened:':<11}{_local(inc['opened_at'])} ({_age(now - inc['opened_at'])} ago)",
             f"{'updated:':<11}{_local(inc['updated_at'])}"]
    if inc["acked_by"]:
        lines.append(f"{'acked:':<11}{_local(inc['acked_at'])} by {inc['acked_by']}")
    if inc.get("assigned_to"):
        lines.append(f"{'assigned:':<11}{inc['assigned_to']}")
    if inc["closed_at"] is not None:
        lines.append(f"{'closed:':<11}{_local(inc['closed_at'])} by {inc['closed_by'] or '-'}")
    lines.append("root causes:")
    for rc in inc["root_causes"] or []:
        name = f" ({rc['name']})" if rc["name"] and rc["name"] != rc["entity_id"] else ""
        lines.append(f"  {rc['entity_type']} {rc['entity_id']}{name}: confidence {rc['confidence']:.0%}")
    if not inc["root_causes"]:
        lines.append("  - (not determined yet)")
    imp = inc["impact"]
    subs = imp["estimated_subscribers_affected"]
    lines += ["impact:",
              f"  sites ({imp['sites_affected']}): {', '.join(imp['sites']) or '-'}",
              f"  devices ({imp['devices_affected']}): {', '.join(imp['devices']) or '-'}",
              f"  services ({imp['services_affected']}): {', '.join(imp['services']) or '-'}",
              f"  subscribers: {'-' if subs is None else f'about {subs}'} (estimated)",
              "evidence:", *(f"  - {e}" for e in inc["evidence"] or ["(none)"])]
    if inc["labels"]:
        lines += ["labels:", *(f"  {k}={v}" for k, v in sorted(inc["labels"].items()))]
    alerts = inc["alerts"]
    lines.append(f"alerts ({len(alerts)}, {sum(1 for a in alerts if a['suppressed'])} suppressed):")
    for a in alerts:
        role = "suppressed" if a["suppressed"] else "cause"
        lines.append(f"  {role:<10} {a['severity']:<8} {a['state']:<8} {a['rule']} {a['entity_type']} "
                     f"{a['entity_id']}: {a['summary']}")
    lines.append("timeline:")
    for t in shown["timeline"]:
        detail = t["detail"] or ""
        if t["transition"] == "note":
            first, *rest = detail.splitlines() or [""]
            lines.append(f"  {_local(t['ts'])}  note by {t['actor']}: {first}")
            lines += [f"    {more}" for more in rest]
            continue
        sent = f" [{t['event_type']}]" if t["event_type"] else ""
        lines.append(f"  {_local(t['ts'])}  {t['transition']} by {t['actor'] or '-'} -> {t['status']}{sent}"
                     + (f": {detail}" if detail else ""))
    lines.append("deliveries:")
    for target in shown["deliveries"]:
        lines.append(f"  {target['target']}:")
        for e in target["events"]:
            http = f", HTTP {e['last_http_status']}" if e["last_http_status"] is not None else ""
            error = f": {e['last_error']}" if e["last_error"] and e["status"] != "delivered" else ""
            tries = f"{e['attempts']} attempt{'s' if e['attempts'] != 1 else ''}"
            lines.append(f"    #{e['sequence']} {e['event_type']} {e['status']} ({tries}{http}){error}")
    if not shown["deliveries"]:
        lines.append("  (none: no target was sent anything for it)")
    return lines


@incidents_app.command("show")
def incidents_show(
    incident_id: IncidentIdArg,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False,
) -> None:
    """One incident in full: every field, root causes with confidence, impact, evidence, labels, alerts, its
    timeline (transitions and notes: who, when) and its deliveries per target."""
    shown = _incidents("incidents.show", {"id": incident_id}, _reader(), config, database)
    if json_out:
        typer.echo(json.dumps(shown, indent=2))
        return
    typer.echo("\n".join(_show_lines(shown)))


@incidents_app.command("ack")
def incidents_ack(
    incident_id: IncidentIdArg,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False, actor: ActorOpt = None,
) -> None:
    """Acknowledge an open incident: the targets are told (incident.acked). Audited. Needs the running engine."""
    done = _incidents("incidents.ack", {"id": incident_id}, _actor(actor), config, database)
    if json_out:
        typer.echo(json.dumps(done, indent=2))
        return
    inc = done["incident"]
    if done["changed"]:
        typer.echo(f"acknowledged {_incident_line(inc)}")
    else:
        typer.echo(f"already acknowledged by {inc['acked_by']} at {_local(inc['acked_at'])}: {_incident_line(inc)}")


@incidents_app.command("close")
def incidents_close(
    incident_id: IncidentIdArg,
    note: Annotated[str | None, typer.Option(help="why (kept in its timeline and the audit)")] = None,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False, actor: ActorOpt = None,
) -> None:
    """Close an incident by hand: the targets are told (incident.closed); it stays closed while its root keeps
    failing. Audited. Needs the running engine."""
    done = _incidents("incidents.close", {"id": incident_id, "note": _incident_text(note or "", "--note", False)},
                      _actor(actor), config, database)
    typer.echo(json.dumps(done, indent=2) if json_out else f"closed {_incident_line(done['incident'])}")


@incidents_app.command("note")
def incidents_note(
    incident_id: IncidentIdArg,
    text: Annotated[list[str], typer.Argument(metavar="TEXT", help="the note (quoted, or as several words)")],
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False, actor: ActorOpt = None,
) -> None:
    """Add a note to an incident's timeline (ispvm incidents show). Audited; it notifies nobody. Needs the
    running engine."""
    done = _incidents("incidents.note", {"id": incident_id, "text": _incident_text(" ".join(text), "TEXT")},
                      _actor(actor), config, database)
    if json_out:
        typer.echo(json.dumps(done, indent=2))
    else:
        typer.echo(f"noted on {done['id'][:8]} {_status_word(done['status'])}: {done['title']}")


@incidents_app.command("assign")
def incidents_assign(
    incident_id: IncidentIdArg,
    name: Annotated[str, typer.Argument(metavar="NAME", help="who works on it (1-64 characters)")],
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False, actor: ActorOpt = None,
) -> None:
    """Assign an open incident to NAME: kept on it (shown in the console and by show), in its timeline and the
    audit. It notifies nobody by itself. Needs the running engine."""
    done = _incidents("incidents.assign", {"id": incident_id, "assignee": name}, _actor(actor), config, database)
    if json_out:
        typer.echo(json.dumps(done, indent=2))
        return
    inc = done["incident"]
    said = "assigned" if done["changed"] else "already assigned"
    typer.echo(f"{said} to {inc['assigned_to']}: {_incident_line(inc)}")


def main() -> None:
    from ispvm_tui.fileperms import restrict_umask

    restrict_umask()  # whatever ispvm creates (database, WAL, logs, secrets) is its user's alone
    app()


if __name__ == "__main__":
    main()


# ---- diagnostics ----------------------------------------------------------------------------------

report_app = _group("report", "Reports: availability against SLA targets with MTTA/MTTR, link capacity trends.")
export_app = _group("export", "Write an incident up: a postmortem in Markdown.")
db_app = _group("db", "The database: consistent backups (while the engine runs) and restoring one.")
audit_app = _group("audit", "The audit log: who did what, hash-chained; verify that nobody changed it.")
diag_app = _group("diag", "Ping or traceroute from a router, through the running engine (audited).")
DiagDeviceArg = Annotated[str, typer.Argument(metavar="DEVICE", help="the router it runs from (its API)")]
DiagTargetArg = Annotated[str, typer.Argument(metavar="TARGET", help="an IPv4/IPv6 address or a host name")]


def _diag(kind: str, device: str, target: str, count: int, config: Path | None, database: Path | None,
          actor: str | None, json_out: bool) -> None:
    """Ask the engine to run it; its lines come back when it has ended (at most 25 s), then the summary."""
    from ispvm_tui.engine import control

    db = _database_of(config, database)
    args = {"device": device, "kind": kind, "target": target, "count": count}
    try:
        result = control.request(db, "diag.run", args, _actor(actor))
    except control.NoEngine:
        err(f"no engine is running on {db}: diagnostics run through it (`ispvm run`)")
        raise typer.Exit(1) from None
    except control.Refused as exc:
        err(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except (control.ControlError, OSError, TimeoutError) as exc:
        err(str(exc) or type(exc).__name__)
        raise typer.Exit(1) from None
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        for line in result["lines"]:
            typer.echo(line)
    if result.get("error"):
        if not json_out:
            err(f"error: {result['error']}")
        raise typer.Exit(1)
    if not json_out:
        typer.echo(result.get("summary") or "")


@diag_app.command("ping")
def diag_ping(
    device: DiagDeviceArg, target: DiagTargetArg,
    count: Annotated[int, typer.Option(help="echoes, 1 to 20, one a second")] = 5,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False, actor: ActorOpt = None,
) -> None:
    """/ping from DEVICE to TARGET: one line per echo, then sent, received, loss and average. Exit 1 when
    the run failed (the router refused it, or did not finish in time)."""
    _diag("ping", device, target, count, config, database, actor, json_out)


@diag_app.command("traceroute")
def diag_traceroute(
    device: DiagDeviceArg, target: DiagTargetArg,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False, actor: ActorOpt = None,
) -> None:
    """/tool/traceroute from DEVICE to TARGET: one line per hop (at most 15; it stops after 3 silent hops in a
    row), then whether TARGET was reached."""
    _diag("traceroute", device, target, 1, config, database, actor, json_out)


# ---- audit log (engine/audit_log.py) -------------------------------------------------------------------------
def _audit(op: str, args: dict[str, Any], config: Path | None, database: Path | None) -> Any:
    """Ask the running engine; with none running, read the database file with the same code."""
    from ispvm_tui.engine import audit_log

    def read(store: Any) -> Any:
        if op == "audit.list":
            return audit_log.list_entries(store.query_dicts, **audit_log.list_args(args))
        return audit_log.verify(store.query_dicts, audit_log.head_arg(args.get("head"))).as_dict()

    return _engine_or_file(_database_of(config, database), op, args, read, option_errors=True)


def _short_id(target: str) -> str:
    """An incident's or outbox event's UUID as its first 8 characters, as the other lists show them (and the
    commands take them); device names and window ids as they are. --json has them whole."""
    import re

    return target[:8] if re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", target) else target


@audit_app.command("list")
def audit_list(
    limit: Annotated[int, typer.Option(help="how many, newest first (1 to 10000)")] = 50,
    actor: Annotated[str | None, typer.Option(help="only this actor's entries")] = None,
    action: Annotated[str | None, typer.Option(help="only actions starting with this (maint., incident.ack)")] = None,
    since: Annotated[str | None, typer.Option(help="only entries since this long ago (30m, 2h, 7d)")] = None,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False,
) -> None:
    """The audit log, newest first: sequence number, time, actor, action, target and detail."""
    import shutil
    import time

    from ispvm_tui.engine.calendar import parse_duration

    args: dict[str, Any] = {"limit": limit, "actor": actor, "action": action, "since": None}
    if since is not None:
        try:
            args["since"] = time.time() - parse_duration(since)
        except ValueError as exc:
            err(f"--since: {exc}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
    entries = _audit("audit.list", args, config, database)
    if json_out:
        typer.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        typer.echo("no audit entries")
        return
    rows = [[str(e["seq"]), _local(e["ts"]), e["actor"], e["action"], _short_id(e["target"] or "-"),
             " ".join((e["detail"] or "").split())] for e in entries]
    headers = ["SEQ", "WHEN", "ACTOR", "ACTION", "TARGET", "DETAIL"]
    used = sum(max(len(h), *(len(r[k]) for r in rows)) + 2 for k, h in enumerate(headers[:-1]))
    room = max(20, shutil.get_terminal_size((80, 24)).columns - used)
    _table(headers, [[*r[:-1], _fit(r[-1], room)] for r in rows])


@audit_app.command("verify")
def audit_verify(
    head: Annotated[str | None, typer.Option(
        help="SEQ:HASH of a head printed earlier: it must still be in the log (nothing cut from the end)")] = None,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False,
) -> None:
    """Check the audit log's hash chain from its start (or from where retention cut it) to its head. Exit 0
    when untouched; 1 naming the first entry that was changed, removed or inserted. Prints the head: keep it
    elsewhere (a ticket, another host) and pass it as --head later to prove nothing was cut from the end."""
    verdict = _audit("audit.verify", {"head": head}, config, database)
    if json_out:
        typer.echo(json.dumps(verdict, indent=2))
    else:
        anchor = verdict["anchor"]
        start = (f"from entry {anchor['seq'] + 1} (retention removed {anchor['pruned']} older entries on "
                 f"{_local(anchor['pruned_at'])})" if anchor else "from the first entry")
        if verdict["ok"]:
            typer.echo(f"audit log intact: {verdict['entries']} entries checked {start}")
        else:
            problem = verdict["problem"]
            typer.echo(f"audit log TAMPERED: {problem['message']}")
            entry = problem["entry"]
            if entry:
                typer.echo(f"  entry {entry['seq']}: {_local(entry['ts'])} {entry['actor']} {entry['action']} "
                           f"{entry['target'] or '-'}")
            typer.echo(f"  {verdict['entries']} entries read {start}")
        if verdict["head_seq"] is not None:
            typer.echo(f"head: {verdict['head_seq']}:{verdict['head_hash']}")
    if not verdict["ok"]:
        raise typer.Exit(1)


# ---- health (engine/health.py) ------------------------------------------------------------------------------
@app.command()
def health(
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False,
    wait: Annotated[float, typer.Option(help="seconds to wait for the engine to answer healthy (a service "
                                             "manager's start check); 0: ask once")] = 0.0,
) -> None:
    """Ask the running engine whether it is doing its job. Exit 0 when it is (warnings about the network or
    receivers are printed, and do not fail it); 1 when it is failing, still starting, or not running."""
    import time

    from ispvm_tui.engine import control

    db = _database_of(config, database)
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        try:
            verdict = control.request(db, "health", {}, _reader())
            problem = None
        except control.NoEngine:
            verdict, problem = None, f"no engine is running on {db}"
        except (control.ControlError, OSError, TimeoutError) as exc:
            verdict, problem = None, f"the engine on {db} did not answer: {exc or type(exc).__name__}"
        if (verdict is not None and verdict["ok"]) or time.monotonic() >= deadline:
            break
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
    if verdict is None:
        if json_out:
            typer.echo(json.dumps({"ok": False, "state": "down", "failing": [problem]}, indent=2))
        else:
            err(problem or "no answer")
        raise typer.Exit(1)
    if json_out:
        typer.echo(json.dumps(verdict, indent=2))
    else:
        up = f", up {_age(verdict['now'] - verdict['started_at'])}" if verdict["started_at"] is not None else ""
        typer.echo(f"engine pid {verdict['pid']} on {db}: {verdict['state']}{up}")
        for c in verdict["collectors"]:
            last = "-" if c["last_poll_at"] is None else f"{_age(verdict['now'] - c['last_poll_at'])} ago"
            lag = f", lag {c['lag_s']:.0f} s" if c["lag_s"] is not None else ""
            typer.echo(f"  {c['name']} ({c['kind']}): {c['state']}, {c['devices']} devices, last poll {last}{lag}, "
                       f"{c['failing']} failing")
        box = verdict["outbox"]
        typer.echo(f"  notifications: {box['pending']} pending, {box['dead']} dead")
        for line in verdict["failing"]:
            typer.echo(f"  FAILING: {line}")
        for line in verdict["warnings"]:
            typer.echo(f"  warning: {line}")
    if not verdict["ok"]:
        raise typer.Exit(1)


# ---- backups (engine/backup.py) -----------------------------------------------------------------------------
def _backup_lines(info: dict[str, Any]) -> str:
    size = info["bytes"] / 1e6
    return (f"{info['path']}: {size:.1f} MB, schema {info['schema']}, {info['incidents_open']} open incidents "
            f"of {info['incidents']}, {info['notifications_pending']} notifications queued, "
            f"{info['audit_entries']} audit entries")


@db_app.command("backup")
def db_backup(
    to: Annotated[Path | None, typer.Option(help="also copy it here (a new file; default: only backups/ beside "
                                                 "the database)")] = None,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False, actor: ActorOpt = None,
) -> None:
    """A consistent copy of the database, while the engine runs (it makes it, in backups/ beside the database,
    without stopping) or not (made here, the file left unmigrated). Audited. Never replaces a file."""
    import time

    from ispvm_tui.engine import backup, control
    from ispvm_tui.engine.schema import MIGRATIONS

    db = _database_of(config, database)
    who = _actor(actor)
    if to is not None and to.exists():
        err(f"--to {to}: exists; a backup never replaces a file")
        raise typer.Exit(EXIT_BAD_INPUT)
    latest = MIGRATIONS[-1][0]
    try:
        try:
            info = control.request(db, "db.backup", {}, who, timeout=600)
            if to is not None:
                backup.copy_file(Path(info["path"]), to)
                info = backup.describe(to)
        except control.NoEngine:
            info = backup.backup_offline(db, to or backup.default_target(db, time.time()), actor=who, now=time.time(),
                                         latest_schema=latest)
    except (backup.BackupError, control.ControlError) as exc:
        err(str(exc))
        raise typer.Exit(1) from None
    except OSError as exc:
        err(f"backup failed: {exc}")
        raise typer.Exit(1) from None
    typer.echo(json.dumps(info, indent=2) if json_out else f"backed up to {_backup_lines(info)}")


@db_app.command("restore")
def db_restore(
    backup_file: Annotated[Path, typer.Argument(help="a file `ispvm db backup` made", metavar="BACKUP")],
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False, actor: ActorOpt = None,
) -> None:
    """Put a backup in place of the database; the engine must be stopped. The current file is kept aside
    (<database>.before-restore-<time>), the backup migrated to this release's schema if it is older, and the
    restore audited in it."""
    import time

    from ispvm_tui.engine import audit_log, backup, control
    from ispvm_tui.engine.schema import MIGRATIONS
    from ispvm_tui.engine.store import Store, StoreError

    db = _database_of(config, database)
    who = _actor(actor)
    try:
        control.request(db, "ping", {}, who)
        err(f"an engine is running on {db}: stop it first (e.g. `systemctl stop ispvm`), then restore")
        raise typer.Exit(1)
    except control.NoEngine:
        pass
    except control.ControlError as exc:
        err(f"something answers on {db}'s control socket ({exc}): stop it first")
        raise typer.Exit(1) from None
    try:
        info = backup.restore(db, backup_file, now=time.time(), latest_schema=MIGRATIONS[-1][0])
        with Store(db) as store:  # migrates an older backup now, not at the engine's next start
            now = time.time()
            store.transaction(lambda con: audit_log.append(
                con, now, who, "db.restore", backup_file.name,
                f"from {backup_file}; the database before kept as {info['kept_aside'] or '(none)'}")).result(60)
            migrated = store.schema_version()
    except (backup.BackupError, StoreError) as exc:
        err(str(exc))
        raise typer.Exit(1) from None
    except OSError as exc:
        err(f"restore failed: {exc}")
        raise typer.Exit(1) from None
    info = {**info, "path": str(db), "schema_now": migrated}
    if json_out:
        typer.echo(json.dumps(info, indent=2))
        return
    was = f" (migrated from schema {info['schema']} to {migrated})" if migrated != info["schema"] else ""
    typer.echo(f"restored {backup_file} to {db}{was}: {info['incidents_open']} open incidents, "
               f"{info['notifications_pending']} notifications queued")
    if info["kept_aside"]:
        typer.echo(f"the database before the restore is kept as {info['kept_aside']}")


# ---- postmortem (engine/postmortem.py) ----------------------------------------------------------------------
@export_app.command("postmortem")
def export_postmortem(
    incident_id: IncidentIdArg,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write it to this new file (default: "
                                                                       "stdout)")] = None,
    config: ConfigOpt = None, database: DatabaseOpt = None,
) -> None:
    """One incident as Markdown for its postmortem: summary (time to acknowledge, time to close), root causes
    with confidence, evidence, impact, every alert, the timeline (alerts, state changes, notes, config changes,
    maintenance, notifications), deliveries per target and linked changes. From the running engine, or off
    the database file (with --config, its maintenance windows and time zone too)."""
    import time

    from ispvm_tui.config import ConfigWatch
    from ispvm_tui.engine import incident_queries, postmortem
    from ispvm_tui.engine.maintenance_windows import Maintenance

    db = _database_of(config, database)
    if output is not None and output.exists():
        err(f"--output {output}: exists; not replaced")
        raise typer.Exit(EXIT_BAD_INPUT)

    def read(store: Any) -> dict[str, Any]:
        cfg = _load_config(config) if config is not None else None
        now = time.time()
        windows: list[Any] = []
        if cfg is not None:
            from ispvm_tui.engine import calendar

            views = store.transaction(lambda con: calendar.list_windows(con, None, now)).result(60)
            windows = Maintenance(cfg, views).windows
        data = postmortem.gather(
            store.query_dicts, incident_queries.check_prefix(incident_id), now=now,
            lookback_s=(cfg.config_watch if cfg else ConfigWatch()).lookback_s, windows=windows,
            critical=frozenset(d.name for d in cfg.devices if "critical" in d.tags) if cfg else frozenset())
        return {"id": data["incident"]["id"], "markdown": postmortem.render(data, cfg.ispvm.timezone if cfg
                                                                             else "UTC")}

    written = _engine_or_file(db, "incidents.postmortem", {"id": incident_id}, read)
    if output is None:
        typer.echo(written["markdown"], nl=False)
        return
    try:
        with open(output, "x", encoding="utf-8") as fh:
            fh.write(written["markdown"])
    except OSError as exc:
        err(f"--output {output}: {exc.strerror or exc}")
        raise typer.Exit(1) from None
    err(f"postmortem of {written['id']} written to {output}")


# ---- reports (engine/sla.py, engine/capacity.py, report_format.py) ----------------------------------------
def _report(op: str, args: dict[str, Any], config: Path | None, database: Path | None) -> tuple[Any, Any]:
    """The report from the running engine (its config), or computed off the file with --config's inventory;
    and the config it was computed for (None: the engine's, not read here)."""
    import time

    from ispvm_tui.engine import capacity, sla

    db = _database_of(config, database)
    cfg = _load_config(config) if config is not None else None

    def inventory_given() -> None:
        if cfg is None:
            err(f"{NO_ANSWER.capitalize()}: a report off the file needs the inventory: give --config F")
            raise typer.Exit(EXIT_BAD_INPUT)

    def read(store: Any) -> Any:
        if op == "report.sla":
            return sla.report(store.query_dicts, cfg, *sla.window(args, time.time(), cfg.ispvm.timezone))
        return capacity.report(store.query_dicts, cfg, time.time())

    return _engine_or_file(db, op, args, read, before_file=inventory_given, option_errors=True), cfg


def _report_format(csv_out: bool, md_out: bool, json_out: bool) -> str:
    chosen = [name for name, on in (("csv", csv_out), ("md", md_out), ("json", json_out)) if on]
    if len(chosen) > 1:
        err("give at most one of --csv, --md, --json")
        raise typer.Exit(EXIT_BAD_INPUT)
    return chosen[0] if chosen else "text"


CsvOpt = Annotated[bool, typer.Option("--csv", help="CSV on stdout (one header; a section column)")]
MdOpt = Annotated[bool, typer.Option("--md", help="Markdown on stdout")]


@report_app.command("sla")
def report_sla(
    start: Annotated[str, typer.Option("--from", help="start: a date, RFC 3339, or a duration ago (30d)")] = "30d",
    end: Annotated[str, typer.Option("--to", help="end: now, a date, RFC 3339, or a duration ago")] = "now",
    config: ConfigOpt = None, database: DatabaseOpt = None,
    csv_out: CsvOpt = False, md_out: MdOpt = False, json_out: JsonOpt = False,
) -> None:
    """Availability per device, site and service against its SLA target, downtime planned (in maintenance)
    and not, outages, breaches; incidents opened with their MTTA and MTTR. Downtime is read from the alerts
    the engine raised (docs/reports.md). Exit 0 even with breaches: it is a report."""
    from ispvm_tui import report_format

    fmt = _report_format(csv_out, md_out, json_out)
    rep, cfg = _report("report.sla", {"from": start, "to": end}, config, database)
    tz = cfg.ispvm.timezone if cfg is not None else "UTC"
    if fmt == "json":
        typer.echo(json.dumps(rep, indent=2))
        return
    if fmt == "csv":
        typer.echo(report_format.csv_text({"availability": rep["rows"], "incidents": rep["incidents"]}), nl=False)
        return
    breaches = rep["breaches"]
    heading = [f"SLA report {report_format.moment(rep['from'], tz)} to {report_format.moment(rep['to'], tz)}",
               f"default target {rep['target_pct']:g} %; {len(breaches)} breach{'es' if len(breaches) != 1 else ''}"
               + (": " + ", ".join(f"{b['kind']} {b['name']} {b['availability_pct']:.3f} %" for b in breaches)
                  if breaches else "")]
    render = report_format.markdown if fmt == "md" else report_format.text
    typer.echo(render(report_format.sla_tables(rep), heading), nl=False)


@report_app.command("capacity")
def report_capacity(
    config: ConfigOpt = None, database: DatabaseOpt = None,
    csv_out: CsvOpt = False, md_out: MdOpt = False, json_out: JsonOpt = False,
) -> None:
    """Per link: the daily 95th percentile of its 5-minute rates as a share of its speed, the least-squares
    trend over the last [reports].capacity_days, and the day it crosses [reports].capacity_threshold_pct
    (docs/reports.md)."""
    from ispvm_tui import report_format

    fmt = _report_format(csv_out, md_out, json_out)
    rep, _ = _report("report.capacity", {}, config, database)
    if fmt == "json":
        typer.echo(json.dumps(rep, indent=2))
        return
    if fmt == "csv":
        flat = [{**{k: v for k, v in r.items() if k != "fit"},
                 **{f"fit_{k}": v for k, v in (r.get("fit") or {}).items()}} for r in rep["links"]]
        typer.echo(report_format.csv_text({"links": flat}), nl=False)
        return
    heading = [f"Capacity report: {rep['days']} days to {report_format.moment(rep['to'], 'UTC')}",
               "daily p95 of 5-minute rates (the larger direction and end); least-squares trend"]
    render = report_format.markdown if fmt == "md" else report_format.text
    typer.echo(render(report_format.capacity_tables(rep), heading), nl=False)


# ---- hardening (engine/hardening.py) ------------------------------------------------------------------------
@devices_app.command("list")
def devices_list(
    stale: Annotated[bool, typer.Option("--stale", help="only devices not answering, with their last answer")] = False,
    config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False,
) -> None:
    """Every device: state, when it was last polled and last answered, version, uptime and CPU. A device
    polled since it last answered keeps those figures, marked * (stale in --json). From the running engine;
    with none, off the database file (site and role only with --config)."""
    import time

    from ispvm_tui.engine import device_list

    def read(store: Any) -> Any:
        inventory = None
        if config is not None:
            inventory = [{"name": d.name, "site": d.site, "role": d.role, "address": d.address}
                         for d in _load_config(config).devices]
        return {"now": time.time(), "devices": device_list.from_store(store.query_dicts, inventory)}

    listed = _engine_or_file(_database_of(config, database), "devices.list", {}, read)
    devices = [d for d in listed["devices"] if d["stale"] or not stale]
    if json_out:
        typer.echo(json.dumps({"now": listed["now"], "devices": devices}, indent=2))
        return
    if not devices:
        typer.echo("no device is stale" if stale else "no devices")
        return
    now = listed["now"]

    def known(value: str, d: dict[str, Any]) -> str:
        return value + ("*" if d["stale"] and value != "-" else "")

    def ago(ts: float | None) -> str:
        return "-" if ts is None else _age(now - ts)

    rows = [[d["state"], d["name"], ago(d["last_poll_at"]), ago(d["answered_at"]), d["version"] or "-",
             known("-" if d["uptime_s"] is None else _age(d["uptime_s"]), d),
             known("-" if d["cpu_load"] is None else f"{d['cpu_load']}%", d), d["last_error"] or ""]
            for d in devices]
    _table(["STATE", "DEVICE", "POLLED", "ANSWERED", "VERSION", "UPTIME", "CPU", "LAST ERROR"], rows)
    if any(d["stale"] for d in devices):
        typer.echo("* last known: polled since it last answered")


@audit_app.command("routers")
def audit_routers(config: ConfigOpt = None, database: DatabaseOpt = None, json_out: JsonOpt = False) -> None:
    """RouterOS hardening checks from what ispvm already reads: management services (API, Winbox, SSH, web)
    open to any address, telnet or FTP enabled, the API without TLS, SNMP open to any address or polled with
    'public', RouterOS versions with published advisories. Worst first. From the running engine, or off the
    file with --config. Exit 0: it is a report."""
    from ispvm_tui.engine import hardening
    from ispvm_tui.secrets import default_secrets

    def inventory_given() -> None:
        if config is None:
            err(f"{NO_ANSWER.capitalize()}: checking off the file needs the inventory: give --config F")
            raise typer.Exit(EXIT_BAD_INPUT)

    def read(store: Any) -> Any:
        secrets = default_secrets()

        def get(name: str) -> str | None:
            try:
                return secrets.get(name)
            except Exception:  # an unreadable store: that one check is skipped, the rest still run
                return None

        return hardening.report(store.query_dicts, _load_config(config), get)

    rep = _engine_or_file(_database_of(config, database), "audit.routers", {}, read, before_file=inventory_given)
    if json_out:
        typer.echo(json.dumps(rep, indent=2))
        return
    typer.echo(f"{rep['devices']} RouterOS devices, {rep['fingerprinted']} with a stored configuration; "
               f"{len(rep['findings'])} finding{'s' if len(rep['findings']) != 1 else ''}")
    if rep["findings"]:
        _table(["SEVERITY", "DEVICE", "CHECK", "DETAIL"],
               [[f["severity"], f["device"], f["check"], f["detail"]] for f in rep["findings"]])
