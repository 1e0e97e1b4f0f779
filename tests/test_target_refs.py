"""Far-side keys (a ticket's id per target and incident) survive closing and reopening the database."""

from __future__ import annotations

from pathlib import Path

from ispvm_tui.engine.store import Store
from ispvm_tui.engine.target_refs import StoreRefs


async def test_a_stored_key_is_read_back_after_a_restart_and_can_be_replaced(tmp_path: Path) -> None:
    db = tmp_path / "refs.duckdb"
    with Store(db) as store:
        refs = StoreRefs(store)
        assert await refs.get("jira", "inc-1") is None
        await refs.put("jira", "inc-1", "NOC-12")
        await refs.put("servicenow", "inc-1", "a" * 32)
    with Store(db) as store:
        refs = StoreRefs(store)  # a new process: nothing cached
        assert await refs.get("jira", "inc-1") == "NOC-12"
        assert await refs.get("servicenow", "inc-1") == "a" * 32
        assert await refs.get("jira", "inc-2") is None
        await refs.put("jira", "inc-1", "NOC-13")
    with Store(db) as store:
        assert await StoreRefs(store).get("jira", "inc-1") == "NOC-13"
