"""The keys that change the run: shown by every screen about the run, carried out by the app.

Both the main screen and a task's detail screen list them first, so the
footer shows them in the same place on either; the actions are the app's
(``app.``), so the read-only switch, :meth:`WaveApp.check_action`, is the
one place that turns them off.
"""

from __future__ import annotations

from textual.binding import Binding

RUN_BINDINGS = [
    Binding("space,p", "app.pause_task", "Pause/resume", id="waveui.pause-task",
            tooltip="pause or resume the selected task (its clock stops too)"),
    Binding("P", "app.pause_run", "Pause run", id="waveui.pause-run",
            tooltip="start no new task, or start again; running tasks go on"),
    Binding("r", "app.retry", "Retry", id="waveui.retry",
            tooltip="run a failed, conflicted or cancelled task again, from the tip or from an attempt it kept"),
    Binding("m", "app.resolve", "Resolve", id="waveui.resolve",
            tooltip="resolve a conflicted task's merge by hand in a shell; it is merged when the shell exits"),
    Binding("c,x,f9", "app.cancel", "Cancel", id="waveui.cancel",
            tooltip="stop the selected task for good (asks first)"),
    Binding("plus,equals_sign", "app.priority(1)", "Raise priority", id="waveui.priority-up", show=False,
            tooltip="start the selected task sooner"),
    Binding("minus", "app.priority(-1)", "Lower priority", id="waveui.priority-down", show=False,
            tooltip="start the selected task later"),
]


def action_name(binding: Binding) -> str:
    """The action a binding names, without its namespace or parameters: ``app.priority(1)`` is ``priority``."""
    return binding.action.split("(")[0].rpartition(".")[2]


# Actions that change the run: off in read-only mode, and without a control.
RUN_ACTIONS = frozenset(action_name(binding) for binding in RUN_BINDINGS)
