"""What the Line-API panes share: a cache of rendered lines and of their own style."""

from __future__ import annotations

from rich.style import Style
from textual.geometry import Region
from textual.scroll_view import ScrollView
from textual.strip import Strip


def changed_span(old: Strip, new: Strip) -> tuple[int, int] | None:
    """The cells ``new`` draws differently from ``old``, as (first, past the last); None when it looks the same."""
    before = [(char, segment.style) for segment in old for char in segment.text]
    after = [(char, segment.style) for segment in new for char in segment.text]
    if before == after:
        return None
    if not len(before) == len(after) == old.cell_length == new.cell_length:  # wide characters, or another width
        return 0, max(old.cell_length, new.cell_length)
    first = next(i for i, (a, b) in enumerate(zip(before, after)) if a != b)
    last = next(i for i in range(len(after) - 1, -1, -1) if before[i] != after[i])
    return first, last + 1


class CachedLinesView(ScrollView):
    """A ScrollView drawing lines with ``render_line``, caching each and dropping them all when styles change."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._cache: dict[int, Strip] = {}
        self._base: Style | None = None

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()
        self._base = None

    def refresh_cells(self, row: int, old: Strip | None, new: Strip) -> None:
        """Repaint what changed on line ``row`` (of the content) from ``old`` to ``new``: all of it if it was not drawn.

        A running task's row changes a few cells at a time (its time, its
        bar); sending the terminal those alone keeps a busy run's output small.
        """
        span = (0, new.cell_length) if old is None else changed_span(old, new)
        if span is not None:
            first, end = span
            self.refresh(Region(first - int(self.scroll_x), row - int(self.scroll_y), end - first, 1))

    @property
    def base_style(self) -> Style:
        """The widget's own style, kept between lines (working it out walks every ancestor)."""
        if self._base is None:
            self._base = self.rich_style
        return self._base
