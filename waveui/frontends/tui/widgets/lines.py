"""What the Line-API panes share: a cache of rendered lines and of their own style."""

from __future__ import annotations

from rich.style import Style
from textual.scroll_view import ScrollView
from textual.strip import Strip


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

    @property
    def base_style(self) -> Style:
        """The widget's own style, kept between lines (working it out walks every ancestor)."""
        if self._base is None:
            self._base = self.rich_style
        return self._base
