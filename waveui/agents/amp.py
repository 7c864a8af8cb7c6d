"""Amp: its recipe, and its Claude-compatible stream-json result read as the task's turns, last word or failure.

``amp -x PROMPT --stream-json`` prints ``system``, ``user`` and
``assistant`` events and ends with ``{"type": "result", "subtype":
"success", "duration_ms": ..., "is_error": false, "num_turns": 1, "result":
"...", "session_id": ...}`` (ampcode.com/news/streaming-json); an error
result has ``is_error: true``, a subtype such as ``error_during_execution``
or ``error_max_turns`` and its words in ``error``. It reports no cost.
"""

from __future__ import annotations

from waveui.agents import base
from waveui.agents.jsonl import decode, result_fields

NAME = "amp"
COMMAND = 'amp -x "$WAVEUI_PROMPT" --stream-json --dangerously-allow-all'
# -x (--execute): one message, then exit; --stream-json only with it (ampcode.com/manual, "Execute
# Mode" and "Stream JSON Output"): COMMAND's flags on the resolving prompt.
RESOLVE = base.resolver(COMMAND)
COMMENT = "Amp in execute mode, every tool allowed; waveui reads its turns and failures from the stream-json result"
GRANTS = ("uses every tool without asking, shell commands and the network included (`--dangerously-allow-all`); "
          "without it, tools its `amp.permissions` setting does not allow are refused")
SUMS: tuple[str, ...] = ()  # what it reports are totals already
KEEP_OUT: tuple[str, ...] = ()  # threads are kept on Amp's servers and under ~/.config/amp
# ~/.config/amp/: its user settings.json (ampcode.com/manual, "Configuration").
SANDBOX_WRITABLE = ("~/.config/amp/", "~/.cache/")

matches = base.runs_program(NAME)


def read_line(line: bytes) -> dict | None:
    """Turns, last word and failure of the ``result`` event; None for every other line."""
    event = decode(line, b'"result"')
    if event is None or event.get("type") != "result":
        return None
    return result_fields(event)
