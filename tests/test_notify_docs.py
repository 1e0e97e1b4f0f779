"""The TOML in docs/notifications.md is configuration the engine accepts, and every target kind is built."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from ispvm_tui.config import Notify
from ispvm_tui.engine.notify.build import build_targets

DOC = Path(__file__).resolve().parent.parent / "docs" / "notifications.md"


def test_every_example_block_validates_and_builds() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 6
    kinds = set()
    for block in blocks:
        notify = Notify.model_validate(tomllib.loads(block)["notify"])
        built = build_targets(notify, lambda name: f"value-of-{name}-0123456789", tenant=None)
        assert set(built) == {t.name for t in notify.all()}
        kinds |= {t.kind for t in built.values()}
    assert kinds == {"webhook", "jira", "servicenow", "telegram", "slack", "email"}
