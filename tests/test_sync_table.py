"""sync_table: a refreshed list touches only what changed, and a new order moves rows instead of re-adding them."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import DataTable

from ispvm_tui.screens.widgets import selected_row_key, sync_table


class Counting(DataTable):
    added = 0

    def add_row(self, *cells, **kwargs):  # type: ignore[no-untyped-def, override]
        Counting.added += 1
        return super().add_row(*cells, **kwargs)


class One(App[None]):
    def compose(self) -> ComposeResult:
        table = Counting(cursor_type="row")
        table.add_columns("name", "state")
        yield table


def keys(table: DataTable) -> list[str]:
    return [row.key.value for row in table.ordered_rows]


async def test_a_new_order_moves_rows_keeps_the_cursor_and_adds_nothing() -> None:
    app = One()
    async with app.run_test() as pilot:
        table = app.query_one(Counting)
        names = [f"R{i:03d}" for i in range(300)]
        with app.batch_update():
            sync_table(table, [(n, (n, "up")) for n in names])
        table.move_cursor(row=table.get_row_index("R150"))
        await pilot.pause()
        added = Counting.added
        # R150 goes down and sorts first; everything else keeps its relative order; one row leaves, one comes.
        wanted = ["R150", *[n for n in names if n not in ("R150", "R007")], "R300"]
        with app.batch_update():
            sync_table(table, [(n, (n, "down" if n == "R150" else "up")) for n in wanted])
        await pilot.pause()
        assert keys(table) == wanted
        assert Counting.added == added + 1  # only the new row
        assert selected_row_key(table) == "R150" and table.cursor_row == 0
        assert table.get_row("R150") == ["R150", "down"]
        assert table.get_row_at(1) == ["R000", "up"] and table.get_row_at(299) == ["R300", "up"]
        # And back: the same rows in reverse.
        with app.batch_update():
            sync_table(table, [(n, (n, "up")) for n in reversed(wanted)])
        await pilot.pause()
        assert keys(table) == list(reversed(wanted))
        assert Counting.added == added + 1
        assert selected_row_key(table) == "R150"
