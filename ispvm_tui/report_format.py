"""``ispvm report``'s output: aligned text for a terminal, Markdown for a ticket or wiki, CSV for a
spreadsheet (one header, a ``section`` column saying which table a row belongs to), JSON as computed."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

Table = tuple[str, list[str], list[list[str]]]  # title, headers, rows


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}".rstrip("0").rstrip(".")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def moment(ts: float, tz: str) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")


def sla_tables(rep: dict[str, Any]) -> list[Table]:
    avail = [[r["kind"], r["name"], _pct(r["availability_pct"]), _pct(r["target_pct"]),
              "BREACH" if r["breach"] else "ok", duration(r["unplanned_s"]), duration(r["planned_s"]),
              str(r["outages"]), duration(r["longest_s"])] for r in rep["rows"]]
    incidents = [[i["severity"], str(i["incidents"]), str(i["in_maintenance"]), str(i["acknowledged"]),
                  duration(i["mtta_s"]), duration(i["mtta_median_s"]), str(i["closed"]), duration(i["mttr_s"]),
                  duration(i["mttr_median_s"])] for i in rep["incidents"]]
    return [("Availability", ["KIND", "NAME", "AVAIL %", "TARGET %", "SLA", "DOWN", "PLANNED", "OUTAGES",
                              "LONGEST"], avail),
            ("Incidents opened", ["SEVERITY", "OPENED", "IN MAINT", "ACKED", "MTTA", "MTTA p50", "CLOSED", "MTTR",
                                  "MTTR p50"], incidents)]


def capacity_tables(rep: dict[str, Any]) -> list[Table]:
    rows = []
    for r in rep["links"]:
        fit = r.get("fit")
        rows.append([r["link"], "-" if r["speed_mbps"] is None else f"{r['speed_mbps']:g}", str(r["days"]),
                     _pct(r["latest_p95_pct"]), _pct(r["max_p95_pct"]),
                     "-" if not fit else f"{fit['slope_pct_per_day']:+.3f}", "-" if not fit else f"{fit['r2']:.2f}",
                     r["crosses"] or "-", r["why"]])
    return [(f"Links: daily p95 utilisation, crossing {rep['threshold_pct']:g} %",
             ["LINK", "MBPS", "DAYS", "P95 %", "MAX %", "%/DAY", "R2", "CROSSES", "WHY"], rows)]


def text(tables: list[Table], heading: list[str]) -> str:
    out = [*heading]
    for title, headers, rows in tables:
        out += ["", f"{title}:"]
        if not rows:
            out.append("  (none)")
            continue
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        for row in [headers, *rows]:
            out.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(out) + "\n"


def markdown(tables: list[Table], heading: list[str]) -> str:
    out = [f"# {heading[0]}", "", *heading[1:]]
    for title, headers, rows in tables:
        out += ["", f"## {title}", ""]
        if not rows:
            out.append("(none)")
            continue
        out += ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def csv_text(sections: dict[str, list[dict[str, Any]]]) -> str:
    """Every section's rows under one header (the union of their fields), each row naming its section."""
    fields = ["section"]
    for rows in sections.values():
        for row in rows:
            fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fields, lineterminator="\n")
    writer.writeheader()
    for name, rows in sections.items():
        for row in rows:
            writer.writerow({"section": name, **{k: ("" if v is None else v) for k, v in row.items()
                                                 if not isinstance(v, dict)}})
    return buf.getvalue()
