"""What a person reads about an incident: one headline and a few short lines.

Built from the webhook payload's ``incident`` object (engine/webhooks.py
``incident_object``), the same dict every target receives in a ``Notice``, so
every channel tells the same story. Plain text only: each target escapes and
formats it for its own medium (HTML for Telegram and e-mail, mrkdwn for
Slack, ADF for Jira).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from ispvm_tui.engine.targets import Notice
from ispvm_tui.engine.webhooks import TEST_EVENT

SEVERITY_MARK = {"critical": "🔴", "major": "🟠", "minor": "🟡", "warning": "🔵", "info": "⚪"}
VERB = {
    "incident.opened": "OPENED",
    "incident.updated": "UPDATED",
    "incident.acked": "ACKED",
    "incident.closed": "RESOLVED",
    "ispvm.test": "TEST",
}


def test_notice(target: str, now: float, base_url: str = "") -> Notice:
    """What ``ispvm notify test`` sends: an incident-shaped message that says it is a test."""
    iso = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    incident = {
        "id": "ispvm-test", "title": f"Test notification to {target}: no action needed", "status": "open",
        "severity": "info", "starts_at": iso, "ends_at": None,
        "url": f"{base_url.rstrip('/')}/" if base_url else "", "ack": {"acked_by": None, "acked_at": None},
        "root_causes": [], "evidence_top": ["sent by `ispvm notify test` to check this target end to end"],
        "impact": {"sites_affected": 0, "devices_affected": 0, "services_affected": 0,
                   "estimated_subscribers_affected": None}, "labels": {},
    }
    return Notice(str(uuid.uuid4()), target, "ispvm-test", TEST_EVENT, incident, now, 1, 1)


def headline(notice: Notice) -> str:
    """``🔴 CRITICAL OPENED: Link down: CORE1:ether2 -- POPA-AGG:ether1`` (severity, event, title)."""
    inc = notice.incident
    sev = str(inc.get("severity", "info"))
    mark = "✅" if notice.event_type == "incident.closed" else SEVERITY_MARK.get(sev, "⚪")
    return f"{mark} {sev.upper()} {VERB.get(notice.event_type, notice.event_type)}: {inc.get('title', '')}"


def when(iso: str | None) -> str:
    """RFC 3339 ``2026-02-05T11:59:30Z`` as ``2026-02-05 11:59:30 UTC``; a person reads it faster."""
    if not iso:
        return "-"
    try:
        return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return iso


def root_cause_lines(inc: dict[str, Any]) -> list[str]:
    out = []
    for rc in inc.get("root_causes") or []:
        name = rc.get("name") or rc.get("entity_id", "?")
        conf = rc.get("confidence")
        pct = f" ({round(float(conf) * 100)} % confidence)" if isinstance(conf, int | float) else ""
        out.append(f"{rc.get('entity_type', '?')} {name}{pct}")
    return out


def impact_line(inc: dict[str, Any]) -> str:
    imp = inc.get("impact") or {}
    parts = [f"{imp.get('sites_affected', 0)} site(s)", f"{imp.get('devices_affected', 0)} device(s)",
             f"{imp.get('services_affected', 0)} service(s)"]
    subs = imp.get("estimated_subscribers_affected")
    if subs:
        parts.append(f"~{subs} subscribers")
    return ", ".join(parts)


def status_line(notice: Notice) -> str:
    inc = notice.incident
    line = f"Started {when(inc.get('starts_at'))}"
    if inc.get("ends_at"):
        line += f", resolved {when(inc.get('ends_at'))}"
    ack = inc.get("ack") or {}
    if ack.get("acked_by"):
        line += f", acknowledged by {ack['acked_by']} at {when(ack.get('acked_at'))}"
    return line


def sections(notice: Notice) -> list[tuple[str, list[str]]]:
    """Titled groups of lines, in reading order; a target picks how to lay them out."""
    inc = notice.incident
    out: list[tuple[str, list[str]]] = [("Status", [status_line(notice)])]
    if rcs := root_cause_lines(inc):
        out.append(("Root cause", rcs))
    out.append(("Impact", [impact_line(inc)]))
    if ev := [str(e) for e in inc.get("evidence_top") or []]:
        out.append(("Evidence", ev))
    if notice.superseded:
        out.append(("Note", ["Resent by hand: a later update of this incident was already delivered."]))
    return out


def plain_text(notice: Notice, *, limit: int | None = None) -> str:
    """Headline, sections and the link, as plain text; cut to ``limit`` characters if given."""
    lines = [headline(notice), ""]
    for title, body in sections(notice):
        if len(body) == 1:
            lines.append(f"{title}: {body[0]}")
        else:
            lines.append(f"{title}:")
            lines.extend(f"  - {b}" for b in body)
    if url := notice.incident.get("url"):
        lines += ["", f"Open: {url}"]
    text = "\n".join(lines)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def labels(inc: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (inc.get("labels") or {}).items()}
