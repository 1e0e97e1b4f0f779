"""Lab side of ``bench.poll_scale``: N simulated routers on loopback, in their own process.

Run by ``bench.poll_scale`` (``python -m bench.lab_proc ...``) so the lab's CPU
is not counted against the poller. Each router gets its own loopback address
(base+1, base+2, ...) with a RouterOS API server and/or an SNMP agent on it.

Control is line based: once every server listens, one JSON line
``{"ready": true, "routers": [[name, address, api_port, snmp_port], ...], ...}``
goes to stdout. Then each ``stats`` line read from stdin is answered with one
JSON line of this process's CPU seconds and peak RSS; ``stop`` (or end of
input) stops the servers and answers with a last stats line.

Two layouts of the lab model:

* ``per-router`` (default): one LabModel per router (one device, one BGP
  upstream, interfaces ether1..M with background traffic). A request costs
  the same whatever the fleet size.
* ``shared``: one LabModel for the whole fleet, routers in a chain
  (Ri:ether2 -- Ri+1:ether1). Every API request and SNMP view rendering
  advances the counters of every interface of every router, so the lab's
  cost per request grows with the fleet (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import ipaddress
import json
import logging
import resource
import sys
import time
from typing import Any

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
)
from ispvm_tui.lab.snmp_agent import SnmpAgent

LAB = LabSettings()  # default credentials and community: admin / ispvm-lab / public


def router_name(i: int) -> str:
    return f"R{i:04d}"


def device_spec(i: int, interfaces: int) -> DeviceSpec:
    # Odd routers run RouterOS 6, even ones 7: half the fleet each, both menu shapes.
    return DeviceSpec(
        name=router_name(i), site="bench", role="edge" if i == 1 else "access",
        ros_version=7 if i % 2 == 0 else 6,
        interfaces=[f"ether{k}" for k in range(1, interfaces + 1)],
    )


def bgp_spec(i: int) -> BgpSpec:
    return BgpSpec(device=router_name(i), name="UPSTREAM1", remote_as=64512 + i % 1000,
                   remote_address=f"198.51.{100 + i // 250}.{i % 250 + 1}", prefixes=1000 + i)


def scenario(name: str, devices: list[DeviceSpec], bgp: list[BgpSpec], links: list[LinkSpec],
             address_base: str) -> Scenario:
    return Scenario(
        scenario=ScenarioInfo(name=name, duration_s=365 * 86400.0),
        lab=LabSettings(address_base=address_base),
        console=ConsoleSpec(attach=[devices[0].name]),
        sites=[SiteSpec(name="bench")],
        devices=devices, bgp_peers=bgp, links=links,
    )


def build_models(routers: int, interfaces: int, base: str, layout: str) -> list[LabModel]:
    clock = SystemClock()
    first = ipaddress.ip_address(base)
    if layout == "shared":
        devices = [device_spec(i, interfaces) for i in range(1, routers + 1)]
        links = [LinkSpec(a=f"{router_name(i)}:ether2", b=f"{router_name(i + 1)}:ether1", utilisation=0.2)
                 for i in range(1, routers)] if interfaces >= 2 else []
        sc = scenario("bench-shared", devices, [bgp_spec(i) for i in range(1, routers + 1)], links, base)
        return [LabModel.build(sc, clock, base)]
    models = []
    for i in range(1, routers + 1):
        # LabModel puts its n-th device on address_base+n: one device, so base+i-1 gives base+i.
        own_base = str(first + (i - 1))
        sc = scenario(f"bench-{router_name(i)}", [device_spec(i, interfaces)], [bgp_spec(i)], [], own_base)
        models.append(LabModel.build(sc, clock, own_base))
    return models


def stats() -> dict[str, Any]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": round(ru.ru_utime + ru.ru_stime, 3), "maxrss_kb": ru.ru_maxrss}


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve(args: argparse.Namespace) -> None:
    t0 = time.monotonic()
    protocols = set(args.protocols.split(","))
    models = build_models(args.routers, args.interfaces, args.address_base, args.layout)
    api_servers: list[RouterOSApiServer] = []
    agents: list[SnmpAgent] = []
    routers: list[list[Any]] = []
    try:
        for model in models:
            for name, dev in model.devices.items():
                handle = model.handle(name)
                api_port = snmp_port = 0
                if "api" in protocols:
                    api = RouterOSApiServer(handle, dev.address, args.api_port)
                    await api.start()
                    api_servers.append(api)
                    api_port = api.port
                if "snmp" in protocols:
                    agent = SnmpAgent(handle, dev.address, args.snmp_port, community=LAB.community)
                    if args.snmp_view_s is not None:
                        # One rendering of the MIB serves every request for this long, busy or not.
                        agent.cache_max_age = agent.cache_idle_gap = args.snmp_view_s
                    await agent.start()
                    agents.append(agent)
                    snmp_port = agent.port
                routers.append([name, dev.address, api_port, snmp_port])
    except OSError as exc:
        emit({"ready": False, "error": f"cannot bind lab router {len(routers) + 1}: {exc}"})
        await stop(api_servers, agents)
        return
    emit({"ready": True, "routers": routers, "username": LAB.username, "password": LAB.password,
          "community": LAB.community, "layout": args.layout, "start_s": round(time.monotonic() - t0, 3),
          **stats()})
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        command = line.strip()
        if command == "stats":
            emit(stats())
        elif not line or command == "stop":
            break
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    await stop(api_servers, agents)
    emit(stats())


async def stop(api_servers: list[RouterOSApiServer], agents: list[SnmpAgent]) -> None:
    for server in api_servers:
        await server.stop()
    for agent in agents:
        await agent.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.lab_proc", description=__doc__.split("\n")[0])
    p.add_argument("--routers", type=int, required=True)
    p.add_argument("--interfaces", type=int, required=True)
    p.add_argument("--address-base", default="127.60.0.0")
    p.add_argument("--api-port", type=int, default=8728)
    p.add_argument("--snmp-port", type=int, default=1161)
    p.add_argument("--protocols", default="api,snmp")
    p.add_argument("--layout", choices=("per-router", "shared"), default="per-router")
    p.add_argument("--snmp-view-s", type=float, default=None,
                   help="seconds one SNMP MIB rendering is reused (default: the agent's own burst rule)")
    p.add_argument("--profile", metavar="FILE", help="cProfile the serving and dump the stats to FILE")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # Writes to connections the poller gave up on are expected here, not news.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    raise_fd_limit()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
