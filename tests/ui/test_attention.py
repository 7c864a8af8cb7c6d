"""The app rings the terminal bell when the run needs the user, once per flush, and not when told not to."""

from __future__ import annotations

import pytest

from tests.ui.helpers import SIZE, make_app, settle
from tests.ui.helpers import isolated_user_themes  # noqa: F401  (autouse: keeps your own themes out)
from waveui.frontends.tui.sample_run import NOW, sample_events
from waveui.run.events import Notice, RunFinished, TaskProgress, TaskStateChanged


@pytest.mark.parametrize("bell", [True, False])
async def test_failures_denials_the_budget_and_the_end_ring_the_bell(tmp_path, bell):
    app, control = make_app(tmp_path)
    app.ring_bell = bell
    rung: list[int] = []
    app.bell = lambda: rung.append(app.state.events)  # the terminal's bell itself is no part of the test
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        rung.clear()  # whatever the sample run held is history by now
        count = len(sample_events())
        steps = [
            [TaskProgress(t=NOW, task="cart-service", progress=80, tokens_in=1200, tokens_out=300)],  # quiet
            [TaskStateChanged(t=NOW, task="cart-service", state="failed", reason="agent failed: no")],
            [Notice(t=NOW, text="cart-ui: the agent was denied Bash", task="cart-ui", kind="denied")],
            [Notice(t=NOW, text="budget reached: ...", kind="budget")],
            [Notice(t=NOW, text="a slot was rebuilt", kind="worktree")],  # quiet
            [RunFinished(t=NOW, ok=False, reason="budget reached")],
        ]
        for events in steps:
            for event in events:
                control.feed.push(event)
            count += len(events)
            await settle(pilot, app, count)
        assert app.state.tasks["cart-service"].tokens_in == 1200
    assert len(rung) == (4 if bell else 0)
