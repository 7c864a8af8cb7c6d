"""Fault injection against a real `waveui run`: crashes, signals, floods, stale locks, full disks; nothing lost."""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.helpers import (
    PeakRss,
    done_count,
    final_state,
    finish,
    gone,
    git,
    journal,
    kill9,
    kill_cycles,
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
from waveui.run.journal import list_runs

TASKS = 6
BRANCH = "waveui/faults"


@pytest.fixture(scope="module")
def clean_tree(tmp_path_factory):
    """The integration tree of the ledger epic run once without faults: what every crashed run must end with."""
    root = tmp_path_factory.mktemp("clean")
    ledger = root / "ledger"
    repo = ledger_repo(root / "repo", ledger, TASKS)
    code, out = run(repo)
    assert code == 0, out
    assert ledger_counts(ledger) == {f"t{i}": 1 for i in range(TASKS)}
    return tree_files(repo, BRANCH)


def assert_nothing_lost(repo: Path, ledger: Path, clean_tree: dict) -> None:
    state = final_state(repo)
    assert state.ok and {t.state for t in state.tasks.values()} == {"done"}
    assert tree_files(repo, BRANCH) == clean_tree
    # every task's command ran to completion exactly once, crashes or not
    assert ledger_counts(ledger) == {f"t{i}": 1 for i in range(TASKS)}


# ---------------------------------------------------------------- 1. kill -9 at random moments


def test_kill_9_at_random_moments_then_run_loses_nothing(tmp_path, clean_tree):
    ledger = tmp_path / "ledger"
    repo = ledger_repo(tmp_path / "repo", ledger, TASKS)
    kills = kill_cycles(repo, cycles=4, rng=random.Random(7), max_delay=1.5)
    assert kills >= 1
    run_until_ok(repo)
    assert_nothing_lost(repo, ledger, clean_tree)


# ---------------------------------------------------------------- 11. a torn journal line


def test_truncated_last_journal_line_after_kill_9_resumes(tmp_path, clean_tree):
    ledger = tmp_path / "ledger"
    repo = ledger_repo(tmp_path / "repo", ledger, TASKS)
    process = start(repo)
    assert wait_for(lambda: done_count(repo) >= 2, timeout=60)
    kill9(process)
    with open(journal(repo), "a") as f:
        f.write('{"type": "task_state", "t": 17000')  # half a line, as a crash mid-write leaves
    out = run_until_ok(repo)
    assert "resuming" in out
    assert_nothing_lost(repo, ledger, clean_tree)


# ---------------------------------------------------------------- 10. disk full


def test_disk_full_fails_clearly_then_resumes_with_nothing_lost(tmp_path, clean_tree):
    ledger = tmp_path / "ledger"
    repo = ledger_repo(tmp_path / "repo", ledger, TASKS)

    def small_disk():
        # Ignored SIGXFSZ makes a write past the limit fail with EFBIG instead of killing the writer.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4_000, resource.RLIM_INFINITY))

    code, out = run(repo, preexec_fn=small_disk)
    assert code != 0, out
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, out
    # with room again the run resumes and ends as a clean run would
    run_until_ok(repo)
    assert_nothing_lost(repo, ledger, clean_tree)


# ---------------------------------------------------------------- 2. a task killed by a signal


def test_a_task_killed_by_a_signal_fails_and_the_others_go_on(tmp_path):
    repo = make_repo(tmp_path / "repo")
    write_epic(repo, """
        [epic]
        name = "sig"
        [[task]]
        id = "dies"
        command = 'echo partial > dies.txt; kill -9 $$'
        [[task]]
        id = "lives"
        command = 'echo ok > lives.txt'
        [[task]]
        id = "after-lives"
        requires = ["lives"]
        command = 'cat lives.txt > after.txt'
    """)
    code, out = run(repo)
    assert code != 0
    tasks = final_state(repo).tasks
    assert tasks["dies"].state == "failed" and "signal" in tasks["dies"].reason, tasks["dies"].reason
    assert tasks["lives"].state == "done" and tasks["after-lives"].state == "done"
    assert git(repo, "show", "waveui/sig:after.txt") == "ok"


# ---------------------------------------------------------------- 3. children left behind


def test_children_a_task_leaves_behind_are_killed(tmp_path):
    repo = make_repo(tmp_path / "repo")
    pidfile = tmp_path / "pids"
    write_epic(repo, f"""
        [epic]
        name = "orphans"
        [[task]]
        id = "forks"
        command = 'sleep 300 & echo $! >> {pidfile}; (trap "" TERM; sleep 300) & echo $! >> {pidfile}; echo x > x.txt; exit 0'
    """)
    code, out = run(repo)
    assert code == 0, out
    pids = list(map(int, pidfile.read_text().split()))
    assert len(pids) == 2
    assert wait_for(lambda: all(gone(pid) for pid in pids), timeout=5)


# ---------------------------------------------------------------- 4. ignoring SIGTERM past the timeout


def test_a_task_ignoring_sigterm_is_killed_after_its_timeout_with_its_children(tmp_path):
    repo = make_repo(tmp_path / "repo")
    pids = tmp_path / "pids"
    write_epic(repo, f"""
        [epic]
        name = "stubborn"
        [[task]]
        id = "hangs"
        timeout = "1s"
        command = 'trap "" TERM; echo $$ >> {pids}; sh -c "trap \\"\\" TERM; while true; do sleep 0.1; done" & echo $! >> {pids}; while true; do sleep 0.1; done'
        [[task]]
        id = "fine"
        command = 'echo ok > fine.txt'
    """)
    began = time.monotonic()
    code, out = run(repo)
    assert code != 0
    assert time.monotonic() - began < 30  # SIGKILL came after the grace period, not never
    tasks = final_state(repo).tasks
    assert tasks["hangs"].state == "failed" and "timed out" in tasks["hangs"].reason
    assert tasks["fine"].state == "done"
    found = list(map(int, pids.read_text().split()))
    assert len(found) == 2
    assert wait_for(lambda: all(gone(pid) for pid in found), timeout=5)


# ---------------------------------------------------------------- 5. a flood of output


def test_a_100_mb_flood_is_logged_with_bounded_memory_and_later_progress_is_read(tmp_path):
    repo = make_repo(tmp_path / "repo")
    write_epic(repo, r"""
        [epic]
        name = "flood"
        [[task]]
        id = "loud"
        command = 'head -c 100000000 /dev/zero | tr "\0" x | fold -w 100; echo; echo "::waveui progress=77 cost=0.5"; echo ok > loud.txt'
    """)
    process = start(repo)
    rss = PeakRss(process.pid)
    out = finish(process)
    peak = rss.stop()
    assert process.returncode == 0, out
    task = final_state(repo).tasks["loud"]
    assert task.state == "done" and task.cost == 0.5
    log = list_runs(repo)[-1] / "logs" / "loud.log"
    assert log.stat().st_size >= 100_000_000
    assert peak < 300 * 2**20, f"waveui peaked at {peak / 2**20:.0f} MB"


# ---------------------------------------------------------------- 6. stale index.lock files


def test_stale_index_locks_in_the_repo_and_in_a_pooled_worktree_do_not_stop_a_run(tmp_path):
    repo = make_repo(tmp_path / "repo")
    write_epic(repo, """
        [epic]
        name = "first"
        [[task]]
        id = "a"
        command = 'echo a > a.txt'
    """)
    code, out = run(repo)
    assert code == 0, out
    # a dead git process's lock in the pooled worktree, and the user's own lock in the main repo
    worktree_gitdirs = list((repo / ".git" / "worktrees").iterdir())
    assert worktree_gitdirs
    old = time.time() - 3600
    for gitdir in worktree_gitdirs:
        (gitdir / "index.lock").write_text("")
        os.utime(gitdir / "index.lock", (old, old))
    user_lock = repo / ".git" / "index.lock"
    user_lock.write_text("")
    write_epic(repo, """
        [epic]
        name = "second"
        [[task]]
        id = "b"
        command = 'echo b > b.txt'
        [[task]]
        id = "c"
        requires = ["b"]
        command = 'cat b.txt > c.txt'
    """)
    code, out = run(repo)
    assert code == 0, out
    assert git(repo, "show", "waveui/second:c.txt") == "b"
    assert user_lock.exists()  # waveui never touches the user's index, or the lock a git of theirs may hold


# ---------------------------------------------------------------- 7. a pooled worktree deleted or dirty


@pytest.mark.parametrize("damage", ["deleted", "dirty"])
def test_a_damaged_pooled_worktree_between_runs_is_repaired(tmp_path, damage):
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n", "src/app.txt": "v1\n"})
    epic = """
        [epic]
        name = "pool"
        max_parallel = 2
        [[task]]
        id = "a"
        command = 'echo a > a.txt'
        [[task]]
        id = "b"
        command = 'echo b > b.txt'
    """
    write_epic(repo, epic)
    code, out = run(repo)
    assert code == 0, out
    clean = tree_files(repo, "waveui/pool")
    slots = sorted((repo / ".waveui" / "worktrees").iterdir())
    assert slots
    for slot in slots:
        if damage == "deleted":
            subprocess.run(["rm", "-rf", str(slot)], check=True)
        else:
            (slot / "stray.txt").write_text("left over\n")
            (slot / "src" / "app.txt").write_text("modified\n")
    code, out = run(repo, "--fresh")
    assert code == 0, out
    assert tree_files(repo, "waveui/pool") == clean  # neither the stray file nor the edit leaked in


# ---------------------------------------------------------------- 8. the base branch moves


def test_the_base_branch_moving_during_a_run(tmp_path):
    repo = make_repo(tmp_path / "repo")
    started = tmp_path / "started"
    write_epic(repo, f"""
        [epic]
        name = "moving"
        base = "main"
        [[task]]
        id = "slow"
        command = 'touch {started}; sleep 1; echo slow > slow.txt'
        [[task]]
        id = "next"
        requires = ["slow"]
        command = 'cat slow.txt > next.txt'
    """)
    old_base = git(repo, "rev-parse", "main")
    process = start(repo)
    assert wait_for(started.exists, timeout=30)
    (repo / "moved.txt").write_text("user work\n")
    git(repo, "add", "moved.txt")
    git(repo, "commit", "-q", "-m", "user commit while waveui runs")
    new_main = git(repo, "rev-parse", "main")
    out = finish(process)
    assert process.returncode == 0, out
    assert git(repo, "rev-parse", "main") == new_main
    assert git(repo, "merge-base", "--is-ancestor", old_base, "waveui/moving") == ""
    files = tree_files(repo, "waveui/moving")
    assert "next.txt" in files and "moved.txt" not in files


# ---------------------------------------------------------------- 9. the user's checkout


def _checkout_snapshot(repo: Path) -> dict:
    files = {}
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo)
        if rel.parts[0] in (".git", ".waveui") or not path.is_file():
            continue
        files[str(rel)] = path.read_bytes()
    return {
        "status": git(repo, "status", "--porcelain", "--untracked-files=all"),
        "head": git(repo, "rev-parse", "HEAD"),
        "branch": git(repo, "branch", "--show-current"),
        "index": (repo / ".git" / "index").read_bytes(),
        "files": files,
    }


def test_the_users_dirty_checkout_on_another_branch_is_left_byte_identical(tmp_path):
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n", "src/app.txt": "v1\n"})
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "src" / "app.txt").write_text("edited, not committed\n")
    (repo / "notes.txt").write_text("untracked\n")
    git(repo, "add", "notes.txt")
    (repo / "scratch.txt").write_text("untracked too\n")
    write_epic(repo, """
        [epic]
        name = "polite"
        base = "main"
        [[task]]
        id = "a"
        command = 'echo a > src/app.txt'
        [[task]]
        id = "b"
        requires = ["a"]
        command = 'cat src/app.txt > b.txt'
    """)
    before = _checkout_snapshot(repo)
    code, out = run(repo)
    assert code == 0, out
    assert _checkout_snapshot(repo) == before
    assert git(repo, "show", "waveui/polite:b.txt") == "a"
