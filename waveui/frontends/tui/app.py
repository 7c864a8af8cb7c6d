"""The full-screen app: folds a feed's events into the run's state and shows it, ten repaints a second.

The feed runs as a worker and hands every event to :class:`RunBridge`, which
folds it with the shared reducer and notes what it touched. A 10 Hz timer
hands those notes to the :class:`MainScreen` inside ``batch_update`` (one
repaint per tick, however many events came). Every action that changes the
run goes to the :class:`RunControl`; its effect comes back as events, like
everything else. With ``read_only`` (``waveui watch``) those actions are
switched off, here and only here (:meth:`WaveApp.check_action`).
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from textual import events
from textual.app import App, SuspendNotSupported, SystemCommand
from textual.binding import Binding
from textual.dom import DOMNode
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver
from textual.screen import Screen
from textual.widgets import Input
from textual.worker import Worker, WorkerState

from waveui.engine.control import RunControl
from waveui.engine.errors import EngineError
from waveui.git.command import clean_env
from waveui.run.state import SLOT_STATES, RunState
from waveui.core.sanitize import sanitize_line
from waveui.frontends.tui.bridge import RunBridge
from waveui.frontends.tui.feeds import EventFeed
from waveui.frontends.tui.keys import RUN_ACTIONS, RUN_BINDINGS, action_name
from waveui.frontends.tui.messages import TerminalLost, TerminateRequested
from waveui.frontends.tui.screens.detail import TaskDetailScreen
from waveui.frontends.tui.screens.dialogs import ConfirmCancel, QuitLiveRun, RetryFrom
from waveui.frontends.tui.screens.help import HelpScreen, key_label
from waveui.frontends.tui.screens.main import MainScreen
from waveui.frontends.tui.terminal import TerminalDriver
from waveui.run.usage import Target, Usage
from waveui.frontends.tui.themes import DEFAULT_THEME, STATE_COLOURS, load_themes, theme_folders

FLUSH_SECONDS = 0.1
GREETING_SECONDS = 30
SAMPLE_SECONDS = 1.0
# `t` goes through the packaged themes in this order, then the user's own.
THEME_ORDER = ["waveui-dark", "waveui-light", "waveui-high-contrast"]
RETRYABLE = frozenset({"failed", "conflicted", "cancelled"})
PAUSABLE = frozenset({"running", "verifying"})
PAST_PRIORITY = frozenset({"merging", "done"})  # no attempt of these tasks will start again: an order means nothing


class WaveApp(App):
    """The run on one screen (:class:`MainScreen`), and what every screen shares: the run, themes, quitting.

    ``feed`` brings the events (``ScriptedFeed``, ``JournalFeed``, or the
    engine's own); ``control`` receives the user's commands (None: nothing to
    control). ``log_dir`` holds ``<task-id>.log`` files, ``repo_root`` is where
    ``git diff`` runs for the detail screen, ``read_only`` is ``waveui watch``,
    ``clock`` gives "now" (frozen in tests and screenshots), ``theme`` names
    the theme to start with, ``greeting`` is a notice to show at once.
    """

    CSS_PATH = "waveui.tcss"
    TITLE = "waveui"
    # The main screen as the app's one mode (not `get_default_screen`): Textual
    # then mounts it, panes and all, before the app's own `on_mount` flushes.
    MODES = {"run": "main"}
    DEFAULT_MODE = "run"
    BINDINGS = [
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
                 theme: str | None = None, process_sampler: Callable[[], object] | None = None,
                 bell: bool = False, greeting: str | None = None) -> None:
        super().__init__()
        self.greeting = greeting  # shown as the app starts: what the user should know before anything else
        self.ring_bell = bell  # on a task failed, conflicted or denied, the budget reached, the run's end
        self._terminal_lent = False  # a shell of the user's has the terminal (resolving by hand)
        # Makes a ProcessSampler, for the live app; the watcher shows no per-process figures (and imports no psutil).
        self.process_sampler = process_sampler
        self.feed = feed
        self.control = control
        self.read_only = read_only
        # Every clock on screen counts whole seconds of this one clock: they all tick at the same flush,
        # one repaint a second rather than one per clock, each at its own fraction of a second.
        self.clock = lambda: math.floor(clock())
        self.bridge = RunBridge()
        self.usage: dict[str, Usage] = {}
        self.theme_names, self.theme_errors = self._register_themes()
        fallback = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"  # a broken install
        self.theme = theme if theme in self.available_themes else fallback
        self._unknown_theme = theme if theme and theme not in self.available_themes else None
        self.main_screen = MainScreen(self.state, log_dir=log_dir, repo_root=repo_root, read_only=read_only,
                                      clock=self.clock)
        self.install_screen(self.main_screen, "main")

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

    # ---- the main screen and the workers ----

    def on_mount(self) -> None:
        if self.greeting:
            self.notify(self.greeting, timeout=GREETING_SECONDS, markup=False)
        if self.theme_errors:
            count = len(self.theme_errors)
            self.notify("\n".join(self.theme_errors), title=f"Skipped {count} broken theme file{'s' * (count > 1)}",
                        severity="warning", timeout=15)
        if self._unknown_theme:
            self.notify(f"No theme named {self._unknown_theme!r}; using {self.theme}", severity="warning")
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
            here = await asyncio.to_thread(sampler.sample, targets) if targets else {}
            self.usage = {**here, **self.control.remote_usage} if self.control else here
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
                self.title = f"waveui · {self.state.epic}" if self.state.epic else "waveui"
            self.main_screen.show(changes, now, self.usage)
            if isinstance(self.screen, TaskDetailScreen):  # the task in detail follows the run too
                self.screen.show(self.state, now)
        for notice in changes.notices:  # the run's record disagreed with git or the epic file: say so
            self.notify(sanitize_line(notice), title="Run notice", severity="warning", timeout=15)
        if changes.attention and self.ring_bell and not self._terminal_lent:
            self.bell()

    # ---- actions that change the run ----

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in RUN_ACTIONS and (self.read_only or self.control is None):
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
        for binding in RUN_BINDINGS:
            keys = [k.strip() for k in binding.key.split(",")]
            if key in keys:
                return binding.description
        return None

    def _task_for_action(self) -> str | None:
        """The task the run's keys act on: the one selected on the main screen (and shown in detail)."""
        selected = self.main_screen.selected
        if selected is None or selected not in self.state.tasks:
            self.notify("Select a task first.", severity="warning", timeout=3)
            return None
        if self.state.finished:
            self.notify("The run has finished.", severity="warning", timeout=3)
            return None
        return selected

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
        if task.state not in RETRYABLE:
            self.notify(f"{task_id} is {task.state}: only failed, conflicted or cancelled tasks are retried.",
                        timeout=3)
            return
        kept = task.kept_attempts()
        if not kept:
            self.control.retry(task_id)
            return

        def answered(from_attempt: int | None) -> None:
            self.control.retry(task_id, from_attempt=from_attempt)

        self.push_screen(RetryFrom(task_id, kept), answered)

    async def action_resolve(self) -> None:
        """Resolve a conflicted task's merge by hand: a shell in a worktree holding it, then merge what it left."""
        task_id = self._task_for_action()
        if task_id is None:
            return
        task = self.state.tasks[task_id]
        if task.state != "conflicted":
            self.notify(f"{task_id} is {task.state}: only a conflicted task's merge is resolved by hand.", timeout=3)
            return
        try:
            folder = await self.control.prepare_resolution(task_id)
        except EngineError as error:
            self.notify(sanitize_line(str(error)), title=f"Cannot resolve {task_id}", severity="error", timeout=10)
            return
        env = clean_env()  # a GIT_DIR or GIT_WORK_TREE of the user's would aim the shell's git elsewhere
        env.update({"WAVEUI_TASK_ID": task_id, "WAVEUI_TITLE": task.title, "WAVEUI_EPIC": self.state.epic,
                    "WAVEUI_RUN_ID": self.state.run_id, "WAVEUI_WORKTREE": str(folder)})
        shell = os.environ.get("SHELL") or "/bin/sh"
        self._terminal_lent = True  # no bell meanwhile: the shell has the terminal
        try:
            # The run goes on while the shell has the terminal (tasks finish, merges happen), so the
            # shell is awaited, not run blocking; the batch keeps the app from drawing meanwhile
            # (its output thread is stopped while suspended: a write then would wait for ever).
            with self.batch_update(), self.suspend():
                print(sanitize_line(f"waveui: resolve {task_id}'s merge here, in {folder}; exit the shell to merge it."),
                      flush=True)
                shell_process = await asyncio.create_subprocess_exec(shell, cwd=folder, env=env)
                await shell_process.wait()
        except (SuspendNotSupported, OSError) as error:
            self.notify(f"No shell for the merge ({error}); it is left in {folder}.", title=f"Cannot resolve {task_id}",
                        severity="error", timeout=10)
            return
        finally:
            self._terminal_lent = False
        why_not = await self.control.accept_resolution(task_id)
        if why_not:
            self.notify(sanitize_line(why_not), title=f"{task_id} stays conflicted", severity="warning", timeout=10)
        else:
            self.notify(f"{task_id}: your resolution is merged.", timeout=5)

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
        if task_id is None:
            return
        task = self.state.tasks[task_id]
        if task.state in PAST_PRIORITY:
            self.notify(f"{task_id} is {task.state}: its priority has no effect any more; left as it is.",
                        severity="warning", timeout=3)
            return
        self.control.set_priority(task_id, task.priority + step)

    async def action_quit(self) -> None:
        if self.read_only or self.control is None or self.state.finished or self.control.idle:
            self.exit()  # nothing running: nothing to ask about
            return

        def answered(answer: str | None) -> None:
            if answer is not None:
                self._end(leave_resumable=answer == "leave")

        self.push_screen(QuitLiveRun(), answered)

    def _end(self, *, leave_resumable: bool) -> None:
        """Close the app; a live run is stopped first, or left for the next `waveui run` to go on with."""
        if not (self.read_only or self.control is None or self.state.finished):
            self.control.stop(leave_resumable=leave_resumable)
        self.exit()

    # ---- the terminal going away, the process told to end (from TerminalDriver), whatever screen is open ----

    def get_driver_class(self) -> type[Driver]:
        driver = super().get_driver_class()
        return TerminalDriver if driver is LinuxDriver else driver  # not a driver named in $TEXTUAL_DRIVER

    def on_terminal_lost(self, message: TerminalLost) -> None:
        # A closed window, a dropped ssh connection, a killed tmux session: the tasks go on for the next run.
        self._end(leave_resumable=True)

    def on_terminate_requested(self, message: TerminateRequested) -> None:
        # As the headless run: the tasks are stopped and the run stays resumable.
        self._end(leave_resumable=False)

    # ---- actions on the view ----

    def action_zoom(self) -> None:
        screen = self.screen
        if screen.maximized is not None:
            screen.minimize()
        elif screen.focused is not None:
            screen.maximize(screen.focused, container=False)

    def action_help(self) -> None:
        self.push_screen(HelpScreen([binding for binding, _ in self._keys_of(self.screen)], self.read_only))

    def _keys_of(self, screen: Screen) -> list[tuple[Binding, DOMNode]]:
        """The keys help and the palette list, with where each acts, in the footer's order.

        The screen's keys first (the run's, then its view's), then the app's
        own; those this mode switches off are left out, and so are a screen's
        housekeeping keys (``detail.back``, …): they are not waveui's.
        """
        keys = [(b, screen) for b in screen.BINDINGS if isinstance(b, Binding) and (b.id or "").startswith("waveui.")]
        keys += [(b, self) for b in self.BINDINGS if isinstance(b, Binding)]
        return [(binding, node) for binding, node in keys if self._enabled(binding, node)]

    def _enabled(self, binding: Binding, node: DOMNode) -> bool:
        acts_on = self if binding.action.startswith("app.") else node
        return bool(acts_on.check_action(action_name(binding), ()))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every action of the app in the command palette (those this mode allows), each once.

        Textual's own commands are left out: each does what a key of ours does
        (quit, theme, keys, maximise), but for its screenshot, which saves
        elsewhere (:meth:`action_screenshot`).
        """
        for binding, node in self._keys_of(screen):
            if binding.id != "waveui.quit-now":
                explained = f"{binding.tooltip or binding.description} ({key_label(binding)})"
                yield SystemCommand(binding.description, explained, partial(self.run_action, binding.action, node))
        yield SystemCommand("Screenshot", "save an SVG picture of the screen in the current folder",
                            self.action_screenshot)

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """Save an SVG picture of the screen in the current folder and say where (Textual's own saves in
        ~/Downloads, and fails where there is none)."""
        name = filename or time.strftime("waveui-%Y%m%d-%H%M%S.svg")
        try:
            saved = self.save_screenshot(name, path or os.getcwd())
        except OSError as error:
            self.notify(f"{error.filename or name}: {error.strerror or error}", title="No screenshot",
                        severity="error", timeout=10, markup=False)
        else:
            self.notify(saved, title="Screenshot saved", timeout=10, markup=False)
