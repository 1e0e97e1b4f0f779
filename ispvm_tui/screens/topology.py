"""Topology view: the network as seen from the console host.

A breadth-first walk from the vantage devices through links puts every device
under the shortest path that reaches it, so whatever sits below a down link is
exactly what that link may have cut off. A device reached by several links is
listed once; the other links point back to it with a note.

Open incidents mark their root causes (reverse video and the word "root") and
dim what they cut off (the word "cut off"), so the tree reads without colour.
Beyond ``GROUP_SITES_ABOVE`` devices each crossing into another site becomes a
site node, collapsed unless something in it has a problem; `/` narrows the tree
to devices whose name or site matches, with the paths to them open.
"""

from __future__ import annotations

import functools
import socket
from collections import deque
from dataclasses import dataclass, field
from typing import TypeVar

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Tree
from textual.widgets.tree import TreeNode

from ispvm_tui.engine.api import DeviceView, LinkView, Snapshot
from ispvm_tui.screens.style_stable import StyleStable
from ispvm_tui.screens.widgets import short_id, state_text

GROUP_SITES_ABOVE = 50  # devices: a larger tree opens site by site


NodeData = tuple[str, ...] | None
_Node = TypeVar("_Node", "Outline", TreeNode)


@dataclass
class Outline:
    """A tree independent of the widget, so it is easy to build and to test."""

    label: Text
    data: tuple[str, ...] | None = None  # ("device", name) | ("link", id) | ("site", name, via) | ...
    children: list[Outline] = field(default_factory=list)
    problem: bool = False  # this node or one below it is down, degraded, a root cause or cut off
    match_text: str = ""  # what `/` searches: a device's name and site, a site's name


@dataclass(frozen=True)
class Marks:
    """What open incidents say about the tree: root causes and what they cut off."""

    roots: dict[str, str] = field(default_factory=dict)  # device name or link id -> incident id
    impacted: dict[str, str] = field(default_factory=dict)  # device name -> incident id

    @classmethod
    def of(cls, snapshot: Snapshot) -> Marks:
        roots: dict[str, str] = {}
        impacted: dict[str, str] = {}
        for inc in snapshot.incidents:
            if inc.status == "closed":
                continue
            for cause in inc.root_causes:
                # An interface or a session is drawn as its device: "EDGE1:UPSTREAM1" marks EDGE1.
                key = cause.entity_id if cause.entity_type in ("device", "link") else cause.entity_id.split(":")[0]
                roots.setdefault(key, inc.id)
            for name in inc.impact.devices:
                impacted.setdefault(name, inc.id)
        return cls(roots, {n: i for n, i in impacted.items() if n not in roots})


def _marked(label: Text, key: str, marks: Marks) -> Text:
    """The label with its incident mark; a marked label is a copy (unmarked ones are shared, see below)."""
    if key in marks.roots:
        label = label.copy()
        label.stylize("bold reverse")
        label.append(f"  ◉ root of {short_id(marks.roots[key])}", style="bold")
    elif key in marks.impacted:
        label = label.copy()
        label.stylize("dim")
        label.append(f"  ⊘ cut off ({short_id(marks.impacted[key])})", style="dim italic")
    return label


def _device_of(endpoint: str) -> tuple[str, str]:
    device, _, interface = endpoint.partition(":")
    return device, interface


def _device_label(name: str, device: DeviceView | None) -> Text:
    if device is None:
        return _device_label_of(name, None, "", "", "", None)
    return _device_label_of(name, device.state, device.role, device.site, device.address, device.last_error)


# Labels by what they show. A snapshot changes a few devices' states, and every rebuild of the outline used to
# assemble ~2,300 Rich Texts anew (~35 of its ~55 ms at 1,000 devices). These return the same Text for the
# same content, shared: whatever adds to a label (marks, path notes) copies it first, and the Tree widget
# copies a label before styling it.
@functools.lru_cache(maxsize=8192)
def _device_label_of(name: str, state: str | None, role: str, site: str, address: str,
                     last_error: str | None) -> Text:
    text = state_text(state or "unknown")
    text.append("  ").append(name, style="bold")
    if state is None:
        text.append("  (not in inventory)", style="dim")
    else:
        text.append(f"  {role} · {site} · {address}", style="dim")
        if last_error:
            text.append(f"  — {last_error}", style="italic")
    return text


def _link_label(link: LinkView, near_if: str, far_if: str) -> Text:
    return _link_label_of(link.state, link.speed_mbps, link.utilisation, near_if, far_if)


