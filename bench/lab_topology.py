"""Lab side of ``bench.engine_scale``: a whole ISP on loopback, in its own process.

    python -m bench.lab_topology --routers 1000 --interfaces 24 --address-base 127.61.0.0

The fleet is a real topology, not a flat list: two core routers (CORE1 is the
monitoring host's attach point), K PoPs each with an aggregation router linked
to one core (every third PoP to both), and access routers behind each
aggregation router, one site per PoP with subscribers on the access routers.
One LabModel holds the whole network, built lazy (``LabModel.build(lazy=True)``):
a router's counters move only when that router is read, so a request costs the
same at 1,000 routers as at 10. Every router answers the RouterOS API and SNMP
v2c on its own loopback address (base+1, base+2, ...).

Control is line based. Once every server listens, one JSON line goes to stdout:
``{"ready": true, "routers": [[name, address, api_port, snmp_port], ...], ...}``.
Then each line read from stdin is answered with one JSON line:

* ``stats``: this process's CPU seconds and peak RSS, and the reads the routers served
  (``first_read_at``: epoch of the first read of any router's state since the last ``mark``).
* ``mark``: forget ``first_read_at`` (answered with stats).
* ``down behind DEVICE``: power off DEVICE and every router that only reaches the attach point
  through it (its neighbours see their ports to it go down, as the scenario action ``device_down``).
* ``down all``: every router; ``down all-but DEVICE``: every router but one.
* ``restore``: the scenario action ``restore`` (everything powered back on, rebooted).
* ``stop`` (or end of input): stop the servers; the answer is a last stats line.

A change's answer carries ``at``, the epoch second it was applied, and the routers it stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bench.lab_proc import LAB, emit, raise_fd_limit, stats
from ispvm_tui.clock import SystemClock
from ispvm_tui.lab.model import LabModel
from ispvm_tui.lab.routeros_api_server import RouterOSApiServer
from ispvm_tui.lab.scenario import (
    BgpSpec,
    ConsoleSpec,
    DeviceSpec,
    LabSettings,
    LinkSpec,
    Scenario,
    ScenarioInfo,
    SiteSpec,
    TimelineEntry,
)
from ispvm_tui.lab.sim import RouterHandle
from ispvm_tui.lab.snmp_agent import SnmpAgent

ATTACH = "CORE1"
CORES = ("CORE1", "CORE2")
ACCESS_PER_POP = 8
DUAL_HOMED_EVERY = 3  # PoP k is homed to both cores when k % 3 == 0


@dataclass
class Pop:
    index: int
    site: str
    aggregation: str
    homes: list[str]  # the cores it links to
    access: list[str] = field(default_factory=list)


def pop_layout(routers: int) -> list[Pop]:
    """Split ``routers`` into two cores and PoPs of one aggregation router plus up to eight access routers."""
    if routers < 4:
        raise ValueError("a topology needs at least 4 routers (two cores and one PoP of two)")
    rest = routers - len(CORES)
    count = max(1, rest // (1 + ACCESS_PER_POP))
    pops = []
    for k in range(1, count + 1):
        homes = list(CORES) if k % DUAL_HOMED_EVERY == 0 else [CORES[(k - 1) % 2]]
        pops.append(Pop(k, f"pop-{k:03d}", f"P{k:03d}-AGG", homes))
    access = rest - count  # spread over the PoPs, the first ones getting one more
    for j in range(access):
        pop = pops[j % count]
        pop.access.append(f"P{pop.index:03d}-A{len(pop.access) + 1:02d}")
    return pops


def subscribers_of(name: str) -> int:
    # Deterministic, uneven: 40..400 subscribers per access router.
    return 40 + (sum(name.encode()) * 37) % 361


def build_topology(routers: int, interfaces: int, address_base: str) -> Scenario:
    pops = pop_layout(routers)
    ports = [f"ether{k}" for k in range(1, interfaces + 1)]
    devices = [DeviceSpec(name=c, site="core", role="core", ros_version=7, interfaces=ports) for c in CORES]
    links = [LinkSpec(a="CORE1:sfp-core", b="CORE2:sfp-core", speed_mbps=10000, utilisation=0.3)]
    sites = [SiteSpec(name="core")]
    n = 0
    for pop in pops:
        n += 1
        devices.append(DeviceSpec(name=pop.aggregation, site=pop.site, role="aggregation",
                                  ros_version=7 if n % 2 == 0 else 6, interfaces=ports))
        for h, core in enumerate(pop.homes, start=1):
            links.append(LinkSpec(a=f"{core}:sfp-p{pop.index:03d}", b=f"{pop.aggregation}:sfp-up{h}",
                                  speed_mbps=10000, utilisation=0.15))
        for j, name in enumerate(pop.access, start=1):
            n += 1
            devices.append(DeviceSpec(name=name, site=pop.site, role="access", ros_version=7 if n % 2 == 0 else 6,
                                      interfaces=ports, subscribers=subscribers_of(name)))
            links.append(LinkSpec(a=f"{pop.aggregation}:sfp-a{j:02d}", b=f"{name}:sfp-up", utilisation=0.2))
        sites.append(SiteSpec(name=pop.site, subscribers=sum(subscribers_of(a) for a in pop.access)))
    bgp = [BgpSpec(device=c, name="UPSTREAM1", remote_as=64500 + i, remote_address=f"198.51.100.{i}",
                   provider=f"transit-{i}", prefixes=900_000) for i, c in enumerate(CORES, start=1)]
    return Scenario(
        scenario=ScenarioInfo(name="bench-topology", duration_s=365 * 86400.0),
        lab=LabSettings(address_base=address_base),
        console=ConsoleSpec(attach=[ATTACH]),
        sites=sites, devices=devices, links=links, bgp_peers=bgp,
    )


def behind(sc: Scenario, device: str) -> list[str]:
    """``device`` and every router whose every path to the attach point goes through it."""
    near: dict[str, list[str]] = {d.name: [] for d in sc.devices}
    for link in sc.links:
        a, b = link.a.split(":", 1)[0], link.b.split(":", 1)[0]
        near[a].append(b)
        near[b].append(a)
    start = [d for d in sc.console.attach if d != device]
    seen, queue = set(start), deque(start)
    while queue:
        for there in near[queue.popleft()]:
            if there != device and there not in seen:
                seen.add(there)
                queue.append(there)
    return [d.name for d in sc.devices if d.name not in seen]


class CountingHandle(RouterHandle):
    """A router handle that counts the reads of its state: the lab's side of "was it polled"."""

    reads = 0
    first_read_at: float | None = None

    def state(self):  # type: ignore[no-untyped-def]
        if CountingHandle.first_read_at is None:
            CountingHandle.first_read_at = time.time()
        CountingHandle.reads += 1
        return super().state()


