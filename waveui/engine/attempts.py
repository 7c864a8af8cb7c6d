"""What a new attempt of a task is told about the attempt before it.

Every attempt's work is kept under a ref (see :class:`waveui.git.worktrees.WorktreePool`).
A retry is told where: ``WAVEUI_PREVIOUS_ATTEMPT`` names the ref,
``WAVEUI_PREVIOUS_ATTEMPT_FILE`` a file holding how it ended, the end of its
output (the failing verify's, say) and its diff; after a merge conflict
``WAVEUI_CONFLICT_FILES`` lists the files. The same is added to the task's
prompt, so an agent reading only ``$WAVEUI_PROMPT`` learns it too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from waveui.run.state import Attempt, TaskView

LOG_LINES_TOLD = 80  # the end of the previous attempt's output that the brief quotes


def previous_attempt(task: TaskView, attempt: int) -> Attempt | None:
    """The latest kept attempt before ``attempt``."""
    kept = [a for a in task.kept_attempts() if a.number < attempt]
    return kept[-1] if kept else None


def write_brief(path: Path, task: TaskView, previous: Attempt, log: Path, diff: Callable[[str, str], str],
                conflict_files: list[str]) -> None:
    """Write what the next attempt should know about ``previous``: how it ended, its output's end, its diff."""
    lines = [f"Attempt {previous.number} of task {task.id} ended {previous.outcome or 'unfinished'}"
             + (f": {previous.reason}" if previous.reason else "") + ".",
             f"Its work is kept at {previous.ref} (commit {previous.commit}, started from {previous.base}).",
             f"`git diff {previous.base} {previous.commit}` shows it; `git checkout {previous.commit} -- FILE` takes a file back."]
    if conflict_files:
        lines.append("It conflicted with work merged meanwhile in: " + ", ".join(conflict_files)
                     + ". This attempt starts from the integration branch as it is now.")
    lines += ["", f"--- the last {LOG_LINES_TOLD} lines of its output ---", _tail(log, LOG_LINES_TOLD),
              "", "--- its diff ---", diff(previous.base, previous.commit) if previous.base else "(unknown base)"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="replace")


def told_in_prompt(previous: Attempt, brief: Path, conflict_files: list[str]) -> str:
    """The paragraph added to the task's prompt for an attempt that follows a kept one."""
    text = (f"\n\nNote from waveui: attempt {previous.number} of this task ended "
            f"{previous.outcome or 'unfinished'}" + (f" ({previous.reason})" if previous.reason else "")
            + f". Its work is kept at git ref {previous.ref}; what it changed and its output are in {brief}.")
    if conflict_files:
        text += (" Its changes conflicted with work merged meanwhile in " + ", ".join(conflict_files)
                 + ": redo the task on top of the current files, keeping what that work added.")
    return text


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as stream:
            stream.seek(0, 2)
            stream.seek(max(0, stream.tell() - 200 * lines))
            text = stream.read().decode("utf-8", "replace")
    except OSError:
        return "(its output could not be read)"
    return "\n".join(text.splitlines()[-lines:])
