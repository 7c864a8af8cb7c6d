"""The run's journal: events appended to ``.waveui/runs/<run>/events.jsonl``.

Every event is written and flushed to the operating system before
:meth:`Journal.append` returns, so a killed waveui (even by ``kill -9``) never
loses one, and watchers see it at once. Making state changes durable against
a machine crash takes an fsync, which costs milliseconds on a slow disk: there
:meth:`Journal.durable` runs it in a thread and lets every caller waiting at the
same time share one (group commit); where the last fsync took well under the
cost of handing work to a thread, it runs at once. The engine awaits it before
an act a machine crash would not undo: moving the integration branch, or
sending an attempt to another machine. A local step needs no fsync before it
starts: a crash that loses its line ends the step too. Progress and metrics
samples never wait for it. Readers tolerate a torn last line: a
crash mid-write leaves one. Resume reads with :func:`read_events` and a list
for :class:`UnreadableLine` entries, so no line it could not read goes unreported.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from waveui.run.events import Event, MetricsSample, TaskProgress, from_dict, to_json

JOURNAL_NAME = "events.jsonl"
# While fsyncs take less than this they are done in the event loop rather than in a thread: waking a
# thread and getting the answer back costs milliseconds on a busy machine, which a fast disk beats.
INLINE_SYNC_SECONDS = 0.002
_UNSYNCED = (TaskProgress, MetricsSample)


def waveui_dir(repo_root: Path) -> Path:
    return repo_root / ".waveui"


def runs_dir(repo_root: Path) -> Path:
    return waveui_dir(repo_root) / "runs"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and any missing parents) owner-only: logs and prompts may be private."""
    missing = []
    folder = path
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    # Not mkdir(parents=True): it makes the parents with the umask's mode (0777 under umask 000).
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # made by another process meanwhile: not ours to change
            continue
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask too
    os.chmod(path, 0o700)
    return path


def new_run_id(epic: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", epic)[:40]
    return f"{stamp}-{safe}-{secrets.token_hex(2)}"


class Journal:
    """Appends events to one run's journal file."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / JOURNAL_NAME
        ensure_private_dir(run_dir)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._written = 0  # state changes appended
        self._synced = 0  # state changes known to be on disk
        self._sync_lock: asyncio.Lock | None = None
        self._last_sync_seconds = 0.0  # the first fsync, in the loop, tells how fast the disk is
        self._repair_torn_tail()

    def _repair_torn_tail(self) -> None:
        """End a torn last line so the next event starts on a line of its own."""
        size = self.path.stat().st_size
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    os.write(self._file.fileno(), b"\n")  # unbuffered: a failed write leaves nothing queued

    def append(self, event: Event) -> None:
        self._file.write(to_json(event) + "\n")
        self._file.flush()
        if not isinstance(event, _UNSYNCED):
            self._written += 1

    def sync(self) -> None:
        """fsync now if a state change is not yet on disk (blocking)."""
        target = self._written
        if self._synced < target:
            began = time.perf_counter()
            os.fsync(self._file.fileno())
            self._last_sync_seconds = time.perf_counter() - began
            self._synced = max(self._synced, target)

    async def durable(self) -> None:
        """Return once every state change appended so far is on disk; concurrent callers share an fsync."""
        if self._synced >= self._written:
            return
        if self._sync_lock is None:
            self._sync_lock = asyncio.Lock()
        if self._last_sync_seconds < INLINE_SYNC_SECONDS and not self._sync_lock.locked():
            self.sync()
            return
        async with self._sync_lock:
            await asyncio.to_thread(self.sync)

    def close(self) -> None:
        if not self._file.closed:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError:
                pass  # a full disk: the torn tail is repaired when the run is resumed
            finally:
                try:
                    self._file.close()
                except OSError:  # close flushes the same unwritable buffer again
                    pass


_TASK_FIELD = re.compile(r'"task"\s*:\s*"([^"\\]{1,200})"')


@dataclass
class UnreadableLine:
    """A journal line that gave no event: torn by a crash, garbage, or another format."""

    path: Path
    number: int  # 1-based
    text: str

    def describe(self, root: Path | None = None) -> str:
        """One line naming the file (relative to ``root`` when inside it) and the line."""
        path = self.path
        if root is not None and path.is_relative_to(root):
            path = path.relative_to(root)
        return f"{path}:{self.number}: unreadable journal line ignored"

    def task_ids(self) -> set[str]:
        """Tasks the line may have been about (its readable "task" fields)."""
        return set(_TASK_FIELD.findall(self.text))


def parse_lines(lines, unreadable: list[UnreadableLine] | None = None, path: Path = Path("")) -> Iterator[Event]:
    """Events from journal lines, skipping torn or unknown ones (noted in ``unreadable`` when given)."""
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            data = json.loads(line)
            event = from_dict(data)
        except (ValueError, KeyError, TypeError, AttributeError):
            # a torn line after a crash, garbage, or a newer event type
            if unreadable is not None:
                unreadable.append(UnreadableLine(path, number, line))
            continue
        yield event


def read_events(path: Path, unreadable: list[UnreadableLine] | None = None) -> list[Event]:
    # Lines end at "\n" only (see JournalTail.read_new), so line numbers match any editor's.
    with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
        return list(parse_lines(f, unreadable, path))


class JournalTail:
    """Reads new events from a journal as they are appended (for ``waveui watch``).

    Opens the file read-only and keeps a partial last line until its end arrives.
    """

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0
        self._partial = b""

    def read_new(self) -> list[Event]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        data = self._partial + data
        complete, _, self._partial = data.rpartition(b"\n")
        if not complete:
            return []
        # Split at "\n" only: str.splitlines also splits at "\x85", "\u2028", ..., which a journal line
        # may hold raw in a title or a reason (JSON escapes none of them), and the event would be lost.
        return list(parse_lines(complete.decode("utf-8", errors="replace").split("\n")))


def list_runs(repo_root: Path) -> list[Path]:
    """Run folders, oldest first."""
    root = runs_dir(repo_root)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if (p / JOURNAL_NAME).exists()), key=lambda p: p.name)
