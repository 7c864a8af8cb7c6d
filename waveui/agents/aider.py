"""Aider: its recipe; its output reports nothing waveui reads."""

from waveui.agents import base

NAME = "aider"
COMMAND = 'aider --yes-always --no-auto-commits --message "$WAVEUI_PROMPT"'
COMMENT = "Aider: one message, no questions asked; waveui commits the changes itself"

matches = base.runs_program(NAME)
read_line = base.read_line
