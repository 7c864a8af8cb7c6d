"""A pool of git worktrees that tasks borrow, so checkouts, ignored folders and setup survive between tasks.

Each slot is a linked worktree ``.waveui/worktrees/slot-N``. A task borrows a
slot and gets its own branch there; when the task is done the slot is cleaned
and handed to the next task, whose checkout rewrites only the files that
differ. ``git clean -fd`` (never ``-x``) keeps ignored folders such as
``node_modules`` or ``.venv``, so a setup command runs once per slot and again
only when its inputs change.

Branch names are in :mod:`waveui.git.names`.

Every method is a plain blocking call, safe to run from several threads at
once (the engine calls them through ``asyncio.to_thread``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import psutil

from waveui.run.journal import ensure_private_dir, waveui_dir
from waveui.core.occupancy import slot_in_use
from waveui.git.preflight import exclude_waveui
from waveui.git.command import OBJECT_ID, Checkout, GitError, Repository
from waveui.core.paths import check_name, name_problem
from waveui.git.names import attempt_ref, integration_branch, task_branch  # noqa: F401  (part of the pool's API)

__all__ = ["BrokenSlot", "GitError", "Released", "SetupResult", "Worktree", "WorktreePool", "attempt_ref",
           "integration_branch", "task_branch"]

BRANCH_SWITCH_WAIT_SECONDS = 30.0
STALE_LOCK_SECONDS = 5.0  # an index.lock this old is stale even if some git process is about
_SLOT_NAME = re.compile(r"slot-(\d+)\Z")
# Left behind when an agent was stopped in the middle of one of these.
_OPERATION_LEFTOVERS = ("rebase-merge", "rebase-apply", "sequencer", "MERGE_HEAD", "CHERRY_PICK_HEAD",
                        "REVERT_HEAD", "BISECT_LOG")


# ------------------------------------------------------------------- names


def open_repository(repo_root: Path) -> Repository:
    """The repository whose top folder is ``repo_root``, with a working tree; GitError otherwise."""
    try:
        return Repository.open(Path(repo_root))
    except GitError:
        raise GitError(f"{repo_root} is not a git repository (or not its top folder)") from None


# ------------------------------------------------------------------- the pool


@dataclass
class Worktree:
    slot: int
    path: Path
    branch: str
    task_id: str = ""


@dataclass
class SetupResult:
    ran: bool  # False: skipped, the slot's setup was already done for these inputs
    seconds: float  # wall time of ensure_setup, the input check included
    exit_code: int  # 0 when skipped; negative when killed by a signal (a timeout kills)


@dataclass(frozen=True)
class Released:
    ok: bool  # the slot was cleaned and freed; False: the next acquire of it saves what is left and repairs it
    kept: str | None  # the attempt's work, now under its ref; None when it held nothing beyond its start point
    ref: str | None  # that ref, ``refs/waveui/<epic>/<task>/<attempt>``; None when nothing was kept


@dataclass
class _Slot:
    number: int
    path: Path
    busy: bool = False
    releasing: bool = False  # being cleaned for the next task: free in a moment
    branch: str | None = None  # checked out there, as far as we know
    clean: bool = False  # left clean by this pool: nothing in it needs saving before reuse
    ours: bool = False  # made or lent by this pool: no step of an earlier waveui can still run in it
    start: str | None = None  # the commit the lent-out task started from, when known
    tip: str | None = None  # the commit ``acquire`` put the task's branch and HEAD on (its start, or a kept attempt)
    tip_tree: str | None = None  # that commit's tree
    kept_as: tuple[int, str] | None = None  # the attempt whose ref ``commit`` pointed at a commit, and that commit
    task_commit: str | None = None  # what ``commit`` made of the task's work (its start when nothing changed)


# Runs a setup command to its end in a folder: (command, folder, env, log file or None, timeout) -> exit status.
SetupRunner = Callable[[str, Path, dict, "Path | None", "float | None"], int]


class BrokenSlot(GitError):
    """A slot that is no longer the worktree waveui made (its folder or ``.git`` gone or replaced)."""


class WorktreePool:
    """Worktrees under ``<repo_root>/.waveui/worktrees/``, lent to one task at a time.

    Slots left by an earlier waveui process are found on start and reused.
    Before any command that changes files, the slot is checked to still be the
    worktree waveui made (:meth:`Repository.linked_worktree`), and the command
    names that worktree's own git dir and folder, so a slot whose folder or
    ``.git`` a task deleted can never send a reset or a clean into the user's
    checkout. A broken slot is set aside (never deleted: what the task left in
    it stays there) and rebuilt. Nothing is reset while only the worktree holds
    it: an attempt's work is first committed to ``refs/waveui/<epic>/<task>/<n>``.
    """

    def __init__(self, repo_root: Path, epic: str, setup: str | None, setup_inputs: list[str],
                 log_dir: Path | None = None, on_notice: Callable[[str], None] | None = None,
                 run_setup: SetupRunner | None = None):
        self.repository = open_repository(Path(repo_root))
        self.repo_root = self.repository.root
        self.epic = check_name("epic name", epic)
        self.setup = setup or None
        if self.setup and run_setup is None:
            raise ValueError("a pool with a setup command needs a run_setup to run it")
        self.run_setup = run_setup
        self.setup_inputs = [_check_input_pattern(p) for p in setup_inputs]
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.common_dir = self.repository.common_dir
        self.on_notice = on_notice or (lambda _text: None)
        ensure_private_dir(waveui_dir(self.repo_root))
        self.root = ensure_private_dir(waveui_dir(self.repo_root) / "worktrees")
        exclude_waveui(self.common_dir)
        self._lock = threading.Lock()  # guards the slot table
        self._released = threading.Condition(self._lock)  # a slot being released is free now
        self._admin = threading.Lock()  # one `git worktree add/prune/repair` at a time
        self._slots: dict[int, _Slot] = {}
        self._discover()

    # ------------------------------------------------------------ public API

    def acquire(self, task_id: str, start_point: str, resume_from: str | None = None) -> Worktree:
        """A worktree on a fresh branch ``waveui/<epic>@<task_id>`` at ``start_point``, clean.

        With ``resume_from`` (an earlier attempt's kept commit, built on
        ``start_point``) the branch, HEAD and files are that commit instead, so
        the task goes on where the attempt left off; ``commit`` against
        ``start_point`` then holds the old attempt's work and the new.

        An existing branch of that name (an earlier attempt) is moved; its old
        tip is kept under ``refs/waveui/`` first unless a ref there or the new
        tip already holds it.
        """
        branch = task_branch(self.epic, task_id)
        with self._lock:
            slot = self._choose(branch)
            slot.busy = True
        try:
            checkout = self.repository.linked_worktree(slot.path)
            slot_head = _head_revision(checkout) if checkout is not None else None
            # One git process for every name the acquire needs, the slot's HEAD among them (see
            # Checkout.resolve_all).
            tip_rev = resume_from or start_point
            commit, tip, tip_tree, branch_tip, *head = self.repository.resolve_all(
                f"{start_point}^{{commit}}", f"{tip_rev}^{{commit}}", f"{tip_rev}^{{tree}}",
                f"refs/heads/{branch}^{{commit}}", *([slot_head] if slot_head else []))
            for rev, found in ((start_point, commit), (resume_from, tip)):
                if found is None:
                    raise GitError(f"start point {rev!r} is not a commit in {self.repo_root}")
            if commit != tip and not self.repository.is_ancestor(commit, tip):
                raise GitError(f"{resume_from!r} is not built on the start point {start_point!r}: "
                               "an attempt can only be resumed on the commit it started from")
            head_is_commit = head[0] is not None if head else None
            checkout = self._make_ready(slot, commit, checkout, head_is_commit)
            self._free_branch(branch, slot)
            cleaned = slot.clean  # by this pool's release, and nothing ran in it since
            if not cleaned:
                checkout = self._save_leftovers(slot, checkout, commit)
            keep_old_tip(self.repository, self.epic, task_id, branch_tip, tip)
            checkout.run("checkout", "-q", "-f", "-B", branch, tip, "--")
            if not cleaned:  # a forced checkout of a clean slot leaves it clean
                self._clean(slot, checkout)
            slot.branch = branch
            slot.clean = False
            slot.ours = True
            slot.start, slot.task_commit = commit, None
            slot.tip, slot.tip_tree = tip, tip_tree
        except BaseException:
            with self._lock:
                slot.busy = False
            raise
        return Worktree(slot.number, slot.path, branch, task_id)

    def adopt(self, task_id: str, start_point: str | None = None) -> Worktree | None:
        """Lend the slot that still holds this task's branch (a task a killed waveui left running), if any.

        ``start_point`` is the commit the task started from, if known: ``release``
        then tells an attempt that did nothing from one that did.
        """
        branch = task_branch(self.epic, task_id)
        with self._lock:
            for slot in self._slots.values():
                if slot.branch == branch and not slot.busy and slot.path.is_dir():
                    slot.busy = slot.ours = True
                    slot.start, slot.task_commit = start_point and self.repository.resolve(start_point), None
                    return Worktree(slot.number, slot.path, branch, task_id)
        return None

    def checkout_of(self, wt: Worktree) -> Checkout:
        """The task's worktree, verified to still be the one waveui made; BrokenSlot otherwise."""
        checkout = self.repository.linked_worktree(wt.path)
        if checkout is None:
            raise BrokenSlot(f"the worktree {wt.path} of {wt.branch} is gone or no longer a worktree of "
                             f"{self.repo_root} (deleted or replaced while the task ran)")
        return checkout

    def commit(self, wt: Worktree, start: str, message: str, keep_out: tuple[str, ...] = (),
               attempt: int | None = None) -> str | None:
        """Commit what the worktree holds onto the task's branch; the commit, or None if nothing changed.

        With ``attempt``, the commit is kept under the attempt's ref at once
        (``release`` would keep it there otherwise).

        Files matching ``keep_out`` (gitignore-style patterns: the files an
        agent writes for itself, such as aider's ``.aider*``) are not staged;
        the slot's clean removes them as it removes ignored files.

        Whatever the task did with git in its worktree (commits on its branch,
        a detached HEAD, a switch to a branch of its own) its work ends up on
        the branch waveui gave it: the commit's tree is the worktree's files,
        its parent the task's HEAD. A HEAD not built on ``start`` (the task
        checked out something else) fails with a reason; the attempt's ref
        keeps the work. Hooks never run.
        """
        checkout = self.checkout_of(wt)
        ref = f"refs/heads/{wt.branch}"
        nested = _stage_all(checkout, keep_out)
        if nested:
            self.on_notice(f"{wt.branch}: {', '.join(nested)} {'is a repository' if len(nested) == 1 else 'are repositories'}"
                           " of its own inside the worktree, not committed; kept under .waveui/worktrees/set-aside/")
        tree = checkout.run("write-tree").out.strip()
        slot = self._slots[wt.slot]
        if (slot.tip is not None and start == slot.start and _read_head(checkout) == f"ref: {ref}"
                and self.repository.loose_ref(ref) == slot.tip):
            # HEAD and branch where acquire put them (the task made no commit of its own): known already.
            head = tip = slot.tip
            start_commit, head_tree = slot.start, slot.tip_tree
        else:
            head, start_commit, head_tree, tip = checkout.resolve_all("HEAD^{commit}", f"{start}^{{commit}}",
                                                                       "HEAD^{tree}", f"{ref}^{{commit}}")
        if start_commit is None:
            raise GitError(f"start point {start!r} is not a commit in {self.repo_root}")
        slot.start = start_commit
        if head is None or not (head == start_commit or self.repository.is_ancestor(start_commit, head)):
            where = _head_name(checkout) or "an unrelated commit"
            raise GitError(f"the task left its worktree on {where}, not built on the commit it started from; "
                           "its work is kept under refs/waveui/")
        if tree == head_tree:
            if head == start_commit:
                slot.task_commit = slot.start
                return None
            new = head  # the task committed everything itself
        else:
            new = checkout.run(*self.repository.identity(), "commit-tree", tree, "-p", head, "-m", message).out.strip()
        # The branch's tip is HEAD or behind it unless the task moved the branch elsewhere.
        if tip is not None and tip not in (new, head) and not self.repository.is_ancestor(tip, new):
            # The branch went somewhere else than HEAD (the task moved it): keep that line too.
            self.repository.run("update-ref", "-m", "waveui: branch moved by the task",
                                attempt_ref(self.epic, wt.task_id or wt.branch.rpartition("@")[2], f"moved-{tip[:12]}"),
                                tip)
        # The branch moves by compare-and-swap (a zero id: it must not exist); the attempt's ref, if
        # given, in the same transaction: one git process, and neither moves without the other.
        moves = [f"update {ref} {new} {tip or '0' * len(new)}\n"]
        if attempt is not None:
            moves.append(f"update {self._attempt_ref(wt, attempt)} {new}\n")
        self.repository.run("update-ref", "-m", "waveui: task commit", "--stdin", input="".join(moves))
        slot.kept_as = (attempt, new) if attempt is not None else None
        if _read_head(checkout) != f"ref: {ref}":
            checkout.run("symbolic-ref", "HEAD", ref)  # on its branch again, index and files as committed
        slot.task_commit = new
        return new

    def take_leftovers(self, task_id: str, start: str) -> str | None:
        """Move the task's branch from ``start`` to the work a reused slot kept for it; that commit, or None.

        A task whose command finished while no waveui followed it leaves its
        work in its slot; whichever run reuses the slot first keeps that work
        under ``refs/waveui/<epic>/<task>/left-*`` (see ``_save_leftovers``).
        The newest such commit built on ``start`` is the task's work.
        """
        branch_ref = f"refs/heads/{task_branch(self.epic, task_id)}"
        prefix = f"refs/waveui/{self.epic}/{check_name('task id', task_id)}/"
        out = self.repository.run("for-each-ref", "--sort=-creatordate", "--format=%(objectname) %(refname)",
                                  prefix).out
        for line in out.splitlines():
            commit, _, name = line.partition(" ")
            if name.startswith(prefix + "left-") and commit != start and self.repository.is_ancestor(start, commit):
                moved = self.repository.run("update-ref", "-m", "waveui: work kept from a reused slot",
                                            branch_ref, commit, start, ok=(0, 1, 128))
                return commit if moved.status == 0 else None
        return None

    def save_attempt(self, wt: Worktree, attempt: int, message: str) -> str | None:
        """Commit everything the worktree holds (untracked files too) to the attempt's ref; its commit.

        No branch moves. Returns None, and keeps nothing, when the slot is
        broken (there is nothing waveui may read there), has no commit to
        build on, or holds nothing beyond the commit the task started from.
        """
        checkout = self.repository.linked_worktree(wt.path)
        if checkout is None:
            return None
        commit = self._snapshot(checkout, message, fallback=f"refs/heads/{wt.branch}")
        return self._keep_attempt(wt, attempt, commit)

    def release(self, wt: Worktree, attempt: int | None = None) -> Released:
        """Keep the attempt's work under ``refs/waveui/``, clean the worktree, detach it, free the slot.

        The attempt's work is the task's commit when ``commit`` made one (a
        task merged or in conflict), else everything the worktree holds (a task
        failed, timed out or stopped). Never raises for a git failure: ``ok`` is
        False and the next ``acquire`` of the slot saves whatever is left and
        repairs it. A slot that is no longer waveui's worktree is reported and
        never touched.
        """
        slot = self._slots.get(wt.slot)
        if slot is None or not slot.busy:
            raise ValueError(f"slot {wt.slot} is not lent out")
        with self._lock:
            slot.releasing = True
        cleaned, kept = False, None
        try:
            if attempt is not None and slot.task_commit is not None:
                # Kept even if the folder is gone since: the commit is in the repository, not the worktree.
                kept = (slot.task_commit if slot.kept_as == (attempt, slot.task_commit)
                        else self._keep_attempt(wt, attempt, slot.task_commit))
            checkout = self.repository.linked_worktree(slot.path)
            if checkout is None:
                self.on_notice(f"worktree {slot.path} was deleted or replaced during {wt.branch}; "
                               "it is set aside and rebuilt, never repaired through your checkout")
                return Released(False, kept, kept and self._attempt_ref(wt, attempt))
            self._clear_stale_lock(slot.path, checkout.git_dir)
            _remove_leftovers(checkout.git_dir)
            if attempt is not None:
                if slot.task_commit is None:
                    kept = self.save_attempt(wt, attempt, f"waveui: {wt.branch} attempt {attempt}, as it was left")
                self._tell_ignored_left(slot, checkout, wt.branch)
            else:
                self._save_leftovers(slot, checkout, "HEAD")
            self._set_aside_nested(slot, checkout)
            # Detached, the slot holds no branch: the task's branch can be reset or
            # checked out elsewhere, and merging never needs this folder.
            self._clean(slot, checkout, detach=True)
            slot.branch = None
            slot.clean = True
            cleaned = True
        except GitError as error:
            self.on_notice(f"could not clean {slot.path}: {error.message}")
        finally:
            with self._lock:
                slot.busy = slot.releasing = False
                slot.start = slot.task_commit = slot.tip = slot.tip_tree = slot.kept_as = None
                self._released.notify_all()
        return Released(cleaned, kept, kept and self._attempt_ref(wt, attempt))

    def ensure_setup(self, wt: Worktree, env: dict, timeout: float | None = None,
                     run_setup: Callable | None = None) -> SetupResult:
        """Run the setup command in ``wt`` unless this slot already ran it for the same inputs.

        ``env`` is the complete environment of the command; ``run_setup``, if
        given, runs it instead of the pool's own (confined in a sandbox, say). The slot counts as
        set up only after an exit status of 0; a failed setup runs again next
        time. What setup leaves among the ignored files (``node_modules/``,
        ``.venv/``) is recorded, and cleaning keeps exactly that.
        """
        started = time.monotonic()
        if not self.setup:
            return SetupResult(False, 0.0, 0)
        digest = self.setup_hash(wt.path)
        marker = self._setup_marker(wt.slot)
        done, _ = self._read_marker(marker)
        if done == digest:
            return SetupResult(False, time.monotonic() - started, 0)
        # A setup cut short may have left half its files: not done until it succeeds.
        marker.unlink(missing_ok=True)
        code = self._run_setup(wt, env, timeout, run_setup or self.run_setup)
        if code == 0:
            checkout = self.checkout_of(wt)
            kept = _ignored_entries(checkout)
            unignored = _untracked(checkout)
            if unignored:
                self.on_notice(f"setup left files git does not ignore ({some_paths(unignored)}): they would be committed "
                               "as a task's work; add them to .gitignore")
            tmp = marker.with_name(marker.name + ".tmp")
            # Owner-only like everything under .waveui/: write_text would leave it to the umask.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(digest + "\n" + "".join(path + "\n" for path in kept))
            os.replace(tmp, marker)
        return SetupResult(True, time.monotonic() - started, code)

    def setup_hash(self, path: Path) -> str:
        """Hash of the setup command and of every setup input file found in ``path``."""
        h = hashlib.sha256()
        h.update(b"command\0" + (self.setup or "").encode() + b"\0")
        for pattern in self.setup_inputs:
            h.update(b"pattern\0" + pattern.encode() + b"\0")
            files = sorted(p for p in Path(path).glob(pattern) if p.is_file())
            if not files:
                h.update(b"missing\0")
            for file in files:
                h.update(file.relative_to(path).as_posix().encode() + b"\0")
                h.update(hashlib.sha256(file.read_bytes()).digest())
        return h.hexdigest()

    def branch_for(self, task_id: str) -> str:
        """The branch ``acquire`` gives the task: ``waveui/<epic>@<task_id>``."""
        return task_branch(self.epic, task_id)

    def slots(self) -> list[int]:
        """Slot numbers known to the pool, lent out or not (for display and tests)."""
        with self._lock:
            return sorted(self._slots)

    # --------------------------------------------------------------- slots

    def _discover(self) -> None:
        """Find the slots an earlier waveui process left, registered with git or only on disk."""
        root = self.root.resolve()
        for entry in self.repository.worktrees():
            path = Path(entry.get("worktree", ""))
            match = _SLOT_NAME.match(path.name)
            if match and same_path(path.parent, root):
                branch = entry.get("branch", "").removeprefix("refs/heads/") or None
                self._slots[int(match.group(1))] = _Slot(int(match.group(1)), root / path.name, branch=branch)
        for path in root.iterdir():
            match = _SLOT_NAME.match(path.name)
            if match and path.is_dir() and int(match.group(1)) not in self._slots:
                self._slots[int(match.group(1))] = _Slot(int(match.group(1)), path)

    def _choose(self, branch: str) -> _Slot:
        """A free slot, preferring the one that holds ``branch`` already; a new one when none is free.

        Called holding the pool's lock. A slot being released is waited for rather than a new one made:
        it is free in milliseconds, and it keeps what its setup installed, which a new one would install again.
        """
        while any(s.releasing for s in self._slots.values()) and not self._free_slots():
            self._released.wait()
        free = self._free_slots()
        for slot in free:
            if slot.branch == branch:
                return slot
        if free:
            return min(free, key=lambda s: s.number)
        number = next(n for n in range(len(self._slots) + 1) if n not in self._slots)
        slot = _Slot(number, self.root.resolve() / f"slot-{number}", ours=True)
        self._slots[number] = slot
        return slot

    def _free_slots(self) -> list[_Slot]:
        # A slot an earlier waveui left may still hold one of its tasks (a --fresh run, another epic's).
        return [s for s in self._slots.values() if not s.busy and (s.ours or not slot_in_use(s.path))]

    def _free_branch(self, branch: str, keep: _Slot) -> None:
        """Detach another idle slot still holding ``branch`` (after a crash), or refuse if it is lent out."""
        with self._lock:
            holders = [s for s in self._slots.values() if s is not keep and s.branch == branch]
        for other in holders:
            # A slot left on this branch by a crash may just have been lent to
            # another task, which is switching it away: give that a moment.
            deadline = time.monotonic() + BRANCH_SWITCH_WAIT_SECONDS
            while other.busy and other.branch == branch and time.monotonic() < deadline:
                time.sleep(0.05)
            if other.branch != branch:
                continue
            if other.busy:
                raise GitError(f"branch {branch} is in use by another task in {other.path}")
            checkout = self.repository.linked_worktree(other.path)
            if checkout is not None:
                # Detaching changes no file, so nothing the crashed task left there is lost.
                checkout.run("checkout", "-q", "--detach")
            other.branch = None

    def _make_ready(self, slot: _Slot, commit: str, checkout: Checkout | None,
                    head_is_commit: bool | None) -> Checkout:
        """The slot as a verified worktree of this repository, creating or rebuilding it.

        ``checkout`` is the slot as :meth:`Repository.linked_worktree` just found it, and
        ``head_is_commit`` whether its HEAD names a commit (None: not asked yet).
        """
        if checkout is None:
            with self._admin:
                checkout = self.repository.linked_worktree(slot.path)
                if checkout is None and (slot.path / ".git").is_file() and not slot.path.is_symlink():
                    # Moved repository or worktree: git can often relink it, keeping ignored files.
                    self.repository.run("worktree", "repair", str(slot.path), ok=(0, 1, 128))
                    checkout = self.repository.linked_worktree(slot.path)
                if checkout is None:
                    self._recreate(slot, commit)
                    checkout = self.repository.linked_worktree(slot.path)
                    if checkout is None:
                        raise BrokenSlot(f"could not create the worktree {slot.path}")
            head_is_commit = None  # of the slot as repaired or made: asked now
        if head_is_commit is None:
            head_is_commit = revision(checkout, "HEAD^{commit}") is not None
        if not head_is_commit:
            # A HEAD naming no commit (a task wrote it, or `git gc --prune=now` took its objects) fails
            # every later command in the slot, and the user's own `git gc` too: rebuild the slot.
            with self._admin:
                self.on_notice(f"{slot.path.name} had a HEAD that names no commit; set aside and rebuilt")
                self._recreate(slot, commit)
                checkout = self.repository.linked_worktree(slot.path)
                if checkout is None:
                    raise BrokenSlot(f"could not create the worktree {slot.path}")
        if (checkout.git_dir / "locked").exists():
            # Our slots are never locked on purpose; a lock only blocks pruning and re-adding.
            self.repository.run("worktree", "unlock", str(slot.path), ok=(0, 128))
        self._clear_stale_lock(slot.path, checkout.git_dir)
        _remove_leftovers(checkout.git_dir)
        return checkout

    def _recreate(self, slot: _Slot, commit: str) -> None:
        """Add the slot afresh: it is new, or its folder or git's record of it is gone or broken.

        What is left at its place is moved aside to ``.waveui/worktrees/set-aside/``,
        never deleted: it may be all that remains of a task's work.
        """
        self._setup_marker(slot.number).unlink(missing_ok=True)  # its dependencies went with it
        if slot.path.is_symlink() or slot.path.exists():
            aside = set_aside_folder(self.root, slot.path)
            self.on_notice(f"{slot.path} was no longer a worktree of this repository; moved to {aside}")
        for entry in self.repository.worktrees():
            if same_path(Path(entry.get("worktree", "")), slot.path) and "locked" in entry:
                self.repository.run("worktree", "unlock", str(slot.path), ok=(0, 128))
        # Drop git's record of worktrees whose folders are gone, ours among them.
        self.repository.run("worktree", "prune")
        self.repository.run("worktree", "add", "-q", "--force", "--detach", str(slot.path), commit)
        os.chmod(slot.path, 0o700)  # git made it by the umask; everything under .waveui/ is owner-only
        slot.branch = None
        slot.clean = True

    def _clean(self, slot: _Slot, checkout: Checkout, detach: bool = False) -> None:
        """Tracked files as committed, no untracked or ignored file left, nested repositories included,
        except what setup installed (recorded in the slot's setup marker); with ``detach``, HEAD detached."""
        # A forced checkout resets the index and files as `reset --hard` does; detaching costs no other process.
        if detach:
            checkout.run("checkout", "-q", "-f", "--detach")
        else:
            checkout.run("reset", "-q", "--hard")
        _, kept = self._read_marker(self._setup_marker(slot.number))
        excludes = [arg for path in kept for arg in ("-e", "/" + _escape_pattern(path.rstrip("/"))
                                                      + ("/" if path.endswith("/") else ""))]
        checkout.run("clean", "-q", "-ffdx", *excludes)

    def _set_aside_nested(self, slot: _Slot, checkout: Checkout) -> None:
        """Move repositories a task made inside its worktree out of the way of ``git clean``, which would delete them."""
        tracked, untracked = _tracked_and_untracked(checkout)
        nested = [p.rstrip("/") for p in untracked if p.endswith("/")] + _stray_dot_gits(checkout, tracked)
        if not nested:
            return
        aside = ensure_private_dir(self.root / "set-aside") / f"{slot.path.name}-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**6}"
        for path in nested:
            target = aside / path
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(slot.path / path, target)
        self.on_notice(f"repositories or .git entries made inside {slot.path.name} ({', '.join(nested)}) "
                       f"moved to {aside}")

    def _tell_ignored_left(self, slot: _Slot, checkout: Checkout, branch: str) -> None:
        """Say which files a task left that git ignores: they are in no commit, and cleaning removes them."""
        _, kept = self._read_marker(self._setup_marker(slot.number))
        # Files only: folders of caches and build output (__pycache__/, .pytest_cache/, dist/) are expected.
        left = [p for p in _ignored_entries(checkout)
                if p not in kept and not p.endswith("/") and not _in_cache_folder(checkout.work_tree, p)]
        if left:
            self.on_notice(f"{branch} left files git ignores ({some_paths(left)}): not committed, removed before the next "
                           "task; if they are work, un-ignore them")

    def _snapshot(self, checkout: Checkout, message: str, fallback: str | None = None) -> str | None:
        """A commit of everything the worktree holds on top of its HEAD (HEAD itself if nothing is
        uncommitted); None without a commit to build on. Writes only the slot's own index and new objects.

        A HEAD that names no commit (a task wrote it) builds on ``fallback`` (the task's branch) instead.
        """
        head = revision(checkout, "HEAD^{commit}") or (fallback and self.repository.resolve(fallback))
        if head is None:
            return None
        _stage_all(checkout)
        tree = checkout.run("write-tree").out.strip()
        if tree == revision(checkout, f"{head}^{{tree}}"):
            return head
        return checkout.run(*self.repository.identity(), "commit-tree", tree, "-p", head, "-m", message).out.strip()

    def _save_leftovers(self, slot: _Slot, checkout: Checkout, commit: str) -> Checkout:
        """Keep what a slot not cleaned by this pool holds (a crash left it) before it is reset; the slot.

        The work is kept under the task whose branch the slot is on
        (``refs/waveui/<its epic>/<task>/left-<commit>``), where a resume of that
        task's run finds it, whichever epic reuses the slot. A slot whose state
        git cannot even read is moved aside whole and rebuilt.
        """
        try:
            self._set_aside_nested(slot, checkout)
            status = checkout.run("status", "--porcelain", "-z", "--untracked-files=all").out
            head = revision(checkout, "HEAD")
            on_no_ref = head is not None and not checkout.run("for-each-ref", "--count=1", "--contains", head,
                                                             "--format=%(refname)").out.strip()
            if not status and not on_no_ref:
                return checkout
            kept = self._snapshot(checkout, f"waveui: what {slot.path.name} held before it was reused")
            if kept is not None:
                ref = _leftovers_ref(_head_branch(checkout), self.epic, slot.path.name, kept)
                self.repository.run("update-ref", "-m", "waveui: leftovers kept", ref, kept)
                self.on_notice(f"{slot.path.name} held work no ref pointed at; kept as {ref}")
            return checkout
        except GitError as error:
            with self._admin:
                self.on_notice(f"{slot.path.name} could not be read ({error.message}); set aside and rebuilt")
                self._recreate(slot, commit)
            rebuilt = self.repository.linked_worktree(slot.path)
            if rebuilt is None:
                raise BrokenSlot(f"could not create the worktree {slot.path}") from None
            return rebuilt

    def _keep_attempt(self, wt: Worktree, attempt: int, commit: str | None) -> str | None:
        """Point the attempt's ref at ``commit``, unless that is nothing beyond the task's start; the commit kept."""
        if commit is None or commit == self._slots[wt.slot].start:
            return None
        self.repository.run("update-ref", "-m", "waveui: attempt kept", self._attempt_ref(wt, attempt), commit)
        return commit

    def _attempt_ref(self, wt: Worktree, attempt: int) -> str:
        return attempt_ref(self.epic, wt.task_id or wt.branch.rpartition("@")[2], attempt)

    def _clear_stale_lock(self, path: Path, gitdir: Path) -> None:
        """Remove an ``index.lock`` left by a git process that died (a killed agent, a crash)."""
        lock = gitdir / "index.lock"
        give_up = time.monotonic() + 2 * STALE_LOCK_SECONDS  # in case of a clock that jumped back
        while True:
            try:
                age = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                return
            # The slot is ours, so a git still working in it is a leftover too, once the lock is old.
            if age > STALE_LOCK_SECONDS or _git_running_in(path) is False or time.monotonic() > give_up:
                break
            time.sleep(0.1)  # a live git may be about to finish with it
        lock.unlink(missing_ok=True)

    # --------------------------------------------------------------- setup

    def _setup_marker(self, number: int) -> Path:
        # Beside the worktree, not in it, so `git clean` can never remove it.
        return self.root / f"slot-{number}.setup"

    @staticmethod
    def _read_marker(marker: Path) -> tuple[str, list[str]]:
        """The setup digest recorded for a slot and the ignored paths its setup made ("" and [] if none)."""
        try:
            lines = marker.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        except OSError:
            return "", []
        return (lines[0].strip() if lines else ""), [line for line in lines[1:] if line]

    def _run_setup(self, wt: Worktree, env: dict, timeout: float | None, run_setup: Callable) -> int:
        log = None
        if self.log_dir is not None:
            ensure_private_dir(self.log_dir)
            log = self.log_dir / f"setup-slot-{wt.slot}.log"
            with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
                out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {wt.branch}: {self.setup}\n".encode())
        # The executor runs it as it runs a task's step: nothing the setup detaches outlives it.
        code = run_setup(self.setup, wt.path, env, log, timeout)
        if log is not None:
            with open(os.open(log, os.O_WRONLY | os.O_APPEND), "ab") as out:
                out.write(f"=== exit status {code}\n".encode())
        return code


