"""The run's main screen: header, wave timeline, dependency graph, workers, conflicts, log and the filter bar.

It owns its panes, the task selected in them and the filter, and shows what
the app's flush hands it (:meth:`MainScreen.show`). Its panes tell it what
the user picked by messages; it tells every other pane.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Input

from waveui.run.state import SLOT_STATES, RunState
from waveui.plan.eta import estimate_remaining
from waveui.run import metrics
from waveui.frontends.tui.bridge import Changes
from waveui.frontends.tui.graph_layout import GraphLayout
from waveui.frontends.tui.keys import RUN_BINDINGS
from waveui.frontends.tui.look import HORIZONTAL_BREAKPOINTS, VERTICAL_BREAKPOINTS, TaskFilter
from waveui.frontends.tui.messages import FilterClosed, TaskOpened, TaskSelected
from waveui.frontends.tui.screens.detail import TaskDetailScreen
from waveui.run.usage import Usage
from waveui.frontends.tui.widgets.conflicts import ConflictList
from waveui.frontends.tui.widgets.filter_bar import FilterBar
from waveui.frontends.tui.widgets.footer import KeyFooter
from waveui.frontends.tui.widgets.graph import DependencyGraph, make_layout
from waveui.frontends.tui.widgets.header import HeaderFigures, RunHeader
from waveui.frontends.tui.widgets.logview import TaskLog
from waveui.frontends.tui.widgets.timeline import WaveTimeline
from waveui.frontends.tui.widgets.workers import WorkerTable

ETA_REFRESH_SECONDS = 5.0
ETA_MIN_SECONDS = 1.0  # the simulation costs milliseconds per thousand tasks: not at every flush
# Larger graphs are laid out in a thread so the first screen appears at once.
LAYOUT_IN_THREAD_FROM = 300


class MainScreen(Screen):
    """The run on one screen; the keys that change it act on the selected task.

    ``state`` is the run's state, which the app's bridge folds events into;
    ``log_dir`` holds ``<task-id>.log`` files, ``repo_root`` is where the
    detail screen runs ``git diff``, ``read_only`` puts the badge in the
    header, ``clock`` gives "now".
    """

    HORIZONTAL_BREAKPOINTS = HORIZONTAL_BREAKPOINTS
    VERTICAL_BREAKPOINTS = VERTICAL_BREAKPOINTS
    BINDINGS = [
        *RUN_BINDINGS,
        Binding("enter", "open_detail", "Detail", id="waveui.detail",
                tooltip="the selected task's log, diff, files and attempts"),
        Binding("slash,f3", "filter", "Filter", id="waveui.filter",
                tooltip="show only tasks whose id, title or message match"),
        Binding("f", "state_filter", "States", id="waveui.state-filter",
                tooltip="show all tasks, or only running ones, problems, waiting or done"),
        Binding("v", "toggle_progress_lines", "Progress lines", id="waveui.progress-lines",
                tooltip="hide the ::waveui progress lines in the log pane, or show them again (dimmed)"),
        Binding("escape", "clear_filter", "Clear filter", id="waveui.clear-filter", show=False,
                tooltip="show every task again (the text and the state filter)"),
    ]

    def __init__(self, state: RunState, *, log_dir: Path | None, repo_root: Path | None, read_only: bool,
                 clock: Callable[[], float]) -> None:
        super().__init__()
        self.state = state
        self.log_dir = log_dir
        self.repo_root = repo_root
        self.read_only = read_only
        self.clock = clock
        self.selected: str | None = None
        self.task_filter = TaskFilter()
        # The ETA, worked out now and then: (monotonic time, run time then, seconds left then).
        self._eta: tuple[float, float, float | None] = (float("-inf"), 0.0, None)
        self._layout_serial = 0
        self._shown_second: float | None = None  # the `now` of the last flush
        self._usage: dict[str, Usage] = {}  # the processes' figures, taken as a second ticks

    def compose(self) -> ComposeResult:
        # Kept as attributes: the app's flush reaches them whichever screen is on top.
        self.screen_header = RunHeader(id="header")
        self.timeline = WaveTimeline(id="timeline")
        self.task_log = TaskLog(self.log_dir, id="log")
        self.graph = DependencyGraph(id="graph")
        self.workers_table = WorkerTable(id="workers")
        self.conflict_list = ConflictList(id="conflicts")
        self.filter_bar = FilterBar(placeholder="filter tasks by id, title or message", id="filter")
        yield self.screen_header
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield self.timeline
                yield self.task_log
            with Vertical(id="right"):
                yield self.graph
                yield self.workers_table
                yield self.conflict_list
        yield self.filter_bar
        yield KeyFooter()

    def on_mount(self) -> None:
        for pane, title in ((self.timeline, "Waves"), (self.graph, "Dependencies"),
                            (self.workers_table, "Workers"), (self.conflict_list, "Conflicts"), (self.task_log, "Log")):
            pane.border_title = title
            pane.add_class("pane")
        self.timeline.focus()

    # ---- what the app's flush hands over ----

    def show(self, changes: Changes, now: float, usage: dict[str, Usage]) -> None:
        """Show everything folded since the last flush (the app calls this inside ``batch_update``).

        ``now`` counts whole seconds: when it moves on, every clock on screen
        and the processes' figures move on together, in this one repaint.
        """
        ticked = now != self._shown_second
        self._shown_second = now
        if ticked:
            self._usage = usage
        if changes.rebuilt:
            self._rebuild(now)
        state = self.state
        if ticked or changes.rebuilt or changes.states or changes.run:  # not at each cost a task reports
            self.screen_header.show(state, self._figures(changes, now, ticked))
        self.timeline.update(changes, now)
        self.graph.update(changes)
        self.workers_table.show(state, self._usage, now, self.selected)
        if changes.states:
            self.conflict_list.show(state)
        if self.task_filter.active and self.selected in changes.tasks:
            self._keep_selection_visible()

    def _figures(self, changes: Changes, now: float, ticked: bool = False) -> HeaderFigures:
        """The header's figures; the ETA is worked out again on a state change or now and then, as a second ticks."""
        at, worked_out, eta = self._eta
        since = time.monotonic() - at  # real time: `now` may be a frozen clock
        if changes.rebuilt or (ticked and since > ETA_REFRESH_SECONDS) or (changes.states and since > ETA_MIN_SECONDS):
            eta, worked_out = estimate_remaining(self.state, now), now
            self._eta = time.monotonic(), worked_out, eta
        left = None if eta is None else max(0.0, eta - (now - worked_out))
        return HeaderFigures(now, left, metrics.projected_cost(self.state), self.read_only,
                             self.task_filter.describe())

    def _rebuild(self, now: float) -> None:
        """A run (re)started: lay everything out afresh.

        The run's tasks and the graph's layout live as long as the app: once
        made, they are frozen out of the garbage collector's reach
        (``gc.freeze``), or every full collection would walk them all again,
        a pause of 100 ms for a few thousand tasks, felt as a stutter.
        """
        state = self.state
        self.timeline.show(state, self.task_filter, now)
        self.conflict_list.show(state)
        if self.selected not in state.tasks:
            self.selected = self._first_task()
        self._layout_serial += 1
        if len(state.tasks) < LAYOUT_IN_THREAD_FROM:  # small enough to lay out again as the pane's size changes
            self.graph.show(state, make_layout(state, self.graph.room))
            gc.freeze()
        else:
            self.graph.show(state, None)
            # On the app: its one handler reports every worker's failure.
            self.app.run_worker(self._layout_in_thread(self._layout_serial), name="graph layout",
                                group="layout", exclusive=True, exit_on_error=False)
        self.select_task(self.selected)

    async def _layout_in_thread(self, serial: int) -> None:
        layout: GraphLayout = await asyncio.to_thread(make_layout, self.state)
        if serial == self._layout_serial:
            self.graph.show(self.state, layout)
            gc.freeze()

    def _first_task(self) -> str | None:
        tasks = sorted(self.state.tasks.values(), key=lambda t: (t.state not in SLOT_STATES, t.wave, t.rank))
        return tasks[0].id if tasks else None

    # ---- selection ----

    def select_task(self, task_id: str | None) -> None:
        """Select ``task_id`` in every pane."""
        self.selected = task_id
        self.timeline.select(task_id)
        self.graph.select(task_id)
        self.workers_table.select(task_id)
        self.task_log.follow(task_id)

    def on_task_selected(self, message: TaskSelected) -> None:
        if message.task_id in self.state.tasks and message.task_id != self.selected:
            self.select_task(message.task_id)

    def on_task_opened(self, message: TaskOpened) -> None:
        if message.task_id in self.state.tasks:
            if message.task_id != self.selected:
                self.select_task(message.task_id)
            self.action_open_detail()

    # ---- actions on the view ----

    def action_open_detail(self) -> None:
        if self.selected not in self.state.tasks:
            self.notify("Select a task first.", severity="warning", timeout=3)
            return
        if not self.is_current:
            return
        self.app.push_screen(TaskDetailScreen(self.selected, self.state, log_dir=self.log_dir,
                                              repo_root=self.repo_root))

    def action_toggle_progress_lines(self) -> None:
        shown = self.task_log.toggle_directives()
        self.notify("Progress lines: shown, dimmed" if shown else "Progress lines: hidden", timeout=2)

    def action_filter(self) -> None:
        bar = self.filter_bar
        bar.add_class("-open")
        bar.focus()

    def close_filter(self) -> None:
        self.filter_bar.remove_class("-open")
        self.timeline.focus()

    def on_filter_closed(self, message: FilterClosed) -> None:
        self.close_filter()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self._set_filter(TaskFilter(event.value.strip(), self.task_filter.group))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.close_filter()

    def action_state_filter(self) -> None:
        self._set_filter(self.task_filter.next_group())
        self.notify(f"Showing: {self.task_filter.describe()}", timeout=2)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":
            return self.task_filter.active  # else escape goes on to whatever else it does
        return True

    def action_clear_filter(self) -> None:
        self.filter_bar.value = ""  # its Changed message, which comes later, sets the same empty text again
        self._set_filter(TaskFilter())
        self.notify("Showing: all", timeout=2)

    def _set_filter(self, task_filter: TaskFilter) -> None:
        self.task_filter = task_filter
        self.timeline.show(self.state, task_filter, self.clock())
        self.graph.set_filter(task_filter)
        suffix = f" · {task_filter.describe()}" if task_filter.active else ""
        self.timeline.border_title = f"Waves{suffix}"
        self.timeline.select(self.selected)
        self._keep_selection_visible()
        self.screen_header.show(self.state, self._figures(Changes(), self.clock()))

    def _keep_selection_visible(self) -> None:
        """Select the shown task nearest the selected one if the filter hides it: the run's keys act on what is seen."""
        shown = self.timeline.nearest_shown(self.selected)
        if shown != self.selected:
            self.select_task(shown)
