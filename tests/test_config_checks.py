"""`config check` beyond syntax: addresses that are not addresses, warnings, and large files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.config_check import generate
from ispvm_tui.config import config_warnings, load_config
from ispvm_tui.tomlsource import MAX_FILE_BYTES, SourceError, parse_toml, read_toml, validate

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"


def _ispvm(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ispvm", path=str(Path(sys.executable).parent)) or "ispvm"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


def _edited(tmp_path: Path, *edits: tuple[str, str]) -> tuple[Path, str]:
    text = EXAMPLE.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path, text


def _line_of(text: str, fragment: str) -> int:
    return text[: text.index(fragment)].count("\n") + 1


@pytest.mark.parametrize("address", ["999.1.2.3", "10.300.1.1", "1.2.3", "010.1.1.1", "1.2.3.4.5", "256.0.0.1"])
def test_dotted_numbers_that_are_not_addresses_are_refused(tmp_path: Path, address: str) -> None:
    path, text = _edited(tmp_path, ('address = "192.0.2.2"', f'address = "{address}"'))
    with pytest.raises(SourceError) as info:
        load_config(path)
    line = _line_of(text, f'address = "{address}"')
    assert f"{path}:{line}: devices[1].address:" in str(info.value) and "not an IPv4 address" in str(info.value)


@pytest.mark.parametrize("address", ["bad host", "-x.example", "a..b", "http://router1", "r1:8728"])
def test_malformed_host_names_are_refused(tmp_path: Path, address: str) -> None:
    path, _ = _edited(tmp_path, ('address = "192.0.2.2"', f'address = "{address}"'))
    with pytest.raises(SourceError, match="IP address or host name"):
        load_config(path)


@pytest.mark.parametrize("address", ["router1.pop-a.example.net", "2001:db8::1", "fe80::1%eth0", "edge1", "r_1.lan"])
def test_real_addresses_and_names_pass(tmp_path: Path, address: str) -> None:
    path, _ = _edited(tmp_path, ('address = "192.0.2.2"', f'address = "{address}"'))
    assert load_config(path).devices[1].address == address


def test_example_has_no_warnings() -> None:
    warnings: list = []
    load_config(EXAMPLE, warnings)
    assert warnings == []


def test_warnings_are_printed_and_exit_zero(tmp_path: Path) -> None:
    path, text = _edited(
        tmp_path,
        ('base_url = "https://noc.example.net/ispvm"', 'base_url = "https://noc:Hunter2-pw@noc.example.net/ispvm"'),
        ('url = "https://hooks.example.net/ispvm"', 'url = "https://bot:S3cr3t-tok@hooks.example.net/ispvm"'),
        ('address = "192.0.2.10"', 'address = "192.0.2.1"'),  # POPA-AGG: CORE1's address and API port
        ('address = "192.0.2.11"', 'address = "192.0.2.1"'),  # POPA-ACC1: CORE1's address and SNMP port
        ('[[links]]\na = "POPA-AGG:ether2"\nb = "POPA-ACC1:ether1"\nspeed_mbps = 1000\n', ""),  # ACC1 unlinked
    )
    result = _ispvm("config", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "warnings" in result.stdout
    err = result.stderr
    assert "Hunter2-pw" not in err + result.stdout and "S3cr3t-tok" not in err + result.stdout
    base_line = _line_of(text, "base_url =")
    assert f"{path}:{base_line}: ispvm.base_url: warning: " in err and "secret store" in err
    assert "notify.webhooks[0].url: warning: " in err
    acc_line = _line_of(text, 'name = "POPA-ACC1"') - 1  # its [[devices]] header
    assert f"{path}:{acc_line}: devices[3]: warning: no configured path from the console" in err
    assert "devices[3].address: warning: same management address and SNMP port 161 as devices[0] (CORE1)" in err
    # POPA-AGG's SNMP agent is on 1161, not CORE1's 161: only its API port repeats CORE1's
    assert "devices[2].address: warning: same management address and API port 8728 as devices[0]" in err


def test_warnings_function_without_a_source() -> None:
    source = read_toml(EXAMPLE)
    cfg = validate(source, type(load_config(EXAMPLE)))
    bad = cfg.model_copy(update={"console": cfg.console.model_copy(update={"attach": ["POPA-ACC1"]}),
                                 "links": cfg.links[:2]})
    warnings = config_warnings(bad, None, "cfg")
    assert {w.field for w in warnings} == {"devices.0", "devices.1", "devices.2"}
    assert all(w.severity == "warning" and str(w).startswith("cfg: devices.") for w in warnings)


def test_a_snmp_profile_outlasting_the_poll_timeout_is_warned(tmp_path: Path) -> None:
    path, _ = _edited(tmp_path, ("timeout_s = 2\nretries = 1", "timeout_s = 4\nretries = 2"))
    warnings: list = []
    load_config(path, warnings)
    assert [w.field for w in warnings] == ["snmp.public-v2.timeout_s"]


def test_oversize_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    with path.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    t0 = time.monotonic()
    result = _ispvm("config", "check", str(path))
    assert result.returncode == 2 and "larger than 64 MB" in result.stderr
    assert time.monotonic() - t0 < 60
    dev = _ispvm("config", "check", "/dev/zero")
    assert dev.returncode == 2 and "larger than" in dev.stderr


def test_deep_nesting_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match=r"nested too deeply|syntax"):
        parse_toml("x = " + "[" * 100_000 + "]" * 100_000)


def test_large_generated_config_checks_without_problems(tmp_path: Path) -> None:
    """10,000 devices: the line map is only built when there is something to report."""
    path = tmp_path / "big.toml"
    path.write_text(generate(10_000))
    warnings: list = []
    cfg = load_config(path, warnings)
    assert len(cfg.devices) == 10_000 and warnings == []
    source = read_toml(path)
    validate(source, type(cfg))
    assert source._lines is None