# ------------------------------------------------------------------ helpers


def _check_input_pattern(pattern: str) -> str:
    parts = PurePosixPath(pattern.replace("\\", "/")).parts
    if not pattern.strip() or pattern.startswith(("/", "\\")) or ".." in parts or "\0" in pattern:
        raise ValueError(f"setup input {pattern!r} must be a path inside the repository")
    # Path.glob raises on these (IndexError for ".", ValueError for "a**"), which would fail every task
    globbed = PurePosixPath(pattern).parts  # as Path.glob reads it: a backslash is part of a name
    if not globbed or any("**" in part and part != "**" for part in globbed):
        raise ValueError(f"setup input {pattern!r} is not a pattern pathlib can glob")
    return pattern


def keep_branch_tip(repository: Repository, epic: str, task_id: str, branch: str, new_tip: str) -> None:
    """Before ``branch`` (one of the task's) is moved to ``new_tip``, make sure its old tip stays reachable.

    Unless ``new_tip`` or a ref under ``refs/waveui/<epic>/<task>/`` holds it,
    the old tip is kept as ``refs/waveui/<epic>/<task>/branch-<commit>``.
    """
    keep_old_tip(repository, epic, task_id, repository.resolve(f"refs/heads/{branch}"), new_tip)


def keep_old_tip(repository: Repository, epic: str, task_id: str, tip: str | None, new_tip: str) -> None:
    """:func:`keep_branch_tip` for a caller that has just read the branch's commit (``tip``; None: no branch)."""
    if tip is None or tip == new_tip or repository.is_ancestor(tip, new_tip):
        return
    prefix = f"refs/waveui/{epic}/{task_id}/"
    held = repository.run("for-each-ref", "--count=1", "--contains", tip, "--format=%(refname)", prefix).out.strip()
    if not held:
        repository.run("update-ref", "-m", "waveui: branch tip kept", f"{prefix}branch-{tip[:12]}", tip)


