"""``ispvm notify list`` and ``ispvm notify test NAME`` run as the executable, secrets from the encrypted file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ispvm_tui.engine.webhooks import TEST_EVENT
from ispvm_tui.lab.webhook_sink import WebhookSink
from ispvm_tui.secrets import EncryptedFileSecrets

PASSPHRASE = "notify-cli-passphrase"
SECRET = "whsec-notify-test-5b1"


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"), ISPVM_SECRETS_PASSPHRASE=PASSPHRASE,
                PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring", COLUMNS="200")


def ispvm(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("ispvm")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, env=_env(tmp_path))


def _config(tmp_path: Path, hook_url: str, dead_url: str) -> Path:
    path = tmp_path / "notify.toml"
    path.write_text("\n".join([
        "[console]", 'attach = ["CORE1"]', "",
        "[[sites]]", 'name = "S"', 'region = "north"', "",
        "[credentials.noc]", 'username = "noc"', 'password_secret = "routers/noc"', "",
        "[[devices]]", 'name = "CORE1"', 'site = "S"', 'role = "core"', 'address = "127.0.0.1"',
        'credential = "noc"', "",
        "[[notify.webhooks]]", 'name = "noc-hook"', f'url = "{hook_url}"', 'secret = "hooks/noc"', "",
        "[[notify.webhooks]]", 'name = "pager"', f'url = "{dead_url}"',
        'events = ["incident.opened", "incident.closed"]',
        'route = { severities = ["critical"], hours = ["Mon-Fri 08:00-18:00"], unacked_for_s = 900 }', "",
    ]))
    return path


def test_list_shows_kinds_events_and_routes(tmp_path: Path) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9/hook", "http://127.0.0.1:9/p")
    result = ispvm(tmp_path, "notify", "list", "--config", str(config))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["noc-hook", "webhook", "all", "events", "every", "incident"]
    assert lines[1].split()[:3] == ["pager", "webhook", "opened,closed"]
    assert "severities=critical" in lines[1] and "hours=Mon-Fri 08:00-18:00" in lines[1]
    assert "unacked_for_s=900" in lines[1]
    assert "hooks/noc" not in result.stdout  # names of secrets are not needed here either


def test_a_signed_test_event_reaches_the_receiver_and_failures_exit_1(tmp_path: Path) -> None:
    EncryptedFileSecrets(tmp_path / "data" / "ispvm" / "secrets.enc", passphrase=PASSPHRASE).set("hooks/noc", SECRET)
    with WebhookSink(secret=SECRET) as sink, WebhookSink() as refusing:
        refusing.set_responses([410])
        config = _config(tmp_path, sink.url, refusing.url)
        ok = ispvm(tmp_path, "notify", "test", "noc-hook", "--config", str(config))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.startswith("OK noc-hook (webhook): HTTP 200")
        [got] = sink.received()
        assert got.signature_ok is True and got.header("X-ISPVM-Event-Type") == TEST_EVENT
        body = json.loads(got.body)
        assert body["event_type"] == TEST_EVENT and "no action needed" in body["incident"]["title"]
        assert SECRET not in ok.stdout + ok.stderr

        bad = ispvm(tmp_path, "notify", "test", "pager", "--config", str(config))
        assert bad.returncode == 1
        assert bad.stdout.startswith("FAILED pager (webhook): HTTP 410")

    unknown = ispvm(tmp_path, "notify", "test", "nope", "--config", str(config))
    assert unknown.returncode == 2 and "no notification target 'nope'" in unknown.stderr
    assert "noc-hook, pager" in unknown.stderr


def test_a_missing_secret_names_the_target_and_the_secret(tmp_path: Path) -> None:
    with WebhookSink() as sink:
        config = _config(tmp_path, sink.url, sink.url)
        EncryptedFileSecrets(tmp_path / "data" / "ispvm" / "secrets.enc", passphrase=PASSPHRASE).set("other", "x")
        result = ispvm(tmp_path, "notify", "test", "noc-hook", "--config", str(config))
        assert result.returncode == 1
        assert "'noc-hook'" in result.stderr and "'hooks/noc' not found" in result.stderr
        assert sink.received() == []
