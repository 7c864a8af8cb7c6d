"""OpenAI's Codex CLI: its recipe, and its ``exec --json`` events read as tokens, turns, failures and declined commands."""

from __future__ import annotations

import json
import re

from waveui.agents import base

NAME = "codex"
# --full-auto was removed from `codex exec`; --sandbox workspace-write is what it stood for. exec never asks
# for approval: a command the sandbox refuses fails and the agent goes on without it.
COMMAND = 'codex exec --json --sandbox workspace-write "$WAVEUI_PROMPT"'
# `codex exec` takes the prompt as its one argument and --sandbox workspace-write lets it edit the
# worktree (developers.openai.com/codex/noninteractive): COMMAND's flags, on the resolving prompt.
RESOLVE = base.resolver(COMMAND)
COMMENT = ("OpenAI Codex CLI, non-interactive, sandboxed to the worktree (no network); "
           "waveui reads its tokens and failures from its JSON events")
GRANTS = ("edits and shell commands inside the worktree, no network (`--sandbox workspace-write`); allow the network "
          "with `-c sandbox_workspace_write.network_access=true`, narrow to reading with `--sandbox read-only`")
KEEP_OUT = base.KEEP_OUT
# CODEX_HOME, by default ~/.codex: config, auth, logs and sessions
# (developers.openai.com/codex, config-file/environment-variables, "CODEX_HOME").
SANDBOX_WRITABLE = ("~/.codex/", "~/.cache/")
# `turn.completed` reports each turn's usage, not the thread's: waveui adds them up.
SUMS = ("tokens_in", "tokens_cached", "tokens_out", "iterations")

matches = base.runs_program(NAME)

# The events worth decoding; every other line (item.started, reasoning, plain text) is passed by cheaply.
_WANTED = re.compile(rb'"type"\s*:\s*"(turn\.completed|turn\.failed|error|item\.completed)"')


def parse_event(event: object) -> dict | None:
    """What one decoded ``codex exec --json`` event reports, or None.

    The events (``ThreadEvent`` in openai/codex ``codex-rs/exec/src/exec_events.rs``):

    * ``turn.completed`` with ``usage``: ``input_tokens`` (cached ones
      included), ``cached_input_tokens``, ``output_tokens`` of that turn, given
      here as that turn's ``tokens_in``, ``tokens_cached``, ``tokens_out`` and
      one iteration (see :data:`SUMS`); Codex reports no cost;
    * ``turn.failed`` with ``error.message`` and the top-level ``error`` event
      (an unrecoverable stream error) give ``failed``, the agent's words;
    * ``item.completed`` of an ``agent_message`` gives its text as the message;
      of a ``command_execution`` whose status is ``declined``, the command as
      ``denied``.
    """
    if not isinstance(event, dict):
        return None
    kind = event.get("type")
    if kind == "turn.completed":
        usage = event.get("usage")
        if not isinstance(usage, dict):
            return {"iterations": 1}
        fields: dict = {"iterations": 1}
        for key, name in (("input_tokens", "tokens_in"), ("cached_input_tokens", "tokens_cached"),
                          ("output_tokens", "tokens_out")):
            value = base.count(usage.get(key))
            if value is not None:
                fields[name] = value
        return fields
    if kind in ("turn.failed", "error"):
        error = event.get("error") if kind == "turn.failed" else event
        said = error.get("message") if isinstance(error, dict) else None
        words = base.one_line(said) if isinstance(said, str) else ""
        failed = words or kind
        return {"failed": failed, "message": base.one_line(f"agent stopped: {failed}")}
    if kind == "item.completed":
        item = event.get("item")
        if not isinstance(item, dict):
            return None
        if item.get("type") == "agent_message" and isinstance(item.get("text"), str) and item["text"].strip():
            return {"message": base.one_line(item["text"])}
        if item.get("type") == "command_execution" and item.get("status") == "declined":
            command = item.get("command") if isinstance(item.get("command"), str) else ""
            return {"denied": [base.one_line(f"command: {command}" if command else "command")]}
    return None


def read_line(line: bytes) -> dict | None:
    """:func:`parse_event` for a raw line of output; only lines naming a wanted event type are decoded."""
    if line[:64].lstrip()[:1] != b"{" or not _WANTED.search(line):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return parse_event(event)
