"""The footer of key hints, rebuilt only when the keys it shows change.

Textual's Footer rebuilds all its key widgets whenever the focus moves; with
our panes the shown keys rarely differ, and the rebuild made `tab` sluggish.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class KeyFooter(Footer):
    def __init__(self) -> None:
        super().__init__()
        self._signature: tuple | None = None

    def bindings_changed(self, screen: Screen) -> None:
        signature = tuple((binding.key, binding.description, enabled)
                          for _, binding, enabled, _ in screen.active_bindings.values() if binding.show)
        if signature != self._signature:
            self._signature = signature
            super().bindings_changed(screen)
