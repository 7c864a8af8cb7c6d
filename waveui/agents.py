"""Agent recipes: the ``[epic] command`` that runs each coding agent non-interactively on a task.

Every recipe runs in the task's worktree (the command's working folder) on the
prompt waveui hands over in ``$WAVEUI_PROMPT``, never pasted into the command,
so no prompt can break the shell's quoting. waveui commits what the agent
leaves in the worktree, so agents that commit by themselves are told not to.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import tomli_w


class Recipe(NamedTuple):
    command: str
    comment: str  # one line for the epic file, above the command


RECIPES: dict[str, Recipe] = {
    "claude": Recipe(
        'claude -p "$WAVEUI_PROMPT" --output-format stream-json --verbose --permission-mode acceptEdits',
        "Claude Code, headless; waveui reads each task's cost and turns from its stream-json result line",
    ),
    "codex": Recipe(
        'codex exec --full-auto "$WAVEUI_PROMPT"',
        "OpenAI Codex CLI, non-interactive, allowed to edit the worktree",
    ),
    "aider": Recipe(
        'aider --yes-always --no-auto-commits --message "$WAVEUI_PROMPT"',
        "Aider: one message, no questions asked; waveui commits the changes itself",
    ),
    "shell": Recipe(
        'mkdir -p notes && printf "%s\\n" "$WAVEUI_PROMPT" > "notes/$WAVEUI_TASK_ID.md"',
        "a plain shell command: put your own script here; what it leaves in the worktree is the task's work",
    ),
}


def command_line(command: str) -> str:
    """``command = ...`` as a TOML line: a literal string when it can be one, so quotes read as typed."""
    if "'" not in command and not re.search(r"[\x00-\x1f\x7f]", command):
        return f"command = '{command}'"
    return tomli_w.dumps({"command": command}).strip()


def recipe_lines(name: str) -> list[str]:
    """The comment and the command line of recipe ``name``, ready for an ``[epic]`` table."""
    recipe = RECIPES[name]
    return [f"# {recipe.comment}", command_line(recipe.command)]


def epic_command_lines(name: str | None) -> list[str]:
    """The ``[epic]`` lines for agent ``name``; without one, comments that suggest a recipe."""
    if name:
        return recipe_lines(name)
    return [f"# No command yet: set one, or import again with --agent {'|'.join(RECIPES)}. For example:",
            "# " + recipe_lines("claude")[1]]


_COMMAND = re.compile(r"^command\s*=.*$", re.M)
_COMMENTED_COMMAND = re.compile(r"^#\s*command\s*=.*\n", re.M)


def starter(text: str, name: str) -> str:
    """The starter epic ``text`` with its command replaced by recipe ``name``, the rest (comments too) kept."""
    text = _COMMENTED_COMMAND.sub("", text)  # the other suggestion would only confuse
    lines = "\n".join(recipe_lines(name))
    replaced, count = _COMMAND.subn(lambda _: lines, text, count=1)
    if count:
        return replaced
    # no command line to replace: put it right under [epic]
    return re.sub(r"^\[epic\][^\n]*\n", lambda m: m.group(0) + lines + "\n", text, count=1, flags=re.M)
