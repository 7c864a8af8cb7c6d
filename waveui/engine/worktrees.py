"""A pool of git worktrees that tasks borrow, so checkouts, ignored folders and setup survive between tasks.

Each slot is a linked worktree ``.waveui/worktrees/slot-N``. A task borrows a
slot and gets its own branch there; when the task is done the slot is cleaned
and handed to the next task, whose checkout rewrites only the files that
differ. ``git clean -fd`` (never ``-x``) keeps ignored folders such as
``node_modules`` or ``.venv``, so a setup command runs once per slot and again
only when its inputs change.

Branch names: the integration branch is ``waveui/<epic>`` and a task's branch
is ``waveui/<epic>@<task>``. Git cannot hold both ``waveui/<epic>`` and
``waveui/<epic>/<task>`` (a ref cannot be a file and a folder at once), and
``@`` appears in no epic name, so no two epics' branches can collide either.

Every method is a plain blocking call, safe to run from several threads at
once (the engine calls them through ``asyncio.to_thread``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import git
import psutil

from waveui.engine.journal import ensure_private_dir, waveui_dir
from waveui.spec import TASK_ID

EXCLUDE_LINE = "/.waveui/"
BRANCH_SWITCH_WAIT_SECONDS = 30.0
STALE_LOCK_SECONDS = 5.0  # an index.lock this old is stale even if some git process is about
_SLOT_NAME = re.compile(r"slot-(\d+)\Z")
# Left behind when an agent was stopped in the middle of one of these.
_OPERATION_LEFTOVERS = ("rebase-merge", "rebase-apply", "sequencer", "MERGE_HEAD", "CHERRY_PICK_HEAD",
                        "REVERT_HEAD", "BISECT_LOG")


class GitError(Exception):
    """A git operation that failed, with a message fit to show the user."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# ------------------------------------------------------------------- names


