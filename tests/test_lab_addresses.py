"""The lab binds only to loopback: every router address is checked for the whole fleet before anything binds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ispvm_tui.clock import ScaledClock
from ispvm_tui.lab.addresses import LabAddressError, is_lab_address, lab_addresses
from ispvm_tui.lab.runner import Lab, LabStartError
from ispvm_tui.lab.scenario import load_scenario, resolve_scenario_path
from ispvm_tui.tomlsource import SourceError

EXE = shutil.which("ispvm", path=str(Path(sys.executable).parent)) or "ispvm"


def test_addresses_inside_loopback() -> None:
    assert lab_addresses("127.77.0.0", 3) == ["127.77.0.1", "127.77.0.2", "127.77.0.3"]
    assert lab_addresses("::", 1) == ["::1"]
    assert is_lab_address("127.0.0.1") and is_lab_address("::1")
    assert not is_lab_address("127.255.255.255") and not is_lab_address("128.0.0.0")
    assert not is_lab_address("::2") and not is_lab_address("10.0.0.1") and not is_lab_address("localhost")


@pytest.mark.parametrize("base", ["127.255.255.250", "10.0.0.0", "0.0.0.0", "192.0.2.0", "::1", "fe80::",
                                  "255.255.255.255", "not-an-address", "126.255.255.255"])
def test_addresses_leaving_loopback_are_refused(base: str) -> None:
    with pytest.raises(LabAddressError) as exc:
        lab_addresses(base, 7)
    assert base in str(exc.value)


async def test_lab_refuses_a_base_that_spills_past_127_before_binding() -> None:
    sc = load_scenario("upstream-down")  # 7 routers: the last ones would be 127.255.255.255 and 128.0.0.0
    lab = Lab(sc, ScaledClock(1.0), address_base="127.255.255.250")
    with pytest.raises(LabStartError, match="outside the loopback range"):
        await lab.start(play=False)
    assert lab.api_servers == {} and lab.snmp_agents == {}


def test_scenario_with_a_spilling_base_is_a_config_error(tmp_path: Path) -> None:
    text = resolve_scenario_path("upstream-down").read_text()
    bad = tmp_path / "spill.toml"
    bad.write_text(text.replace('address_base = "127.78.0.0"', 'address_base = "127.255.255.252"'))
    with pytest.raises(SourceError) as exc:
        load_scenario(bad)
    assert "lab.address_base" in str(exc.value) and "outside the loopback range" in str(exc.value)


@pytest.mark.parametrize("base", ["0.0.0.0", "127.255.255.250", "10.1.2.0"])
def test_lab_command_refuses_a_non_loopback_base(base: str) -> None:
    result = subprocess.run([EXE, "lab", "--scenario", "upstream-down", "--address-base", base],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "--address-base" in result.stderr and "loopback" in result.stderr and "Traceback" not in result.stderr


def test_demo_refuses_a_non_loopback_base() -> None:
    result = subprocess.run([EXE, "demo", "--headless", "--address-base", "0.0.0.0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "loopback" in result.stderr, result.stderr
