"""[roles] on the control socket: real peers of other uids (forked from this test, which runs as root, then
setuid) asking a real demo engine; what each role may do, the actor recorded as the OS user, and refusals.
Skipped where the tests cannot change uid."""

from __future__ import annotations

import inspect
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from ispvm_tui.config import Config, Roles
from ispvm_tui.engine import control
from ispvm_tui.engine.roles import Peer, needed, role_of
from tests.waiting import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run peers as other users")
USERS_GID, NEWS_GID = 100, 9  # Debian's users and news groups
VIEWER_UID, OPERATOR_UID, NOBODY_UID = 1, 8, 10  # daemon, mail, uucp


def _as(uid: int, groups: list[int], db: Path, op: str, args: dict[str, Any], actor: str) -> dict[str, Any]:
    """``control.request`` from a forked process running as ``uid``: its answer, or the refusal."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to the user, ask, report, and leave without running any cleanup
        try:
            os.close(read)
            os.setgroups(groups)
            os.setgid(groups[0])
            os.setuid(uid)
            try:
                out = {"ok": True, "result": control.request(db, op, args, actor)}
            except Exception as exc:
                out = {"ok": False, "error": str(exc), "type": type(exc).__name__}
            os.write(write, json.dumps(out, default=str).encode())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))


def test_role_of_names_and_groups() -> None:
    roles = Roles(viewers=["group:staff", "carol"], operators=["user:alice", "group:noc"], admins=["group:root"])
    assert role_of(Peer(4001, "carol", frozenset()), roles) == "viewer"
    assert role_of(Peer(4002, "bob", frozenset({"staff", "noc"})), roles) == "operator"  # the highest
    assert role_of(Peer(4003, "alice", frozenset()), roles) == "operator"
    assert role_of(Peer(4004, "dave", frozenset({"root"})), roles) == "admin"
    assert role_of(Peer(4005, "eve", frozenset({"users"})), roles) is None
    assert role_of(Peer(os.getuid(), "whoever", frozenset()), roles) == "admin"  # the engine's own user
    methods = {"acknowledge": inspect.signature(lambda self, incident_id, actor: None),
               "incident_timeline": inspect.signature(lambda self, incident_id: None)}
    assert needed("api.call", {"method": "acknowledge"}, methods) == "operator"
    assert needed("api.call", {"method": "incident_timeline"}, methods) == "viewer"
    assert needed("db.backup", {}, methods) == "admin" and needed("some.new.op", {}, methods) == "admin"
    with pytest.raises(ValueError):
        Roles(viewers=["team:noc"])


def test_each_role_through_the_socket_of_a_running_engine(address_base: str) -> None:
    from ispvm_tui.demo import start_demo
    from tests.held_faults import held

    def configure(config: Config) -> Config:
        console = config.console.model_copy(update={"control_group": "users"})
        return config.model_copy(update={"console": console, "roles": Roles(viewers=["daemon"],
                                                                             operators=["group:news"])})

    base = Path(tempfile.mkdtemp(prefix="ispvm-roles-"))
    base.chmod(0o711)  # the peers reach the socket next to the database through it
    db = base / "ispvm.duckdb"
    run = start_demo(held("core-link-cut"), speed=10.0, database=db, address_base=address_base, configure=configure)
    try:
        assert wait_for(lambda: run.engine.snapshot().incidents, 60), "the cut should open an incident"
        incident = run.engine.snapshot().incidents[0].id
        viewer = [USERS_GID]
        operator = [USERS_GID, NEWS_GID]

        assert _as(VIEWER_UID, viewer, db, "whoami", {}, "x")["result"] == {"user": "daemon", "role": "viewer"}
        listed = _as(VIEWER_UID, viewer, db, "incidents.list", {}, "daemon")
        assert listed["ok"] and incident in [i["id"] for i in listed["result"]["incidents"]]
        assert _as(VIEWER_UID, viewer, db, "api.call", {"method": "incident_timeline",
                                                        "kwargs": {"incident_id": incident}}, "daemon")["ok"]
        for op, args in (("incidents.ack", {"id": incident}),
                         ("api.call", {"method": "acknowledge", "kwargs": {"incident_id": incident}})):
            refused = _as(VIEWER_UID, viewer, db, op, args, "daemon")
            assert not refused["ok"] and "needs the operator role; daemon is viewer" in refused["error"]

        assert _as(OPERATOR_UID, operator, db, "whoami", {}, "x")["result"]["role"] == "operator"
        noted = _as(OPERATOR_UID, operator, db, "incidents.note", {"id": incident, "text": "on it"}, "mail")
        assert noted["ok"], noted
        posing = _as(OPERATOR_UID, operator, db, "incidents.note", {"id": incident, "text": "x"}, "alice")
        assert not posing["ok"] and "cannot act as 'alice'" in posing["error"]
        backup = _as(OPERATOR_UID, operator, db, "db.backup", {}, "mail")
        assert not backup["ok"] and "needs the admin role; mail is operator" in backup["error"]

        stranger = _as(NOBODY_UID, [USERS_GID], db, "ping", {}, "uucp")
        assert not stranger["ok"] and "has no role in [roles]" in stranger["error"]

        # The engine's own user is admin, and may name whoever it acts for.
        assert control.request(db, "db.backup", {}, "ops-root")["path"]
        assert run.store.query("SELECT actor FROM audit WHERE action = 'incident.note'") == [("mail",)]
    finally:
        run.stop()
