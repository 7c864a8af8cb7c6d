"""Why a run cannot start: the engine's errors, one line each for the user."""


class EngineError(Exception):
    """A run that cannot start: one line for the user."""


class RunAlreadyComplete(EngineError):
    """The epic's latest run merged every task: nothing to do without --fresh."""
