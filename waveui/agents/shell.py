"""A plain shell command: the recipe to start from when the task is a script of your own."""

from waveui.agents import base

NAME = "shell"
COMMAND = 'mkdir -p notes && printf "%s\\n" "$WAVEUI_PROMPT" > "notes/$WAVEUI_TASK_ID.md"'
COMMENT = "a plain shell command: put your own script here; what it leaves in the worktree is the task's work"
# None: a plain command cannot know what both sides of a conflict meant. Write a resolver of your own
# (it runs in the conflicted worktree with $WAVEUI_CONFLICT_FILES), or let a conflict stop or retry.
RESOLVE = None
GRANTS = "whatever your own command does, with your user's rights; waveui adds nothing and takes nothing away"
KEEP_OUT = base.KEEP_OUT
SANDBOX_WRITABLE = base.SANDBOX_WRITABLE
SUMS = base.SUMS


def matches(command: str) -> bool:
    """Never: any command is a shell command, so recognising one says nothing about what it runs."""
    return False


read_line = base.read_line
