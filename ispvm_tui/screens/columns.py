"""Table columns fitted to the pane's width: nothing scrolls off to the right at 80 columns.

A column set names which columns stay on a narrow pane (``narrow``) and one flexible column (width 0) that
takes what the others leave, never under ``MIN_FLEX``. A pane keeps a ``FittedColumns`` per table, refits it
on resize and builds each row's cells by column key, so a narrow pane simply shows fewer of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from textual.widgets import DataTable

from ispvm_tui.screens.widgets import selected_row_key

MIN_FLEX = 16  # the flexible column never gets narrower than this
SCROLLBAR = 2  # the vertical scrollbar's width, kept free
WIDE_MIN = 110  # from this pane width on, every column shows


@dataclass(frozen=True)
class Column:
    label: str
    key: str
    width: int  # 0: takes what the others leave
    narrow: bool = True  # kept when the pane is narrower than the set's wide_min


def fit_columns(spec: Sequence[Column], available: int, padding: int = 1,
                wide_min: int = WIDE_MIN) -> tuple[tuple[str, str, int], ...]:
    """The columns to show at this width, the flexible one sized to the rest (label, key, width)."""
    columns = [c for c in spec if c.narrow or available >= wide_min]
    used = sum(c.width + 2 * padding for c in columns if c.width) + 2 * padding
    flex = max(MIN_FLEX, available - used)
    return tuple((c.label, c.key, c.width or flex) for c in columns)


class FittedColumns:
    """One table's columns for its pane's current width."""

    def __init__(self, spec: Sequence[Column], wide_min: int = WIDE_MIN) -> None:
        self.spec = tuple(spec)
        self.wide_min = wide_min
        self.fitted: tuple[tuple[str, str, int], ...] = ()
        self.restore: str | None = None  # the row selected when the columns were last rebuilt

    @property
    def keys(self) -> list[str]:
        return [key for _, key, _ in self.fitted]

    def fit(self, table: DataTable, width: int) -> bool:
        """Rebuild ``table``'s columns for a pane ``width`` wide; True when they changed (its rows are then
        gone: the caller renders them again). The selected row is kept when it comes back."""
        fitted = fit_columns(self.spec, width - SCROLLBAR, wide_min=self.wide_min)
        if fitted == self.fitted:
            return False
        self.restore = selected_row_key(table)
        table.clear(columns=True)
        for label, key, column_width in fitted:
            table.add_column(label, key=key, width=column_width)
        self.fitted = fitted
        return True

    def cells(self, values: Mapping[str, object]) -> list[object]:
        """A row's cells for the columns shown, from every column's value by key."""
        return [values[key] for key in self.keys]

    def reselect(self, table: DataTable) -> None:
        """After the rows are back: the row selected before a refit, selected again."""
        restore, self.restore = self.restore, None
        if restore is not None and restore in table.rows:
            table.move_cursor(row=table.get_row_index(restore), animate=False)