def set_aside_folder(root: Path, path: Path) -> Path:
    """Move ``path`` (a worktree waveui can no longer use as one) to ``<root>/set-aside/``, never deleting it; where."""
    aside = (ensure_private_dir(root / "set-aside")
             / f"{path.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}")
    os.rename(path, aside)
    return aside


def same_path(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def revision(checkout: Checkout, rev: str) -> str | None:
    """What ``rev`` names as seen from the worktree (its HEAD, its MERGE_HEAD), or None."""
    result = checkout.run("rev-parse", "--verify", "--quiet", "--end-of-options", rev, ok=(0, 1, 128))
    return result.out.strip() if result.status == 0 and result.out.strip() else None


def _read_head(checkout: Checkout) -> str | None:
    """The worktree's HEAD file as it is (``ref: refs/heads/...`` or a commit), read without a git process."""
    try:
        return (checkout.git_dir / "HEAD").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _head_revision(checkout: Checkout) -> str | None:
    """What the worktree's HEAD names, as a revision the repository itself can resolve (``X^{commit}``).

    None when only git can tell from the worktree: a HEAD on a ref of the
    worktree's own (``refs/bisect/``, ``refs/worktree/``), or one that cannot be read.
    """
    head = _read_head(checkout)
    if head is None:
        return None
    if head.startswith("ref: "):
        target = head[len("ref: "):]
        return f"{target}^{{commit}}" if target.startswith("refs/heads/") and "\n" not in target else None
    return f"{head}^{{commit}}" if OBJECT_ID.fullmatch(head) else None


def _head_branch(checkout: Checkout) -> str | None:
    result = checkout.run("symbolic-ref", "-q", "HEAD", ok=(0, 1, 128))
    return result.out.strip() if result.status == 0 else None


def _leftovers_ref(branch: str | None, epic: str, slot_name: str, commit: str) -> str:
    """Where leftovers are kept: under the task whose branch the slot was on, else under the slot."""
    name = (branch or "").removeprefix("refs/heads/waveui/")
    owner, at, task = name.partition("@")
    if branch and at and name_problem("epic", owner) is None and name_problem("task", task) is None:
        return f"refs/waveui/{owner}/{task}/left-{commit[:12]}"
    return f"refs/waveui/{epic}/leftovers/{slot_name}-{commit[:12]}"


def _stray_dot_gits(checkout: Checkout, tracked: list[str]) -> list[str]:
    """``.git`` entries inside the folders of the worktree's ``tracked`` files (the worktree's own excepted).

    Git never lists them, and ``git clean`` never removes them; one that
    points at the shared repository would make the next task's ``git
    commit`` in that folder commit onto the user's branch with the user's index.
    """
    folders = {str(PurePosixPath(p).parent) for p in tracked if "/" in p}
    folders |= {str(parent) for folder in list(folders) for parent in PurePosixPath(folder).parents if str(parent) != "."}
    return sorted(f"{folder}/.git" for folder in folders if os.path.lexists(checkout.work_tree / folder / ".git"))


def _head_name(checkout: Checkout) -> str:
    result = checkout.run("symbolic-ref", "-q", "--short", "HEAD", ok=(0, 1, 128))
    return f"branch {result.out.strip()}" if result.status == 0 else ""


def some_paths(paths: list[str], shown: int = 5) -> str:
    """The first few paths for a one-line message, and how many more there are."""
    return ", ".join(paths[:shown]) + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


def _tracked_and_untracked(checkout: Checkout) -> tuple[list[str], list[str]]:
    """The worktree's tracked paths, and its untracked ones as :func:`_untracked` lists them, from one git process.

    ``ls-files -t`` tags each path: ``?`` for an untracked one, a letter for
    what the index holds (https://git-scm.com/docs/git-ls-files, option ``-t``).
    """
    tracked, untracked = [], []
    for entry in checkout.run("ls-files", "-z", "-t", "--cached", "--others", "--exclude-standard").out.split("\0"):
        if entry:
            tag, _, path = entry.partition(" ")
            (untracked if tag == "?" else tracked).append(path)
    return tracked, untracked


def _untracked(checkout: Checkout) -> list[str]:
    """Untracked, not ignored paths; a repository nested in the worktree is one entry ending in ``/``."""
    return [p for p in checkout.run("ls-files", "-z", "--others", "--exclude-standard").out.split("\0") if p]


def _stage_all(checkout: Checkout, keep_out: tuple[str, ...] = ()) -> list[str]:
    """``git add -A`` in the slot's own index, leaving out nested repositories and ``keep_out``; the repositories."""
    nested = [p for p in _untracked(checkout) if p.endswith("/")]
    # A nested repository would go in as a bare commit id (a gitlink) whose content no clone has;
    # one without commits makes `git add` fail outright.
    checkout.run("add", "-A", "--", ".", *(f":(exclude,literal){p}" for p in nested),
                 *(f":(exclude,glob){spec}" for pattern in keep_out for spec in _glob_pathspecs(pattern)))
    return nested


def _glob_pathspecs(pattern: str) -> list[str]:
    """A gitignore-style pattern as ``glob`` pathspecs matching the same files and everything in matching folders.

    As in a ``.gitignore``: a pattern with no slash but a trailing one
    matches at any depth, one with a slash is taken from the top of the
    worktree, a trailing slash matches folders only. Negation (``!``) is not
    supported.
    """
    folder_only = pattern.endswith("/")
    anchored = "/" in pattern.rstrip("/")
    pattern = pattern.strip("/")
    if not anchored:
        pattern = f"**/{pattern}"
    inside = f"{pattern}/**"  # a pathspec glob matches files: a folder's files are matched by what is under it
    return [inside] if folder_only else [pattern, inside]


def _ignored_entries(checkout: Checkout) -> list[str]:
    """The ignored files and folders in a worktree, folders as one entry ending in ``/``."""
    out = checkout.run("ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory").out
    return sorted(p for p in out.split("\0") if p)


def _in_cache_folder(root: Path, path: str) -> bool:
    """Whether a file lies in a folder that marks itself a cache: a ``CACHEDIR.TAG``, or a ``.gitignore`` of
    ``*`` (pytest's, mypy's and ruff's caches do both), so git ignores it file by file, not as a folder."""
    parts = Path(path).parts[:-1]
    for depth in range(1, len(parts) + 1):
        folder = root.joinpath(*parts[:depth])
        if (folder / "CACHEDIR.TAG").is_file():
            return True
        try:
            rules = (folder / ".gitignore").read_text(encoding="utf-8", errors="replace").split()
        except OSError:
            continue
        if "*" in rules:
            return True
    return False


def _escape_pattern(path: str) -> str:
    """A path as a gitignore pattern matching exactly that path."""
    return re.sub(r"([\\*?\[\]!# ])", r"\\\1", path)


def _remove_leftovers(gitdir: Path) -> None:
    """Forget a rebase, merge or cherry-pick an agent left half done; reset does not end all of them."""
    for name in _OPERATION_LEFTOVERS:
        leftover = gitdir / name
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _git_running_in(path: Path) -> bool | None:
    """Whether a git process works in ``path``; None when that cannot be told (no permission)."""
    path = path.resolve()
    unknown = False
    for proc in psutil.process_iter(["name", "cwd"], ad_value=None):
        name = proc.info.get("name") or ""
        if not name.startswith("git"):
            continue
        cwd = proc.info.get("cwd")
        if cwd is None:
            unknown = True
        elif Path(cwd) == path or path in Path(cwd).parents:
            return True
    return None if unknown else False
