"""Far-side keys per target, kept in the database (table ``target_refs``, migration 7).

A Jira issue key, a ServiceNow sys_id or an e-mail thread's first Message-ID
must survive a restart: without it the next event of the incident would
create a second issue. Reads run off the event loop; writes go through the
store's writer thread like every other change.
"""

from __future__ import annotations

import asyncio
import time

import duckdb

from ispvm_tui.engine.store import Store

UPSERT_SQL = """
INSERT INTO target_refs (target, incident_id, ref, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (target, incident_id) DO UPDATE SET ref = excluded.ref, updated_at = excluded.updated_at
"""


class StoreRefs:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[tuple[str, str], str] = {}  # refs never change once written, except by put

    async def get(self, target: str, incident_id: str) -> str | None:
        key = (target, incident_id)
        if key in self._cache:
            return self._cache[key]
        rows = await asyncio.to_thread(
            self.store.query, "SELECT ref FROM target_refs WHERE target = ? AND incident_id = ?", [target, incident_id])
        if rows:
            self._cache[key] = rows[0][0]
            if len(self._cache) > 50_000:  # bounded: old incidents' keys are read again from the file
                self._cache.pop(next(iter(self._cache)))
            return rows[0][0]
        return None

    async def put(self, target: str, incident_id: str, ref: str) -> None:
        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(UPSERT_SQL, [target, incident_id, ref, time.time()])

        await asyncio.wrap_future(self.store.transaction(write))
        self._cache[(target, incident_id)] = ref
