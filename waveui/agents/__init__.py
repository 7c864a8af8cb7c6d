"""Agents: the coding agent CLIs waveui knows, one module each, and what waveui does with them.

Each agent is a module of this package exposing the same names, most
borrowed from :mod:`waveui.agents.base`:

* ``NAME``, its name on the command line (``waveui init --agent NAME``);
* ``COMMAND`` and ``COMMENT``, its recipe: the ``[epic] command`` that runs it
  non-interactively on a task, and one line saying so above it;
* ``RESOLVE``, its ``[epic] resolve`` recipe: the same agent asked to resolve
  the conflict markers of a merge that conflicted (the files in
  ``$WAVEUI_CONFLICT_FILES``, the task's prompt in ``$WAVEUI_PROMPT``),
  without committing; None for an agent that cannot;
* ``matches(command)``, whether a task's command runs this agent;
* ``read_line(line)``, the fields that a raw line of its output reports, or
  None (cheaply) for a line that reports nothing: any of ``cost`` (dollars),
  ``tokens_in`` (every input token, cached ones included), ``tokens_out``,
  ``tokens_cached``, ``iterations``, ``message`` (one line), ``failed`` (the
  agent's own words when its result says it failed, whatever its exit
  status) and ``denied`` (the tool calls it was refused);
* ``SUMS``, those of its fields that the agent reports per line (per turn,
  per message) rather than as totals: :func:`line_reader` adds them up;
* ``KEEP_OUT``, gitignore-style patterns of the files it writes in the
  worktree for itself (its history, its caches), never committed;
* ``GRANTS``, one line: what its recipe lets it do unattended (edit, run
  commands, reach the network) and the flag that grants or narrows that;
* ``SANDBOX_WRITABLE``, the paths outside the worktree it writes for itself
  (settings, sessions, caches: ``~/...``, folders ending in ``/``), writable
  in a sandboxed step.

:data:`AGENTS` maps names to modules: a new agent is one new module and one
line there.

Every recipe runs in the task's worktree (the command's working folder) on the
prompt waveui hands over in ``$WAVEUI_PROMPT``, never pasted into the command,
so no prompt can break the shell's quoting. waveui commits what the agent
leaves in the worktree, so agents that commit by themselves are told not to.
"""

from __future__ import annotations

import functools
import re
from types import ModuleType
from typing import NamedTuple

import tomli_w

from waveui.agents import aider, amp, base, claude, codex, cursor, gemini, goose, opencode, shell
from waveui.run.directives import LineReader, read_directive

AGENTS: dict[str, ModuleType] = {
    claude.NAME: claude,
    codex.NAME: codex,
    aider.NAME: aider,
    gemini.NAME: gemini,
    cursor.NAME: cursor,
    opencode.NAME: opencode,
    amp.NAME: amp,
    goose.NAME: goose,
    shell.NAME: shell,
}


class Recipe(NamedTuple):
    command: str
    comment: str  # one line for the epic file, above the command
    resolve: str | None  # the command that resolves a conflicting merge, None when the agent has none


RECIPES: dict[str, Recipe] = {name: Recipe(agent.COMMAND, agent.COMMENT, agent.RESOLVE)
                              for name, agent in AGENTS.items()}


@functools.lru_cache(maxsize=1024)
def agent_for(command: str) -> ModuleType | None:
    """The agent that ``command`` runs, the first in :data:`AGENTS` to recognise it; None for any other command.

    Remembered per command: recognising one splits it into words for every agent, and an epic's tasks
    mostly share a command, asked about at every step.
    """
    return next((agent for agent in AGENTS.values() if agent.matches(command)), None)


def sandbox_writable(command: str) -> tuple[str, ...]:
    """The paths outside the worktree that the agent ``command`` runs writes for itself, as its module lists them."""
    agent = agent_for(command)
    return agent.SANDBOX_WRITABLE if agent is not None else ()


