"""The nats-server side of per-collector users: the ``authorization`` block ``ispvm nats-config`` prints.

Ownership of a subject is only authentication when the server enforces it, so every collector gets
its own user that may publish only ``ispvm.results.<name>.>``, ``ispvm.config.<name>.>`` (its config
reads) and ``ispvm.hb.<name>``, read only its own key of the configuration bucket (a direct get names
the key in the subject, so the permission can), and receive only its own config read requests
(``ispvm.cfgreq.<name>``) and replies on its own inbox prefix. The centre gets its own user for the
stream, the consumer and the bucket. Passwords are never printed: each is a nats-server variable
(``$ISPVM_NATS_POP_A``) named after the secret that holds it, set in the server's environment.

No nats import here: this is text, generated from the config alone.
"""

from __future__ import annotations

import json
import re

from ispvm_tui.config import CollectorDef, Config, Remote

RESULTS_PREFIX = "ispvm.results"  # as link.py: kept here so the generator needs no nats
HEARTBEAT_PREFIX = "ispvm.hb"
CONFIG_PREFIX = "ispvm.config"  # config reads, normalised at the PoP: the same stream as results
REQUEST_PREFIX = "ispvm.cfgreq"  # the centre asking a collector for config reads (plain NATS)


def inbox_prefix(collector: str) -> str:
    """A collector's own reply subjects: nobody else's replies (its configuration) reach it."""
    return f"_INBOX_{collector}"


def variable(secret: str) -> str:
    """The nats-server variable standing for a secret's value: ``nats/pop-a`` -> ``ISPVM_NATS_POP_A``."""
    return "ISPVM_" + re.sub(r"[^A-Za-z0-9]+", "_", secret).strip("_").upper()


def collector_permissions(remote: Remote, name: str) -> dict[str, dict[str, list[str]]]:
    bucket = f"{remote.stream}_collectors"
    return {
        "publish": {"allow": [f"{RESULTS_PREFIX}.{name}.>", f"{CONFIG_PREFIX}.{name}.>", f"{HEARTBEAT_PREFIX}.{name}",
                              f"$JS.API.STREAM.INFO.KV_{bucket}",
                              f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.{name}"]},
        "subscribe": {"allow": [f"{inbox_prefix(name)}.>", f"{REQUEST_PREFIX}.{name}"]},
    }


def centre_permissions(remote: Remote) -> dict[str, dict[str, list[str]]]:
    bucket = f"{remote.stream}_collectors"
    return {
        "publish": {"allow": ["$JS.API.>", f"$JS.ACK.{remote.stream}.>", f"$KV.{bucket}.>", f"{REQUEST_PREFIX}.*"]},
        "subscribe": {"allow": [f"{HEARTBEAT_PREFIX}.*", "_INBOX.>"]},
    }


def _user(user: str, secret: str, permissions: dict[str, dict[str, list[str]]], comment: str) -> list[str]:
    lines = [f"    # {comment}; password: the secret {secret!r}, in the server's environment as "
             f"${variable(secret)}",
             f"    {{user: {json.dumps(user)}, password: ${variable(secret)}, permissions: {{"]
    for kind in ("publish", "subscribe"):
        allow = ", ".join(json.dumps(s) for s in permissions[kind]["allow"])
        lines.append(f"      {kind}: {{allow: [{allow}]}}")
    lines.append("    }}")
    return lines


def authorization_block(cfg: Config) -> tuple[str, list[str]]:
    """(the nats-server ``authorization`` block, problems that keep it from being complete)."""
    remote = cfg.remote
    if remote is None:
        return "", ["the config has no [remote] section"]
    problems: list[str] = []
    lines = ["authorization {", "  users = ["]
    if remote.user is None or remote.password_secret is None:
        problems.append("[remote] needs user and password_secret: the engine's own NATS user")
    else:
        lines += _user(remote.user, remote.password_secret, centre_permissions(remote), "the engine (centre)")
    for col in cfg.collectors:
        if not _has_user(col):
            problems.append(f"[[collectors]] {col.name!r} needs user and password_secret: its own NATS user")
            continue
        assert col.user is not None and col.password_secret is not None
        lines += _user(col.user, col.password_secret, collector_permissions(remote, col.name),
                       f"collector {col.name}")
    lines += ["  ]", "}"]
    users = [remote.user] + [c.user for c in cfg.collectors]
    twice = sorted({u for u in users if u is not None and users.count(u) > 1})
    if twice:
        problems.append(f"NATS users shared: {', '.join(twice)} (each collector and the engine need their own)")
    return "\n".join(lines) + "\n", problems


def _has_user(col: CollectorDef) -> bool:
    return col.user is not None and col.password_secret is not None
