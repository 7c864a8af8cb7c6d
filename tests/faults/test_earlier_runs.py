"""Worktrees of an earlier run are never reused while its tasks still run: `--fresh`, another epic file."""

from __future__ import annotations

import psutil

from tests.faults.helpers import finish, git, kill9, make_repo, run, start, wait_for
from waveui.run.events import TaskStateChanged
from waveui.run.journal import list_runs, read_events

LONG = """
[epic]
name = "{name}"
max_parallel = 1
adaptive = false
command = 'echo "$WAVEUI_TASK_ID" >> {ledger}; sleep {sleep}; echo "$WAVEUI_TASK_ID" > "$WAVEUI_TASK_ID.txt"'
[[task]]
id = "{task}"
"""


def marked_sleepers(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info.get("cmdline") or []):
            found.append(proc)
    return found


def worktrees_used(repo, epic_name: str) -> set[str]:
    used = set()
    for run_dir in list_runs(repo):
        events = read_events(run_dir / "events.jsonl")
        if not any(getattr(e, "epic", "") == epic_name for e in events):
            continue
        used |= {e.worktree for e in events if isinstance(e, TaskStateChanged) and e.worktree}
    return used


def test_another_epic_never_takes_a_worktree_whose_task_still_runs(tmp_path):
    ledger = tmp_path / "ledger"
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n"})
    (repo / "waveui.toml").write_text(LONG.format(name="first", ledger=ledger, sleep="4.321", task="slow"))
    (repo / "other.toml").write_text(LONG.format(name="second", ledger=ledger, sleep="0.1", task="quick"))
    process = start(repo)
    assert wait_for(lambda: ledger.exists(), timeout=60)
    kill9(process)  # the slow task goes on under its supervisor
    code, out = run(repo, "-f", "other.toml")
    assert code == 0, out
    assert "left alone" in out
    assert not worktrees_used(repo, "first") & worktrees_used(repo, "second")
    code, out = run(repo)  # the first epic adopts its task: it ran once
    assert code == 0, out
    assert ledger.read_text().split().count("slow") == 1
    assert git(repo, "show", "waveui/first:slow.txt") == "slow"


def test_fresh_stops_the_tasks_the_earlier_run_left_and_keeps_their_work(tmp_path):
    ledger = tmp_path / "ledger"
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n"})
    (repo / "waveui.toml").write_text(LONG.format(name="again", ledger=ledger, sleep="7.654", task="t1")
                                      .replace("sleep 7.654;", 'echo partial > partial.txt; sleep 7.654;'))
    process = start(repo)
    assert wait_for(lambda: marked_sleepers("7.654"), timeout=60)
    kill9(process)
    fresh = start(repo, "--fresh")
    assert wait_for(lambda: not marked_sleepers("7.654"), timeout=30)  # stopped, not left to finish
    out = finish(fresh)
    assert "stopped t1, left running by the earlier run" in out, out
    assert fresh.returncode == 0, out
    # What the stopped attempt had written is kept under refs/waveui/ (its slot was reused).
    kept = git(repo, "for-each-ref", "--format=%(refname)", "refs/waveui/again/")
    assert any(git(repo, "ls-tree", "--name-only", ref, "partial.txt") for ref in kept.split()), kept


def test_work_a_reused_slot_kept_for_a_finished_task_is_merged_not_rerun(tmp_path):
    """A task finishes while no waveui follows it; another epic's run reuses its slot first; the resume merges it."""
    ledger = tmp_path / "ledger"
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n"})
    (repo / "waveui.toml").write_text(LONG.format(name="first", ledger=ledger, sleep="1.5", task="slow")
                                      + '[[task]]\nid = "after"\nrequires = ["slow"]\n')
    (repo / "other.toml").write_text(LONG.format(name="second", ledger=ledger, sleep="0.1", task="quick"))
    process = start(repo)
    assert wait_for(lambda: ledger.exists(), timeout=60)
    kill9(process)
    assert wait_for(lambda: any((repo / ".waveui" / "runs").glob("*/logs/slow.running.status")), timeout=60)
    code, out = run(repo, "-f", "other.toml")  # takes slot-0, keeping what the finished task left there
    assert code == 0, out
    code, out = run(repo)
    assert code == 0, out
    assert ledger.read_text().split().count("slow") == 1  # merged from what was kept, not run again
    assert git(repo, "show", "waveui/first:slow.txt") == "slow"
    assert git(repo, "show", "waveui/first:after.txt") == "after"
