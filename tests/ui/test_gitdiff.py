"""The detail screen's diff: a task branch against its merge base, as one line of error when it cannot be made."""

from __future__ import annotations

import subprocess

import pytest

from waveui.git.worktrees import task_branch
from waveui.frontends.tui.gitdiff import branch_diff


def git(repo, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, stdin=subprocess.DEVNULL)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    for name in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{name}_NAME", "waveui test")
        monkeypatch.setenv(f"GIT_{name}_EMAIL", "test@waveui.invalid")
    git(tmp_path, "init", "-q", "-b", "integration")
    (tmp_path / "a.txt").write_text("one\n")
    git(tmp_path, "add", "a.txt")
    git(tmp_path, "commit", "-q", "-m", "base")
    git(tmp_path, "checkout", "-q", "-b", task_branch("epic", "t1"))
    (tmp_path / "a.txt").write_text("one\ntwo \x1b]0;title\x07\n")
    (tmp_path / "b.txt").write_text("new\n")
    git(tmp_path, "add", "a.txt", "b.txt")
    git(tmp_path, "commit", "-q", "-m", "task work")
    git(tmp_path, "checkout", "-q", "integration")
    (tmp_path / "c.txt").write_text("merged meanwhile\n")  # later work on the integration branch is not the task's
    git(tmp_path, "add", "c.txt")
    git(tmp_path, "commit", "-q", "-m", "other task")
    return tmp_path


def test_the_diff_shows_only_what_the_task_changed(repo):
    diff = branch_diff(repo, "integration", task_branch("epic", "t1"))
    assert diff.error == ""
    assert diff.files == ["a.txt", "b.txt"]
    assert "+two " in diff.text and "c.txt" not in diff.text
    assert "\x1b" not in diff.text  # file contents are untrusted too


def test_a_missing_branch_is_one_line_of_error(repo):
    diff = branch_diff(repo, "integration", task_branch("epic", "nope"))
    assert diff.error and "\n" not in diff.error and diff.text == ""


def test_a_merged_branch_shows_what_its_merge_brought_in(repo):
    branch = task_branch("epic", "t1")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge t1", branch)
    merge = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert branch_diff(repo, "integration", branch).files == []  # merged: nothing left against the merge base
    diff = branch_diff(repo, "integration", branch, merge_commit=merge)
    assert diff.merged and diff.files == ["a.txt", "b.txt"]
