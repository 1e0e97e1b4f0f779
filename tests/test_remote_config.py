"""[remote] and [[collectors]]: who polls which device, and every mistake named by file, line and field."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from ispvm_tui.clock import ScaledClock
from ispvm_tui.collectors.results import PollResult
from ispvm_tui.config import load_config, load_remote_settings, remote_devices
from ispvm_tui.engine.core import Engine
from ispvm_tui.engine.store import Store
from ispvm_tui.secrets import StaticSecrets
from ispvm_tui.tomlsource import SourceError

BASE = """
[console]
attach = ["CORE1"]
[credentials.c]
username = "u"
password_secret = "x"
[[sites]]
name = "DC"
[[sites]]
name = "POP-A"
[[devices]]
name = "CORE1"
site = "DC"
role = "core"
address = "127.0.0.1"
credential = "c"
[[devices]]
name = "A1"
site = "POP-A"
role = "access"
address = "127.0.0.2"
credential = "c"
[[devices]]
name = "A2"
site = "DC"
role = "access"
address = "127.0.0.3"
credential = "c"
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(BASE + text)
    return p


def test_devices_belong_to_a_collector_by_site_or_by_name(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, """
[remote]
nats_url = "nats://127.0.0.1:4222"
tls_ca = "ca.pem"
[[collectors]]
name = "pop-a"
site = "POP-A"
[[collectors]]
name = "dc-extra"
devices = ["A2"]
"""))
    assert remote_devices(cfg) == {"A1": "pop-a", "A2": "dc-extra"}
    assert cfg.remote is not None and cfg.remote.tls_ca == str(tmp_path / "ca.pem")  # relative to the file
    remote, collectors = load_remote_settings(tmp_path / "c.toml")  # the collector reads only these
    assert remote.stream == "ISPVM" and [c.name for c in collectors] == ["pop-a", "dc-extra"]


@pytest.mark.parametrize("text, expected", [
    ('[[collectors]]\nname = "p"\nsite = "POP-A"\n', "collectors[0]: [[collectors]] need a [remote] section"),
    ('[remote]\n[[collectors]]\nname = "p.q"\nsite = "POP-A"\n', "collectors[0].name"),
    ('[remote]\n[[collectors]]\nname = "p"\nsite = "NOWHERE"\n', "unknown site 'NOWHERE'"),
    ('[remote]\n[[collectors]]\nname = "p"\ndevices = ["GHOST"]\n', "collectors[0].devices[0]"),
    ('[remote]\n[[collectors]]\nname = "p"\n', "a collector needs a site or a list of devices"),
    ('[remote]\n[[collectors]]\nname = "p"\nsite = "POP-A"\n[[collectors]]\nname = "q"\ndevices = ["A1"]\n',
     "device 'A1' is already polled by collector 'p'"),
    ('[remote]\n[[collectors]]\nname = "p"\nsite = "POP-A"\n[[collectors]]\nname = "p"\nsite = "DC"\n',
     "duplicate collector name 'p'"),
    ('[remote]\nuser = "u"\n', "user and password_secret go together"),
    ('[remote]\nuser = "u"\npassword_secret = "s"\nnkey_seed_secret = "n"\n', "not both"),
    ('[remote]\nnats_url = "http://x"\n', "remote.nats_url"),
    ('[remote]\nheartbeat_s = 0\n', "remote.heartbeat_s"),
    ('[remote]\npassword = "hunter2"\n', "remote.password: unknown field"),
    ('[remote]\nnats_url = "nats://u:hunter2@host:4222"\n', "no user or password in the URL"),
    ('[remote]\n[[collectors]]\nname = "p"\nsite = "POP-A"\nuser = "p"\n', "user and password_secret go together"),
])
def test_mistakes_are_reported_with_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SourceError) as exc:
        load_config(path)
    shown = "\n".join(str(p) for p in exc.value.problems)
    assert expected in shown, shown
    assert f"{path}:" in shown  # FILE:LINE


def test_collector_command_needs_to_know_which_collector_it_is(tmp_path: Path) -> None:
    path = _write(tmp_path, '[remote]\n[[collectors]]\nname = "pop-a"\nsite = "POP-A"\n')
    run = subprocess.run([sys.executable, "-m", "ispvm_tui.cli", "collector", "--site", "POP-B", "--config",
                          str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "no [[collectors]] entry with site = 'POP-B'" in run.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[remote]\nstream = "has space"\n')
    run = subprocess.run([sys.executable, "-m", "ispvm_tui.cli", "collector", "--name", "x", "--config", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and f"{bad}:2: remote.stream" in run.stderr, run.stderr


def test_late_results_are_stored_marked_late_and_never_fire_or_clear_alerts(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, ""))
    store = Store(tmp_path / "late.duckdb")
    engine = Engine(cfg, store=store, clock=ScaledClock(1.0), secrets=StaticSecrets({"x": "pw"}))

    def failed(at: float) -> list[PollResult]:
        return [PollResult(device="A1", collector="api", started_at=at, duration_s=0.1, ok=False, error="timed out",
                           error_kind="timeout")]

    async def go() -> None:
        now = engine.clock.now()
        for k in range(10):  # a replayed backlog of failures: history, not news
            await engine.ingest("A1", failed(now - 600 + k * 60), late=True)
        assert not engine.rules.is_firing("device.unreachable", "A1")
        assert not engine.rules.is_pending("device.unreachable", "A1")
        for k in range(3):  # current failures page as always
            await engine.ingest("A1", failed(now + k * 20.0), late=False)
            engine.clock = ScaledClock(1.0, start=now + (k + 1) * 20.0)
        assert engine.rules.is_firing("device.unreachable", "A1")
        ok = [PollResult(device="A1", collector="api", started_at=now - 300, duration_s=0.1, ok=True)]
        await engine.ingest("A1", ok, late=True)  # an old answer does not clear a current outage
        assert engine.rules.is_firing("device.unreachable", "A1")
        await asyncio.wrap_future(store.samples_committed())

    try:
        asyncio.run(go())
        rows = store.query("SELECT late, count(*) FROM poll_log GROUP BY late ORDER BY late")
        assert rows == [(False, 3), (True, 11)]
    finally:
        store.close()


def test_single_host_mode_never_loads_nats() -> None:
    code = ("import sys, ispvm_tui.cli, ispvm_tui.engine.core, ispvm_tui.config, ispvm_tui.engine.polling; "
            "sys.exit(1 if any(m == 'nats' or m.startswith('nats.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
