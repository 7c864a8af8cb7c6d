"""What a run records of its plan when it starts, and the repository check before anything is written."""

from __future__ import annotations

import pytest

from conftest import epic_of, task
from waveui.engine.errors import EngineError
from waveui.engine.opening import check_repository, conflict_rows, task_infos
from waveui.engine.recovery import fingerprint
from waveui.plan import make_plan


def test_task_infos_record_dependencies_waves_and_fingerprints_in_plan_order():
    epic = epic_of(task("a", 3), task("b", 2, requires=["a"], priority=4), task("c", 1, requires=["a"]))
    infos = {info.id: info for info in task_infos(epic, make_plan(epic, 2))}
    assert set(infos) == {"a", "b", "c"}
    assert infos["b"].requires == ["a"] and infos["a"].requires == []
    assert (infos["a"].wave, infos["b"].wave, infos["c"].wave) == (0, 1, 1)
    assert infos["b"].priority == 4 and infos["a"].story_points == 3
    assert infos["a"].critical and infos["b"].critical and not infos["c"].critical
    assert infos["c"].fingerprint == fingerprint(epic, epic.tasks[2])
    assert sorted(info.rank for info in infos.values()) == [0, 1, 2]


def test_how_a_conflict_is_handled_is_not_part_of_what_a_task_runs():
    """A resume reruns tasks whose fingerprint changed: choosing another conflict policy must not redo work."""
    plain = epic_of(task("a", command="make a"))
    resolving = epic_of(task("a", command="make a", on_conflict="retry", resolve="fix-a"),
                        on_conflict="resolve", resolve="fix-it")
    assert fingerprint(resolving, resolving.tasks[0]) == fingerprint(plain, plain.tasks[0])
    assert fingerprint(plain, task("a", command="make b")) != fingerprint(plain, plain.tasks[0])


@pytest.mark.parametrize("mode, handling", [("lock", "locked"), ("defer", "deferred")])
def test_conflict_rows_name_both_tasks_the_files_and_how_they_are_handled(mode, handling):
    epic = epic_of(task("a", files=["src/x.py"]), task("b", files=["src/*.py"]), task("c", files=["docs/"]),
                   conflicts=mode)
    rows = conflict_rows(epic, make_plan(epic, 2))
    assert len(rows) == 1
    assert sorted(rows[0]["tasks"]) == ["a", "b"] and rows[0]["handling"] == handling and rows[0]["files"]


def test_a_folder_that_is_no_repository_is_refused_in_one_line(tmp_path):
    with pytest.raises(EngineError) as refused:
        check_repository(tmp_path, git=True)
    assert "\n" not in str(refused.value)
