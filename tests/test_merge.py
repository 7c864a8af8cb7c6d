"""The integrator against real git repositories: committing tasks, merging them, never touching the user's checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from waveui.executors.local.runner import run_to_end
from waveui.git.merge import GitError, Integrator, MergeResult
from waveui.git.worktrees import WorktreePool


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def isolate_git(tmp_path: Path, monkeypatch, identity: bool = True) -> None:
    """Let git see no user or system configuration; an identity only through the environment."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    for who in ("AUTHOR", "COMMITTER"):
        for what, value in (("NAME", "Test"), ("EMAIL", "test@example.com")):
            if identity:
                monkeypatch.setenv(f"GIT_{who}_{what}", value)
            else:
                monkeypatch.delenv(f"GIT_{who}_{what}", raising=False)
    monkeypatch.delenv("EMAIL", raising=False)


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    isolate_git(tmp_path, monkeypatch)
    root = tmp_path / "repo"
    git(tmp_path, "init", "-q", "-b", "main", str(root))
    (root / "shared.txt").write_text("one\ntwo\nthree\n")
    (root / "README.md").write_text("hello\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


def run_task(pool: WorktreePool, integ: Integrator, task: str, files: dict[str, str]):
    """Acquire at the integration tip, write files, commit; the worktree (still held) and the commit."""
    start = integ.tip()
    wt = pool.acquire(task, start)
    for name, text in files.items():
        (wt.path / name).parent.mkdir(parents=True, exist_ok=True)
        (wt.path / name).write_text(text)
    return wt, start, pool.commit(wt, start, f"{task}: work")


def parents(repo: Path, commit: str) -> list[str]:
    return git(repo, "rev-list", "--parents", "-n", "1", commit).split()[1:]


def test_two_tasks_merged_in_sequence(repo):
    integ = Integrator(repo, "ep", None)
    base = integ.ensure_branch()
    assert base == git(repo, "rev-parse", "main") and integ.base_name == "main"
    pool = WorktreePool(repo, "ep", None, [])

    wt, start, commit = run_task(pool, integ, "t1", {"src/a.py": "a = 1\n"})
    assert commit and integ.changed_files(start, commit) == ["src/a.py"]
    pool.release(wt)
    first = integ.merge(wt.branch, "merge t1")
    assert first == MergeResult(True, integ.tip(), [])
    assert parents(repo, first.commit) == [base, commit]  # a merge commit even though it could fast-forward

    wt2 = pool.acquire("t2", integ.tip())
    assert (wt2.path / "src/a.py").read_text() == "a = 1\n"  # sees t1's work
    (wt2.path / "b.txt").write_text("b\n")
    commit2 = pool.commit(wt2, integ.tip(), "t2: work")
    pool.release(wt2)
    second = integ.merge(wt2.branch, "merge t2")
    assert second.ok and parents(repo, second.commit) == [first.commit, commit2]
    assert git(repo, "show", f"{second.commit}:src/a.py") == "a = 1"
    assert git(repo, "show", f"{second.commit}:b.txt") == "b"
    assert integ.is_merged(wt.branch) and integ.is_merged(wt2.branch)
    assert git(repo, "rev-parse", "waveui/ep") == second.commit


def test_parallel_tasks_merge_without_conflict(repo):
    integ = Integrator(repo, "ep", None)
    integ.ensure_branch()
    pool = WorktreePool(repo, "ep", None, [])
    wt1, _, c1 = run_task(pool, integ, "t1", {"one.txt": "1\n"})
    wt2, _, c2 = run_task(pool, integ, "t2", {"two.txt": "2\n"})  # same start: true three-way merge
    assert integ.merge(wt1.branch, "merge t1").ok
    result = integ.merge(wt2.branch, "merge t2")
    assert result.ok and git(repo, "ls-tree", "--name-only", result.commit).split() == [
        "README.md", "one.txt", "shared.txt", "two.txt"]
    assert not integ.is_merged("waveui/ep@nope")


def test_merging_twice_changes_nothing(repo):
    integ = Integrator(repo, "ep", None)
    integ.ensure_branch()
    pool = WorktreePool(repo, "ep", None, [])
    wt, _, _ = run_task(pool, integ, "t1", {"x.txt": "x\n"})
    first = integ.merge(wt.branch, "merge t1")
    assert integ.merge(wt.branch, "merge t1 again") == MergeResult(True, first.commit, [])


def test_conflict_changes_nothing_and_names_the_files(repo):
    integ = Integrator(repo, "ep", None)
    integ.ensure_branch()
    pool = WorktreePool(repo, "ep", None, [])
    wt1, _, _ = run_task(pool, integ, "t1", {"shared.txt": "one\nTWO by t1\nthree\n", "a.txt": "a\n"})
    wt2, _, c2 = run_task(pool, integ, "t2", {"shared.txt": "one\ntwo by t2\nthree\n", "b.txt": "b\n"})
    merged = integ.merge(wt1.branch, "merge t1")
    assert merged.ok

    result = integ.merge(wt2.branch, "merge t2")
    assert result == MergeResult(False, merged.commit, ["shared.txt"])
    assert integ.tip() == merged.commit
    assert git(repo, "rev-parse", wt2.branch) == c2  # the task's work is kept
    assert not integ.is_merged(wt2.branch)
    assert (wt2.path / "b.txt").exists()  # and its worktree untouched


def test_file_against_folder_conflict_is_named(repo):
    integ = Integrator(repo, "ep", None)
    integ.ensure_branch()
    pool = WorktreePool(repo, "ep", None, [])
    wt1, _, _ = run_task(pool, integ, "t1", {"thing": "a file\n"})
    wt2, _, _ = run_task(pool, integ, "t2", {"thing/inside.txt": "a folder\n"})
    assert integ.merge(wt1.branch, "merge t1").ok
    result = integ.merge(wt2.branch, "merge t2")
    assert not result.ok and "thing" in result.conflicted


def test_users_checkout_is_never_touched(repo):
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "README.md").write_text("my own edit, not committed\n")
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")
    before = {
        "head": git(repo, "rev-parse", "HEAD"),
        "branch": git(repo, "symbolic-ref", "HEAD"),
        "status": git(repo, "status", "--porcelain"),
        "index": git(repo, "diff", "--cached"),
        "diff": git(repo, "diff"),
        "refs": git(repo, "for-each-ref", "refs/heads/main", "refs/heads/feature"),
    }

    integ = Integrator(repo, "ep", None)
    integ.ensure_branch()
    assert integ.base_name == "feature"
    pool = WorktreePool(repo, "ep", "mkdir -p node_modules && touch node_modules/x", [], run_setup=run_to_end)
    wt1, _, _ = run_task(pool, integ, "t1", {"README.md": "task's readme\n"})
    pool.ensure_setup(wt1, {"PATH": "/usr/bin:/bin"})
    wt2, _, _ = run_task(pool, integ, "t2", {"README.md": "other readme\n"})
    assert integ.merge(wt1.branch, "merge t1").ok
    assert not integ.merge(wt2.branch, "merge t2").ok
    pool.release(wt1)
    pool.release(wt2)

    after = {
        "head": git(repo, "rev-parse", "HEAD"),
        "branch": git(repo, "symbolic-ref", "HEAD"),
        "status": git(repo, "status", "--porcelain"),
        "index": git(repo, "diff", "--cached"),
        "diff": git(repo, "diff"),
        "refs": git(repo, "for-each-ref", "refs/heads/main", "refs/heads/feature"),
    }
    assert after == before
    assert (repo / "README.md").read_text() == "my own edit, not committed\n"


