"""Opening a run: the repository checked before anything is written, and the plan as the run records it."""

from __future__ import annotations

from pathlib import Path

from waveui.core.spec import Epic
from waveui.engine import recovery
from waveui.engine.errors import EngineError
from waveui.git.preflight import PreflightError, check_waveui_folder, ensure_waveui_ignored
from waveui.plan import Plan
from waveui.run.events import TaskInfo

CONFLICT_HANDLING = {"serialise": "serialised", "lock": "locked", "defer": "deferred"}


def check_repository(repo_root: Path, git: bool) -> None:
    """Refuse, before anything is written, a repository whose ``.waveui`` git would track or that leads elsewhere."""
    try:
        check_waveui_folder(repo_root)
        if git:
            from waveui.git.command import GitError, Repository

            try:
                ensure_waveui_ignored(Repository.open(repo_root))
            except GitError as error:
                raise EngineError(error.message) from None
    except PreflightError as error:
        raise EngineError(str(error)) from None


def task_infos(epic: Epic, plan: Plan) -> list[TaskInfo]:
    """Every task as the run's RunStarted records it: its dependencies, the tasks it is ordered after, wave, rank."""
    ids = plan.graph.ids
    tasks = {task.id: task for task in epic.tasks}
    level = {task: number for number, wave in enumerate(plan.waves) for task in wave}
    rank = plan.dispatch_rank
    on_path = plan.critical.members
    declared = plan.declared.pred
    return [
        TaskInfo(task_id, tasks[task_id].title, [ids[d] for d in declared[i]], plan.graph.weight[i],
                 list(tasks[task_id].affected_files), level[i], rank[task_id], i in on_path,
                 tasks[task_id].priority, recovery.fingerprint(epic, tasks[task_id]),
                 after=[ids[d] for d in plan.graph.pred[i] if d not in declared[i]])
        for i, task_id in enumerate(ids)
    ]


def conflict_rows(epic: Epic, plan: Plan) -> list[dict]:
    """The plan's file conflicts as the run records them, each with how the epic handles it."""
    ids = plan.graph.ids
    handling = CONFLICT_HANDLING[epic.conflicts]
    return [{"tasks": [ids[c.a], ids[c.b]], "files": list(c.files), "handling": handling}
            for c in plan.conflicts]
