"""No secret reaches any byte ispvm writes, at the most verbose level.

Every secret is a unique string: the routers' API password and SNMP community
(the lab is started with them), a webhook HMAC key, and the passwords in a
``base_url`` and a webhook URL (``user:password@``). The real engine polls
the real lab, opens an incident and delivers it to a real HTTP receiver with
``-v``; then stdout, stderr, the log, the DuckDB file and its WAL (raw bytes,
and every value of every table), the receiver's payloads and a screen capture
of the console are searched for each secret in every spelling a library might
use (plain, percent-encoded, in a Basic auth header).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import duckdb
import pytest

from ispvm_tui import jsonlog, redact
from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.clock import ScaledClock, SystemClock
from ispvm_tui.config import load_config
from ispvm_tui.lab.runner import Lab
from ispvm_tui.lab.scenario import load_scenario
from ispvm_tui.lab.webhook_sink import WebhookSink
from ispvm_tui.secrets import EncryptedFileSecrets
from tests.labconfig import write_lab_config
from tests.waiting import wait_for as _wait

EXE = shutil.which("ispvm", path=str(Path(sys.executable).parent)) or "ispvm"
PASSPHRASE = "leak-test passphrase"
LINK = "CORE1:ether2--POPA-AGG:ether1"
_TAG = uuid.uuid4().hex[:10]
ROUTER_PASSWORD = f"Rtr-Pw-{_TAG}"
COMMUNITY = f"Comm-{_TAG}"
HMAC_KEY = f"Hmac-Key-{_TAG}"
BASE_PASSWORD = f"Base-Pw-{_TAG}"
HOOK_PASSWORD = f"Hook-Pw-{_TAG}"
WRONG_PASSWORD = f"Typo-Pw-{_TAG}"  # a mistyped password is still a password
BASE_URL = f"https://noc:{BASE_PASSWORD}@noc.example.net/ispvm/"
SECRETS = (ROUTER_PASSWORD, COMMUNITY, HMAC_KEY, BASE_PASSWORD, HOOK_PASSWORD, WRONG_PASSWORD)


def _forms(secret: str) -> set[bytes]:
    forms = {secret, quote(secret, safe="")}
    if secret == HOOK_PASSWORD:
        forms.add(base64.b64encode(f"hook:{secret}".encode()).decode())
    return {f.encode() for f in forms}


def assert_clean(what: str, data: bytes | str) -> None:
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    for secret in SECRETS:
        for form in _forms(secret):
            assert form not in raw, f"{what} contains secret {secret!r} (as {form!r})"


def _table_values(db: Path) -> str:
    """Every value of every table, as text: DuckDB may compress strings on disk, SQL never does."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = []
        for (table,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
            out.append(repr(con.execute(f'SELECT * FROM "{table}"').fetchall()))
        return "\n".join(out)
    finally:
        con.close()


class SlamServer:
    """A webhook "receiver" that accepts and hangs up at once: every delivery to it fails."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.close()
            self.accepted += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def lab(address_base: str):
    """core-link-cut with the fibre already cut, its routers answering to the unique secrets."""
    sc = load_scenario("core-link-cut")
    sc = sc.model_copy(update={"lab": sc.lab.model_copy(update={"password": ROUTER_PASSWORD,
                                                                "community": COMMUNITY})})
    loop = BackgroundLoop("leak-lab")
    lab_ = Lab(sc, ScaledClock(1.0), address_base=address_base)
    loop.run(lab_.start(play=False))
    cut = next(e for e in sc.timeline if e.action == "link_down")

    async def apply() -> None:
        lab_.model.apply(cut)

    loop.run(apply())
    yield lab_
    loop.run(lab_.stop())
    loop.stop()


@pytest.fixture
def receivers():
    sink = WebhookSink(secret=HMAC_KEY)
    sink.start()
    slam = SlamServer()
    yield sink, slam
    sink.stop()
    slam.close()


def _setup(lab: Lab, sink: WebhookSink, slam: SlamServer, tmp: Path) -> tuple[Path, dict[str, str]]:
    data = tmp / "data"
    store = EncryptedFileSecrets(data / "ispvm" / "secrets.enc", passphrase=PASSPHRASE)
    for name, value in (("lab/password", ROUTER_PASSWORD), ("lab/community", COMMUNITY), ("hooks/hmac", HMAC_KEY)):
        store.set(name, value)
    hook_url = f"http://hook:{HOOK_PASSWORD}@127.0.0.1:{sink.port}/hook"
    slam_url = f"http://hook:{HOOK_PASSWORD}@127.0.0.1:{slam.port}/hook"
    config = write_lab_config(lab, tmp / "lab.toml", extra=[
        "[ispvm]", 'database = "state/ispvm.duckdb"', f'base_url = "{BASE_URL}"', "",
        "[polling]", "interval_s = 1", "timeout_s = 0.5", "",
        "[incidents]", "correlate_every_s = 0.5", "",
        "[[notify.webhooks]]", 'name = "sink"', f'url = "{hook_url}"', 'secret = "hooks/hmac"', "",
        "[[notify.webhooks]]", 'name = "slam"', f'url = "{slam_url}"', 'secret = "hooks/hmac"', "timeout_s = 1",
        "",
    ])
    env = dict(os.environ, XDG_DATA_HOME=str(data), ISPVM_SECRETS_PASSPHRASE=PASSPHRASE,
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    return config, env




def _read_wal(wal: Path, seen: list[tuple[int, bytes]]) -> bool:
    """The WAL's mode and bytes while the engine runs (it holds the latest rows); False if absent."""
    try:
        with open(wal, "rb") as fh:
            seen.append((stat.S_IMODE(os.fstat(fh.fileno()).st_mode), fh.read()))
    except FileNotFoundError:  # not written yet, or just checkpointed away
        return False
    return True


def _loose_umask() -> None:
    os.umask(0o022)  # the usual default: files would be 0644 if ispvm relied on it


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_headless_run_at_debug_level_leaks_no_secret(lab: Lab, receivers, tmp_path: Path, log_format: str) -> None:
    sink, slam = receivers
    config, env = _setup(lab, sink, slam, tmp_path)
    state = tmp_path / "state"
    db = state / "ispvm.duckdb"
    wal = db.with_name(db.name + ".wal")
    proc = subprocess.Popen([EXE, "run", "--headless", "--json", "-v", "--log-format", log_format,
                             "--config", str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_loose_umask)
    wal_seen: list[tuple[int, bytes]] = []
    try:
        assert _wait(lambda: any(w.json.get("event_type") == "incident.opened" for w in sink.received()), 60), \
            "the cut link should open an incident and reach the receiver"
        # A second attempt at the hang-up receiver means the first one's failure is recorded.
        assert _wait(lambda: slam.accepted >= 2, 30), "the hang-up receiver should be retried"
        assert _wait(lambda: _read_wal(wal, wal_seen), 10), "a running engine has a WAL"
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    assert b"DEBUG" in stderr and b"httpx" in stderr, "the run should have logged at DEBUG, httpx included"
    assert b"incident.opened" in stdout
    if log_format == "json":  # one object per line, the fixed fields only: a logger's extras never leak
        records = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
        assert records and len(records) >= len(stderr.splitlines()) - 5, stderr.decode()[-2000:]
        assert {"httpx", "ispvm_tui.engine.outbox"} & {r["logger"] for r in records}
        assert all(set(r) <= set(jsonlog.FIELDS) and r["level"] for r in records)

    assert_clean("stdout (--json)", stdout)
    assert_clean("stderr (-v log)", stderr)
    for mode, data in wal_seen:
        assert mode == 0o600, f"WAL mode {mode:o}"
        assert_clean("the WAL while running", data)
    for path in sorted(state.rglob("*")):
        if path.is_file():
            assert_clean(str(path), path.read_bytes())
    assert_clean("database tables", _table_values(db))

    # What was stored and sent instead: endpoint names, and a deep link without the base URL's password.
    outbox = duckdb.connect(str(db), read_only=True)
    try:
        endpoints = {r[0] for r in outbox.execute("SELECT endpoint FROM outbox UNION SELECT endpoint FROM deliveries")
                     .fetchall()}
        errors = [r[0] for r in outbox.execute("SELECT error FROM deliveries WHERE error IS NOT NULL").fetchall()]
    finally:
        outbox.close()
    assert endpoints == {"sink", "slam"}
    assert errors, "the hang-up receiver's failures should be recorded"
    opened = next(w for w in sink.received() if w.json["event_type"] == "incident.opened")
    assert opened.signature_ok is True
    incident = opened.json["incident"]
    assert incident["url"] == f"https://noc.example.net/ispvm/incidents/{incident['id']}"
    for w in sink.received():
        assert_clean("a webhook body", w.body)
    # The endpoint's own user info still authenticates the request, as HTTP Basic (see docs/security.md).
    expected = "Basic " + base64.b64encode(f"hook:{HOOK_PASSWORD}".encode()).decode()
    assert opened.header("Authorization") == expected

    # Modes: the data directory ispvm created, the database file.
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def _poll(lab: Lab, env: dict[str, str], stdin: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    _name, address, api_port, snmp_port = lab.routers()[0]
    return subprocess.run([EXE, "poll", address, "--api-user", lab.scenario.lab.username, "--api-port",
                           str(api_port), "--snmp-community-prompt", "--snmp-port", str(snmp_port), "-v", *extra],
                          input=stdin.encode(), env=env, capture_output=True, timeout=60)


def test_poll_at_debug_level_leaks_no_secret(lab: Lab, receivers, tmp_path: Path) -> None:
    sink, slam = receivers
    _, env = _setup(lab, sink, slam, tmp_path)
    for extra in ((), ("--json",)):
        ok = _poll(lab, env, f"{ROUTER_PASSWORD}\n{COMMUNITY}\n", *extra)
        assert ok.returncode == 0, ok.stderr.decode()
        assert b"DEBUG" in ok.stderr, "poll -v should log at DEBUG"
        assert_clean(f"poll {extra} stdout", ok.stdout)
        assert_clean(f"poll {extra} stderr", ok.stderr)
    refused = _poll(lab, env, f"{WRONG_PASSWORD}\n{COMMUNITY}\n")
    assert refused.returncode == 1 and b"api: auth" in refused.stderr, refused.stderr.decode()
    assert_clean("refused poll stdout", refused.stdout)
    assert_clean("refused poll stderr", refused.stderr)


async def test_console_and_its_log_show_no_secret(lab: Lab, receivers, tmp_path: Path) -> None:
    """The console on the running engine, as `ispvm run` opens it, with its DEBUG log in <db>.log."""
    from ispvm_tui.app import IspvmApp
    from ispvm_tui.cli import log_handler
    from ispvm_tui.engine.core import Engine
    from ispvm_tui.engine.store import Store

    sink, slam = receivers
    config_path, _ = _setup(lab, sink, slam, tmp_path)
    cfg = load_config(config_path)
    db = cfg.database_path(config_path.parent)
    secrets = EncryptedFileSecrets(tmp_path / "data" / "ispvm" / "secrets.enc", passphrase=PASSPHRASE)
    # What `ispvm run -v` sets up for the console: every record, DEBUG and up, into <db>.log.
    store = Store(db)
    handler = log_handler(db.with_suffix(".log"))
    redact.install()  # as _setup_logging does: also the handlers already on the root (pytest's)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    loop = BackgroundLoop("leak-console")
    engine = Engine(cfg, store=store, clock=SystemClock(), secrets=secrets)
    screens: list[str] = []
    try:
        loop.run(engine.start(), timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not engine.snapshot().incidents:
            time.sleep(0.1)
        assert engine.snapshot().incidents, "the cut link should open an incident"
        assert _wait(lambda: any(r.json.get("event_type") == "incident.opened" for r in sink.received()), 30)
        app = IspvmApp(engine, actor="noc")
        async with app.run_test(size=(160, 50)) as pilot:
            for keys in (("1",), ("2",), ("enter",), ("q", "3"), ("question_mark",)):
                await pilot.press(*keys)
                await pilot.pause(0.3)
                screens.append(app.export_screenshot())
    finally:
        with_errors = engine.deliveries()
        loop.run(engine.stop(), timeout=30)
        loop.stop()
        store.close()
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    assert any(LINK in s for s in screens), "the screens should show the incident"
    for i, screen in enumerate(screens):
        assert_clean(f"console screen {i}", screen)
    assert_clean("deliveries view", json.dumps(with_errors, default=str))
    log_file = db.with_suffix(".log")
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    text = log_file.read_bytes()
    assert b"DEBUG" in text
    assert_clean(str(log_file), text)
    assert_clean("database tables", _table_values(db))
    for path in db.parent.iterdir():
        if path.is_file():
            assert_clean(str(path), path.read_bytes())
