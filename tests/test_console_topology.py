"""The Topology tab: root causes marked, what they cut off dimmed, `/` search, sites folded, enter opens a device."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from typing import Any

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Input, Tree
from textual.widgets.tree import TreeNode

from ispvm_tui.app import IspvmApp
from ispvm_tui.demo import DemoRun, start_demo
from ispvm_tui.engine.api import DeviceView, Impact, LinkView, RootCause, Snapshot
from ispvm_tui.screens.devices import DeviceDetailScreen
from ispvm_tui.screens.topology import TopologyPane, TopologyTree
from tests.held_faults import held
from tests.test_console import DOWN_LINK, NOW, build_snapshot
from tests.test_console_deliveries import until
from tests.test_console_devices import DetailEngine


def walk(node: TreeNode) -> list[TreeNode]:
    found = [node]
    for child in node.children:
        found += walk(child)
    return found


def node_of(tree: Tree, data: tuple[str, ...]) -> TreeNode:
    return next(n for n in walk(tree.root) if n.data == data)


def devices_in(tree: Tree) -> list[str]:
    return sorted(n.data[1] for n in walk(tree.root) if n.data and n.data[0] == "device")


async def open_topology(pilot: Pilot[Any]) -> tuple[TopologyPane, Tree]:
    app = pilot.app
    assert isinstance(app, IspvmApp)
    await pilot.press("3")
    tree = app.topology_pane.query_one("#topology-tree", Tree)
    await until(pilot, lambda: app.focused is tree and len(walk(tree.root)) > 3)
    return app.topology_pane, tree


@pytest.fixture
def engine() -> DetailEngine:
    return DetailEngine(build_snapshot())


async def test_root_causes_are_marked_and_what_they_cut_off_is_dimmed(engine: DetailEngine) -> None:
    app = IspvmApp(engine, actor="alice")  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        _, tree = await open_topology(pilot)
        link = node_of(tree, ("link", DOWN_LINK)).label
        assert "✖ down" in link.plain and "◉ root of INC-1" in link.plain  # in words, not only in style
        assert any("reverse" in str(span.style) for span in link.spans) or "reverse" in str(link.style)
        cut = node_of(tree, ("device", "POPA-AP1")).label
        assert "⊘ cut off (INC-1)" in cut.plain and "dim" in str(cut.spans[0].style) + str(cut.style)
        # A root that is also in its own impact is marked a root, not cut off.
        popb = node_of(tree, ("device", "POPB-AGG")).label.plain
        assert "◉ root of INC-2" in popb and "cut off" not in popb
        # The closed incident marks nothing; a healthy device has no marker.
        assert "root" not in node_of(tree, ("device", "EDGE1")).label.plain


async def test_search_narrows_to_matches_and_escape_restores(engine: DetailEngine) -> None:
    app = IspvmApp(engine, actor="alice")  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        pane, tree = await open_topology(pilot)
        everything = devices_in(tree)
        assert len(everything) == 5
        await pilot.press("slash")
        search = pane.query_one("#topology-filter", Input)
        await until(pilot, lambda: app.focused is search)
        await pilot.press(*"ap1")
        await until(pilot, lambda: devices_in(tree) == ["CORE1", "EDGE1", "POPA-AGG", "POPA-AP1"])
        # Only the path to the match, all of it open; the sibling branches are gone.
        ap1 = node_of(tree, ("device", "POPA-AP1"))
        parent = ap1.parent
        while parent is not None:
            assert parent.is_expanded
            parent = parent.parent
        assert not any(n.data == ("device", "POPB-AGG") for n in walk(tree.root))
        search.value = "pop-b"  # the site matches too, whatever the case
        await until(pilot, lambda: "POPB-AGG" in devices_in(tree) and "POPA-AP1" not in devices_in(tree))
        search.value = "nothing-like-it"
        await until(pilot, lambda: devices_in(tree) == [] and "No device or site matches"
                    in str(tree.root.children[0].label))
        await pilot.press("escape")
        await until(pilot, lambda: devices_in(tree) == everything and not search.display)
        assert app.incidents_pane.filter_text == ""


async def test_enter_on_a_device_opens_its_detail(engine: DetailEngine) -> None:
    app = IspvmApp(engine, actor="alice")  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        _, tree = await open_topology(pilot)
        core = node_of(tree, ("device", "CORE1"))
        tree.move_cursor(core)
        await until(pilot, lambda: tree.cursor_node is core)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DeviceDetailScreen))
        screen = app.screen
        assert isinstance(screen, DeviceDetailScreen) and screen.device_name == "CORE1"
        await until(pilot, lambda: screen.detail is not None)
        await pilot.press("q")
        await until(pilot, lambda: not isinstance(app.screen, DeviceDetailScreen))
        assert core.is_expanded  # enter opened the device; it did not fold its node


async def test_folding_and_the_cursor_survive_a_new_snapshot(engine: DetailEngine) -> None:
    app = IspvmApp(engine, actor="alice", refresh_s=600)  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        pane, tree = await open_topology(pilot)
        agg = node_of(tree, ("device", "POPA-AGG"))
        tree.move_cursor(agg)
        await pilot.press("space")  # fold it
        await until(pilot, lambda: not agg.is_expanded and tree.cursor_node is agg)
        built = pane.rebuilds
        snap = build_snapshot()
        # Poll times only: nothing the tree shows, no rebuild.
        engine.set_snapshot(replace(snap, taken_at=NOW + 5,
                                    devices=tuple(replace(d, last_poll_at=NOW + 5) for d in snap.devices)))
        await pilot.press("r")
        await until(pilot, lambda: app.snapshot is not None and app.snapshot.taken_at == NOW + 5)
        assert pane.rebuilds == built and node_of(tree, ("device", "POPA-AGG")) is agg
        # A state change on the same devices and links relabels the nodes in place: no rebuild, the fold
        # and the cursor stay where they were.
        relabels = pane.relabels
        devices = tuple(replace(d, state="down") if d.name == "POPB-AGG" else d for d in snap.devices)
        engine.set_snapshot(replace(snap, taken_at=NOW + 6, devices=devices))
        await pilot.press("r")
        await until(pilot, lambda: pane.relabels > relabels)
        assert pane.rebuilds == built
        assert "down" in str(node_of(tree, ("device", "POPB-AGG")).label)
        assert node_of(tree, ("device", "POPA-AGG")) is agg and not agg.is_expanded and tree.cursor_node is agg
        assert node_of(tree, ("device", "CORE1")).is_expanded
        # A new link changes the shape: the tree is rebuilt, and the fold and the cursor still stay.
        extra = LinkView("CORE1:ether9--POPB-AGG:ether9", "CORE1:ether9", "POPB-AGG:ether9", "up")
        engine.set_snapshot(replace(snap, taken_at=NOW + 7, devices=devices, links=(*snap.links, extra)))
        await pilot.press("r")
        await until(pilot, lambda: pane.rebuilds > built)
        again = node_of(tree, ("device", "POPA-AGG"))
        assert again is not agg and not again.is_expanded
        await until(pilot, lambda: tree.cursor_node is not None and tree.cursor_node.data == ("device", "POPA-AGG"))
        assert node_of(tree, ("device", "CORE1")).is_expanded


def fleet(pops: int = 12, per_pop: int = 20) -> Snapshot:
    """A core with ``pops`` sites of ``per_pop`` devices each (a chain behind each POP's aggregation)."""
    devices = [DeviceView("CORE", "HQ", "core", "10.0.0.1", "up")]
    links = []
    for p in range(pops):
        site = f"POP{p:02d}"
        names = [f"{site}-D{d:02d}" for d in range(per_pop)]
        devices += [DeviceView(n, site, "access", f"10.{p}.0.{d}", "up") for d, n in enumerate(names)]
        links.append(LinkView(f"CORE:e{p}--{names[0]}:e0", f"CORE:e{p}", f"{names[0]}:e0", "up"))
        links += [LinkView(f"{a}:e1--{b}:e0", f"{a}:e1", f"{b}:e0", "up") for a, b in itertools.pairwise(names)]
    snap = build_snapshot()
    cut = replace(snap.incidents[0], root_causes=(RootCause("device", "POP03-D00", "POP03-D00", 0.9),),
                  impact=Impact(1, 2, devices=("POP03-D01", "POP03-D02")))
    devices = [replace(d, state="down") if d.name == "POP03-D00" else d for d in devices]
    return replace(snap, vantage=("CORE",), devices=tuple(devices), links=tuple(links), incidents=(cut,))


async def test_a_large_fleet_opens_site_by_site() -> None:
    engine = DetailEngine(fleet())
    app = IspvmApp(engine, actor="alice")  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        _, tree = await open_topology(pilot)
        sites = [n for n in walk(tree.root) if n.data and n.data[0] == "site"]
        assert sorted(n.data[1] for n in sites) == [f"POP{p:02d}" for p in range(12)]
        folded = {n.data[1] for n in sites if not n.is_expanded}
        assert folded == {f"POP{p:02d}" for p in range(12)} - {"POP03"}  # the one with a problem is open
        pop03 = next(n for n in sites if n.data[1] == "POP03")
        assert "20 devices, 1 down" in pop03.label.plain and "⚠ problem" in pop03.label.plain
        assert tree.last_line < 200  # 241 devices, but only what is open takes lines
        # The search reaches into folded sites and opens the path.
        await pilot.press("slash")
        await pilot.press(*"pop07-d05")
        # The path to it, and what hangs below it (the rest of the chain): no other site.
        await until(pilot, lambda: devices_in(tree) == ["CORE", *[f"POP07-D{d:02d}" for d in range(20)]])
        site = next(n for n in walk(tree.root) if n.data and n.data[0] == "site")
        assert site.is_expanded and site.data[1] == "POP07"
        await pilot.press("escape")
        await until(pilot, lambda: len(devices_in(tree)) == 241)
        assert {n.data[1] for n in walk(tree.root) if n.data and n.data[0] == "site" and not n.is_expanded} == folded


# -- on the real engine: a core link cut in the lab ------------------------------------------------------

@pytest.fixture
def cut(address_base: str):
    run = start_demo(held("core-link-cut"), speed=10.0, address_base=address_base)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any(i.impact.devices for i in run.engine.snapshot().incidents):
        time.sleep(0.1)
    assert any(i.impact.devices for i in run.engine.snapshot().incidents), "the cut should open an incident"
    yield run
    run.stop()


async def test_a_lab_link_cut_marks_its_root_and_dims_what_it_cut_off(cut: DemoRun) -> None:
    app = IspvmApp(cut.engine, actor="noc")
    async with app.run_test(size=(80, 24)) as pilot:
        _, tree = await open_topology(pilot)

        def marked() -> bool:
            snap = app.snapshot
            incident = next((i for i in snap.incidents if i.status != "closed" and i.impact.devices), None) \
                if snap else None
            if incident is None:
                return False
            labels = {n.data: n.label.plain for n in walk(tree.root) if n.data}
            roots = [c for c in incident.root_causes if c.entity_type in ("link", "device")]
            return bool(roots) and all(
                "◉ root" in labels.get((c.entity_type, c.entity_id), "") for c in roots) and all(
                "⊘ cut off" in labels.get(("device", d), "") or "◉ root" in labels.get(("device", d), "")
                for d in incident.impact.devices)

        await until(pilot, marked, timeout=60)


def test_a_chain_of_a_thousand_routers_is_one_deep_tree_without_recursion() -> None:
    """Each hop is two levels (device, link): a recursive walk stopped at Python's recursion limit."""
    from ispvm_tui.screens.topology import build_outline, filtered, shape

    names = [f"R{i:04d}" for i in range(1000)]
    devices = tuple(DeviceView(n, "S", "access", f"10.9.{i // 250}.{i % 250}", "down" if i == 999 else "up")
                    for i, n in enumerate(names))
    links = tuple(LinkView(f"{a}:e1--{b}:e0", f"{a}:e1", f"{b}:e0", "up") for a, b in itertools.pairwise(names))
    snap = replace(build_snapshot(), vantage=(names[0],), devices=devices, links=links, incidents=(), alerts=())
    outline = build_outline(snap, "noc")
    assert len(shape(outline)) == 1000 + 999
    assert outline.children[0].problem  # the down router at the far end marks the whole path
    last = filtered(outline, "R0999")
    assert last is not None and len(shape(last)) == 1000 + 999
    assert filtered(outline, "nothing-like-it") is None


async def test_the_console_shows_a_thousand_router_chain() -> None:
    names = [f"R{i:04d}" for i in range(1000)]
    devices = tuple(DeviceView(n, "S", "access", f"10.9.{i // 250}.{i % 250}", "up") for i, n in enumerate(names))
    links = tuple(LinkView(f"{a}:e1--{b}:e0", f"{a}:e1", f"{b}:e0", "up") for a, b in itertools.pairwise(names))
    engine = DetailEngine(replace(build_snapshot(), vantage=(names[0],), devices=devices, links=links,
                                  incidents=(), alerts=()))
    app = IspvmApp(engine, actor="alice")  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        pane, tree = await open_topology(pilot)
        await pilot.press("end")
        await until(pilot, lambda: tree.cursor_node is not None and tree.cursor_node.data == ("device", "R0999"))
        assert pane.rebuilds == 1


def test_topology_tree_measures_lines_as_tree_draws_them() -> None:
    tree = TopologyTree(Text("root"))
    branch = tree.root.add(Text.assemble(("✔ up", "green"), "  CORE1  ", ("core · hq", "dim")), expand=True)
    branch.add_leaf(Text("link ✖ down  sfp1 ↔ sfp2 · 10G · 很宽"))
    folded = tree.root.add(Text("▣ site NORTH  12 devices"), expand=False)
    folded.add_leaf("inside")
    empty = tree.root.add_leaf("")
    for node in (tree.root, branch, branch.children[0], folded, empty):
        assert tree.get_label_width(node) == Tree.get_label_width(tree, node)
