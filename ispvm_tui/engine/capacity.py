"""When does a link fill up? (``ispvm report capacity``)

Per configured link, one figure a day: the 95th percentile of its 5-minute average rates (the larger of
in and out, and of its two ends, which see the same traffic), the figure transit is billed on, from the
5-minute rollups (``interface_rollup_5m``); for days those no longer hold (``rollup_5m_days``), the 95th
percentile of the hourly p95s (``interface_rollup_1h``), which reads a little high. As a share of the
link's speed: ``[[links]].speed_mbps``, else the speed its ends last reported.

The trend is an ordinary least-squares line through the last ``[reports].capacity_days`` of those daily
figures (at least 7 days with data): its slope, r², and the day the line crosses
``[reports].capacity_threshold_pct``: already (a recent day was over it), a date ahead, or none (flat or
falling). Days are UTC days.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ispvm_tui.config import Config

Query = Callable[[str, list[Any]], list[dict[str, Any]]]
DAY_S = 86400.0
MIN_DAYS = 7

_DAILY_5M = ("SELECT floor(bucket / 86400) AS day, quantile_cont(greatest(rx_bps_avg, tx_bps_avg), 0.95) AS p95 "
             "FROM interface_rollup_5m WHERE device = ? AND interface = ? AND bucket >= ? AND bucket < ? "
             "AND (rx_bps_avg IS NOT NULL OR tx_bps_avg IS NOT NULL) GROUP BY day")
_DAILY_1H = ("SELECT floor(bucket / 86400) AS day, quantile_cont(greatest(rx_bps_p95, tx_bps_p95), 0.95) AS p95 "
             "FROM interface_rollup_1h WHERE device = ? AND interface = ? AND bucket >= ? AND bucket < ? "
             "AND (rx_bps_p95 IS NOT NULL OR tx_bps_p95 IS NOT NULL) GROUP BY day")
_SPEED = ("SELECT speed_bps FROM interface_samples WHERE device = ? AND interface = ? AND speed_bps > 0 "
          "ORDER BY ts DESC LIMIT 1")


def _day(day: float) -> str:
    return datetime.fromtimestamp(day * DAY_S, UTC).strftime("%Y-%m-%d")


def daily_p95(query: Query, ends: list[str], start: float, end: float) -> dict[int, float]:
    """bit/s per UTC day: 5-minute rollups first, hourly ones for the days those lack; the larger end."""
    out: dict[int, float] = {}
    for sql in (_DAILY_5M, _DAILY_1H):
        found: dict[int, float] = {}
        for entity in ends:
            device, _, interface = entity.partition(":")
            for r in query(sql, [device, interface, start, end]):
                if r["p95"] is not None:
                    day = int(r["day"])
                    found[day] = max(found.get(day, 0.0), float(r["p95"]))
        for day, value in found.items():
            out.setdefault(day, value)  # the 5-minute figure wins where both exist
    return out


def _speed_bps(query: Query, link: Any) -> float | None:
    if link.speed_mbps:
        return link.speed_mbps * 1e6
    speeds = []
    for entity in (link.a, link.b):
        device, _, interface = entity.partition(":")
        rows = query(_SPEED, [device, interface])
        if rows:
            speeds.append(float(rows[0]["speed_bps"]))
    return min(speeds) if speeds else None


def trend(days: dict[int, float], threshold_pct: float) -> dict[str, Any]:
    """The least-squares line through (day, %) and where it crosses the threshold."""
    xs = sorted(days)
    ys = [days[x] for x in xs]
    if len(xs) < MIN_DAYS:
        return {"fit": None, "crosses": None, "why": f"{len(xs)} days with data, {MIN_DAYS} needed"}
    if len(set(ys)) == 1:
        slope, intercept, r2 = 0.0, ys[0], 1.0
    else:
        slope, intercept = statistics.linear_regression(xs, ys)
        r2 = statistics.correlation(xs, ys) ** 2
    fit = {"method": "least squares", "days": len(xs), "slope_pct_per_day": round(slope, 4),
           "intercept_pct": round(intercept + slope * xs[0], 3), "from_day": _day(xs[0]), "r2": round(r2, 3)}
    recent = xs[-MIN_DAYS:]
    if any(days[x] >= threshold_pct for x in recent):
        crosses, why = "already", f"over {threshold_pct:g} % on a day of the last {MIN_DAYS}"
    elif slope > 0:
        at = (threshold_pct - intercept) / slope
        crosses = _day(math.ceil(at)) if at < 1e6 else None
        why = f"in {math.ceil(at) - xs[-1]} days at the fitted rate" if crosses else "rising too slowly to say"
    else:
        crosses, why = None, "not rising"
    return {"fit": fit, "crosses": crosses, "why": why}


def report(query: Query, config: Config, now: float) -> dict[str, Any]:
    threshold, span = config.reports.capacity_threshold_pct, config.reports.capacity_days
    start = (math.floor(now / DAY_S) - span) * DAY_S  # whole UTC days, the current (partial) one excluded
    end = math.floor(now / DAY_S) * DAY_S
    rows = []
    for link in config.links:
        per_day = daily_p95(query, [link.a, link.b], start, end)
        speed = _speed_bps(query, link)
        row: dict[str, Any] = {"link": link.id, "speed_mbps": round(speed / 1e6, 1) if speed else None,
                               "days": len(per_day), "latest_p95_mbps": None, "latest_p95_pct": None,
                               "max_p95_pct": None, "threshold_pct": threshold}
        if per_day:
            last = max(per_day)
            row["latest_p95_mbps"] = round(per_day[last] / 1e6, 3)
        if not speed:
            row.update(fit=None, crosses=None, why="no speed known: set [[links]].speed_mbps")
        else:
            pct = {d: 100.0 * v / speed for d, v in per_day.items()}
            if pct:
                row["latest_p95_pct"] = round(pct[max(pct)], 2)
                row["max_p95_pct"] = round(max(pct.values()), 2)
            row.update(trend(pct, threshold))
        rows.append(row)
    return {"from": start, "to": end, "threshold_pct": threshold, "days": span, "links": rows}
