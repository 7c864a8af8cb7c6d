"""Lay the task graph out as text: boxes in columns by wave, edges drawn with box-drawing characters.

A layered (Sugiyama-style) drawing:

1. each wave is a column; an edge that skips columns gets a *dummy* point in
   every column it crosses, so it is drawn as a line through them;
2. the order inside each column comes from barycentre sweeps (a node moves to
   the mean position of its neighbours), keeping the order with the fewest
   crossings seen;
3. each node sits as close as it can to the mean height of its predecessors;
4. in the gutter between two columns, each edge runs right from its source,
   along a vertical *lane*, then right into its target. Sources whose vertical
   spans do not overlap share a lane, so gutters stay narrow;
5. given the room it will be shown in, a drawing wider than the room but short
   enough is *folded*: its columns go in bands, one under the other, each as
   wide as the room. An edge from one band to the next leaves its source with
   a ``›`` at the band's right end and comes into its target from the left
   edge of the next band, behind a ``›``.

Each edge keeps the pieces it is drawn with, so the widget can find its
cells to colour the critical path and the selected task's edges. The result
is plain data; drawing it in colour is the widget's job.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from waveui.core._gc import paused as gc_paused

BOX_HEIGHT = 3
GAP = 1  # empty rows between nodes of a column
MAX_LANES = 12
UP, DOWN, LEFT, RIGHT = 1, 2, 4, 8
GLYPHS = {
    LEFT | RIGHT: "─", UP | DOWN: "│", LEFT: "─", RIGHT: "─", UP: "│", DOWN: "│",
    DOWN | RIGHT: "┌", DOWN | LEFT: "┐", UP | RIGHT: "└", UP | LEFT: "┘",
    UP | DOWN | RIGHT: "├", UP | DOWN | LEFT: "┤", LEFT | RIGHT | DOWN: "┬", LEFT | RIGHT | UP: "┴",
    UP | DOWN | LEFT | RIGHT: "┼",
}
ARROW = "▶"
CONTINUED = "›"  # an edge that goes on in the next band of a folded drawing
BAND_GAP = 1  # empty rows between the bands of a folded drawing
ENTRY = 3  # columns left of a band's first boxes for the edges that come in: "›─▶"
EXIT = 2  # columns right of a band's last boxes for the edges that leave: "─›"


@dataclass
class Node:
    column: int
    task: str | None  # None: a dummy point of a long edge
    edge: int = -1  # the edge a dummy carries
    y: int = 0
    left: list[int] = field(default_factory=list)  # neighbour nodes in the previous column
    right: list[int] = field(default_factory=list)

    @property
    def height(self) -> int:
        return BOX_HEIGHT if self.task is not None else 1

    @property
    def mid(self) -> int:
        return self.y + self.height // 2


@dataclass
class GraphLayout:
    box_width: int
    width: int
    height: int
    boxes: dict[str, tuple[int, int]]  # task -> (x, y) of its top-left corner
    columns: list[list[str]]  # tasks of each column, top to bottom
    edges: list[tuple[str, str]]  # (dependency, dependent)
    glyphs: dict[int, tuple[int, str]]  # row -> (x, text): the row's line drawing from x on, spaces between
    runs: dict[int, list[tuple[int, str, int]]]  # row -> lines through a column (x, text, edge)
    paths: dict[int, list[tuple]]  # edge -> its pieces: ("h", x1, x2, y), ("v", x, y1, y2), ("run", x1, x2, y)
    box_rows: dict[int, list[tuple[int, str, int]]]  # row -> (x, task, line of the box 0..2) by x
    crossings: int = 0
    room: tuple[int, int] | None = None  # the (width, height) it was folded for, if any

    def glyph_at(self, x: int, y: int) -> str:
        start, text = self.glyphs.get(y, (0, ""))
        return text[x - start] if 0 <= x - start < len(text) else " "


def layout_graph(tasks: list[tuple[str, int, list[str]]], box_width: int,
                 room: tuple[int, int] | None = None) -> GraphLayout:
    """Lay out ``tasks`` given as (id, wave, requires), in dispatch order, boxes ``box_width`` wide.

    ``room`` is the (width, height) the drawing will be shown in: a drawing
    wider than it is folded into bands when they fit its height.
    """
    with gc_paused():  # many small objects, all kept until the end: see waveui.core._gc
        nodes, columns, node_of = _make_nodes(tasks)
        edges, segments = _make_edges(tasks, nodes, columns, node_of)
        crossings = _order_columns(nodes, columns)
        _place_rows(nodes, columns)
        layout = _draw(nodes, columns, edges, segments, box_width, crossings, room)
        layout.room = room
        return layout


def _make_nodes(tasks):
    waves = sorted({wave for _, wave, _ in tasks})
    column_of_wave = {wave: i for i, wave in enumerate(waves)}
    nodes: list[Node] = []
    columns: list[list[int]] = [[] for _ in waves]
    node_of: dict[str, int] = {}
    for task_id, wave, _ in tasks:
        node_of[task_id] = len(nodes)
        columns[column_of_wave[wave]].append(len(nodes))
        nodes.append(Node(column_of_wave[wave], task_id))
    return nodes, columns, node_of


def _make_edges(tasks, nodes, columns, node_of):
    """Edges between tasks, each cut into one segment per gutter it crosses."""
    edges: list[tuple[str, str]] = []
    segments: list[tuple[int, int, int]] = []  # (left node, right node, edge)
    for task_id, _, requires in tasks:
        target = node_of[task_id]
        for dep in dict.fromkeys(requires):
            source = node_of.get(dep)
            if source is None or nodes[source].column >= nodes[target].column:
                continue
            edge = len(edges)
            edges.append((dep, task_id))
            previous = source
            for column in range(nodes[source].column + 1, nodes[target].column):
                dummy = len(nodes)
                nodes.append(Node(column, None, edge))
                columns[column].append(dummy)
                segments.append((previous, dummy, edge))
                previous = dummy
            segments.append((previous, target, edge))
    for left, right, _ in segments:
        nodes[left].right.append(right)
        nodes[right].left.append(left)
    return edges, segments


def _sweeps(node_count: int) -> int:
    return 12 if node_count <= 1_000 else 6 if node_count <= 5_000 else 2


def _order_columns(nodes: list[Node], columns: list[list[int]]) -> int:
    """Barycentre sweeps down and up the columns; keeps the order with the fewest crossings."""
    position = [0] * len(nodes)
    for column in columns:
        for i, node in enumerate(column):
            position[node] = i
    best, best_crossings = [list(c) for c in columns], _count_crossings(nodes, columns, position)
    for sweep in range(_sweeps(len(nodes))):
        forward = sweep % 2 == 0
        indexes = range(1, len(columns)) if forward else range(len(columns) - 2, -1, -1)
        for c in indexes:
            columns[c] = _by_barycentre(nodes, columns[c], position, forward)
        crossings = _count_crossings(nodes, columns, position)
        if crossings < best_crossings:
            best, best_crossings = [list(c) for c in columns], crossings
        if best_crossings == 0:
            break
    columns[:] = best
    return best_crossings


def _by_barycentre(nodes: list[Node], column: list[int], position: list[int], forward: bool) -> list[int]:
    def key(node: int) -> float:
        neighbours = nodes[node].left if forward else nodes[node].right
        if not neighbours:
            return position[node]  # no pull: stay where it is
        return sum(position[n] for n in neighbours) / len(neighbours)

    ordered = sorted(column, key=key)
    for i, node in enumerate(ordered):
        position[node] = i
    return ordered


def _count_crossings(nodes: list[Node], columns: list[list[int]], position: list[int]) -> int:
    """Edge crossings between each pair of neighbouring columns (inversions, with a Fenwick tree)."""
    total = 0
    for column in columns[:-1]:
        pairs = sorted((position[a], position[b]) for a in column for b in nodes[a].right)
        size = max((b for _, b in pairs), default=0) + 2
        tree = [0] * (size + 1)
        seen = 0
        for _, b in pairs:
            # pairs seen so far whose right end lies below b cross this one
            i, not_below = b + 1, 0
            while i > 0:
                not_below += tree[i]
                i -= i & -i
            total += seen - not_below
            i = b + 1
            while i <= size:
                tree[i] += 1
                i += i & -i
            seen += 1
    return total


def _place_rows(nodes: list[Node], columns: list[list[int]]) -> None:
    """Top-down in each column, each node as near as it may to the mean height of its predecessors."""
    for column in columns:
        free = 0
        for node_index in column:
            node = nodes[node_index]
            wanted = free
            if node.left:
                mid = sum(nodes[n].mid for n in node.left) / len(node.left)
                wanted = round(mid) - node.height // 2
            node.y = max(free, wanted)
            free = node.y + node.height + GAP


def _draw(nodes, columns, edges, segments, box_width, crossings, room) -> GraphLayout:
    canvas = _Canvas()
    by_gutter: dict[int, list[tuple[int, int, int]]] = {}
    for segment in segments:
        by_gutter.setdefault(nodes[segment[0]].column, []).append(segment)
    # A gutter's width is its lanes and three cells; folding moves whole bands down, which leaves it alone.
    gutters = [_assign_lanes(nodes, by_gutter.get(c, []))[0] + 3 for c in range(len(columns))]
    column_x = _fold(nodes, columns, box_width, gutters, room)
    for c in range(len(columns)):
        x = column_x[c]
        for node_index in columns[c]:
            node = nodes[node_index]
            if node.task is None:
                canvas.runs.setdefault(node.y, []).append((x, "─" * box_width, node.edge))
                canvas.paths[node.edge].append(("run", x, x + box_width - 1, node.y))
        if c + 1 == len(columns):
            continue
        if column_x[c + 1] > x:
            _draw_gutter(canvas, nodes, by_gutter.get(c, []), x + box_width)
        else:
            _draw_band_break(canvas, nodes, by_gutter.get(c, []), x + box_width, column_x[c + 1])
    boxes = {node.task: (column_x[node.column], node.y) for node in nodes if node.task is not None}
    glyphs = canvas.rows()
    return GraphLayout(
        box_width=box_width,
        # the edges leaving a band reach past its boxes
        width=max([x + box_width for x in column_x] + [start + len(text) for start, text in glyphs.values()],
                  default=0),
        height=max((node.y + node.height for node in nodes), default=0),
        boxes=boxes,
        columns=[[nodes[n].task for n in column if nodes[n].task is not None] for column in columns],
        edges=edges,
        glyphs=glyphs,
        runs=canvas.runs,
        paths=dict(canvas.paths),
        box_rows=_box_rows(boxes),
        crossings=crossings,
    )


def _fold(nodes, columns, box_width, gutters, room) -> list[int]:
    """The x of each column; when the drawing is folded, moves each band's nodes down under the band before."""
    column_x, x = [], 0
    for c in range(len(columns)):
        column_x.append(x)
        x += box_width + gutters[c]
    if room is None or not columns or column_x[-1] + box_width <= room[0]:
        return column_x
    bands: list[list[int]] = [[0]]  # the columns of each band
    band_x = [0]  # where each band's first column starts
    for c in range(1, len(columns)):
        x = band_x[-1] + column_x[c] - column_x[bands[-1][0]]
        leaving = 0 if c + 1 == len(columns) else EXIT
        if x + box_width + leaving > room[0]:
            bands.append([c])
            band_x.append(ENTRY)
        else:
            bands[-1].append(c)
    spans = []  # the rows each band covers, top and bottom
    for band in bands:
        members = [nodes[n] for c in band for n in columns[c]]
        spans.append((min(node.y for node in members), max(node.y + node.height for node in members)))
    if len(bands) == 1 or sum(b - t for t, b in spans) + BAND_GAP * (len(bands) - 1) > room[1]:
        return column_x  # too tall folded: it scrolls sideways instead
    folded, top = [], 0
    for band, (band_top, band_bottom), start in zip(bands, spans, band_x):
        for c in band:
            folded.append(start + column_x[c] - column_x[band[0]])
            for n in columns[c]:
                nodes[n].y += top - band_top
        top += band_bottom - band_top + BAND_GAP
    return folded


