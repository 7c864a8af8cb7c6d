"""The dependency graph pane: task boxes in columns by wave, edges between them, scrollable both ways (Line API).

The layout (:mod:`waveui.frontends.tui.graph_layout`) is made once per run; a flush only
redraws the rows of boxes whose task changed. Boxes take their task's state
colour; the critical path has heavy borders and its edges in ``$critical``;
the selected task is highlighted with its dependencies and dependents, and
the edges between them.
"""

from __future__ import annotations

import re

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size, Spacing
from textual.strip import Strip

from waveui.run.state import RunState, TaskView
from waveui.frontends.tui.bridge import Changes
from waveui.frontends.tui.widgets.lines import CachedLinesView
from waveui.frontends.tui.graph_layout import BOX_HEIGHT, GraphLayout, cells_of, layout_graph
from waveui.frontends.tui.look import ACTIVE_STATES, STATE_COMPONENTS, TaskFilter, component, highlight, mark, state_style
from waveui.frontends.tui.messages import TaskOpened, TaskSelected
from waveui.core.sanitize import sanitize_line
from waveui.frontends.tui.text import fit, fit_right

ID_WIDTH_MAX = 18
LINE_RUN = re.compile(r"[^ ]+")
LIGHT = ("┌", "─", "┐", "│", "└", "┘")
HEAVY = ("┏", "━", "┓", "┃", "┗", "┛")


def box_width_for(state: RunState) -> int:
    """Room for a mark, the longest id (up to a limit) and a percentage, inside borders."""
    longest = max((len(t) for t in state.tasks), default=4)
    return min(ID_WIDTH_MAX, longest) + 2 + 5 + 2


def make_layout(state: RunState, room: tuple[int, int] | None = None) -> GraphLayout:
    """The graph of ``state``'s tasks, folded to fit ``room`` (width, height) where it can (None: never)."""
    tasks = sorted(state.tasks.values(), key=lambda t: (t.wave, t.rank))
    return layout_graph([(t.id, t.wave, t.requires) for t in tasks], box_width_for(state), room)


