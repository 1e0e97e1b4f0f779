"""Help text, ages in the console, and `secret check` when the store cannot be read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ispvm_tui.screens.widgets import relative_age
from ispvm_tui.secrets import EncryptedFileSecrets

REPO = Path(__file__).resolve().parent.parent
EXE = shutil.which("ispvm", path=str(Path(sys.executable).parent)) or "ispvm"


def _ispvm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=60, env=env)


def test_help_shows_toml_table_names() -> None:
    assert _ispvm("discover", "--help").stdout.count("[[links]]") >= 2
    assert "overrides [lab]" in _ispvm("lab", "--help").stdout


def test_just_now_is_only_the_first_seconds() -> None:
    assert relative_age(3) == "just now"
    assert relative_age(50) == "<1m ago"
    assert relative_age(61) == "1m ago" and relative_age(3700) == "1h01m ago"


def test_secret_check_with_a_wrong_passphrase_does_not_claim_secrets_are_missing(tmp_path: Path) -> None:
    store = EncryptedFileSecrets(tmp_path / "ispvm" / "secrets.enc", passphrase="right passphrase")
    store.set("routers/noc", "v1")
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path), ISPVM_SECRETS_PASSPHRASE="wrong passphrase",
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    result = _ispvm("secret", "check", "--config", str(REPO / "config.example.toml"), env=env)
    assert result.returncode == 1
    assert "MISSING" not in result.stdout and "UNKNOWN routers/noc" in result.stdout
    assert result.stderr.count("wrong passphrase") == 1 and "not checked" in result.stderr


def test_lab_addresses_every_link_of_a_large_fleet() -> None:
    """Link k had 10.0.k.0/30: past 255 links the lab could not start (a 300-router bench fleet)."""
    import ipaddress

    from bench.lab_topology import build_topology
    from ispvm_tui.clock import SystemClock
    from ispvm_tui.lab.model import LabModel

    sc = build_topology(400, 2, "127.60.0.0")
    assert len(sc.links) > 256
    model = LabModel.build(sc, SystemClock(), "127.60.0.0", lazy=True)
    nets = {}
    for dev in model.devices.values():
        for addr in dev.addresses:
            iface = ipaddress.IPv4Interface(addr.address)
            nets.setdefault(iface.network, set()).add(str(iface.ip))
    # Each link's /30 holds exactly its two ends, and no /30 is reused.
    link_nets = [n for n in nets if n.prefixlen == 30]
    assert len(link_nets) == len(sc.links)
    assert all(len(nets[n]) == 2 for n in link_nets)
    first = model.devices["CORE1"].addresses[0].address
    assert first.startswith("10.0."), first  # the first 255 links keep their addresses