class _Canvas:
    """Direction bits per cell; where bits meet they make junctions (┬ ┼ ├ …)."""

    def __init__(self) -> None:
        self.bits: dict[tuple[int, int], int] = {}
        self.marks: dict[tuple[int, int], str] = {}  # cells drawn with ARROW or CONTINUED, whatever their bits
        self.runs: dict[int, list[tuple[int, str, int]]] = {}  # dummy lines: row -> (x, text, edge)
        self.paths: dict[int, list[tuple]] = defaultdict(list)  # edge -> the pieces it is drawn with

    def add(self, x: int, y: int, bits: int) -> None:
        self.bits[(x, y)] = self.bits.get((x, y), 0) | bits

    def horizontal(self, y: int, xa: int, xb: int) -> None:
        bits = self.bits  # inlined: the hot loop of a large layout
        for x in range(xa, xb + 1):
            bits[(x, y)] = bits.get((x, y), 0) | (LEFT if x > xa else 0) | (RIGHT if x < xb else 0)

    def vertical(self, x: int, ya: int, yb: int) -> None:
        bits = self.bits
        for y in range(ya, yb + 1):
            bits[(x, y)] = bits.get((x, y), 0) | (UP if y > ya else 0) | (DOWN if y < yb else 0)

    def rows(self) -> dict[int, tuple[int, str]]:
        """Each row as one string (a few objects per row, not one per cell: the app lives with them)."""
        cells: dict[int, list[tuple[int, str]]] = {}
        for (x, y), bits in self.bits.items():
            glyph = self.marks.get((x, y)) or GLYPHS.get(bits, " ")
            cells.setdefault(y, []).append((x, glyph))
        rows = {}
        for y, row in cells.items():
            row.sort()
            start = row[0][0]
            line = [" "] * (row[-1][0] - start + 1)
            for x, glyph in row:
                line[x - start] = glyph
            rows[y] = (start, "".join(line))
        return rows


