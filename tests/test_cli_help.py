"""Every command's ``--help`` as a user reads it in an 80-column terminal: no line wider than the terminal and
every option name whole (rich's help tables cut long ones short: "--api-password-se…")."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import typer.main

from ispvm_tui.cli import app

EXE = Path(sys.executable).with_name("ispvm")


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not getattr(sub, "hidden", False):
            found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))


def _help(path: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), *path, "--help"], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, COLUMNS="80", LINES="40"))


def test_every_command_is_read_and_the_new_groups_are_there() -> None:
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"poll", "maint add", "changes capture", "incidents list", "incidents note"} <= paths
    assert len(paths) > 30


def test_every_help_fits_80_columns_with_whole_option_names() -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(_help, [p for p, _ in COMMANDS]))
    problems = []
    for (path, command), got in zip(COMMANDS, results, strict=True):
        name = " ".join(("ispvm", *path))
        if got.returncode != 0:
            problems.append(f"{name} --help: exit {got.returncode}: {got.stderr.strip()}")
            continue
        problems += [f"{name}: {len(line)} columns: {line!r}" for line in got.stdout.splitlines() if len(line) > 80]
        problems += [f"{name}: option name cut: {cut!r}" for cut in re.findall(r"-[\w-]*…", got.stdout)]
        for param in getattr(command, "params", []):
            if getattr(param, "hidden", False):
                continue
            for opt in [*param.opts, *getattr(param, "secondary_opts", [])]:
                if opt.startswith("-") and not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", got.stdout):
                    problems.append(f"{name}: option {opt} not shown whole")
    assert not problems, "\n".join(problems)