def check_name(kind: str, name: str) -> str:
    """``name`` if it is a valid epic or task id that makes a safe ref; ValueError otherwise."""
    if not isinstance(name, str) or not TASK_ID.match(name):
        raise ValueError(f"{kind} {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    # The pattern alone still allows names git refuses as a ref component.
    if ".." in name or name.endswith((".", ".lock")):
        raise ValueError(f"{kind} {name!r} cannot be used in a git branch name ('..', or ending in '.' or '.lock')")
    return name


def integration_branch(epic: str) -> str:
    return _checked_branch(f"waveui/{check_name('epic name', epic)}")


def task_branch(epic: str, task_id: str) -> str:
    return _checked_branch(f"waveui/{check_name('epic name', epic)}@{check_name('task id', task_id)}")


def _checked_branch(branch: str) -> str:
    """Defence in depth: whatever the names held, the ref stays directly under refs/heads/waveui/."""
    ref = PurePosixPath("refs/heads", branch)
    if (ref.parent != PurePosixPath("refs/heads/waveui") or "\\" in branch or "@{" in branch
            or any(part in ("", ".", "..") for part in branch.split("/"))):
        raise ValueError(f"branch name {branch!r} would leave refs/heads/waveui/")
    return branch


# --------------------------------------------------------------------- git


def run_git(cwd: Path, *args: str, ok: tuple[int, ...] = (0,), env: dict | None = None) -> tuple[int, str, str]:
    """Run ``git args`` in ``cwd``; (status, stdout, stderr), or GitError for a status not in ``ok``."""
    status, out, err = git.Git(str(cwd)).execute(
        ["git", *args], with_extended_output=True, with_exceptions=False, env=env)
    if status not in ok:
        said = (err or out).strip() or f"exit status {status}"
        raise GitError(f"git {' '.join(args)} (in {cwd}) failed: {said}")
    return status, out, err


def worktree_list(repo_root: Path) -> list[dict[str, str]]:
    """``git worktree list --porcelain`` as one dict per worktree (keys: worktree, HEAD, branch, locked, ...)."""
    _, out, _ = run_git(repo_root, "worktree", "list", "--porcelain", "-z")
    entries, current = [], {}
    for field in out.split("\0"):
        if not field:  # an empty field ends a record
            if current:
                entries.append(current)
            current = {}
            continue
        key, _, value = field.partition(" ")
        current[key] = value
    if current:
        entries.append(current)
    return entries


def open_repo(repo_root: Path) -> git.Repo:
    try:
        repo = git.Repo(repo_root)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as e:
        raise GitError(f"{repo_root} is not a git repository") from e
    if repo.bare:
        raise GitError(f"{repo_root} is a bare repository: waveui needs one with a working tree")
    return repo


def exclude_waveui(common_dir: Path) -> None:
    """Keep ``.waveui/`` out of git through ``info/exclude``, leaving the user's tracked .gitignore alone."""
    exclude = common_dir / "info" / "exclude"
    try:
        text = exclude.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    if any(line.strip() in ("/.waveui/", ".waveui/", "/.waveui", ".waveui") for line in text.splitlines()):
        return
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with open(exclude, "a", encoding="utf-8") as f:
        f.write(("\n" if text and not text.endswith("\n") else "") + EXCLUDE_LINE + "\n")


# ------------------------------------------------------------------- the pool


@dataclass
class Worktree:
    slot: int
    path: Path
    branch: str


@dataclass
class SetupResult:
    ran: bool  # False: skipped, the slot's setup was already done for these inputs
    seconds: float  # wall time of ensure_setup, the input check included
    exit_code: int  # 0 when skipped; negative when killed by a signal (a timeout kills)


@dataclass
class _Slot:
    number: int
    path: Path
    busy: bool = False
    branch: str | None = None  # checked out there, as far as we know


class WorktreePool:
    """Worktrees under ``<repo_root>/.waveui/worktrees/``, lent to one task at a time.

    Slots left by an earlier waveui process are found on start and reused.
    ``acquire`` repairs a slot that was deleted, moved, locked or left with a
    stale ``index.lock``, so a crash never leaves the pool unusable.
    """

    def __init__(self, repo_root: Path, epic: str, setup: str | None, setup_inputs: list[str],
                 log_dir: Path | None = None):
        self.repo = open_repo(Path(repo_root))
        self.repo_root = Path(self.repo.working_tree_dir).resolve()
        self.epic = check_name("epic name", epic)
        self.setup = setup or None
        self.setup_inputs = [_check_input_pattern(p) for p in setup_inputs]
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.common_dir = Path(self.repo.common_dir).resolve()
        ensure_private_dir(waveui_dir(self.repo_root))
        self.root = ensure_private_dir(waveui_dir(self.repo_root) / "worktrees")
        exclude_waveui(self.common_dir)
        self._lock = threading.Lock()  # guards the slot table
        self._admin = threading.Lock()  # one `git worktree add/prune/repair` at a time
        self._slots: dict[int, _Slot] = {}
        self._discover()

    # ------------------------------------------------------------ public API

    def acquire(self, task_id: str, start_point: str) -> Worktree:
        """A worktree on a fresh branch ``waveui/<epic>@<task_id>`` at ``start_point``, clean.

        An existing branch of that name (an earlier attempt) is reset to ``start_point``.
        """
        branch = task_branch(self.epic, task_id)
        commit = self._commit_of(start_point)
        with self._lock:
            slot = self._choose(branch)
            slot.busy = True
        try:
            self._make_ready(slot, commit)
            self._free_branch(branch, slot)
            run_git(slot.path, "checkout", "-q", "-f", "-B", branch, commit, "--")
            run_git(slot.path, "reset", "-q", "--hard")
            run_git(slot.path, "clean", "-q", "-fd")  # not -x: ignored dependencies stay
            slot.branch = branch
        except BaseException:
            with self._lock:
                slot.busy = False
            raise
        return Worktree(slot.number, slot.path, branch)

    def adopt(self, task_id: str) -> Worktree | None:
        """Lend the slot that still holds this task's branch (a task a killed waveui left running), if any."""
        branch = task_branch(self.epic, task_id)
        with self._lock:
            for slot in self._slots.values():
                if slot.branch == branch and not slot.busy and slot.path.is_dir():
                    slot.busy = True
                    return Worktree(slot.number, slot.path, branch)
        return None

    def release(self, wt: Worktree) -> bool:
        """Clean the worktree (ignored files kept), detach it from the task's branch, free the slot.

        Never raises for a git failure: it returns False, and the next
        ``acquire`` of the slot repairs it. The task's branch and commits stay.
        """
        slot = self._slots.get(wt.slot)
        if slot is None or not slot.busy:
            raise ValueError(f"slot {wt.slot} is not lent out")
        cleaned = False
        try:
            gitdir = self._gitdir(slot.path)
            if gitdir is not None:
                self._clear_stale_lock(slot.path, gitdir)
                _remove_leftovers(gitdir)
            run_git(slot.path, "reset", "-q", "--hard")
            run_git(slot.path, "clean", "-q", "-fd")
            # Detached, the slot holds no branch: the task's branch can be reset or
            # checked out elsewhere, and merging never needs this folder.
            run_git(slot.path, "checkout", "-q", "--detach")
            slot.branch = None
            cleaned = True
        except GitError:
            pass
        finally:
            with self._lock:
                slot.busy = False
        return cleaned

    def ensure_setup(self, wt: Worktree, env: dict, timeout: float | None = None) -> SetupResult:
        """Run the setup command in ``wt`` unless this slot already ran it for the same inputs.

        ``env`` is the complete environment of the command. The slot counts as
        set up only after an exit status of 0; a failed setup runs again next time.
        """
        started = time.monotonic()
        if not self.setup:
            return SetupResult(False, 0.0, 0)
        digest = self.setup_hash(wt.path)
        marker = self._setup_marker(wt.slot)
        try:
            done = marker.read_text(encoding="ascii").strip() == digest
        except OSError:
            done = False
        if done:
            return SetupResult(False, time.monotonic() - started, 0)
        # A setup cut short may have left half its files: not done until it succeeds.
        marker.unlink(missing_ok=True)
        code = self._run_setup(wt, env, timeout)
        if code == 0:
            tmp = marker.with_name(marker.name + ".tmp")
            # Owner-only like everything under .waveui/: write_text would leave it to the umask.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(digest + "\n")
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
        for entry in worktree_list(self.repo_root):
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
        """A free slot, preferring the one that holds ``branch`` already; a new one when none is free."""
        free = [s for s in self._slots.values() if not s.busy]
        for slot in free:
            if slot.branch == branch:
                return slot
        if free:
            return min(free, key=lambda s: s.number)
        number = next(n for n in range(len(self._slots) + 1) if n not in self._slots)
        slot = _Slot(number, self.root.resolve() / f"slot-{number}")
        self._slots[number] = slot
        return slot

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
            run_git(other.path, "checkout", "-q", "--detach")
            other.branch = None

    def _make_ready(self, slot: _Slot, commit: str) -> None:
        """Make ``slot.path`` a working worktree of this repository, creating or repairing it."""
        gitdir = self._gitdir(slot.path)
        if gitdir is None:
            with self._admin:
                gitdir = self._gitdir(slot.path)
                if gitdir is None and slot.path.exists():
                    # Moved repository or worktree: git can often relink it, keeping ignored files.
                    run_git(self.repo_root, "worktree", "repair", str(slot.path), ok=(0, 1, 128))
                    gitdir = self._gitdir(slot.path)
                if gitdir is None:
                    self._recreate(slot, commit)
                    gitdir = self._gitdir(slot.path)
                    if gitdir is None:
                        raise GitError(f"could not create the worktree {slot.path}")
        if (gitdir / "locked").exists():
            # Our slots are never locked on purpose; a lock only blocks pruning and re-adding.
            run_git(self.repo_root, "worktree", "unlock", str(slot.path), ok=(0, 128))
        self._clear_stale_lock(slot.path, gitdir)
        _remove_leftovers(gitdir)

    def _recreate(self, slot: _Slot, commit: str) -> None:
        """Add the slot afresh: it is new, or its folder or git's record of it is gone."""
        self._setup_marker(slot.number).unlink(missing_ok=True)  # its dependencies went with it
        if slot.path.exists():
            shutil.rmtree(slot.path)
        for entry in worktree_list(self.repo_root):
            if same_path(Path(entry.get("worktree", "")), slot.path) and "locked" in entry:
                run_git(self.repo_root, "worktree", "unlock", str(slot.path), ok=(0, 128))
        # Drop git's record of worktrees whose folders are gone, ours among them.
        run_git(self.repo_root, "worktree", "prune")
        run_git(self.repo_root, "worktree", "add", "-q", "--force", "--detach", str(slot.path), commit)
        os.chmod(slot.path, 0o700)  # git made it by the umask; everything under .waveui/ is owner-only
        slot.branch = None

    def _gitdir(self, path: Path) -> Path | None:
        """The git dir of a healthy worktree at ``path`` belonging to this repository, else None."""
        try:
            text = (path / ".git").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        if not text.startswith("gitdir:"):
            return None
        gitdir = (path / text[len("gitdir:"):].strip()).resolve()
        try:
            back = Path((gitdir / "gitdir").read_text(encoding="utf-8").strip())
        except OSError:
            return None
        if (gitdir.parent != self.common_dir / "worktrees" or not (gitdir / "HEAD").is_file()
                or not same_path(back, path / ".git")):
            return None
        return gitdir

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

    def _commit_of(self, start_point: str) -> str:
        status, out, _ = run_git(self.repo_root, "rev-parse", "--verify", "--quiet", "--end-of-options",
                                 f"{start_point}^{{commit}}", ok=(0, 1, 128))
        if status != 0 or not out.strip():
            raise GitError(f"start point {start_point!r} is not a commit in {self.repo_root}")
        return out.strip()

    # --------------------------------------------------------------- setup

    def _setup_marker(self, number: int) -> Path:
        # Beside the worktree, not in it, so `git clean` can never remove it.
        return self.root / f"slot-{number}.setup"

    def _run_setup(self, wt: Worktree, env: dict, timeout: float | None) -> int:
        log = subprocess.DEVNULL
        if self.log_dir is not None:
            ensure_private_dir(self.log_dir)
            fd = os.open(self.log_dir / f"setup-slot-{wt.slot}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            log = os.fdopen(fd, "ab")
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {wt.branch}: {self.setup}\n".encode())
            log.flush()
        try:
            # A session of its own, so a timeout can stop the whole process group.
            proc = subprocess.Popen(self.setup, shell=True, cwd=wt.path, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                code = proc.wait()
            except BaseException:
                _kill_group(proc)
                proc.wait()
                raise
            if log is not subprocess.DEVNULL:
                log.write(f"=== exit status {code}\n".encode())
            return code
        finally:
            if log is not subprocess.DEVNULL:
                log.close()


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


def same_path(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


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


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
