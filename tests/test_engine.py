"""The engine against real git repositories and real subprocesses."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from waveui.engine.engine import Engine, EngineError, RunOptions
from waveui.run.events import TaskStateChanged
from waveui.run.journal import list_runs, read_events
from waveui.run.state import replay
from tests.engine_helpers import git, make_repo, paired_chain_tasks, run_engine, tree_files, write_epic

HYBRID = """
[epic]
name = "hybrid"
max_parallel = 3
command = 'echo "$WAVEUI_TASK_ID" > "out/$WAVEUI_TASK_ID.txt"; echo "::waveui progress=100 cost=0.25"'

[[task]]
id = "a"
affected_files = ["out/a.txt"]
[[task]]
id = "b"
affected_files = ["out/b.txt"]
[[task]]
id = "c"
requires = ["a", "b"]
# sees what a and b merged
command = 'cat out/a.txt out/b.txt > out/c.txt'
affected_files = ["out/c.txt"]
[[task]]
id = "d"
affected_files = ["out/d.txt"]
[[task]]
id = "e"
requires = ["c", "d"]
command = 'cat out/c.txt out/d.txt > out/e.txt'
affected_files = ["out/e.txt"]
"""


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo", {"README.md": "hi\n", "out/.keep": ""})


def test_hybrid_epic_runs_and_merges_in_dependency_order(repo):
    epic = write_epic(repo, HYBRID)
    head_before, status_before = git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain")
    engine = run_engine(epic, repo)
    state = engine.state
    assert state.ok and state.finish_reason == "complete"
    assert {t.state for t in state.tasks.values()} == {"done"}
    branch = state.branch
    assert git(repo, "show", f"{branch}:out/c.txt").split() == ["a", "b"]
    assert git(repo, "show", f"{branch}:out/e.txt").split() == ["a", "b", "d"]
    assert state.cost == pytest.approx(0.25 * 3)
    # the user's checkout is untouched
    assert git(repo, "rev-parse", "HEAD") == head_before
    assert git(repo, "branch", "--show-current") == "main"
    assert git(repo, "status", "--porcelain") == status_before


def test_replaying_the_journal_gives_the_live_state(repo):
    engine = run_engine(write_epic(repo, HYBRID), repo)
    replayed = replay(read_events(engine.run_dir / "events.jsonl"))
    assert replayed == engine.state


def test_failure_retries_then_blocks_dependents_and_retry_unblocks(repo):
    epic = write_epic(repo, """
        [epic]
        name = "fails"
        command = 'echo x > "f-$WAVEUI_TASK_ID"'
        [[task]]
        id = "flaky"
        retries = 1
        # fails on the first attempt only
        command = 'test "$WAVEUI_ATTEMPT" -ge 2 && echo ok > flaky.txt'
        [[task]]
        id = "broken"
        command = 'exit 3'
        [[task]]
        id = "after-broken"
        requires = ["broken"]
        [[task]]
        id = "after-after"
        requires = ["after-broken"]
    """)
    engine = run_engine(epic, repo)
    tasks = engine.state.tasks
    assert tasks["flaky"].state == "done" and tasks["flaky"].attempt == 2
    assert tasks["broken"].state == "failed" and "exit 3" in tasks["broken"].reason
    assert tasks["after-broken"].state == "blocked" and tasks["after-after"].state == "blocked"
    assert not engine.state.ok


def test_a_task_that_changes_nothing_is_flagged(repo):
    epic = write_epic(repo, """
        [epic]
        name = "idle"
        [[task]]
        id = "claims-success"
        command = 'true'
        [[task]]
        id = "check-only"
        command = 'true'
        expect_changes = false
    """)
    tasks = run_engine(epic, repo).state.tasks
    assert tasks["claims-success"].state == "failed" and "changed nothing" in tasks["claims-success"].reason
    assert tasks["check-only"].state == "done"


def test_verify_must_pass(repo):
    epic = write_epic(repo, """
        [epic]
        name = "verify"
        [[task]]
        id = "good"
        command = 'echo 1 > good.txt'
        verify = 'test -s good.txt'
        [[task]]
        id = "bad"
        command = 'echo 1 > bad.txt'
        verify = 'grep -q 2 bad.txt'
    """)
    tasks = run_engine(epic, repo).state.tasks
    assert tasks["good"].state == "done"
    assert tasks["bad"].state == "failed" and "verify failed" in tasks["bad"].reason


def test_timeout_kills_a_task_that_ignores_sigterm_and_its_children(repo, tmp_path):
    pids = tmp_path / "pids"
    epic = write_epic(repo, f"""
        [epic]
        name = "hang"
        [[task]]
        id = "hangs"
        timeout = "1s"
        command = 'trap "" TERM; sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; while true; do sleep 0.1; done'
    """)
    engine = run_engine(epic, repo)
    task = engine.state.tasks["hangs"]
    assert task.state == "failed" and "timed out" in task.reason
    for pid in map(int, pids.read_text().split()):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_merge_conflict_keeps_the_branch_and_the_rest_finishes(repo):
    epic = write_epic(repo, """
        [epic]
        name = "clash"
        conflicts = "defer"
        max_parallel = 2
        [[task]]
        id = "left"
        command = 'echo left > README.md; sleep 0.3'
        affected_files = ["README.md"]
        [[task]]
        id = "right"
        command = 'echo right > README.md; sleep 0.3'
        affected_files = ["README.md"]
        [[task]]
        id = "other"
        command = 'echo other > other.txt'
    """)
    engine = run_engine(epic, repo)
    tasks = engine.state.tasks
    states = sorted(tasks[t].state for t in ("left", "right"))
    assert states == ["conflicted", "done"]
    loser = next(t for t in ("left", "right") if tasks[t].state == "conflicted")
    assert tasks[loser].files == ["README.md"]
    assert tasks["other"].state == "done"
    # the conflicted task's work is kept on its branch
    branch = engine.pool.branch_for(loser)
    assert git(repo, "show", f"{branch}:README.md") == loser


def test_lock_mode_never_overlaps_two_tasks_on_a_file(repo):
    tasks = "\n".join(f"""
        [[task]]
        id = "t{i}"
        command = 'sleep 0.2; echo {i} >> shared-{i % 2}.txt'
        affected_files = ["shared.txt"]
    """ for i in range(4))
    epic = write_epic(repo, f"""
        [epic]
        name = "locks"
        conflicts = "lock"
        max_parallel = 4
        {tasks}
        [[task]]
        id = "free"
        command = 'sleep 0.2; echo free > free.txt'
    """)
    engine = run_engine(epic, repo)
    assert engine.state.ok
    spans = {t.id: (t.attempts[-1].started, t.attempts[-1].ended) for t in engine.state.tasks.values()}
    locked = sorted(spans[f"t{i}"] for i in range(4))
    for (start_a, end_a), (start_b, _) in zip(locked, locked[1:]):
        assert end_a <= start_b
    # the unrelated task was not held up behind the lock
    assert spans["free"][0] < locked[1][0]


def test_pause_and_resume_stop_the_task_clock(repo):
    epic = write_epic(repo, """
        [epic]
        name = "pause"
        [[task]]
        id = "slow"
        # many short sleeps: one long sleep's deadline would pass while stopped
        command = 'for i in $(seq 15); do sleep 0.1; done; echo done > slow.txt'
    """)
    engine = Engine(epic, repo, RunOptions(grace=0.5))

    async def drive():
        run = asyncio.create_task(engine.run())
        while engine.state.tasks.get("slow") is None or engine.state.tasks["slow"].state != "running":
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        engine.pause_task("slow")
        assert engine.state.tasks["slow"].state == "paused"
        await asyncio.sleep(1.5)
        engine.resume_task("slow")
        await run

    started = time.monotonic()
    asyncio.run(drive())
    wall = time.monotonic() - started
    task = engine.state.tasks["slow"]
    assert task.state == "done"
    assert wall >= 2.9  # the sleep really stopped while paused
    assert task.busy_seconds < wall - 1.2  # and the task's clock did not count the pause


def test_a_second_controller_is_refused(repo):
    epic = write_epic(repo, """
        [epic]
        name = "one"
        [[task]]
        id = "slow"
        command = 'sleep 1; echo x > x.txt'
    """)
    first = Engine(epic, repo, RunOptions(grace=0.5))
    second = Engine(epic, repo, RunOptions(grace=0.5))

    async def both():
        run = asyncio.create_task(first.run())
        await asyncio.sleep(0.3)
        with pytest.raises(EngineError, match="another waveui"):
            await second.run()
        await run

    asyncio.run(both())
    assert first.state.ok


def test_isolation_none_runs_in_place_without_git(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    epic = write_epic(folder, """
        [epic]
        name = "plain"
        isolation = "none"
        [[task]]
        id = "one"
        command = 'echo 1 > one.txt'
        [[task]]
        id = "two"
        requires = ["one"]
        command = 'cat one.txt > two.txt'
    """)
    engine = run_engine(epic, folder)
    assert engine.state.ok
    assert (folder / "two.txt").read_text() == "1\n"


KILL_EPIC = """
[epic]
name = "survive"
max_parallel = 2
command = 'sleep 0.4; echo "$WAVEUI_TASK_ID" > "out/$WAVEUI_TASK_ID.txt"'
{tasks}
"""


def _waveui(repo: Path, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "waveui", "run", "--headless", *args], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_kill_9_then_run_again_resumes_and_ends_like_a_clean_run(tmp_path):
    epic_text = KILL_EPIC.format(tasks=paired_chain_tasks(8))
    clean = make_repo(tmp_path / "clean", {"README.md": "hi\n", "out/.keep": ""})
    write_epic(clean, epic_text)
    assert _waveui(clean).wait(timeout=120) == 0

    crashed = make_repo(tmp_path / "crashed", {"README.md": "hi\n", "out/.keep": ""})
    write_epic(crashed, epic_text)
    process = _waveui(crashed)
    journal = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until some work is merged, then kill mid-run
        runs = list_runs(crashed)
        if runs:
            journal = runs[-1] / "events.jsonl"
            done = [e for e in read_events(journal) if isinstance(e, TaskStateChanged) and e.state == "done"]
            if len(done) >= 3:
                break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = {e.task for e in read_events(journal) if isinstance(e, TaskStateChanged) and e.state == "done"}
    assert 3 <= len(done_before) < 8

    again = _waveui(crashed)
    output, _ = again.communicate(timeout=120)
    assert again.returncode == 0, output
    assert "resuming" in output
    state = replay(read_events(journal))
    assert state.ok and state.resumes == 1
    # tasks done before the crash were not run again
    starts = {}
    for e in read_events(journal):
        if isinstance(e, TaskStateChanged) and e.state == "running":
            starts[e.task] = starts.get(e.task, 0) + 1
    assert all(starts[t] == 1 for t in done_before)
    assert tree_files(crashed, state.branch) == tree_files(clean, state.branch)


def test_adaptive_limit_moves_with_cpu_and_memory_and_cools_down():
    from waveui.engine.adaptive import AdaptiveLimit
    from waveui.executors.local.processes import Sample

    gb = 2**30
    limit = AdaptiveLimit(minimum=1, maximum=4, limit=2, cool_down=10)
    assert limit.decide(Sample(95, 8 * gb, 50), now=0) == "CPU 95% > 80%" and limit.limit == 1
    assert limit.decide(Sample(10, 8 * gb, 50), now=5) is None  # cooling down
    assert "CPU 10% < 40%" in limit.decide(Sample(10, 8 * gb, 50), now=11) and limit.limit == 2
    assert limit.decide(Sample(10, 1.5 * gb, 80), now=30) is None  # idle CPU, but too little memory free
    assert "memory low" in limit.decide(Sample(50, 0.5 * gb, 95), now=40) and limit.limit == 1
    assert limit.decide(Sample(99, 8 * gb, 50), now=60) is None  # already at the minimum
    for now in range(100, 200, 11):
        limit.decide(Sample(5, 8 * gb, 10), now=now)
    assert limit.limit == 4  # never above the maximum


def test_priority_change_reorders_the_ready_queue_and_cancel_blocks_dependents(repo):
    epic = write_epic(repo, """
        [epic]
        name = "order"
        max_parallel = 1
        command = 'echo "$WAVEUI_TASK_ID" >> "$WAVEUI_TASK_ID.txt"'
        [[task]]
        id = "first"
        story_points = 5  # the longest remaining path: dispatched first
        command = 'sleep 0.5; echo first > first.txt'
        [[task]]
        id = "low"
        [[task]]
        id = "raised"
        [[task]]
        id = "doomed"
        [[task]]
        id = "after-doomed"
        requires = ["doomed"]
    """)
    engine = Engine(epic, repo, RunOptions(grace=0.5))

    async def drive():
        run = asyncio.create_task(engine.run())
        while engine.state.tasks.get("first") is None or engine.state.tasks["first"].state != "running":
            await asyncio.sleep(0.02)
        engine.set_priority("raised", 5)
        engine.cancel("doomed")
        await run

    asyncio.run(drive())
    tasks = engine.state.tasks
    # Which ran first (a task may be prepared ahead of the one worker, before the change of priority).
    ran = {}
    for event in read_events(engine.run_dir / "events.jsonl"):
        if isinstance(event, TaskStateChanged) and event.state == "running":
            ran.setdefault(event.task, event.t)
    assert ran["raised"] < ran["low"]
    assert tasks["doomed"].state == "cancelled" and tasks["after-doomed"].state == "blocked"
    # retrying the cancelled task wakes its dependent once it succeeds


def test_pooled_worktree_keeps_ignored_dependencies_and_reruns_setup_only_when_inputs_change(tmp_path):
    from waveui.run.events import SetupRan

    repo = make_repo(tmp_path / "repo", {"package-lock.json": "v1\n", ".gitignore": "node_modules/\n"})
    epic = write_epic(repo, """
        [epic]
        name = "deps"
        max_parallel = 1
        setup = 'mkdir -p node_modules && cat package-lock.json >> node_modules/installed'
        setup_inputs = ["package-lock.json"]
        [[task]]
        id = "a"
        command = 'test -f node_modules/installed && echo a > a.txt'
        [[task]]
        id = "b"
        requires = ["a"]
        command = 'test -f node_modules/installed && echo v2 > package-lock.json'
        [[task]]
        id = "c"
        requires = ["b"]
        command = 'cp node_modules/installed c.txt'
    """)
    engine = run_engine(epic, repo)
    assert engine.state.ok
    setups = {e.task: e for e in read_events(engine.run_dir / "events.jsonl") if isinstance(e, SetupRan)}
    assert not setups["a"].skipped  # a new pooled worktree
    assert setups["b"].skipped  # same worktree, same inputs: node_modules kept, no reinstall
    assert not setups["c"].skipped  # b changed package-lock.json
    # node_modules survived between tasks: c saw both installs in one folder
    assert git(repo, "show", f"{engine.state.branch}:c.txt").split() == ["v1", "v2"]
    assert engine.state.setup_seconds > 0 and engine.state.setups_skipped == 1


def test_tasks_outlive_a_killed_waveui_and_are_adopted_not_rerun(tmp_path):
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n"})
    starts = tmp_path / "starts"
    write_epic(repo, f"""
        [epic]
        name = "adopt"
        [[task]]
        id = "long"
        command = 'echo started >> {starts}; for i in $(seq 30); do sleep 0.1; done; echo "::waveui cost=1.5"; echo ok > long.txt'
        [[task]]
        id = "after"
        requires = ["long"]
        command = 'cat long.txt > after.txt'
    """)
    process = _waveui(repo)
    journal = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # kill waveui while "long" runs
        runs = list_runs(repo)
        if runs and any(isinstance(e, TaskStateChanged) and e.task == "long" and e.state == "running"
                        for e in read_events(runs[-1] / "events.jsonl")):
            journal = runs[-1] / "events.jsonl"
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    running = replay(read_events(journal)).tasks["long"]
    assert running.state == "running"
    assert psutil.pid_exists(running.pid)  # the task went on without waveui

    again = _waveui(repo)
    output, _ = again.communicate(timeout=60)
    assert again.returncode == 0, output
    state = replay(read_events(journal))
    assert state.ok
    assert starts.read_text().count("started") == 1  # adopted, not started again
    assert state.tasks["long"].cost == 1.5  # its progress lines were followed after adoption
    assert git(repo, "show", f"{state.branch}:after.txt") == "ok"


def test_ctrl_c_leaves_tasks_running_and_the_next_run_adopts_them(tmp_path):
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n"})
    starts = tmp_path / "starts"
    write_epic(repo, f"""
        [epic]
        name = "detach"
        [[task]]
        id = "long"
        command = 'echo started >> {starts}; for i in $(seq 20); do sleep 0.1; done; echo ok > long.txt'
    """)
    process = _waveui(repo)
    deadline = time.monotonic() + 30
    while not starts.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 130 and "left running" in output
    again = _waveui(repo)
    output, _ = again.communicate(timeout=60)
    assert again.returncode == 0, output
    assert starts.read_text().count("started") == 1


def test_waves_strategy_keeps_every_wave_behind_the_one_before(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    epic = write_epic(folder, """
        [epic]
        name = "barriers"
        isolation = "none"
        strategy = "waves"
        max_parallel = 4
        command = 'sleep 0.1'
        [[task]]
        id = "slow"
        command = 'sleep 1'
        [[task]]
        id = "quick"
        [[task]]
        id = "after-quick"
        requires = ["quick"]
    """)
    tasks = run_engine(epic, folder).state.tasks
    assert all(t.state == "done" for t in tasks.values())
    # eager dispatch would start after-quick at once; the barrier holds it until slow is done too
    assert tasks["after-quick"].attempts[-1].started >= tasks["slow"].attempts[-1].ended


def test_with_the_user_there_the_run_stays_open_for_a_retry_once_nothing_is_left(tmp_path):
    """A run under the app is finished only when the user quits: a retry after the last task settled still runs."""
    from waveui.run.events import Notice

    repo = make_repo(tmp_path / "repo")
    flag = tmp_path / "fixed"
    epic = write_epic(repo, f'''
        [epic]
        name = "open"
        [[task]]
        id = "flaky"
        command = "test -e {flag} && echo ok > ok.txt"
        ''')
    engine = Engine(epic, repo, RunOptions(backoff=0.05, grace=0.5, sample_seconds=0.2, stay_open=True))
    seen = []

    def user(event):
        loop = asyncio.get_running_loop()
        if isinstance(event, Notice) and event.kind == "idle":
            seen.append(event.text)
            if engine.state.tasks["flaky"].state == "failed":
                flag.write_text("")
                loop.call_soon(engine.retry, "flaky")
            else:
                loop.call_soon(engine.close)  # the user quits

    engine.options.listeners.append(user)
    state = asyncio.run(engine.run())
    assert seen[0].startswith("nothing left to run (1 not done)")
    assert seen[1] == "every task is done: quit to finish the run"
    assert state.ok and state.finish_reason == "complete"
    assert git(repo, "show", "waveui/open:ok.txt") == "ok"
