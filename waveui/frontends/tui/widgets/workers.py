"""The worker table: one row per worker, updated cell by cell (htop-like: a free worker says so)."""

from __future__ import annotations

import re

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

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
IDLE = ("", "· idle", "", "", "", "", "", "")
POOLED_WORKTREE = re.compile(r"slot-(\d+)\Z")  # the folders the worktree pool names


class WorkerTable(DataTable):
    """Rows are keyed by worker and never removed: a flush repaints only the cells whose text changed."""

    ALLOW_MAXIMIZE = True

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self._cells: dict[int, tuple[str, ...]] = {}  # worker -> the texts shown
        self._task_in: dict[int, str | None] = {}  # worker -> the task it runs

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def show(self, state: RunState, usage: dict[str, Usage], now: float, selected: str | None) -> None:
        holding = {t.worker: t for t in state.tasks.values() if t.worker is not None}
        if holding.keys() - self._cells.keys():  # a worker's first task: rows laid out afresh, in the workers' order
            self._cells = dict(sorted({**dict.fromkeys(holding, IDLE), **self._cells}.items()))
            self.clear()
            for worker, cells in self._cells.items():
                self.add_row(*map(Text, cells), key=str(worker))
        for worker, old in self._cells.items():
            task = holding.get(worker)
            self._task_in[worker] = task.id if task else None
            cells = self._row(worker, task, usage, now)
            for column, (before, after) in enumerate(zip(old, cells)):
                if before != after:
                    self._update_cell(worker, column, after)
            self._cells[worker] = cells
        self.select(selected)

    def _update_cell(self, worker: int, column: int, text: str) -> None:
        """``update_cell``, repainting the cell alone: DataTable's own repaints the whole table.

        A running task's time changes every second; a whole table sent to the
        terminal that often was most of what the app wrote while a run went on.
        """
        row_key, column_key = RowKey(str(worker)), ColumnKey(COLUMNS[column][0])
        self._data[row_key][column_key] = Text(text)
        self._update_count += 1  # the key of DataTable's caches of rendered rows and cells
        self.refresh_coordinate(Coordinate(self.get_row_index(row_key), column))

    @staticmethod
    def _row(worker: int, task: TaskView | None, usage: dict[str, Usage], now: float) -> tuple[str, ...]:
        if task is None:
            return IDLE
        used = usage.get(task.id)
        # Ids and worktrees come from the journal, which any process could have written to.
        folder = sanitize_line(task.worktree.rstrip("/").rsplit("/", 1)[-1]) if task.worktree else ""
        pooled = POOLED_WORKTREE.match(folder)
        # One numbering: the pool's, which names the worktree folders, when the task has one of them
        # (the pool lends whichever worktree is free, whatever the worker's own number); until it has,
        # none, lest it show a number another row's worktree has.
        number = pooled.group(1) if pooled else "" if task.state == "preparing" else str(worker)
        worktree = folder or "—"
        if task.host:  # it runs on another machine (a Dask worker): where is what tells
            worktree = sanitize_line(task.host)
        if task.sandboxed:  # confined by bubblewrap: it can write nothing but its worktree
            worktree = SANDBOXED + worktree
        # A task whose agent was denied tool calls is marked: it may be doing less than it was asked.
        label = f"{mark(task.state)}{'⚠' if task.denied else ' '}{sanitize_line(task.id)}"
        return (number, fit(label, COLUMNS[1][2]), worktree,
                str(task.pid or "—"),
                f"{used.cpu:.0f}" if used else "—", metrics.size(used.memory) if used else "—",
                metrics.duration(task.elapsed(now)), str(task.attempt or 1))

    def select(self, task_id: str | None) -> None:
        """Put the cursor on ``task_id``'s row; no cursor if no worker runs it (unless the user is here)."""
        worker = next((w for w, t in self._task_in.items() if t == task_id and t is not None), None)
        if self.has_focus:
            return  # the user moves this cursor; the selection follows it, not the other way round
        self.show_cursor = worker is not None
        if worker is not None:
            row = self.get_row_index(str(worker))
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
