"""The names waveui gives refs: the integration branch, tasks' branches and where attempts are kept.

The integration branch is ``waveui/<epic>`` and a task's branch is
``waveui/<epic>@<task>``. Git cannot hold both ``waveui/<epic>`` and
``waveui/<epic>/<task>`` (a ref cannot be a file and a folder at once), and
``@`` appears in no epic name, so no two epics' branches can collide either.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from waveui.core.paths import check_name


def integration_branch(epic: str) -> str:
    return _checked_branch(f"waveui/{check_name('epic name', epic)}")


def task_branch(epic: str, task_id: str) -> str:
    return _checked_branch(f"waveui/{check_name('epic name', epic)}@{check_name('task id', task_id)}")


def _checked_branch(branch: str) -> str:
    """Defence in depth: whatever the names held, the ref stays directly under refs/heads/waveui/."""
    ref = PurePosixPath("refs/heads", branch)
    if (ref.parent != PurePosixPath("refs/heads/waveui") or "\\" in branch or "@{" in branch
            or any(part in ("", ".", "..") for part in branch.split("/"))):
        raise ValueError(f"branch name {branch!r} would leave refs/heads/waveui/")
    return branch


# --------------------------------------------------------------------- git


def attempt_ref(epic: str, task_id: str, attempt: int | str) -> str:
    """Where an attempt's work is kept, whatever its outcome: ``refs/waveui/<epic>/<task>/<attempt>``."""
    return f"refs/waveui/{check_name('epic name', epic)}/{check_name('task id', task_id)}/{attempt}"


def resolution_branch(epic: str, task_id: str) -> str:
    """Where a task's merge conflict is resolved: ``waveui/<epic>@<task>@resolve``.

    Task ids hold no ``@``, so this can be no task's branch; and as the
    integration branch ``waveui/<epic>`` exists, nothing may live under
    ``waveui/<epic>/``.
    """
    return _checked_branch(f"{task_branch(epic, task_id)}@resolve")


def resolved_ref(epic: str, task_id: str) -> str:
    """Where ``waveui resolve`` leaves a task's resolved merge for the run to merge."""
    return attempt_ref(epic, task_id, "resolved")
