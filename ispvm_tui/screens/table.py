"""ConsoleTable: Textual's DataTable, cheaper to draw and to update at fleet scale.

A DataTable draws each cell through Rich's whole pipeline (Styled(Padding(Text)) → render_lines →
split_and_crop_lines): ~0.3 ms a cell, ~3 ms a line of the devices table, so ~130 ms for a 160x48 screen of
it. Its caches are keyed on every update and on focus, so that cost comes back after each snapshot that
changes a cell and on every tab switch. Two changes, same pixels:

* a one-line Text cell in a one-line row (every cell the console puts in a table) is cut, padded and styled
  here in a few Segment operations, using the same Rich calls on the Text itself (``truncate``,
  ``render``); anything else (wrapping, tabs, justify, headers, row labels) goes through DataTable's own
  path. ``tests/test_console_table.py`` holds both paths to the same segments.
* ``update_cells`` writes many cells and refreshes once; ``update_cell`` refreshes (and recomputes the dirty
  region) per cell, which was ~10 % of applying a snapshot to 1,000 rows.

Both lean on DataTable internals of the Textual pinned in requirements.lock (``_render_cell``'s cache key,
``_data``); ``fast_cells_supported`` says whether they are still there, and the table falls back to
DataTable's own code when they are not.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets._data_table import CellDoesNotExist, ColumnKey, RowKey

from ispvm_tui.screens.style_stable import StyleStable

_CACHES = ("_cell_render_cache", "_row_locations", "_column_locations", "_data", "_update_count",
           "_get_row_renderables", "_get_styles_to_render_cell", "_pseudo_class_state")


_NEWLINE = Text("\n")


def fast_cells_supported(table: DataTable) -> bool:
    return all(hasattr(table, name) for name in _CACHES)


class ConsoleTable(StyleStable, DataTable):
    """A DataTable whose plain one-line cells draw without Rich's layout machinery."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._fast = fast_cells_supported(self)

    def keeps_caches(self) -> bool:
        return self._fast

    def restyle_unkeyed(self) -> None:
        # The cursor's and hover's component styles, cached by cell kind but not by focus.
        self._get_styles_to_render_cell.cache_clear()

    def row_values(self, row: str, columns: list[ColumnKey]) -> list[object]:
        """``get_row(row)`` for the given column order, without rebuilding that order per row."""
        if not self._fast:
            return self.get_row(row)
        row_key = RowKey(row)
        if row_key not in self._row_locations:
            return self.get_row(row)  # raises as get_row does
        cells = self._data[row_key]
        return [cells[column] for column in columns]

    def update_cells(self, changes: Iterable[tuple[str | RowKey, str | ColumnKey, object]]) -> None:
        """Set many cells (row key, column key, value) with one refresh; as ``update_cell`` each."""
        changes = list(changes)
        if not changes:
            return
        if not self._fast:
            for row, column, value in changes:
                self.update_cell(row, column, value)
            return
        for row, column, value in changes:
            row_key = row if isinstance(row, RowKey) else RowKey(row)
            column_key = column if isinstance(column, ColumnKey) else ColumnKey(column)
            if row_key not in self._row_locations or column_key not in self._column_locations:
                raise CellDoesNotExist(f"No cell exists for row_key={row_key!r}, column_key={column_key!r}.")
            self._data[row_key][column_key] = value
        self._update_count += 1
        self.refresh()

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False) -> list[list[Segment]]:
        if not self._fast or row_index < 0 or column_index < 0:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        # DataTable's own key, so a cell drawn either way is found by both.
        cache_key = (row_key, column_key, base_style, cursor, hover, self._show_hover_cursor, self._update_count,
                     self._pseudo_class_state)
        cache = self._cell_render_cache
        if cache_key in cache:
            return cache[cache_key]
        lines = self._fast_cell(row_index, column_index, row_key, base_style, width, cursor, hover)
        if lines is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cache[cache_key] = lines
        return lines

    def _fast_cell(self, row_index: int, column_index: int, row_key: RowKey | None, base_style: Style,
                   width: int, cursor: bool, hover: bool) -> list[list[Segment]] | None:
        """The cell's one line, or None when it needs DataTable's general path."""
        row = self.rows.get(row_key) if row_key is not None else None
        if row is None or row.height != 1 or row.auto_height:
            return None
        cell = self._get_row_renderables(row_index).cells[column_index]
        if not isinstance(cell, Text) or cell.no_wrap is False or cell.justify not in (None, "default"):
            return None
        plain = cell.plain
        if "\n" in plain or "\t" in plain:
            return None
        pad = self.cell_padding
        inner = width - 2 * pad
        console = self.app.console
        options = self.app.console_options
        overflow = cell.overflow or options.overflow or "fold"
        if inner < 1 or options.justify not in (None, "default") or overflow == "ignore":
            return None
        is_fixed = row_index < self.fixed_rows or column_index < self.fixed_columns
        component_style, post_style = self._get_styles_to_render_cell(
            False, False, is_fixed, hover, cursor, self.show_cursor, self._show_hover_cursor,
            self.cursor_foreground_priority == "css", self.cursor_background_priority == "css",
        )
        # As DataTable: the cell's meta, then the component style under the Text's own, post_style on top.
        pre_style = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component_style
        text = cell
        if text.cell_len > inner:
            text = cell.copy()
            text.truncate(inner, overflow=overflow)
        padding = Segment(" " * pad, pre_style + post_style) if pad else None
        line: list[Segment] = [padding] if padding else []
        # Joined as Text.__rich_console__ joins its lines: that turns the Text's own style into a span,
        # which render() alone would leave out.
        for segment in _NEWLINE.join((text,)).render(console, end=""):
            style = segment.style
            line.append(Segment(segment.text, (pre_style + style if style else pre_style) + post_style))
        fill = inner - text.cell_len
        if fill > 0:
            line.append(Segment(" " * fill, pre_style + post_style))
        if padding:
            line.append(padding)
        return [line]