def lab_stats() -> dict[str, Any]:
    return {**stats(), "reads": CountingHandle.reads, "first_read_at": CountingHandle.first_read_at}


def control(model: LabModel, sc: Scenario, command: str) -> dict[str, Any]:
    words = command.split()
    names = [d.name for d in sc.devices]
    if words[:2] == ["down", "behind"] and len(words) == 3 and words[2] in model.devices:
        targets = behind(sc, words[2])
    elif words == ["down", "all"]:
        targets = names
    elif words[:2] == ["down", "all-but"] and len(words) == 3 and words[2] in model.devices:
        targets = [n for n in names if n != words[2]]
    elif words == ["restore"]:
        model.apply(TimelineEntry(at=0, action="restore", note="bench restore"))
        return {"ok": True, "command": command, "at": time.time(), "devices": 0}
    else:
        return {"ok": False, "command": command,
                "error": "expected: stats | down behind DEVICE | down all | down all-but DEVICE | restore | stop"}
    model.apply_many([TimelineEntry(at=0, action="device_down", device=n, note="bench power-off") for n in targets])
    return {"ok": True, "command": command, "at": time.time(), "devices": len(targets), "stopped": targets[:5]}


async def serve(args: argparse.Namespace) -> None:
    t0 = time.monotonic()
    sc = build_topology(args.routers, args.interfaces, args.address_base)
    model = LabModel.build(sc, SystemClock(), args.address_base, lazy=True)
    api_servers: list[RouterOSApiServer] = []
    agents: list[SnmpAgent] = []
    routers: list[list[Any]] = []
    try:
        for name, dev in model.devices.items():
            handle = CountingHandle(dev, LAB.username, LAB.password, model)
            api = RouterOSApiServer(handle, dev.address, args.api_port)
            await api.start()
            api_servers.append(api)
            agent = SnmpAgent(handle, dev.address, args.snmp_port, community=LAB.community)
            if args.snmp_view_s > 0:  # one MIB rendering serves a router's requests this long (see README)
                agent.cache_max_age = agent.cache_idle_gap = args.snmp_view_s
            await agent.start()
            agents.append(agent)
            routers.append([name, dev.address, api.port, agent.port])
    except OSError as exc:
        emit({"ready": False, "error": f"cannot bind lab router {len(routers) + 1}: {exc}"})
        await stop(api_servers, agents)
        return
    emit({"ready": True, "routers": routers, "username": LAB.username, "password": LAB.password,
          "community": LAB.community, "attach": ATTACH, "links": len(sc.links), "sites": len(sc.sites),
          "start_s": round(time.monotonic() - t0, 3), **lab_stats()})
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        command = line.strip()
        if not line or command == "stop":
            break
        if command == "stats":
            emit(lab_stats())
        elif command == "mark":  # first_read_at counts from here
            CountingHandle.first_read_at = None
            emit(lab_stats())
        elif command:
            emit(control(model, sc, command))
    await stop(api_servers, agents)
    emit(lab_stats())


async def stop(api_servers: list[RouterOSApiServer], agents: list[SnmpAgent]) -> None:
    for server in api_servers:
        await server.stop()
    for agent in agents:
        await agent.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.lab_topology", description=__doc__.split("\n")[0])
    p.add_argument("--routers", type=int, required=True)
    p.add_argument("--interfaces", type=int, default=24)
    p.add_argument("--address-base", default="127.61.0.0")
    p.add_argument("--api-port", type=int, default=8728)
    p.add_argument("--snmp-port", type=int, default=1161)
    p.add_argument("--snmp-view-s", type=float, default=5.0,
                   help="seconds one SNMP MIB rendering is reused (0: the agent's own burst rule)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("asyncio").setLevel(logging.ERROR)  # writes to connections a poller gave up on
    raise_fd_limit()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
