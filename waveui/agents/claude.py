"""Claude Code: its recipe, and its stream-json result line read as the task's cost, tokens, outcome and denials."""

from __future__ import annotations

import json
import re

from waveui.agents import base

NAME = "claude"
# bypassPermissions: in -p mode nobody answers a permission prompt, so under any narrower mode every
# tool call outside it (running the tests, installing a package) is denied and Claude Code still exits 0.
COMMAND = ('claude -p "$WAVEUI_PROMPT" --output-format stream-json --verbose --permission-mode bypassPermissions'
           ' ${WAVEUI_MAX_COST:+--max-budget-usd "$WAVEUI_MAX_COST"} ${WAVEUI_MAX_TURNS:+--max-turns "$WAVEUI_MAX_TURNS"}')
# -p: one prompt, headless, then exit (docs.anthropic.com/en/docs/claude-code/cli-reference); the flags
# are COMMAND's, so the resolver may run the tests and its cost and denials are read as the task's.
RESOLVE = base.resolver(COMMAND)
COMMENT = ("Claude Code, headless, every tool allowed (edits, shell, network) in the task's worktree; "
           "waveui reads its cost, tokens, turns and denials from the stream-json result")
GRANTS = ("edits, any shell command and network access, unasked (`--permission-mode bypassPermissions`); narrow it "
          "with `--permission-mode acceptEdits --allowedTools \"Bash(npm test:*)\" ...` (a tool not listed is denied)")
KEEP_OUT = base.KEEP_OUT
# ~/.claude/ (settings, sessions), ~/.claude.json (preferences, OAuth session, per-project state)
# (code.claude.com/docs/en/settings, "Settings files"); ~/.cache/ for what its tools cache.
SANDBOX_WRITABLE = ("~/.claude/", "~/.claude.json", "~/.cache/")
SUMS = base.SUMS

matches = base.runs_program(NAME)

# Only such lines are worth decoding.
_RESULT_TYPE = re.compile(r'"type"\s*:\s*"result"')
_RESULT_TYPE_BYTES = re.compile(_RESULT_TYPE.pattern.encode())
_DENIAL_MAX = 200  # one denied call, as shown in a warning


def parse_result(line: str) -> dict | None:
    """What Claude Code's JSON result line reports, or None if ``line`` is not one.

    Claude Code with ``--output-format stream-json`` prints one JSON object
    per line and ends with the result (``SDKResultMessage`` in the Agent SDK
    reference): ``{"type": "result", "subtype": "success", "is_error": false,
    "num_turns": 7, "total_cost_usd": 0.12, "usage": {...}, "result": "...",
    "permission_denials": [...], "stop_reason": "end_turn", ...}``. An error
    result (``is_error``, or a subtype such as ``error_max_turns``,
    ``error_max_budget_usd``, ``error_during_execution``) carries its text in
    ``errors``, a list of strings, and usually no ``result``.

    The fields are those of :mod:`waveui.agents`: ``cost``, ``iterations``,
    ``tokens_in`` (every input token, cached or not), ``tokens_cached`` (those
    read from the prompt cache), ``tokens_out``, ``message``, ``failed`` (the
    agent's own words when its result is an error) and ``denied`` (each tool
    call refused, as ``Tool: what it was asked``). Every other event gives
    None, and only lines starting with ``{`` and naming the ``result`` type are
    decoded at all.
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
    cost = base.dollars(event.get("total_cost_usd", event.get("cost_usd")))  # cost_usd: older Claude Code versions
    if cost is not None:
        result["cost"] = cost
    turns = base.count(event.get("num_turns"))
    if turns is not None:
        result["iterations"] = turns
    result.update(_tokens(event.get("usage")))
    subtype = event.get("subtype") if isinstance(event.get("subtype"), str) else ""
    said = event.get("result") if isinstance(event.get("result"), str) else ""
    if event.get("is_error") is True or (subtype and subtype != "success"):
        errors = event.get("errors")
        words = "; ".join(e.strip() for e in errors if isinstance(e, str) and e.strip()) if isinstance(errors, list) else ""
        words = base.one_line(words or said)
        reason = subtype or "error"
        result["failed"] = base.one_line(f"{reason}: {words}") if words else reason
        message = f"agent stopped: {result['failed']}"
    else:
        message = said
    message = base.one_line(message)
    if message:
        result["message"] = message
    denied = _denials(event.get("permission_denials"))
    if denied:
        result["denied"] = denied
    return result


def _tokens(usage: object) -> dict:
    """Token counts from the result's ``usage``: fresh, cache-written and cache-read input, and output."""
    if not isinstance(usage, dict):
        return {}
    fresh, written, read, out = (base.count(usage.get(key)) for key in (
        "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens"))
    tokens = {}
    if fresh is not None:
        tokens["tokens_in"] = fresh + (written or 0) + (read or 0)
    if read is not None:
        tokens["tokens_cached"] = read
    if out is not None:
        tokens["tokens_out"] = out
    return tokens


def _denials(denials: object) -> list[str]:
    """Each entry of ``permission_denials`` (``tool_name``, ``tool_input``) as ``Tool: what it was asked``."""
    if not isinstance(denials, list):
        return []
    said = []
    for denial in denials:
        if not isinstance(denial, dict) or not isinstance(denial.get("tool_name"), str):
            continue
        asked = denial.get("tool_input")
        what = ""
        if isinstance(asked, dict):
            # the argument that says what the call was for: the command, the file, the address, the search
            what = next((asked[key] for key in ("command", "file_path", "path", "url", "pattern", "query")
                         if isinstance(asked.get(key), str)), "")
        line = base.one_line(f"{denial['tool_name']}: {what}" if what else denial["tool_name"])
        said.append(line if len(line) <= _DENIAL_MAX else line[:_DENIAL_MAX - 1] + "…")
    return said


def read_line(line: bytes) -> dict | None:
    """:func:`parse_result` for a raw line of output; cheap for every other line.

    Only the start of the line is looked at before searching it, and only a
    line naming the result type is decoded.
    """
    if line[:64].lstrip()[:1] == b"{" and _RESULT_TYPE_BYTES.search(line):
        return parse_result(line.decode("utf-8", "replace"))
    return None
