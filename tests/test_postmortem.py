"""``ispvm export postmortem ID``: a real incident (the lab's core fibre cut, seen by the engine over the
RouterOS API), acknowledged and noted through the CLI, written up through the running engine and then off
the database file, the same."""

from __future__ import annotations

from pathlib import Path

from tests.test_incidents_cli import ispvm
from tests.waiting import wait_for

LINK = "CORE1:ether2--POPA-AGG:ether1"


def _body(markdown: str) -> list[str]:
    """Everything but the line saying when it was written."""
    return [line for line in markdown.splitlines() if "written from ispvm's records at" not in line]


def test_postmortem_through_the_engine_then_off_the_file(tmp_path: Path, address_base: str) -> None:
    from ispvm_tui.demo import start_demo
    from tests.held_faults import held

    db = tmp_path / "ispvm.duckdb"
    run = start_demo(held("core-link-cut"), speed=10.0, database=db, address_base=address_base)
    try:
        assert wait_for(lambda: run.engine.snapshot().incidents, 60), "the cut should open an incident"
        incident = run.engine.snapshot().incidents[0]
        short = incident.id[:8]
        assert ispvm("incidents", "ack", short, "--database", db, "--actor", "oncall-alice").returncode == 0
        noted = ispvm("incidents", "note", short, "splice crew | ETA 40 min", "--database", db, "--actor", "bob")
        assert noted.returncode == 0, noted.stderr
        assert wait_for(lambda: any(w.json.get("event_type") == "incident.acked" for w in run.sink.received()), 60)

        live = ispvm("export", "postmortem", short, "--database", db)
        assert live.returncode == 0, live.stderr
        text = live.stdout
        assert text.startswith(f"# Postmortem: {incident.title}\n")
        assert f"Incident `{incident.id}`" in text
        assert f"- link `{LINK}`: confidence " in text
        assert "| Acknowledged | " in text and " by oncall-alice, " in text
        assert "| Closed | not yet: open for " in text
        for section in ("## Root cause", "## Evidence", "## Impact", "## Alerts (", "## Timeline", "## Notes",
                        "## Notifications"):
            assert f"\n{section}" in text, section
        assert "- Sites (1): POP-A" in text and "POPA-AGG" in text
        assert "| suppressed | major | device_unreachable | `POPA-AGG` |" in text
        assert "| incident.acked | oncall-alice |" in text
        assert "splice crew \\| ETA 40 min" in text  # a pipe in a note cannot break the timeline's table
        assert "- " in text.split("## Notes")[1] and ", bob: splice crew | ETA 40 min" in text
        assert "- **lab-sink**" in text and "incident.opened queued " in text and ": delivered after " in text
        missing = ispvm("export", "postmortem", "000000", "--database", db)
        assert missing.returncode == 2 and "no incident" in missing.stderr
    finally:
        run.stop()

    out = tmp_path / "pm.md"
    offline = ispvm("export", "postmortem", short, "--database", db, "--output", out)
    assert offline.returncode == 0, offline.stderr
    assert f"written to {out}" in offline.stderr
    written = out.read_text()
    assert _body(written)[:3] == _body(text)[:3]
    assert "## Timeline" in written and "| incident.acked | oncall-alice |" in written
    again = ispvm("export", "postmortem", short, "--database", db, "--output", out)
    assert again.returncode == 2 and "exists" in again.stderr
