"""The TOML in docs/notifications.md is configuration the engine accepts, and every target kind is built."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from ispvm_tui.config import MaintenanceWindow, Notify
from ispvm_tui.engine.notify.build import build_targets

DOC = Path(__file__).resolve().parent.parent / "docs" / "notifications.md"


def test_every_example_block_validates_and_builds() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 6
    kinds = set()
    for block in blocks:
        data = tomllib.loads(block)
        for window in data.get("maintenance", []):
            MaintenanceWindow.model_validate(window)
        if "notify" not in data:
            continue
        notify = Notify.model_validate(data["notify"])
        built = build_targets(notify, lambda name: f"value-of-{name}-0123456789", tenant=None)
        assert set(built) == {t.name for t in notify.all()}
        kinds |= {t.kind for t in built.values()}
    assert kinds == {"webhook", "jira", "servicenow", "telegram", "slack", "email"}


def test_secret_check_knows_every_target_secret() -> None:
    from ispvm_tui.config import Config

    notify = tomllib.loads("\n".join(re.findall(r"```toml\n(.*?)```", DOC.read_text(), flags=re.S)[1:]))
    cfg = Config.model_validate({
        "console": {"attach": ["CORE1"]}, "sites": [{"name": "S"}],
        "devices": [{"name": "CORE1", "site": "S", "role": "core", "address": "127.0.0.1", "snmp": "p"}],
        "snmp": {"p": {"community_secret": "snmp/c"}}, "notify": notify["notify"]})
    names = cfg.secret_names()
    for target in cfg.notify.all():
        assert set(target.secret_refs()) <= names
    assert {"jira/api-token", "servicenow/ispvm", "telegram/bot", "slack/noc-webhook", "smtp/ispvm"} <= names
