"""Config changes: fingerprints per device and category, versions when they move, and what that tells correlation.

After a poll the Poller asks ``due(device)``; when it is, the device's
collectors read their configuration (``read_config``) and the engine hands the
reads here. Each category's canonical, allow-listed, secret-free JSON
(engine/config_normalise.py) is hashed; every fingerprint is a
``config_checks`` row, and a hash that moved is a new ``config_versions`` row,
an ``events`` row and a ``config.changed.detected`` event. The first
fingerprint of a category is its baseline, not a change.

A fingerprint is only ever compared with the last one from the same source
(the API or SNMP): when a router's API read fails on a loaded host and SNMP's
answers, SNMP's view of its interfaces differs from the API's without anything
having changed. A source's first fingerprint of a category is its own baseline.

A change is known to have happened between the last fingerprint that did not
see it (``since``) and the one that did. Correlation asks ``near(devices,
start)`` for changes whose interval reaches into ``[start - lookback_s,
start]``: those make an incident ``change_related = "possible"``. Since a
change made minutes before an outage would otherwise wait for the next
scheduled fingerprint, a fault's devices are fingerprinted at once
(``request``). Nothing waits for that read: the incident opens on what is
known (a plan held for a read could outlast a short outage and never open),
and a change the read finds is added to it by the next round.

A remote collector's devices (``elsewhere``) are read at their PoP by the collector's own watcher, which
sends the categories here (remote/centre_config.py); a read asked for one of them is handed on to it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import duckdb

from ispvm_tui.collectors.results import ConfigRead
from ispvm_tui.config import ConfigWatch as ConfigWatchSettings
from ispvm_tui.engine import config_normalise
from ispvm_tui.engine.api import ConfigChangeView

EVENT = "config.changed.detected"
Query = Callable[[str, list[Any]], list[dict[str, Any]]]  # Store.query_dicts
RECENT_MAX = 4096  # detected changes kept in memory for correlation (newest); older ones are in the store
SOURCE_RANK = {"api": 0, "snmp": 1}  # the API's view of a category wins over SNMP's
# A read asked of a remote collector may be lost on the way (a plain NATS message): asked again after this long.
ASK_AGAIN_S = 60.0


@dataclass(slots=True)
class _Last:
    """What the next read is compared with. The canonical text itself stays in the store (read back only when
    a change needs its summary): at 1,000 devices x 6 categories it would be tens of MB held for nothing."""

    hash: str
    version: int
    checked_at: float


class ConfigWatcher:
    def __init__(self, settings: ConfigWatchSettings, devices: Iterable[str]) -> None:
        self.settings = settings
        self.devices = set(devices)
        self._last: dict[tuple[str, str, str], _Last] = {}  # (device, category, source)
        self._version: dict[tuple[str, str], int] = {}  # (device, category) -> its newest stored version
        self._next_at: dict[str, float] = {}
        self._requested: dict[str, float] = {}  # device -> when a fault asked for a read
        self._read_at: dict[str, float] = {}  # device -> its last successful read
        self.recent: deque[ConfigChangeView] = deque(maxlen=RECENT_MAX)
        self.reads = 0
        self.changes = 0
        self._elsewhere: set[str] = set()  # devices a remote collector reads
        self._ask: Callable[[list[str]], None] | None = None

    def elsewhere(self, devices: Iterable[str], ask: Callable[[list[str]], None]) -> None:
        """These devices are read by remote collectors: their reads arrive through ``apply`` like any other, and
        a read asked for one of them goes to ``ask`` (no poll of this engine's will follow)."""
        self._elsewhere |= set(devices)
        self.devices |= self._elsewhere
        self._ask = ask

    # ---- state ---------------------------------------------------------------------------------
    def restore(self, query: Query) -> None:
        """Last version per (device, category, source), when it was last checked, and recent changes."""
        rows = query(
            "SELECT v.device, v.category, v.source, v.version, v.hash, coalesce(c.checked, v.taken_at) AS checked "
            "FROM config_versions v LEFT JOIN (SELECT device, category, source, max(ts) AS checked "
            "FROM config_checks GROUP BY ALL) c USING (device, category, source) "
            "QUALIFY row_number() OVER (PARTITION BY v.device, v.category, v.source ORDER BY v.version DESC) = 1",
            [])
        for r in rows:
            self._last[(r["device"], r["category"], r["source"])] = _Last(r["hash"], r["version"], r["checked"])
            key = (r["device"], r["category"])
            self._version[key] = max(self._version.get(key, 0), r["version"])
        for view in reversed(list_changes(query, limit=RECENT_MAX)):
            self.recent.append(view)

    def due(self, device: str, now: float) -> bool:
        """Whether this poll of ``device`` should be followed by a config read."""
        if not self.settings.enabled:
            return False
        if device in self._requested:
            return True
        return now >= self._next_at.get(device, float("-inf"))

    def request(self, devices: Iterable[str], now: float, since: float, *, forced: bool = False) -> list[str]:
        """A fault since ``since`` near these devices: read their config at their next poll, unless it was read
        after the fault began. The ones newly asked for (``forced``: asked by hand, whatever the settings)."""
        if not self.settings.enabled or not (forced or self.settings.read_on_fault):
            return []
        new = [d for d in devices if d in self.devices and self._askable(d, now)
               and self._read_at.get(d, float("-inf")) < since]
        for d in new:
            self._requested[d] = now
        away = [d for d in new if d in self._elsewhere]
        if away and self._ask is not None:
            self._ask(away)
        return new

    def _askable(self, device: str, now: float) -> bool:
        asked = self._requested.get(device)
        return asked is None or (device in self._elsewhere and now - asked > ASK_AGAIN_S)

    def failed(self, device: str, now: float) -> None:
        """The device did not answer its config read: nothing to wait for; tried again next interval."""
        self._requested.pop(device, None)
        self._next_at[device] = now + self.settings.interval_s

    # ---- a read came in ------------------------------------------------------------------------
    def categories(self, reads: list[ConfigRead]) -> dict[str, tuple[str, str]]:
        """category -> (canonical JSON, source) from the reads of one device; the API's wins over SNMP's."""
        out: dict[str, tuple[str, str]] = {}
        for read in sorted((r for r in reads if r.ok), key=lambda r: SOURCE_RANK.get(r.collector, 9)):
            for category, canonical in config_normalise.normalise(read.menus).items():
                out.setdefault(category, (canonical, read.collector))
        return out

    def apply(self, device: str, categories: dict[str, tuple[str, str]], now: float,
              con: duckdb.DuckDBPyConnection) -> list[ConfigChangeView]:
        """Write this read's checks and new versions (inside the caller's transaction); the changes seen.

        Memory is updated by ``commit`` once the transaction has committed.
        """
        changes: list[ConfigChangeView] = []
        checks: list[list[Any]] = []
        for category, (canonical, source) in sorted(categories.items()):
            digest = config_normalise.fingerprint(canonical)
            last = self._last.get((device, category, source))
            changed = last is not None and last.hash != digest
            checks.append([now, device, category, digest, changed, source])
            if last is not None and not changed:
                continue
            version = self._version.get((device, category), 0) + 1
            old = None if last is None else con.execute(
                "SELECT body::VARCHAR FROM config_versions WHERE device = ? AND category = ? AND version = ?",
                [device, category, last.version]).fetchone()
            text = config_normalise.summary(category, old[0] if old else None, canonical)
            con.execute("INSERT INTO config_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [device, category, version, now, digest, canonical, text, source])
            if last is None:
                continue  # a baseline, not a change
            view = ConfigChangeView(device=device, category=category, detected_at=now, version=version,
                                    old_hash=last.hash, new_hash=digest, summary=text, since=last.checked_at)
            changes.append(view)
            con.execute("INSERT INTO events VALUES (?, ?, 'info', ?, ?, ?)",
                        [now, EVENT, device, f"{device}:config:{category}", f"{device} {text}"])
        if checks:
            con.executemany("INSERT INTO config_checks VALUES (?, ?, ?, ?, ?, ?)", checks)
        return changes

    def commit(self, device: str, categories: dict[str, tuple[str, str]], changes: list[ConfigChangeView],
               now: float) -> None:
        for category, (canonical, source) in categories.items():
            digest = config_normalise.fingerprint(canonical)
            last = self._last.get((device, category, source))
            if last is None or last.hash != digest:
                version = self._version.get((device, category), 0) + 1
                self._version[(device, category)] = version
                self._last[(device, category, source)] = _Last(digest, version, now)
            else:
                last.checked_at = now
        self.recent.extend(changes)
        self.changes += len(changes)
        self.taken(device, now)

    def taken(self, device: str, now: float) -> None:
        """A read of ``device`` is done (stored here, or at a collector queued for the centre): the next one is
        due after interval_s."""
        self.reads += 1
        self._requested.pop(device, None)
        self._read_at[device] = now
        self._next_at[device] = now + self.settings.interval_s

    def schedule(self, device: str, at: float) -> None:
        self._next_at[device] = at

    # ---- correlation ---------------------------------------------------------------------------
    def near(self, devices: Iterable[str], start: float) -> list[ConfigChangeView]:
        """Changes on these devices that may have happened within lookback_s before ``start`` (newest first).

        A change happened after ``since`` and at the latest at ``detected_at``; it counts when that interval
        reaches into [start - lookback_s, start]. One read after the start (a fault's own read) still counts:
        the change may well predate the fault, which is why the label says "possible".
        """
        wanted = set(devices)
        lo = start - self.settings.lookback_s
        out = [c for c in self.recent if c.device in wanted and c.detected_at >= lo
               and (c.since is None or c.since <= start)]
        return sorted(out, key=lambda c: c.detected_at, reverse=True)


def list_changes(query: Query, *, device: str | None = None,
                 limit: int = 200) -> list[ConfigChangeView]:
    """Detected changes, newest first: each version after its source's first, paired with that source's
    version before it, with the check before it (``since``)."""
    rows = query(
        "WITH paired AS (SELECT *, lag(hash) OVER w AS old_hash FROM config_versions "
        " WHERE (? IS NULL OR device = ?) WINDOW w AS (PARTITION BY device, category, source ORDER BY version)) "
        "SELECT v.device, v.category, v.version, v.taken_at, v.hash, v.summary, v.old_hash, "
        "(SELECT max(c.ts) FROM config_checks c WHERE c.device = v.device AND c.category = v.category "
        " AND c.source = v.source AND c.ts < v.taken_at) AS since "
        "FROM paired v WHERE v.old_hash IS NOT NULL ORDER BY v.taken_at DESC, v.device, v.category LIMIT ?",
        [device, device, limit])
    return [ConfigChangeView(device=r["device"], category=r["category"], detected_at=r["taken_at"],
                             version=r["version"], old_hash=r["old_hash"], new_hash=r["hash"],
                             summary=r["summary"] or "", since=r["since"]) for r in rows]


def diff(query: Query, device: str, category: str,
         old_version: int | None = None, new_version: int | None = None) -> list[str]:
    """A readable diff between two stored versions (default: the newest and the one before it from the same
    source). ValueError names what is missing."""
    rows = query("SELECT version, source, body::VARCHAR AS body FROM config_versions WHERE device = ? AND "
                 "category = ? ORDER BY version", [device, category])
    versions = {r["version"]: r["body"] for r in rows}
    if not versions:
        raise ValueError(f"no stored configuration for {device} {category}")
    new = new_version if new_version is not None else max(versions)
    if old_version is None:
        source = next((r["source"] for r in rows if r["version"] == new), None)
        older = [r["version"] for r in rows if r["source"] == source and r["version"] < new]
        old = max(older) if older else new - 1
    else:
        old = old_version
    for v in (old, new):
        if v not in versions:
            have = ", ".join(str(k) for k in versions)
            raise ValueError(f"{device} {category} has no version {v} (stored: {have})")
    return config_normalise.diff_lines(versions[old], versions[new])


async def normalise_off_loop(watcher: ConfigWatcher, reads: list[ConfigRead]) -> dict[str, tuple[str, str]]:
    """Normalising a whole configuration is pure CPU: off the engine's loop."""
    return await asyncio.to_thread(watcher.categories, reads)

