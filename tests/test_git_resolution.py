"""Keeping attempts, resuming them, telling work already merged, and resolving conflicts: on real repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.test_merge import git, isolate_git, parents
from waveui.executors.local.runner import run_to_end
from waveui.git.command import GitError, Repository
from waveui.git.merge import Integrator
from waveui.git.resolution import check_resolution, prepare_resolution, remove_resolution
from waveui.git.worktrees import WorktreePool


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    isolate_git(tmp_path, monkeypatch)
    root = tmp_path / "repo"
    git(tmp_path, "init", "-q", "-b", "main", str(root))
    (root / "shared.txt").write_text("one\ntwo\nthree\n")
    (root / "other.txt").write_text("alpha\nbeta\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


@pytest.fixture
def pool(repo) -> WorktreePool:
    return WorktreePool(repo, "ep", None, [], run_setup=run_to_end)


@pytest.fixture
def integ(repo) -> Integrator:
    integrator = Integrator(repo, "ep", "main")
    integrator.ensure_branch()
    return integrator


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def task_commit(pool: WorktreePool, integ: Integrator, task: str, files: dict[str, str]) -> tuple[str, str]:
    """A task's work committed on its branch from the current tip, its worktree released; (start, commit)."""
    start = integ.tip()
    wt = pool.acquire(task, start)
    write(wt.path, files)
    commit = pool.commit(wt, start, f"{task}: work")
    pool.release(wt, 1)
    return start, commit


def on_integration(repo: Path, *commands: list[str]) -> str:
    """Run git commands by hand with the integration branch checked out, as a user would; the new tip."""
    git(repo, "checkout", "-q", "waveui/ep")
    for command in commands:
        git(repo, *command)
    tip = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    return tip


# ---------------------------------------------------------------- attempts


def test_a_failed_attempt_is_kept_under_its_ref_and_named(repo, pool):
    wt = pool.acquire("t1", "main")
    write(wt.path, {"new.txt": "half done\n"})
    released = pool.release(wt, 1)
    assert released.ok and released.ref == "refs/waveui/ep/t1/1"
    assert released.kept == git(repo, "rev-parse", "refs/waveui/ep/t1/1")
    assert git(repo, "show", f"{released.kept}:new.txt") == "half done"


def test_an_attempt_that_changed_nothing_keeps_nothing(repo, pool):
    wt = pool.acquire("t1", "main")
    released = pool.release(wt, 1)
    assert released.ok and released.kept is None and released.ref is None
    assert git(repo, "for-each-ref", "refs/waveui/") == ""


def test_a_committed_attempt_keeps_the_task_commit_itself(repo, pool, integ):
    start = integ.tip()
    wt = pool.acquire("t1", start)
    write(wt.path, {"work.txt": "done\n", ".aider.chat.history.md": "the agent's own notes\n"})
    commit = pool.commit(wt, start, "t1: work", keep_out=(".aider*",))
    released = pool.release(wt, 2)
    # The ref is the commit that is merged, not a snapshot with the agent's files left out of it.
    assert released.kept == commit == git(repo, "rev-parse", "refs/waveui/ep/t1/2")
    assert released.ref == "refs/waveui/ep/t1/2"


def test_a_commit_of_nothing_keeps_nothing(repo, pool, integ):
    start = integ.tip()
    wt = pool.acquire("t1", start)
    assert pool.commit(wt, start, "t1: work") is None
    assert pool.release(wt, 1).kept is None
    assert git(repo, "for-each-ref", "refs/waveui/") == ""


def test_the_task_commit_is_kept_even_when_its_worktree_is_gone(repo, pool, integ):
    start = integ.tip()
    wt = pool.acquire("t1", start)
    write(wt.path, {"work.txt": "done\n"})
    commit = pool.commit(wt, start, "t1: work")
    git(repo, "worktree", "remove", "--force", str(wt.path))
    released = pool.release(wt, 1)
    assert not released.ok
    assert released.kept == commit == git(repo, "rev-parse", "refs/waveui/ep/t1/1")


