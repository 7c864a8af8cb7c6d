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

from waveui.git.worktrees import integration_branch, open_repository, same_path
from waveui.git.command import MIN_VERSION, GitError
from waveui.core.paths import uncovered

__all__ = ["GitError", "Integrator", "MergeBlocked", "MergeResult", "RefMoved"]

_CAS_ATTEMPTS = 5  # a swap lost to a concurrent writer of the same value is retried; any other move is not
ATTEMPT_DIFF_LIMIT = 60_000  # characters of an attempt's diff shown to its retry: enough to go on, not a flood


class RefMoved(GitError):
    """The integration branch is not where waveui last put it: something else rewrote or moved it."""


class MergeBlocked(GitError):
    """The merge cannot happen now (the branch is checked out somewhere); the task's commit waits for it."""


@dataclass
class MergeResult:
    ok: bool
    commit: str  # the new integration tip; on a conflict the unchanged one
    conflicted: list[str]  # files in conflict, empty when ok


class Integrator:
    """The integration branch of one epic, and committing and merging the tasks' work into it."""

    def __init__(self, repo_root: Path, epic: str, base: str | None):
        self.repository = open_repository(Path(repo_root))
        self.repo_root = self.repository.root
        version = self.repository.version()
        if version < MIN_VERSION:
            raise GitError(f"waveui needs git {'.'.join(map(str, MIN_VERSION))} or later to merge "
                           f"(this is git {'.'.join(map(str, version))})")
        self.branch = integration_branch(epic)
        self.ref = f"refs/heads/{self.branch}"
        self.base = base
        self.base_name: str | None = None  # what the branch started from, once ensure_branch created it
        self.expected: str | None = None  # where waveui last put (or found and accepted) the branch
        self._lock = threading.Lock()  # one merge at a time in this process; the CAS guards against others

    # ---------------------------------------------------------------- branch

    def ensure_branch(self) -> str:
        """Create the integration branch from the base unless it exists (a resumed run); its tip."""
        tip = self._resolve(self.ref)
        if tip:
            self.expected = tip
            return tip
        name, start = self._base_commit()
        # An empty old value: create only if still missing, so a concurrent creator wins cleanly.
        status = self.repository.run("update-ref", "-m", f"waveui: integration branch from {name}",
                                     self.ref, start, "", ok=(0, 1, 128)).status
        tip = self._resolve(self.ref)
        if tip is None:
            raise GitError(f"could not create the branch {self.branch}")
        if status == 0:
            self.base_name = name
        self.expected = tip
        return tip

    def accept(self, tip: str) -> None:
        """Take ``tip`` as where the branch is meant to be (checked by the caller: a resume)."""
        self.expected = tip

    def check_unmoved(self) -> str:
        """The branch's tip, or RefMoved when it is not where waveui last put it."""
        # Read from the ref's file first: every task's start asks, and a git process costs milliseconds.
        if self.expected is not None and self.repository.loose_ref(self.ref) == self.expected:
            return self.expected
        tip = self._resolve(self.ref)
        if tip is not None and tip == self.expected:
            return tip
        # A merge of this process may be between moving the branch and noting where it put it: under
        # its lock the two agree, so only a move by someone else is taken for one.
        with self._lock:
            return self._unmoved(self._resolve(self.ref))

    def _unmoved(self, tip: str | None) -> str:
        """``tip``, just read from the branch, or RefMoved (see :meth:`check_unmoved`)."""
        if self.expected is not None and tip != self.expected:
            raise RefMoved(_moved_message(self.branch, self.expected, tip))
        if tip is None:
            raise GitError(f"the integration branch {self.branch} does not exist")
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
        self.repository.run("update-ref", "-m", "waveui: set aside for a fresh run", f"refs/heads/{kept}", tip, "")
        self.repository.run("update-ref", "-d", self.ref, tip)
        self.expected = None
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
        found = self.repository.run("symbolic-ref", "-q", "--short", "HEAD", ok=(0, 1))
        return (found.out.strip() if found.status == 0 else sha), sha

    def _resolve(self, rev: str) -> str | None:
        return self.repository.resolve(rev)

    # ------------------------------------------------------------- inspecting

    def changed_files(self, start: str, commit: str) -> list[str]:
        """Paths changed between two commits; a rename counts as both of its paths."""
        out = self.repository.run("diff", "--name-only", "--no-renames", "-z", start, commit, "--").out
        return [p for p in out.split("\0") if p]

    @staticmethod
    def undeclared(changed: list[str], affected_files: list[str]) -> list[str]:
        """The changed paths that no declared path or glob covers, as the planner reads them."""
        return uncovered(changed, affected_files)

    def is_merged(self, task_branch: str) -> bool:
        """Whether the task branch's tip is already in the integration branch (resuming after a crash)."""
        task_tip = self._resolve(f"refs/heads/{task_branch}")
        tip = self._resolve(self.ref)
        return task_tip is not None and tip is not None and self._is_ancestor(task_tip, tip)

    def _is_ancestor(self, a: str, b: str) -> bool:
        return self.repository.is_ancestor(a, b)

    def already_applied(self, commit: str, base: str) -> bool:
        """Whether the changes ``base..commit`` are on the integration tip already, however they got there.

        True when the commit is in the tip's history (merged by hand), or when
        applying its changes to the tip changes nothing (squash-merged or
        cherry-picked). ``base`` must be in the tip's history, as a task's start
        point is; later edits on the tip to the same lines make it answer False.
        """
        tip = self.tip()
        if self._is_ancestor(commit, tip):
            return True
        if not self._is_ancestor(base, tip):
            return False
        # merge-tree takes a merge base of its own only from git 2.40: a commit of the attempt's
        # tree straight on ``base`` makes ``base`` the merge base (it is in the tip's history).
        on_base = self.repository.run(*self.repository.identity(), "commit-tree", f"{commit}^{{tree}}", "-p", base,
                                      "-m", "waveui: changes to compare").out.strip()
        merged = self.repository.run_on_history("merge-tree", "--write-tree", "--name-only", "-z", tip, on_base,
                                                ok=(0, 1))
        tree, _ = parse_merge_tree(merged.out)
        return merged.status == 0 and tree == self.repository.run("rev-parse", f"{tip}^{{tree}}").out.strip()

    def attempt_diff(self, base: str, commit: str, limit: int = ATTEMPT_DIFF_LIMIT) -> str:
        """``git diff base commit``: what an attempt changed, for its retry to read; cut at ``limit`` characters."""
        diff = self.repository.run_on_history("diff", "--no-color", "--no-ext-diff", "--no-textconv", base,
                                              commit, "--").out
        if len(diff) <= limit:
            return diff
        shown = diff[:limit].rpartition("\n")[0] + "\n"
        return (shown + f"[the diff goes on: {len(shown)} of its {len(diff)} characters shown; "
                        f"`git diff {base[:12]} {commit[:12]}` gives all of it]\n")

    # ---------------------------------------------------------------- merging

    def merge(self, task_branch: str, message: str) -> MergeResult:
        """Merge the task branch into the integration branch as one merge commit.

        On a conflict no ref moves and nothing is written that anyone sees: the
        result names the conflicted files and both branches stay as they were.
        A branch already merged gives ok with the tip unchanged. The swap is
        made against the tip waveui last wrote, so a branch that something
        else moved meanwhile raises RefMoved instead of being built upon;
        a branch checked out somewhere raises MergeBlocked (try again later).
        """
        return self._publish(f"refs/heads/{task_branch}", message, task_branch, fast_forward=False)

    def merge_resolved(self, commit: str, message: str) -> MergeResult:
        """Publish a merge commit in which a task's conflict was resolved.

        Built on the current tip (its first parent, usually), the branch moves to
        it by the same compare-and-swap as ``merge``; when other tasks were merged
        meanwhile, it is merged like a task's branch, and a new conflict is
        reported as usual. RefMoved and MergeBlocked as for ``merge``.
        """
        return self._publish(commit, message, f"the resolved merge {commit[:12]}", fast_forward=True)

    def _publish(self, rev: str, message: str, what: str, fast_forward: bool) -> MergeResult:
        """Merge ``rev`` into the integration branch; with ``fast_forward``, a commit built on the tip becomes it.

        Every git process counts on the way from a task's end to its dependents' start: the
        names are read in one, and one merge-base tells both ways of ancestry, or none is needed.
        """
        with self._lock:
            for _ in range(_CAS_ATTEMPTS):
                self._refuse_if_checked_out()
                found, commit, tree, parent = self.repository.resolve_all(
                    f"{self.ref}^{{commit}}", f"{rev}^{{commit}}", f"{rev}^{{tree}}", f"{rev}^1^{{commit}}")
                if commit is None:
                    raise GitError(f"task branch {what} does not exist" if rev.startswith("refs/heads/")
                                   else f"{what} is not a commit in {self.repo_root}")
                tip = self._unmoved(found)
                if parent == tip:  # built right on the tip, as a task is when nothing was merged since it started
                    bases = [tip]
                else:
                    bases = self.repository.run("merge-base", "--all", tip, commit, ok=(0, 1)).out.split()
                if bases == [commit]:  # already in the branch
                    return MergeResult(True, tip, [])
                if fast_forward and bases == [tip]:
                    new = commit
                else:
                    new, conflicted = self._merge_commit(tip, commit, message, tree if bases == [tip] else None)
                    if new is None:
                        return MergeResult(False, tip, conflicted)
                swapped = self.repository.run("update-ref", "-m", f"waveui: merge {what}",
                                              self.ref, new, tip, ok=(0, 1, 128)).status
                if swapped == 0:
                    self.expected = new
                    return MergeResult(True, new, [])
                # Lost the swap: check_unmoved names whoever moved it on the next round.
        raise GitError(f"the branch {self.branch} kept moving while merging {what}")

    def _merge_commit(self, tip: str, commit: str, message: str,
                      tree: str | None = None) -> tuple[str | None, list[str]]:
        """A merge commit of ``commit`` onto ``tip``, made in the object database; None and the files in conflict.

        ``tree`` is the commit's tree when the tip is in its history: nothing happened on the branch
        since the task started, so that is the merge's result.
        """
        if tree is None:
            merged = self.repository.run_on_history("merge-tree", "--write-tree", "--name-only", "-z",
                                                    tip, commit, ok=(0, 1))
            tree, conflicted = parse_merge_tree(merged.out)
            if merged.status == 1:
                return None, conflicted or ["(merge conflict; no file named by git)"]
        # Two parents even on the fast path (--no-ff): every task is exactly one merge.
        new = self.repository.run(*self.repository.identity(), "commit-tree", tree.strip(),
                                  "-p", tip, "-p", commit, "-m", message).out.strip()
        return new, []

    def _refuse_if_checked_out(self) -> None:
        """Moving a branch someone has checked out would make their checkout look changed: wait instead."""
        checked_out = self.repository.checked_out()
        if checked_out is None:
            checked_out = {entry["branch"]: Path(entry.get("worktree", "?"))
                           for entry in self.repository.worktrees() if "branch" in entry}
        if self.ref in checked_out:
            where = checked_out[self.ref]
            whose = "your checkout" if same_path(where, self.repo_root) else str(where)
            raise MergeBlocked(f"the integration branch {self.branch} is checked out in {whose}; "
                               "switch that checkout to another branch and the merge goes on")


def _moved_message(branch: str, expected: str, found: str | None) -> str:
    now = "deleted" if found is None else f"moved to {found[:12]}"
    return (f"the integration branch {branch} was {now} by something other than waveui "
            f"(waveui left it at {expected[:12]}); the run stopped rather than build on it")


def parse_merge_tree(out: str) -> tuple[str, list[str]]:
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
