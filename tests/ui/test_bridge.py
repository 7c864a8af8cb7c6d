"""The bridge notes what each event touched, for the next flush."""

from __future__ import annotations

from waveui.run.events import LimitChanged, TaskProgress, TaskStateChanged
from waveui.frontends.tui.bridge import RunBridge
from waveui.frontends.tui.sample_run import NOW, sample_events


def test_changes_name_the_tasks_touched_and_start_afresh():
    bridge = RunBridge()
    for event in sample_events():
        bridge.fold(event)
    first = bridge.take()
    assert first.rebuilt and first.states and first.events == len(sample_events())
    assert not bridge.take()
    bridge.fold(TaskProgress(t=NOW, task="cart-service", progress=70))
    bridge.fold(LimitChanged(t=NOW, limit=5, reason="cpu 40%: raised"))
    changes = bridge.take()
    assert changes.tasks == {"cart-service"} and not changes.states and not changes.rebuilt
    bridge.fold(TaskStateChanged(t=NOW, task="cart-ui", state="ready"))
    assert bridge.take().states
    assert bridge.state.limit == 5  # folded with the shared reducer
