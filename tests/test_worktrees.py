"""The worktree pool against real git repositories: reuse, setup, recovery, names."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import functools

from waveui.executors.local.runner import run_to_end
from waveui.git.worktrees import GitError, WorktreePool, integration_branch, task_branch

Pool = functools.partial(WorktreePool, run_setup=run_to_end)  # the engine hands the pool its executor's runner

SETUP = ('echo ran >> "$COUNT_FILE"; '
         'mkdir -p node_modules/dep && for i in 1 2 3; do echo $i > node_modules/dep/f$i; done')


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def commit_file(repo: Path, name: str, text: str, message: str | None = None) -> str:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message or f"write {name}")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A repository on branch main with one commit; git sees no user or system configuration."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@example.com")
    root = tmp_path / "repo"
    git(tmp_path, "init", "-q", "-b", "main", str(root))
    (root / ".gitignore").write_text("node_modules/\n")
    (root / "README.md").write_text("hello\n")
    (root / "package.json").write_text('{"dependencies": {}}\n')
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


@pytest.fixture
def counter(tmp_path) -> Path:
    return tmp_path / "setup-count"


def setup_env(counter: Path) -> dict:
    return {**os.environ, "COUNT_FILE": str(counter)}


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_reuse_keeps_ignored_files_and_skips_setup(repo, counter, tmp_path):
    pool = Pool(repo, "ep", SETUP, ["package.json"], log_dir=tmp_path / "logs")
    wt = pool.acquire("t1", "main")
    assert wt.slot == 0 and wt.path == repo.resolve() / ".waveui" / "worktrees" / "slot-0"
    assert wt.branch == task_branch("ep", "t1") == pool.branch_for("t1") == "waveui/ep@t1"
    assert git(wt.path, "symbolic-ref", "--short", "HEAD") == "waveui/ep@t1"
    first = pool.ensure_setup(wt, setup_env(counter))
    assert first.ran and first.exit_code == 0 and first.seconds >= 0
    assert (wt.path / "node_modules/dep/f1").exists()
    assert "=== exit status 0" in (tmp_path / "logs" / "setup-slot-0.log").read_text()

    (wt.path / "README.md").write_text("changed\n")  # dirty tracked file
    (wt.path / "scratch.txt").write_text("untracked\n")
    assert pool.release(wt).ok
    assert git(wt.path, "rev-parse", "--abbrev-ref", "HEAD") == "HEAD"  # detached

    again = pool.acquire("t2", "main")
    assert again.slot == 0 and again.path == wt.path and again.branch == "waveui/ep@t2"
    assert (again.path / "README.md").read_text() == "hello\n"
    assert not (again.path / "scratch.txt").exists()
    assert (again.path / "node_modules/dep/f3").read_text() == "3\n"  # ignored: survives
    second = pool.ensure_setup(again, setup_env(counter))
    assert not second.ran and second.exit_code == 0
    assert runs(counter) == 1

    # .waveui is private and excluded from git without touching tracked files.
    assert stat.S_IMODE((repo / ".waveui").stat().st_mode) == 0o700
    assert "/.waveui/" in (repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert git(repo, "status", "--porcelain") == ""


def test_exclude_line_added_once(repo):
    Pool(repo, "ep", None, [])
    Pool(repo, "ep", None, [])
    assert (repo / ".git" / "info" / "exclude").read_text().splitlines().count("/.waveui/") == 1


def test_setup_reruns_when_an_input_changes(repo, counter):
    pool = Pool(repo, "ep", SETUP, ["package.json", "*.lock"])
    wt = pool.acquire("t1", "main")
    assert pool.ensure_setup(wt, setup_env(counter)).ran
    pool.release(wt)

    commit_file(repo, "package.json", '{"dependencies": {"left-pad": "1"}}\n')
    wt = pool.acquire("t2", "main")
    assert pool.ensure_setup(wt, setup_env(counter)).ran
    assert not pool.ensure_setup(wt, setup_env(counter)).ran
    pool.release(wt)

    commit_file(repo, "yarn.lock", "lock v1\n")  # a glob input appearing counts as a change
    wt = pool.acquire("t3", "main")
    assert pool.ensure_setup(wt, setup_env(counter)).ran
    assert runs(counter) == 3


def test_setup_command_change_reruns(repo, counter):
    first = Pool(repo, "ep", SETUP, [])
    first.ensure_setup(first.acquire("t1", "main"), setup_env(counter))
    pool = Pool(repo, "ep", SETUP + " ", [])  # a later run with another setup command
    wt = pool.acquire("t1", "main")
    assert pool.ensure_setup(wt, setup_env(counter)).ran


def test_failed_setup_is_not_marked_done(repo, counter, tmp_path):
    pool = Pool(repo, "ep", 'echo ran >> "$COUNT_FILE"; echo broken; exit 3', [], log_dir=tmp_path / "logs")
    wt = pool.acquire("t1", "main")
    result = pool.ensure_setup(wt, setup_env(counter))
    assert result.ran and result.exit_code == 3
    assert not (repo / ".waveui" / "worktrees" / "slot-0.setup").exists()
    assert pool.ensure_setup(wt, setup_env(counter)).ran  # tried again
    assert runs(counter) == 2
    log = (tmp_path / "logs" / "setup-slot-0.log").read_text()
    assert "broken" in log and "=== exit status 3" in log


def test_setup_timeout_kills_and_is_not_done(repo):
    pool = Pool(repo, "ep", "sleep 30", [])
    wt = pool.acquire("t1", "main")
    result = pool.ensure_setup(wt, dict(os.environ), timeout=0.5)
    assert result.ran and result.exit_code != 0 and result.seconds < 10
    assert not (repo / ".waveui" / "worktrees" / "slot-0.setup").exists()


def test_no_setup_never_runs(repo):
    pool = Pool(repo, "ep", None, [])
    wt = pool.acquire("t1", "main")
    assert pool.ensure_setup(wt, dict(os.environ)).ran is False


def test_pool_found_again_by_a_later_process(repo, counter):
    pool = Pool(repo, "ep", SETUP, ["package.json"])
    wt = pool.acquire("t1", "main")
    pool.ensure_setup(wt, setup_env(counter))
    # No release: the first process "crashed" with the slot on a task's branch, dirty.
    (wt.path / "README.md").write_text("half done\n")

    later = Pool(repo, "ep", SETUP, ["package.json"])
    assert later.slots() == [0]
    again = later.acquire("t2", "main")
    assert again.slot == 0 and (again.path / "README.md").read_text() == "hello\n"
    assert (again.path / "node_modules/dep/f1").exists()
    assert not later.ensure_setup(again, setup_env(counter)).ran
    # The crashed task's branch is free again: a retry of it can take any slot.
    retry = later.acquire("t1", "main")
    assert retry.slot == 1


def test_retry_resets_an_existing_branch(repo):
    pool = Pool(repo, "ep", None, [])
    wt = pool.acquire("t1", "main")
    commit_file(wt.path, "attempt1.txt", "first try\n")
    pool.release(wt)
    assert git(repo, "rev-parse", "waveui/ep@t1") != git(repo, "rev-parse", "main")

    wt = pool.acquire("t1", "main")
    assert git(repo, "rev-parse", "waveui/ep@t1") == git(repo, "rev-parse", "main")
    assert not (wt.path / "attempt1.txt").exists()


def test_concurrent_acquires_get_different_slots(repo):
    pool = Pool(repo, "ep", None, [])
    with ThreadPoolExecutor(4) as ex:
        wts = list(ex.map(lambda i: pool.acquire(f"t{i}", "main"), range(4)))
    assert sorted(w.slot for w in wts) == [0, 1, 2, 3]
    for w in wts:
        assert git(w.path, "symbolic-ref", "--short", "HEAD") == w.branch
        pool.release(w)
    assert pool.acquire("t9", "main").slot == 0


def test_deleted_worktree_is_recovered(repo, counter):
    pool = Pool(repo, "ep", SETUP, [])
    wt = pool.acquire("t1", "main")
    pool.ensure_setup(wt, setup_env(counter))
    pool.release(wt)
    shutil.rmtree(wt.path)

    again = pool.acquire("t2", "main")  # same process
    assert again.slot == 0 and (again.path / "README.md").exists()
    assert pool.ensure_setup(again, setup_env(counter)).ran  # its dependencies went with it
    pool.release(again)

    shutil.rmtree(again.path)
    later = Pool(repo, "ep", SETUP, [])  # a later process
    third = later.acquire("t3", "main")
    assert third.slot == 0 and git(third.path, "symbolic-ref", "--short", "HEAD") == "waveui/ep@t3"
    assert "slot-0" in git(repo, "worktree", "list")


def test_locked_worktree_is_recovered(repo):
    pool = Pool(repo, "ep", None, [])
    wt = pool.acquire("t1", "main")
    pool.release(wt)
    git(repo, "worktree", "lock", str(wt.path))
    shutil.rmtree(wt.path)  # locked and gone: prune alone would keep it

    again = Pool(repo, "ep", None, []).acquire("t2", "main")
    assert (again.path / "README.md").exists()


def test_stale_index_lock_is_removed(repo):
    pool = Pool(repo, "ep", None, [])
    wt = pool.acquire("t1", "main")
    pool.release(wt)
    gitdir = Path(git(wt.path, "rev-parse", "--absolute-git-dir"))
    (gitdir / "index.lock").write_text("")
    (wt.path / "README.md").write_text("dirty\n")

    again = pool.acquire("t2", "main")
    assert not (gitdir / "index.lock").exists()
    assert (again.path / "README.md").read_text() == "hello\n"


@pytest.mark.parametrize("head", ["1111111111111111111111111111111111111111", "ref: refs/heads/never-made"])
def test_a_slot_whose_head_names_no_commit_is_rebuilt_by_the_next_acquire(repo, head):
    notices = []
    pool = Pool(repo, "ep", None, [], on_notice=notices.append)
    wt = pool.acquire("t1", "main")
    pool.release(wt)
    gitdir = Path(git(wt.path, "rev-parse", "--absolute-git-dir"))
    (gitdir / "HEAD").write_text(head + "\n")

    again = pool.acquire("t2", "main")
    assert again.slot == wt.slot
    assert git(again.path, "rev-parse", "HEAD") == git(repo, "rev-parse", "main")
    assert any("names no commit" in text for text in notices)


def test_half_done_rebase_is_forgotten(repo):
    pool = Pool(repo, "ep", None, [])
    wt = pool.acquire("t1", "main")
    gitdir = Path(git(wt.path, "rev-parse", "--absolute-git-dir"))
    (gitdir / "rebase-merge").mkdir()
    pool.release(wt)
    pool.acquire("t2", "main")
    assert not (gitdir / "rebase-merge").exists()


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-x", ".hidden", "a..b", "x.lock", "a.", "a b",
                                 "a@{1}", "x" * 65, "t\n", "ü"])
def test_bad_task_id_is_refused(repo, bad):
    pool = Pool(repo, "ep", None, [])
    with pytest.raises(ValueError):
        pool.acquire(bad, "main")
    assert pool.slots() == []


@pytest.mark.parametrize("bad", ["../up", "a/b", "x.lock", ""])
def test_bad_epic_name_is_refused(repo, bad):
    with pytest.raises(ValueError):
        Pool(repo, bad, None, [])
    with pytest.raises(ValueError):
        integration_branch(bad)


def test_setup_input_outside_the_repository_is_refused(repo):
    for bad in ("/etc/passwd", "../secret", "a/../../b"):
        with pytest.raises(ValueError):
            Pool(repo, "ep", "true", [bad])


def test_unknown_start_point(repo):
    pool = Pool(repo, "ep", None, [])
    with pytest.raises(GitError, match="not a commit"):
        pool.acquire("t1", "no-such-branch")
    assert pool.acquire("t1", "main").slot == 0


def test_not_a_repository(tmp_path):
    with pytest.raises(GitError, match="not a git repository"):
        Pool(tmp_path, "ep", None, [])