def _draw_gutter(canvas: _Canvas, nodes: list[Node], segments: list[tuple[int, int, int]], x0: int) -> None:
    """Draw the segments leaving one column, in a gutter as wide as :func:`_assign_lanes` makes it.

    A source's lane is drawn once over its whole span and shared by all its
    edges, so the work grows with sources and rows, not edges times rows.
    """
    lanes, lane_of, spans = _assign_lanes(nodes, segments)
    x_end = x0 + lanes + 2  # the arrow's cell, just left of the next column
    for source, (low, high) in spans.items():
        lane = x0 + 1 + lane_of[source]
        ys = nodes[source].mid
        canvas.horizontal(ys, x0, lane)
        canvas.add(x0, ys, LEFT)
        canvas.vertical(lane, low, high)
    for left, right, edge in segments:
        ys, yt = nodes[left].mid, nodes[right].mid
        if ys == yt:
            canvas.horizontal(ys, x0, x_end)
            canvas.add(x0, ys, LEFT)
            canvas.paths[edge].append(("h", x0, x_end, ys))
        else:
            lane = x0 + 1 + lane_of[left]
            canvas.horizontal(yt, lane, x_end)
            canvas.paths[edge] += [("h", x0, lane, ys), ("v", lane, min(ys, yt), max(ys, yt)), ("h", lane, x_end, yt)]
        canvas.add(x_end, yt, RIGHT)
        if nodes[right].task is not None:
            canvas.marks[(x_end, yt)] = ARROW


