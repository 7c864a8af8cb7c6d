"""Graph analyses: waves, critical path, slack, graph type, makespan estimates, reports."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import (
    EXAMPLES,
    all_paths,
    dags,
    edges_of,
    epic_of,
    graph_of,
    max_running,
    path_weight,
    task,
)
from waveui.core import spec
from waveui.plan import make_plan
from waveui.plan import report
from waveui.plan.critical import critical_path
from waveui.plan.graph import TaskGraph
from waveui.plan.schedule import best_eager_schedule, fifo_schedule, list_schedule, lower_bound, wave_schedule
from waveui.plan.shape import classify


def ids(plan, tasks):
    return [plan.graph.ids[i] for i in tasks]


def classic():
    """003 requires 001 and 002; 005 requires 003 and 004. Points 3, 2, 4, 6, 1.

    Paths: 001-003-005 = 8, 002-003-005 = 7, 004-005 = 7; total 16.
    """
    return epic_of(
        task("001", 3),
        task("002", 2),
        task("003", 4, ["001", "002"]),
        task("004", 6),
        task("005", 1, ["003", "004"]),
    )


def chain():
    return epic_of(task("001", 2), task("002", 1, ["001"]), task("003", 3, ["002"]), task("004", 1, ["003"]))


def independent():
    return epic_of(task("001"), task("002"), task("003"), task("004"))


def fan_out_fan_in():
    return epic_of(task("root"), task("b", 1, ["root"]), task("c", 1, ["root"]), task("d", 1, ["root"]),
                   task("join", 1, ["b", "c", "d"]))


# ------------------------------------------------------------------- graph


def test_graph_index_arrays_follow_file_order():
    g = graph_of(classic())
    assert g.ids == ["001", "002", "003", "004", "005"]
    assert g.weight == [3, 2, 4, 6, 1]
    assert g.pred == [[], [], [0, 1], [], [2, 3]]
    assert g.succ == [[2], [2], [4], [4], []]
    assert g.edge_count == 4
    assert g.index["004"] == 3


def test_duplicate_requires_count_once():
    g = graph_of(epic_of(task("a"), task("b", 1, ["a", "a"])))
    assert g.pred == [[], [0]] and g.edge_count == 1


def test_classic_waves():
    plan = make_plan(classic(), workers=2)
    assert [ids(plan, w) for w in plan.waves] == [["001", "002", "004"], ["003"], ["005"]]


def test_topological_order_takes_ready_tasks_in_file_order():
    g = graph_of(epic_of(task("z", 1, ["y"]), task("y"), task("x")))
    assert [g.ids[i] for i in g.topological_order()] == ["y", "x", "z"]


def test_topological_order_refuses_a_cycle():
    g = TaskGraph.from_edges(["a", "b"], [1, 1], [[1], [0]])
    with pytest.raises(ValueError):
        g.topological_order()


def test_waves_of_a_chain_are_one_task_each():
    plan = make_plan(chain(), workers=4)
    assert [ids(plan, w) for w in plan.waves] == [["001"], ["002"], ["003"], ["004"]]


def test_with_edges_adds_without_touching_the_original():
    g = graph_of(independent())
    h = g.with_edges([(0, 1), (0, 1), (2, 3)])
    assert edges_of(h) == {(0, 1), (2, 3)}
    assert edges_of(g) == set()


# ------------------------------------------------------------ critical path


def test_classic_critical_path_and_slack():
    plan = make_plan(classic(), workers=2)
    assert ids(plan, plan.critical.tasks) == ["001", "003", "005"]
    assert plan.critical.length == 8
    # slack = 8 - longest path through the task: 002 and 004 lie on paths of 7
    assert plan.critical.slack == [0, 1, 0, 1, 0]
    assert plan.critical.head == [3, 2, 7, 6, 8]
    assert plan.critical.tail == [8, 7, 5, 7, 1]


def test_critical_path_of_a_chain_is_the_chain():
    plan = make_plan(chain(), workers=2)
    assert ids(plan, plan.critical.tasks) == ["001", "002", "003", "004"]
    assert plan.critical.length == 7
    assert plan.critical.slack == [0, 0, 0, 0]


def test_a_heavy_single_task_beats_a_long_chain():
    plan = make_plan(epic_of(task("a", 1), task("b", 1, ["a"]), task("c", 1, ["b"]), task("big", 5)), workers=2)
    assert ids(plan, plan.critical.tasks) == ["big"]
    assert plan.critical.length == 5
    assert plan.critical.slack == [2, 2, 2, 0]


def test_tie_break_goes_to_the_task_first_in_the_file_not_the_smallest_id():
    # start -> zeta -> end and start -> alpha -> end are equally long; zeta comes first in the file
    epic = epic_of(task("start"), task("zeta", 2, ["start"]), task("alpha", 2, ["start"]),
                   task("end", 1, ["zeta", "alpha"]))
    plan = make_plan(epic, workers=2)
    assert ids(plan, plan.critical.tasks) == ["start", "zeta", "end"]
    assert plan.critical.slack == [0, 0, 0, 0]  # both branches are critical
    # swapping the two in the file swaps the answer
    epic.tasks[1], epic.tasks[2] = epic.tasks[2], epic.tasks[1]
    swapped = make_plan(epic, workers=2)
    assert ids(swapped, swapped.critical.tasks) == ["start", "alpha", "end"]


def test_tie_break_between_separate_chains():
    epic = epic_of(task("q1", 1), task("p1", 2), task("q2", 2, ["q1"]), task("p2", 1, ["p1"]))
    plan = make_plan(epic, workers=2)
    assert ids(plan, plan.critical.tasks) == ["q1", "q2"]  # q1 is the first task in the file
    assert plan.critical.length == 3


def test_tie_break_is_decided_task_by_task_from_the_start():
    # s -> x2 -> e and s -> x1 -> e tie; x2 is earlier in the file although its id sorts later
    epic = epic_of(task("s"), task("x2", 1, ["s"]), task("e", 1, ["x2", "x1"]), task("x1", 1, ["s"]))
    plan = make_plan(epic, 1)
    assert ids(plan, plan.critical.tasks) == ["s", "x2", "e"]


def test_critical_path_is_deterministic():
    epic = spec.load(EXAMPLES / "hybrid.toml")
    first = make_plan(epic, workers=3)
    for _ in range(3):
        again = make_plan(spec.load(EXAMPLES / "hybrid.toml"), workers=3)
        assert again.critical.tasks == first.critical.tasks
        assert again.eager.order == first.eager.order


def test_critical_path_of_an_empty_graph():
    g = TaskGraph.from_edges([], [], [])
    cp = critical_path(g, [])
    assert cp.tasks == [] and cp.length == 0


def test_zero_point_tasks():
    plan = make_plan(epic_of(task("a", 0), task("b", 0, ["a"]), task("c", 0)), workers=2)
    assert plan.critical.length == 0
    assert plan.critical.slack == [0, 0, 0]
    assert plan.eager.makespan == 0 and plan.lower_bound == 0


# -------------------------------------------------------------- graph type


def test_pure_chain_is_chain():
    plan = make_plan(chain(), workers=4)
    assert plan.shape.kind == "chain"
    assert plan.shape.parallelism == pytest.approx(1.0)
    assert plan.shape.level == "none"
    assert plan.shape.useful_workers == 1


def test_independent_tasks_are_broad():
    plan = make_plan(independent(), workers=4)
    assert plan.shape.kind == "broad"
    assert plan.shape.parallelism == pytest.approx(4.0)
    assert plan.shape.level == "high"
    assert plan.shape.widest_wave == 4 and plan.shape.useful_workers == 4


def test_fan_out_then_fan_in_is_broad():
    plan = make_plan(fan_out_fan_in(), workers=4)
    assert plan.shape.kind == "broad"
    assert plan.shape.parallelism == pytest.approx(5 / 3)
    assert plan.shape.widest_wave == 3


def test_hybrid_example_is_hybrid():
    plan = make_plan(spec.load(EXAMPLES / "hybrid.toml"))
    assert plan.shape.kind == "hybrid"
    assert 1.5 <= plan.shape.parallelism
    assert plan.shape.widest_wave < len(plan.graph) / 2


# The three kinds of graph as the project's first description drew them: a chain; independent tasks;
# and 001, 002 -> 003 -> 005, 006 with 004 alone, which it calls hybrid with medium parallelisation.
NAMED_SHAPES = {
    "chain": [task("001"), task("002", 1, ["001"]), task("003", 1, ["002"]), task("004", 1, ["003"])],
    "broad": [task("001"), task("002"), task("003"), task("004"), task("005")],
    "hybrid": [task("001"), task("002"), task("003", 1, ["001", "002"]), task("004"),
               task("005", 1, ["003"]), task("006", 1, ["003"])],
}


@pytest.mark.parametrize("kind", sorted(NAMED_SHAPES))
def test_the_three_named_examples_get_their_names(kind):
    shape = make_plan(epic_of(*NAMED_SHAPES[kind]), workers=4).shape
    assert shape.kind == kind
    assert shape.level == {"chain": "none", "broad": "high", "hybrid": "medium"}[kind]


def test_classify_thresholds():
    waves_of = lambda *sizes: [list(range(s)) for s in sizes]  # noqa: E731
    assert classify(4, 5, 4, waves_of(1, 1, 2)).kind == "chain"  # 1.25
    assert classify(6, 9, 6, waves_of(1, 3, 1, 1)).kind == "broad"  # 1.5, widest 3 of 6, the only wide one
    assert classify(6, 6, 3, waves_of(3, 1, 2)).kind == "hybrid"  # 2.0, widest 3 of 6 but another wave is wide
    assert classify(8, 12, 6, waves_of(2, 3, 2, 1)).kind == "hybrid"  # 2.0, widest 3 of 8
    assert classify(3, 6, 2, waves_of(3)).level == "high"
    assert classify(4, 5, 4, waves_of(4)).level == "low"
    assert classify(4, 8, 4, waves_of(2, 2)).level == "medium"
    # more workers than the widest wave are never useful
    assert classify(6, 60, 10, waves_of(2, 2, 2)).useful_workers == 2


def test_verdict_names_the_type_and_strategy():
    shape = make_plan(chain(), workers=2).shape
    assert shape.verdict.startswith("chain graph: 4 tasks in 4 waves")
    assert shape.strategy in shape.verdict


# ------------------------------------------------------------------ makespan


@pytest.mark.parametrize("workers, expected", [(1, 16), (2, 8), (3, 8), (8, 8)])
def test_classic_lower_bound(workers, expected):
    # max(critical path 8, total 16 / P)
    assert make_plan(classic(), workers).lower_bound == expected


def test_lower_bound_prefers_the_work_when_it_dominates():
    plan = make_plan(epic_of(task("a", 1), task("b", 1), task("c", 1), task("d", 5)), workers=2)
    assert plan.lower_bound == 5  # critical 5 vs 8/2 = 4
    assert make_plan(epic_of(task("a", 3), task("b", 3), task("c", 3), task("d", 3)), workers=3).lower_bound == 4


@pytest.mark.parametrize("workers, expected", [(1, 16), (2, 11), (3, 11)])
def test_classic_waves_estimate(workers, expected):
    # P=2: wave 1 {3, 2, 6} on two workers takes 6 (6 | 3+2), then 4, then 1.
    # P=1: every task one after another.
    assert make_plan(classic(), workers).wave_barriers.makespan == expected


@pytest.mark.parametrize("workers, expected", [(1, 16), (2, 9), (3, 8)])
def test_classic_eager_estimate(workers, expected):
    # P=3 reaches the lower bound 8. P=2 cannot: 003 must start by 3 for 005 to start by 7,
    # so 001 and 002 take both workers until 2 and 004 (6 points) ends at 8 at the earliest.
    plan = make_plan(classic(), workers)
    assert plan.eager.makespan == expected
    assert plan.eager.makespan >= plan.lower_bound


def test_eager_schedule_follows_critical_path_first():
    plan = make_plan(classic(), workers=2)
    start = dict(zip(plan.graph.ids, plan.eager.start))
    assert start["001"] == 0  # the critical path's head starts at once
    assert start["003"] == 3  # as soon as 001 and 002 are done
    assert start["005"] == 8
    assert sorted(plan.dispatch_rank.values()) == list(range(5))
    assert plan.dispatch_rank["003"] < plan.dispatch_rank["005"]


def test_priority_wins_over_critical_path():
    epic = epic_of(task("long", 5), task("urgent", 1, priority=10), task("other", 1))
    plan = make_plan(epic, workers=1)
    assert plan.eager.order[0] == 1


def test_fifo_starts_in_ready_order():
    g = graph_of(epic_of(task("a", 1), task("b", 5), task("c", 1, ["a"])))
    schedule = fifo_schedule(g, 1)
    assert [g.ids[i] for i in schedule.order] == ["a", "b", "c"]
    assert schedule.makespan == 7


def test_wave_schedule_uses_longest_task_first():
    g = graph_of(epic_of(task("a", 3), task("b", 3), task("c", 2), task("d", 2), task("e", 2)))
    # LPT on 2 workers: 3|3, then 2 and 2 on top, then 2 more: 3+2 | 3+2+2 = 7
    assert wave_schedule(g, g.waves(), 2).makespan == 7


def test_list_schedule_raises_on_a_cycle():
    g = TaskGraph.from_edges(["a", "b"], [1, 1], [[1], [0]])
    with pytest.raises(ValueError):
        list_schedule(g, 2, None)


def test_more_workers_never_raise_the_lower_bound():
    epic = spec.load(EXAMPLES / "hybrid.toml")
    bounds = [make_plan(epic, workers).lower_bound for workers in range(1, 6)]
    assert bounds == sorted(bounds, reverse=True)
    assert bounds[0] == sum(t.story_points for t in epic.tasks)


# ------------------------------------------------------------ properties


def _brute_levels(graph: TaskGraph) -> list[int]:
    level = [0] * len(graph)
    for path in all_paths(graph):
        for depth, task_number in enumerate(path):
            level[task_number] = max(level[task_number], depth)
    return level


@given(dags())
def test_waves_partition_the_tasks_and_respect_every_edge(dag):
    g = dag.graph()
    waves = g.waves()
    flat = [t for w in waves for t in w]
    assert sorted(flat) == list(range(len(g)))  # every task in exactly one wave
    assert all(w for w in waves)  # no empty wave
    wave_of = {t: n for n, w in enumerate(waves) for t in w}
    for i, j in edges_of(g):
        assert wave_of[i] < wave_of[j]
    # and each task sits in the earliest wave possible: its longest chain of dependencies
    assert [wave_of[t] for t in range(len(g))] == _brute_levels(g)
    for w in waves:
        assert w == sorted(w)  # file order inside a wave


@given(dags())
def test_topological_order_puts_dependencies_first(dag):
    g = dag.graph()
    order = g.topological_order()
    assert sorted(order) == list(range(len(g)))
    position = {t: n for n, t in enumerate(order)}
    assert all(position[i] < position[j] for i, j in edges_of(g))


@given(dags())
def test_critical_path_is_the_longest_path_by_brute_force(dag):
    g = dag.graph()
    cp = critical_path(g, g.topological_order())
    paths = all_paths(g)
    longest = max(path_weight(g, p) for p in paths)
    assert cp.length == longest
    # a real path, from a task without dependencies to one without dependants, of that weight
    assert not g.pred[cp.tasks[0]] and not g.succ[cp.tasks[-1]]
    assert all(b in g.succ[a] for a, b in zip(cp.tasks, cp.tasks[1:]))
    assert path_weight(g, cp.tasks) == cp.length
    # deterministic tie-break: of the longest paths, the first in file order task by task
    assert cp.tasks == min(p for p in paths if path_weight(g, p) == longest)


@given(dags(points=st.floats(0, 100, allow_nan=False) | st.sampled_from([0.1, 0.2, 0.3, 0.7])))
def test_slack_is_never_negative_and_zero_on_the_critical_path(dag):
    g = dag.graph()
    cp = critical_path(g, g.topological_order())
    assert all(s >= 0 for s in cp.slack)
    assert all(cp.slack[t] == 0 for t in cp.tasks)
    assert cp.length == pytest.approx(max(path_weight(g, p) for p in all_paths(g)))


@given(dags())
def test_slack_is_how_far_the_longest_path_through_a_task_falls_short(dag):
    g = dag.graph()
    cp = critical_path(g, g.topological_order())
    through = [0.0] * len(g)
    for path in all_paths(g):
        for t in path:
            through[t] = max(through[t], path_weight(g, path))
    assert cp.slack == [cp.length - w for w in through]


@given(dags(), st.integers(1, 4))
def test_eager_schedule_is_valid_and_never_beats_the_lower_bound(dag, workers):
    g = dag.graph()
    order = g.topological_order()
    cp = critical_path(g, order)
    bound = lower_bound(g, cp.length, workers)
    assert bound == max(cp.length, sum(g.weight) / workers)
    schedule = best_eager_schedule(g, cp.tail, workers)
    assert schedule.makespan >= bound - 1e-9
    assert sorted(schedule.order) == list(range(len(g)))
    assert schedule.makespan == pytest.approx(max(s + w for s, w in zip(schedule.start, g.weight)))
    for i, j in edges_of(g):
        assert schedule.start[j] >= schedule.start[i] + g.weight[i] - 1e-9
    assert max_running(schedule.start, g.weight) <= workers
    # the start order is the order of the start times
    starts = [schedule.start[t] for t in schedule.order]
    assert starts == sorted(starts)
    # the other estimates respect the bound too (no claim is made about which of them is shorter)
    assert wave_schedule(g, g.waves(order), workers).makespan >= bound - 1e-9
    assert fifo_schedule(g, workers).makespan >= bound - 1e-9


@given(dags(with_files=True), st.integers(1, 4), st.sampled_from(["serialise", "lock", "defer"]))
def test_make_plan_holds_together(dag, workers, mode):
    plan = make_plan(dag.epic(conflicts=mode), workers)
    assert plan.workers == workers
    assert edges_of(plan.declared) <= edges_of(plan.graph)
    assert plan.critical.length >= max(path_weight(plan.declared, p) for p in all_paths(plan.declared))
    assert plan.eager.makespan >= plan.lower_bound - 1e-9
    plain_bound = max(plan.critical.length, sum(plan.graph.weight) / workers)
    assert plan.lower_bound >= plain_bound if plan.locked else plan.lower_bound == plain_bound
    assert plan.shape.kind in ("chain", "broad", "hybrid")
    data = report.to_json(plan)
    assert json.loads(report.json_text(plan)) == data
    assert sorted(t for w in data["waves"] for t in w) == sorted(plan.graph.ids)


# ------------------------------------------------------------------- reports


def test_json_report_schema():
    plan = make_plan(classic(), workers=2)
    data = json.loads(report.json_text(plan))
    assert data["epic"] == "test"
    assert data["graph_type"] == plan.shape.kind
    assert data["waves"] == [["001", "002", "004"], ["003"], ["005"]]
    assert data["critical_path"] == {"tasks": ["001", "003", "005"], "length": 8}
    assert data["slack"] == {"001": 0, "002": 1, "003": 0, "004": 1, "005": 0}
    assert data["lower_bound"] == 8
    assert data["estimated_makespan"]["eager"] == 9 and data["estimated_makespan"]["waves"] == 11
    assert data["conflicts"] == [] and data["added_edges"] == []
    assert (data["tasks"], data["dependencies"], data["workers"]) == (5, 4, 2)
    assert sorted(data["dispatch_order"]) == ["001", "002", "003", "004", "005"]


def test_text_report_mentions_the_essentials():
    plan = make_plan(classic(), workers=2)
    out = report.text(plan)
    assert "Critical path (8 points): 001 → 003 → 005" in out
    assert "Waves (3)" in out
    assert "lower bound" in out and "eager" in out
    assert "Conflicts: none" in out


def test_dot_report_marks_the_critical_path():
    plan = make_plan(classic(), workers=2)
    out = report.dot(plan)
    assert out.startswith('digraph "test" {') and out.rstrip().endswith("}")
    red_nodes = {line.split()[0].strip('"') for line in out.splitlines() if "[label=" in line and "color=red" in line}
    assert red_nodes == {"001", "003", "005"}
    red_edges = {line.split("[")[0].strip() for line in out.splitlines() if "->" in line and "color=red" in line}
    assert red_edges == {'"001" -> "003"', '"003" -> "005"'}
    assert out.count("->") == 4


def _dot_string(line: str, start: int) -> tuple[str, int]:
    """The DOT string starting with the quote at ``start``, unescaped, and the index after it."""
    out, i = [], start + 1
    while line[i] != '"':
        if line[i] == "\\":
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(line[i + 1], "\\" + line[i + 1]))
            i += 2
        else:
            out.append(line[i])
            i += 1
    return "".join(out), i + 1


@pytest.mark.parametrize("title", ['say "hi"', "back\\slash", "ends with \\", 'both \\"'])
def test_dot_labels_are_well_formed_strings(title):
    epic = epic_of(task("a", 1, title=title), task("b", 2, ["a"]))
    out = report.dot(make_plan(epic, 1))
    line = next(row for row in out.splitlines() if row.lstrip().startswith('"a" [label='))
    label, after = _dot_string(line, line.index("label=") + len("label="))
    assert label == f"a\n{title} (1)"
    assert line[after:] in ("];", ", color=red, penwidth=2];")


def test_mermaid_report_marks_the_critical_path():
    plan = make_plan(classic(), workers=2)
    out = report.mermaid(plan)
    lines = out.splitlines()
    assert lines[0] == "flowchart LR"
    node = {line.split("[")[0].strip(): line.split('"')[1] for line in lines if '["' in line}
    assert sorted(node.values()) == ["001", "002", "003", "004", "005"]
    [class_line] = [line for line in lines if line.strip().startswith("class ")]
    marked = class_line.split()[1].split(",")
    assert [node[n] for n in marked] == ["001", "003", "005"]
    assert class_line.split()[2] == "critical"
    assert sum("-->" in line for line in lines) == 4


def test_mermaid_keeps_each_node_on_one_line():
    epic = epic_of(task("a", 1, title='two\nlines "quoted"'), task("b", 1, ["a"]))
    lines = report.mermaid(make_plan(epic, 1)).splitlines()
    assert lines[1] == "  t0[\"a: two lines 'quoted'\"]"
    assert all(line == "flowchart LR" or line.startswith("  ") for line in lines)
