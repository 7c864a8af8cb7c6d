"""The journal is believed only as far as git agrees: forged, torn and lost journals against a real `waveui run`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.helpers import (
    done_count,
    final_state,
    git,
    journal,
    kill9,
    ledger_counts,
    ledger_repo,
    make_repo,
    run,
    run_until_ok,
    start,
    tree_files,
    wait_for,
    write_epic,
)
from waveui.run.journal import list_runs, read_events
from waveui.run.state import replay

TASKS = 6
BRANCH = "waveui/faults"
EVERY_TASK_ONCE = {f"t{i}": 1 for i in range(TASKS)}


@pytest.fixture(scope="module")
def clean_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    repo = ledger_repo(root / "repo", root / "ledger", TASKS)
    code, out = run(repo)
    assert code == 0, out
    return tree_files(repo, BRANCH)


def merged_by_trailer(repo: Path) -> set[str]:
    """Tasks git shows merged on the integration branch, read from the merges' trailers."""
    out = git(repo, "log", "--first-parent", "--format=%(trailers:key=Waveui-Task,valueonly)", BRANCH)
    return {line.strip() for line in out.splitlines() if line.strip()}


def kill_after_done(repo: Path, done: int) -> None:
    process = start(repo)
    assert wait_for(lambda: done_count(repo) >= done, timeout=60)
    kill9(process)


def test_forged_done_lines_are_rerun_and_their_work_lands_on_the_branch(tmp_path, clean_tree):
    ledger = tmp_path / "ledger"
    repo = ledger_repo(tmp_path / "repo", ledger, TASKS, sleep=1.0)
    kill_after_done(repo, 1)  # t0 or t1 merged; t4 and t5 need two more rounds, so they have not started
    state = final_state(repo)
    real = next(t.commit for t in state.tasks.values() if t.state == "done")
    with open(journal(repo), "a") as f:
        # one names a commit that does not exist, one borrows the merge commit of another task
        f.write(json.dumps({"type": "task_state", "t": 1.0, "task": "t4", "state": "done", "commit": "ab" * 20}) + "\n")
        f.write(json.dumps({"type": "task_state", "t": 1.0, "task": "t5", "state": "done", "commit": real}) + "\n")
    out = run_until_ok(repo)
    assert "t4 was recorded done, but its merge commit abababababab is not on waveui/faults" in out
    assert "t5 was recorded done" in out
    assert ledger_counts(ledger) == EVERY_TASK_ONCE
    assert tree_files(repo, BRANCH) == clean_tree
    assert merged_by_trailer(repo) == set(EVERY_TASK_ONCE)


