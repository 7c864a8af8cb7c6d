"""CPU and memory of the machine and of each task's process tree, sampled with psutil (blocking: use a thread).

The live app samples the tasks it runs here; a Dask worker samples its own
tasks and its host, and posts the figures to the controller.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

from waveui.core.pids import CREATE_TIME_TOLERANCE
from waveui.run.usage import Target, Usage


@dataclass
class Sample:
    cpu: float  # percent of all cores
    memory_available: float  # bytes
    memory_percent: float


def sample_machine() -> Sample:
    """CPU use since the previous call, and memory now."""
    memory = psutil.virtual_memory()
    return Sample(psutil.cpu_percent(interval=None), float(memory.available), memory.percent)


class ProcessSampler:
    """Keeps psutil.Process objects between samples: CPU % is measured between two calls."""

    def __init__(self) -> None:
        self._processes: dict[int, psutil.Process] = {}

    def sample(self, targets: list[Target]) -> dict[str, Usage]:
        """Usage of each target still alive; a target whose pid is gone (or reused) is left out."""
        usage: dict[str, Usage] = {}
        seen: set[int] = set()
        for target in targets:
            tree = self._tree(target)
            if tree is None:
                continue
            cpu, memory = 0.0, 0
            for process in tree:
                seen.add(process.pid)
                try:
                    with process.oneshot():
                        cpu += process.cpu_percent(None)
                        memory += process.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue  # a child that ended between listing and measuring
            usage[target.task] = Usage(cpu, memory)
        self._processes = {pid: p for pid, p in self._processes.items() if pid in seen}
        return usage

    def _tree(self, target: Target) -> list[psutil.Process] | None:
        root = self._process(target.pid)
        if root is None:
            return None
        try:
            # Started that far from the time the engine recorded: another process, the task's is gone.
            if target.started is not None and abs(root.create_time() - target.started) > CREATE_TIME_TOLERANCE:
                return None
            children = root.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        return [root, *(self._process(c.pid) or c for c in children)]

    def _process(self, pid: int) -> psutil.Process | None:
        process = self._processes.get(pid)
        if process is not None and process.is_running():
            return process
        try:
            process = self._processes[pid] = psutil.Process(pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            return None
        return process
