"""Which working folders are in use by a task step, as every waveui process of the machine can see.

A step's supervisor holds a shared ``flock`` on the folder its command runs
in for as long as the command or anything it started lives (the supervisor
kills those before it exits, and the kernel drops the lock when the
supervisor ends, however it ends). Worktree slots are shared by every run and
every epic of a repository, so a waveui that finds a slot busy this way must
not reuse it, even when its own journal knows nothing of the step.

The lock sits on the folder's inode: a folder deleted and made again is a
new folder, free.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

_TRIES = 20


def occupy(folder: Path) -> int | None:
    """Hold a shared lock on ``folder`` for this process's life (or until the descriptor is closed).

    Returns the descriptor, or None if the folder cannot be opened. The
    descriptor is not inherited, so the command and its children never hold
    the lock themselves: it lasts exactly as long as its holder.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    # Never wait for it: a run in place (isolation = "none") holds its folder's lock exclusively as the
    # controller lock, and a check by slot_in_use holds it for an instant only.
    for _ in range(_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            time.sleep(0.005)
        except OSError:
            break
    os.close(fd)
    return None


def slot_in_use(folder: Path) -> bool:
    """Whether a step of any waveui process is running in ``folder`` (a missing folder is not in use)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the lock, if it was taken
    return False
