"""Merging finished tasks into the epic's integration branch, without a worktree or the user's checkout.

The integration branch ``waveui/<epic>`` only ever moves by
``git update-ref <ref> <new> <old>``: a merge is computed in the object
database (``git merge-tree --write-tree``, git 2.38 or later), committed with
``git commit-tree`` and published with that compare-and-swap. A conflict
therefore changes nothing at all, and no checkout, index or current branch of
the user's is read or written.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from waveui.engine.worktrees import (GitError, integration_branch, open_repo, run_git, same_path,
                                     worktree_list)
from waveui.plan.conflicts import glob_regex, is_glob, normalise

__all__ = ["GitError", "Integrator", "MergeResult"]

MIN_GIT = (2, 38)  # merge-tree --write-tree
_CAS_ATTEMPTS = 5  # another process moving the branch between our read and our swap is rare


@dataclass
class MergeResult:
    ok: bool
    commit: str  # the new integration tip; on a conflict the unchanged one
    conflicted: list[str]  # files in conflict, empty when ok


class Integrator:
    """The integration branch of one epic, and committing and merging the tasks' work into it."""

    def __init__(self, repo_root: Path, epic: str, base: str | None):
        self.repo = open_repo(Path(repo_root))
        self.repo_root = Path(self.repo.working_tree_dir).resolve()
        if self.repo.git.version_info < MIN_GIT:
            raise GitError(f"waveui needs git {'.'.join(map(str, MIN_GIT))} or later to merge "
                           f"(this is git {'.'.join(map(str, self.repo.git.version_info))})")
        self.branch = integration_branch(epic)
        self.ref = f"refs/heads/{self.branch}"
        self.base = base
        self.base_name: str | None = None  # what the branch started from, once ensure_branch created it
        self._lock = threading.Lock()  # one merge at a time in this process; the CAS guards against others
        self._identity_args: list[str] | None = None

    # ---------------------------------------------------------------- branch

    def ensure_branch(self) -> str:
        """Create the integration branch from the base unless it exists (a resumed run); its tip."""
        tip = self._resolve(self.ref)
        if tip:
            return tip
        name, start = self._base_commit()
        # An empty old value: create only if still missing, so a concurrent creator wins cleanly.
        status, _, _ = run_git(self.repo_root, "update-ref", "-m", f"waveui: integration branch from {name}",
                               self.ref, start, "", ok=(0, 1, 128))
        tip = self._resolve(self.ref)
        if tip is None:
            raise GitError(f"could not create the branch {self.branch}")
        if status == 0:
            self.base_name = name
        return tip

    def set_aside(self, label: str) -> str | None:
        """Move an existing integration branch to ``waveui/<epic>@_<label>`` (for a fresh start); its new name.

        Nothing is deleted: the old work stays on that branch. Task ids start
        with a letter or digit, so an ``@_`` name never clashes with a task's.
        """
        tip = self._resolve(self.ref)
        if tip is None:
            return None
        kept = f"{self.branch}@_{label}"
        run_git(self.repo_root, "update-ref", "-m", "waveui: set aside for a fresh run", f"refs/heads/{kept}", tip, "")
        run_git(self.repo_root, "update-ref", "-d", self.ref, tip)
        return kept

    def branch_tip(self, branch: str) -> str | None:
        """The commit a branch points at, or None when there is no such branch."""
        return self._resolve(f"refs/heads/{branch}")

    def tip(self) -> str:
        tip = self._resolve(self.ref)
        if tip is None:
            raise GitError(f"the integration branch {self.branch} does not exist")
        return tip

    def _base_commit(self) -> tuple[str, str]:
        if self.base:
            sha = self._resolve(self.base)
            if sha is None:
                raise GitError(f"base {self.base!r} is not a commit in {self.repo_root}")
            return self.base, sha
        sha = self._resolve("HEAD")
        if sha is None:
            raise GitError(f"the repository {self.repo_root} has no commits yet: "
                           "commit something first, then run the epic")
        status, out, _ = run_git(self.repo_root, "symbolic-ref", "-q", "--short", "HEAD", ok=(0, 1))
        return (out.strip() if status == 0 else sha), sha

    def _resolve(self, rev: str) -> str | None:
        status, out, _ = run_git(self.repo_root, "rev-parse", "--verify", "--quiet", "--end-of-options",
                                 f"{rev}^{{commit}}", ok=(0, 1, 128))
        return out.strip() if status == 0 and out.strip() else None

    # ------------------------------------------------------------ committing

    def commit_task(self, wt_path: Path, message: str, start: str | None = None) -> str | None:
        """Commit everything in the task's worktree on its branch; the commit, or None if nothing changed.

        Given ``start`` (the commit the task began at), a task whose agent
        committed its own work and left nothing uncommitted gives the branch tip
        instead of None. Hooks are skipped: the epic's verify command is the check.
        """
        run_git(wt_path, "add", "-A")
        staged, _, _ = run_git(wt_path, "diff", "--cached", "--quiet", ok=(0, 1))
        if staged == 1:
            run_git(wt_path, *self._identity(), "commit", "-q", "--no-verify", "-m", message)
        _, head, _ = run_git(wt_path, "rev-parse", "HEAD")
        head = head.strip()
        if staged == 1 or (start is not None and head != self._resolve(start)):
            return head
        return None

    def _identity(self) -> list[str]:
        """``-c user.name=... -c user.email=...`` for whichever the repository has not configured."""
        if self._identity_args is None:
            args = []
            for key, default in (("user.name", "waveui"), ("user.email", "waveui@localhost")):
                status, out, _ = run_git(self.repo_root, "config", "--get", key, ok=(0, 1))
                if status != 0 or not out.strip():
                    args += ["-c", f"{key}={default}"]
            self._identity_args = args
        return self._identity_args

    # ------------------------------------------------------------- inspecting

    def changed_files(self, start: str, commit: str) -> list[str]:
        """Paths changed between two commits; a rename counts as both of its paths."""
        _, out, _ = run_git(self.repo_root, "diff", "--name-only", "--no-renames", "-z", start, commit, "--")
        return [p for p in out.split("\0") if p]

    @staticmethod
    def undeclared(changed: list[str], affected_files: list[str]) -> list[str]:
        """The changed paths that no declared path or glob covers, as the planner reads them.

        ``*`` ``?`` ``[..]`` stay within a folder, ``**`` crosses folders, a
        trailing ``/`` means the whole folder; a plain path covers that file only.
        """
        literals, patterns = set(), []
        for declared in affected_files:
            path = normalise(declared)
            if is_glob(path):
                patterns.append(glob_regex(path))
            else:
                literals.add(path)
        return [p for p in changed
                if normalise(p) not in literals and not any(r.match(normalise(p)) for r in patterns)]

    def is_merged(self, task_branch: str) -> bool:
        """Whether the task branch's tip is already in the integration branch (resuming after a crash)."""
        task_tip = self._resolve(f"refs/heads/{task_branch}")
        tip = self._resolve(self.ref)
        return task_tip is not None and tip is not None and self._is_ancestor(task_tip, tip)

    def _is_ancestor(self, a: str, b: str) -> bool:
        status, _, _ = run_git(self.repo_root, "merge-base", "--is-ancestor", a, b, ok=(0, 1))
        return status == 0

    # ---------------------------------------------------------------- merging

    def merge(self, task_branch: str, message: str) -> MergeResult:
        """Merge the task branch into the integration branch as one merge commit.

        On a conflict no ref moves and nothing is written that anyone sees: the
        result names the conflicted files and both branches stay as they were.
        A branch already merged gives ok with the tip unchanged.
        """
        task_tip = self._resolve(f"refs/heads/{task_branch}")
        if task_tip is None:
            raise GitError(f"task branch {task_branch} does not exist")
        with self._lock:
            for _ in range(_CAS_ATTEMPTS):
                self._refuse_if_checked_out()
                tip = self.tip()
                if self._is_ancestor(task_tip, tip):
                    return MergeResult(True, tip, [])
                if self._is_ancestor(tip, task_tip):
                    # Nothing happened on the branch since the task started: the result is the task's tree.
                    _, tree, _ = run_git(self.repo_root, "rev-parse", f"{task_tip}^{{tree}}")
                else:
                    status, out, _ = run_git(self.repo_root, "merge-tree", "--write-tree", "--name-only", "-z",
                                             tip, task_tip, ok=(0, 1))
                    tree, conflicted = _parse_merge_tree(out)
                    if status == 1:
                        return MergeResult(False, tip, conflicted or ["(merge conflict; no file named by git)"])
                # Two parents even on the fast path (--no-ff): every task is exactly one merge.
                _, new, _ = run_git(self.repo_root, *self._identity(), "commit-tree", tree.strip(),
                                    "-p", tip, "-p", task_tip, "-m", message)
                new = new.strip()
                status, _, _ = run_git(self.repo_root, "update-ref", "-m", f"waveui: merge {task_branch}",
                                       self.ref, new, tip, ok=(0, 1, 128))
                if status == 0:
                    return MergeResult(True, new, [])
                # The branch moved between our read and our swap: merge again onto its new tip.
        raise GitError(f"the branch {self.branch} kept moving while merging {task_branch}")

    def _refuse_if_checked_out(self) -> None:
        """Moving a branch someone has checked out would make their checkout look changed: refuse."""
        for entry in worktree_list(self.repo_root):
            if entry.get("branch") == self.ref:
                where = entry.get("worktree", "?")
                whose = "your checkout" if same_path(Path(where), self.repo_root) else where
                raise GitError(f"the integration branch {self.branch} is checked out in {whose}; "
                               "switch that checkout to another branch so waveui can merge into it")


def _parse_merge_tree(out: str) -> tuple[str, list[str]]:
    """The tree and the conflicted files from ``merge-tree --write-tree --name-only -z`` output.

    Layout: ``tree NUL (file NUL)* NUL`` then messages, each ``count NUL path NUL... type NUL text NUL``.
    """
    fields = out.split("\0")
    tree, files, i = fields[0], [], 1
    while i < len(fields) and fields[i]:
        files.append(fields[i])
        i += 1
    # The messages name the paths a conflict is about, where the list may give only
    # a copy moved aside (a file against a folder lists just "thing~<commit>").
    i += 1
    while i < len(fields) and fields[i].isdigit():
        count = int(fields[i])
        paths = fields[i + 1 : i + 1 + count]
        kind = fields[i + 1 + count] if i + 1 + count < len(fields) else ""
        if kind.startswith("CONFLICT"):
            files.extend(p for p in paths if p not in files)
        i += count + 3
    return tree, files
