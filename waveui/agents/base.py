"""What agent modules borrow unless they know better: output that reports nothing, a program recognised by name.

Besides these, every agent module names ``KEEP_OUT`` (gitignore-style
patterns of the files the agent writes in the worktree for itself, left out
of the task's commit), ``GRANTS`` (one line for the README: what its
recipe lets the agent do unattended and the flag that grants or narrows it)
and ``RESOLVE`` (its recipe for ``[epic] resolve``, most made by :func:`resolver`).
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Callable

from waveui.run import directives

KEEP_OUT: tuple[str, ...] = ()  # an agent that writes no files of its own in the worktree
GRANTS = ""
# Where the agent writes for itself outside the worktree (its settings, sessions, credentials, caches), given
# to a sandboxed step as writable: "~" is the step's home, a trailing "/" marks a folder (made when missing).
SANDBOX_WRITABLE: tuple[str, ...] = ()


# The prompt of every agent's resolver, double-quoted for the shell: the variables are expanded into
# one argument and never parsed again, so no file name or task prompt can break the quoting. The
# conflicted files come last, one per line as waveui hands them over; the prompt holds no single
# quote, so the recipe stays a literal string in the epic file.
RESOLVE_PROMPT = ('"Resolve the git merge conflicts in this worktree, keeping the intent of both sides: the work '
                  'merged before and the change being merged, which was made for this task: $WAVEUI_PROMPT -- '
                  'Leave no conflict markers in any file. Do not commit, reset, stash or check out anything: '
                  'the resolved files are committed for you. The files in conflict: $WAVEUI_CONFLICT_FILES"')


def resolver(command: str) -> str:
    """The agent's recipe ``command`` run on :data:`RESOLVE_PROMPT` instead of the task's prompt.

    The same program and flags as the recipe (headless, the same permissions,
    the same budgets), so the resolver runs as the task's agent did and waveui
    reads its output the same way.
    """
    if command.count('"$WAVEUI_PROMPT"') != 1:
        raise ValueError(f"a recipe hands the prompt over once, as \"$WAVEUI_PROMPT\": {command}")
    return command.replace('"$WAVEUI_PROMPT"', RESOLVE_PROMPT)


def read_line(line: bytes) -> dict | None:
    """Nothing: the agent's own output reports no progress or cost (its ``::waveui`` lines still do)."""
    return None


def runs_program(program: str) -> Callable[[str], bool]:
    """A ``matches(command)`` for an agent run as ``program``: any word of the command naming it, bare or by path."""

    def matches(command: str) -> bool:
        try:
            words = shlex.split(command)
        except ValueError:  # unbalanced quotes: the shell will say so; words are still words
            words = command.split()
        return any(os.path.basename(word) == program for word in words)

    return matches


# Keys of ``read_line``'s fields that an agent reports per line (per turn, per message) rather than as
# totals: :func:`waveui.agents.line_reader` adds them up, so what reaches the task is always a total so far.
SUMS: tuple[str, ...] = ()


def one_line(text: object) -> str:
    """``text`` as one printable line no longer than a message may be; "" for anything not a string."""
    if not isinstance(text, str):
        return ""
    return directives.one_line(" ".join("".join(ch if ch.isprintable() else " " for ch in text).split()))


def count(value: object) -> int | None:
    """A token or turn count as an agent wrote it in JSON, or None for anything that is not one."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def dollars(value: object) -> float | None:
    """A cost as an agent wrote it in JSON, or None for anything that is not one."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None
