"""What a resumed run may believe: the journal checked against the epic file and against git.

A run is resumed from its journal, but the journal is only a record. Between
an interrupted run and its resume the user may edit ``waveui.toml``; lines of
the journal may be torn, forged or lost; the integration branch may have been
moved back. This module works out, without writing anything, what changed and
what git says was merged, so the engine can honour the change or refuse it in
one line:

* :func:`fingerprint` hashes what a task runs; :func:`compare_epic` sets the
  recorded fingerprints against the file's (removed, added, changed tasks).
* :func:`unhonourable_edit` names an edit a resume cannot follow (isolation,
  or base while the integration branch exists).
* :func:`merged_on_branch` reads the ``Waveui-Task`` trailers of the merges on
  the integration branch: the one record of merged work that survives a lost
  journal, and the judge of a ``done`` line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from waveui.run.events import RunStarted
from waveui.git.command import GitError, Repository
from waveui.core.spec import Epic, Task

TASK_TRAILER = "Waveui-Task"  # in every merge commit waveui makes: which task it brought in


def merge_message(task_id: str, title: str) -> str:
    """The message of a task's commit and merge; the trailer lets a lost journal be rebuilt from git."""
    return f"waveui: {task_id}" + (f" {title}" if title else "") + f"\n\n{TASK_TRAILER}: {task_id}\n"


def fingerprint(epic: Epic, task: Task) -> str:
    """A hash of the task's run-affecting definition: what it runs, with what, after what.

    Priority, retries, timeout and story points are left out: changing them
    changes how the task is scheduled, not what its work is.
    """
    definition = {
        "command": task.command or epic.command or "",
        "verify": task.verify or epic.verify or "",
        "title": task.title,  # handed to the command as $WAVEUI_TITLE
        "prompt": task.prompt,
        "requires": sorted(task.requires),
        "affected_files": list(task.affected_files),
        "expect_changes": task.expect_changes,
    }
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class EpicEdits:
    """How the epic file differs from the task list the interrupted run last recorded."""

    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.removed or self.added or self.changed)


def compare_epic(recorded: RunStarted, epic: Epic) -> EpicEdits:
    """Tasks removed, added and changed since ``recorded``; a renamed id is one removed and one added.

    A task recorded without a fingerprint (a journal from before they were
    kept) counts as unchanged: nothing tells otherwise, and rerunning every
    task of an old run would redo all its work.
    """
    before = {info.id: info.fingerprint for info in recorded.tasks}
    now = {task.id: fingerprint(epic, task) for task in epic.tasks}
    return EpicEdits(
        removed=[task_id for task_id in before if task_id not in now],
        added=[task_id for task_id in now if task_id not in before],
        changed=[task_id for task_id, print_ in now.items()
                 if before.get(task_id) and before[task_id] != print_],
    )


def unhonourable_edit(recorded: RunStarted, epic: Epic, branch_exists: bool) -> str | None:
    """Why the edited epic cannot resume the run ``recorded`` started, or None when it can."""
    was_git, is_git = bool(recorded.branch), epic.isolation == "worktree"
    if was_git != is_git:
        before, after = ("worktree", "none") if was_git else ("none", "worktree")
        return f"isolation changed from {before!r} to {after!r}"
    base = epic.base or ""
    if is_git and branch_exists and recorded.base != base:
        return (f"base changed from {recorded.base or '(the current branch)'!r} to {base or '(the current branch)'!r} "
                f"while {recorded.branch} holds work built on the old one")
    return None


@dataclass
class BranchWork:
    """The integration branch as git tells it: its tip and the task each of its merges brought in."""

    tip: str
    merged: dict[str, str]  # task id -> its merge commit (the newest, if a task was merged twice)
    commits: int  # commits on the branch since it left the base, merges or not


def merged_on_branch(repo_root: Path, branch: str, base: str | None) -> BranchWork | None:
    """Walk the branch's first parents from its tip to where it left ``base``; None when there is no branch.

    Only waveui's merges are on the first-parent line (a task's own commits
    are second parents), so a trailer a task wrote into its own commits is
    never read here.
    """
    repo = Repository.open(repo_root)
    tip = repo.resolve(f"refs/heads/{branch}")
    if tip is None:
        return None
    base_commit = repo.resolve(base or "HEAD")
    stop = ["--not", base_commit] if base_commit and base_commit != tip else []
    if base_commit == tip:
        return BranchWork(tip, {}, 0)
    # %x1e between commits, %x1f between fields: neither can appear in a commit id or a trailer value.
    log = repo.run("log", "--first-parent", "--format=%H%x1f%P%x1f%(trailers:key=" + TASK_TRAILER
                   + ",valueonly,separator=%x1d)%x1e", tip, *stop, "--").out
    merged: dict[str, str] = {}
    commits = 0
    for record in log.split("\x1e"):
        record = record.strip()
        if not record:
            continue
        commits += 1
        commit, parents, trailers = (record.split("\x1f") + ["", ""])[:3]
        if len(parents.split()) != 2:
            continue  # not a merge: nothing waveui made
        for task_id in trailers.split("\x1d"):
            task_id = task_id.strip()
            if task_id:
                merged.setdefault(task_id, commit)  # newest first
    return BranchWork(tip, merged, commits)


def on_branch(repo_root: Path, commit: str, tip: str) -> bool:
    """True when ``commit`` names a commit that the branch tipped by ``tip`` holds."""
    repo = Repository.open(repo_root)
    resolved = repo.resolve(commit) if commit else None
    if resolved is None:
        return False
    try:
        return repo.is_ancestor(resolved, tip)
    except GitError:
        return False