def test_a_kept_attempt_is_resumed_and_the_new_commit_holds_both(repo, pool, integ):
    start = integ.tip()
    wt = pool.acquire("t1", start)
    write(wt.path, {"first.txt": "from the first try\n"})
    kept = pool.release(wt, 1).kept

    again = pool.acquire("t1", start, resume_from=kept)
    assert git(again.path, "rev-parse", "HEAD") == kept
    assert git(again.path, "symbolic-ref", "--short", "HEAD") == "waveui/ep@t1"
    assert (again.path / "first.txt").read_text() == "from the first try\n"
    write(again.path, {"second.txt": "from the second\n"})
    commit = pool.commit(again, start, "t1: work")
    assert parents(repo, commit) == [kept]
    assert integ.changed_files(start, commit) == ["first.txt", "second.txt"]


def test_resuming_from_a_commit_not_built_on_the_start_is_refused(repo, pool, integ):
    _, older = task_commit(pool, integ, "t1", {"first.txt": "x\n"})
    assert integ.merge("waveui/ep@t1", "merge t1").ok
    with pytest.raises(GitError, match="not built on the start point"):
        pool.acquire("t2", integ.tip(), resume_from=older)


def test_attempt_diff_shows_the_changes_and_says_when_cut(repo, pool, integ):
    start, commit = task_commit(pool, integ, "t1", {"shared.txt": "one\nTWO\nthree\n"})
    diff = integ.attempt_diff(start, commit)
    assert "-two\n+TWO\n" in diff and "goes on" not in diff

    start, commit = task_commit(pool, integ, "t2", {"big.txt": "".join(f"line {i}\n" for i in range(5000))})
    cut = integ.attempt_diff(start, commit, limit=1000)
    assert len(cut) < 1200 and "+line 0\n" in cut and "+line 4999" not in cut
    assert cut.endswith("gives all of it]\n") and f"git diff {start[:12]} {commit[:12]}" in cut


# ------------------------------------------------------- already applied


def test_work_merged_by_hand_is_already_applied(repo, pool, integ):
    start, commit = task_commit(pool, integ, "t1", {"shared.txt": "one\nTWO\nthree\n"})
    assert not integ.already_applied(commit, start)
    on_integration(repo, ["merge", "-q", "--no-ff", "-m", "by hand", commit])
    assert integ.already_applied(commit, start)


def test_squashed_work_is_already_applied(repo, pool, integ):
    start, commit = task_commit(pool, integ, "t1", {"shared.txt": "one\nTWO\nthree\n", "new.txt": "n\n"})
    on_integration(repo, ["merge", "-q", "--squash", commit], ["commit", "-q", "-m", "squashed"],
                   ["mv", "other.txt", "moved.txt"], ["commit", "-q", "-m", "and more since"])
    assert integ.already_applied(commit, start)


def test_cherry_picked_work_is_already_applied(repo, pool, integ):
    start, commit = task_commit(pool, integ, "t1", {"shared.txt": "one\nTWO\nthree\n"})
    # Onto a tip moved since (else git may rebuild the very same commit).
    on_integration(repo, ["mv", "other.txt", "moved.txt"], ["commit", "-q", "-m", "elsewhere"], ["cherry-pick", commit])
    assert integ.already_applied(commit, start)


def test_partly_merged_work_is_not_already_applied(repo, pool, integ):
    start, commit = task_commit(pool, integ, "t1", {"shared.txt": "one\nTWO\nthree\n", "new.txt": "n\n"})
    on_integration(repo, ["checkout", commit, "--", "new.txt"], ["commit", "-q", "-m", "half of it"])
    assert not integ.already_applied(commit, start)


# ---------------------------------------------------------------- conflicts


@pytest.fixture
def conflict(repo, pool, integ) -> tuple[Repository, str, str]:
    """t1 and t2 edited the same line; t1 is merged: (repository, integration tip, t2's commit)."""
    start = integ.tip()
    for task, line in (("t1", "two by t1"), ("t2", "two by t2")):
        wt = pool.acquire(task, start)
        write(wt.path, {"shared.txt": f"one\n{line}\nthree\n"})
        pool.commit(wt, start, f"{task}: work")
        pool.release(wt, 1)
    assert integ.merge("waveui/ep@t1", "merge t1").ok
    assert not integ.merge("waveui/ep@t2", "merge t2").ok
    return integ.repository, integ.tip(), git(repo, "rev-parse", "waveui/ep@t2")


