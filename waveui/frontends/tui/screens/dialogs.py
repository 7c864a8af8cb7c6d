"""Modal questions: confirm cancelling a task, where to retry one from, and how to leave a live run when quitting."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, OptionList, Static
from textual.widgets.option_list import Option

from waveui.core.sanitize import sanitize_line
from waveui.run.state import Attempt


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


class RetryFrom(ModalScreen[int | None]):
    """Retry a task from the integration tip, as its first attempt started, or from the work an attempt kept.

    Answers the attempt to start from, None for the tip; escape closes it
    without an answer, and nothing is retried.
    """

    BINDINGS = [Binding("escape", "app.pop_screen", "Do not retry", id="retry.close")]

    def __init__(self, task_id: str, kept: list[Attempt]) -> None:
        super().__init__()
        self.task_id = task_id
        self.choices: list[int | None] = [None, *(a.number for a in reversed(kept))]  # the tip, then newest first
        self.kept = {a.number: a for a in kept}

    def compose(self) -> ComposeResult:
        options = [Option(Content.assemble(("from the tip", "bold"), ("  the integration branch as it is now",
                                                                      "$text-muted")))]
        for number in self.choices[1:]:
            attempt = self.kept[number]
            why = sanitize_line(f": {attempt.reason}" if attempt.reason else "")
            options.append(Option(Content.assemble((f"from attempt {number}", "bold"),
                                                   (f"  its kept work ({attempt.outcome or 'kept'}{why})",
                                                    "$text-muted"))))
        with Vertical(classes="dialog"):
            yield Static(Content.assemble("Retry ", (self.task_id, "bold"), " from where?"), classes="dialog-title")
            yield OptionList(*options, id="retry-choices")
            yield Static("↑/↓ choose · enter retry · esc do not retry", classes="dialog-hint")

    def on_mount(self) -> None:
        choices = self.query_one("#retry-choices", OptionList)
        choices.highlighted = 0
        choices.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.choices[event.option_index])


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
