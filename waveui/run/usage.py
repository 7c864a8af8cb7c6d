"""What the workers table shows of a task's processes, and which processes to look at; no psutil here.

The sampler (:mod:`waveui.executors.local.processes`) is handed to the live app
only: ``waveui watch`` reads a run and never needs psutil. A task on another
machine is sampled there; its figures reach the app with the worker's events.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    cpu: float  # percent of one core, summed over the process tree
    memory: int  # resident bytes, summed over the process tree


@dataclass(frozen=True)
class Target:
    task: str
    pid: int
    started: float | None  # the process's create time as the engine saw it
