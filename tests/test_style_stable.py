"""StyleStable (screens/style_stable.py): a shown tab's table and tree keep their drawn lines, and draw anew
when their styles really change (focus the first time, a theme).

The check for "anew when it matters" is the widget's own: after every step the lines on screen are compared
with what the same widget draws once all its caches are emptied.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import DataTable, Static, TabbedContent, TabPane, Tree

from ispvm_tui.screens.table import ConsoleTable
from ispvm_tui.screens.topology import TopologyTree
from ispvm_tui.screens.widgets import state_text

ROWS = 60
DEVICES = 40


class CountingTable(ConsoleTable):
    """Counts the cells it draws rather than takes from its cache."""

    drawn = 0

    def _fast_cell(self, *args: object, **kwargs: object) -> list[list[Segment]] | None:
        self.drawn += 1
        return super()._fast_cell(*args, **kwargs)  # type: ignore[arg-type]


class CountingTree(TopologyTree):
    """Counts how often it re-walks and re-measures its nodes."""

    builds = 0

    def _build(self) -> None:
        self.builds += 1
        super()._build()


class TabsApp(App[None]):
    # As the console's tabs: each list fills its pane and scrolls itself.
    CSS = "CountingTable, CountingTree { height: 1fr; }"

    def compose(self) -> ComposeResult:
        with TabbedContent(id="tabs"):
            with TabPane("Table", id="tab-table"):
                yield CountingTable(id="table", cursor_type="row", zebra_stripes=True)
            with TabPane("Tree", id="tab-tree"):
                tree = CountingTree(Text("network"), id="tree")
                tree.guide_depth = 3
                yield tree
            with TabPane("Other", id="tab-other"):
                yield Static("nothing here", id="other")

    def on_mount(self) -> None:
        table = self.query_one(CountingTable)
        for key in ("state", "name", "site", "note"):
            table.add_column(key, key=key)
        for index in range(ROWS):
            table.add_row(state_text("up" if index % 3 else "down"), f"EDGE{index}", f"POP-{index % 7}",
                          Text(f"note {index}", style="italic"), key=f"r{index}")
        tree = self.query_one(CountingTree)
        tree.root.expand()
        for site in range(4):
            node = tree.root.add(Text(f"POP-{site}", style="bold"), expand=True)
            for device in range(DEVICES // 4):
                node.add_leaf(state_text("up").append(f"  EDGE{site}-{device}"))


def screen_lines(widget: DataTable | Tree) -> list[Strip]:
    """The widget's lines as the compositor asks for them (render_lines reads the focus state first)."""
    return widget.render_lines(Region(0, 0, *widget.size))


def fresh_lines(widget: DataTable | Tree) -> list[Strip]:
    """What the widget draws with every cache emptied (the base class's own style update does that)."""
    base = DataTable if isinstance(widget, DataTable) else Tree
    base.notify_style_update(widget)  # type: ignore[arg-type]
    if isinstance(widget, Tree):
        widget._tree_lines  # noqa: B018 - rebuilt on access, as the tree does on idle
    return screen_lines(widget)


async def show(app: TabsApp, pilot: object, tab: str, focus: str | None) -> None:
    app.query_one("#tabs", TabbedContent).active = f"tab-{tab}"
    if focus is not None:
        app.query_one(focus).focus()
    await pilot.pause()  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]


async def test_a_tab_shown_again_draws_nothing_anew() -> None:
    app = TabsApp()
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.query_one(CountingTable)
        tree = app.query_one(CountingTree)
        await show(app, pilot, "table", "#table")
        await show(app, pilot, "tree", "#tree")
        await show(app, pilot, "other", None)
        # Each has now been drawn focused and unfocused (focus moved away while hidden).
        await show(app, pilot, "table", "#table")
        await show(app, pilot, "tree", "#tree")
        drawn, builds = table.drawn, tree.builds
        for _ in range(3):
            await show(app, pilot, "table", "#table")
            table_lines = screen_lines(table)
            await show(app, pilot, "tree", "#tree")
            tree_lines = screen_lines(tree)
        assert table.drawn == drawn, "the table drew cells again for a tab shown again"
        assert tree.builds == builds, "the tree re-measured its lines for a tab shown again"
        # ... and what they show from their caches is what they would draw from nothing.
        await show(app, pilot, "table", "#table")
        assert screen_lines(table) == table_lines == fresh_lines(table)
        await show(app, pilot, "tree", "#tree")
        assert screen_lines(tree) == tree_lines == fresh_lines(tree)


async def test_focus_and_theme_still_redraw() -> None:
    app = TabsApp()
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.query_one(CountingTable)
        await show(app, pilot, "table", "#table")
        focused = screen_lines(table)
        assert focused == fresh_lines(table)
        app.screen.set_focus(None)  # the table stays shown, blurred
        await pilot.pause()
        blurred = screen_lines(table)
        assert blurred == fresh_lines(table)
        assert blurred != focused  # a focused table is tinted and its cursor brighter
        table.focus()
        await pilot.pause()
        assert screen_lines(table) == focused

        drawn = table.drawn
        app.theme = "textual-light"
        await pilot.pause()
        await pilot.pause()
        light = screen_lines(table)
        assert table.drawn > drawn, "a new theme must redraw the cells"
        assert light != focused
        assert light == fresh_lines(table)

        tree = app.query_one(CountingTree)
        await show(app, pilot, "tree", "#tree")
        assert screen_lines(tree) == fresh_lines(tree)
