"""The conflict list: declared file overlaps and how they are handled, merge conflicts, undeclared changes."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from waveui.run.state import RunState
from waveui.frontends.tui.messages import TaskOpened, TaskSelected
from waveui.core.sanitize import sanitize_line

HANDLING = {"serialise": "run one after the other", "lock": "never at the same time",
            "defer": "both run; merged one by one"}


def _files(files: list[str]) -> str:
    return ", ".join(sanitize_line(f) for f in files) or "—"


class ConflictList(OptionList):
    """Each entry names a task: highlighting it selects that task everywhere."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._signature: tuple = ()
        self.counts = (0, 0, 0)

    def show(self, state: RunState) -> None:
        """Rebuild the list when what it shows changed (it seldom does)."""
        merge = tuple((t.id, tuple(t.files)) for t in state.tasks.values() if t.state == "conflicted")
        signature = (tuple(map(repr, state.conflicts)), merge, tuple(state.undeclared().items()))
        if signature == self._signature:
            return
        self._signature = signature
        highlighted = self.highlighted
        self.clear_options()
        self.add_options(self._entries(state))
        if highlighted is not None and self.option_count:
            self.highlighted = min(highlighted, self.option_count - 1)

    def _entries(self, state: RunState) -> list[Option]:
        merge = [t for t in state.tasks.values() if t.state == "conflicted"]
        undeclared = state.undeclared()
        self.counts = (len(state.conflicts), len(merge), len(undeclared))
        options: list[Option] = []
        options.append(self._heading("Merge conflicts", len(merge)))
        for n, task in enumerate(merge):
            options.append(Option(Content.assemble(
                ("≠ ", "$task-conflicted"), (task.id, "bold"), "  ", (_files(task.files), "$text-muted")),
                id=f"merge:{n}:{task.id}"))
        options.append(self._heading("Declared overlaps", len(state.conflicts)))
        for n, conflict in enumerate(state.conflicts):
            a, b = (list(conflict.get("tasks", [])) + ["?", "?"])[:2]
            handling = str(conflict.get("handling", ""))
            options.append(Option(Content.assemble(
                (sanitize_line(str(a)), "bold"), " ↔ ", (sanitize_line(str(b)), "bold"), "  ",
                (handling, "$accent"), (f" ({HANDLING[handling]})" if handling in HANDLING else "", "$text-muted"),
                "\n    ", (_files(list(conflict.get("files", []))), "$text-muted")),
                id=f"overlap:{n}:{a}"))
        options.append(self._heading("Changed but not declared", len(undeclared)))
        for n, (task_id, files) in enumerate(undeclared.items()):
            options.append(Option(Content.assemble(
                ("! ", "$warning"), (task_id, "bold"), "  ", (_files(files), "$text-muted")),
                id=f"undeclared:{n}:{task_id}"))
        return options

    @staticmethod
    def _heading(title: str, count: int) -> Option:
        style = "bold $text-muted" if count == 0 else "bold"
        return Option(Content.assemble((f"{title} ({count})", style)), disabled=True)

    @staticmethod
    def task_of(option: Option) -> str | None:
        if option.id is None:
            return None
        return option.id.split(":", 2)[2]

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        task_id = self.task_of(event.option)
        if self.has_focus and task_id:
            self.post_message(TaskSelected(task_id))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        task_id = self.task_of(event.option)
        if task_id:
            self.post_message(TaskOpened(task_id))
