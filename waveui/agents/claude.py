"""Claude Code: its recipe, and its stream-json result line read as the task's cost, turns and last word."""

from __future__ import annotations

import json
import math
import re

from waveui.agents import base
from waveui.run.directives import MESSAGE_MAX

NAME = "claude"
COMMAND = 'claude -p "$WAVEUI_PROMPT" --output-format stream-json --verbose --permission-mode acceptEdits'
COMMENT = "Claude Code, headless; waveui reads each task's cost and turns from its stream-json result line"

matches = base.runs_program(NAME)

# Only such lines are worth decoding.
_RESULT_TYPE = re.compile(r'"type"\s*:\s*"result"')
_RESULT_TYPE_BYTES = re.compile(_RESULT_TYPE.pattern.encode())


def parse_result(line: str) -> dict | None:
    """Cost, turns and outcome from Claude Code's JSON result line, or None if ``line`` is not one.

    Claude Code with ``--output-format stream-json`` prints one JSON object
    per line and ends with ``{"type": "result", "subtype": "success",
    "total_cost_usd": 0.12, "num_turns": 7, "result": "...", ...}``: the
    task's cost and iterations, so the agent needs no ``::waveui`` lines. Every
    other event (``assistant``, ``user``, ``system``) gives None, and only lines
    starting with ``{`` and naming the ``result`` type are decoded at all. The
    result has the keys of :func:`waveui.run.directives.parse_directive`:
    ``cost``, ``iterations``, ``message``.
    """
    text = line.strip()
    if not text.startswith("{") or not _RESULT_TYPE.search(text):
        return None
    try:
        event = json.loads(text)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("type") != "result":
        return None
    result: dict = {}
    cost = event.get("total_cost_usd", event.get("cost_usd"))  # cost_usd: older Claude Code versions
    if isinstance(cost, (int, float)) and not isinstance(cost, bool) and math.isfinite(cost) and cost >= 0:
        result["cost"] = float(cost)
    turns = event.get("num_turns")
    if isinstance(turns, int) and not isinstance(turns, bool) and turns >= 0:
        result["iterations"] = turns
    subtype = event.get("subtype")
    said = event.get("result")
    if event.get("is_error") or (isinstance(subtype, str) and subtype != "success"):
        message = f"agent stopped: {subtype}" if isinstance(subtype, str) and subtype else "agent error"
        if isinstance(said, str) and said.strip():
            message += f": {said.strip()}"
    else:
        message = said.strip() if isinstance(said, str) else ""
    message = " ".join(message.split())  # one line for a table cell; control characters are whitespace here
    message = "".join(ch if ch.isprintable() else " " for ch in message)
    if message:
        result["message"] = message if len(message) <= MESSAGE_MAX else message[:MESSAGE_MAX - 1] + "…"
    return result


def read_line(line: bytes) -> dict | None:
    """:func:`parse_result` for a raw line of output; cheap for every other line.

    Only the start of the line is looked at before searching it, and only a
    line naming the result type is decoded.
    """
    if line[:64].lstrip()[:1] == b"{" and _RESULT_TYPE_BYTES.search(line):
        return parse_result(line.decode("utf-8", "replace"))
    return None
