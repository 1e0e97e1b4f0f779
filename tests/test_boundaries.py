"""Architecture rules from DESIGN.md, checked on every import statement."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ispvm_tui"


def _module_imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
    return out


def test_engine_collectors_and_lab_never_import_textual() -> None:
    for folder in ("engine", "collectors", "lab"):
        for path in (PACKAGE / folder).rglob("*.py"):
            bad = [m for m in _module_imports(path) if m.split(".")[0] in ("textual", "rich")]
            assert not bad, f"{path.name} imports the UI: {bad}"


def test_screens_only_talk_to_the_engine_api() -> None:
    forbidden = ("duckdb", "librouteros", "pysnmp", "httpx")
    for path in [*(PACKAGE / "screens").rglob("*.py"), PACKAGE / "app.py"]:
        for module in _module_imports(path):
            assert module.split(".")[0] not in forbidden, f"{path.name} imports {module}"
            if module.startswith("ispvm_tui.engine"):
                assert module == "ispvm_tui.engine.api", f"{path.name} imports {module}"


def test_headless_commands_do_not_load_textual() -> None:
    code = ("import sys; import ispvm_tui.cli, ispvm_tui.engine.core, ispvm_tui.demo; "
            "print('textual' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
