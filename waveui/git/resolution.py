"""Resolving a task's merge conflict in a worktree of its own: the merge set up with its markers, then checked.

A task whose merge conflicts gets ``.waveui/worktrees/resolve-<task>``, a
linked worktree on ``waveui/<epic>@<task>@resolve`` at the integration tip,
in which ``git merge --no-ff --no-commit`` of the task's commit has left the
conflict markers. A resolver (a command, or the user by hand) edits the files
and either commits the merge or only marks them resolved (``git add``);
:func:`check_resolution` then gives the merge commit to publish
(``Integrator.merge_resolved``) or the one reason it cannot yet.

The folder is checked to be that worktree before every command, as pool
slots are, so nothing ever runs in the user's checkout; what an earlier
resolution left at the same place is moved aside, never deleted, and its
branch's commits are kept under ``refs/waveui/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from waveui.git.command import Checkout, GitError, Repository
from waveui.git.merge import parse_merge_tree
from waveui.git.names import resolution_branch
from waveui.git.preflight import exclude_waveui
from waveui.git.worktrees import BrokenSlot, keep_branch_tip, revision, set_aside_folder, some_paths
from waveui.run.journal import ensure_private_dir, waveui_dir

# Lines git writes around a conflict; "=======" alone is left out: a Markdown or reST underline looks the same.
_MARKERS = r"^(<<<<<<<|>>>>>>>)( |$)"


@dataclass(frozen=True)
class Resolution:
    epic: str
    task_id: str
    path: Path  # the worktree to resolve in
    branch: str  # checked out there
    tip: str  # the integration tip the merge is made onto: the merge's first parent
    commit: str  # the task's commit: the second parent
    conflicted: list[str]  # files git could not merge, as the merge left them


def prepare_resolution(repository: Repository, epic: str, task_id: str, tip: str, commit: str) -> Resolution:
    """The worktree where ``commit`` is being merged onto ``tip``, conflict markers in place.

    The same resolution set up before (by a waveui that stopped since) is
    handed back as it is, with whatever the resolver did so far.
    """
    branch = resolution_branch(epic, task_id)
    path = ensure_private_dir(waveui_dir(repository.root) / "worktrees") / f"resolve-{task_id}"
    exclude_waveui(repository.common_dir)
    checkout = repository.linked_worktree(path)
    if checkout is not None and _merging(repository, checkout, branch, tip, commit):
        # Asked of git again: the resolver may have marked files resolved, or committed, since.
        merged = repository.run_on_history("merge-tree", "--write-tree", "--name-only", "-z", tip, commit, ok=(0, 1))
        return Resolution(epic, task_id, path, branch, tip, commit, sorted(parse_merge_tree(merged.out)[1]))
    if path.is_symlink() or path.exists():
        set_aside_folder(path.parent, path)
    repository.run("worktree", "prune")  # forget the record of the folder just moved, if it was a worktree
    keep_branch_tip(repository, epic, task_id, branch, tip)
    repository.run("worktree", "add", "-q", "--force", "-B", branch, str(path), tip)
    os.chmod(path, 0o700)  # git made it by the umask; everything under .waveui/ is owner-only
    checkout = repository.linked_worktree(path)
    if checkout is None:
        raise BrokenSlot(f"could not create the worktree {path}")
    checkout.run(*repository.identity(), "merge", "-q", "--no-ff", "--no-commit", commit, ok=(0, 1))
    if revision(checkout, "MERGE_HEAD") != commit:
        raise GitError(f"git merge of {commit[:12]} onto {tip[:12]} in {path} stopped before merging anything")
    return Resolution(epic, task_id, path, branch, tip, commit, _unmerged(checkout))


def check_resolution(repository: Repository, resolution: Resolution, message: str) -> tuple[str | None, str]:
    """The resolved merge commit and how it came, or None and why the conflict is not resolved yet.

    Accepted: a commit the resolver made that holds both the tip and the
    task's commit, or a resolved but uncommitted merge, which is then
    committed here (everything in the worktree staged, ``message``, the tip
    and the task's commit as parents). Refused while files are unmerged in
    the index, while a file that was in conflict still holds ``<<<<<<<`` or
    ``>>>>>>>`` lines, or when HEAD lost either side.
    """
    checkout = repository.linked_worktree(resolution.path)
    if checkout is None:
        return None, f"{resolution.path} is gone or no longer a worktree of {repository.root}"
    head = revision(checkout, "HEAD^{commit}")
    if head is None:
        return None, f"HEAD in {resolution.path} names no commit"
    if head != resolution.tip:
        missing = [name for name, side in (("the integration tip", resolution.tip), ("the task's commit",
                                                                                    resolution.commit))
                   if not repository.is_ancestor(side, head)]
        if missing:
            return None, f"HEAD in {resolution.path} ({head[:12]}) does not contain {' or '.join(missing)}"
        marked = _with_markers(checkout, resolution.conflicted, head)
        if marked:
            return None, f"the committed merge still has conflict markers in {some_paths(marked)}"
        return head, "committed by the resolver"
    unmerged = _unmerged(checkout)
    if unmerged:
        return None, f"still unmerged (mark each resolved with git add): {some_paths(unmerged)}"
    if revision(checkout, "MERGE_HEAD") != resolution.commit:
        return None, f"no merge of the task's commit {resolution.commit[:12]} is in progress in {resolution.path}"
    checkout.run("add", "-A", "--", ".")
    marked = _with_markers(checkout, resolution.conflicted)
    if marked:
        return None, f"conflict markers are left in {some_paths(marked)}"
    # Hooks never run (every command has them off): the resolver's work is committed as it stands.
    checkout.run(*repository.identity(), "commit", "-q", "--no-verify", "--no-edit", "-m", message)
    merged = revision(checkout, "HEAD")
    if merged is None or _parents(checkout, merged) != [resolution.tip, resolution.commit]:
        return None, f"committing the merge in {resolution.path} did not give a merge of the tip and the task"
    return merged, "resolved, committed by waveui"


def remove_resolution(repository: Repository, resolution: Resolution) -> None:
    """Remove the resolution's worktree; git refuses (GitError) while it holds anything uncommitted.

    The branch stays: its commits are the resolution, merged or not.
    """
    if repository.linked_worktree(resolution.path) is None:
        raise GitError(f"{resolution.path} is not a worktree of {repository.root}; left as it is")
    repository.run("worktree", "remove", str(resolution.path))


# ------------------------------------------------------------------ helpers


def _merging(repository: Repository, checkout: Checkout, branch: str, tip: str, commit: str) -> bool:
    """Whether the worktree is on ``branch`` with a merge of ``commit`` onto ``tip`` under way or committed."""
    if checkout.run("symbolic-ref", "-q", "HEAD", ok=(0, 1, 128)).out.strip() != f"refs/heads/{branch}":
        return False
    head = revision(checkout, "HEAD")
    if head == tip:
        return revision(checkout, "MERGE_HEAD") == commit
    return head is not None and repository.is_ancestor(tip, head) and repository.is_ancestor(commit, head)


def _unmerged(checkout: Checkout) -> list[str]:
    """Files with unmerged entries in the index."""
    out = checkout.run("diff", "--name-only", "--diff-filter=U", "-z").out
    return sorted({p for p in out.split("\0") if p})


def _with_markers(checkout: Checkout, paths: list[str], rev: str | None = None) -> list[str]:
    """Which of ``paths`` hold conflict marker lines, in commit ``rev`` or else in the index."""
    if not paths:
        return []
    where = [rev] if rev else ["--cached"]
    found = checkout.run("grep", "-l", "-z", "-I", "-E", "-e", _MARKERS, *where, "--",
                         *(f":(literal){p}" for p in paths), ok=(0, 1)).out
    # Files found in a commit are named "<rev>:<path>".
    return sorted(p.removeprefix(f"{rev}:") if rev else p for p in found.split("\0") if p)


def _parents(checkout: Checkout, commit: str) -> list[str]:
    return checkout.run("rev-list", "--parents", "-n", "1", commit).out.split()[1:]