@functools.lru_cache(maxsize=8192)
def _link_label_of(state: str, speed: int | None, utilisation: float | None, near_if: str, far_if: str) -> Text:
    text = Text("link ", style="dim")
    text.append_text(state_text(state))
    text.append(f"  {near_if or '?'} ↔ {far_if or '?'}")
    details = []
    if speed:
        details.append(f"{speed // 1000}G" if speed >= 1000 and speed % 1000 == 0 else f"{speed}M")
    if utilisation is not None:
        details.append(f"{utilisation:.0%} used")
    if details:
        text.append("  " + " · ".join(details), style="dim")
    return text


def build_outline(snapshot: Snapshot, host: str, group_sites: bool | None = None) -> Outline:
    devices = {d.name: d for d in snapshot.devices}
    marks = Marks.of(snapshot)
    if group_sites is None:
        group_sites = len(devices) > GROUP_SITES_ABOVE
    adjacency: dict[str, list[tuple[LinkView, str, str, str]]] = {}
    for link in sorted(snapshot.links, key=lambda item: item.id):
        a_dev, a_if = _device_of(link.a)
        b_dev, b_if = _device_of(link.b)
        adjacency.setdefault(a_dev, []).append((link, a_if, b_dev, b_if))
        adjacency.setdefault(b_dev, []).append((link, b_if, a_dev, a_if))

    placed: dict[str, Outline] = {}
    parent_site: dict[int, str | None] = {}  # link node -> the site of the device it hangs from
    paths: dict[str, int] = {}  # ways the walk reached a device: top level or via a link
    drawn: set[str] = set()

    def site_of(name: str) -> str | None:
        device = devices.get(name)
        return device.site if device else None

    def place(name: str, parent: Outline, via: str = "") -> Outline:
        device = devices.get(name)
        node = Outline(_marked(_device_label(name, device), name, marks), ("device", name),
                       problem=(device is not None and device.state in ("down", "degraded"))
                       or name in marks.roots or name in marks.impacted,
                       match_text=f"{name}\n{device.site if device else ''}")
        if group_sites and device is not None and via and parent.data and parent.data[0] == "link":
            # Crossing into another site: the site is a node of its own, to fold away whole.
            above = parent_site.get(id(parent))
            if above != device.site:
                site = Outline(Text.assemble(("▣ site ", "dim"), (device.site, "bold")),
                               ("site", device.site, via), match_text=device.site)
                parent.children.append(site)
                parent = site
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
                link_node = Outline(_marked(_link_label(link, near_if, far_if), link.id, marks), ("link", link.id),
                                    problem=link.state == "down" or link.id in marks.roots)
                parent_site[id(link_node)] = site_of(name)
                node.children.append(link_node)
                if peer in placed:
                    paths[peer] += 1
                    note = Text("↺ ", style="dim").append(peer, style="bold")
                    note.append("  (already listed above)", style="dim")
                    link_node.children.append(Outline(note, ("device-ref", peer)))
                else:
                    queue.append((peer, place(peer, link_node, link.id)))

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
            node = placed[name]
            node.label = node.label.copy()
            node.label.append(f"  [reached by {count} paths; listed once]", style="italic")
    if not snapshot.vantage:
        root.children.insert(0, Outline(Text("(no vantage devices in the snapshot)", style="dim")))
    _spread_problems(root)
    _count_sites(root, devices)
    return root


# The tree is as deep as the network is long (a chain of 1,000 routers is 2,000 levels): every walk over
# it is a loop, never recursion, which would stop at Python's recursion limit.

def _preorder(node: _Node) -> list[_Node]:
    """``node`` and everything below it, parents before children, children in order (an Outline or a
    widget's TreeNode: anything with ``children``)."""
    found: list[_Node] = []
    stack = [node]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(reversed(current.children))
    return found


def _outline_nodes(node: Outline) -> list[Outline]:
    return _preorder(node)


def _spread_problems(node: Outline) -> bool:
    for current in reversed(_outline_nodes(node)):  # children before their parents
        current.problem = current.problem or any(child.problem for child in current.children)
    return node.problem


