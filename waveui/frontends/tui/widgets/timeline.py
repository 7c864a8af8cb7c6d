"""The wave timeline: each wave a group, each task a row with its progress, state and time (Line API).

Rows are drawn on demand by :meth:`WaveTimeline.render_line` and kept as
Strips until the task they show changes, so thousands of tasks scroll as
smoothly as ten: a flush redraws only the rows of the tasks that changed and
of those whose clock runs, once a second.
"""

from __future__ import annotations

import bisect

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.strip import Strip

from waveui.run.state import RunState, TaskView
from waveui.run import metrics
from waveui.frontends.tui.bridge import Changes
from waveui.frontends.tui.widgets.lines import CachedLinesView
from waveui.frontends.tui.look import (
    ACTIVE_STATES,
    CRITICAL_MARK,
    STATE_COMPONENTS,
    STATE_GROUPS,
    TaskFilter,
    component,
    highlight,
    mark,
    state_style,
)
from waveui.frontends.tui.messages import TaskOpened, TaskSelected
from waveui.core.sanitize import sanitize_line
from waveui.frontends.tui.text import bar, fit, fit_right

ID_WIDTH_MAX = 24
STATE_WIDTH = 10  # "conflicted"


class WaveTimeline(CachedLinesView, can_focus=True):
    """Every task of the run, grouped by wave; the selected one is highlighted."""

    COMPONENT_CLASSES = {"timeline--wave", "timeline--cursor", "timeline--dim", "timeline--track",
                         "timeline--critical", "timeline--empty", "timeline--priority", *STATE_COMPONENTS}
    BINDINGS = [
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("pagedown,ctrl+d", "page(1)", "Page down", show=False),
        Binding("pageup,ctrl+u", "page(-1)", "Page up", show=False),
        Binding("home,g", "edge(0)", "First task", show=False),
        Binding("end,G", "edge(1)", "Last task", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = RunState()
        self.filter = TaskFilter()
        self.selected: str | None = None
        self.now = 0.0
        self._rows: list[str | int] = []  # a task id, or a wave number for the wave's heading
        self._row_of: dict[str, int] = {}
        self._wave_row: dict[int, int] = {}
        self._wave_members: dict[int, list[str]] = {}
        self._order: list[str] = []
        self._position: dict[str, int] = {}
        self._clocked: set[str] = set()
        self._id_width = 8
        self._priority_width = 0
        self.empty_message = "Waiting for the run to start…"

    # ---- feeding it ----

    def show(self, state: RunState, task_filter: TaskFilter, now: float) -> None:
        """Lay the rows out afresh (a new run, or another filter)."""
        self.state, self.filter, self.now = state, task_filter, now
        tasks = sorted(state.tasks.values(), key=lambda t: (t.wave, t.rank))
        self._wave_members = {}
        for task in tasks:
            self._wave_members.setdefault(task.wave, []).append(task.id)
        self._rows, self._row_of, self._wave_row = [], {}, {}
        for task in tasks:
            if not task_filter.matches(task):
                continue
            if task.wave not in self._wave_row:
                self._wave_row[task.wave] = len(self._rows)
                self._rows.append(task.wave)
            self._row_of[task.id] = len(self._rows)
            self._rows.append(task.id)
        self._order = [row for row in self._rows if isinstance(row, str)]
        self._position = {task_id: i for i, task_id in enumerate(self._order)}
        self._id_width = min(ID_WIDTH_MAX, max((len(t.id) for t in tasks), default=4))
        # A priority column only in runs that use priorities: otherwise the title has the room.
        self._priority_width = 4 if any(t.priority for t in tasks) else 0
        self._clocked = {t.id for t in tasks if t.clock_since is not None}
        self.virtual_size = Size(0, len(self._rows))  # as wide as the pane: rows are cut to fit
        self._cache.clear()
        self.refresh()

    def update(self, changes: Changes, now: float) -> None:
        """Redraw the rows ``changes`` touched, and those whose clock runs when ``now`` (whole seconds) moved on."""
        ticked, self.now = now != self.now, now
        if changes.rebuilt:
            self.show(self.state, self.filter, now)
            return
        touched = set(changes.tasks)
        if ticked or changes.states:  # a clock that stopped or started shows it at once
            clocked = {t.id for t in self.state.tasks.values() if t.clock_since is not None}
            touched |= clocked | self._clocked
            self._clocked = clocked
        if self.filter.active and any(self._moves_in_or_out(task_id) for task_id in changes.tasks):
            self.show(self.state, self.filter, now)
            return
        tasks = self.state.tasks
        if not self._priority_width and any(tasks[t].priority for t in changes.tasks if t in tasks):
            self.show(self.state, self.filter, now)
            return
        for task_id in touched:
            self._refresh_task(task_id)

    def _moves_in_or_out(self, task_id: str) -> bool:
        task = self.state.tasks.get(task_id)
        return task is not None and self.filter.matches(task) != (task_id in self._row_of)

    def _refresh_task(self, task_id: str) -> None:
        row = self._row_of.get(task_id)
        if row is None:
            return
        self._refresh_row(row)
        task = self.state.tasks[task_id]
        self._refresh_row(self._wave_row[task.wave])

    def _refresh_row(self, row: int) -> None:
        """Redraw the cells of ``row`` that would look different."""
        shown = self._cache.pop(row, None)
        if shown is None:  # not drawn yet: when it is
            self.refresh_line(row)
            return
        strip = self._cache[row] = self._row_strip(row, shown.cell_length)
        self.refresh_cells(row, shown, strip)

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(0, len(self._rows))  # as wide as the pane: rows are cut to fit
        self._cache.clear()

    # ---- selection ----

    def select(self, task_id: str | None, *, scroll: bool = True) -> None:
        """Highlight ``task_id`` (chosen here or in another pane)."""
        old, self.selected = self.selected, task_id
        for tid in (old, task_id):
            if tid in self._row_of:
                self._refresh_row(self._row_of[tid])
        if scroll and task_id in self._row_of:
            self._scroll_to_row(self._row_of[task_id])

    def nearest_shown(self, task_id: str | None) -> str | None:
        """``task_id`` if it is shown, else the shown task after it (at the end: before it); None if none is."""
        if task_id in self._row_of or not self._order:
            return task_id if task_id in self._row_of else None
        tasks = self.state.tasks
        hidden = tasks.get(task_id or "")
        if hidden is None:
            return self._order[0]
        after = bisect.bisect_left(self._order, (hidden.wave, hidden.rank),
                                   key=lambda shown: (tasks[shown].wave, tasks[shown].rank))
        return self._order[min(after, len(self._order) - 1)]

    def _scroll_to_row(self, row: int) -> None:
        top, height = int(self.scroll_y), self.scrollable_content_region.height
        if height <= 0:  # not laid out yet: once it is
            self.call_after_refresh(self._scroll_to_row, row)
            return
        if row - 1 < top:  # show the wave heading above the first task too
            self.scroll_to(y=max(0, row - 1), animate=False, immediate=True)
        elif row >= top + height:
            self.scroll_to(y=row - height + 1, animate=False, immediate=True)

    def _choose(self, position: int) -> None:
        if not self._order:
            return
        task_id = self._order[max(0, min(len(self._order) - 1, position))]
        if task_id != self.selected:
            self.select(task_id)
            self.post_message(TaskSelected(task_id))

    def _current(self) -> int:
        return self._position.get(self.selected or "", -1)

    def action_move(self, step: int) -> None:
        current = self._current()
        self._choose(0 if current < 0 else current + step)

    def action_page(self, direction: int) -> None:
        step = max(1, self.scrollable_content_region.height - 2)
        self.action_move(step * direction)

    def action_edge(self, end: int) -> None:
        self._choose(len(self._order) - 1 if end else 0)

    def on_click(self, event: events.Click) -> None:
        row = event.y + int(self.scroll_y)
        if 0 <= row < len(self._rows) and isinstance(self._rows[row], str):
            task_id = self._rows[row]
            self._choose(self._position[task_id])
            if event.chain >= 2:
                self.post_message(TaskOpened(task_id))

    # ---- drawing ----

    def render_line(self, y: int) -> Strip:
        row = y + int(self.scroll_y)
        width = self.scrollable_content_region.width
        if not self._rows:
            return self._empty_line(y, width)
        if row >= len(self._rows):
            return Strip.blank(width, self.base_style)
        strip = self._cache.get(row)
        if strip is None or strip.cell_length != width:
            strip = self._cache[row] = self._row_strip(row, width)
        return strip

    def _row_strip(self, row: int, width: int) -> Strip:
        item = self._rows[row]
        if isinstance(item, int):
            return self._wave_strip(item, width)
        return self._task_strip(self.state.tasks[item], width)

    def _empty_line(self, y: int, width: int) -> Strip:
        if y != 1:
            return Strip.blank(width, self.base_style)
        text = self.empty_message if not self.state.tasks else f"No task matches the filter: {self.filter.describe()}"
        style = component(self, "timeline--empty")
        return Strip([Segment("  " + text, style)]).adjust_cell_length(width, self.base_style)

    def _wave_strip(self, wave: int, width: int) -> Strip:
        members = [self.state.tasks[t] for t in self._wave_members.get(wave, [])]
        counts = [metrics.plural(len(members), "task")]
        for one, many, states in (("done", "done", {"done"}), ("running", "running", ACTIVE_STATES),
                                  ("problem", "problems", STATE_GROUPS["problems"])):
            number = sum(1 for t in members if t.state in states)
            if number:
                counts.append(metrics.plural(number, one, many))
        style = component(self, "timeline--wave")
        text = f"━━ Wave {wave + 1} ━━ {' · '.join(counts)} "
        return Strip([Segment(fit(text, width), style)]).adjust_cell_length(width, style)

    def _task_strip(self, task: TaskView, width: int) -> Strip:
        base = self.base_style
        coloured = state_style(self, task.state)
        dim = component(self, "timeline--dim")
        bar_width = 16 if width >= 100 else 10
        fixed = 2 + 2 + self._id_width + 1 + 1 + bar_width + 1 + 4 + 1 + STATE_WIDTH + 1 + 6 + 3 + self._priority_width
        title_width = max(0, width - fixed)
        segments = [
            Segment(CRITICAL_MARK if task.critical else " ", component(self, "timeline--critical")),
            Segment(" ", base),
            Segment(mark(task.state) + " ", coloured),
            Segment(fit(sanitize_line(task.id), self._id_width) + " ", base),  # ids come from the journal
            *self._title_segments(task, title_width, base, dim),
            *self._bar_segments(task, bar_width, coloured, dim),
            Segment(" " + fit(task.state, STATE_WIDTH) + " ", coloured),
            Segment(fit_right(self._elapsed(task), 6), base),
            Segment(fit_right(f"#{task.attempt}" if task.attempt > 1 else "", 3), dim),
            Segment(fit_right(f"{'↑' if task.priority > 0 else '↓'}{abs(task.priority)}" if task.priority else "",
                              self._priority_width), component(self, "timeline--priority")),
        ]
        strip = Strip(segments).adjust_cell_length(width, base)
        if task.id == self.selected:
            cursor = highlight(self, "timeline--cursor")
            strip = Strip(Segment.apply_style(list(strip), post_style=cursor), strip.cell_length)
        return strip

    def _title_segments(self, task: TaskView, width: int, base: Style, dim: Style) -> list[Segment]:
        if width <= 0:
            return []
        title = fit(sanitize_line(task.title), width)
        message = sanitize_line(task.message) if task.state in ACTIVE_STATES else ""
        used = len(title.rstrip())
        if message and width - used > 8:
            head = title[:used]
            return [Segment(head, base), Segment(fit(" · " + message, width - used) + " ", dim)]
        return [Segment(title + " ", base)]

    def _bar_segments(self, task: TaskView, width: int, coloured: Style, dim: Style) -> list[Segment]:
        filled, empty = bar(task.progress / 100.0, width)
        track = component(self, "timeline--track")
        shown = task.state not in ("pending", "ready", "blocked") or task.progress > 0
        percent = f"{task.progress:3.0f}%" if shown else ""
        return [Segment(filled, coloured), Segment(empty, track), Segment(" " + fit_right(percent, 4), coloured)]

    def _elapsed(self, task: TaskView) -> str:
        if task.started is None:
            return ""
        return metrics.duration(task.elapsed(self.now))
