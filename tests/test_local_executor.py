"""The local executor behind the executor protocol: start, follow, adopt and read back a step."""

from __future__ import annotations

import asyncio
import os

from waveui.executors import step_failure
from waveui.executors.local import LocalExecutor
from waveui.executors.steps import read_status


def test_a_step_started_is_found_again_by_a_later_executor_of_the_same_run(tmp_path):
    async def scenario():
        executor = LocalExecutor(tmp_path, "run-1")
        progress = []
        step = await executor.start("t1", "running", "echo '::waveui progress=40'; exit 3", tmp_path,
                                    dict(os.environ), None, 1.0, progress.append)
        ended = await step.wait()
        later = LocalExecutor(tmp_path, "run-1")
        return ended, progress, later

    ended, progress, later = asyncio.run(scenario())
    assert ended.exit_code == 3 and not ended.timed_out
    assert progress and progress[0]["progress"] == 40
    assert later.began("t1", "running") and not later.began("t1", "verifying")
    assert later.ended("t1", "running").exit_code == 3
    assert later.ended("t1", "verifying") is None
    assert later.adopt("t1", "running", lambda _values: None) is not None
    assert later.live_steps() == []
    assert LocalExecutor(tmp_path, "run-2").ended("t1", "running") is None


def test_the_last_line_of_a_step_is_read_without_an_end_of_line(tmp_path):
    async def scenario():
        progress = []
        step = await LocalExecutor(tmp_path, "run-1").start(
            "t1", "running", "echo '::waveui progress=10'; printf '::waveui progress=90'", tmp_path,
            dict(os.environ), None, 1.0, progress.append)
        return await step.wait(), progress

    ended, progress = asyncio.run(scenario())
    assert ended.exit_code == 0
    assert [values["progress"] for values in progress] == [10, 90]


def test_a_step_that_ended_before_it_is_followed_gives_its_result_and_output(tmp_path):
    async def scenario():
        progress = []
        step = await LocalExecutor(tmp_path, "run-1").start(
            "t1", "running", "echo '::waveui progress=30'; exit 4", tmp_path, dict(os.environ), None, 1.0,
            progress.append)
        while read_status(step.files) is None:  # over before anyone follows it
            await asyncio.sleep(0.01)
        return await step.wait(), progress

    ended, progress = asyncio.run(scenario())
    assert ended.exit_code == 4
    assert [values["progress"] for values in progress] == [30]


def test_a_step_reports_its_own_output_only_under_its_heading_in_the_log_of_earlier_steps(tmp_path):
    async def scenario():
        executor = LocalExecutor(tmp_path, "run-1")
        reported = {}
        for step, command in (("running", "for n in 1 2 3; do echo \"::waveui progress=$n\"; done"),
                              ("verifying", "echo '::waveui progress=70'")):
            reported[step] = []
            started = await executor.start("t1", step, command, tmp_path, dict(os.environ, WAVEUI_ATTEMPT="2"),
                                           None, 1.0, reported[step].append)
            assert (await started.wait()).exit_code == 0
        return reported

    reported = asyncio.run(scenario())
    assert reported == {"running": [{"progress": 1}, {"progress": 2}, {"progress": 3}], "verifying": [{"progress": 70}]}
    log = tmp_path / ".waveui" / "runs" / "run-1" / "logs" / "t1.log"
    assert log.read_text().splitlines() == ["--- attempt 2 (running) ---", "::waveui progress=1", "::waveui progress=2",
                                            "::waveui progress=3", "--- attempt 2 (verifying) ---",
                                            "::waveui progress=70"]


def test_a_step_whose_folder_is_gone_says_so_rather_than_an_exit_code(tmp_path):
    gone = tmp_path / "slot-0"  # a worktree the user deleted while its task waited for a worker

    async def scenario():
        step = await LocalExecutor(tmp_path, "run-1").start("t1", "running", "true", gone, dict(os.environ), None,
                                                             1.0, lambda _values: None)
        return await step.wait()

    ended = asyncio.run(scenario())
    assert ended.exit_code == 127 and str(gone) in ended.error
    assert step_failure("running", ended, None) == f"command failed: {ended.error}"