class DependencyGraph(CachedLinesView, can_focus=True):
    """Tasks as boxes in wave columns, with their dependencies as lines.

    A layout made for a room (see :func:`make_layout`) is made again when the
    pane's size changes, so a wide graph folds into the rows a big pane has.
    """

    COMPONENT_CLASSES = {"graph--edge", "graph--edge-critical", "graph--edge-selected", "graph--critical",
                         "graph--selected", "graph--related", "graph--dim", "graph--empty", *STATE_COMPONENTS}
    BINDINGS = [
        Binding("down,j", "move(1)", "Next in wave", show=False),
        Binding("up,k", "move(-1)", "Previous in wave", show=False),
        Binding("right,l", "across(1)", "Next wave", show=False),
        Binding("left,h", "across(-1)", "Previous wave", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = RunState()
        self.layout_: GraphLayout | None = None
        self.filter = TaskFilter()
        self.selected: str | None = None
        self._related: set[str] = set()
        self._hot_cells: set[tuple[int, int]] = set()
        self._critical_cells: set[tuple[int, int]] = set()
        self.empty_message = "Waiting for the run to start…"

    # ---- feeding it ----

    @property
    def room(self) -> tuple[int, int]:
        """The columns and rows the graph can be drawn in without scrolling."""
        return tuple(self.content_size)

    def on_resize(self, event: events.Resize) -> None:
        if self.layout_ is not None and self.layout_.room not in (None, self.room):
            self.show(self.state, make_layout(self.state, self.room))

    def show(self, state: RunState, layout: GraphLayout | None) -> None:
        """Draw ``state`` with ``layout`` (None while a large layout is still being made)."""
        self.state, self.layout_ = state, layout
        if layout is not None:
            critical = [i for i, (a, b) in enumerate(layout.edges)
                        if state.tasks[a].critical and state.tasks[b].critical]
            self._critical_cells = cells_of(layout, critical)
            self.virtual_size = Size(layout.width, layout.height)
        else:
            self.virtual_size = Size(0, 0)
        self._cache.clear()
        self.refresh()
        self.select(self.selected, scroll=False)

    def set_filter(self, task_filter: TaskFilter) -> None:
        self.filter = task_filter
        self._cache.clear()
        self.refresh()

    def update(self, changes: Changes) -> None:
        """Redraw the boxes of the tasks ``changes`` touched: the box alone, not the rows across the graph."""
        if self.layout_ is None:
            return
        for task_id in changes.tasks:
            position = self.layout_.boxes.get(task_id)
            if position is not None:
                x, y = position
                for row in range(y, y + BOX_HEIGHT):
                    self._cache.pop(row, None)
                self.refresh(Region(x - int(self.scroll_x), y - int(self.scroll_y), self.layout_.box_width, BOX_HEIGHT))

    # ---- selection ----

    def select(self, task_id: str | None, *, scroll: bool = True) -> None:
        touched = self._highlighted_rows()
        self.selected = task_id
        task = self.state.tasks.get(task_id or "")
        self._related = set(task.requires) | set(self.state.dependents.get(task.id, [])) if task else set()
        self._hot_cells = set()
        if task is not None and self.layout_ is not None:
            hot = [i for i, (a, b) in enumerate(self.layout_.edges) if task_id in (a, b)]
            self._hot_cells = cells_of(self.layout_, hot)
        # Redraw only the rows the old and the new highlight cover, not the whole graph.
        for row in touched | self._highlighted_rows():
            self._cache.pop(row, None)
            self.refresh_line(row)
        if scroll and task is not None:
            self._scroll_to_box(task_id)

    def _highlighted_rows(self) -> set[int]:
        if self.layout_ is None:
            return set()
        rows = {y for _, y in self._hot_cells}
        for task_id in self._related | {self.selected}:
            if task_id in self.layout_.boxes:
                top = self.layout_.boxes[task_id][1]
                rows.update(range(top, top + BOX_HEIGHT))
        return rows

    def _scroll_to_box(self, task_id: str) -> None:
        if self.layout_ is None or task_id not in self.layout_.boxes:
            return
        x, y = self.layout_.boxes[task_id]
        region = Region(x, y, self.layout_.box_width, BOX_HEIGHT)
        # a margin around the box, so its neighbours show too
        self.scroll_to_region(region, spacing=Spacing(2, 6, 2, 6), animate=False, immediate=True, force=True)

    def _choose(self, task_id: str) -> None:
        if task_id != self.selected:
            self.select(task_id)
            self.post_message(TaskSelected(task_id))

    def _column_of(self, task_id: str | None) -> tuple[int, int]:
        assert self.layout_ is not None
        for c, column in enumerate(self.layout_.columns):
            if task_id in column:
                return c, column.index(task_id)
        return -1, -1

    def action_move(self, step: int) -> None:
        if not self.layout_ or not self.layout_.columns:
            return
        c, i = self._column_of(self.selected)
        if c < 0:
            self._choose(self.layout_.columns[0][0])
            return
        column = self.layout_.columns[c]
        self._choose(column[max(0, min(len(column) - 1, i + step))])

    def action_across(self, step: int) -> None:
        if not self.layout_ or not self.layout_.columns:
            return
        c, _ = self._column_of(self.selected)
        if c < 0:
            self._choose(self.layout_.columns[0][0])
            return
        target = c + step
        if not 0 <= target < len(self.layout_.columns):
            return
        y = self.layout_.boxes[self.selected][1]
        column = self.layout_.columns[target]
        self._choose(min(column, key=lambda t: abs(self.layout_.boxes[t][1] - y)))

    def on_click(self, event: events.Click) -> None:
        task_id = self._task_at(event.x + int(self.scroll_x), event.y + int(self.scroll_y))
        if task_id is not None:
            self._choose(task_id)
            if event.chain >= 2:
                self.post_message(TaskOpened(task_id))

    def _task_at(self, x: int, y: int) -> str | None:
        if self.layout_ is None:
            return None
        for bx, task_id, _ in self.layout_.box_rows.get(y, ()):
            if bx <= x < bx + self.layout_.box_width:
                return task_id
        return None

    # ---- drawing ----

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if self.layout_ is None or not self.layout_.boxes:
            return self._empty_line(y, width)
        row = y + int(self.scroll_y)
        strip = self._cache.get(row)
        if strip is None:
            strip = self._cache[row] = self._row_strip(row)
        scroll_x = int(self.scroll_x)
        return strip.crop_extend(scroll_x, scroll_x + width, self.base_style)

    def _empty_line(self, y: int, width: int) -> Strip:
        if y != 1:
            return Strip.blank(width, self.base_style)
        text = self.empty_message if self.layout_ is None and not self.state.tasks else "Laying out the graph…"
        style = component(self, "graph--empty")
        return Strip([Segment("  " + text, style)]).adjust_cell_length(width, self.base_style)

    def _row_strip(self, row: int) -> Strip:
        assert self.layout_ is not None
        pieces: list[tuple[int, list[Segment]]] = []
        for x, task_id, line in self.layout_.box_rows.get(row, ()):
            pieces.append((x, self._box_line(self.state.tasks[task_id], line)))
        for x, text, _edge in self.layout_.runs.get(row, ()):
            pieces.append((x, [Segment(text, self._edge_style(x, row))]))
        pieces.extend(self._glyph_pieces(row))
        pieces.sort(key=lambda piece: piece[0])
        segments: list[Segment] = []
        cursor = 0
        for x, piece in pieces:
            if x > cursor:
                segments.append(Segment(" " * (x - cursor), self.base_style))
            segments.extend(piece)
            cursor = x + sum(len(s.text) for s in piece)
        return Strip(segments).adjust_cell_length(max(self.layout_.width, cursor), self.base_style)

    def _glyph_pieces(self, row: int) -> list[tuple[int, list[Segment]]]:
        """Edge cells of a row, consecutive cells of one style joined into one segment."""
        pieces: list[tuple[int, list[Segment]]] = []
        origin, line = self.layout_.glyphs.get(row, (0, ""))
        for match in LINE_RUN.finditer(line):
            x0 = origin + match.start()
            segments: list[Segment] = []
            start, style = 0, self._edge_style(x0, row)
            text = match.group()
            for i in range(1, len(text)):
                cell_style = self._edge_style(x0 + i, row)
                if cell_style != style:
                    segments.append(Segment(text[start:i], style))
                    start, style = i, cell_style
            segments.append(Segment(text[start:], style))
            pieces.append((x0, segments))
        return pieces

    def _edge_style(self, x: int, y: int) -> Style:
        if (x, y) in self._hot_cells:
            name = "graph--edge-selected"
        elif (x, y) in self._critical_cells:
            name = "graph--edge-critical"
        else:
            name = "graph--edge"
        return component(self, name)

    def _box_line(self, task: TaskView, line: int) -> list[Segment]:
        width = self.layout_.box_width
        lines = HEAVY if task.critical else LIGHT
        coloured = state_style(self, task.state)
        border = coloured
        if task.critical:
            border = component(self, "graph--critical")
        if task.id in self._related:
            border = component(self, "graph--related")
        if self.filter.active and not self.filter.matches(task):
            border = coloured = component(self, "graph--dim")
        if task.id == self.selected:
            selected = highlight(self, "graph--selected")
            border, coloured = border + selected, coloured + selected
        if line == 0:
            return [Segment(lines[0] + lines[1] * (width - 2) + lines[2], border)]
        if line == 2:
            return [Segment(lines[4] + lines[1] * (width - 2) + lines[5], border)]
        percent = f"{task.progress:3.0f}%" if task.state in ACTIVE_STATES else ""
        label = fit(f"{mark(task.state)} {sanitize_line(task.id)}", width - 7) + " " + fit_right(percent, 4)
        return [Segment(lines[3], border), Segment(label, coloured), Segment(lines[3], border)]
