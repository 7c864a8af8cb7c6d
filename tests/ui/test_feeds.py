"""Feeds: a scripted list, and a journal tailed read-only through every stage of a run's life."""

from __future__ import annotations

import asyncio

from waveui.run.events import RunFinished, to_json
from waveui.run.journal import Journal
from waveui.frontends.tui.feeds import JournalFeed, ScriptedFeed
from waveui.frontends.tui.sample_run import sample_events


async def test_scripted_feed_emits_every_event_in_order():
    events = sample_events()
    got = []
    await ScriptedFeed(events).run(got.append)
    assert got == events


async def wait_for(condition, timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_journal_feed_survives_a_missing_file_a_torn_line_and_the_run_ending(tmp_path):
    run_dir = tmp_path / "run"
    path = run_dir / "events.jsonl"
    events = sample_events()
    got = []
    task = asyncio.create_task(JournalFeed(path, poll=0.01).run(got.append))
    try:
        await asyncio.sleep(0.05)
        assert got == []  # no journal yet, and no error either
        journal = Journal(run_dir)
        for event in events[:5]:
            journal.append(event)
        await wait_for(lambda: len(got) == 5)
        torn = to_json(events[5])
        with open(path, "a", encoding="utf-8") as f:  # a crash mid-write leaves half a line
            f.write(torn[:20])
            f.flush()
            await asyncio.sleep(0.05)
            assert len(got) == 5
            f.write(torn[20:] + "\n")
        await wait_for(lambda: len(got) == 6)
        journal = Journal(run_dir)  # a resumed run appends to the same journal
        journal.append(RunFinished(t=events[-1].t + 1, ok=True, reason="complete"))
        journal.close()
        await wait_for(lambda: len(got) == 7)
        assert got[:6] == events[:6] and isinstance(got[6], RunFinished)
        assert not task.done()  # the run ended; the watcher goes on watching
    finally:
        task.cancel()
