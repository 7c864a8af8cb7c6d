"""Headless output: one line per task state change, a periodic summary, a final one."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from waveui.run.events import Event, LimitChanged, Notice, RunFinished, RunPaused, RunStarted, TaskStateChanged
from waveui.plan.eta import estimate_remaining
from waveui.run.metrics import duration, money, projected_cost, tally, tokens
from waveui.run.state import RunState, fold
from waveui.core.sanitize import sanitize

SUMMARY_EVERY_SECONDS = 10.0
# Steps too brief to be worth a line of their own in a log.
QUIET_STATES = frozenset({"preparing", "merging"})


class HeadlessReporter:
    """Prints a run for logs and CI. It folds events into its own RunState, as every reader does."""

    def __init__(self, out: TextIO | None = sys.stdout, summary_every: float = SUMMARY_EVERY_SECONDS):
        self.out = out
        self.state = RunState()
        self.summary_every = summary_every
        self._last_summary = 0.0

    def catch_up(self, events) -> None:
        """Fold a resumed run's earlier events without printing them."""
        for event in events:
            fold(self.state, event)

    def __call__(self, event: Event) -> None:
        fold(self.state, event)
        stamp = time.strftime("%H:%M:%S", time.localtime(event.t))
        if isinstance(event, RunStarted):
            verb = "resuming" if event.resumed else "running"
            done = self.state.done
            self._print(f"{stamp}  {verb} {event.epic}: {len(event.tasks)} tasks, up to {event.limit} at once"
                        + (f", {done} already done" if event.resumed else "")
                        + (f", merging into {event.branch}" if event.branch else ""))
        elif isinstance(event, TaskStateChanged) and event.state not in QUIET_STATES:
            self._print(self._task_line(stamp, event))
        elif isinstance(event, LimitChanged):
            self._print(f"{stamp}  parallelism limit {event.limit}: {sanitize(event.reason)}")
        elif isinstance(event, Notice):
            self._print(f"{stamp}  {'!' if event.level != 'info' else ' '} {sanitize(event.text)}")
        elif isinstance(event, RunPaused):
            self._print(f"{stamp}  dispatching {'paused' if event.paused else 'resumed'}")
        elif isinstance(event, RunFinished):
            self._print(f"{stamp}  run {event.reason}: " + self.summary(event.t))
            self._final_lines()
            return
        if event.t - self._last_summary >= self.summary_every and self.state.started is not None:
            self._last_summary = event.t
            self._print(f"{stamp}  [{self.summary(event.t)}]")

    def _task_line(self, stamp: str, e: TaskStateChanged) -> str:
        task = self.state.tasks.get(e.task)
        detail = []
        if e.state in ("running", "preparing") and e.attempt > 1:
            detail.append(f"attempt {e.attempt}")
        if e.state == "done" and task is not None:
            detail.append(duration(task.elapsed(e.t)))
            if e.files:
                detail.append(f"{len(e.files)} file{'s' if len(e.files) != 1 else ''} changed")
            if e.undeclared:
                detail.append("undeclared: " + ", ".join(e.undeclared[:5]))
        if e.reason and e.state not in ("running", "preparing", "done"):
            detail.append(e.reason)
        elif e.reason and e.state == "running" and ("resumed" in e.reason or "adopted" in e.reason):
            detail.append(e.reason)
        text = f"{stamp}  {e.task:<24} {e.state:<10}"
        return sanitize(text + ("  " + "; ".join(detail) if detail else "")).rstrip()

    def summary(self, now: float) -> str:
        s = self.state
        parts = tally(s.breakdown()) + [f"efficiency {100 * s.efficiency(now):.0f}%"]
        if s.cost or s.max_cost is not None:  # no task reports a cost and there is no budget: no word of it
            parts.append(f"cost {money(s.cost)}" + (f" of {money(s.max_cost)}" if s.max_cost is not None else "")
                         + (f" (projected {money(projected_cost(s))})" if s.cost and not s.finished else ""))
        if s.tokens_in or s.tokens_out:
            parts.append(f"tokens {tokens(s.tokens_in)} in / {tokens(s.tokens_out)} out")
        parts.append(f"elapsed {duration(s.elapsed(now))}")
        if not s.finished:
            parts.append(f"ETA {duration(estimate_remaining(s, now))}")
        return ", ".join(parts)

    def _final_lines(self) -> None:
        for task in self.state.tasks.values():
            if task.state != "done":
                self._print(sanitize(f"  {task.id}: {task.state}" + (f" ({task.reason})" if task.reason else "")))

    def _print(self, line: str) -> None:
        if self.out is None:
            return
        try:
            # Every line, whatever it holds (the epic and branch of a resumed run come from its journal).
            print(sanitize(line), file=self.out, flush=True)
        except (BrokenPipeError, OSError):
            self.out = None  # the reader went away (`| head`); the run goes on regardless
