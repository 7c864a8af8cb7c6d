"""Private git data for a sandboxed step: its git commands work, and write only copies waveui throws away.

In a sandbox the repository is read-only, yet a task's own ``git add``
writes blobs, ``git commit`` and ``git stash`` write refs, and every command
takes the index lock. So the step sees, over its worktree's admin folder
(``<git dir>/worktrees/<slot>``), a copy of it whose ``commondir`` names a
private common dir: an object directory of its own that borrows every object
of the repository through ``objects/info/alternates``, copies of ``refs``,
``logs``, ``packed-refs`` and ``config``, and links (read-only in the
sandbox) to the rest: ``hooks``, ``info``, the worktree records. Ref locks,
index and reflog writes, new objects and config edits all land in the
copies. Nothing in the environment changes, so git commands a task runs in
other repositories are unaffected.

After the step the copies are deleted: the repository, its refs and the
worktree's index are as they were, and what the task leaves is its files.
waveui commits those as for any task, so commits a task made inside the
sandbox are flattened into waveui's one commit.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from waveui.git.command import GitError, Repository

COPIED = ("refs", "logs", "packed-refs", "config")  # what a task's git commands write in the common dir


@dataclass(frozen=True)
class PrivateGit:
    """The private copies made for one step, and how the step sees them."""

    folder: Path
    binds: tuple[tuple[Path, Path], ...]  # (the copy, where the step sees it), in the order to bind them


def private_git(repository: Repository, worktree: Path, scratch: Path) -> PrivateGit | None:
    """Copies of ``worktree``'s git data in a folder of ``scratch`` (emptied first); None for no linked worktree.

    A folder that is no worktree of the repository (a task running in place)
    gets none: its git data simply stays read-only. GitError when the copies
    cannot be made (a full disk).
    """
    checkout = repository.linked_worktree(worktree)
    if checkout is None:
        return None
    folder = scratch / checkout.git_dir.name
    common, admin = folder / "common", folder / "admin"
    discard(folder)
    try:
        objects = common / "objects"
        (objects / "info").mkdir(parents=True)
        (objects / "pack").mkdir()
        (objects / "info" / "alternates").write_text(f"{repository.common_dir / 'objects'}\n", encoding="utf-8")
        for entry in repository.common_dir.iterdir():
            if entry.name == "objects":
                continue
            if entry.name not in COPIED:
                (common / entry.name).symlink_to(entry)
            elif entry.is_dir():
                shutil.copytree(entry, common / entry.name, symlinks=True, copy_function=_copy_if_there)
            else:
                shutil.copy2(entry, common / entry.name)
        shutil.copytree(checkout.git_dir, admin, symlinks=True)
        (admin / "commondir").write_text(f"{common}\n", encoding="utf-8")
    except (OSError, shutil.Error) as error:
        discard(folder)
        raise GitError(f"cannot copy the git data of {worktree} for its sandbox: {error}") from None
    return PrivateGit(folder, ((folder, folder), (admin, checkout.git_dir)))


def _copy_if_there(source: str, target: str) -> None:
    """Copy a file, unless it is gone: a ref deleted while it is copied (its lock, say) is no ref to copy."""
    try:
        shutil.copy2(source, target)
    except FileNotFoundError:
        pass


def discard(folder: Path) -> None:
    """Delete a step's private git data, if any is left."""
    shutil.rmtree(folder, ignore_errors=True)
