"""ConsoleTable (screens/table.py) draws its cells as DataTable does, and updates many cells at once."""

from __future__ import annotations

import pytest
from rich.segment import Segment
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable
from textual.widgets._data_table import CellDoesNotExist

from ispvm_tui.screens.table import ConsoleTable, fast_cells_supported
from ispvm_tui.screens.widgets import severity_text, state_text, sync_table

ROWS: list[tuple[str, tuple[object, ...]]] = [
    ("a", (state_text("up"), "EDGE1", Text("plain"), "—", "")),
    ("b", (state_text("down"), "[bold]markup[/bold] name", Text("x" * 40), severity_text("critical"),
           Text("link down", style="red"))),
    ("c", (Text.assemble(("⚒ maint ", "italic"), "title with a span"), "很宽的字符串很宽的字符串",
           Text("…", style="dim"),
           Text("cut with an ellipsis here", overflow="ellipsis"), Text("right", justify="right"))),
    ("d", (Text(""), "tab\there", Text("two\nlines"), Text("ok", style="green on black"), "12%")),
]
WIDTHS = (10, 14, 8, 12, 7)


class TableApp(App[None]):
    def __init__(self, table: DataTable) -> None:
        super().__init__()
        self.table = table

    def compose(self) -> ComposeResult:
        yield self.table

    def on_mount(self) -> None:
        for index, width in enumerate(WIDTHS):
            self.table.add_column(f"col{index}", key=f"c{index}", width=width)
        for key, cells in ROWS:
            self.table.add_row(*cells, key=key)
        self.table.add_row("tall", "row", "", "", "", key="tall", height=2)


def segments(lines: list[list[Segment]]) -> list[list[tuple[str, object]]]:
    return [[(segment.text, segment.style) for segment in Segment.simplify(line)] for line in lines]


async def test_cells_draw_as_datatable_draws_them() -> None:
    table = ConsoleTable(id="t", cursor_type="row", zebra_stripes=True)
    app = TableApp(table)
    async with app.run_test(size=(80, 12)) as pilot:
        await pilot.pause()
        assert fast_cells_supported(table)  # a Textual upgrade that moved the internals shows up here
        styles = [table.rich_style, table.get_component_styles("datatable--even-row").rich_style]
        compared = 0
        for row_index in range(table.row_count):
            for column_index, width in enumerate(WIDTHS):
                for base in styles:
                    for cursor, hover in ((False, False), (True, False), (False, True)):
                        table._cell_render_cache.clear()
                        slow = DataTable._render_cell(table, row_index, column_index, base, width, cursor, hover)
                        table._cell_render_cache.clear()
                        fast = table._render_cell(row_index, column_index, base, width, cursor, hover)
                        assert segments(fast) == segments(slow), (row_index, column_index, cursor, hover)
                        compared += 1
        assert compared == table.row_count * len(WIDTHS) * len(styles) * 3


async def test_update_cells_sets_every_cell_and_checks_keys() -> None:
    table = ConsoleTable(id="t")
    app = TableApp(table)
    async with app.run_test(size=(80, 12)) as pilot:
        await pilot.pause()
        before = table._update_count
        table.update_cells([("a", "c1", "EDGE9"), ("b", "c4", Text("back up", style="green"))])
        assert table.get_row("a")[1] == "EDGE9"
        assert table.get_row("b")[4] == Text("back up", style="green")
        assert table._update_count > before  # the cached lines of the old values are not reused
        with pytest.raises(CellDoesNotExist):
            table.update_cells([("a", "c0", "x"), ("nope", "c0", "x")])
        await pilot.pause()
        assert "EDGE9" in "".join(segment.text for segment in table.render_line(1))


async def test_sync_table_on_a_console_table_keeps_order_and_cursor() -> None:
    table = ConsoleTable(id="t", cursor_type="row")
    app = TableApp(table)
    async with app.run_test(size=(80, 12)) as pilot:
        await pilot.pause()
        table.move_cursor(row=1)
        rows = [(key, cells) for key, cells in ROWS[::-1]]
        rows[2] = (rows[2][0], ("changed", *rows[2][1][1:]))  # row "b"
        with app.batch_update():
            sync_table(table, rows)
        assert [row.key.value for row in table.ordered_rows] == ["d", "c", "b", "a"]
        assert table.get_row("b")[0] == "changed"
        assert table.ordered_rows[table.cursor_row].key.value == "b"  # the cursor stayed on its row

