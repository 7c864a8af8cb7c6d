"""A pane that follows one task's log file, its untrusted text sanitised before it reaches the screen."""

from __future__ import annotations

import codecs
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from rich.highlighter import Highlighter
from rich.text import Text
from textual.markup import escape
from textual.widgets import Log

from waveui.core.sanitize import sanitize, sanitize_line
from waveui.core.paths import name_problem
from waveui.run.directives import parse_directive

POLL_SECONDS = 0.25
TAIL_BYTES = 64 * 1024  # how much of an existing log to show when a task is picked
READ_BYTES = 256 * 1024  # most read per poll, so a chatty task never stalls the screen
MAX_LINES = 5_000
# A line this long without its end is shown anyway (an escape sequence torn here shows as text).
PARTIAL_FLUSH = 16 * 1024


class LogFollower:
    """Reads what was appended to a file since the last call; copes with it missing, shrinking or being replaced."""

    def __init__(self, path: Path | None):
        self.path = path
        self._offset: int | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def read(self) -> tuple[str, bool]:
        """(complete new lines, whether the file started over since the last read)."""
        if self.path is None:
            return "", False
        try:
            size = self.path.stat().st_size
        except OSError:
            return "", False
        restarted = False
        if self._offset is None:
            self._offset = max(0, size - TAIL_BYTES)
        elif size < self._offset:
            self._offset, self._partial, restarted = 0, "", True
        if size == self._offset:
            return "", restarted
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read(READ_BYTES)
        self._offset += len(data)
        text = self._partial + self._decoder.decode(data)
        complete, newline, self._partial = text.rpartition("\n")
        if len(self._partial) > PARTIAL_FLUSH:
            complete, newline, self._partial = text, "\n", ""
        return (complete + newline) if newline else "", restarted


class DirectiveDimmer(Highlighter):
    """Dims the ``::waveui`` lines: figures for waveui's panes, not what the task itself has to say."""

    def highlight(self, text: Text) -> None:
        if parse_directive(text.plain) is not None:
            text.stylize("dim")


class TaskLog(Log):
    """Shows the end of ``<log_dir>/<task>.log`` and follows it as it grows.

    Its ``::waveui`` lines are shown dimmed, or not at all
    (:meth:`toggle_directives`): the lines read are kept, so that they can
    be shown again.
    """

    def __init__(self, log_dir: Path | None, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, max_lines=MAX_LINES, auto_scroll=True, highlight=True)
        self.highlighter = DirectiveDimmer()
        self.log_dir = log_dir
        self.task_id: str | None = None
        self.directives_shown = True
        self._read: deque[str] = deque(maxlen=MAX_LINES)  # every line read, shown or not
        self._follower = LogFollower(None)

    def on_mount(self) -> None:
        self.set_interval(POLL_SECONDS, self.poll, name="follow log")

    def follow(self, task_id: str | None) -> None:
        if task_id == self.task_id:
            return
        self.task_id = task_id
        self.clear()
        self._read.clear()
        # Ids come from the journal: one that is no valid task id ("../x", a NUL) names no log file.
        safe = task_id is not None and name_problem("task id", task_id) is None
        path = self.log_dir / f"{task_id}.log" if self.log_dir is not None and safe else None
        self._follower = LogFollower(path)
        self.border_title = f"Log · {escape(sanitize_line(task_id))}" if task_id else "Log"  # markup, from the journal
        self.poll()

    def toggle_directives(self) -> bool:
        """Hide the ``::waveui`` lines, or show them again; whether they are shown now."""
        self.directives_shown = not self.directives_shown
        self.clear()
        self._show(self._read)
        return self.directives_shown

    def poll(self) -> None:
        text, restarted = self._follower.read()
        lines = ["── the log started over ──"] if restarted else []
        if text:
            lines += sanitize(text).removesuffix("\n").split("\n")
        self._read.extend(lines)
        self._show(lines)
        note = self._note()
        if note != self.border_subtitle:  # setting it repaints the whole pane, four times a second
            self.border_subtitle = note

    def _show(self, lines: Iterable[str]) -> None:
        shown = [line for line in lines if self.directives_shown or parse_directive(line) is None]
        if shown:
            self.write("".join(line + "\n" for line in shown))

    def _note(self) -> str:
        if self.task_id is None:
            return "no task selected"
        if self.log_dir is None:
            return "no log folder"
        if not self._read:
            return "no output yet"
        if self.line_count == 0:
            return "only progress lines (v shows them)"
        return ""
