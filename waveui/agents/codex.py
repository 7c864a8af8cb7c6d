"""OpenAI's Codex CLI: its recipe; its output reports nothing waveui reads."""

from waveui.agents import base

NAME = "codex"
COMMAND = 'codex exec --full-auto "$WAVEUI_PROMPT"'
COMMENT = "OpenAI Codex CLI, non-interactive, allowed to edit the worktree"

matches = base.runs_program(NAME)
read_line = base.read_line