def test_a_line_torn_in_the_middle_is_reported_and_no_work_is_done_twice(tmp_path, clean_tree):
    ledger = tmp_path / "ledger"
    repo = ledger_repo(tmp_path / "repo", ledger, TASKS)
    kill_after_done(repo, 2)
    path = journal(repo)
    lines = path.read_text().split("\n")
    # tear the first "done" and the first "merging" line: their tasks must not be merged twice
    torn = [i for i, line in enumerate(lines) if '"state":"done"' in line][:1]
    torn += [i for i, line in enumerate(lines) if '"state":"merging"' in line][:1]
    for i in torn:
        lines[i] = lines[i][: len(lines[i]) // 2]
    lines.insert(3, "not json at all")
    path.write_text("\n".join(lines))
    out = run_until_ok(repo)
    path = path.relative_to(repo)
    for i in torn:
        assert f"{path}:{i + 2 if i >= 3 else i + 1}: unreadable journal line ignored" in out
    assert f"{path}:4: unreadable journal line ignored" in out
    assert ledger_counts(ledger) == EVERY_TASK_ONCE
    assert tree_files(repo, BRANCH) == clean_tree
    # status shows the notices too, from the journal
    status = subprocess.run([sys.executable, "-m", "waveui", "status", "--json"], cwd=repo, capture_output=True,
                            text=True)
    assert status.returncode == 0, status.stderr
    notices = [n["message"] for n in json.loads(status.stdout)["notices"]]
    assert f"{path}:4: unreadable journal line ignored" in notices


@pytest.mark.parametrize("deleted", [".waveui/runs", ".waveui"])
def test_a_lost_journal_is_rebuilt_from_the_branch_and_merged_tasks_are_not_rerun(tmp_path, clean_tree, deleted):
    ledger = tmp_path / "ledger"
    repo = ledger_repo(tmp_path / "repo", ledger, TASKS)
    kill_after_done(repo, 2)
    merged = merged_by_trailer(repo)
    assert merged
    # As `rm -rf` does: the supervisors left running may write in it meanwhile (a pid file, a status).
    shutil.rmtree(repo / deleted, ignore_errors=True)
    out = run_until_ok(repo)
    assert f"journal lost: {len(merged)} task" in out
    counts = ledger_counts(ledger)
    assert {task: counts[task] for task in merged} == {task: 1 for task in merged}
    assert set(counts) == set(EVERY_TASK_ONCE)
    assert tree_files(repo, BRANCH) == clean_tree
    state = final_state(repo)
    assert state.ok and {t.state for t in state.tasks.values()} == {"done"}


def refused(repo: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "waveui", "run", "--headless", *args], cwd=repo,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("waveui: error: "), result.stderr
    return lines[0]


def test_a_branch_made_by_hand_without_a_journal_is_refused(tmp_path):
    ledger = tmp_path / "ledger"
    repo = ledger_repo(tmp_path / "repo", ledger, TASKS)
    git(repo, "switch", "-q", "-c", BRANCH)
    (repo / "mine.txt").write_text("work of my own\n")
    git(repo, "add", "mine.txt")
    git(repo, "commit", "-q", "-m", "by hand")
    git(repo, "switch", "-q", "main")
    tip = git(repo, "rev-parse", BRANCH)
    line = refused(repo)
    assert BRANCH in line and "--fresh" in line
    assert not ledger.exists() and not list_runs(repo)
    assert git(repo, "rev-parse", BRANCH) == tip
    # --fresh sets the hand-made branch aside and runs the epic
    code, out = run(repo, "--fresh")
    assert code == 0, out
    assert ledger_counts(ledger) == EVERY_TASK_ONCE
    kept = [b for b in git(repo, "branch", "--format=%(refname:short)").split() if b.startswith(BRANCH + "@_")]
    assert len(kept) == 1 and git(repo, "rev-parse", kept[0]) == tip


def test_an_integration_branch_moved_back_by_the_user_is_refused_until_put_back(tmp_path, clean_tree):
    """Moving waveui/<epic> back drops merged work: a rewrite, refused in one line; put back, the run goes on."""
    ledger = tmp_path / "ledger"
    repo = ledger_repo(tmp_path / "repo", ledger, TASKS, sleep=1.0)  # still running when killed, on a loaded machine
    kill_after_done(repo, 3)
    merged_before = merged_by_trailer(repo)
    left = git(repo, "rev-parse", BRANCH)
    # The user drops the newest merge the journal knows of (a merge may have landed after it, unjournaled,
    # as the run was killed: that one goes too).
    journaled_tip = replay(read_events(journal(repo))).tip
    git(repo, "update-ref", f"refs/heads/{BRANCH}", f"{journaled_tip}^1")
    assert len(merged_before - merged_by_trailer(repo)) >= 1
    refused = subprocess.run([sys.executable, "-m", "waveui", "run", "--headless"], cwd=repo, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2 and "was rewritten since the last run" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    git(repo, "update-ref", f"refs/heads/{BRANCH}", left)  # as the message says
    run_until_ok(repo)
    assert all(count == 1 for count in ledger_counts(ledger).values())  # nothing done twice
    assert tree_files(repo, BRANCH) == clean_tree


def test_an_unreadable_line_about_a_task_done_without_git_reruns_it(tmp_path):
    ledger = tmp_path / "ledger"
    repo = make_repo(tmp_path / "repo")
    write_epic(repo, f"""
        [epic]
        name = "plain"
        isolation = "none"
        max_parallel = 1
        command = 'echo "$WAVEUI_TASK_ID" >> "{ledger}"'

        [[task]]
        id = "a"

        [[task]]
        id = "b"
        requires = ["a"]
        command = 'sleep 60'
    """)
    process = start(repo)
    assert wait_for(lambda: done_count(repo) >= 1, timeout=60)
    kill9(process)
    path = journal(repo)
    with open(path, "a") as f:
        f.write('{"t":1.0,"task":"a","state":"pend\n')  # torn, but the task it was about is legible
    write_epic(repo, (repo / "waveui.toml").read_text().replace("sleep 60", "true"))
    out = run_until_ok(repo)
    assert "unreadable journal line ignored" in out
    assert ledger_counts(ledger) == {"a": 2}
    events = read_events(path)
    assert any(getattr(e, "reason", "") == "rerun: a journal line about it could not be read" for e in events)
