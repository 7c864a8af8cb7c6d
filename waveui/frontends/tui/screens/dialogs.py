"""Modal questions: confirm cancelling a task, and how to leave a live run when quitting."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmCancel(ModalScreen[bool]):
    """Cancel a task for good? Its dependents become blocked."""

    BINDINGS = [
        Binding("y", "answer(True)", "Cancel the task", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "Keep it", id="confirm.no"),
    ]

    def __init__(self, task_id: str, dependents: int) -> None:
        super().__init__()
        self.task_id = task_id
        self.dependents = dependents

    def compose(self) -> ComposeResult:
        after = (f"{self.dependents} task{'s' if self.dependents != 1 else ''} waiting on it, directly or not, "
                 "will be blocked."
                 if self.dependents else "No task waits on it.")
        with Vertical(classes="dialog"):
            yield Static(Content.assemble("Cancel ", (self.task_id, "bold"), "?"), classes="dialog-title")
            yield Static(f"It stops for good. {after}", classes="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel task (y)", variant="error", id="yes")
                yield Button("Keep it (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class QuitLiveRun(ModalScreen[str | None]):
    """Quitting while the run goes on: stop it, or leave it for `waveui run` to resume."""

    BINDINGS = [
        Binding("l", "answer('leave')", "Leave resumable", id="quit.leave"),
        Binding("s", "answer('stop')", "Stop the run", id="quit.stop"),
        Binding("escape,n", "answer(None)", "Stay", id="quit.stay"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Quit while the run is going?", classes="dialog-title")
            yield Static("Leave it resumable: running tasks go on, and `waveui run` adopts them and picks up "
                         "where it left off.\n"
                         "Stop the run: every running task is stopped; `waveui run` later runs them again.",
                         classes="dialog-text")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Leave resumable (l)", variant="primary", id="leave")
                yield Button("Stop the run (s)", variant="error", id="stop")
                yield Button("Stay (esc)", id="stay")

    def on_mount(self) -> None:
        self.query_one("#leave", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "stay" else event.button.id)

    def action_answer(self, answer: str | None) -> None:
        self.dismiss(answer)