def test_refuses_to_move_a_checked_out_integration_branch(repo):
    integ = Integrator(repo, "ep", None)
    integ.ensure_branch()
    pool = WorktreePool(repo, "ep", None, [])
    wt, _, _ = run_task(pool, integ, "t1", {"x.txt": "x\n"})
    git(repo, "checkout", "-q", "waveui/ep")
    tip = integ.tip()
    with pytest.raises(GitError, match="checked out in your checkout"):
        integ.merge(wt.branch, "merge t1")
    assert integ.tip() == tip and git(repo, "status", "--porcelain") == ""


def test_refuses_to_move_the_integration_branch_checked_out_in_another_worktree(repo, tmp_path):
    integ = Integrator(repo, "ep", None)
    integ.ensure_branch()
    pool = WorktreePool(repo, "ep", None, [])
    wt, _, _ = run_task(pool, integ, "t1", {"x.txt": "x\n"})
    other = tmp_path / "other checkout"
    git(repo, "worktree", "add", "-q", str(other), "waveui/ep")
    tip = integ.tip()
    with pytest.raises(GitError, match=f"checked out in {other}"):
        integ.merge(wt.branch, "merge t1")
    git(other, "checkout", "-q", "--detach")
    assert integ.merge(wt.branch, "merge t1").ok and integ.tip() != tip


