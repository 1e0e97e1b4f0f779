"""Config and scenario files: every problem names the file, the line and the field."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ispvm_tui.config import load_config
from ispvm_tui.lab.scenario import builtin_scenarios, load_scenario
from ispvm_tui.tomlsource import SourceError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"


def _ispvm(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ispvm", path=str(Path(sys.executable).parent)) or "ispvm"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)


def test_example_config_is_valid() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.devices and cfg.links and cfg.notify.webhooks
    result = _ispvm("config", "check", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def _broken(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    text = EXAMPLE.read_text()
    assert old in text, old
    text = text.replace(old, new, 1)
    path = tmp_path / "broken.toml"
    path.write_text(text)
    line = text[: text.index(new)].count("\n") + 1
    return path, line


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ('role = "edge"', 'role = "router"', "devices[1].role", "core"),
        ('site = "POP-A"', 'site = "POP-Z"', "devices[2].site", "unknown site"),
        ('a = "CORE1:sfp-sfpplus2"', 'a = "CORE9:sfp-sfpplus2"', "links[1].a", "unknown device"),
        ("interval_s = 60", "interval_s = -5", "polling.interval_s", "greater than 0"),
        ('credential = "noc"', 'credentail = "noc"', "devices[0].credentail", "unknown field"),
    ],
)
def test_broken_config_names_file_line_and_field(tmp_path: Path, old: str, new: str, field: str,
                                                 words: str) -> None:
    path, line = _broken(tmp_path, old, new)
    with pytest.raises(SourceError) as info:
        load_config(path)
    text = str(info.value)
    assert f"{path}:{line}: {field}:" in text, text
    assert words in text
    result = _ispvm("config", "check", str(path))
    assert result.returncode == 2
    assert f"{path}:{line}: {field}:" in result.stderr
    assert "Traceback" not in result.stderr


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[ispvm]\ndatabase = "x.duckdb"\nbase_url = "http://x\n')
    with pytest.raises(SourceError) as info:
        load_config(path)
    assert f"{path}:3:" in str(info.value)
    assert "syntax" in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = _ispvm("config", "check", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "file not found" in result.stderr


def test_builtin_scenarios_load() -> None:
    names = builtin_scenarios()
    assert {"core-link-cut", "upstream-down"} <= set(names)
    for name in names:
        sc = load_scenario(name)
        assert sc.expect is not None


def test_scenario_with_unknown_device_is_refused_with_its_line(tmp_path: Path) -> None:
    text = (REPO / "ispvm_tui/lab/scenarios/core-link-cut.toml").read_text()
    cut = 'link = "CORE1:ether2--POPA-AGG:ether1"'
    text = text.replace(cut, 'device = "CORE7"\n' + cut)
    text = text.replace('action = "link_down"', 'action = "device_down"')
    path = tmp_path / "bad-scenario.toml"
    path.write_text(text)
    line = text[: text.index('device = "CORE7"')].count("\n") + 1
    with pytest.raises(SourceError) as info:
        load_scenario(path)
    assert f"{path}:{line}: timeline[0].device: unknown device 'CORE7'" in str(info.value)
    result = _ispvm("demo", "--headless", "--scenario", str(path), "--json")
    assert result.returncode == 2
    assert "unknown device 'CORE7'" in result.stderr
    assert result.stdout == ""


def test_timeline_action_without_its_fields(tmp_path: Path) -> None:
    text = (REPO / "ispvm_tui/lab/scenarios/upstream-down.toml").read_text()
    text = text.replace('peer = "EDGE1:UPSTREAM1"\nnote', 'note', 1)
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(SourceError) as info:
        load_scenario(path)
    assert "action 'bgp_down' needs: peer" in str(info.value)
    assert "timeline[0]" in str(info.value)
