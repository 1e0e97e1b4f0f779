"""How long one problem may wait for fresh answers before its incident opens anyway.

A held plan (see correlator.py) waits for re-polls near a failure. Each piece of
news starts a new wait, so a problem that keeps producing news (a link flapping
faster than the answers come, or an outage still spreading through a large
fleet) would wait for as long as the news keeps coming. The wait is therefore
counted per problem, not per piece of news.

A problem is not one plan key: while an outage spreads its roots move (the
region takes in the routers it hung off, side-by-side regions merge) and the
key changes every round. A plan continues the wait of every earlier held plan
it shares an alert with, and of its own key; the earliest start wins, so a
spreading outage opens ``hold_max_s`` after it was first held, however often
it changed shape meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

from ispvm_tui.engine.correlator import Plan, human_duration


@dataclass(slots=True)
class _Streak:
    first: float  # held since
    last: float  # last round it was held
    alerts: frozenset[str]


class HoldBound:
    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._streaks: dict[str, _Streak] = {}  # plan key -> its wait
        self._by_alert: dict[str, str] = {}  # alert id -> key of the streak that holds it

    def __len__(self) -> int:
        return len(self._streaks)

    def apply(self, plans: list[Plan], now: float) -> None:
        """Release (``held = False``, with a line of evidence) the plans whose problem waited past the limit."""
        for key, streak in list(self._streaks.items()):
            if now - streak.last > self.limit_s:
                self._drop(key)
        for plan in plans:
            if not plan.held:
                self._drop(plan.key)
                continue
            alerts = frozenset(plan.alert_ids)
            related = {plan.key} | {self._by_alert[a] for a in alerts if a in self._by_alert}
            first = min((self._streaks[k].first for k in related if k in self._streaks), default=now)
            for k in related:
                self._drop(k)
            self._streaks[plan.key] = _Streak(first, now, alerts)
            for a in alerts:
                self._by_alert[a] = plan.key
            if now - first > self.limit_s:
                plan.held = False
                plan.evidence.append(f"decided after waiting {human_duration(now - first)} for fresh answers "
                                     "while the state kept changing")

    def _drop(self, key: str) -> None:
        streak = self._streaks.pop(key, None)
        if streak is None:
            return
        for a in streak.alerts:
            if self._by_alert.get(a) == key:
                del self._by_alert[a]