def _count_sites(node: Outline, devices: dict[str, DeviceView]) -> None:
    """Each site node's label gets the devices below it (nested sites included) and how many are down."""
    below: dict[int, tuple[int, int]] = {}  # id(node) -> (devices, down) in its subtree, itself included
    for current in reversed(_outline_nodes(node)):  # children before their parents
        count = down = 0
        if current.data and current.data[0] == "device":
            count = 1
            device = devices.get(current.data[1])
            down = int(device is not None and device.state == "down")
        for child in current.children:
            child_count, child_down = below[id(child)]
            count += child_count
            down += child_down
        below[id(current)] = (count, down)
        if current.data and current.data[0] == "site":
            current.label.append(f"  {count} devices", style="dim")
            if down:
                current.label.append(f", {down} down", style="bold red")
            if current.problem:
                current.label.append("  ⚠ problem", style="bold")


def filtered(outline: Outline, needle: str) -> Outline | None:
    """``outline`` with only what leads to a node whose name or site holds ``needle`` (case-insensitive);
    a match keeps everything below it. None when nothing matches."""
    needle = needle.casefold()
    kept: dict[int, Outline | None] = {}
    for node in reversed(_outline_nodes(outline)):  # children before their parents
        if needle in node.match_text.casefold():
            kept[id(node)] = node
            continue
        children = [k for child in node.children if (k := kept[id(child)]) is not None]
        kept[id(node)] = Outline(node.label, node.data, children, node.problem, node.match_text) if children else None
    return kept[id(outline)]


def shape(outline: Outline) -> list[tuple[int, NodeData, bool]]:
    """The tree's structure without its labels, parents first: (depth, data, has children) per node below
    the root. Two outlines of the same shape differ only in what their labels say."""
    out: list[tuple[int, NodeData, bool]] = []
    stack = [(child, 0) for child in reversed(outline.children)]
    while stack:
        node, depth = stack.pop()
        out.append((depth, node.data, bool(node.children)))
        stack.extend((child, depth + 1) for child in reversed(node.children))
    return out


def display_key(snapshot: Snapshot) -> tuple[object, ...]:
    """Only what the tree shows: poll times and counters change every poll and must not rebuild it."""
    devices = tuple((d.name, d.state, d.role, d.site, d.address, d.last_error) for d in snapshot.devices)
    marks = Marks.of(snapshot)
    return (snapshot.vantage, devices, snapshot.links, tuple(sorted(marks.roots.items())),
            tuple(sorted(marks.impacted.items())))


class TopologyTree(StyleStable, Tree[NodeData]):
    """Textual's Tree, measuring its lines without drawing them.

    The tree re-measures every line whenever it is invalidated (a focus change restyles it, a resize, a
    fold): Tree.get_label_width draws each label to take its length, ~2,300 labels at 1,000 devices, a third
    of a tab switch to Topology. The length is the label's plus the fold icon's, as Tree.render_label
    assembles them.
    """

    def get_label_width(self, node: TreeNode[NodeData]) -> int:
        width = node.label.cell_len
        if node.allow_expand:
            width += cell_len(self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE)
        return width


