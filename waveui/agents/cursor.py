"""Cursor's agent CLI: its recipe, and its stream-json result line read as the task's last word or failure.

``cursor-agent -p --output-format stream-json`` prints ``system``, ``user``,
``assistant`` and ``tool_call`` events and, on success, a terminal
``{"type": "result", "subtype": "success", "is_error": false, "duration_ms":
..., "result": "<full assistant text>", "session_id": ...}``; on failure it
exits non-zero with the error on stderr and may print no result at all
(cursor.com/docs/cli/reference/output-format). Newer versions add a
``usage`` object with camelCase token counts, read when present.
"""

from __future__ import annotations

from waveui.agents import base
from waveui.agents.jsonl import decode, result_fields

NAME = "cursor-agent"
COMMAND = 'cursor-agent -p "$WAVEUI_PROMPT" --force --output-format stream-json'
# -p: print mode, one prompt, then exit; --force: commands run unasked unless denied (`cursor-agent
# --help`, as in linuxcommandlibrary.com/man/cursor): COMMAND's flags on the resolving prompt.
RESOLVE = base.resolver(COMMAND)
COMMENT = "Cursor Agent CLI, headless, commands allowed; waveui reads its result line"
GRANTS = ("edits files and runs any shell command not denied in `.cursor/cli.json` (`--force`); "
          "without `--force` it only proposes commands, and `permissions.deny` there narrows it")
SUMS: tuple[str, ...] = ()  # what it reports are totals already
KEEP_OUT: tuple[str, ...] = ()  # its chats and settings live under ~/.cursor
# ~/.cursor/cli-config.json, which the CLI rewrites itself (cursor.com/docs/cli/reference/configuration).
SANDBOX_WRITABLE = ("~/.cursor/", "~/.config/cursor/", "~/.cache/")

matches = base.runs_program(NAME)


def read_line(line: bytes) -> dict | None:
    """The last word, failure and tokens of the ``result`` event; None for every other line."""
    event = decode(line, b'"result"')
    if event is None or event.get("type") != "result":
        return None
    return result_fields(event)
