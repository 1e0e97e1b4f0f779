"""The network as seen from the monitoring host.

Nodes are the console host (``@console``), devices and links (a link is a
node between its two devices, so a link can be a root cause on its own).
Which failed entity explains which is a graph question answered in
correlator.py: what the console still reaches when every failed node is
removed, and the dark regions left behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache

import networkx as nx

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
        g = nx.DiGraph()
        g.add_node(CONSOLE)
        for dev in config.devices:
            g.add_node(dev.name)
        for name in config.console.attach:
            g.add_edge(CONSOLE, name)
        self.link_of_end: dict[str, str] = {}
        self.links: dict[str, LinkEnds] = {}
        self.links_of: dict[str, list[str]] = {}
        for link in config.links:
            node = link_node(link.id)
            a, b = link.a.split(":", 1)[0], link.b.split(":", 1)[0]
            for x, y in ((a, node), (node, b), (b, node), (node, a)):
                g.add_edge(x, y)
            self.link_of_end[link.a] = link.id
            self.link_of_end[link.b] = link.id
            self.links[link.id] = LinkEnds(link.id, a, link.a, b, link.b)
            self.links_of.setdefault(a, []).append(link.id)
            self.links_of.setdefault(b, []).append(link.id)
        self.graph = g

    @cached_property
    def in_topology(self) -> frozenset[str]:
        """Nodes with a configured path from the console."""
        return frozenset(nx.descendants(self.graph, CONSOLE)) | {CONSOLE}

    @cached_property
    def depth(self) -> dict[str, int]:
        """Hops from the console to each device it reaches (links not counted): parents come first."""
        hops = nx.single_source_shortest_path_length(self.graph, CONSOLE)
        return {n: d // 2 for n, d in hops.items() if n != CONSOLE and not n.startswith("link:")}

    def parents_first(self, devices: Iterable[str]) -> list[str]:
        """Devices nearest the console first (a dead parent explains its children, so ask it first)."""
        far = len(self.graph)
        return sorted(devices, key=lambda d: (self.depth.get(d, far), d))

    def neighbours(self, node: str) -> set[str]:
        return set(self.graph.successors(node)) | set(self.graph.predecessors(node))

    def reachable(self, without: Iterable[str]) -> set[str]:
        """Nodes the console reaches when ``without`` nodes are gone."""
        blocked = set(without)
        view = nx.restricted_view(self.graph, blocked, [])
        return set(nx.descendants(view, CONSOLE)) | {CONSOLE}

    def downstream_of(self, node: str) -> set[str]:
        """Devices the console can no longer reach when ``node`` alone fails."""
        return set(self._downstream(node))

    @lru_cache(maxsize=4096)  # noqa: B019 - one Topology lives as long as its config
    def _downstream(self, node: str) -> frozenset[str]:
        lost = set(self.in_topology) - self.reachable({node}) - {node}
        return frozenset(n for n in lost if not n.startswith("link:") and n != CONSOLE)
