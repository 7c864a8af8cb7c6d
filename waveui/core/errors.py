"""A filesystem error as one line for the user: the path, the real cause, and what to do when that is clear."""

from __future__ import annotations

import errno
from pathlib import Path

# A write past a file-size limit (EFBIG) is a full disk as far as the user can act on it.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_NOT_A_FOLDER = frozenset({errno.ENOTDIR, errno.EEXIST})


def describe(error: OSError, path: Path | str | None = None, *, resumable: bool = False) -> str:
    """``PATH: cause`` plus advice; ``resumable`` when the run stopped part way and `waveui run` picks it up."""
    where = path if path is not None else error.filename
    cause = error.strerror or str(error)
    line = f"{where}: {cause}" if where is not None else cause
    again = "run `waveui run` again to resume" if resumable else "run `waveui run` again"
    if error.errno in _NO_ROOM:
        return f"{line}; free some space and {again}"
    if error.errno == errno.EROFS:
        return f"{line}: the file system is read-only; make it writable and {again}"
    if error.errno in _NOT_WRITABLE:
        return f"{line}: waveui may not write there; give your user write access and {again}"
    if error.errno in _NOT_A_FOLDER:
        return f"{line}: a file stands where waveui needs a folder; move it away and {again}"
    return f"{line}{'; ' + again if resumable else ''}"
