"""pysnmp (and pyasn1) load only for SNMPv3: a v1/v2c fleet polls through snmp_wire without them.

Each case runs in a fresh interpreter, since this one has long imported pysnmp
for the other SNMP tests. It imports what ``ispvm run`` does, builds the
collectors as the engine does (shared_snmp_engine + build_collectors) and polls
the lab's SNMP agent on loopback. The lab agent does not speak SNMPv3 (it stays
silent), so the v3 case shows that its request path goes through pysnmp and
ends as a timeout; tests/test_snmp_fixtures.py polls a real v3 agent.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import asyncio, json, sys

import ispvm_tui.cli, ispvm_tui.engine.core  # what `ispvm run` imports
from ispvm_tui.clock import SystemClock
from ispvm_tui.config import Config
from ispvm_tui.engine.polling import build_collectors, shared_snmp_engine
from ispvm_tui.lab.sim import LabModelLike, RouterHandle, SimDevice, SimInterface
from ispvm_tui.lab.snmp_agent import SnmpAgent
from ispvm_tui.secrets import StaticSecrets

VERSION = sys.argv[1]


class Model(LabModelLike):
    def now(self):
        return SystemClock().now()

    def answering(self, device):
        return True

    def advance(self, min_step=0.0):
        pass


def loaded():
    return {"pysnmp": "pysnmp" in sys.modules, "pyasn1": "pyasn1" in sys.modules}


async def main():
    device = SimDevice(name="edge-1", address="127.0.0.1", ros_major=7, version="7.16.2", board="RB5009",
                       serial="X1", boot_time=SystemClock().now() - 600, cpu_load=3,
                       total_memory=2**30, free_memory=2**29, temperature_c=40.0, voltage_v=24.0)
    device.interfaces = {"ether1": SimInterface("ether1", 1, "4C:5E:0C:00:00:01")}
    agent = SnmpAgent(RouterHandle(device, "admin", "pw", Model()), "127.0.0.1", port=0, community="lazy-c")
    await agent.start()
    try:
        profile = {"version": VERSION, "port": agent.port, "timeout_s": 0.5, "retries": 0}
        if VERSION == "3":
            profile |= {"v3_user": "u", "v3_auth_secret": "auth", "v3_priv_secret": "priv"}
        else:
            profile |= {"community_secret": "community"}
        cfg = Config.model_validate({
            "console": {"attach": ["edge-1"]}, "sites": [{"name": "S"}], "snmp": {"p": profile},
            "devices": [{"name": "edge-1", "site": "S", "role": "access", "address": "127.0.0.1", "snmp": "p"}],
        })
        secrets = StaticSecrets({"community": "lazy-c", "auth": "auth-key-1", "priv": "priv-key-1"})
        engine = shared_snmp_engine(cfg)
        report = {"engine": engine is not None, "imported": loaded()}
        (collector,) = build_collectors(cfg, cfg.devices[0], secrets, SystemClock(), engine)
        report["built"] = loaded()
        result = await collector.poll()
        await collector.close()
        if engine is not None:
            engine.close_dispatcher()
        report.update(polled=loaded(), ok=result.ok, error_kind=result.error_kind,
                      interfaces=[i.name for i in result.interfaces])
    finally:
        await agent.stop()
    print(json.dumps(report))


asyncio.run(main())
"""


def _run(version: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, version], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_v2c_poll_never_imports_pysnmp() -> None:
    report = _run("2c")
    assert report["ok"], report
    assert report["interfaces"] == ["ether1"]
    assert report["engine"] is False  # no SnmpEngine without a v3 profile
    none = {"pysnmp": False, "pyasn1": False}
    assert report["imported"] == report["built"] == report["polled"] == none, report


def test_a_v3_collector_imports_pysnmp_and_requests_through_it() -> None:
    report = _run("3")
    assert report["engine"] is True
    assert report["built"] == {"pysnmp": True, "pyasn1": True}, report
    # The lab agent does not answer SNMPv3: the request went out through pysnmp and timed out.
    assert report["ok"] is False and report["error_kind"] == "timeout", report


def _runtime_imports(tree: ast.AST) -> list[str]:
    """Modules imported anywhere but under ``if TYPE_CHECKING:``."""
    out: list[str] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            out += [m for n in node.orelse for m in _runtime_imports(n)]
            continue
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
        out += _runtime_imports(node)
    return out


def test_only_snmp_v3_imports_pysnmp() -> None:
    users = sorted(
        str(path.relative_to(REPO))
        for folder in ("ispvm_tui", "bench")
        for path in (REPO / folder).rglob("*.py")
        if any(m.split(".")[0] in ("pysnmp", "pyasn1") for m in _runtime_imports(ast.parse(path.read_text())))
    )
    assert users == ["ispvm_tui/collectors/snmp_v3.py"]


def test_snmpv3_protocol_names_match_pysnmps() -> None:
    from ispvm_tui.collectors import snmp, snmp_v3

    assert set(snmp_v3._AUTH_PROTOCOLS) == snmp.AUTH_PROTOCOLS
    assert set(snmp_v3._PRIV_PROTOCOLS) == snmp.PRIV_PROTOCOLS


@pytest.mark.parametrize("status", [*range(-2, 22), 2**31, "7", "junk", None])
def test_error_status_names_are_the_ones_pysnmp_printed(status: object) -> None:
    from pysnmp.proto import rfc1905

    from ispvm_tui.collectors.snmp import _status_name

    try:
        theirs = str(rfc1905.errorStatus.clone(int(status)).prettyPrint())  # type: ignore[call-overload]
    except Exception:
        theirs = str(status)
    assert _status_name(status) == theirs
