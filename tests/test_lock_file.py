"""requirements.lock is what `make` installs: every dependency pyproject.toml declares must be pinned there.

A dependency added to pyproject.toml alone is silently missing from every fresh venv (sniffio once was:
httpcore then paid a failed import on every request).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    bare = re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", bare).lower()


def test_every_declared_dependency_is_pinned_in_the_lock_file() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for extra in project.get("optional-dependencies", {}).values():
        declared |= {_name(r) for r in extra}
    pinned = {_name(line.split("==", 1)[0]) for line in (REPO / "requirements.lock").read_text().splitlines()
              if "==" in line and not line.lstrip().startswith("#")}
    assert declared - pinned == set()
