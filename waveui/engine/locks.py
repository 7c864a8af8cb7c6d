"""Locks: tasks sharing files never run at once, and one controller per repository."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from pathlib import Path


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

    def acquire(self, task: str) -> None:
        self._held.add(task)

    def release(self, task: str) -> None:
        self._held.discard(task)


class ControllerBusy(Exception):
    """Another waveui process is already running an epic in this repository."""


class ControllerLock:
    """An flock on ``.waveui/controller.lock``, held for the whole run.

    The kernel drops it when the process dies, even by ``kill -9``, so a crash
    never leaves the repository locked.
    """

    def __init__(self, waveui_dir: Path):
        self.path = waveui_dir / "controller.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ControllerBusy(f"another waveui (pid {holder}) is running an epic in this repository") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
