"""Tasks that touch the same files: overlaps, globs, serialisation, split suggestions, lock mode."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import concurrent, dags, edges_of, epic_of, max_running, reachable, task
from waveui.core import spec
from waveui.plan import make_plan
from waveui.plan.schedule import dispatch_check
from waveui.plan.conflicts import (
    Conflict,
    exclusive_groups,
    find_conflicts,
    glob_regex,
    globs_overlap,
    is_glob,
    normalise,
    overlapping_pairs,
    serialisations,
    split_suggestions,
)


def conflicts_of(*tasks, mode: str = "serialise", workers: int = 4):
    plan = make_plan(epic_of(*tasks, conflicts=mode), workers)
    return plan, [(plan.graph.ids[c.a], plan.graph.ids[c.b], c.files) for c in plan.conflicts]


def overlap(p: str, q: str) -> bool:
    """Whether two tasks declaring one file each conflict (they have no dependencies)."""
    return bool(conflicts_of(task("x", files=[p]), task("y", files=[q]))[1])


# ------------------------------------------------------------- which overlap


def test_literal_overlap_names_the_shared_file():
    _, found = conflicts_of(task("a", files=["src/a.py", "src/b.py"]), task("b", files=["src/b.py", "src/c.py"]),
                            task("c", files=["src/c.py"]))
    assert found == [("a", "b", ("src/b.py",)), ("b", "c", ("src/c.py",))]


def test_no_shared_files_no_conflict():
    plan, found = conflicts_of(task("a", files=["src/a.py"]), task("b", files=["src/b.py"]), task("c"))
    assert found == [] and plan.serialised == [] and plan.splits == []


@pytest.mark.parametrize("p, q, expected", [
    ("src/*.py", "src/a.py", True),
    ("src/*.py", "src/sub/a.py", False),  # * stays inside one folder
    ("src/*.py", "src/a.md", False),
    ("src/a?.py", "src/ab.py", True),
    ("src/a?.py", "src/a/.py", False),
    ("src/[ab].py", "src/b.py", True),
    ("src/[!ab].py", "src/b.py", False),
    ("src/**", "src/sub/deep/a.py", True),
    ("src/**/*.py", "src/sub/deep/a.py", True),
    ("src/**/*.py", "src/a.py", True),  # **/ may match no folder at all
    ("**/test_*.py", "tests/unit/test_x.py", True),
    ("**/test_*.py", "test_x.py", True),
    ("src/**", "docs/a.md", False),
    ("src/api/", "src/api/auth.py", True),  # a trailing / names the whole folder
    ("src/api/", "src/api/v1/users.py", True),
    ("src/api/", "src/apis.py", False),
    ("src/api/", "src/api.py", False),
    ("./src/a.py", "src/a.py", True),
    ("src//a.py", "src/a.py", True),
    ("src\\a.py", "src/a.py", True),
])
def test_glob_against_literal(p, q, expected):
    assert overlap(p, q) is expected
    assert overlap(q, p) is expected  # the order of the tasks does not matter


@pytest.mark.parametrize("p, q, expected", [
    ("src/*.py", "src/a*", True),  # src/a.py
    ("src/*.py", "src/*.md", False),
    ("src/*.py", "src/sub/*.py", False),
    ("src/**", "src/sub/*.py", True),
    ("src/**/*.py", "src/sub/*.py", True),
    ("src/*/a.py", "src/b/*.py", True),
    ("docs/", "src/", False),
    ("src/", "src/api/", True),
    ("src/api/", "src/*/auth.py", True),
    ("**/*.md", "docs/*.py", False),
    ("src/*.py", "src/*.py", True),
    ("*.py", "src/*.py", False),
    ("**", "anything/at/all.txt", True),
    ("src/a?c", "src/?b?", True),
    ("src/a?c", "src/?bd", False),
])
def test_two_globs(p, q, expected):
    assert globs_overlap(normalise(p), normalise(q)) is expected
    assert overlap(p, q) is expected
    assert overlap(q, p) is expected


def test_normalise_and_is_glob():
    assert normalise("./src//api/") == "src/api/**"
    assert normalise("src\\a.py") == "src/a.py"
    assert is_glob("src/*.py") and is_glob("a?") and is_glob("[ab]") and not is_glob("src/a.py")


def test_a_glob_meeting_literals_names_the_literals():
    _, found = conflicts_of(task("g", files=["src/*.py"]), task("a", files=["src/a.py"]),
                            task("sub", files=["src/sub/a.py"]), task("b", files=["src/b.py", "src/a.py"]))
    assert found == [("g", "a", ("src/a.py",)), ("g", "b", ("src/a.py", "src/b.py")), ("a", "b", ("src/a.py",))]


# ------------------------------------------------------- ordered pairs are fine


def test_a_dependency_orders_a_pair():
    _, found = conflicts_of(task("a", files=["f"]), task("b", files=["f"], requires=["a"]))
    assert found == []


def test_a_transitive_dependency_orders_a_pair():
    _, found = conflicts_of(task("a", files=["f"]), task("m1", requires=["a"]), task("m2", requires=["m1"]),
                            task("z", files=["f"], requires=["m2"]))
    assert found == []


def test_a_dependency_declared_backwards_in_the_file_orders_a_pair():
    _, found = conflicts_of(task("z", files=["src/*"], requires=["m"]), task("m", requires=["a"]),
                            task("a", files=["src/x"]))
    assert found == []


def test_siblings_after_a_common_dependency_still_conflict():
    _, found = conflicts_of(task("a", files=["f"]), task("b", files=["f"], requires=["a"]),
                            task("c", files=["f"], requires=["a"]))
    assert found == [("b", "c", ("f",))]


def test_tasks_at_different_depths_on_separate_branches_conflict():
    _, found = conflicts_of(task("a"), task("b", requires=["a"]), task("c", requires=["b"], files=["f"]),
                            task("x", files=["f"]))
    assert found == [("c", "x", ("f",))]


# --------------------------------------------------------------- serialising


def test_serialisation_puts_the_task_with_room_second():
    # long (4) -> tail (4) is the critical path, 8 points. quick (1) shares a file with long.
    # long before quick: 4 + 1 = 5, no growth.  quick before long: 1 + 8 = 9, one more point.
    plan, found = conflicts_of(task("quick", 1, files=["f"]), task("long", 4, files=["f"]),
                               task("tail", 4, requires=["long"]))
    assert found == [("quick", "long", ("f",))]
    [s] = plan.serialised
    assert (plan.graph.ids[s.before], plan.graph.ids[s.after]) == ("long", "quick")
    assert s.growth == 0
    assert plan.critical.length == 8
    assert (1, 0) in edges_of(plan.graph)  # long -> quick


def test_serialisation_puts_the_task_with_room_first():
    # quick shares a file with the end of the critical path: quick must go first.
    plan, _ = conflicts_of(task("head", 4), task("end", 4, requires=["head"], files=["f"]), task("quick", 1, files=["f"]))
    [s] = plan.serialised
    assert (plan.graph.ids[s.before], plan.graph.ids[s.after]) == ("quick", "end")
    assert s.growth == 0 and plan.critical.length == 8


def test_serialisation_growth_when_every_order_costs():
    # two independent tasks of 3 and 2: either order makes a path of 5, two more than 3.
    plan, _ = conflicts_of(task("a", 3, files=["f"]), task("b", 2, files=["f"]))
    [s] = plan.serialised
    assert s.growth == 2
    assert plan.critical.length == 5
    assert [plan.graph.ids[t] for t in plan.critical.tasks] in (["a", "b"], ["b", "a"])
    assert len(plan.waves) == 2


def test_serialise_mode_changes_the_graph_but_not_the_declared_one():
    plan, _ = conflicts_of(task("a", 1, files=["f"]), task("b", 1, files=["f"]))
    assert edges_of(plan.declared) == set()
    assert len(edges_of(plan.graph)) == 1
    for mode in ("lock", "defer"):
        other, found = conflicts_of(task("a", 1, files=["f"]), task("b", 1, files=["f"]), mode=mode)
        assert found == [("a", "b", ("f",))]
        assert edges_of(other.graph) == set()  # only serialise adds edges
        assert len(other.serialised) == 1  # still offered as a suggestion


def test_serialisations_directly():
    # head/tail of four unrelated tasks; rank = head - tail decides
    head = [1.0, 5.0, 2.0, 2.0]
    tail = [6.0, 1.0, 2.0, 2.0]
    out = serialisations([Conflict(0, 1, ("f",)), Conflict(2, 3, ("g",)), Conflict(1, 2, ("h",))], head, tail, [3, 2, 1, 0])
    assert [(s.before, s.after) for s in out] == [(0, 1), (3, 2), (2, 1)]  # 2 vs 3 tie: topological position
    length = max(head)
    for s in out:
        assert s.growth == max(0.0, head[s.before] + tail[s.after] - length)


# ------------------------------------------------------------ split suggestions


def test_split_suggested_when_three_tasks_share_a_file():
    plan, _ = conflicts_of(task("a", files=["src/settings.py"]), task("b", files=["src/settings.py"]),
                           task("c", files=["src/settings.py", "src/x.py"]), task("d", files=["src/x.py"]))
    assert [(s.file, [plan.graph.ids[t] for t in s.tasks]) for s in plan.splits] == [("src/settings.py", ["a", "b", "c"])]


def test_no_split_for_two_tasks():
    plan, _ = conflicts_of(task("a", files=["f"]), task("b", files=["f"]))
    assert plan.splits == []


def test_no_split_when_the_sharing_tasks_are_all_ordered():
    plan, found = conflicts_of(task("a", files=["f"]), task("b", files=["f"], requires=["a"]),
                               task("c", files=["f"], requires=["b"]))
    assert found == [] and plan.splits == []


def test_split_suggestions_busiest_file_first():
    conflicts = [Conflict(a, b, ("x",)) for a, b in itertools.combinations(range(3), 2)]
    conflicts += [Conflict(a, b, ("y",)) for a, b in itertools.combinations(range(4), 2)]
    out = split_suggestions(conflicts)
    assert [(s.file, s.tasks) for s in out] == [("y", (0, 1, 2, 3)), ("x", (0, 1, 2))]


# ------------------------------------------------------------------ lock mode


def _assert_locks_hold(plan, schedule=None):
    start, weight = (schedule or plan.eager).start, plan.graph.weight
    for c in plan.conflicts:
        assert not concurrent(start[c.a], weight[c.a], start[c.b], weight[c.b]), (c, start)


def test_lock_mode_runs_conflicting_tasks_one_at_a_time():
    plan, found = conflicts_of(task("a", 2, files=["f"]), task("b", 3, files=["f"]), task("c", 1, files=["f"]),
                               task("free", 4), mode="lock", workers=4)
    assert len(found) == 3
    _assert_locks_hold(plan)
    assert plan.eager.makespan == 6  # a, b, c one after another; "free" beside them
    assert plan.lower_bound == 6  # the three locked tasks take turns: 2 + 3 + 1
    assert plan.eager.start[3] == 0


def test_lock_mode_lets_other_ready_tasks_go_ahead():
    # x and y are locked together; z is free. With 2 workers z must not wait behind the blocked one.
    plan, _ = conflicts_of(task("x", 2, files=["f"]), task("y", 2, files=["f"]), task("z", 2), mode="lock", workers=2)
    _assert_locks_hold(plan)
    assert plan.eager.makespan == 4


# Three tasks share src/shared.py and none orders another, so in lock mode they take turns;
# d waits for c too. With 3 workers:
#   lower bound: a + b + d one after another = 7 (critical path c → d is 3, the work 8 / 3);
#   waves [a b c] [d]: longest first, a and c start at 0, b waits for a (3) and ends at 5, d 5 to 7;
#   FIFO: a and c start at 0; b, then d (ready at 1) wait for a; b goes first, ready earlier: 3 to 5, d 5 to 7.
# Unlocked (defer) the same epic gives 3, waves 3 + 2 = 5 and FIFO 3.
LOCKED_TURNS = """
[epic]
name = "turns"
max_parallel = 3
conflicts = "{mode}"

