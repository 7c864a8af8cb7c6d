"""goose: its recipe, run in auto mode with waveui's turn limit; its plain output reports nothing waveui reads."""

from waveui.agents import base

NAME = "goose"
# GOOSE_MODE=auto: no approvals asked (goose's other modes would wait for an answer no one gives);
# --no-session: no session file per task; --max-turns: goose's own limit on turns without user input.
COMMAND = ('GOOSE_MODE=auto goose run --no-session --text "$WAVEUI_PROMPT"'
           ' ${WAVEUI_MAX_TURNS:+--max-turns "$WAVEUI_MAX_TURNS"}')
# `goose run --text`: one instruction, then exit (block.github.io/goose/docs/guides/goose-cli-commands,
# "run"): COMMAND's mode and flags on the resolving prompt.
RESOLVE = base.resolver(COMMAND)
COMMENT = "goose, headless in auto mode, limited to the task's max_turns when it has one"
GRANTS = ("edits files and runs shell commands without approval (`GOOSE_MODE=auto`); "
          "`GOOSE_MODE=chat` allows no tools, and the extensions it loads decide what else it can reach")
SUMS: tuple[str, ...] = ()  # what it reports are totals already
KEEP_OUT: tuple[str, ...] = ()
# ~/.config/goose/ (config.yaml, permissions: block.github.io/goose/docs/guides/config-files) and its
# sessions and logs under ~/.local/share/goose/ and ~/.local/state/goose/ (`goose info` names them).
SANDBOX_WRITABLE = ("~/.config/goose/", "~/.local/share/goose/", "~/.local/state/goose/", "~/.cache/")

matches = base.runs_program(NAME)
read_line = base.read_line
