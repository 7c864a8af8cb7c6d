"""How a task state looks everywhere on screen: its mark, its colour, and the filters over states."""

from __future__ import annotations

from waveui.run.state import ACTIVE_STATES

from dataclasses import dataclass

from rich.style import Style
from textual.widget import Widget

from waveui.run.state import TaskView

# Below this many columns the panes stack, the header is one line and the help puts its marks under the keys;
# below this many rows the panes share the rows (waveui.tcss styles the classes these breakpoints set).
NARROW_BELOW = 100
SHORT_BELOW = 36
HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_BELOW, "-wide")]
VERTICAL_BREAKPOINTS = [(0, "-short"), (SHORT_BELOW, "-tall")]

MARKS = {
    "pending": "·", "ready": "○", "preparing": "◌", "running": "▶", "paused": "‖", "verifying": "◎",
    "merging": "⇢",    "done": "✓", "failed": "✗", "blocked": "⊘", "conflicted": "≠", "cancelled": "–",
}
# Each state's colour, named after the theme variable (``$task-<colour>``) that paints it.
COLOUR = {
    "pending": "waiting", "ready": "waiting", "preparing": "running", "running": "running", "verifying": "running",
    "merging": "running", "paused": "paused", "done": "done", "failed": "failed",
    "blocked": "blocked", "cancelled": "blocked", "conflicted": "conflicted",
}
STATE_COMPONENTS = {f"task--{colour}" for colour in COLOUR.values()}
CRITICAL_MARK = "◆"
# States in which a task is under way: it holds a worker, or is being set up or merged.

# The state filter `f` cycles through, in order ("all" also takes states this version does not know).
STATE_GROUPS: dict[str, frozenset[str]] = {
    "all": frozenset(COLOUR),
    "running": ACTIVE_STATES,
    "problems": frozenset({"failed", "conflicted", "blocked"}),
    "waiting": frozenset({"pending", "ready"}),
    "done": frozenset({"done", "cancelled"}),
}


def mark(state: str) -> str:
    return MARKS.get(state, "?")


def state_component(state: str) -> str:
    return f"task--{COLOUR.get(state, 'waiting')}"


def component(widget: Widget, name: str) -> Style:
    """A component class's style, blended over the widget (so ``$accent 30%`` comes out right)."""
    return widget.get_component_rich_style(name)


def highlight(widget: Widget, name: str) -> Style:
    """Only the background (and boldness) of a component class: laid over text that keeps its colours."""
    style = widget.get_component_rich_style(name)
    return Style(bgcolor=style.bgcolor, bold=style.bold)


def state_style(widget: Widget, state: str) -> Style:
    """The widget's style for a task in ``state`` (its component classes hold the theme colours)."""
    return component(widget, state_component(state))


@dataclass(frozen=True)
class TaskFilter:
    """Which tasks the timeline lists: a state group and a piece of text to find."""

    text: str = ""
    group: str = "all"

    def matches(self, task: TaskView) -> bool:
        if self.group != "all" and task.state not in STATE_GROUPS.get(self.group, ()):
            return False
        if not self.text:
            return True
        needle = self.text.casefold()
        return any(needle in value.casefold() for value in (task.id, task.title, task.message))

    @property
    def active(self) -> bool:
        return bool(self.text) or self.group != "all"

    def next_group(self) -> TaskFilter:
        names = list(STATE_GROUPS)
        return TaskFilter(self.text, names[(names.index(self.group) + 1) % len(names)])

    def describe(self) -> str:
        parts = [] if self.group == "all" else [self.group]
        if self.text:
            parts.append(f"“{self.text}”")
        return " ".join(parts) or "all"
