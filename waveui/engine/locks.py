"""Locks: tasks sharing files never run at once, and one controller per repository."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from waveui.git.command import GitError, discover


class FileLocks:
    """Lock mode: a task may start only while no task it shares files with holds the lock.

    A task holds its lock from start until its work is merged, so the second
    of two overlapping tasks starts from a tip that already has the first's
    changes. Other ready tasks are never held up by this.
    """

    def __init__(self, partners: dict[str, Iterable[str]]):
        self._partners = {task: frozenset(others) for task, others in partners.items()}
        self._held: set[str] = set()

    def free_for(self, task: str) -> bool:
        return not (self._partners.get(task, frozenset()) & self._held)

    def holders_blocking(self, task: str) -> list[str]:
        return sorted(self._partners.get(task, frozenset()) & self._held)

    def exclude(self, a: str, b: str) -> None:
        """From now on ``a`` and ``b`` never run at the same time (they conflicted with each other's files)."""
        self._partners[a] = self._partners.get(a, frozenset()) | {b}
        self._partners[b] = self._partners.get(b, frozenset()) | {a}

    def acquire(self, task: str) -> None:
        self._held.add(task)

    def release(self, task: str) -> None:
        self._held.discard(task)


class ControllerBusy(Exception):
    """Another waveui process is already running an epic in this repository."""


@dataclass(frozen=True)
class ControllerHolder:
    """The process holding a repository's controller lock; ``pid`` None when neither the kernel nor the record says."""

    pid: int | None


def lock_target(root: Path) -> tuple[Path, Path]:
    """The folder whose flock is the controller lock of ``root``, and the file recording the holder's pid.

    For the top folder of a git repository the lock is the repository's
    common git dir, shared by its linked worktrees, so a run started from any
    of them finds it; a user cleaning folders (``rm -rf .waveui``,
    ``git clean -fdx``) cannot remove it without removing the repository.
    Without git it is the folder itself (the one holding ``.waveui/``). The
    lock is on the folder, not on a file in it: deleting a lock file would
    let a second controller lock a new one.
    """
    root = Path(root).resolve()
    found = discover(root, ceiling=root.parent)
    if found is not None and found.root == root:
        return found.common_dir, found.common_dir / "waveui-controller.pid"
    return root, root / ".waveui" / "controller.pid"


class ControllerLock:
    """An exclusive flock on :func:`lock_target`'s folder, held for the whole run.

    The kernel drops it when the process dies, even by ``kill -9``, so a crash
    never leaves the repository locked. The pid record beside it is only
    for messages: the kernel's own table is asked first, and a record
    deleted mid-run does no harm.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self._fd: int | None = None
        self.record: Path | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`ControllerBusy` naming the holder's pid.

        A reader (:func:`controller_holder`) may hold a shared lock for an
        instant, so a busy lock is tried again for a moment before refusing.
        """
        folder, self.record = lock_target(self.root)
        fd = _open_folder(folder)
        deadline = time.monotonic() + READER_GRACE_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                holder = _holder_pid(fd, self.record)
                os.close(fd)
                named = holder if holder is not None else "unknown"
                raise ControllerBusy(f"another waveui (pid {named}) is running an epic in this repository") from None
            except OSError as error:
                os.close(fd)
                raise ControllerBusy(f"cannot lock {folder}: {error.strerror or error}") from None
        self._fd = fd
        _write_record(self.record)

    def release(self) -> None:
        if self._fd is not None:
            if self.record is not None and _read_record(self.record) == os.getpid():
                with contextlib.suppress(OSError):
                    self.record.unlink()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def controller_holder(root: Path) -> ControllerHolder | None:
    """Who runs an epic in ``root`` now, or None: read only (writes nothing, creates nothing).

    The kernel's lock table answers without taking anything. Where it cannot
    (not Linux, or a file system that names devices differently there) a
    shared lock is taken and dropped at once; a controller starting at that
    instant tries again (see :meth:`ControllerLock.acquire`).
    """
    try:
        folder, record = lock_target(root)
        fd = _open_folder(folder)
    except (OSError, GitError):
        return None
    try:
        pid = _kernel_pid(fd, exact=True)
        if pid is not None:
            return ControllerHolder(pid)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return ControllerHolder(_holder_pid(fd, record))
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


READER_GRACE_SECONDS = 0.25  # far longer than a reader holds its shared lock (microseconds)


def _open_folder(folder: Path) -> int:
    # O_CLOEXEC (Python's default) and the supervisors closing every inherited descriptor keep
    # the lock with this process alone: a task left running never holds the repository locked.
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY)


def _holder_pid(fd: int, record: Path) -> int | None:
    """The pid holding an flock on ``fd``'s folder: the kernel's lock table first, else the record."""
    pid = _kernel_pid(fd, exact=True)
    if pid is None:
        pid = _kernel_pid(fd, exact=False)
    return pid if pid is not None else _read_record(record)


def _kernel_pid(fd: int, exact: bool) -> int | None:
    """The pid of an exclusive flock on ``fd``'s file in ``/proc/locks``; None when none is listed (or not Linux).

    ``exact`` matches device and inode; without it the inode alone (btrfs
    lists a device there other than the one ``stat`` gives), which is only
    used once the lock is known to be held.
    """
    info = os.fstat(fd)
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as table:
            for line in table:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 12737 fe:00:2212749 0 EOF"; "->" marks a waiter, not a holder.
                if len(fields) < 6 or fields[1] != "FLOCK" or fields[3] != "WRITE" or not fields[4].isdigit():
                    continue
                where = fields[5]
                if where == device + str(info.st_ino) or (not exact and where.endswith(f":{info.st_ino}")):
                    return int(fields[4])
    except OSError:
        pass
    return None


def _read_record(record: Path) -> int | None:
    try:
        text = record.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _write_record(record: Path) -> None:
    """Best effort: the record only improves messages when the kernel's lock table cannot be read."""
    try:
        fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError:
        return
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        pass
    finally:
        os.close(fd)
