"""Stand-ins for agent CLIs that cannot run in tests: small programs named ``claude``, ``codex``, ``aider``.

``install(bin_dir, name, scenario)`` writes an executable ``bin_dir/name``
that behaves as the real CLI does in that scenario: it changes the worktree
it runs in (or not), prints the agent's own output format line by line, and
exits with the agent's exit status. Put ``bin_dir`` first on PATH (see
:func:`path_with`) and run a real epic whose command is the agent's recipe.

Every call is recorded: ``calls(bin_dir, name)`` gives each call's argv (so a
test can see that ``--max-budget-usd`` reached the agent) and the
``WAVEUI_MAX_COST``/``WAVEUI_MAX_TURNS`` it saw.

What a stand-in writes in the worktree: ``agent-work/<task id>.txt``
(``$WAVEUI_TASK_ID``, else ``task``) when the scenario did work; aider's
stand-in also writes its ``.aider.chat.history.md``,
``.aider.input.history`` and ``.aider.tags.cache.v3/`` there, as aider does.

The formats, from the agents' own sources and documentation:

* claude (``-p --output-format stream-json --verbose``): one JSON object a
  line, ``system``/``init`` first, ``assistant`` and ``user`` messages, and a
  ``result`` last with ``subtype`` (``success``, ``error_max_turns``,
  ``error_during_execution``, ``error_max_budget_usd``), ``is_error``,
  ``num_turns``, ``total_cost_usd``, ``usage`` (``input_tokens``,
  ``cache_creation_input_tokens``, ``cache_read_input_tokens``,
  ``output_tokens``), ``stop_reason``, ``permission_denials``
  (``tool_name``, ``tool_use_id``, ``tool_input``); the text of a success in
  ``result``, of an error in ``errors`` (a list of strings). Claude Code exits
  0 after a denied tool call and 1 after an error result. Sources: Claude Agent
  SDK reference, ``SDKResultMessage``
  (https://platform.claude.com/docs/en/agent-sdk/typescript) and stop reasons
  (https://platform.claude.com/docs/en/agent-sdk/stop-reasons); headless mode
  (https://docs.claude.com/en/docs/claude-code/sdk/sdk-headless).
* codex (``codex exec --json``): ``thread.started``, ``turn.started``,
  ``item.started``/``item.completed`` (``agent_message``,
  ``command_execution``, ``file_change``), then ``turn.completed`` with
  ``usage`` (``input_tokens``, ``cached_input_tokens``, ``output_tokens``,
  per turn) or ``turn.failed`` with ``error.message``; a stream error is
  ``{"type": "error", "message": ...}``; no cost. A failed turn exits 1. The
  removed ``--full-auto`` is refused as clap refuses an unknown argument
  (exit 2). Source: openai/codex ``codex-rs/exec/src/exec_events.rs`` and
  ``codex-rs/exec/src/cli.rs``.
* aider (``--message``): prints, after each reply, ``Tokens: 2.3k sent, 1.2k
  cache hit, 156 received. Cost: $0.01 message, $0.03 session.`` (tokens of
  that message, cost of the message and of the session so far), numbers as
  its ``format_tokens``/``format_cost`` write them. Source: Aider-AI/aider
  ``aider/coders/base_coder.py`` (``calculate_and_show_tokens_and_cost``),
  ``aider/utils.py`` (``format_tokens``).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

# ------------------------------------------------------------------ claude

_CLAUDE_INIT = {"type": "system", "subtype": "init", "cwd": "WORKTREE", "session_id": "0b6f2c1e-6a51-4b8e-9d0f-3c2a9e1f7d42",
                "tools": ["Task", "Bash", "Glob", "Grep", "Read", "Edit", "Write", "TodoWrite"],
                "mcp_servers": [], "model": "claude-sonnet-4-5-20250929", "permissionMode": "bypassPermissions",
                "apiKeySource": "ANTHROPIC_API_KEY", "output_style": "default", "uuid": "3f0f6d3c-1f55-4d0c-8d6c-0c1d6b0f4a11"}


def _claude_assistant(text: str) -> dict:
    return {"type": "assistant", "message": {
        "id": "msg_01XyZ", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": text}], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 4, "cache_creation_input_tokens": 1520, "cache_read_input_tokens": 13410,
                  "output_tokens": 212, "service_tier": "standard"}},
        "parent_tool_use_id": None, "session_id": _CLAUDE_INIT["session_id"], "uuid": "5a3b1e07-8c3e-4b4f-a3f1-5e2d7c9b0a12"}


_CLAUDE_USAGE = {"input_tokens": 38, "cache_creation_input_tokens": 9412, "cache_read_input_tokens": 118230,
                 "output_tokens": 2871, "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
                 "service_tier": "standard"}


def _claude_result(subtype: str, **fields) -> dict:
    result = {"type": "result", "subtype": subtype, "is_error": subtype != "success", "duration_ms": 81234,
              "duration_api_ms": 79010, "num_turns": 7, "session_id": _CLAUDE_INIT["session_id"],
              "total_cost_usd": 0.4213, "usage": _CLAUDE_USAGE, "modelUsage": {}, "permission_denials": [],
              "stop_reason": "end_turn", "uuid": "9c0d5b3a-2f4e-4c1b-8e7d-6a5f4e3d2c1b"}
    result.update(fields)
    return result


_DENIALS = [
    {"tool_name": "Bash", "tool_use_id": "toolu_01AbC", "tool_input": {"command": "npm test", "description": "Run the tests"}},
    {"tool_name": "Bash", "tool_use_id": "toolu_01DeF", "tool_input": {"command": "npm install left-pad",
                                                                      "description": "Install the dependency"}},
]

# name -> (does work, lines, exit status)
CLAUDE = {
    "success": (True, [_CLAUDE_INIT, _claude_assistant("I'll add the model and its tests."),
                       _claude_result("success", result="Added the User model and its tests. All 12 tests pass.")], 0),
    # acceptEdits in -p mode: every Bash call is denied, the result still says success, exit 0
    "denied": (False, [dict(_CLAUDE_INIT, permissionMode="acceptEdits"), _claude_assistant("I need to run the tests first."),
                       _claude_result("success", num_turns=3, total_cost_usd=0.0712,
                                      result="I could not run the tests: permission to use Bash was denied.",
                                      permission_denials=_DENIALS)], 0),
    "error_max_turns": (True, [_CLAUDE_INIT, _claude_assistant("Working on it."),
                               _claude_result("error_max_turns", num_turns=11, stop_reason="tool_use",
                                              errors=["Reached maximum number of turns (10)"])], 1),
    "error_max_budget_usd": (True, [_CLAUDE_INIT, _claude_assistant("Working on it."),
                                    _claude_result("error_max_budget_usd", total_cost_usd=2.5173,
                                                   errors=["Reached maximum budget ($2.5)"])], 1),
    "error_during_execution": (False, [_CLAUDE_INIT,
                                       _claude_result("error_during_execution", num_turns=0, total_cost_usd=0,
                                                      stop_reason=None,
                                                      usage=dict(_CLAUDE_USAGE, input_tokens=0, output_tokens=0,
                                                                 cache_creation_input_tokens=0,
                                                                 cache_read_input_tokens=0),
                                                      errors=["API Error: 529 Overloaded"])], 1),
}

# ------------------------------------------------------------------- codex

_CODEX_START = [
    {"type": "thread.started", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"},
    {"type": "turn.started"},
    {"type": "item.completed", "item": {"id": "item_0", "type": "reasoning",
                                        "text": "**Scanning the repository**"}},
    {"type": "item.started", "item": {"id": "item_1", "type": "command_execution", "command": "bash -lc ls",
                                      "aggregated_output": "", "exit_code": None, "status": "in_progress"}},
    {"type": "item.completed", "item": {"id": "item_1", "type": "command_execution", "command": "bash -lc ls",
                                        "aggregated_output": "README.md\nsrc\n", "exit_code": 0, "status": "completed"}},
]
_CODEX_EDIT = {"type": "item.completed", "item": {"id": "item_2", "type": "file_change", "status": "completed",
                                                  "changes": [{"path": "agent-work/task.txt", "kind": "add"}]}}
_CODEX_DONE = {"type": "item.completed", "item": {"id": "item_3", "type": "agent_message",
                                                  "text": "Added the User model and its tests."}}

CODEX = {
    "success": (True, [*_CODEX_START, _CODEX_EDIT, _CODEX_DONE,
                       {"type": "turn.completed",
                        "usage": {"input_tokens": 26549, "cached_input_tokens": 22272, "output_tokens": 1590}}], 0),
    "turn_failed": (False, [*_CODEX_START,
                            {"type": "error", "message": "stream disconnected before completion: Rate limit reached "
                                                         "for gpt-5-codex. Please try again in 11.054s."},
                            {"type": "turn.failed", "error": {
                                "message": "stream disconnected before completion: Rate limit reached for gpt-5-codex. "
                                           "Please try again in 11.054s."}}], 1),
}

# ------------------------------------------------------------------- aider

AIDER = {
    "success": (True, ["Aider v0.86.1", "Main model: anthropic/claude-sonnet-4-20250514 with diff edit format, "
                       "infinite output", "Git repo: .git with 12 files", "Repo-map: using 4096 tokens, auto refresh",
                       "", "I'll add the model.", "",
                       "Tokens: 9.6k sent, 2.1k cache hit, 489 received. Cost: $0.04 message, $0.04 session.",
                       "Applied edit to agent-work/task.txt", "",
                       "Tokens: 12k sent, 8.4k cache hit, 1.2k received. Cost: $0.06 message, $0.10 session."], 0),
    # no model key: aider says so and exits 1 before doing anything
    "no_key": (False, ["Aider v0.86.1", "Model anthropic/claude-sonnet-4-20250514: Missing these environment "
                       "variables:", "- ANTHROPIC_API_KEY"], 1),
}

SCENARIOS: dict[str, dict[str, tuple[bool, list, int]]] = {"claude": CLAUDE, "codex": CODEX, "aider": AIDER}

_SCRIPT = '''#!{python}
"""Stand-in for {name} ({scenario}) written by tests/agent_standins.py."""
import json, os, sys
from pathlib import Path

argv = sys.argv[1:]
with open({calls!r}, "a") as record:
    record.write(json.dumps({{"argv": argv, "cwd": os.getcwd(),
                              "max_cost": os.environ.get("WAVEUI_MAX_COST"),
                              "max_turns": os.environ.get("WAVEUI_MAX_TURNS")}}) + "\\n")
if {name!r} == "codex" and "--full-auto" in argv:
    sys.stderr.write("error: unexpected argument '--full-auto' found\\n\\n"
                     "  tip: to pass '--full-auto' as a value, use '-- --full-auto'\\n\\n"
                     "Usage: codex exec [OPTIONS] [PROMPT]\\n\\nFor more information, try '--help'.\\n")
    sys.exit(2)
if {works!r}:
    out = Path("agent-work")
    out.mkdir(exist_ok=True)
    (out / ((os.environ.get("WAVEUI_TASK_ID") or "task") + ".txt")).write_text(
        os.environ.get("WAVEUI_PROMPT", "") + "\\n")
if {name!r} == "aider":
    Path(".aider.chat.history.md").write_text("# aider chat started\\n\\n#### " + os.environ.get("WAVEUI_PROMPT", "") + "\\n")
    Path(".aider.input.history").write_text("")
    Path(".aider.tags.cache.v3").mkdir(exist_ok=True)
    Path(".aider.tags.cache.v3/cache.db").write_bytes(b"SQLite format 3\\x00")
for line in {lines!r}:
    print(line.replace("WORKTREE", os.getcwd()) if isinstance(line, str) else
          json.dumps(line, separators=(",", ":")).replace("WORKTREE", os.getcwd().replace("\\\\", "/")), flush=True)
sys.exit({status!r})
'''


def install(bin_dir: Path, name: str, scenario: str = "success") -> Path:
    """Write the stand-in ``bin_dir/name`` for ``scenario`` (a key of :data:`SCENARIOS` ``[name]``); its path."""
    works, lines, status = SCENARIOS[name][scenario]
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(_SCRIPT.format(python=sys.executable, name=name, scenario=scenario,
                                   calls=str(calls_file(bin_dir, name)), works=works, lines=lines, status=status))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def calls_file(bin_dir: Path, name: str) -> Path:
    return bin_dir / f"{name}.calls.jsonl"


def calls(bin_dir: Path, name: str) -> list[dict]:
    """Each call of stand-in ``name`` so far: ``argv``, ``cwd``, ``max_cost``, ``max_turns`` (None when unset)."""
    path = calls_file(bin_dir, name)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def path_with(bin_dir: Path) -> str:
    """A PATH with ``bin_dir`` first, for the environment of a `waveui run` that should find the stand-ins."""
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def output_lines(name: str, scenario: str = "success") -> list[bytes]:
    """The lines stand-in ``name`` prints in ``scenario``, as a reader gets them (for testing readers directly)."""
    _, lines, _ = SCENARIOS[name][scenario]
    return [(line if isinstance(line, str) else json.dumps(line, separators=(",", ":"))).encode() for line in lines]
