"""The header: what the run is doing, how far it got, what it costs, when it ends, and the machine's load."""

from __future__ import annotations

import time
from dataclasses import dataclass

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import Static

from waveui.run.state import RunState
from waveui.run import metrics
from waveui.frontends.tui.look import NARROW_BELOW
from waveui.core.sanitize import sanitize_line

SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 20
# In watch mode, a journal this quiet (seconds) means the run's process may be gone.
STALE_AFTER = 60.0


def sparkline(values: list[float], width: int = SPARK_WIDTH, top: float = 100.0) -> str:
    """The last ``width`` values (0..top) as block characters."""
    values = values[-width:]
    steps = len(SPARK) - 1
    return "".join(SPARK[round(max(0.0, min(top, v)) / top * steps)] for v in values).rjust(width)


@dataclass
class HeaderFigures:
    """What the header shows besides the state itself, worked out by the app."""

    now: float
    eta: float | None
    projected: float | None
    read_only: bool
    task_filter: str = "all"


class RunHeader(Horizontal):
    """Two lines about the run on the left, CPU and memory sparklines on the right.

    In a narrow terminal, one line: the run's state, how many tasks are done,
    the problems, the cost and the ETA (the class ``-compact``, set on resize).
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        # Held, not queried: the app may flush before these are mounted.
        self._summary = Static(id="summary")
        self._load_view = Static(id="load")
        self._shown: dict[Static, tuple] = {}
        self._last: tuple[RunState, HeaderFigures] | None = None  # shown again when the header changes form

    def compose(self) -> ComposeResult:
        yield self._summary
        yield self._load_view

    @property
    def compact(self) -> bool:
        return self.has_class("-compact")

    def on_resize(self, event: events.Resize) -> None:
        compact = event.size.width < NARROW_BELOW  # one line of short labels, no sparklines
        if compact != self.compact:
            self.set_class(compact, "-compact")
            if self._last is not None:
                self.show(*self._last)

    def show(self, state: RunState, figures: HeaderFigures) -> None:
        self._last = state, figures
        if self.compact:
            summary = self._compact_line(state, figures)
        else:
            summary = Content("\n").join([self._status_line(state, figures), self._figures_line(state, figures)])
        for view, content in ((self._summary, summary), (self._load_view, self._load(state))):
            # An unchanged part costs no repaint (Content's == looks at the text only, not its styles).
            key = (content.plain, tuple(content.spans))
            if key != self._shown.get(view):
                self._shown[view] = key
                view.update(content, layout=False)  # fixed size: no layout pass for the whole screen

    def _status_line(self, state: RunState, figures: HeaderFigures) -> Content:
        parts: list = []
        if figures.read_only:
            parts += [(" READ-ONLY ", "bold $background on $warning"), " "]
        epic = sanitize_line(state.epic) or "waveui"
        parts += [(epic, "bold"), "  ", self._run_state(state, figures), "  "]
        if state.tasks:
            counts = state.breakdown()
            parts += [(f"{counts.done}/{counts.total} done", "bold $task-done")]
            for text, number, style in ((f"{counts.active} active", counts.active, "$task-running"),
                                        (metrics.plural(counts.problems, "problem"), counts.problems, "$task-failed"),
                                        (f"{counts.waiting} waiting", counts.waiting, "$task-waiting"),
                                        (f"{counts.cancelled} cancelled", counts.cancelled, "$task-blocked"),
                                        (f"{counts.other} other", counts.other, "$text-muted")):
                if number:
                    parts += [" · ", (text, style)]
        if any(notice.kind == "sandbox" for notice in state.notices):  # sandbox = "auto" fell back
            parts += ["   ", ("⚠ unsandboxed: no bubblewrap", "bold $warning")]
        if figures.task_filter != "all":
            parts += ["   ", (f"filter: {figures.task_filter}", "$accent")]
        return Content.assemble(*parts)

    def _compact_line(self, state: RunState, figures: HeaderFigures) -> Content:
        parts: list = []
        if figures.read_only:
            parts += [(" READ-ONLY ", "bold $background on $warning"), " "]
        parts += [(sanitize_line(state.epic) or "waveui", "bold"), " ", self._run_state(state, figures, short=True)]
        if state.tasks:
            counts = state.breakdown()
            parts += ["  ", (f"{counts.done}/{counts.total} done", "bold $task-done")]
            if counts.problems:
                parts += [" · ", (metrics.plural(counts.problems, "problem"), "$task-failed")]
        if state.cost:
            parts += ["  ", metrics.money(state.cost)]
        parts += self._eta(state, figures)
        if figures.task_filter != "all":
            parts += ["  ", (f"filter: {figures.task_filter}", "$accent")]
        return Content.assemble(*parts)

    def _run_state(self, state: RunState, figures: HeaderFigures, short: bool = False) -> tuple[str, str]:
        if state.started is None:
            return ("◌ waiting for the journal" if figures.read_only else "◌ starting", "$text-muted")
        if state.finished:
            if state.ok:
                return ("✓ finished", "bold $success")
            return (f"■ {sanitize_line(state.finish_reason) or 'ended'}", "bold $error")
        if state.controller_gone is not None:
            since = time.strftime("%H:%M", time.localtime(state.controller_gone))
            if short:
                return (f"■ controller gone since {since}", "bold $error")
            return (f"■ controller gone since {since} — `waveui run` to resume", "bold $error")
        if figures.read_only and figures.now - state.now > STALE_AFTER:
            return (f"? no events for {metrics.duration(figures.now - state.now)}", "bold $warning")
        if state.idle and state.done == state.total:
            return ("✓ all done" if short else "✓ all done: quit to finish the run", "bold $success")
        if state.idle:
            return ("◦ idle" if short else "◦ nothing left to run: retry, or quit to finish", "bold $text-muted")
        if state.paused:
            return ("‖ paused" if short else "‖ paused: no new tasks start", "bold $task-paused")
        return ("▶ running", "bold $task-running")

    def _figures_line(self, state: RunState, figures: HeaderFigures) -> Content:
        now = figures.now
        # no one runs it, or nothing is left to run: its clock and ETA stand still (and the screen stays quiet)
        stopped = state.finished or state.idle or state.controller_gone is not None
        elapsed = state.elapsed(None if stopped else now)
        limit = f"{state.limit}/{state.max_parallel}"
        parts: list = [("efficiency ", "$text-muted"), f"{state.efficiency(None if stopped else now):.0%}"]
        if state.cost or state.max_cost is not None:  # no task reports a cost and there is no budget: no word of it
            parts += [("   cost ", "$text-muted"), metrics.money(state.cost)]
            if state.max_cost is not None:  # spent / budget
                over = state.cost >= state.max_cost
                parts += [(" / ", "$text-muted"), (metrics.money(state.max_cost), "bold $error" if over else "")]
            if figures.projected is not None and not state.finished:
                parts += [(" of ≈", "$text-muted"), (metrics.money(figures.projected), "$text-muted")]
        if state.tokens_in or state.tokens_out:
            parts += [("   tokens ", "$text-muted"),
                      f"{metrics.tokens(state.tokens_in)} in {metrics.tokens(state.tokens_out)} out"]
        parts += [("   elapsed ", "$text-muted"), metrics.duration(elapsed)]
        parts += self._eta(state, figures)
        parts += [("   workers ", "$text-muted"), (limit, "bold")]
        if state.limit_reason:
            parts += [(f" ({sanitize_line(state.limit_reason)})", "$text-muted")]
        return Content.assemble(*parts)

    def _eta(self, state: RunState, figures: HeaderFigures) -> list:
        if state.finished or state.idle:
            return []
        if state.controller_gone is not None:
            return [("   ETA ", "$text-muted"), ("— no controller", "$error")]
        if state.paused:
            return [("   ETA ", "$text-muted"), ("paused", "$task-paused")]
        return [("   ETA ", "$text-muted"), metrics.duration(figures.eta)]

    def _load(self, state: RunState) -> Content:
        if not state.samples:
            return Content.assemble(("cpu ", "$text-muted"), ("—", "$text-muted"), "\n",
                                    ("mem ", "$text-muted"), ("—", "$text-muted"))
        cpu = [s.cpu for s in state.samples]
        memory = [s.memory_percent for s in state.samples]
        return Content.assemble(
            ("cpu ", "$text-muted"), (sparkline(cpu), "$task-running"), f" {cpu[-1]:3.0f}%", "\n",
            ("mem ", "$text-muted"), (sparkline(memory), "$task-paused"), f" {memory[-1]:3.0f}%",
        )
