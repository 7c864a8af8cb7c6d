"""Aider: its recipe, and its ``Tokens: ... Cost: ...`` lines read as the task's tokens and cost."""

from __future__ import annotations

import re

from waveui.agents import base

NAME = "aider"
# --yes-always answers every question, and some are not about the task: turn those off. --no-check-update:
# else aider may pip-install a new version of itself mid-task; --no-analytics: else it may opt the user in;
# --no-gitignore: else it adds .aider* to the project's .gitignore, a change in every task's work.
COMMAND = ('aider --yes-always --no-auto-commits --no-check-update --no-analytics --no-gitignore'
           ' --message "$WAVEUI_PROMPT"')
# --message: one message, then exit (aider.chat/docs/scripting.html). The conflicted files need not be
# passed as arguments: aider offers to add every file a message names to the chat, and --yes-always
# accepts (Aider-AI/aider aider/coders/base_coder.py, preproc_user_input -> check_for_file_mentions).
RESOLVE = base.resolver(COMMAND)
COMMENT = "Aider: one message, no questions asked, no self-update; waveui commits the changes itself"
GRANTS = ("edits the files it chooses; declines shell commands, so tests run only through "
          "`--test-cmd \"pytest -q\" --auto-test`; network only to its model")
KEEP_OUT = (".aider*",)  # its chat and input history and tag cache, written in the worktree
# ~/.aider/ holds its analytics id and caches (aider.chat/docs/more/analytics.html; aider/analytics.py).
SANDBOX_WRITABLE = ("~/.aider/", "~/.cache/")
# Each `Tokens:` line counts one message's tokens; the cost it gives for the session is already a total.
SUMS = ("tokens_in", "tokens_cached", "tokens_out")

matches = base.runs_program(NAME)

_NUMBER = r"([0-9][0-9.,]*[kKmM]?)"
_TOKENS = re.compile(rf"Tokens: {_NUMBER} sent(?:, {_NUMBER} cache write)?(?:, {_NUMBER} cache hit)?"
                     rf", {_NUMBER} received\.(?:.*?Cost: \$[0-9.]+ message, \$([0-9.]+) session\.)?")


def tokens(text: str) -> int | None:
    """A token count as aider's ``format_tokens`` writes it (``489``, ``9.6k``, ``12k``, ``1.2M``)."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    try:
        return round(float(text.rstrip("kKmM").replace(",", "")) * scale)
    except ValueError:
        return None


def parse_report(line: str) -> dict | None:
    """What one of aider's usage lines reports, or None if ``line`` is not one.

    After each reply aider prints (Aider-AI/aider ``aider/coders/base_coder.py``,
    ``calculate_and_show_tokens_and_cost``) ``Tokens: 9.6k sent, 2.1k cache
    hit, 489 received. Cost: $0.04 message, $0.10 session.``: the message's
    tokens (cache write and hit only when the model reports them; the cost
    only when aider knows the model's prices) and the session's cost so far.
    Gives ``tokens_in`` (sent), ``tokens_cached`` (cache hit), ``tokens_out``
    (received) of that message and ``cost``, the session's.
    """
    match = _TOKENS.search(line)
    if match is None:
        return None
    sent, _written, hit, received, session = match.groups()
    fields: dict = {}
    for name, text in (("tokens_in", sent), ("tokens_cached", hit), ("tokens_out", received)):
        value = tokens(text) if text else None
        if value is not None:
            fields[name] = value
    if session:
        try:
            fields["cost"] = float(session)
        except ValueError:
            pass
    return fields


def read_line(line: bytes) -> dict | None:
    """:func:`parse_report` for a raw line of output; any line not starting ``Tokens:`` costs one comparison."""
    if line[:12].lstrip(b"> \t")[:7] != b"Tokens:":  # "> " is how aider's own history file quotes it
        return None
    return parse_report(line.decode("utf-8", "replace"))
