"""The worker table: one row per worker slot, updated cell by cell (htop-like: a free slot says so)."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import DataTable

from waveui.run.state import RunState, TaskView
from waveui.run import metrics
from waveui.frontends.tui.look import mark
from waveui.frontends.tui.messages import TaskOpened, TaskSelected
from waveui.run.usage import Usage
from waveui.core.sanitize import sanitize_line
from waveui.frontends.tui.text import fit

# (key, label, width): fixed widths, so a changed cell never costs a layout pass.
SANDBOXED = "▣"  # before the worktree of a task whose steps run sandboxed
COLUMNS = (("slot", "#", 2), ("task", "Task", 18), ("worktree", "Tree", 7), ("pid", "PID", 7),
           ("cpu", "CPU%", 4), ("memory", "Mem", 5), ("elapsed", "Time", 6), ("attempt", "Try", 3))
IDLE = ("· idle", "", "", "", "", "", "")
# A DataTable redraws every cell after any change: refreshing at most this often keeps flushes light.
REFRESH_SECONDS = 0.5


class WorkerTable(DataTable):
    """Rows are keyed by slot and never removed: a flush only changes the cells whose text changed."""

    ALLOW_MAXIMIZE = True

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self._cells: dict[int, tuple[str, ...]] = {}  # slot -> the texts shown
        self._task_in: dict[int, str | None] = {}  # slot -> the task holding it
        self._shown_at = float("-inf")

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def show(self, state: RunState, usage: dict[str, Usage], now: float, selected: str | None) -> None:
        holding = {t.worker: t for t in state.tasks.values() if t.worker is not None}
        new_slots = holding.keys() - self._cells.keys()
        if not new_slots and time.monotonic() - self._shown_at < REFRESH_SECONDS:
            return
        self._shown_at = time.monotonic()
        for slot in sorted(new_slots):
            self._cells[slot] = (str(slot), *IDLE)
            self.add_row(*map(Text, self._cells[slot]), key=str(slot))
        if new_slots:
            self.sort("slot", key=lambda cell: int(cell.plain))
        for slot, old in self._cells.items():
            task = holding.get(slot)
            self._task_in[slot] = task.id if task else None
            cells = self._row(slot, task, usage, now)
            for (column, _, _), before, after in zip(COLUMNS, old, cells):
                if before != after:
                    self.update_cell(str(slot), column, Text(after))
            self._cells[slot] = cells
        self.select(selected)

    @staticmethod
    def _row(slot: int, task: TaskView | None, usage: dict[str, Usage], now: float) -> tuple[str, ...]:
        if task is None:
            return (str(slot), *IDLE)
        used = usage.get(task.id)
        # Ids and worktrees come from the journal, which any process could have written to.
        worktree = sanitize_line(task.worktree.rstrip("/").rsplit("/", 1)[-1]) if task.worktree else "—"
        if task.host:  # it runs on another machine (a Dask worker): where is what tells
            worktree = sanitize_line(task.host)
        if task.sandboxed:  # confined by bubblewrap: it can write nothing but its worktree
            worktree = SANDBOXED + worktree
        # A task whose agent was denied tool calls is marked: it may be doing less than it was asked.
        label = f"{mark(task.state)}{'⚠' if task.denied else ' '}{sanitize_line(task.id)}"
        return (str(slot), fit(label, COLUMNS[1][2]), worktree,
                str(task.pid or "—"),
                f"{used.cpu:.0f}" if used else "—", metrics.size(used.memory) if used else "—",
                metrics.duration(task.elapsed(now)), str(task.attempt or 1))

    def select(self, task_id: str | None) -> None:
        """Put the cursor on ``task_id``'s slot; no cursor if it holds none (unless the user is here)."""
        slot = next((s for s, t in self._task_in.items() if t == task_id and t is not None), None)
        if self.has_focus:
            return  # the user moves this cursor; the selection follows it, not the other way round
        self.show_cursor = slot is not None
        if slot is not None:
            row = self.get_row_index(str(slot))
            if row != self.cursor_row:
                self.move_cursor(row=row, animate=False, scroll=True)

    def _task_at(self, row_key) -> str | None:
        return self._task_in.get(int(row_key.value)) if row_key.value is not None else None

    def on_focus(self) -> None:
        self.show_cursor = True

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        task_id = self._task_at(event.row_key)
        if self.has_focus and task_id:
            self.post_message(TaskSelected(task_id))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        task_id = self._task_at(event.row_key)
        if task_id:
            self.post_message(TaskOpened(task_id))