def keep_out(command: str) -> tuple[str, ...]:
    """The patterns of files that the agent ``command`` runs writes for itself, to leave out of the task's commit."""
    agent = agent_for(command)
    return agent.KEEP_OUT if agent is not None else ()


def line_reader(command: str) -> LineReader:
    """How to read the output of one task running ``command``: its ``::waveui`` lines, else what its agent reports.

    A command no agent recognises may be a script that runs one: every
    agent's reader is offered its lines. Each call gives a new reader: the
    counts an agent reports per turn or message (its ``SUMS``) are added up
    there, so every field that leaves it is a total so far.
    """
    readers = _readers(command)
    if not readers:
        return read_directive
    totals: dict[str, int | float] = {}

    def read_line(line: bytes) -> dict | None:
        fields = read_directive(line)
        if fields is not None:
            return fields
        for read, sums in readers:
            fields = read(line)
            if fields:  # an empty answer (a result line of another agent's shape) lets the next reader try
                for key in sums:
                    if key in fields:
                        totals[key] = fields[key] = totals.get(key, 0) + fields[key]
                return fields
        return None

    return read_line


@functools.lru_cache(maxsize=1024)
def _readers(command: str) -> tuple[tuple[LineReader, tuple[str, ...]], ...]:
    """The line readers offered the output of ``command``, each with its ``SUMS``."""
    agent = agent_for(command)
    candidates = [agent] if agent is not None else list(AGENTS.values())
    return tuple((each.read_line, each.SUMS) for each in candidates if each.read_line is not base.read_line)


def command_line(command: str, key: str = "command") -> str:
    """``key = command`` as a TOML line: a literal string when it can be one, so quotes read as typed."""
    if "'" not in command and not re.search(r"[\x00-\x1f\x7f]", command):
        return f"{key} = '{command}'"
    return tomli_w.dumps({key: command}).strip()


def recipe_lines(name: str) -> list[str]:
    """The comment and the command line of recipe ``name``, ready for an ``[epic]`` table.

    An agent that can resolve a conflicting merge adds its resolver, commented
    out: resolving lets an agent edit other tasks' merged work, so it is the
    user's choice to make.
    """
    recipe = RECIPES[name]
    lines = [f"# {recipe.comment}", command_line(recipe.command)]
    if recipe.resolve is not None:
        lines += ['# on_conflict = "resolve"   # a merge that conflicts: the agent resolves it (default: "stop")',
                  "# " + command_line(recipe.resolve, "resolve")]
    return lines


def epic_command_lines(name: str | None) -> list[str]:
    """The ``[epic]`` lines for agent ``name``; without one, comments that suggest a recipe."""
    if name:
        return recipe_lines(name)
    return [f"# No command yet: set one, or import again with --agent {'|'.join(RECIPES)}. For example:",
            "# " + recipe_lines("claude")[1]]


_COMMAND = re.compile(r"^command\s*=.*$", re.M)
_COMMENTED_COMMAND = re.compile(r"^#\s*command\s*=.*\n", re.M)
_COMMENTED_CONFLICT = re.compile(r"^#\s*(?:on_conflict|resolve)\s*=.*\n", re.M)


def starter(text: str, name: str) -> str:
    """The starter epic ``text`` with its command replaced by recipe ``name``, the rest (comments too) kept."""
    text = _COMMENTED_COMMAND.sub("", text)  # the other suggestion would only confuse
    if RECIPES[name].resolve is not None:
        text = _COMMENTED_CONFLICT.sub("", text)  # the recipe's own resolver comes with its command
    lines = "\n".join(recipe_lines(name))
    replaced, count = _COMMAND.subn(lambda _: lines, text, count=1)
    if count:
        return replaced
    # no command line to replace: put it right under [epic]
    return re.sub(r"^\[epic\][^\n]*\n", lambda m: m.group(0) + lines + "\n", text, count=1, flags=re.M)
