"""Running an epic: the coordinator (engine), its ready queue, opening and resuming a run, locks, the adaptive limit."""
