"""The speed benchmark still runs, and the fast paths it measures give the plain answers.

No timings are asserted here: they depend on the machine. See benchmarks/plan_speed.py.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import pytest

from waveui.core import spec
from waveui.plan.graph import Reachability, TaskGraph

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "plan_speed.py"


@pytest.fixture(scope="module")
def bench():
    loader = importlib.util.spec_from_file_location("plan_speed", BENCHMARK)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def test_benchmark_runs_on_small_epics(bench, capsys):
    assert bench.main(["--sizes", "200", "--repeat", "1", "--scaling", "100"]) == 0
    out = capsys.readouterr().out
    for label in ("parse + validate", "conflicts", "eager schedule", "waveui plan -f", "overlapping pairs"):
        assert label in out


def test_generated_epic_is_valid_and_acyclic(bench):
    epic = spec.loads(bench.epic_text(500, seed=3))
    assert len(epic.tasks) == 500
    graph = TaskGraph.from_epic(epic)
    assert len(graph.topological_order()) == 500


@pytest.mark.parametrize("landmarks, search_limit, chunk", [(None, 32, 2048), (0, 1, 7), (3, 2, 64), (10, 10**9, 1)])
def test_reachability_agrees_with_a_plain_search(bench, landmarks, search_limit, chunk):
    graph = TaskGraph.from_epic(spec.loads(bench.epic_text(300, seed=5)))
    order = graph.topological_order()
    level = graph.levels(order)
    reach = Reachability(graph, order, level, landmarks)
    reach.SEARCH_LIMIT, reach.CHUNK = search_limit, chunk  # force the search and the exact passes too
    pairs = list(itertools.combinations(range(0, 300, 3), 2))
    expected = [(a, b) for a, b in pairs
                if not graph.reaches(a, {b}, level) and not graph.reaches(b, {a}, level)]
    assert reach.unrelated(pairs) == expected
    assert [reach(a, b) for a, b in pairs[:500]] == [bool(graph.reaches(a, {b}, level)) for a, b in pairs[:500]]
