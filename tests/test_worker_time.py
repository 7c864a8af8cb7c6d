"""git's work off the workers' time: worktrees prepared ahead of a worker (the best task still first),
and a task's work committed after its worker has moved on (and committed by the next run if interrupted)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from waveui.engine.engine import Engine, RunOptions
from waveui.run.events import TaskStateChanged
from waveui.run.journal import read_events
from tests.engine_helpers import WAIT, git, make_repo, write_epic


def _epic(repo: Path, gate: Path, others: list[str]):
    rows = "".join(f'[[task]]\nid = "{name}"\n' for name in others)
    return write_epic(repo, f"""
        [epic]
        name = "ahead"
        max_parallel = 1
        command = 'echo "$WAVEUI_TASK_ID" > "$WAVEUI_TASK_ID.txt"'
        [[task]]
        id = "long"
        story_points = 5  # the longest path: it takes the one worker first
        command = 'while [ ! -e {gate} ]; do sleep 0.05; done; echo long > long.txt'
    """ + rows)


async def _until(condition, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.02)


def _running_spans(engine: Engine) -> dict[str, tuple[float, float]]:
    """When each task's command ran, from the journal: its "running" to its next state."""
    spans: dict[str, list[float]] = {}
    for event in read_events(engine.run_dir / "events.jsonl"):
        if isinstance(event, TaskStateChanged):
            span = spans.get(event.task)
            if event.state == "running":
                spans[event.task] = [event.t, float("inf")]
            elif span is not None and span[1] == float("inf"):
                span[1] = event.t
    return {task: (start, end) for task, (start, end) in spans.items()}


def test_a_task_is_prepared_while_every_worker_is_busy_and_runs_once_one_is_free(tmp_path):
    repo = make_repo(tmp_path / "repo")
    gate = tmp_path / "gate"
    engine = Engine(_epic(repo, gate, ["next"]), repo, RunOptions(grace=0.5))
    seen = {}

    async def drive():
        run = asyncio.create_task(engine.run())
        await _until(lambda: "next" in engine.state.tasks and engine.state.tasks["next"].worktree
                     and engine.state.tasks["long"].state == "running", "next prepared while long runs")
        tasks = engine.state.tasks
        await asyncio.sleep(0.3)  # it stays prepared: the one worker is long's
        seen.update(state=tasks["next"].state, worker=tasks["next"].worker, reason=tasks["next"].reason,
                    worktree=Path(tasks["next"].worktree))
        gate.touch()
        await run

    asyncio.run(drive())
    assert seen["state"] == "preparing" and seen["worker"] is None and seen["reason"] == "waiting for a worker"
    assert seen["worktree"].is_dir()
    tasks = engine.state.tasks
    assert tasks["long"].state == tasks["next"].state == "done"
    spans = _running_spans(engine)
    assert spans["long"][1] <= spans["next"][0]  # never two commands on one worker


def test_a_freed_worker_goes_to_a_better_task_than_the_one_prepared_ahead(tmp_path):
    repo = make_repo(tmp_path / "repo")
    gate = tmp_path / "gate"
    engine = Engine(_epic(repo, gate, ["one", "two"]), repo, RunOptions(grace=0.5))
    order = {}

    async def drive():
        run = asyncio.create_task(engine.run())

        def prepared_ahead():
            tasks = engine.state.tasks  # the run's state, once it has started
            return next((t for t in ("one", "two") if t in tasks and tasks[t].worktree
                         and tasks[t].state == "preparing"), None)
        await _until(lambda: prepared_ahead() is not None and engine.state.tasks["long"].state == "running",
                     "a task prepared ahead")
        order["ahead"] = prepared_ahead()
        order["raised"] = "two" if order["ahead"] == "one" else "one"
        engine.set_priority(order["raised"], 5)  # now the best, though not prepared
        gate.touch()
        await run

    asyncio.run(drive())
    tasks = engine.state.tasks
    assert all(task.state == "done" for task in tasks.values())
    spans = _running_spans(engine)
    assert spans[order["raised"]][0] < spans[order["ahead"]][0]
    assert spans[order["raised"]][1] <= spans[order["ahead"]][0]  # one worker, one command at a time


def _waiting(engine: Engine, task_id: str) -> bool:
    task = engine.state.tasks.get(task_id)
    return task is not None and task.reason == "waiting for a worker"


def test_a_task_cancelled_while_prepared_ahead_never_runs(tmp_path):
    repo = make_repo(tmp_path / "repo")
    gate = tmp_path / "gate"
    engine = Engine(_epic(repo, gate, ["one", "two"]), repo, RunOptions(grace=0.5))

    async def drive():
        run = asyncio.create_task(engine.run())
        await _until(lambda: _waiting(engine, "one") or _waiting(engine, "two"), "a task prepared ahead")
        cancelled = "one" if _waiting(engine, "one") else "two"
        engine.cancel(cancelled)
        gate.touch()  # the worker frees: it must not go to the cancelled task
        await asyncio.wait_for(run, WAIT)
        return cancelled

    cancelled = asyncio.run(drive())
    other = "two" if cancelled == "one" else "one"
    assert engine.state.tasks[cancelled].state == "cancelled"
    assert engine.state.tasks[other].state == engine.state.tasks["long"].state == "done"
    assert cancelled not in _running_spans(engine)


def test_stopping_the_run_lets_go_of_a_task_waiting_for_a_worker(tmp_path):
    repo = make_repo(tmp_path / "repo")
    engine = Engine(_epic(repo, tmp_path / "gate", ["next"]), repo, RunOptions(grace=0.5))

    async def drive():
        run = asyncio.create_task(engine.run())
        await _until(lambda: _waiting(engine, "next"), "next prepared ahead")
        engine.stop(leave_resumable=False)
        await asyncio.wait_for(run, WAIT)  # nothing waits for a worker that will not come

    asyncio.run(drive())
    assert "next" not in _running_spans(engine)
    assert not list((repo / ".waveui" / "worktrees").glob("slot-*/next.txt"))


def test_a_run_interrupted_while_a_task_commits_commits_it_next_time_without_running_it_again(tmp_path):
    repo = make_repo(tmp_path / "repo")
    runs = tmp_path / "runs"  # one line each time the command runs
    epic = write_epic(repo, f"""
        [epic]
        name = "commit"
        [[task]]
        id = "t"
        command = 'echo ran >> {runs}; echo work > work.txt'
    """)

    def interrupt_at_commit(event) -> None:
        if isinstance(event, TaskStateChanged) and event.state == "merging" and not event.commit:
            # Left as a Ctrl-C leaves it, once its job is at its commit: the worker is free, nothing committed.
            asyncio.get_running_loop().call_soon(lambda: first.stop(leave_resumable=True))

    first = Engine(epic, repo, RunOptions(grace=0.5, listeners=[interrupt_at_commit]))
    asyncio.run(first.run())
    assert first.state.tasks["t"].state == "merging" and not first.state.tasks["t"].commit

    second = Engine(epic, repo, RunOptions(grace=0.5))
    asyncio.run(second.run())
    assert second.state.tasks["t"].state == "done"
    assert runs.read_text() == "ran\n"  # committed and merged, not run again
    assert git(repo, "show", "waveui/commit:work.txt") == "work"
