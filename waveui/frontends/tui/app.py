"""The full-screen app: folds a feed's events into the run's state and shows it, ten repaints a second.

The feed runs as a worker and hands every event to :class:`RunBridge`, which
folds it with the shared reducer and notes what it touched. A 10 Hz timer
flushes those notes to the widgets inside ``batch_update`` (one repaint per
tick, however many events came). Every action that changes the run goes to
the :class:`RunControl`; its effect comes back as events, like everything
else. With ``read_only`` (``waveui watch``) those actions are switched off.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from textual import events
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Input
from textual.worker import Worker, WorkerState

from waveui.engine.control import RunControl
from waveui.run.state import SLOT_STATES, RunState
from waveui.plan.eta import estimate_remaining
from waveui.run import metrics
from waveui.core.sanitize import sanitize_line
from waveui.frontends.tui.bridge import Changes, RunBridge
from waveui.frontends.tui.screens.detail import TaskDetailScreen
from waveui.frontends.tui.screens.dialogs import ConfirmCancel, QuitLiveRun
from waveui.frontends.tui.feeds import EventFeed
from waveui.frontends.tui.graph_layout import GraphLayout
from waveui.frontends.tui.screens.help import HelpScreen
from waveui.frontends.tui.look import TaskFilter
from waveui.frontends.tui.messages import TaskOpened, TaskSelected
from waveui.frontends.tui.usage import Target, Usage
from waveui.frontends.tui.themes import DEFAULT_THEME, STATE_COLOURS, load_themes, theme_folders
from waveui.frontends.tui.widgets.conflicts import ConflictList
from waveui.frontends.tui.widgets.footer import KeyFooter
from waveui.frontends.tui.widgets.graph import DependencyGraph, make_layout
from waveui.frontends.tui.widgets.header import HeaderFigures, RunHeader
from waveui.frontends.tui.widgets.logview import TaskLog
from waveui.frontends.tui.widgets.timeline import WaveTimeline
from waveui.frontends.tui.widgets.workers import WorkerTable

FLUSH_SECONDS = 0.1
SAMPLE_SECONDS = 1.0
ETA_REFRESH_SECONDS = 5.0
ETA_MIN_SECONDS = 1.0  # the simulation costs milliseconds per thousand tasks: not at every flush
# Larger graphs are laid out in a thread so the first screen appears at once.
LAYOUT_IN_THREAD_FROM = 300
# Actions that change the run: off in read-only mode, and without a control.
RUN_ACTIONS = frozenset({"pause_task", "pause_run", "retry", "cancel", "priority"})
# `t` goes through the packaged themes in this order, then the user's own.
THEME_ORDER = ["waveui-dark", "waveui-light", "waveui-high-contrast"]
# Actions about the main screen's panes, off while the detail screen is up.
MAIN_SCREEN_ACTIONS = frozenset({"open_detail", "filter", "state_filter"})
RETRYABLE = frozenset({"failed", "conflicted", "cancelled"})
PAUSABLE = frozenset({"running", "verifying"})


class FilterBar(Input):
    """The text filter: typing narrows the timeline; Enter keeps it, Escape clears it."""

    BINDINGS = [Binding("escape", "clear", "Clear filter", id="filter.clear")]

    def action_clear(self) -> None:
        self.value = ""
        self.app.close_filter()


class WaveApp(App):
    """The run on one screen: header, wave timeline, dependency graph, workers, conflicts, log.

    ``feed`` brings the events (``ScriptedFeed``, ``JournalFeed``, or the
    engine's own); ``control`` receives the user's commands (None: nothing to
    control). ``log_dir`` holds ``<task-id>.log`` files, ``repo_root`` is where
    ``git diff`` runs for the detail screen, ``read_only`` is ``waveui watch``,
    ``clock`` gives "now" (frozen in tests and screenshots), ``theme`` names
    the theme to start with.
    """

    CSS_PATH = "waveui.tcss"
    TITLE = "waveui"
    BINDINGS = [
        Binding("space,p", "pause_task", "Pause/resume", id="waveui.pause-task",
                tooltip="pause or resume the selected task (its clock stops too)"),
        Binding("P", "pause_run", "Pause run", id="waveui.pause-run",
                tooltip="start no new task, or start again; running tasks go on"),
        Binding("r", "retry", "Retry", id="waveui.retry", tooltip="run a failed, conflicted or cancelled task again"),
        Binding("c,x,f9", "cancel", "Cancel", id="waveui.cancel",
                tooltip="stop the selected task for good (asks first)"),
        Binding("plus,equals_sign", "priority(1)", "Raise priority", id="waveui.priority-up", show=False,
                tooltip="start the selected task sooner"),
        Binding("minus", "priority(-1)", "Lower priority", id="waveui.priority-down", show=False,
                tooltip="start the selected task later"),
        Binding("enter", "open_detail", "Detail", id="waveui.detail",
                tooltip="the selected task's log, diff, files and attempts"),
        Binding("slash,f3", "filter", "Filter", id="waveui.filter",
                tooltip="show only tasks whose id, title or message match"),
        Binding("f", "state_filter", "States", id="waveui.state-filter",
                tooltip="show all tasks, or only running ones, problems, waiting or done"),
        Binding("z", "zoom", "Zoom", id="waveui.zoom", tooltip="fill the screen with the focused pane, or restore it"),
        Binding("t", "next_theme", "Theme", id="waveui.theme", show=False, tooltip="next colour theme"),
        Binding("tab", "focus_next", "Next pane", id="waveui.next-pane", show=False, tooltip="focus the next pane"),
        Binding("shift+tab", "focus_previous", "Previous pane", id="waveui.previous-pane", show=False,
                tooltip="focus the previous pane"),
        Binding("question_mark,f1", "help", "Help", id="waveui.help", tooltip="this help"),
        Binding("q,f10", "quit", "Quit", id="waveui.quit",
                tooltip="leave; a live run asks whether to stop it or leave it resumable"),
        Binding("ctrl+q", "quit", "Quit", id="waveui.quit-now", show=False, priority=True, tooltip="same as q"),
    ]

    def __init__(self, feed: EventFeed, control: RunControl | None, *, log_dir: Path | None = None,
                 repo_root: Path | None = None, read_only: bool = False, clock: Callable[[], float] = time.time,
                 theme: str | None = None, process_sampler: Callable[[], object] | None = None) -> None:
        super().__init__()
        # Makes a ProcessSampler, for the live app; the watcher shows no per-process figures (and imports no psutil).
        self.process_sampler = process_sampler
        self.feed = feed
        self.control = control
        self.log_dir = log_dir
        self.repo_root = repo_root
        self.read_only = read_only
        self.clock = clock
        self.bridge = RunBridge()
        self.selected: str | None = None
        self.task_filter = TaskFilter()
        self.usage: dict[str, Usage] = {}
        # The ETA, worked out now and then: (monotonic time, run time then, seconds left then).
        self._eta: tuple[float, float, float | None] = (float("-inf"), 0.0, None)
        self._layout_serial = 0
        self.theme_names, self.theme_errors = self._register_themes()
        fallback = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"  # a broken install
        self.theme = theme if theme in self.available_themes else fallback
        self._unknown_theme = theme if theme and theme not in self.available_themes else None

    @property
    def state(self) -> RunState:
        return self.bridge.state

    # ---- themes ----

    def _register_themes(self) -> tuple[list[str], list[str]]:
        themes, errors = load_themes(theme_folders())
        for theme in themes:
            self.register_theme(theme)
        names = [t.name for t in themes]
        return sorted(names, key=lambda n: (THEME_ORDER.index(n) if n in THEME_ORDER else len(THEME_ORDER), n)), errors

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(STATE_COLOURS)

    def action_next_theme(self) -> None:
        names = self.theme_names or [self.theme]
        position = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(position + 1) % len(names)]
        self.notify(f"Theme: {self.theme}", timeout=2)

    # ---- building the screen ----

    def compose(self) -> ComposeResult:
        # Kept as attributes: a query from the app would search whichever screen is on top.
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
        if self.theme_errors:
            count = len(self.theme_errors)
            self.notify("\n".join(self.theme_errors), title=f"Skipped {count} broken theme file{'s' * (count > 1)}",
                        severity="warning", timeout=15)
        if self._unknown_theme:
            self.notify(f"No theme named {self._unknown_theme!r}; using {self.theme}", severity="warning")
        self.timeline.focus()
        self.run_worker(self._run_feed(), name="event feed", group="feed", exit_on_error=False)
        if self.process_sampler is not None:
            self.run_worker(self._sample_processes(), name="process sampler", group="sampler", exit_on_error=False)
        self.set_interval(FLUSH_SECONDS, self.flush, name="flush")
        self.flush()

    async def _run_feed(self) -> None:
        await self.feed.run(self.bridge.fold)

    async def _sample_processes(self) -> None:
        sampler = self.process_sampler()
        while True:
            targets = [Target(t.id, t.pid, t.pid_started) for t in self.state.tasks.values()
                       if t.pid is not None and t.state in SLOT_STATES]
            self.usage = await asyncio.to_thread(sampler.sample, targets) if targets else {}
            await asyncio.sleep(SAMPLE_SECONDS)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every worker's failure ends up here, as one line for the user."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"{event.worker.name} failed: {type(error).__name__}: {error}", severity="error", timeout=10)

    # ---- the 10 Hz flush ----

    def flush(self) -> None:
        """Show everything folded since the last flush, in one repaint."""
        if not self.screen_stack:  # the timer can tick once more while the app shuts down
            return
        changes = self.bridge.take()
        now = self.clock()
        with self.batch_update():
            if changes.rebuilt:
                self._rebuild(now)
            self._show(changes, now)
        for notice in changes.notices:  # the run's record disagreed with git or the epic file: say so
            self.notify(sanitize_line(notice), title="Run notice", severity="warning", timeout=15)

    def _show(self, changes: Changes, now: float) -> None:
        state = self.state
        self.screen_header.show(state, self._figures(changes, now))
        self.timeline.update(changes, now)
        self.graph.update(changes)
        self.workers_table.show(state, self.usage, now, self.selected)
        if changes.states:
            self.conflict_list.show(state)
        if isinstance(self.screen, TaskDetailScreen):
            self.screen.show(state, now)

    def _figures(self, changes: Changes, now: float) -> HeaderFigures:
        at, worked_out, eta = self._eta
        since = time.monotonic() - at  # real time: `now` may be a frozen clock
        if changes.rebuilt or since > ETA_REFRESH_SECONDS or (changes.states and since > ETA_MIN_SECONDS):
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
        self.title = f"waveui · {state.epic}" if state.epic else "waveui"
        self.timeline.show(state, self.task_filter, now)
        self.conflict_list.show(state)
        if self.selected not in state.tasks:
            self.selected = self._first_task()
        self._layout_serial += 1
        if len(state.tasks) < LAYOUT_IN_THREAD_FROM:
            self.graph.show(state, make_layout(state))
            gc.freeze()
        else:
            self.graph.show(state, None)
            self.run_worker(self._layout_in_thread(self._layout_serial), name="graph layout",
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

    # ---- actions that change the run ----

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in RUN_ACTIONS and (self.read_only or self.control is None):
            return False
        if action in MAIN_SCREEN_ACTIONS and isinstance(self.screen, TaskDetailScreen):
            return False
        return True

    def on_key(self, event: events.Key) -> None:
        """A key for an action switched off in this mode: say why instead of doing nothing."""
        if isinstance(self.focused, Input):
            return
        action = self._refused_action(event.key)
        if action is not None:
            event.stop()
            why = "this is a read-only watcher" if self.read_only else "there is no run to control"
            self.notify(f"{action} is off: {why}.", severity="warning", timeout=3)

    def _refused_action(self, key: str) -> str | None:
        if not (self.read_only or self.control is None):
            return None
        for binding in self.BINDINGS:
            assert isinstance(binding, Binding)
            keys = [k.strip() for k in binding.key.split(",")]
            if key in keys and binding.action.split("(")[0] in RUN_ACTIONS:
                return binding.description
        return None

    def _task_for_action(self) -> str | None:
        if self.selected is None or self.selected not in self.state.tasks:
            self.notify("Select a task first.", severity="warning", timeout=3)
            return None
        if self.state.finished:
            self.notify("The run has finished.", severity="warning", timeout=3)
            return None
        return self.selected

    def action_pause_task(self) -> None:
        task_id = self._task_for_action()
        if task_id is None:
            return
        task = self.state.tasks[task_id]
        if task.state == "paused":
            self.control.resume_task(task_id)
        elif task.state in PAUSABLE:
            self.control.pause_task(task_id)
        else:
            self.notify(f"{task_id} is {task.state}: only a running task can be paused.", timeout=3)

    def action_pause_run(self) -> None:
        if self.state.finished:
            self.notify("The run has finished.", severity="warning", timeout=3)
        elif self.state.paused:
            self.control.resume_run()
        else:
            self.control.pause_run()

    def action_retry(self) -> None:
        task_id = self._task_for_action()
        if task_id is None:
            return
        task = self.state.tasks[task_id]
        if task.state in RETRYABLE:
            self.control.retry(task_id)
        else:
            self.notify(f"{task_id} is {task.state}: only failed, conflicted or cancelled tasks are retried.",
                        timeout=3)

    def action_cancel(self) -> None:
        task_id = self._task_for_action()
        if task_id is None:
            return
        task = self.state.tasks[task_id]
        if task.state in ("done", "cancelled"):
            self.notify(f"{task_id} is {task.state} already.", timeout=3)
            return
        dependents = len(self._downstream(task_id))

        def answered(yes: bool | None) -> None:
            if yes:
                self.control.cancel(task_id)

        self.push_screen(ConfirmCancel(task_id, dependents), answered)

    def _downstream(self, task_id: str) -> set[str]:
        """Every task that waits on ``task_id``, directly or not."""
        waiting_on = self.state.dependents
        found: set[str] = set()
        stack = [task_id]
        while stack:
            for dependent in waiting_on.get(stack.pop(), []):
                if dependent not in found:
                    found.add(dependent)
                    stack.append(dependent)
        return found

    def action_priority(self, step: int) -> None:
        task_id = self._task_for_action()
        if task_id is not None:
            self.control.set_priority(task_id, self.state.tasks[task_id].priority + step)

    async def action_quit(self) -> None:
        if self.read_only or self.control is None or self.state.finished:
            self.exit()
            return

        def answered(answer: str | None) -> None:
            if answer is not None:
                self.control.stop(leave_resumable=answer == "leave")
                self.exit()

        self.push_screen(QuitLiveRun(), answered)

    # ---- actions on the view ----

    def action_open_detail(self) -> None:
        if self.selected not in self.state.tasks:
            self.notify("Select a task first.", severity="warning", timeout=3)
            return
        if isinstance(self.screen, TaskDetailScreen):
            return
        self.push_screen(TaskDetailScreen(self.selected, self.state, log_dir=self.log_dir, repo_root=self.repo_root))

    def action_filter(self) -> None:
        bar = self.filter_bar
        bar.add_class("-open")
        bar.focus()

    def close_filter(self) -> None:
        self.filter_bar.remove_class("-open")
        self.timeline.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self._set_filter(TaskFilter(event.value.strip(), self.task_filter.group))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.close_filter()

    def action_state_filter(self) -> None:
        self._set_filter(self.task_filter.next_group())
        self.notify(f"Showing: {self.task_filter.describe()}", timeout=2)

    def _set_filter(self, task_filter: TaskFilter) -> None:
        self.task_filter = task_filter
        self.timeline.show(self.state, task_filter, self.clock())
        self.timeline.select(self.selected)
        self.graph.set_filter(task_filter)
        suffix = f" · {task_filter.describe()}" if task_filter.active else ""
        self.timeline.border_title = f"Waves{suffix}"
        self.screen_header.show(self.state, self._figures(Changes(), self.clock()))

    def action_zoom(self) -> None:
        screen = self.screen
        if screen.maximized is not None:
            screen.minimize()
        elif screen.focused is not None:
            screen.maximize(screen.focused, container=False)

    def action_help(self) -> None:
        shown = [b for b in self.BINDINGS if isinstance(b, Binding) and self._enabled(b.action)]
        self.push_screen(HelpScreen(shown, self.read_only))

    def _enabled(self, action: str) -> bool:
        return bool(self.check_action(action.split("(")[0], ()))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every action of the app in the command palette (those this mode allows)."""
        for binding in self.BINDINGS:
            if isinstance(binding, Binding) and binding.id != "waveui.quit-now" and self._enabled(binding.action):
                yield SystemCommand(binding.description, f"{binding.description} ({binding.key})",
                                    partial(self.run_action, binding.action))
        yield from super().get_system_commands(screen)
