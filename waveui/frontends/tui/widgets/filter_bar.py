"""The filter bar: a one-line input that narrows the main screen's panes to the tasks that match."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input

from waveui.frontends.tui.messages import FilterClosed


class FilterBar(Input):
    """The text filter: typing narrows the timeline; Enter keeps it, Escape clears it."""

    BINDINGS = [Binding("escape", "clear", "Clear filter", id="filter.clear")]

    def action_clear(self) -> None:
        self.value = ""
        self.post_message(FilterClosed())
