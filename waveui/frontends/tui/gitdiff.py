"""A task branch's changes against its merge base with the integration branch, or a kept attempt's work.

Both are blocking: run them in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from waveui.git.names import task_branch
from waveui.git.command import GitError, Repository, Result
from waveui.core.sanitize import sanitize

MAX_DIFF_BYTES = 2 * 1024 * 1024
GIT_TIMEOUT = 30


@dataclass
class BranchDiff:
    branch: str  # the branch, or the ref of a kept attempt, the diff is of
    text: str = ""
    files: list[str] = field(default_factory=list)
    error: str = ""  # one line for the user when the diff could not be made
    truncated: bool = False
    merged: bool = False  # the diff is of the merge that took the branch in


def branch_of(epic: str, task_id: str) -> str:
    """The task's branch as the engine names it, or "" for names git would refuse."""
    try:
        return task_branch(epic, task_id)
    except ValueError:
        return ""


def _git(repo_root: Path, *args: str) -> Result:
    return Repository.open(repo_root).run(*args, ok=range(256), timeout=GIT_TIMEOUT)


def _readable(text: str) -> str:
    """Git's output as text a terminal can show: bytes that are not UTF-8 become U+FFFD."""
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def _first_line(text: str) -> str:
    lines = sanitize(_readable(text)).strip().splitlines()
    return lines[0] if lines else "git failed"


def branch_diff(repo_root: Path, integration: str, branch: str, merge_commit: str = "") -> BranchDiff:
    """``git diff integration...branch``: what the branch changed since it left the integration branch.

    Once the branch is merged that diff is empty; with the ``merge_commit``
    that took it in, the diff is what that commit brought instead.
    """
    result = BranchDiff(branch)
    if not branch:
        result.error = "this task has no branch name git accepts"
        return result
    try:
        _diff_into(result, repo_root, f"{integration}...{branch}")
        if not result.error and not result.files and merge_commit:
            _diff_into(result, repo_root, f"{merge_commit}^1", merge_commit)
            result.merged = not result.error
    except GitError as error:
        result.error = sanitize(error.message)
    return result


def kept_diff(repo_root: Path, ref: str, base: str, commit: str) -> BranchDiff:
    """``git diff base commit``: the work of an attempt kept under ``ref``, from the commit it started from."""
    result = BranchDiff(ref)
    if not (base and commit):
        result.error = "the attempt's start or its kept commit is not known"
        return result
    try:
        _diff_into(result, repo_root, base, commit)
    except GitError as error:
        result.error = sanitize(error.message)
    return result


def _diff_into(result: BranchDiff, repo_root: Path, *span: str) -> None:
    # The revisions come from the journal, which any process can write to: --end-of-options keeps
    # one such as "--output=FILE" a (bad) revision, never an option that makes git write a file.
    names = _git(repo_root, "diff", "--name-only", "-z", "--end-of-options", *span, "--")
    if names.status != 0:
        result.error = _first_line(names.err)
        return
    diff = _git(repo_root, "diff", "--no-color", "--no-ext-diff", "--no-textconv", "--end-of-options", *span, "--")
    result.files = [sanitize(n) for n in _readable(names.out).split("\0") if n]
    data = _readable(diff.out)
    result.truncated = len(data) > MAX_DIFF_BYTES
    result.text = sanitize(data[:MAX_DIFF_BYTES])
