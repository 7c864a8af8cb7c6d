"""CPU and memory of each task's process tree, sampled with psutil (call it from a thread: psutil blocks)."""

from __future__ import annotations

import psutil

from waveui.core.pids import CREATE_TIME_TOLERANCE
from waveui.frontends.tui.usage import Target, Usage


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
