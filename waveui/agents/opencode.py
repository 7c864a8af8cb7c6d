"""opencode: its recipe, and its JSON events read as the task's last word, failure and refused permissions.

``opencode run --format json`` prints one event per line, each
``{"type", "timestamp", "sessionID", ...}``: ``text`` (``part.text``, a
finished text part), ``tool_use``, ``step_start``, ``step_finish``
(``part.cost`` and ``part.tokens`` of that one step), ``error`` (``error``:
``{"name", "data": {"message"}}``, and the process exits 1) and, once the
session is idle, ``done`` with ``rejected``: the permissions it refused
because ``--auto`` was not given (anomalyco/opencode,
packages/opencode/src/cli/cmd/run.ts). Step costs are per step, not the
task's total, so they are left to the ``::waveui`` lines of a wrapper.
"""

from __future__ import annotations

from waveui.agents import base
from waveui.agents.jsonl import decode, one_line

NAME = "opencode"
COMMAND = 'opencode run --format json --auto "$WAVEUI_PROMPT"'
# `opencode run MESSAGE` sends one message and exits; --auto approves what its config does not deny
# (opencode.ai/docs/cli): COMMAND's flags on the resolving prompt.
RESOLVE = base.resolver(COMMAND)
COMMENT = "opencode, one message, permissions not denied in its config approved; waveui reads its JSON events"
GRANTS = ("edits files, runs shell commands and fetches from the network unless its config denies them (`--auto`); "
          "without `--auto` every permission it asks for is refused, and `permission` in opencode.json narrows it")
SUMS: tuple[str, ...] = ()  # what it reports are totals already
KEEP_OUT: tuple[str, ...] = ()  # sessions are stored under ~/.local/share/opencode
# ~/.config/opencode/ (opencode.ai/docs/config, "Global") and ~/.local/share/opencode/, its data folder
# (auth.json and sessions, as its docs say: github.com/anomalyco/opencode/issues/5238).
SANDBOX_WRITABLE = ("~/.config/opencode/", "~/.local/share/opencode/", "~/.cache/")

matches = base.runs_program(NAME)


def read_line(line: bytes) -> dict | None:
    """The text of a ``text`` event, the error of an ``error`` event, the refusals of ``done``; else None."""
    event = decode(line, b'"text"', b'"error"', b'"done"')
    if event is None:
        return None
    kind = event.get("type")
    if kind == "text":
        part = event.get("part")
        message = one_line(part.get("text")) if isinstance(part, dict) else ""
        return {"message": message} if message else None
    if kind == "error":
        error = event.get("error")
        words = ""
        if isinstance(error, dict):
            data = error.get("data")
            words = (one_line(data.get("message")) if isinstance(data, dict) else "") or one_line(error.get("name"))
        words = words or "agent error"
        return {"failed": words, "message": words}
    if kind == "done":
        rejected = event.get("rejected")
        denied = [one_line(r) for r in rejected if one_line(r)] if isinstance(rejected, list) else []
        return {"denied": denied} if denied else None
    return None
