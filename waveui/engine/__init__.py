"""Running an epic: events, state, journal, runner, worktrees, locks, merging, adaptive limits."""
