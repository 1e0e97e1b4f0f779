"""Who may do what through the control socket: viewer, operator, admin ([roles]).

The socket already proves who a peer is (SO_PEERCRED: its uid, and its groups from /proc). With ``[roles]``
set, that identity gets the highest role an entry names it in (``"alice"`` or ``"user:alice"``, or
``"group:noc"``), and every request is checked against what its op needs:

* **viewer**: reading — lists, shows, snapshots and events (an attached console), timelines, history,
  reports, the audit log, health;
* **operator**: acting on the network's state — acknowledge, close, note and assign incidents, the calendar,
  resends, config captures, diagnostics from a router;
* **admin**: the database itself (backups), and any op not classified here (refused unless admin: a new op
  is closed until someone decides).

An ``api.call`` (an attached console's EngineAPI call) needs operator when the method takes an actor (every
method that changes something does, to audit it), viewer otherwise. A peer that no entry names is refused
whatever it asks. The engine's own user is always admin. And the actor recorded is the peer's own user
name: with roles set, an operator cannot act, or be audited, as someone else (a request naming another
actor is refused).

Without ``[roles]`` every peer the socket admits (the engine's user, ``[console].control_group``) is admin,
and the actor is what the request says: one team, one trust level, as before.
"""

from __future__ import annotations

import grp
import inspect
import os
import pwd
from dataclasses import dataclass
from typing import Any, Literal

from ispvm_tui.engine import calendar

Role = Literal["viewer", "operator", "admin"]
RANK: dict[str, int] = {"viewer": 1, "operator": 2, "admin": 3}

VIEWER_OPS = frozenset({
    "ping", "health", "config.changes", "config.diff", "incidents.list", "incidents.show", "incidents.postmortem",
    "audit.list", "audit.verify", "audit.routers", "report.sla", "report.capacity", "api.snapshot", "api.events",
    "devices.list",
    *calendar.READ_OPS})
OPERATOR_OPS = frozenset({
    "deliveries.resend", "deliveries.resend_all_dead", "config.capture", "incidents.ack", "incidents.close",
    "incidents.note", "incidents.assign", "diag.run", *calendar.WINDOW_OPS, *calendar.CHANGE_OPS})


@dataclass(frozen=True)
class Peer:
    uid: int
    user: str
    groups: frozenset[str]


def peer(pid: int, uid: int, gid: int) -> Peer:
    from ispvm_tui.engine.control import peer_groups

    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid{uid}"
    names = set()
    for g in peer_groups(pid, uid, gid):
        try:
            names.add(grp.getgrgid(g).gr_name)
        except KeyError:
            names.add(str(g))
    return Peer(uid, user, frozenset(names))


def role_of(who: Peer, roles: Any) -> Role | None:
    """The highest role an entry of ``roles`` (config.Roles) names ``who`` in; None when none does."""
    if who.uid == os.getuid():
        return "admin"
    best: Role | None = None
    for role in ("viewer", "operator", "admin"):
        for entry in getattr(roles, f"{role}s"):
            kind, _, name = entry.rpartition(":")
            if (kind in ("", "user") and name == who.user) or (kind == "group" and name in who.groups):
                best = role  # type: ignore[assignment]
    return best


def needed(op: str, args: dict[str, Any], methods: dict[str, inspect.Signature]) -> Role:
    if op == "api.call":
        signature = methods.get(args.get("method"))  # type: ignore[arg-type]
        return "operator" if signature is None or "actor" in signature.parameters else "viewer"
    if op in VIEWER_OPS:
        return "viewer"
    if op in OPERATOR_OPS:
        return "operator"
    return "admin"


def check(op: str, args: dict[str, Any], actor: Any, who: Peer, roles: Any,
          methods: dict[str, inspect.Signature]) -> tuple[str | None, str | None]:
    """(refusal, actor to record): a refusal names the role needed and the one held."""
    role = role_of(who, roles)
    if role is None:
        return f"refused: {who.user} has no role in [roles] (viewer, operator or admin)", None
    want = needed(op, args, methods)
    if RANK[role] < RANK[want]:
        return f"refused: {op} needs the {want} role; {who.user} is {role}", None
    if who.uid != os.getuid() and actor not in (None, who.user) and RANK[want] >= RANK["operator"]:
        return (f"refused: {who.user} cannot act as {actor!r}: with [roles] set, actions are recorded as the "
                "OS user who takes them"), None
    return None, who.user if who.uid != os.getuid() else None
