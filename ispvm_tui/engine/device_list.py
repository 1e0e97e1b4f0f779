"""``ispvm devices list``: every device's state and its last known figures, from the running engine or the file.

A device that stops answering keeps what it said last (version, uptime, CPU), flagged ``stale`` with the time
it last answered, instead of losing it: at 3 a.m. "what was it doing before it went dark" is the question.
The engine answers from its snapshot; with no engine the same rows come from the database (the newest
poll per device, the newest answering poll's health row, the firing unreachable alerts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from ispvm_tui.engine.api import DeviceView

SAME_POLL_S = 2.0
QueryDicts = Callable[[str, list[Any]], list[dict[str, Any]]]


def from_views(devices: Iterable[DeviceView]) -> list[dict[str, Any]]:
    """The engine's own rows: its snapshot's devices."""
    return [{**dataclasses.asdict(d), "stale": d.stale} for d in devices]


def from_store(query: QueryDicts, inventory: list[dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """The same rows read off the database, for the devices it has polled (or ``inventory``'s, each a dict
    with name, site, role, address, when a config is given)."""
    # A device's newest poll: its collectors' rows, each stamped when that collector started (within a
    # second or two of each other; polls of one device are an interval apart).
    polls = {r["device"]: r for r in query(
        "SELECT device, max(ts) AS ts, bool_or(ok) AS ok, "
        "string_agg(CASE WHEN NOT ok THEN collector || ': ' || coalesce(error, '?') END, '; ' ORDER BY collector) "
        "AS error FROM (SELECT *, max(ts) OVER (PARTITION BY device) AS newest FROM poll_log) "
        f"WHERE ts > newest - {SAME_POLL_S} GROUP BY device", [])}
    answered = {r["device"]: r["ts"] for r in query(
        "SELECT device, max(ts) AS ts FROM poll_log WHERE ok GROUP BY device", [])}
    health = {r["device"]: r for r in query(
        "SELECT device, arg_max(version, ts) AS version, arg_max(uptime_s, ts) AS uptime_s, "
        "arg_max(cpu_load, ts) AS cpu_load FROM health_samples GROUP BY device", [])}
    down = {r["entity_id"] for r in query(
        "SELECT entity_id FROM alerts WHERE state = 'firing' AND rule = 'device_unreachable'", [])}
    known = inventory if inventory is not None else [
        {"name": name, "site": "", "role": "", "address": ""} for name in sorted(polls)]
    rows = []
    for device in known:
        name = device["name"]
        poll, facts = polls.get(name), health.get(name, {})
        last_ok = answered.get(name)
        state = ("down" if name in down else "unknown" if poll is None else "up" if poll["ok"] else "degraded")
        rows.append({**device, "state": state,
                     # As the engine's DeviceView.stale: the newest poll got no answer from any collector (its
                     # rows' stamps differ by collector, so comparing times would call a half answer stale).
                     "stale": last_ok is not None and poll is not None and not poll["ok"],
                     "last_poll_at": poll["ts"] if poll else None, "answered_at": last_ok,
                     "version": facts.get("version"), "uptime_s": facts.get("uptime_s"),
                     "cpu_load": facts.get("cpu_load"), "interfaces_up": None, "interfaces_total": None,
                     "last_error": None if poll is None or poll["ok"] else poll["error"]})
    return rows
