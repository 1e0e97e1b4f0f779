"""What the console's Home shows beside the incidents: each service's state, maintenance in force, and the
health of whatever polls (this host's poller and the remote collectors).

Pure functions of what the snapshot already holds, so they cost a few microseconds per service and never
read the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from ispvm_tui.config import Config
from ispvm_tui.engine.api import CollectorView, DeviceView, EntityState, LinkView, ServiceView, SiteView
from ispvm_tui.engine.maintenance_windows import Window, entity_devices


def combine(states: Sequence[EntityState]) -> EntityState:
    """A whole made of parts: down when every part is down, degraded when some are, unknown when nothing is
    known, else up. Parts that are unknown beside known ones do not make it degraded."""
    known = [s for s in states if s != "unknown"]
    if not known:
        return "unknown"
    if all(s == "down" for s in known):
        return "down"
    if any(s in ("down", "degraded") for s in known):
        return "degraded"
    return "up"


def window_over(windows: Iterable[Window], devices: Iterable[str], now: float) -> str | None:
    """The first window in force that holds one of these devices."""
    wanted = set(devices)
    if not wanted:
        return None
    for win in windows:
        if win.devices & wanted and win.active(now):
            return win.name
    return None


def services(config: Config, devices: Mapping[str, DeviceView], links: Mapping[str, LinkView],
             sites: Mapping[str, SiteView], peer_down: Callable[[str], bool], windows: Sequence[Window],
             now: float) -> tuple[ServiceView, ...]:
    """Each configured service from the state of what it depends on (devices, links, BGP peers, sites).

    ``peer_down("EDGE1:UPSTREAM1")``: whether that BGP session's down alert fires (the rules know which).
    """
    if not config.services:
        return ()
    out = []
    for svc in config.services:
        states: list[EntityState] = []
        held: set[str] = set()
        for dep in svc.depends_on:
            if dep in links:
                states.append(links[dep].state)
            elif dep in devices:
                states.append(devices[dep].state)
            elif dep in sites and dep not in devices:
                states.append(sites[dep].state)
                held |= {d.name for d in devices.values() if d.site == dep}
                continue
            elif ":" in dep and dep.split(":", 1)[0] in devices:  # a BGP peer "EDGE1:UPSTREAM1"
                router = devices[dep.split(":", 1)[0]].state
                states.append("down" if router == "down" or peer_down(dep) else
                              "unknown" if router == "unknown" else "up")
            else:
                states.append("unknown")
            held |= entity_devices(dep) & devices.keys()
        out.append(ServiceView(name=svc.name, state=combine(states), depends_on=len(svc.depends_on),
                               down=sum(1 for s in states if s == "down"), subscribers=svc.subscribers,
                               category=svc.category, maintenance=window_over(windows, held, now)))
    return tuple(out)


def local_collector(polled: Iterable[tuple[float | None, int, bool, float]], now: float,
                    storm: bool = False) -> CollectorView | None:
    """This host's poller from its devices' (start of the last completed poll, consecutive failures, backing
    off, interval).

    Lag is how far the most overdue answering device is past its interval: a poller that keeps up shows 0;
    one that cannot (too many devices, a slow database) shows it growing. Failing devices are not lag.
    """
    rows = list(polled)
    if not rows:
        return None
    starts = [at for at, _, _, _ in rows if at is not None]
    failing = sum(1 for _, failures, _, _ in rows if failures)
    lag = max((now - at - interval for at, failures, backing_off, interval in rows
               if at is not None and not failures and not backing_off), default=0.0)
    lag = max(0.0, lag)
    worst = max((interval for *_, interval in rows), default=0.0)
    # A device that does not answer is that device's incident, not the poller's: only every device failing
    # (this host cut off) or falling behind its intervals marks the poller itself.
    state: EntityState = ("unknown" if not starts else "down" if failing == len(rows) else
                          "degraded" if lag > worst else "up")
    return CollectorView(name="local", kind="local", state=state, devices=len(rows),
                         last_poll_at=max(starts) if starts else None, failing=failing, lag_s=lag, storm=storm)
