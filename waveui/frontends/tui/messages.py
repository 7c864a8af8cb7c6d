"""The Textual messages the app's widgets send to the screen that holds them, and its terminal driver to the app."""

from __future__ import annotations

from textual.message import Message


class TaskSelected(Message):
    """The user picked a task in a pane; the screen selects it in every other pane."""

    def __init__(self, task_id: str) -> None:
        super().__init__()
        self.task_id = task_id


class TaskOpened(Message):
    """The user asked for a task's detail view (Enter, or a double click)."""

    def __init__(self, task_id: str) -> None:
        super().__init__()
        self.task_id = task_id


class FilterClosed(Message):
    """The user left the filter bar (Escape); the screen puts the focus back on its panes."""


class TerminalLost(Message):
    """The terminal went away (SIGHUP, or a write failed): nobody sees the app any more."""


class TerminateRequested(Message):
    """The process was told to end (SIGTERM)."""