def test_a_merge_of_this_process_half_done_is_not_taken_for_a_move(repo):
    """check_unmoved beside a merge that has moved the branch but not yet noted where: no RefMoved."""
    import threading

    integ = Integrator(repo, "ep", None)
    old = integ.ensure_branch()
    new = git(repo, "commit-tree", f"{old}^{{tree}}", "-p", old, "-m", "as a merge would")
    read_once, answers = threading.Event(), []
    resolve = integ._resolve

    def resolve_and_tell(rev):  # the real read; the event only says it happened
        found = resolve(rev)
        read_once.set()
        return found

    integ._resolve = resolve_and_tell
    with integ._lock:  # a merge in progress: the branch moved, `expected` not yet updated
        git(repo, "update-ref", integ.ref, new, old)
        checker = threading.Thread(target=lambda: answers.append(integ.check_unmoved()))
        checker.start()
        read_once.wait()
        integ.expected = new
    checker.join()
    assert answers == [new]


def test_existing_integration_branch_is_kept(repo):
    first = Integrator(repo, "ep", None)
    tip = first.ensure_branch()
    git(repo, "commit", "-q", "--allow-empty", "-m", "user moves on")
    resumed = Integrator(repo, "ep", None)
    assert resumed.ensure_branch() == tip and resumed.base_name is None


def test_explicit_base(repo):
    old = git(repo, "rev-parse", "HEAD")
    git(repo, "commit", "-q", "--allow-empty", "-m", "later")
    assert Integrator(repo, "ep", old[:10]).ensure_branch() == old
    with pytest.raises(GitError, match="not a commit"):
        Integrator(repo, "other", "no-such-ref").ensure_branch()


def test_detached_head_base(repo):
    sha = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "--detach")
    integ = Integrator(repo, "ep", None)
    assert integ.ensure_branch() == sha and integ.base_name == sha


def test_repository_without_commits(tmp_path, monkeypatch):
    isolate_git(tmp_path, monkeypatch)
    git(tmp_path, "init", "-q", "empty")
    integ = Integrator(tmp_path / "empty", "ep", None)
    with pytest.raises(GitError, match="no commits"):
        integ.ensure_branch()
    with pytest.raises(GitError):
        integ.tip()


def test_commit_task_with_nothing_changed(repo):
    integ = Integrator(repo, "ep", None)
    start = integ.ensure_branch()
    pool = WorktreePool(repo, "ep", None, [])
    wt = pool.acquire("t1", start)
    assert pool.commit(wt, start, "nothing") is None
    # An agent that committed its own work: nothing left to commit, the branch tip counts.
    (wt.path / "mine.txt").write_text("mine\n")
    git(wt.path, "add", "mine.txt")
    git(wt.path, "commit", "-q", "-m", "agent's own commit")
    assert pool.commit(wt, start, "nothing") == git(wt.path, "rev-parse", "HEAD")


def test_a_commit_keeps_the_attempt_with_the_branch(repo):
    integ = Integrator(repo, "ep", None)
    start = integ.ensure_branch()
    pool = WorktreePool(repo, "ep", None, [])
    wt = pool.acquire("t1", start)
    (wt.path / "work.txt").write_text("work\n")
    commit = pool.commit(wt, start, "t1: work", attempt=2)
    assert git(repo, "rev-parse", "refs/waveui/ep/t1/2") == git(repo, "rev-parse", "waveui/ep@t1") == commit
    released = pool.release(wt, 2)
    assert (released.kept, released.ref) == (commit, "refs/waveui/ep/t1/2")


def test_a_commit_after_the_task_moved_its_own_branch_builds_on_it(repo):
    """The pool knows where acquire put the branch; a task that moved it since is read from git again."""
    integ = Integrator(repo, "ep", None)
    start = integ.ensure_branch()
    pool = WorktreePool(repo, "ep", None, [])
    wt = pool.acquire("t1", start)
    (wt.path / "mine.txt").write_text("mine\n")
    git(wt.path, "add", "mine.txt")
    git(wt.path, "commit", "-q", "-m", "the task's own commit")
    own = git(wt.path, "rev-parse", "HEAD")
    git(wt.path, "pack-refs", "--all")  # its branch no longer in a file of its own
    (wt.path / "more.txt").write_text("more\n")
    commit = pool.commit(wt, start, "t1: work")
    assert parents(repo, commit) == [own]
    assert git(repo, "rev-parse", "waveui/ep@t1") == commit


