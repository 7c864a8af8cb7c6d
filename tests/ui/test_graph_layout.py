"""The graph layout: boxes never overlap, every edge is drawn, crossings are reduced."""

from __future__ import annotations

import random

from waveui.frontends.tui.graph_layout import ARROW, BOX_HEIGHT, CONTINUED, cells_of, layout_graph


def random_tasks(n: int, seed: int = 3) -> list[tuple[str, int, list[str]]]:
    rng = random.Random(seed)
    tasks, wave = [], {}
    for i in range(n):
        task_id = f"t{i:03d}"
        deps = [f"t{j:03d}" for j in rng.sample(range(max(0, i - 20), i), min(i, rng.choice([0, 1, 2, 3])))]
        wave[task_id] = max((wave[d] + 1 for d in deps), default=0)
        tasks.append((task_id, wave[task_id], deps))
    return tasks


def test_boxes_sit_in_wave_columns_and_never_overlap():
    tasks = random_tasks(120)
    layout = layout_graph(tasks, box_width=12)
    x_of_wave: dict[int, int] = {}
    taken: set[tuple[int, int]] = set()
    for task_id, wave, _ in tasks:
        x, y = layout.boxes[task_id]
        assert x_of_wave.setdefault(wave, x) == x
        cells = {(x, y + dy) for dy in range(BOX_HEIGHT)}
        assert not cells & taken
        taken |= cells
    assert max(y + BOX_HEIGHT for _, y in layout.boxes.values()) <= layout.height


def test_every_edge_is_drawn_and_ends_in_an_arrow_at_its_target():
    tasks = random_tasks(60)
    layout = layout_graph(tasks, box_width=12)
    for edge, (dep, task) in enumerate(layout.edges):
        cells = cells_of(layout, [edge])
        tx, ty = layout.boxes[task]
        assert layout.glyph_at(tx - 1, ty + 1) == ARROW
        assert (tx - 1, ty + 1) in cells
        sx, sy = layout.boxes[dep]
        assert (sx + layout.box_width, sy + 1) in cells  # leaves from the source's side
    assert len(layout.edges) == sum(len(deps) for _, _, deps in tasks)


def test_edges_never_draw_over_boxes():
    layout = layout_graph(random_tasks(80), box_width=10)
    glyph_cells = {(x + i, y) for y, (x, text) in layout.glyphs.items() for i, g in enumerate(text) if g != " "}
    run_cells = {(x + i, y) for y, row in layout.runs.items() for x, text, _ in row for i in range(len(text))}
    for x, y in layout.boxes.values():
        box = {(x + i, y + j) for i in range(layout.box_width) for j in range(BOX_HEIGHT)}
        assert not box & (glyph_cells | run_cells)


def test_barycentre_ordering_removes_an_avoidable_crossing():
    # drawn in file order, a->d and b->c cross; swapping c and d removes the crossing
    tasks = [("a", 0, []), ("b", 0, []), ("c", 1, ["b"]), ("d", 1, ["a"])]
    layout = layout_graph(tasks, box_width=8)
    assert layout.crossings == 0
    assert layout.columns[1] == ["d", "c"]


def test_a_long_edge_passes_through_the_columns_it_skips():
    tasks = [("a", 0, []), ("b", 1, ["a"]), ("c", 2, ["b", "a"])]
    layout = layout_graph(tasks, box_width=8)
    assert any(edge == layout.edges.index(("a", "c")) for row in layout.runs.values() for _, _, edge in row)


def test_empty_graph():
    layout = layout_graph([], box_width=8)
    assert layout.boxes == {} and layout.width == 0 and layout.height == 0


CHAIN = [("a", 0, []), ("b", 1, ["a"]), ("c", 1, ["a"]), ("d", 2, ["b", "c"]), ("e", 3, ["d", "a"]),
         ("f", 4, ["e"]), ("g", 5, ["f", "c"])]


def test_a_wide_graph_folds_into_bands_that_fit_the_room():
    wide = layout_graph(CHAIN, box_width=8)
    folded = layout_graph(CHAIN, box_width=8, room=(30, 40))
    assert wide.width > 30
    assert folded.width <= 30 and folded.height <= 40
    assert folded.height > wide.height  # the columns went under each other
    waves = {task: wave for task, wave, _ in CHAIN}
    # a later wave that starts a band sits left of and below the wave before it
    assert any(folded.boxes[t][0] < folded.boxes[s][0] and folded.boxes[t][1] > folded.boxes[s][1]
               for s in folded.boxes for t in folded.boxes if waves[t] == waves[s] + 1)


def test_an_edge_between_bands_continues_from_the_right_end_to_its_target():
    folded = layout_graph(CHAIN, box_width=8, room=(30, 40))
    taken: set[tuple[int, int]] = set()
    for x, y in folded.boxes.values():
        cells = {(x + i, y + j) for i in range(8) for j in range(BOX_HEIGHT)}
        assert not cells & taken
        taken |= cells
    for edge, (dep, task) in enumerate(folded.edges):
        cells = cells_of(folded, [edge])
        tx, ty = folded.boxes[task]
        assert folded.glyph_at(tx - 1, ty + 1) == ARROW and (tx - 1, ty + 1) in cells
        sx, sy = folded.boxes[dep]
        assert (sx + 8, sy + 1) in cells
    continued = [(x, y) for y, (start, text) in folded.glyphs.items() for x, g in enumerate(text, start)
                 if g == CONTINUED]
    assert any(x == 0 for x, _ in continued) and any(x > 0 for x, _ in continued)


def test_a_graph_too_tall_to_fold_is_left_to_scroll_sideways():
    wide = layout_graph(CHAIN, box_width=8)
    assert layout_graph(CHAIN, box_width=8, room=(30, wide.height + 2)).boxes == wide.boxes
    assert layout_graph(CHAIN, box_width=8, room=(wide.width, 5)).boxes == wide.boxes