def resolver(path: Path, script: str) -> None:
    subprocess.run(["sh", "-c", script], cwd=path, check=True, capture_output=True)


def test_the_merge_is_set_up_with_its_markers_away_from_the_users_checkout(repo, conflict):
    repository, tip, commit = conflict
    resolution = prepare_resolution(repository, "ep", "t2", tip, commit)
    assert resolution.path == repo.resolve() / ".waveui" / "worktrees" / "resolve-t2"
    assert resolution.conflicted == ["shared.txt"] and resolution.branch == "waveui/ep@t2@resolve"
    assert "<<<<<<< " in (resolution.path / "shared.txt").read_text()
    assert git(resolution.path, "rev-parse", "HEAD", "MERGE_HEAD").split() == [tip, commit]
    assert git(repo, "status", "--porcelain") == "" and git(repo, "symbolic-ref", "--short", "HEAD") == "main"
    # Set up again (a waveui that stopped meanwhile): the same merge, with what the resolver did so far.
    (resolution.path / "notes.txt").write_text("resolver's notes\n")
    assert prepare_resolution(repository, "ep", "t2", tip, commit) == resolution
    assert (resolution.path / "notes.txt").exists()


def test_resolved_by_a_command_then_published(repo, integ, conflict):
    repository, tip, commit = conflict
    resolution = prepare_resolution(repository, "ep", "t2", tip, commit)
    resolver(resolution.path, "printf 'one\\ntwo by both\\nthree\\n' > shared.txt && git add shared.txt")
    merged, how = check_resolution(repository, resolution, "merge t2 (resolved)")
    assert how == "resolved, committed by waveui" and parents(repo, merged) == [tip, commit]
    assert integ.merge_resolved(merged, "merge t2").ok
    assert integ.tip() == merged and git(repo, "show", "waveui/ep:shared.txt") == "one\ntwo by both\nthree"
    remove_resolution(repository, resolution)
    assert not resolution.path.exists() and git(repo, "rev-parse", "waveui/ep@t2@resolve") == merged


def test_an_equals_line_alone_is_no_marker(repo, conflict):
    repository, tip, commit = conflict
    resolution = prepare_resolution(repository, "ep", "t2", tip, commit)
    resolver(resolution.path, "printf 'Title\\n=======\\ntwo\\n' > shared.txt && git add -A")
    assert check_resolution(repository, resolution, "merge t2")[0] is not None


def test_files_left_unmerged_are_refused(repo, conflict):
    repository, tip, commit = conflict
    resolution = prepare_resolution(repository, "ep", "t2", tip, commit)
    resolver(resolution.path, "printf 'one\\ntwo\\nthree\\n' > shared.txt")  # edited, never marked resolved
    assert check_resolution(repository, resolution, "merge t2") == (
        None, "still unmerged (mark each resolved with git add): shared.txt")


def test_markers_left_in_are_refused(repo, conflict):
    repository, tip, commit = conflict
    resolution = prepare_resolution(repository, "ep", "t2", tip, commit)
    resolver(resolution.path, "git add -A")
    assert check_resolution(repository, resolution, "merge t2") == (None, "conflict markers are left in shared.txt")
    assert git(resolution.path, "rev-parse", "HEAD") == tip  # nothing committed


def test_a_merge_committed_by_hand_is_taken(repo, integ, conflict):
    repository, tip, commit = conflict
    resolution = prepare_resolution(repository, "ep", "t2", tip, commit)
    resolver(resolution.path, "echo 'one two three' > shared.txt && git add -A && git commit -q -m 'by hand'")
    merged, how = check_resolution(repository, resolution, "unused")
    assert how == "committed by the resolver" and merged == git(resolution.path, "rev-parse", "HEAD")
    assert integ.merge_resolved(merged, "merge t2").commit == merged == integ.tip()


def test_a_commit_by_hand_with_markers_or_without_the_task_is_refused(repo, conflict):
    repository, tip, commit = conflict
    resolution = prepare_resolution(repository, "ep", "t2", tip, commit)
    resolver(resolution.path, "git commit -q -a -m 'markers and all'")
    merged, why = check_resolution(repository, resolution, "unused")
    assert merged is None and why == "the committed merge still has conflict markers in shared.txt"

    resolver(resolution.path, f"git reset -q --hard {tip} && echo mine > mine.txt && git add -A && git commit -q -m x")
    merged, why = check_resolution(repository, resolution, "unused")
    assert merged is None and "does not contain the task's commit" in why


