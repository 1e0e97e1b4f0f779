"""`ispvm lab` as a user runs it: routers come up, a plain RouterOS client logs in, Ctrl-C stops it."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import librouteros


def test_lab_command_serves_routers_until_interrupted(address_base: str) -> None:
    exe = shutil.which("ispvm", path=str(Path(sys.executable).parent)) or "ispvm"
    proc = subprocess.Popen([exe, "lab", "--scenario", "upstream-down", "--address-base", address_base],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(lines) < 9:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        header, table = lines[0], lines[2:9]
        assert "lab upstream-down: 7 routers" in header
        rows = {r.split()[0]: r.split() for r in table}
        name, address, api_port = rows["EDGE1"][0], rows["EDGE1"][1], int(rows["EDGE1"][2])
        api = librouteros.connect(address, "admin", "ispvm-lab", port=api_port, timeout=5)
        try:
            identity = next(iter(api.path("system", "identity")))["name"]
            peers = {c["name"] for c in api.path("routing", "bgp", "connection")}
        finally:
            api.close()
        assert identity == name
        assert peers == {"UPSTREAM1", "UPSTREAM2"}
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
