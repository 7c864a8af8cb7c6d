"""The ready queue: which waiting tasks may start, in what order, as the run's states change."""

from __future__ import annotations

from waveui.engine.locks import FileLocks
from waveui.engine.ready import ReadyQueue
from waveui.run.events import PriorityChanged, RunStarted, TaskInfo, TaskStateChanged
from waveui.run.state import RunState, fold


def always(_task_id: str) -> bool:
    return True


class Run:
    """A run model folded from real events, and a ready queue following it as the engine does."""

    def __init__(self, *tasks: tuple[str, list[str]], waves: bool = False, priorities: dict[str, int] | None = None,
                 waves_of: dict[str, int] | None = None):
        self.state = RunState()
        infos = [TaskInfo(task_id, "", requires, 1.0, [], (waves_of or {}).get(task_id, 0), rank, False,
                          (priorities or {}).get(task_id, 0))
                 for rank, (task_id, requires) in enumerate(tasks)]
        fold(self.state, RunStarted(t=0.0, tasks=infos, strategy="waves" if waves else "eager"))
        self.queue = ReadyQueue(waves=waves)
        self.queue.index(self.state)

    def set(self, task_id: str, state: str) -> None:
        before = self.state.tasks[task_id].state
        fold(self.state, TaskStateChanged(t=1.0, task=task_id, state=state))
        self.queue.track(task_id, before, state)

    def finish(self, task_id: str) -> None:
        self.set(task_id, "running")
        self.set(task_id, "done")

    def prioritise(self, task_id: str, priority: int) -> None:
        fold(self.state, PriorityChanged(t=1.0, task=task_id, priority=priority))
        self.queue.reprioritised(task_id)

    def ready(self, wanted: int = 100, now: float = 10.0, locks_free=always) -> list[str]:
        return self.queue.next_ready(wanted, now, locks_free)


def test_a_task_is_ready_once_every_task_it_requires_is_done():
    run = Run(("a", []), ("b", []), ("c", ["a", "b"]))
    assert run.ready() == ["a", "b"]
    run.finish("a")
    assert run.ready() == ["b"]
    run.finish("b")
    assert run.ready() == ["c"]


def test_picking_does_not_start_a_task_it_stays_ready_until_it_leaves_waiting():
    run = Run(("a", []), ("b", []))
    assert run.ready(1) == ["a"]
    assert run.ready(1) == ["a"]  # picked but not started: offered again
    run.set("a", "preparing")
    assert run.ready() == ["b"]


def test_order_is_priority_then_plan_rank_and_a_priority_change_reorders():
    run = Run(("a", []), ("b", []), ("c", []), priorities={"c": 5})
    assert run.ready() == ["c", "a", "b"]
    run.prioritise("b", 9)
    assert run.ready() == ["b", "c", "a"]
    run.prioritise("b", -1)  # its entries under priorities 0 and 9 are stale now
    assert run.ready() == ["c", "a", "b"]


def test_with_waves_only_the_lowest_unsettled_wave_may_start():
    run = Run(("a", []), ("b", []), ("c", []), waves=True, waves_of={"c": 1})
    assert run.ready() == ["a", "b"]
    run.finish("a")
    assert run.ready() == ["b"]
    run.finish("b")
    assert run.ready() == ["c"]


def test_without_waves_a_later_wave_starts_as_soon_as_it_is_ready():
    run = Run(("a", []), ("b", []), ("c", []), waves_of={"c": 1})
    assert run.ready() == ["a", "b", "c"]


def test_a_task_whose_files_are_locked_is_held_back_and_others_go_first():
    locks = FileLocks({"a": ["b"], "b": ["a"]})
    run = Run(("a", []), ("b", []), ("c", []))
    locks.acquire("a")
    run.set("a", "running")
    assert run.ready(locks_free=locks.free_for) == ["c"]
    locks.release("a")
    assert run.ready(locks_free=locks.free_for) == ["b", "c"]


def test_a_retry_does_not_start_before_its_time():
    run = Run(("a", []), ("b", []))
    run.set("a", "running")
    run.set("a", "pending")
    run.queue.retry_at["a"] = 20.0
    assert run.ready(now=10.0) == ["b"]
    assert run.queue.next_retry_in(now=10.0) == 10.0
    assert not run.queue.settled()
    assert run.ready(now=20.0) == ["a", "b"]


def test_a_task_in_trouble_keeps_its_dependents_waiting_and_the_run_settles():
    run = Run(("a", []), ("b", ["a"]))
    run.set("a", "running")
    run.set("a", "failed")
    assert run.ready() == []
    assert not run.queue.settled()  # b still waits: the engine blocks it
    run.set("b", "blocked")
    assert run.queue.settled()


def test_a_task_set_back_to_pending_makes_nothing_ready_that_was_not():
    run = Run(("a", []), ("b", ["a"]))
    run.finish("a")
    run.set("a", "pending")  # e.g. rerun after a resume found its merge missing
    run.queue.index(run.state)
    assert run.ready() == ["a"]


def test_two_thousand_tasks_in_a_chain_become_ready_one_at_a_time():
    count = 2000
    tasks = [(f"t{i:04}", [f"t{i - 1:04}"] if i else []) for i in range(count)]
    run = Run(*tasks)
    order = []
    while True:
        picked = run.ready(4)
        if not picked:
            break
        assert len(picked) == 1  # a chain: one ready at a time
        order.append(picked[0])
        run.finish(picked[0])
    assert order == [task_id for task_id, _ in tasks]
    assert run.queue.settled()


def test_two_thousand_independent_tasks_come_out_in_rank_order_in_batches():
    count = 2000
    run = Run(*[(f"t{i:04}", []) for i in range(count)])
    started = []
    while len(started) < count:
        picked = run.ready(64)
        assert picked
        for task_id in picked:
            run.set(task_id, "preparing")
        started += picked
    assert started == [f"t{i:04}" for i in range(count)]
    assert run.ready() == []
