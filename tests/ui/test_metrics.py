"""ETA and projected cost from a run's state, and the header's number formats."""

from __future__ import annotations

import pytest

from waveui.run.events import RunStarted, TaskInfo, TaskProgress, TaskStateChanged
from waveui.run.state import RunState, fold, replay
from waveui.plan.eta import estimate_remaining
from waveui.run.metrics import duration, money, projected_cost, size
from waveui.frontends.tui.sample_run import NOW, sample_events


def chain_run(limit: int = 2) -> RunState:
    """a (2 points) done in 200 s; b and c (1 point each) wait on it; d (4 points) waits on b."""
    tasks = [TaskInfo("a", "", [], 2, [], 0, 0, True), TaskInfo("b", "", ["a"], 1, [], 1, 1, True),
             TaskInfo("c", "", ["a"], 1, [], 1, 2, False), TaskInfo("d", "", ["b"], 4, [], 2, 3, True)]
    state = RunState()
    for event in [RunStarted(t=0, epic="e", limit=limit, max_parallel=limit, tasks=tasks),
                  TaskStateChanged(t=0, task="a", state="running", attempt=1, worker=1),
                  TaskProgress(t=100, task="a", cost=2.0),
                  TaskStateChanged(t=200, task="a", state="done", attempt=1)]:
        fold(state, event)
    return state


def test_nothing_to_learn_from_gives_no_eta():
    state = chain_run()
    state.tasks["a"].state = "running"
    state.tasks["a"].progress = 0
    assert estimate_remaining(state, 200) is None


def test_eta_simulates_the_rest_on_the_worker_limit():
    # 100 s a point: b and c in parallel (100 s), then d (400 s)
    assert estimate_remaining(chain_run(limit=2), 200) == pytest.approx(500)
    # one worker: b, c and d one after another
    assert estimate_remaining(chain_run(limit=1), 200) == pytest.approx(600)


def test_a_running_task_counts_what_is_left_of_it():
    state = chain_run()
    fold(state, TaskStateChanged(t=200, task="b", state="running", attempt=1, worker=1))
    # 60 s into b's expected 100 s: 40 s left of it, then d
    assert estimate_remaining(state, 260) == pytest.approx(440)


def test_failed_tasks_and_their_dependents_are_left_out():
    state = chain_run()
    fold(state, TaskStateChanged(t=200, task="b", state="failed", attempt=1))
    assert estimate_remaining(state, 200) == pytest.approx(100)  # c only; d waits on b


def test_projected_cost_uses_the_cost_per_point_done():
    state = chain_run()
    assert projected_cost(state) == pytest.approx(2.0 + 6 * 1.0)  # $1 a point for 6 more points


def test_sample_run_figures_are_sane():
    state = replay(sample_events())
    eta = estimate_remaining(state, NOW)
    assert eta is not None and 0 < eta < 10_000
    assert projected_cost(state) > state.cost


@pytest.mark.parametrize("seconds, text", [(None, "—"), (5.7, "5s"), (192, "3m12s"), (3840, "1h04m"),
                                           (2 * 86400 + 3 * 3600, "2d03h")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_size_and_money():
    assert size(512) == "512B"
    assert size(3 * 1024 * 1024) == "3.0M"
    assert size(12 * 1024**3) == "12G"
    assert money(1234.5) == "$1,234.50"
    assert money(None) == "—"