def _draw_band_break(canvas: _Canvas, nodes: list[Node], segments: list[tuple[int, int, int]], x0: int,
                     x_next: int) -> None:
    """The segments from a band's last column to the next band's first (at ``x_next``): a stub at each end."""
    for left, right, edge in segments:
        ys, yt = nodes[left].mid, nodes[right].mid
        canvas.horizontal(ys, x0, x0 + EXIT - 1)
        canvas.add(x0, ys, LEFT)
        canvas.marks[(x0 + EXIT - 1, ys)] = CONTINUED
        canvas.horizontal(yt, x_next - ENTRY, x_next - 1)
        canvas.add(x_next - 1, yt, RIGHT)
        canvas.marks[(x_next - ENTRY, yt)] = CONTINUED
        if nodes[right].task is not None:
            canvas.marks[(x_next - 1, yt)] = ARROW
        canvas.paths[edge] += [("h", x0, x0 + EXIT - 1, ys), ("h", x_next - ENTRY, x_next - 1, yt)]


def _assign_lanes(nodes: list[Node], segments):
    """A lane per source, shared by sources whose vertical spans do not overlap (interval colouring)."""
    spans: dict[int, tuple[int, int]] = {}
    for left, right, _ in segments:
        ys, yt = nodes[left].mid, nodes[right].mid
        if ys != yt:
            low, high = spans.get(left, (ys, ys))
            spans[left] = (min(low, yt), max(high, yt))
    lane_end: list[int] = []
    lane_of: dict[int, int] = {}
    for source, (low, high) in sorted(spans.items(), key=lambda item: item[1]):
        lane = next((i for i, end in enumerate(lane_end) if end < low - 1), None)
        if lane is None and len(lane_end) < MAX_LANES:
            lane = len(lane_end)
            lane_end.append(0)
        elif lane is None:  # too crowded: share the lane that frees soonest (lines may merge)
            lane = min(range(len(lane_end)), key=lane_end.__getitem__)
        lane_end[lane] = max(lane_end[lane], high)
        lane_of[source] = lane
    return max(1, len(lane_end)), lane_of, spans


def cells_of(layout: GraphLayout, edges) -> set[tuple[int, int]]:
    """The cells the given edges are drawn through (to colour them)."""
    cells: set[tuple[int, int]] = set()
    for edge in edges:
        for kind, a, b, c in layout.paths.get(edge, ()):
            if kind == "v":
                cells.update((a, y) for y in range(b, c + 1))
            else:
                cells.update((x, c) for x in range(a, b + 1))
    return cells


def _box_rows(boxes: dict[str, tuple[int, int]]) -> dict[int, list[tuple[int, str, int]]]:
    rows: dict[int, list[tuple[int, str, int]]] = {}
    for task, (x, y) in boxes.items():
        for line in range(BOX_HEIGHT):
            rows.setdefault(y + line, []).append((x, task, line))
    for row in rows.values():
        row.sort()
    return rows
