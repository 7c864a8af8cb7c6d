"""What agent modules borrow unless they know better: output that reports nothing, a program recognised by name."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable


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
