"""Start a scenario's routers on loopback and play its timeline.

Each router gets its own loopback address (base+1, base+2, ...) with a
RouterOS API server and an SNMP agent on it, all reading one LabModel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ispvm_tui.clock import Clock
from ispvm_tui.lab.addresses import LabAddressError, is_lab_address
from ispvm_tui.lab.model import LabModel
from ispvm_tui.lab.routeros_api_server import RouterOSApiServer
from ispvm_tui.lab.scenario import Scenario, TimelineEntry
from ispvm_tui.lab.snmp_agent import SnmpAgent

log = logging.getLogger(__name__)


class LabStartError(Exception):
    pass


@dataclass
class Lab:
    scenario: Scenario
    clock: Clock
    address_base: str | None = None
    api_port: int | None = None
    snmp_port: int | None = None
    model: LabModel = field(init=False)
    api_servers: dict[str, RouterOSApiServer] = field(default_factory=dict)
    snmp_agents: dict[str, SnmpAgent] = field(default_factory=dict)
    _timeline: asyncio.Task[None] | None = None
    # Called for each `maintenance` entry as it plays (the demo opens the window in the engine, as an
    # operator would with `ispvm maint add`); the routers themselves do not change.
    on_maintenance: Callable[[TimelineEntry], Awaitable[None]] | None = None

    async def start(self, *, play: bool = True) -> None:
        try:
            self.model = LabModel.build(self.scenario, self.clock, self.address_base)
        except LabAddressError as exc:
            raise LabStartError(f"lab not started: {exc}") from None
        lab = self.scenario.lab
        api_port = self.api_port if self.api_port is not None else lab.api_port
        snmp_port = self.snmp_port if self.snmp_port is not None else lab.snmp_port
        strays = [d.address for d in self.model.devices.values() if not is_lab_address(d.address)]
        if strays:  # LabModel.build checked already; the lab's login is never bound anywhere else
            raise LabStartError(f"lab not started: {', '.join(strays)} not on loopback")
        try:
            for name, dev in self.model.devices.items():
                handle = self.model.handle(name)
                api = RouterOSApiServer(handle, dev.address, api_port)
                await api.start()
                self.api_servers[name] = api
                agent = SnmpAgent(handle, dev.address, snmp_port, community=lab.community)
                await agent.start()
                self.snmp_agents[name] = agent
        except OSError as exc:
            await self.stop()
            raise LabStartError(
                f"cannot start the lab on {self.model.devices[next(iter(self.model.devices))].address}: "
                f"{exc.strerror or exc} (is another lab running on the same addresses? "
                f"change [lab].address_base)") from None
        if play:
            self._timeline = asyncio.create_task(self._play(), name="lab-timeline")

    async def _play(self) -> None:
        for entry in sorted(self.scenario.timeline, key=lambda e: e.at):
            wait = self.model.started_at + entry.at - self.clock.now()
            if wait > 0:
                await self.clock.sleep(wait)
            log.info("lab: t=%ss %s %s", entry.at, entry.action, entry.note)
            self.model.apply(entry)
            if entry.action == "maintenance" and self.on_maintenance is not None:
                try:
                    await self.on_maintenance(entry)
                except Exception:  # the timeline goes on; the run's expectations will say what is missing
                    log.exception("lab: the maintenance window at t=%ss was not opened", entry.at)

    async def stop(self) -> None:
        if self._timeline is not None:
            self._timeline.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timeline
        for server in self.api_servers.values():
            await server.stop()
        for agent in self.snmp_agents.values():
            await agent.stop()

    def elapsed(self) -> float:
        return self.clock.now() - self.model.started_at

    def first_fault_at(self) -> float | None:
        faults = [e.at for e in self.scenario.timeline
                  if e.action not in ("restore", "maintenance", "config_change", "secret_change")]
        return self.model.started_at + min(faults) if faults else None

    def routers(self) -> list[tuple[str, str, int, int]]:
        """(name, address, api port, snmp port) of every router."""
        return [(n, d.address, self.api_servers[n].port, self.snmp_agents[n].port)
                for n, d in self.model.devices.items()]