def test_commit_task_deletions_and_renames(repo):
    integ = Integrator(repo, "ep", None)
    start = integ.ensure_branch()
    pool = WorktreePool(repo, "ep", None, [])
    wt = pool.acquire("t1", start)
    (wt.path / "README.md").unlink()
    (wt.path / "shared.txt").rename(wt.path / "moved.txt")
    commit = pool.commit(wt, start, "moves")
    assert sorted(integ.changed_files(start, commit)) == ["README.md", "moved.txt", "shared.txt"]


def test_identity_supplied_only_when_missing(tmp_path, monkeypatch):
    isolate_git(tmp_path, monkeypatch, identity=False)
    root = tmp_path / "repo"
    git(tmp_path, "init", "-q", "-b", "main", str(root))
    (root / "f.txt").write_text("f\n")
    git(root, "add", "f.txt")
    git(root, "-c", "user.name=Setup", "-c", "user.email=setup@example.com", "commit", "-q", "-m", "first")

    integ = Integrator(root, "ep", None)
    start = integ.ensure_branch()
    pool = WorktreePool(root, "ep", None, [])
    wt = pool.acquire("t1", start)
    (wt.path / "g.txt").write_text("g\n")
    commit = pool.commit(wt, start, "no identity configured")
    assert git(root, "log", "-1", "--format=%an <%ae>", commit) == "waveui <waveui@localhost>"
    merged = integ.merge(wt.branch, "merge")
    assert merged.ok and git(root, "log", "-1", "--format=%cn", merged.commit) == "waveui"

    git(root, "config", "user.name", "Someone")
    git(root, "config", "user.email", "someone@example.com")
    integ = Integrator(root, "ep", None)
    (wt.path / "h.txt").write_text("h\n")
    commit = pool.commit(wt, start, "identity configured")
    assert git(root, "log", "-1", "--format=%an <%ae>", commit) == "Someone <someone@example.com>"


@pytest.mark.parametrize("changed, declared, expected", [
    (["src/a.py", "src/b.py"], ["src/a.py"], ["src/b.py"]),
    (["src/a.py", "src/sub/b.py"], ["src/*.py"], ["src/sub/b.py"]),
    (["src/a.py", "src/sub/b.py"], ["src/**"], []),
    (["src/a.py", "src/sub/b.py", "docs/x.md"], ["src/"], ["docs/x.md"]),
    (["src/sub/b.py", "b.py"], ["**/b.py"], []),
    (["a1.txt", "a2.txt", "a10.txt"], ["a?.txt"], ["a10.txt"]),
    (["a1.txt", "a2.txt"], ["a[1].txt"], ["a2.txt"]),
    (["src/api"], ["src/api"], []),
    (["src/api/x.py"], ["src/api"], ["src/api/x.py"]),  # a plain path is that file only, as the planner reads it
    (["./lib/x.py"], ["lib//x.py"], []),
    (["x.py"], [], ["x.py"]),
])
def test_undeclared(changed, declared, expected):
    assert Integrator.undeclared(changed, declared) == expected


def test_branch_moved_by_someone_else_is_never_built_upon(repo):
    """The swap is made against the tip waveui last wrote: a branch moved behind its back stops the merge."""
    from waveui.git.merge import RefMoved

    integ = Integrator(repo, "ep", None)
    integ.ensure_branch()
    pool = WorktreePool(repo, "ep", None, [])
    wt, _, _ = run_task(pool, integ, "t1", {"x.txt": "x\n"})
    old = git(repo, "rev-parse", "waveui/ep")
    other = git(repo, "commit-tree", f"{old}^{{tree}}", "-p", old, "-m", "someone else")
    git(repo, "update-ref", "refs/heads/waveui/ep", other, old)
    with pytest.raises(RefMoved, match="moved to"):
        integ.merge(wt.branch, "merge t1")
    assert git(repo, "rev-parse", "waveui/ep") == other  # nothing written over it
    integ.accept(other)  # a resume that checked the move (forward) takes it
    assert integ.merge(wt.branch, "merge t1").ok


def test_resolve_all_names_every_revision_in_one_answer(repo):
    from waveui.git.command import GitError as CommandError, Repository

    repository = Repository.open(repo)
    head = git(repo, "rev-parse", "HEAD")
    tree = git(repo, "rev-parse", "HEAD^{tree}")
    assert repository.resolve_all("HEAD^{commit}", "refs/heads/none^{commit}", "HEAD^{tree}", "-x") == \
        [head, None, tree, None]
    with pytest.raises(CommandError):
        repository.resolve_all("HEAD\nrefs/heads/main")  # would shift every answer after it
