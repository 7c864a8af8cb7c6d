"""Editing waveui.toml between a killed `waveui run` and its resume: followed, or refused in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.faults.helpers import (
    LEDGER_EPIC,
    done_count,
    final_state,
    git,
    gone,
    journal,
    kill9,
    ledger_counts,
    make_repo,
    run_until_ok,
    start,
    tree_files,
    wait_for,
    write_epic,
)
from waveui.run.events import RunStarted, TaskInfo, TaskStateChanged
from waveui.run.journal import list_runs, read_events
from waveui.run.state import replay

BRANCH = "waveui/edits"


def task(task_id: str, requires: str = "", command: str = "") -> str:
    rows = [f'[[task]]\nid = "{task_id}"\naffected_files = ["out/{task_id}.txt"]']
    if requires:
        rows.append(f'requires = ["{requires}"]')
    if command:
        rows.append(f"command = '{command}'")
    return "\n".join(rows) + "\n"


def epic(ledger: Path, *tasks: str, extra: str = "", sleep: float = 0.3) -> str:
    text = LEDGER_EPIC.format(name="edits", sleep=sleep, ledger=ledger, tasks="\n".join(tasks))
    return text.replace("[epic]\n", "[epic]\n" + extra, 1)


def repo_with(tmp_path: Path, text: str) -> Path:
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n", "out/.keep": ""})
    write_epic(repo, text)
    return repo


def task_state(repo: Path, task_id: str) -> str:
    runs = list_runs(repo)
    task = replay(read_events(runs[-1] / "events.jsonl")).tasks.get(task_id) if runs else None
    return task.state if task else ""


def on_branch(repo: Path) -> set[str]:
    return {name for name in tree_files(repo, BRANCH) if name.startswith("out/t") or name.startswith("out/s")}


def test_removed_added_and_changed_tasks_after_kill_9(tmp_path):
    ledger = tmp_path / "ledger"
    chain = [task("t0"), task("t1"), task("t2", "t0"), task("t3", "t1"), task("t4", "t2"), task("t5", "t3")]
    repo = repo_with(tmp_path, epic(ledger, *chain, sleep=1.0))
    process = start(repo)
    assert wait_for(lambda: done_count(repo) >= 2, timeout=60)  # t0 and t1 merged; t4, t5 not started
    kill9(process)
    state = final_state(repo)
    assert {state.tasks["t0"].state, state.tasks["t1"].state} == {"done"}
    changed = 'echo "$WAVEUI_TASK_ID" > "out/$WAVEUI_TASK_ID.txt"; echo "$WAVEUI_TASK_ID-new" >> "{}"'.format(ledger)
    edited = [
        task("t0", command=changed),  # merged already: stays done
        task("t1"), task("t2", "t0"), task("t3", "t1"),
        task("t4", "t2", command=changed),  # not run yet: runs with its new command
        # t5 removed; t6 added, after t3
        task("t6", "t3"),
    ]
    write_epic(repo, epic(ledger, *edited, sleep=1.0))  # the same default command: only t0 and t4 changed
    out = run_until_ok(repo)
    assert "removed t5 (dropped from the run)" in out
    assert "added t6" in out
    assert "changed t0 (already merged: stays done)" in out
    counts = ledger_counts(ledger)
    assert "t5" not in counts and "t0-new" not in counts
    assert counts["t0"] == counts["t1"] == counts["t6"] == 1 and counts["t4-new"] == 1 and "t4" not in counts
    assert on_branch(repo) == {"out/t0.txt", "out/t1.txt", "out/t2.txt", "out/t3.txt", "out/t4.txt", "out/t6.txt"}
    state = final_state(repo)
    assert sorted(state.tasks) == ["t0", "t1", "t2", "t3", "t4", "t6"] and state.ok
    # the next reader (watch, status, another resume) sees the same tasks
    assert sorted(replay(read_events(journal(repo))).tasks) == sorted(state.tasks)


def test_a_removed_task_still_running_is_stopped_and_not_merged(tmp_path):
    ledger = tmp_path / "ledger"
    slow = 'sleep 30; echo slow > "out/slow.txt"; echo slow >> "{}"'.format(ledger)
    repo = repo_with(tmp_path, epic(ledger, task("t0"), task("slow", command=slow), task("t1", "t0")))
    process = start(repo)
    assert wait_for(lambda: task_state(repo, "slow") == "running" and done_count(repo) >= 1,
                    timeout=60)
    pid = final_state(repo).tasks["slow"].pid
    kill9(process)
    assert not gone(pid)  # its supervisor keeps it going without waveui
    write_epic(repo, epic(ledger, task("t0"), task("t1", "t0")))
    out = run_until_ok(repo)
    assert "removed slow" in out
    assert wait_for(lambda: gone(pid), timeout=20)
    assert "slow" not in ledger_counts(ledger)
    assert on_branch(repo) == {"out/t0.txt", "out/t1.txt"}
    assert "slow" not in final_state(repo).tasks


def test_a_changed_task_still_running_is_stopped_and_run_with_its_new_definition(tmp_path):
    ledger = tmp_path / "ledger"
    old = 'sleep 30; echo old > "out/$WAVEUI_TASK_ID.txt"; echo old >> "{}"'.format(ledger)
    new = 'echo new > "out/$WAVEUI_TASK_ID.txt"; echo new >> "{}"'.format(ledger)
    repo = repo_with(tmp_path, epic(ledger, task("t0"), task("t1", command=old)))
    process = start(repo)
    assert wait_for(lambda: task_state(repo, "t1") == "running", timeout=60)
    pid = final_state(repo).tasks["t1"].pid
    kill9(process)
    write_epic(repo, epic(ledger, task("t0"), task("t1", command=new)))
    run_until_ok(repo)
    assert wait_for(lambda: gone(pid), timeout=20)
    assert ledger_counts(ledger) == {"t0": 1, "new": 1}
    assert git(repo, "show", f"{BRANCH}:out/t1.txt") == "new"


def refused_line(repo: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "waveui", "run", "--headless"], cwd=repo, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("waveui: error: ") and "--fresh" in lines[0], result.stderr
    return lines[0]


def interrupted(tmp_path: Path, ledger: Path, extra: str = "") -> Path:
    repo = repo_with(tmp_path, epic(ledger, task("t0"), task("t1", "t0"), extra=extra, sleep=1.0))
    process = start(repo)
    assert wait_for(lambda: done_count(repo) >= 1, timeout=60)
    kill9(process)
    return repo


def test_edits_a_resume_cannot_follow_are_refused_in_one_line_and_nothing_is_written(tmp_path):
    ledger = tmp_path / "ledger"
    repo = interrupted(tmp_path / "a", ledger)
    before = journal(repo).read_bytes()
    write_epic(repo, epic(ledger, task("t0"), task("t1", "t0"), extra='isolation = "none"\n'))
    assert "isolation changed from 'worktree' to 'none'" in refused_line(repo)
    write_epic(repo, epic(ledger, task("t0"), task("t1", "t0"), extra='base = "elsewhere"\n'))
    subprocess.run(["git", "-C", str(repo), "branch", "elsewhere", "main"], check=True)
    assert "base changed from '(the current branch)' to 'elsewhere'" in refused_line(repo)
    assert journal(repo).read_bytes() == before
    # put the file back: the run goes on
    write_epic(repo, epic(ledger, task("t0"), task("t1", "t0"), sleep=0.1))
    run_until_ok(repo)
    assert on_branch(repo) == {"out/t0.txt", "out/t1.txt"}


def test_the_reducer_takes_the_new_task_list_on_resume_and_keeps_what_was_done():
    def info(task_id: str, print_: str = "x") -> TaskInfo:
        return TaskInfo(task_id, "", [], 1.0, [], 0, 0, False, 0, print_)

    events = [
        RunStarted(t=1.0, run_id="r", epic="e", tasks=[info("a"), info("b")]),
        TaskStateChanged(t=2.0, task="a", state="running", attempt=1),
        TaskStateChanged(t=3.0, task="a", state="done", attempt=1, commit="c1"),
        TaskStateChanged(t=3.0, task="b", state="running", attempt=1),
        RunStarted(t=9.0, run_id="r", epic="e", tasks=[info("a"), info("c")], resumed=True),
    ]
    state = replay(events)
    assert sorted(state.tasks) == ["a", "c"]
    assert state.tasks["a"].state == "done" and state.tasks["a"].commit == "c1"
    assert state.tasks["c"].state == "pending"
    assert state.clocked == 0  # b's clock stopped with it, not left counting
