"""Every ref of a repository read from the files git keeps them in, without a git process.

The guard compares all refs after every task; ``git for-each-ref`` costs a
process each time, while most refs have not changed since the last look.
Git's files backend keeps a ref in a loose file ``<common dir>/refs/...``
(an object id, or ``ref: <other ref>``) or, when there is none, as a line
of ``packed-refs``; every update writes a new file and renames it into
place (https://git-scm.com/docs/gitrepository-layout, ``refs`` and
``packed-refs``). Whatever else is found there (a reftable, a file holding
anything else, a symbolic link) is left to git: :meth:`RefFiles.read` answers None.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from waveui.git.command import OBJECT_ID

# A file's time stamp moves by the kernel's coarse clock: a rewrite in place within one tick keeps it.
# A file changed this recently is read again next time, as git treats a racily clean index entry.
_SETTLED_SECONDS = 1.0


class RefFiles:
    """The refs under ``<common dir>/refs/`` and in ``packed-refs``, files not changed since last read taken as read."""

    def __init__(self, common_dir: Path, skipped: tuple[str, ...] = ()):
        self.common_dir = common_dir
        self.skipped = skipped  # prefixes of refs nobody asks for (``refs/remotes/``): not read at all
        self._loose: dict[str, tuple[tuple, str]] = {}  # path -> (its stat, what it held), once settled
        self._packed: tuple[tuple, dict[str, str]] | None = None

    def read(self) -> dict[str, str] | None:
        """Each ref's name and the object id it holds, as ``git for-each-ref`` lists them; None: ask git."""
        if (self.common_dir / "reftable").exists():
            return None
        stamp = self._packed_stamp()
        packed = self._read_packed(stamp)
        loose: dict[str, str] = {}
        settled: dict[str, tuple[tuple, str]] = {}
        if packed is None or not self._read_loose(self.common_dir / "refs", "refs/", loose, settled):
            return None
        if self._packed_stamp() != stamp:  # packed meanwhile (`git pack-refs`): loose files may have gone into it
            return None
        self._loose = settled  # files gone since are forgotten
        refs = {name: sha for name, sha in packed.items() if not name.startswith(self.skipped)}
        refs.update(loose)
        for name, value in list(refs.items()):
            if value.startswith("ref: "):  # symbolic: listed with the object of the ref it names
                target = value[len("ref: "):]
                for _ in range(5):  # as git, which gives up after a few levels
                    if not refs.get(target, "").startswith("ref: "):
                        break
                    target = refs[target][len("ref: "):]
                found = refs.get(target)
                if found is None or found.startswith("ref: "):
                    return None
                refs[name] = found
        return refs

    def _packed_stamp(self) -> tuple | None:
        """What ``packed-refs`` looks like (``()``: there is none); None: it cannot be told."""
        try:
            st = (self.common_dir / "packed-refs").stat()
        except FileNotFoundError:
            return ()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _read_packed(self, stamp: tuple | None) -> dict[str, str] | None:
        if stamp is None:
            return None
        if stamp == ():
            return {}
        if self._packed is not None and self._packed[0] == stamp:
            return self._packed[1]
        try:
            lines = (self.common_dir / "packed-refs").read_text(encoding="utf-8",
                                                                errors="surrogateescape").splitlines()
        except OSError:
            return None
        refs = {}
        for line in lines:
            if not line or line.startswith(("#", "^")):  # the header; the commit a tag above peels to
                continue
            sha, _, name = line.partition(" ")
            if not OBJECT_ID.fullmatch(sha) or not name.startswith("refs/"):
                return None
            refs[name] = sha
        if time.time_ns() - stamp[0] > _SETTLED_SECONDS * 1e9:
            self._packed = (stamp, refs)
        return refs

    def _read_loose(self, folder: Path, prefix: str, found: dict[str, str],
                    settled: dict[str, tuple[tuple, str]]) -> bool:
        """Add the loose refs under ``folder`` (named from ``prefix``) to ``found``, and to ``settled`` those
        not to read again while their stat stays; False: one that git must read."""
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return True
        except OSError:
            return False
        for entry in entries:
            name = prefix + entry.name
            if name.startswith(self.skipped) or entry.name.endswith(".lock"):  # .lock: an update under way
                continue
            if entry.is_symlink():
                return False
            if entry.is_dir():
                if not self._read_loose(Path(entry.path), name + "/", found, settled):
                    return False
                continue
            value = self._read_file(entry, settled)
            if value is None:
                return False
            found[name] = value
        return True

    def _read_file(self, entry: os.DirEntry, settled: dict[str, tuple[tuple, str]]) -> str | None:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._loose.get(entry.path)
        if cached is not None and cached[0] == stamp:
            settled[entry.path] = cached
            return cached[1]
        try:
            with open(entry.path, "rb") as file:
                text = file.read(4096).decode("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if not (OBJECT_ID.fullmatch(text) or (text.startswith("ref: refs/") and "\n" not in text)):
            return None
        if time.time() - st.st_mtime > _SETTLED_SECONDS:
            settled[entry.path] = (stamp, text)
        return text