[[task]]
id = "a"
story_points = 3
affected_files = ["src/shared.py"]

[[task]]
id = "b"
story_points = 2
affected_files = ["src/shared.py"]

[[task]]
id = "c"
story_points = 1

[[task]]
id = "d"
requires = ["c"]
story_points = 2
affected_files = ["src/shared.py"]
"""


def test_lock_mode_estimates_count_the_locked_tasks_turns():
    plan = make_plan(spec.loads(LOCKED_TURNS.format(mode="lock")))
    assert plan.locked
    assert plan.lower_bound == 7
    assert plan.eager.makespan == 7
    assert plan.wave_barriers.makespan == 7
    assert dict(zip(plan.graph.ids, plan.wave_barriers.start)) == {"a": 0, "b": 3, "c": 0, "d": 5}
    assert plan.fifo.makespan == 7
    assert dict(zip(plan.graph.ids, plan.fifo.start)) == {"a": 0, "b": 3, "c": 0, "d": 5}


def test_without_locks_the_same_epic_runs_its_shared_file_tasks_together():
    plan = make_plan(spec.loads(LOCKED_TURNS.format(mode="defer")))
    assert not plan.locked
    assert (plan.lower_bound, plan.eager.makespan, plan.wave_barriers.makespan, plan.fifo.makespan) == (3, 3, 5, 3)


def test_lock_mode_verdict_divides_the_work_by_the_locked_turns():
    # 8 points over the 7 the locks take: 1.1 busy workers, a chain; unlocked 8 / 3 is 2.7, broad
    locked = make_plan(spec.loads(LOCKED_TURNS.format(mode="lock"))).shape
    assert (locked.kind, locked.level, locked.useful_workers) == ("chain", "low", 2)
    assert "(1.1 workers busy on average, the locks counted)" in locked.verdict
    unlocked = make_plan(spec.loads(LOCKED_TURNS.format(mode="defer"))).shape
    assert (unlocked.kind, unlocked.level) == ("broad", "medium")
    assert "locks" not in unlocked.verdict


def test_locked_turns_wait_for_the_earliest_start_and_leave_the_shortest_tail():
    # x and y (3 each) both wait for setup (2) and take turns; x is followed by 1 point, y by 2.
    # Whichever goes second ends at 2 + 3 + 3 = 8, then at least 1 more: 9, above the critical
    # path of 7. Eager puts y first (its tail is longer) and meets 9; waves (2 + 6 + 2) and FIFO
    # (x first, in file order, so after-y ends at 10) take 10.
    epic = spec.loads("""
