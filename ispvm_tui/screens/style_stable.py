"""Keep a table's or tree's drawn lines across a tab switch, and draw anew only when its styles change.

Textual re-applies the stylesheet to a whole subtree whenever a node's classes, pseudo-classes or display
change, and calls every node's ``notify_style_update`` whether or not its styles changed. DataTable and Tree
answer by throwing away every cached cell and line (Tree also re-walks and re-measures all its nodes). A
shown tab's widgets are also resized from nothing back to their size, which DataTable counts as a change of
every cell and Tree as a reason to re-measure. So a tab switch, which only shows one pane and hides another,
drew the shown table or tree from nothing: ~20 ms for a 160x48 screen of the devices table, ~15 ms for the
topology tree at 1,000 devices, before anything else was drawn.

Their caches are keyed on the width and on the pseudo-class state (focus, hover, enabled), and focusing one
does restyle it (a focused table is tinted, its cursor brighter). So ``StyleStable`` remembers, per
pseudo-class state, the styles the widget was drawn with (its own and its component classes' Rich styles,
every rule of its computed styles), and before the next draw lets the widget's own ``notify_style_update``
empty its caches only when the styles for the state it is in now differ from those: a new theme, a class
that restyles it, a CSS reload. Lines cached under another state were drawn with that state's remembered
styles, and any change empties them all. A resize is passed on only when the size is new.
"""

from __future__ import annotations

from typing import Any

from rich.style import Style
from textual import events
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widget import Widget

_NONE = Style()


def style_fingerprint(widget: Widget) -> tuple[Any, ...]:
    """Everything a style pass can change that a table's or tree's cached lines were drawn with."""
    # Before the stylesheet has given the component classes their styles they read as an empty Style.
    components = tuple(widget.get_component_rich_style(name, default=_NONE)
                       for name in sorted(widget.COMPONENT_CLASSES))
    rules = widget.styles.get_render_rules()
    return (widget.rich_style, widget.background_colors, components, tuple(rules.items()))


class StyleStable:
    """Mixed in before DataTable or Tree: their cache-clearing style update only when styles changed.

    A plain mixin, not a Widget, so it adds no CSS type name to the widgets it is mixed into.
    """

    _styles_drawn: dict[object, tuple[Any, ...]] | None = None  # pseudo-class state -> fingerprint
    _styles_unchecked = False
    _size_drawn: Size | None = None

    def keeps_caches(self) -> bool:
        """False where the widget's caches are not as this expects: the base's update then runs as ever."""
        return True

    def restyle_unkeyed(self) -> None:
        """Empty the caches that are not keyed on the pseudo-class state (at every style change)."""

    def notify_style_update(self) -> None:
        if not self.keeps_caches():
            super().notify_style_update()  # type: ignore[misc]
            return
        # Only Widget's own part now: it empties the Rich style caches. Whether the table's or tree's caches
        # must go is decided before the next draw: the stylesheet gives the component classes (cursor,
        # header, guides) their new styles only after this call.
        assert isinstance(self, Widget)
        Widget.notify_style_update(self)
        self._styles_unchecked = True
        self.refresh()

    def render_lines(self, crop: Region) -> list[Strip]:
        if self._styles_unchecked:
            self._styles_unchecked = False
            self._check_styles()
        return super().render_lines(crop)  # type: ignore[misc]

    def _check_styles(self) -> None:
        assert isinstance(self, Widget)
        self.restyle_unkeyed()
        state = self.get_pseudo_class_state()
        seen = style_fingerprint(self)
        drawn = self._styles_drawn
        if drawn is not None:
            before = drawn.get(state)
            if before == seen:
                return
            if before is None:
                # Not drawn in this state since the caches were last emptied: nothing is cached for it.
                drawn[state] = seen
                return
        self._styles_drawn = {state: seen}
        super().notify_style_update()  # type: ignore[misc]  # the base's: empties every cache

    def _on_resize(self, event: events.Resize) -> None:
        # A hidden tab's widgets are resized to nothing and, shown again, back to the size they had. DataTable
        # counts each resize as an update of every cell and Tree re-measures all its lines; their caches are
        # keyed on the width already, so only a new size is passed on to them (handlers run subclass first,
        # and neither base has another resize handler for this to skip).
        size = event.size
        if self.keeps_caches() and (not size.area or size == self._size_drawn):
            event.prevent_default()
            return
        self._size_drawn = size
