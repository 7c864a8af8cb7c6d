"""The run model's derived figures: every summary counts every task, and one clock times tasks and attempts."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waveui.frontends import status
from waveui.frontends.headless import HeadlessReporter
from waveui.run.events import (ControllerGone, RunFinished, RunStarted, StepEnded, TaskInfo, TaskProgress,
                               TaskStateChanged)
from waveui.run.metrics import tally
from waveui.run.state import replay

TASK_IDS = ["a", "b", "c", "d", "e"]
# Every state the engine sends, and one a later version might.
STATES = ["pending", "ready", "preparing", "running", "paused", "verifying", "merging", "done", "failed",
          "conflicted", "blocked", "cancelled", "reviewing"]


def info(task_id: str, requires=()) -> TaskInfo:
    return TaskInfo(task_id, "", list(requires), 1.0, [], 0, 0, False)


def started(task_ids, t: float = 0.0, resumed: bool = False) -> RunStarted:
    return RunStarted(t=t, run_id="r", epic="e", tasks=[info(task_id) for task_id in task_ids], resumed=resumed)


@st.composite
def runs(draw):
    """A run's events in any order the journal could hold: state changes, resumes with other task lists, an end."""
    first = draw(st.lists(st.sampled_from(TASK_IDS), min_size=1, unique=True))
    events = [started(first)]
    t = 0.0
    for _ in range(draw(st.integers(0, 40))):
        t += draw(st.floats(0, 100))
        kind = draw(st.sampled_from(["state", "state", "state", "resume", "finish"]))
        if kind == "state":
            task_id, state = draw(st.sampled_from(TASK_IDS)), draw(st.sampled_from(STATES))
            events.append(TaskStateChanged(t=t, task=task_id, state=state, attempt=draw(st.integers(0, 3))))
        elif kind == "resume":
            events.append(started(draw(st.lists(st.sampled_from(TASK_IDS), min_size=1, unique=True)), t, True))
        else:
            events.append(RunFinished(t=t, ok=False, reason="failed tasks"))
    return events


def numbers(text: str) -> list[int]:
    """The count in each ``N word`` part of a tally (``3/5 done`` gives 3)."""
    return [int(match) for match in re.findall(r"(?:^|, )(\d+)(?:/\d+)? \w+", text)]


@settings(max_examples=300, deadline=None)
@given(runs())
def test_the_parts_of_every_summary_add_up_to_the_tasks(events):
    state = replay(events)
    counts = state.breakdown()
    assert counts.total == len(state.tasks)
    assert all(number >= 0 for _, number in counts.parts())
    assert sum(numbers(", ".join(tally(counts)))) == len(state.tasks)
    # status --json and its text, and the headless summary, from the same breakdown
    summary = {"run": "r", "epic": "e", "status": "stopped", "done": state.done, "total": state.total,
               "breakdown": counts.as_dict(), "cost": 0.0, "started": state.started, "elapsed": 0.0}
    info_ = status.report(state, summary, state.now)
    assert sum(info_["breakdown"].values()) == info_["total"] == len(state.tasks)
    listed = sum(len(info_[f"{kind}_tasks"]) for kind in status.LISTED)
    assert listed == counts.problems + counts.cancelled
    reporter = HeadlessReporter(None)
    reporter.catch_up(events)
    assert sum(numbers(reporter.summary(state.now).split(", efficiency")[0])) == len(state.tasks)


def test_cancelled_and_unknown_states_are_counted():
    state = replay([started(["a", "b", "c"]),
                    TaskStateChanged(t=1, task="a", state="cancelled"),
                    TaskStateChanged(t=1, task="b", state="reviewing")])
    assert tally(state.breakdown()) == ["0/3 done", "0 active", "1 waiting", "1 cancelled", "1 other"]


# ----------------------------------------------------------------- one clock


def test_an_attempt_is_timed_by_the_task_clock():
    """Preparing and merging are not running time, on the main screen (elapsed) or under Attempts (seconds)."""
    state = replay([started(["a"]),
                    TaskStateChanged(t=10, task="a", state="preparing", attempt=1),
                    TaskStateChanged(t=11, task="a", state="running", attempt=1),
                    TaskStateChanged(t=13.6, task="a", state="merging", attempt=1),
                    TaskStateChanged(t=14.5, task="a", state="done", attempt=1)])
    task = state.tasks["a"]
    assert task.elapsed(100) == task.attempts[-1].seconds == pytest.approx(2.6)


def test_a_task_adopted_after_a_crash_counts_the_time_it_ran_meanwhile():
    """The controller died 1 s into the task; its supervisor ran it on; the next controller adopted it."""
    state = replay([started(["a"]),
                    TaskStateChanged(t=1, task="a", state="running", attempt=1),
                    TaskProgress(t=2, task="a", progress=10),
                    # killed here; resumed 40 s later, the step still running
                    started(["a"], t=42, resumed=True),
                    TaskStateChanged(t=42, task="a", state="running", attempt=1, reason="adopted"),
                    TaskStateChanged(t=43, task="a", state="merging", attempt=1),
                    TaskStateChanged(t=44, task="a", state="done", attempt=1)])
    task = state.tasks["a"]
    assert task.elapsed(100) == 42.0 == task.attempts[-1].seconds
    assert state.clocked == 0


def test_run_time_leaves_out_the_time_between_controllers():
    state = replay([started(["a"]),
                    TaskStateChanged(t=5, task="a", state="failed", attempt=1),
                    RunFinished(t=6, ok=False, reason="failed tasks"),
                    started(["a"], t=1006, resumed=True),
                    TaskStateChanged(t=1010, task="a", state="running", attempt=2)])
    assert state.elapsed() == 10.0
    assert state.elapsed(1020) == 20.0


# ----------------------------------------------------- what a watcher sees for itself


def test_a_step_ended_unheard_stops_its_clock_until_a_controller_takes_it_on():
    events = [started(["a", "b"]),
              TaskStateChanged(t=1, task="a", state="running", attempt=1),
              TaskStateChanged(t=1, task="b", state="running", attempt=1),
              ControllerGone(t=1),
              StepEnded(t=5, task="a", step="running", exit_code=0),
              StepEnded(t=6, task="b", step="verifying", exit_code=1)]  # not the step it is in: ignored
    state = replay(events)
    a, b = state.tasks["a"], state.tasks["b"]
    assert state.controller_gone == 1
    assert (a.elapsed(100), a.progress, a.exit_code) == (4.0, 100.0, 0)
    assert b.clock_since is not None and b.exit_code is None
    state = replay([*events, started(["a", "b"], t=50, resumed=True)])
    assert state.controller_gone is None  # a controller again
