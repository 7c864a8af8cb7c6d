"""The ``::waveui`` protocol: the progress, cost, iterations and message any task may print, one line each.

A line of the form ::

    ::waveui progress=40 cost=0.12 iteration=3 message="writing tests"

gives the fields of a :class:`waveui.run.events.TaskProgress` event. Whoever
reads a task's output offers it every line through a :data:`LineReader`;
:func:`read_directive` is the one for this protocol, and an agent may add a
reader of its own output (see :mod:`waveui.agents`).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable

DIRECTIVE_PREFIX = "::waveui"
_PREFIX_BYTES = DIRECTIVE_PREFIX.encode()
MESSAGE_MAX = 1000  # a message is shown in a table cell and stored in the journal

# The fields a line of task output reports (keys as :func:`parse_directive` gives them), or None.
LineReader = Callable[[bytes], dict | None]


def _number(text: str, strip: str) -> float | None:
    try:
        value = float(text.strip().strip(strip))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_directive(line: str) -> dict | None:
    """The fields of a ``::waveui`` line, or None if ``line`` is not one.

    Values are ``key=value`` words split like a shell does (quote values with
    spaces). Recognised keys: ``progress`` (percent, 0 to 100, a trailing ``%``
    allowed), ``cost`` (USD so far, at least 0, a leading ``$`` allowed),
    ``iteration`` or ``iterations`` (whole number, at least 0), ``message``,
    ``tokens_in``, ``tokens_out`` and ``tokens_cached`` (whole numbers so far),
    ``failed`` (why the task's agent says it failed, even if it exits 0) and
    ``denied`` (tool calls the agent was refused, separated by commas). The
    result has those keys (``iterations`` for either spelling) only for the
    values that were valid; bad values and unknown keys are dropped, so a
    directive line can give an empty dict.
    """
    text = line.strip()
    if not text.startswith(DIRECTIVE_PREFIX):
        return None
    rest = text[len(DIRECTIVE_PREFIX):]
    if rest and not rest[0].isspace():
        return None  # "::waveuiX" is some other tool's marker
    try:
        words = shlex.split(rest)
    except ValueError:
        return {}  # unbalanced quotes: no word can be trusted
    result: dict = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            continue
        key = key.lower()
        if key == "progress":
            number = _number(value, "%")
            if number is not None and 0.0 <= number <= 100.0:
                result["progress"] = number
        elif key == "cost":
            number = _number(value, "$")
            if number is not None and number >= 0.0:
                result["cost"] = number
        elif key in ("iteration", "iterations"):
            try:
                count = int(value)
            except ValueError:
                continue
            if count >= 0:
                result["iterations"] = count
        elif key in TOKEN_KEYS:
            try:
                count = int(value)
            except ValueError:
                continue
            if count >= 0:
                result[key] = count
        elif key in ("message", "failed"):
            result[key] = one_line(value)
        elif key == "denied":
            tools = [one_line(tool).strip() for tool in value.split(",")]
            result["denied"] = [tool for tool in tools if tool]
    return result


TOKEN_KEYS = ("tokens_in", "tokens_out", "tokens_cached")


def one_line(text: str) -> str:
    """``text`` fit for a table cell and the journal: control characters as spaces, at most MESSAGE_MAX long."""
    clean = "".join(ch if ch.isprintable() else " " for ch in text)
    return clean if len(clean) <= MESSAGE_MAX else clean[:MESSAGE_MAX - 1] + "…"


def read_directive(line: bytes) -> dict | None:
    """:func:`parse_directive` for a raw line of output; cheap for every other line.

    Only the start of the line is looked at before decoding.
    """
    if _PREFIX_BYTES in line[:len(_PREFIX_BYTES) + 64]:
        return parse_directive(line.decode("utf-8", "replace"))
    return None
