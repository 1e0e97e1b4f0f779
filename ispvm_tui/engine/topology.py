"""The network as seen from the monitoring host.

Nodes are the console host (``@console``), devices and links (a link is a
node between its two devices, so a link can be a root cause on its own).
Which failed entity explains which is a graph question: an entity whose
every path from the console crosses another failed entity is a symptom.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property

import networkx as nx

from ispvm_tui.config import Config

CONSOLE = "@console"


def link_node(link_id: str) -> str:
    return f"link:{link_id}"


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
        for link in config.links:
            node = link_node(link.id)
            a, b = link.a.split(":", 1)[0], link.b.split(":", 1)[0]
            for x, y in ((a, node), (node, b), (b, node), (node, a)):
                g.add_edge(x, y)
            self.link_of_end[link.a] = link.id
            self.link_of_end[link.b] = link.id
        self.graph = g

    @cached_property
    def dominators(self) -> dict[str, str]:
        return nx.immediate_dominators(self.graph, CONSOLE)

    def reachable(self, without: Iterable[str]) -> set[str]:
        """Nodes the console reaches when ``without`` nodes are gone."""
        blocked = set(without)
        view = nx.restricted_view(self.graph, blocked, [])
        return set(nx.descendants(view, CONSOLE)) | {CONSOLE}

    def roots_and_owners(self, failed: set[str]) -> tuple[list[str], dict[str, str]]:
        """Split failed nodes into root causes and symptoms (symptom -> owning root).

        A failed node is a root when the console still reaches it with every
        *other* failed node removed. A symptom is owned by its nearest failed
        dominator; where redundancy means no single failure dominates it (two
        uplinks both cut), by the first root on a shortest path to it.
        """
        roots = [n for n in sorted(failed) if n in self.reachable(failed - {n})]
        root_set = set(roots)
        owners: dict[str, str] = {}
        for node in sorted(failed - root_set):
            owner = self._dominating_root(node, root_set)
            if owner is None:
                owner = self._first_root_on_path(node, root_set)
            if owner is not None:
                owners[node] = owner
        return roots, owners

    def _dominating_root(self, node: str, roots: set[str]) -> str | None:
        idom = self.dominators
        here = node
        while here in idom and idom[here] != here:
            here = idom[here]
            if here in roots:
                return here
        return None

    def _first_root_on_path(self, node: str, roots: set[str]) -> str | None:
        try:
            path = nx.shortest_path(self.graph, CONSOLE, node)
        except (nx.NetworkXNoPath, nx.NodeNotFound):
            return None
        return next((p for p in path if p in roots), None)

    def downstream_of(self, node: str) -> set[str]:
        """Devices the console can no longer reach when ``node`` alone fails."""
        lost = set(self.graph.nodes) - self.reachable({node}) - {node}
        return {n for n in lost if not n.startswith("link:") and n != CONSOLE}
