"""The network as seen from the monitoring host.

Nodes are the console host (``@console``), devices and links (a link is a
node between its two devices, so a link can be a root cause on its own).
Which failed entity explains which is a graph question answered in
correlator.py: what the console still reaches when every failed node is
removed, and the dark regions left behind. The walks are breadth-first over
adjacency sets: that is all the graph needs, and a graph library would cost
the engine more memory (11 MB measured for networkx) than the whole topology.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache

from ispvm_tui.config import Config

CONSOLE = "@console"


def link_node(link_id: str) -> str:
    return f"link:{link_id}"


def node_entity(node: str) -> tuple[str, str]:
    """(entity type, entity id) of a graph node."""
    if node.startswith("link:"):
        return "link", node.removeprefix("link:")
    return "device", node


@dataclass(frozen=True)
class LinkEnds:
    id: str
    a_device: str
    a_end: str  # "DEVICE:interface"
    b_device: str
    b_end: str

    def far(self, device: str) -> tuple[str, str, str]:
        """(far device, far end, near end) seen from ``device``."""
        if device == self.a_device:
            return self.b_device, self.b_end, self.a_end
        return self.a_device, self.a_end, self.b_end


class Topology:
    def __init__(self, config: Config) -> None:
        self.config = config
        # Directed: the console reaches its attach points; devices and links reach each other both ways.
        self.successors: dict[str, set[str]] = {CONSOLE: set()}
        self.predecessors: dict[str, set[str]] = {CONSOLE: set()}
        for dev in config.devices:
            self._node(dev.name)
        for name in config.console.attach:
            self._edge(CONSOLE, name)
        self.link_of_end: dict[str, str] = {}
        self.links: dict[str, LinkEnds] = {}
        self.links_of: dict[str, list[str]] = {}
        for link in config.links:
            node = link_node(link.id)
            a, b = link.a.split(":", 1)[0], link.b.split(":", 1)[0]
            for x, y in ((a, node), (node, b), (b, node), (node, a)):
                self._edge(x, y)
            self.link_of_end[link.a] = link.id
            self.link_of_end[link.b] = link.id
            self.links[link.id] = LinkEnds(link.id, a, link.a, b, link.b)
            self.links_of.setdefault(a, []).append(link.id)
            self.links_of.setdefault(b, []).append(link.id)

    def _node(self, name: str) -> None:
        self.successors.setdefault(name, set())
        self.predecessors.setdefault(name, set())

    def _edge(self, x: str, y: str) -> None:
        self._node(x)
        self._node(y)
        self.successors[x].add(y)
        self.predecessors[y].add(x)

    @property
    def nodes(self) -> set[str]:
        return set(self.successors)

    def _hops(self, blocked: set[str] | frozenset[str] = frozenset()) -> dict[str, int]:
        """Hops from the console to every node it reaches around ``blocked`` (breadth first)."""
        hops = {CONSOLE: 0}
        queue = deque([CONSOLE])
        while queue:
            here = queue.popleft()
            for n in self.successors[here]:
                if n not in hops and n not in blocked:
                    hops[n] = hops[here] + 1
                    queue.append(n)
        return hops

    @cached_property
    def in_topology(self) -> frozenset[str]:
        """Nodes with a configured path from the console."""
        return frozenset(self._hops())

    @cached_property
    def depth(self) -> dict[str, int]:
        """Hops from the console to each device it reaches (links not counted): parents come first."""
        return {n: d // 2 for n, d in self._hops().items() if n != CONSOLE and not n.startswith("link:")}

    def parents_first(self, devices: Iterable[str]) -> list[str]:
        """Devices nearest the console first (a dead parent explains its children, so ask it first)."""
        far = len(self.successors)
        return sorted(devices, key=lambda d: (self.depth.get(d, far), d))

    def neighbours(self, node: str) -> set[str]:
        return self.successors.get(node, set()) | self.predecessors.get(node, set())

    def reachable(self, without: Iterable[str]) -> set[str]:
        """Nodes the console reaches when ``without`` nodes are gone."""
        return set(self._hops(set(without)))

    def downstream_of(self, node: str) -> set[str]:
        """Devices the console can no longer reach when ``node`` alone fails."""
        return set(self._downstream(node))

    @lru_cache(maxsize=4096)  # noqa: B019 - one Topology lives as long as its config
    def _downstream(self, node: str) -> frozenset[str]:
        lost = set(self.in_topology) - self.reachable({node}) - {node}
        return frozenset(n for n in lost if not n.startswith("link:") and n != CONSOLE)
