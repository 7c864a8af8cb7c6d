"""Gemini CLI: its recipe, and its stream-json result read as the task's tokens and, when it failed, why.

Gemini CLI's ``--output-format stream-json`` prints one JSON event per line
(``init``, ``message``, ``tool_use``, ``tool_result``, ``error``, ``result``)
and ends with ``{"type": "result", "status": "success" | "error", "error":
{"type", "message"}, "stats": {"total_tokens", "input_tokens",
"output_tokens", "cached", "input", "duration_ms", "tool_calls"}}``
(google-gemini/gemini-cli, packages/core/src/output/types.ts). It reports
no cost and no turns. Its ``error`` events are warnings the run survives,
so they only become the task's message.
"""

from __future__ import annotations

from waveui.agents import base
from waveui.agents.jsonl import count, decode, one_line, put

NAME = "gemini"
COMMAND = 'gemini -p "$WAVEUI_PROMPT" --output-format stream-json --approval-mode yolo'
# -p: headless, one prompt (geminicli.com/docs/cli/headless); COMMAND's flags on the resolving prompt.
RESOLVE = base.resolver(COMMAND)
COMMENT = "Gemini CLI, headless, every tool approved; waveui reads its tokens and failures from the stream-json result"
GRANTS = ("edits files, runs any shell command and fetches from the network without asking (`--approval-mode yolo`); "
          "`--approval-mode auto_edit` allows edits only, `--sandbox` runs its tools in a container")
SUMS: tuple[str, ...] = ()  # what it reports are totals already
KEEP_OUT: tuple[str, ...] = ()  # it keeps its sessions and checkpoints under ~/.gemini, not in the worktree
# ~/.gemini/: settings.json, trusted folders, chats and checkpoints
# (geminicli.com/docs/reference/configuration, "Settings files").
SANDBOX_WRITABLE = ("~/.gemini/", "~/.cache/")

matches = base.runs_program(NAME)


def read_line(line: bytes) -> dict | None:
    """Tokens and outcome from the ``result`` event, the text of an ``error`` event; None for anything else."""
    event = decode(line, b'"result"', b'"error"')
    if event is None:
        return None
    kind = event.get("type")
    if kind == "error":
        message = one_line(event.get("message"))
        return {"message": message} if message else None
    if kind != "result":
        return None
    fields: dict = {}
    stats = event.get("stats")
    if isinstance(stats, dict):
        put(fields, "tokens_in", count(stats.get("input_tokens")))
        put(fields, "tokens_out", count(stats.get("output_tokens")))
        put(fields, "tokens_cached", count(stats.get("cached")))
    if event.get("status") == "error":
        error = event.get("error")
        words = ""
        if isinstance(error, dict):
            words = one_line(error.get("message")) or one_line(error.get("type"))
        fields["failed"] = fields["message"] = words or "agent error"
    return fields
