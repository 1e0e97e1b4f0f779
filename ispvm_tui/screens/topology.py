"""Topology view: the network as seen from the console host.

A breadth-first walk from the vantage devices through links puts every device
under the shortest path that reaches it, so whatever sits below a down link is
exactly what that link may have cut off. A device reached by several links is
listed once; the other links point back to it with a note.
"""

from __future__ import annotations

import socket
from collections import deque
from dataclasses import dataclass, field

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ispvm_tui.engine.api import DeviceView, LinkView, Snapshot
from ispvm_tui.screens.widgets import state_text


@dataclass
class Outline:
    """A tree independent of the widget, so it is easy to build and to test."""

    label: Text
    data: tuple[str, str] | None = None  # ("device", name) | ("link", id)
    children: list[Outline] = field(default_factory=list)


def _device_of(endpoint: str) -> tuple[str, str]:
    device, _, interface = endpoint.partition(":")
    return device, interface


def _device_label(name: str, device: DeviceView | None) -> Text:
    text = state_text(device.state if device else "unknown")
    text.append("  ").append(name, style="bold")
    if device is None:
        text.append("  (not in inventory)", style="dim")
    else:
        text.append(f"  {device.role} · {device.site} · {device.address}", style="dim")
        if device.last_error:
            text.append(f"  — {device.last_error}", style="italic")
    return text


def _link_label(link: LinkView, near_if: str, far_if: str) -> Text:
    text = Text("link ", style="dim")
    text.append_text(state_text(link.state))
    text.append(f"  {near_if or '?'} ↔ {far_if or '?'}")
    details = []
    if link.speed_mbps:
        speed = link.speed_mbps
        details.append(f"{speed // 1000}G" if speed >= 1000 and speed % 1000 == 0 else f"{speed}M")
    if link.utilisation is not None:
        details.append(f"{link.utilisation:.0%} used")
    if details:
        text.append("  " + " · ".join(details), style="dim")
    return text


def build_outline(snapshot: Snapshot, host: str) -> Outline:
    devices = {d.name: d for d in snapshot.devices}
    adjacency: dict[str, list[tuple[LinkView, str, str, str]]] = {}
    for link in sorted(snapshot.links, key=lambda item: item.id):
        a_dev, a_if = _device_of(link.a)
        b_dev, b_if = _device_of(link.b)
        adjacency.setdefault(a_dev, []).append((link, a_if, b_dev, b_if))
        adjacency.setdefault(b_dev, []).append((link, b_if, a_dev, a_if))

    placed: dict[str, Outline] = {}
    paths: dict[str, int] = {}  # ways the walk reached a device: top level or via a link
    drawn: set[str] = set()

    def place(name: str, parent: Outline) -> Outline:
        node = Outline(_device_label(name, devices.get(name)), ("device", name))
        parent.children.append(node)
        placed[name] = node
        paths[name] = 1
        return node

    def walk(start: list[str], parent: Outline) -> None:
        queue = deque((name, place(name, parent)) for name in start if name not in placed)
        while queue:
            name, node = queue.popleft()
            for link, near_if, peer, far_if in adjacency.get(name, []):
                if link.id in drawn:
                    continue
                drawn.add(link.id)
                link_node = Outline(_link_label(link, near_if, far_if), ("link", link.id))
                node.children.append(link_node)
                if peer in placed:
                    paths[peer] += 1
                    note = Text("↺ ", style="dim").append(peer, style="bold")
                    note.append("  (already listed above)", style="dim")
                    link_node.children.append(Outline(note, ("device-ref", peer)))
                else:
                    queue.append((peer, place(peer, link_node)))

    root = Outline(Text.assemble(("⌂ console host ", "bold"), (host, "bold"), ("  vantage point", "dim")))
    walk(list(dict.fromkeys(snapshot.vantage)), root)
    rest = sorted(name for name in set(devices) | set(adjacency) if name not in placed)
    if rest:
        other = Outline(Text("Not reachable through the vantage devices", style="italic"), ("group", "other"))
        root.children.append(other)
        for name in rest:
            walk([name], other)
    for name, count in paths.items():
        if count > 1:
            placed[name].label.append(f"  [reached by {count} paths; listed once]", style="italic")
    if not snapshot.vantage:
        root.children.insert(0, Outline(Text("(no vantage devices in the snapshot)", style="dim")))
    return root


def display_key(snapshot: Snapshot) -> tuple[object, ...]:
    """Only what the tree shows: poll times and counters change every poll and must not rebuild it."""
    devices = tuple((d.name, d.state, d.role, d.site, d.address, d.last_error) for d in snapshot.devices)
    return (snapshot.vantage, devices, snapshot.links)


class TopologyPane(Vertical):
    def __init__(self, host: str | None = None) -> None:
        super().__init__(id="topology-pane")
        self.host = host or socket.gethostname()
        self._key: tuple[object, ...] | None = None

    def compose(self) -> ComposeResult:
        tree: Tree[tuple[str, str] | None] = Tree(Text("Synchronizing…", style="dim"), id="topology-tree")
        tree.guide_depth = 3
        yield tree

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        key = display_key(snapshot)
        if key == self._key:
            return
        self._key = key
        tree = self.query_one("#topology-tree", Tree)
        cursor = tree.cursor_node.data if tree.cursor_node is not None else None
        # Keep what the user folded away folded across rebuilds.
        collapsed = {n.data for n in _nodes(tree.root) if n.allow_expand and not n.is_expanded}
        outline = build_outline(snapshot, self.host)
        tree.clear()
        tree.root.set_label(outline.label)
        tree.root.expand()
        found = self._add(tree.root, outline, cursor, collapsed)
        if found is not None:
            # Line numbers exist only after the tree has laid itself out again.
            self.call_after_refresh(tree.move_cursor, found)

    def _add(self, parent: TreeNode, outline: Outline, cursor: object, collapsed: set[object]) -> TreeNode | None:
        found = None
        for child in outline.children:
            if child.children:
                node = parent.add(child.label, data=child.data, expand=child.data not in collapsed)
                hit = self._add(node, child, cursor, collapsed)
                found = found or hit
            else:
                node = parent.add_leaf(child.label, data=child.data)
            if cursor is not None and child.data == cursor and found is None:
                found = node
        return found


def _nodes(node: TreeNode) -> list[TreeNode]:
    found = [node]
    for child in node.children:
        found += _nodes(child)
    return found