[epic]
name = "tails"
max_parallel = 2
conflicts = "lock"

[[task]]
id = "setup"
story_points = 2

[[task]]
id = "x"
requires = ["setup"]
story_points = 3
affected_files = ["api.py"]

[[task]]
id = "y"
requires = ["setup"]
story_points = 3
affected_files = ["api.py"]

[[task]]
id = "after-x"
requires = ["x"]

[[task]]
id = "after-y"
requires = ["y"]
story_points = 2
""")
    plan = make_plan(epic)
    assert plan.critical.length == 7
    assert plan.lower_bound == 9
    assert (plan.eager.makespan, plan.wave_barriers.makespan, plan.fifo.makespan) == (9, 10, 10)


def test_a_lock_on_a_task_of_a_later_wave_holds_up_nobody_in_the_wave_before():
    # q and s share f but s is in the second wave: p, q and r start as workers free up (p and q
    # at 0, r at 1), then s at 2.
    plan, _ = conflicts_of(task("p", 2), task("q", 1, files=["f"]), task("r", 1),
                           task("s", 1, ["r"], files=["f"]), mode="lock", workers=2)
    assert plan.wave_barriers.start == [0, 0, 1, 2]
    assert plan.wave_barriers.makespan == 3


def test_tasks_meeting_one_glob_are_one_group_only_when_they_lock_each_other():
    # src/** meets src/a/* and src/b/*, which do not meet: a and b may run together, so the
    # bound is the heavier locked pair (3 + 1), not all three in turn (7).
    plan, found = conflicts_of(task("all", 1, files=["src/**"]), task("a", 3, files=["src/a/*"]),
                               task("b", 3, files=["src/b/*"]), mode="lock", workers=3)
    assert [pair[:2] for pair in found] == [("all", "a"), ("all", "b")]
    assert plan.lower_bound == 4
    assert plan.eager.makespan == 4
    assert exclusive_groups(plan.conflicts, plan.exclusive, plan.graph.weight) == []


def test_a_file_shared_by_locked_tasks_is_one_group_heaviest_first():
    plan, _ = conflicts_of(task("p", 1, files=["f"]), task("q", 2, files=["f"]), task("r", 3, files=["f"]),
                           mode="lock")
    assert exclusive_groups(plan.conflicts, plan.exclusive, plan.graph.weight) == [(2, 1, 0)]


def test_defer_mode_ignores_the_overlap_when_scheduling():
    plan, _ = conflicts_of(task("a", 2, files=["f"]), task("b", 2, files=["f"]), mode="defer", workers=2)
    assert plan.eager.makespan == 2


# ------------------------------------------------------------------ properties


def _naive_overlap(p: str, q: str) -> bool:
    p, q = normalise(p), normalise(q)
    if is_glob(p) and is_glob(q):
        return globs_overlap(p, q)
    if is_glob(p):
        return bool(glob_regex(p).match(q))
    if is_glob(q):
        return bool(glob_regex(q).match(p))
    return p == q


@given(dags(with_files=True, max_tasks=9))
def test_conflicts_are_exactly_the_unordered_overlapping_pairs(dag):
    g = dag.graph()
    level = g.levels()
    found = {(c.a, c.b): c.files for c in find_conflicts(g, dag.files, level)}
    expected = set()
    for a, b in itertools.combinations(range(len(g)), 2):
        ordered = b in reachable(g, a) or a in reachable(g, b)
        if not ordered and any(_naive_overlap(p, q) for p in dag.files[a] for q in dag.files[b]):
            expected.add((a, b))
    assert set(found) == expected
    for (a, b), files in found.items():
        assert files and list(files) == sorted(set(files))
    # every indexed overlap is a real one
    for (a, b) in overlapping_pairs(dag.files):
        assert a < b
        assert any(_naive_overlap(p, q) for p in dag.files[a] for q in dag.files[b])


@given(dags(with_files=True, max_tasks=9))
def test_serialising_never_creates_a_cycle_and_orders_every_conflict(dag):
    plan = make_plan(dag.epic(conflicts="serialise"), workers=2)
    g = plan.graph
    order = g.topological_order()  # raises on a cycle
    assert sorted(order) == list(range(len(g)))
    for c in plan.conflicts:
        assert c.b in reachable(g, c.a) or c.a in reachable(g, c.b)
    declared_order = plan.declared.topological_order()
    head, tail = plan.declared.head_lengths(declared_order), plan.declared.tail_lengths(declared_order)
    length = max(head)
    for s in plan.serialised:
        # the direction taken lengthens the declared critical path no more than the other would
        assert s.growth == max(0.0, head[s.before] + tail[s.after] - length)
        assert head[s.before] + tail[s.after] <= head[s.after] + tail[s.before] + 1e-9


@given(dags(with_files=True, max_tasks=9), st.integers(1, 4))
def test_lock_mode_never_runs_conflicting_tasks_together(dag, workers):
    plan = make_plan(dag.epic(conflicts="lock"), workers)
    weight = plan.graph.weight
    for schedule in (plan.eager, plan.wave_barriers, plan.fifo):
        start = schedule.start
        _assert_locks_hold(plan, schedule)
        for i, j in edges_of(plan.graph):
            assert start[j] >= start[i] + weight[i] - 1e-9
        assert max_running(start, weight) <= workers
        assert sorted(schedule.order) == list(range(len(weight)))
        assert schedule.makespan >= plan.lower_bound - 1e-9, schedule.rule
        assert schedule.makespan == pytest.approx(max((s + w for s, w in zip(start, weight)), default=0))


@given(dags(with_files=True, max_tasks=6), st.integers(1, 3))
def test_no_dispatch_order_beats_the_lock_mode_lower_bound(dag, workers):
    # every order the engine could dispatch in, not only the orders the planner tries
    plan = make_plan(dag.epic(conflicts="lock"), workers)
    for order in itertools.permutations(range(len(plan.graph))):
        assert dispatch_check(plan.graph, workers, order, plan.exclusive) >= plan.lower_bound - 1e-9, order


_TOKENS = ["a", "b", "/", "*", "**", "?", "**/"]


def _matches_some_path(p: str, q: str, alphabet: str = "ab/", longest: int = 7) -> bool:
    rp, rq = glob_regex(p), glob_regex(q)
    for n in range(longest + 1):
        for chars in itertools.product(alphabet, repeat=n):
            path = "".join(chars)
            if rp.match(path) and rq.match(path):
                return True
    return False


@given(st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=4).map("".join),
       st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=4).map("".join))
def test_globs_overlap_agrees_with_brute_force(p, q):
    assert globs_overlap(p, q) == _matches_some_path(p, q), (p, q)
    assert globs_overlap(q, p) == globs_overlap(p, q)


def test_glob_regex():
    assert glob_regex("src/*.py").match("src/a.py")
    assert not glob_regex("src/*.py").match("src/a/b.py")
    assert glob_regex("**/x").match("x") and glob_regex("**/x").match("a/b/x")
    assert glob_regex("a[!b]c").match("axc") and not glob_regex("a[!b]c").match("abc")
    assert glob_regex("a.b").match("a.b") and not glob_regex("a.b").match("axb")
    assert re.compile(glob_regex("src/**").pattern).match("src/deep/er")