class TopologyPane(Vertical):
    def __init__(self, host: str | None = None) -> None:
        super().__init__(id="topology-pane")
        self.host = host or socket.gethostname()
        self._key: tuple[object, ...] | None = None
        self._snapshot: Snapshot | None = None
        self.filter_text = ""
        self.rebuilds = 0  # lets tests see that an unchanged topology is not rebuilt
        self.relabels = 0  # states or marks changed on the same shape: labels set in place, no rebuild
        self._shape: list[tuple[int, NodeData, bool]] | None = None
        self._shown: list[tuple[TreeNode, Outline]] = []  # the widget's nodes and what each shows, in order
        # What the user folded or opened by hand; everything else follows the defaults (see _expanded).
        self._choices: dict[NodeData, bool] = {}

    def compose(self) -> ComposeResult:
        yield Input(placeholder="search: device name or site — enter: keep · esc: clear", id="topology-filter")
        tree = TopologyTree(Text("Synchronizing…", style="dim"), id="topology-tree")
        tree.guide_depth = 3
        tree.auto_expand = False  # enter opens a device; space folds
        yield tree

    def on_mount(self) -> None:
        self.query_one("#topology-filter", Input).display = False

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        key = display_key(snapshot)
        if key == self._key:
            return
        self._key = key
        self._snapshot = snapshot
        self._rebuild()

    def _rebuild(self) -> None:
        snapshot = self._snapshot
        if snapshot is None:
            return
        tree = self.query_one("#topology-tree", Tree)
        cursor = tree.cursor_node.data if tree.cursor_node is not None else None
        outline = build_outline(snapshot, self.host)
        grouped = any(n.data and n.data[0] == "site" for n in _outline_nodes(outline))
        shown = outline
        if self.filter_text:
            shown = filtered(outline, self.filter_text) or Outline(outline.label)
        new_shape = shape(shown)
        if new_shape == self._shape and shown.children:
            # Same devices, links and search: only states and marks moved. Clearing and re-adding a few
            # thousand nodes took ~0.4 s at 1,000 devices; setting the labels that changed keeps the
            # cursor, the folds and the scroll position as they are.
            self.relabels += 1
            tree.root.set_label(shown.label)
            now_shown = _outline_nodes(shown)[1:]
            for (node, before), after in zip(self._shown, now_shown, strict=True):
                if before.label != after.label:
                    node.set_label(after.label)
                if after.problem and not before.problem and after.children and not node.is_expanded \
                        and self._expanded(after, grouped):
                    node.expand()  # a site that just got a problem opens, unless folded by hand
            self._shown = [(node, after) for (node, _), after in zip(self._shown, now_shown, strict=True)]
            return
        self.rebuilds += 1
        tree.clear()
        tree.root.set_label(shown.label)
        if self.filter_text and not shown.children:
            tree.root.add_leaf(Text(f"No device or site matches “{self.filter_text}”. esc clears the search.",
                                    style="dim"))
        tree.root.expand()
        found = self._add(tree.root, shown, cursor, grouped)
        self._shape = new_shape if shown.children else None
        if found is not None:
            # Line numbers exist only after the tree has laid itself out again.
            self.call_after_refresh(tree.move_cursor, found)

    def _expanded(self, node: Outline, grouped: bool) -> bool:
        if self.filter_text:
            return True  # the paths to the matches are open
        if node.data in self._choices:
            return self._choices[node.data]
        if node.data and node.data[0] == "site":
            return node.problem or not grouped
        return True

    def _add(self, root: TreeNode, outline: Outline, cursor: object, grouped: bool) -> TreeNode | None:
        """Add ``outline``'s nodes under ``root`` in the order ``_outline_nodes`` gives (remembered in
        ``_shown`` for in-place relabelling); the first node showing ``cursor``."""
        found = None
        self._shown = []
        stack: list[tuple[TreeNode, Outline]] = [(root, child) for child in reversed(outline.children)]
        while stack:
            parent, child = stack.pop()
            if child.children:
                node = parent.add(child.label, data=child.data, expand=self._expanded(child, grouped))
                stack.extend((node, grandchild) for grandchild in reversed(child.children))
            else:
                node = parent.add_leaf(child.label, data=child.data)
            self._shown.append((node, child))
            if cursor is not None and child.data == cursor and found is None:
                found = node
        return found

    @on(Tree.NodeExpanded, "#topology-tree")
    def _node_expanded(self, event: Tree.NodeExpanded) -> None:
        if event.node.data is not None and not self.filter_text:
            self._choices[event.node.data] = True

    @on(Tree.NodeCollapsed, "#topology-tree")
    def _node_collapsed(self, event: Tree.NodeCollapsed) -> None:
        if event.node.data is not None and not self.filter_text:
            self._choices[event.node.data] = False

    @on(Tree.NodeSelected, "#topology-tree")
    def _node_selected(self, event: Tree.NodeSelected) -> None:
        data = event.node.data
        if data and data[0] in ("device", "device-ref"):
            event.stop()
            open_device = getattr(self.app, "open_device", None)
            if open_device is not None:
                open_device(data[1])

    # ---- `/` search ---------------------------------------------------------------------------------
    def open_filter(self) -> None:
        filter_input = self.query_one("#topology-filter", Input)
        filter_input.display = True
        filter_input.focus()

    def clear_filter(self) -> bool:
        """Clear and hide the search; False when there was nothing to clear."""
        filter_input = self.query_one("#topology-filter", Input)
        if not filter_input.display and not self.filter_text:
            return False
        filter_input.value = ""
        filter_input.display = False
        if self.filter_text:
            self.filter_text = ""
            self._rebuild()
        self.query_one("#topology-tree", Tree).focus()
        return True

    @on(Input.Changed, "#topology-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        text = event.value.strip()
        if text != self.filter_text:
            self.filter_text = text
            self._rebuild()

    @on(Input.Submitted, "#topology-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not self.filter_text:
            self.query_one("#topology-filter", Input).display = False
        self.query_one("#topology-tree", Tree).focus()


def _nodes(node: TreeNode) -> list[TreeNode]:
    return _preorder(node)