def test_an_abandoned_merge_is_refused(repo, conflict):
    repository, tip, commit = conflict
    resolution = prepare_resolution(repository, "ep", "t2", tip, commit)
    resolver(resolution.path, "git merge --abort")
    merged, why = check_resolution(repository, resolution, "merge t2")
    assert merged is None and "no merge of the task's commit" in why


def test_a_tip_moved_meanwhile_is_merged_onto(repo, pool, integ, conflict):
    repository, tip, commit = conflict
    resolution = prepare_resolution(repository, "ep", "t2", tip, commit)
    task_commit(pool, integ, "t3", {"other.txt": "alpha\nbeta by t3\n"})
    assert integ.merge("waveui/ep@t3", "merge t3").ok
    moved = integ.tip()
    resolver(resolution.path, "printf 'one\\ntwo by both\\nthree\\n' > shared.txt && git add -A")
    merged, _ = check_resolution(repository, resolution, "merge t2 (resolved)")
    result = integ.merge_resolved(merged, "merge t2")
    assert result.ok and parents(repo, result.commit) == [moved, merged]
    assert git(repo, "show", "waveui/ep:other.txt") == "alpha\nbeta by t3"
    assert git(repo, "show", "waveui/ep:shared.txt") == "one\ntwo by both\nthree"


def test_a_tip_moved_meanwhile_into_the_same_lines_conflicts_again(repo, pool, integ, conflict):
    repository, tip, commit = conflict
    resolution = prepare_resolution(repository, "ep", "t2", tip, commit)
    task_commit(pool, integ, "t3", {"shared.txt": "one\ntwo by t3\nthree\n"})
    assert integ.merge("waveui/ep@t3", "merge t3").ok
    moved = integ.tip()
    resolver(resolution.path, "printf 'one\\ntwo by both\\nthree\\n' > shared.txt && git add -A")
    merged, _ = check_resolution(repository, resolution, "merge t2 (resolved)")
    result = integ.merge_resolved(merged, "merge t2")
    assert not result.ok and result.conflicted == ["shared.txt"] and integ.tip() == moved


def test_an_earlier_resolution_in_the_way_is_set_aside_not_lost(repo, pool, integ, conflict):
    repository, tip, commit = conflict
    stale = prepare_resolution(repository, "ep", "t2", tip, commit)
    resolver(stale.path, "printf 'one\\nmine\\nthree\\n' > shared.txt && git add -A && git commit -q -m 'by hand'")
    by_hand = git(stale.path, "rev-parse", "HEAD")
    task_commit(pool, integ, "t3", {"other.txt": "alpha\nbeta by t3\n"})
    assert integ.merge("waveui/ep@t3", "merge t3").ok

    fresh = prepare_resolution(repository, "ep", "t2", integ.tip(), commit)
    assert git(fresh.path, "rev-parse", "HEAD", "MERGE_HEAD").split() == [integ.tip(), commit]
    kept = git(repo, "for-each-ref", "--format=%(objectname)", "refs/waveui/ep/t2/")
    assert by_hand in kept.split()  # the commit the earlier resolution made
    aside = list((repo / ".waveui" / "worktrees" / "set-aside").iterdir())
    assert [p.name.startswith("resolve-t2-") for p in aside] == [True]


def test_a_merge_committed_before_a_restart_is_handed_back(repo, conflict):
    repository, tip, commit = conflict
    resolution = prepare_resolution(repository, "ep", "t2", tip, commit)
    resolver(resolution.path, "echo both > shared.txt && git add -A && git commit -q -m 'by hand' "
                              "&& echo more > more.txt && git add -A && git commit -q -m 'and a fix'")
    head = git(resolution.path, "rev-parse", "HEAD")
    again = prepare_resolution(repository, "ep", "t2", tip, commit)
    assert again.path == resolution.path and git(again.path, "rev-parse", "HEAD") == head
    assert again.conflicted == ["shared.txt"]  # what was in conflict, though nothing is unmerged any more
    assert check_resolution(repository, again, "unused") == (head, "committed by the resolver")
