"""Where a supervised step keeps its log, pid file and status, and reading its status back.

Plain files only, no process handling: the executor, and a read-only watcher
of a run whose controller is gone, read them the same way.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StepFiles:
    """Where one step (``running`` or ``verifying``) of a task keeps its log, pid file and status."""

    log: Path
    pidfile: Path
    status: Path

    @classmethod
    def of(cls, logs_dir: Path, task_id: str, step: str) -> StepFiles:
        return cls(logs_dir / f"{task_id}.log", logs_dir / f"{task_id}.{step}.pid",
                   logs_dir / f"{task_id}.{step}.status")

    def clear(self) -> None:
        """Forget an earlier attempt's pid and status (its log is kept and appended to)."""
        for path in (self.pidfile, self.status):
            path.unlink(missing_ok=True)


HEADING_START = "--- attempt "


def heading(attempt: str, step: str) -> str:
    """The line a step's output starts under in the task's log, which holds every attempt's steps one after another."""
    return f"{HEADING_START}{attempt} ({step}) ---"


def read_json(path: Path) -> dict | None:
    for attempt in range(3):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else None
        except OSError:
            return None
        except ValueError:
            # Caught half way through the supervisor writing the status into the pid file in place.
            time.sleep(0.01 * (attempt + 1))
    return None


def read_status(files: StepFiles) -> dict | None:
    """The step's status, wherever the supervisor managed to leave it; None while it has none yet."""
    status = read_json(files.status)
    if status is not None:
        return status
    record = read_json(files.pidfile)
    status = record.get("status") if record is not None else None
    return status if isinstance(status, dict) else None
