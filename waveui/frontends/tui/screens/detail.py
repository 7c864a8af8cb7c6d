"""The detail screen of one task: its log, its branch's or an attempt's diff, changed vs declared files, attempts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import DataTable, RichLog, Static, TabbedContent, TabPane

from waveui.run.state import Attempt, RunState, TaskView
from waveui.core.paths import covers
from waveui.run import metrics
from waveui.frontends.tui.gitdiff import BranchDiff, branch_diff, branch_of, kept_diff
from waveui.frontends.tui.keys import RUN_BINDINGS
from waveui.frontends.tui.look import COLOUR, HORIZONTAL_BREAKPOINTS, VERTICAL_BREAKPOINTS, mark
from waveui.core.sanitize import sanitize_line
from waveui.frontends.tui.widgets.footer import KeyFooter
from waveui.frontends.tui.widgets.logview import TaskLog

DIFF_LINES_SHOWN = 5_000


def declared_by(path: str, patterns: list[str]) -> bool:
    return covers(patterns, path)


def shared_files(conflicts: list[dict], task_id: str, other: str) -> list[str]:
    """The declared files the plan found both tasks touch (its conflict rows)."""
    return [str(f) for c in conflicts if {task_id, other} <= set(c.get("tasks", [])) for f in c.get("files", [])]


class TaskDetailScreen(Screen):
    """Everything about one task; the run's keys (pause, retry, cancel…) still act on it.

    In a narrow terminal the files and attempts go under the log (waveui.tcss), so the log keeps its width.
    """

    HORIZONTAL_BREAKPOINTS = HORIZONTAL_BREAKPOINTS  # narrow: the side tables go under the log
    VERTICAL_BREAKPOINTS = VERTICAL_BREAKPOINTS
    BINDINGS = [
        Binding("escape", "close", "Back", id="detail.back"),
        *RUN_BINDINGS,
        Binding("l", "show_log", "Log", id="waveui.detail-log", tooltip="detail: the task's log"),
        Binding("d", "show_diff", "Diff", id="waveui.detail-diff",
                tooltip="detail: the task branch's diff, made afresh (enter on an attempt: that attempt's work)"),
    ]

    def __init__(self, task_id: str, state: RunState, *, log_dir: Path | None, repo_root: Path | None) -> None:
        super().__init__()
        self.task_id = task_id
        self.state = state
        self.log_dir = log_dir
        self.repo_root = repo_root
        self.diff: BranchDiff | None = None  # the branch's: the files table reads it
        self._attempts_shown: tuple = ()
        self._files_shown: tuple = ()
        self._ready = False  # the app's flush may come before on_mount has built the tables

    @property
    def task(self) -> TaskView:
        return self.state.tasks[self.task_id]

    def compose(self) -> ComposeResult:
        # Held, not queried: the app's flush may call show() while this screen mounts or goes away.
        self.summary = Static(id="detail-summary")
        self.log_view = TaskLog(self.log_dir, id="detail-log", classes="pane")
        self.diff_view = RichLog(id="detail-diff", wrap=False, markup=False, highlight=False,
                                 max_lines=DIFF_LINES_SHOWN, classes="pane")
        self.files_table = DataTable(id="detail-files", cursor_type="none", classes="pane")
        self.attempts_table = DataTable(id="detail-attempts", cursor_type="row", classes="pane")
        yield self.summary
        with Horizontal(id="detail-body"):
            with TabbedContent(initial="tab-log", id="detail-tabs") as self.tabs:
                with TabPane("Log", id="tab-log"):
                    yield self.log_view
                with TabPane("Diff", id="tab-diff"):
                    yield self.diff_view
            with Vertical(id="detail-side"):
                yield self.files_table
                yield self.attempts_table
        yield KeyFooter()

    def on_mount(self) -> None:
        self.files_table.add_columns("File", "Declared", "This task")
        self.files_table.border_title = "Files: changed vs declared"
        self.diff_view.border_title = "Diff against the merge base"
        self.attempts_table.add_columns("Try", "Started", "Ran", "Outcome", "Kept as", "Reason")
        self.attempts_table.border_title = "Attempts"
        self.attempts_table.border_subtitle = "enter: the attempt's diff"
        self.log_view.follow(self.task_id)
        self._ready = True
        self.show(self.state, self.state.now)
        self.load_branch_diff()

    def action_close(self) -> None:
        self._ready = False
        self.app.pop_screen()

    # ---- the figures, refreshed with every flush ----

    def show(self, state: RunState, now: float) -> None:
        self.state = state
        if not self._ready or self.task_id not in state.tasks:
            return
        self.summary.update(self._summary(now))
        self._fill_attempts()
        self._fill_files()

    def _summary(self, now: float) -> Content:
        task = self.task
        colour = f"$task-{COLOUR.get(task.state, 'waiting')}"
        facts = [task.state, f"try {task.attempt or 1}", f"wave {task.wave + 1}", f"{task.story_points:g} points",
                 f"priority {task.priority}"]
        if task.critical:
            facts.append("critical path")
        money = [f"ran {metrics.duration(task.elapsed(now))}", f"cost {metrics.money(task.cost)}",
                 f"{task.iterations} iterations"]
        if task.tokens_in or task.tokens_out:
            money.insert(2, f"tokens {metrics.tokens(task.tokens_in)} in, {metrics.tokens(task.tokens_out)} out"
                         + (f" ({metrics.tokens(task.tokens_cached)} cached)" if task.tokens_cached else ""))
        if task.worker is not None:
            money += [f"worker {task.worker}", sanitize_line(task.worktree), f"pid {task.pid or '—'}"]
        lines = [
            # Ids, worktrees and the branch come from the journal, which any process could have written to.
            Content.assemble((f"{mark(task.state)} {sanitize_line(task.id)}", f"bold {colour}"), "  ",
                             (sanitize_line(task.title), "bold")),
            Content.assemble((" · ".join(facts), colour)),
            Content.assemble((" · ".join(m for m in money if m), "$text-muted")),
            Content.assemble(("branch ", "$text-muted"), branch_of(self.state.epic, task.id) or "—",
                             ("   requires ", "$text-muted"), sanitize_line(", ".join(task.requires)) or "—"),
        ]
        why = sanitize_line(task.reason or task.message)
        if why or task.exit_code is not None:
            code = f"exit code {task.exit_code}  " if task.exit_code is not None else ""
            lines.append(Content.assemble((code, "$task-failed"), why))
        if task.after:  # serialised behind tasks sharing its files: why it waits though it requires none of them
            lines.append(Content.assemble(("ordered after ", "$text-muted"), sanitize_line(", ".join(
                f"{earlier} (shares {', '.join(shared_files(self.state.conflicts, task.id, earlier)) or 'files'})"
                for earlier in task.after))))
        if task.denied:  # the agent's recipe refused it these: likely why it did less than asked
            lines.append(Content.assemble(("⚠ denied ", "bold $warning"), sanitize_line(", ".join(task.denied))))
        return Content("\n").join(lines)

    def _fill_attempts(self) -> None:
        attempts = tuple((a.number, a.started, a.ended, a.seconds, a.outcome, a.reason, a.ref)
                         for a in self.task.attempts)
        if attempts == self._attempts_shown:
            return
        self._attempts_shown = attempts
        table = self.attempts_table
        row = table.cursor_row
        table.clear()
        start = self.state.started or 0.0
        for number, started, ended, seconds, outcome, reason, ref in attempts:
            ran = metrics.duration(seconds) if ended is not None else "running"  # the clock the summary's "ran" is
            # The ref as git's short form: `git log waveui/<epic>/<task>/<n>` finds it.
            table.add_row(Text(str(number)), Text(f"+{metrics.duration(started - start)}"), Text(ran),
                          Text(outcome or self.task.state), Text(sanitize_line(ref.removeprefix("refs/")) or "—"),
                          Text(sanitize_line(reason)), key=str(number))
        table.move_cursor(row=row)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table is not self.attempts_table:
            return
        event.stop()
        attempt = next(a for a in self.task.attempts if str(a.number) == event.row_key.value)
        if not attempt.ref:
            self.notify(f"Attempt {attempt.number}'s work is not kept (yet).", timeout=3)
            return
        self.load_attempt_diff(attempt)

    def _fill_files(self) -> None:
        rows = tuple(self._file_rows())
        if rows == self._files_shown:
            return
        self._files_shown = rows
        table = self.files_table
        table.clear()
        for row in rows:
            table.add_row(*map(Text, row))

    def _file_rows(self):
        task = self.task
        conflicted = set(task.files) if task.state == "conflicted" else set()
        diffed = self.diff is not None and not self.diff.error
        changed = set(self.diff.files) if diffed else set()
        if task.state == "done":
            changed |= set(task.files)
        unchanged = "not changed" if diffed or task.state == "done" else "not known yet"
        changed |= set(task.undeclared) | conflicted
        for path in sorted(changed):
            declared = "yes" if declared_by(path, task.affected_files) else "NO: undeclared"
            yield sanitize_line(path), declared, "merge conflict" if path in conflicted else "changed"
        for pattern in task.affected_files:
            if not any(declared_by(path, [pattern]) for path in changed):
                yield sanitize_line(pattern), "declared", unchanged

    # ---- the tabs, and the diff made in a thread ----

    def action_show_log(self) -> None:
        self.tabs.active = "tab-log"

    def action_show_diff(self) -> None:
        self.tabs.active = "tab-diff"
        self.load_branch_diff()

    def load_branch_diff(self) -> None:
        """The task branch's diff against its merge base, in the Diff tab."""
        branch = branch_of(self.state.epic, self.task_id)
        self._start_diff("Diff against the merge base", f"git diff {self.state.branch}...{branch}",
                         self._load_branch_diff)

    def load_attempt_diff(self, attempt: Attempt) -> None:
        """What a kept attempt did (``git diff base commit``), in the Diff tab, which comes to the front."""
        self.tabs.active = "tab-diff"
        self._start_diff(f"Diff of attempt {attempt.number}, as kept",
                         f"git diff {attempt.base[:12]} {attempt.commit[:12]}",
                         partial(self._load_attempt_diff, attempt))

    def _start_diff(self, title: str, command: str, load: Callable[[], Awaitable[None]]) -> None:
        """Clear the Diff tab, title it, and make the diff (``load``) in a thread while ``command`` shows."""
        view = self.diff_view
        view.border_title = title
        view.clear()
        if self.repo_root is None:
            view.write(Text("No repository here: run waveui from the project to see the task's diff."))
            return
        view.write(Text(sanitize_line(f"{command} …")))
        self.run_worker(load(), group="diff", exclusive=True, name="git diff")

    async def _load_attempt_diff(self, attempt: Attempt) -> None:
        diff = await asyncio.to_thread(kept_diff, self.repo_root, attempt.ref.removeprefix("refs/"), attempt.base,
                                       attempt.commit)
        self._show_diff(diff, empty=f"Attempt {attempt.number} changed nothing.")

    async def _load_branch_diff(self) -> None:
        integration = self.state.branch or "HEAD"
        task = self.task
        diff = await asyncio.to_thread(branch_diff, self.repo_root, integration,
                                       branch_of(self.state.epic, self.task_id),
                                       task.commit if task.state == "done" else "")
        self.diff = diff
        self._show_diff(diff, empty=f"{diff.branch} has no changes against its merge base "
                                    "(merged already, or not started).")
        self._fill_files()

    def _show_diff(self, diff: BranchDiff, empty: str) -> None:
        view = self.diff_view
        view.clear()
        if diff.error:
            view.write(Text(f"No diff for {diff.branch}: {diff.error}"))
            return
        if not diff.text:
            view.write(Text(empty))
            return
        if diff.merged:
            view.write(Text(f"{diff.branch} is merged; this is what its merge brought in:", style=Style(italic=True)))
        variables = self.app.theme_variables
        styles = {"+": Style(color=variables.get("task-done")), "-": Style(color=variables.get("task-failed")),
                  "@": Style(color=variables.get("accent"))}
        lines = diff.text.splitlines()
        for line in lines[:DIFF_LINES_SHOWN]:
            view.write(Text(line, style=styles.get(line[:1], Style())))
        if diff.truncated or len(lines) > DIFF_LINES_SHOWN:
            view.write(Text("… the diff goes on; see it in full with git.", style=Style(italic=True)))
