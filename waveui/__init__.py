"""waveui: plan, run and watch an epic of coding tasks in parallel git worktrees."""

__version__ = "0.1.0"
