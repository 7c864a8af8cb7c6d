"""The Dask executor: each attempt runs on a worker of a ``distributed`` cluster; its commit comes back.

:class:`DaskExecutor` is the controller's end. It connects an asynchronous
``distributed.Client`` on the engine's own event loop, to a scheduler's
address or to a :class:`distributed.LocalCluster` of worker processes it
starts (``local:N``, or ``local:NxS`` for S tasks a worker), and submits
each attempt as a Dask task needing one unit of the ``waveui`` resource, so
a worker runs at most as many attempts as ``--resources "waveui=S"`` allows.
Capacity, the sum of the connected workers' ``waveui`` resources, is
followed as workers come and go.

Git travels inside the tasks: the start point as a bundle leaving out what
the chosen worker's clone reported it had (the first time, everything), the
attempt's work back as a bundle (see :mod:`waveui.executors.dask.worker`).
An attempt is pinned to the worker its bundle was made for; if that worker
goes away the attempt is lost, reported so, and the engine runs a new one.
A worker that shuts down gracefully sends each attempt's work first (see
:class:`waveui.executors.dask.worker.SendWorkBack`): it comes back with the
lost attempt, to be kept under its ref.

With the adaptive rule on, a worker whose host last reported its CPU above
``cpu_high`` or less memory free than ``min_free_memory`` (workers post both
while they run attempts) gets no new attempt until its figures say otherwise,
or are too old to say anything.

Every submitted attempt is held in a ``distributed.Variable`` named after
it, so the cluster keeps running it, and keeps its result, while no
controller is connected; the next controller of the run reconnects to it by
that name (:meth:`DaskExecutor.follow`) and collects it.

Steps the controller runs itself (a conflict's resolver) run as the local
executor runs them: this class is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import distributed

from waveui.core.spec import LOCAL_CLUSTER
from waveui.executors.dask.attempt import KEPT, LEAVING, USAGE, RemoteAttempt, RemoteOutcome
from waveui.executors.dask.worker import LEAVE_SECONDS, SendWorkBack, run_attempt
from waveui.executors.local import LocalExecutor
from waveui.run.journal import ensure_private_dir

RESOURCE = "waveui"
WATCH_SECONDS = 0.5  # how often workers and attempts are checked on
SCHEDULER_GONE_SECONDS = 10.0  # a scheduler unreachable this long is gone: the run stops, resumable
CONNECT_SECONDS = 10.0
LOST_STATES = (None, "no-worker", "released", "forgotten")  # an attempt in these will never run to its end
HOST_FIGURES_SECONDS = 10.0  # a host's figures this old say nothing any more (its worker runs none of ours)

OnEvent = Callable[[dict], None]  # one event a worker posted about the attempt


WORKER_GONE_SECONDS = 5.0  # how long a failed send waits to see whether its worker left the cluster


class SchedulerGone(Exception):
    """The scheduler cannot be reached; the message says so in one line."""


class DaskExecutor(LocalExecutor):
    """Runs one run's attempts on a Dask cluster; what the controller runs itself, locally."""

    remote = True

    def __init__(self, repo_root: Path, run_id: str, address: str, gone_after: float = SCHEDULER_GONE_SECONDS):
        super().__init__(repo_root, run_id)
        self.address = address
        self.run_id = run_id
        self.topic = f"waveui-{run_id}"
        # Names this repository's clone on the workers: two repositories never share one.
        self.repo_id = hashlib.sha256(str(repo_root.resolve()).encode()).hexdigest()[:16]
        self.bundles = self.logs.parent / "bundles"
        self.gone_after = gone_after
        self.client: distributed.Client | None = None
        self.cluster: distributed.LocalCluster | None = None
        self.capacity = 0
        self._slots: dict[str, int] = {}  # worker address -> its waveui resource
        self._running: dict[str, str] = {}  # attempt key -> the worker it is pinned to
        self._known: dict[str, list[str]] = {}  # worker address -> the commits its clone reported it holds
        self._followers: dict[tuple[str, int], OnEvent] = {}
        self._watcher: asyncio.Task | None = None
        self._changed = asyncio.Event()
        self.gone: str | None = None  # why the scheduler is taken for gone
        self.host_limits: tuple[float, float] | None = None  # the adaptive rule: (cpu_high, min_free_memory)
        self._hosts: dict[str, tuple[float, float, float]] = {}  # worker -> its host's (CPU %, bytes free, when)
        self._leaving: set[tuple[str, int]] = set()  # attempts whose worker shuts down, sending their work
        self._sent_back: dict[tuple[str, int], dict] = {}  # attempt -> the work its leaving worker posted

    # ------------------------------------------------------------ the cluster

    async def open(self, on_capacity: Callable[[int, str], None], on_gone: Callable[[str], None]) -> None:
        """Connect, then follow the workers: ``on_capacity(total, why)`` as it changes, ``on_gone(why)`` once.

        SchedulerGone when the scheduler cannot be reached.
        """
        # What goes wrong is told in the run's own words; distributed's log lines would cover the app.
        for name in ["distributed", *logging.root.manager.loggerDict]:
            if name.startswith("distributed"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        local = LOCAL_CLUSTER.fullmatch(self.address)
        try:
            if local:
                workers, slots = int(local.group(1)), int(local.group(2) or 1)
                self.cluster = await distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=slots, processes=True, resources={RESOURCE: slots},
                    dashboard_address=None, asynchronous=True)
                self.client = await distributed.Client(self.cluster, asynchronous=True)
            else:
                self.client = await distributed.Client(self.address, asynchronous=True, timeout=CONNECT_SECONDS)
        except (OSError, asyncio.TimeoutError) as error:
            await self.close()
            raise SchedulerGone(f"cannot reach the Dask scheduler at {self.address}: {error}") from None
        self.client.subscribe_topic(self.topic, self._on_event)
        await self.client.register_plugin(SendWorkBack())
        await self._read_workers(on_capacity)
        self._watcher = asyncio.create_task(self._watch(on_capacity, on_gone))

    async def close(self) -> None:
        """Disconnect; attempts held on the cluster go on, for the next controller of the run."""
        if self._watcher:
            self._watcher.cancel()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                await self.cluster.close()
        self.client = self.cluster = None

    async def _read_workers(self, on_capacity: Callable[[int, str], None]) -> None:
        identity = await self.client.scheduler.identity()
        slots = {address: int(info.get("resources", {}).get(RESOURCE, 0))
                 for address, info in identity.get("workers", {}).items()}
        if slots == self._slots:
            return
        came = [a for a in slots if a not in self._slots]
        went = [a for a in self._slots if a not in slots]
        self._slots = slots
        for address in went:
            self._known.pop(address, None)
            self._hosts.pop(address, None)
        total = sum(slots.values())
        if total != self.capacity:
            self.capacity = total
            why = [f"{len(came)} worker{'s' * (len(came) != 1)} joined"] if came and self.capacity else []
            why += [f"{len(went)} left"] if went else []
            on_capacity(total, f"the cluster's {RESOURCE} resources ({', '.join(why) or 'connected'})"
                        if total else f"no worker of the cluster has a {RESOURCE} resource")
        self._changed.set()

    async def _watch(self, on_capacity: Callable[[int, str], None], on_gone: Callable[[str], None]) -> None:
        unreachable_since = None
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            try:
                await asyncio.wait_for(self._read_workers(on_capacity), self.gone_after)
                unreachable_since = None
            except Exception:  # a closed comm, a timeout, a client closed: the scheduler may be back in a moment
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since >= self.gone_after:
                    self.gone = f"the Dask scheduler at {self.address} is gone (no answer for {self.gone_after:g}s)"
                    self._changed.set()
                    on_gone(self.gone)
                    return

    # ------------------------------------------------------------ attempts

    async def run_attempt(self, job: RemoteAttempt, bundle_for: Callable[[list[str]], bytes | None],
                          on_event: OnEvent, on_submitted: Callable[[str], None]) -> RemoteOutcome:
        """Run ``job`` on a worker with a free slot; ``bundle_for(known)`` makes its start point's bundle (blocking).

        ``on_submitted(key)`` is called once the attempt is held on the
        cluster, so that it can be journaled before anything else happens.
        A worker whose clone turned out to lack what its bundle left out is
        sent everything once more.
        """
        self._followers[(job.task_id, job.attempt)] = on_event
        try:
            for resend in range(2):
                worker = await self._free_worker()
                known = [] if resend else self._known.get(worker, [])
                bundle = await asyncio.to_thread(bundle_for, known)
                key = f"{self.topic}-{job.task_id}-{job.attempt}" + (f"-{resend + 1}" if resend else "")
                try:
                    # Sent to the worker straight, not through the scheduler with the task: it may be large.
                    data = await self.client.scatter(bundle, workers=[worker]) if bundle is not None else None
                    future = self.client.submit(run_attempt, replace(job, control=key), data, key=key,
                                                workers=[worker], allow_other_workers=False,
                                                resources={RESOURCE: 1}, pure=False)
                    self._running[key] = worker
                    await distributed.Variable(key, client=self.client).set(future)
                except (SchedulerGone, asyncio.CancelledError):
                    raise
                except Exception as error:
                    # The worker died as the attempt was being sent ("unknown to scheduler" once its one
                    # allowed worker is gone): nothing ran, so it is lost and runs again elsewhere.
                    if self.gone:
                        raise SchedulerGone(self.gone) from None
                    await self._forget(key)
                    deadline = time.monotonic() + WORKER_GONE_SECONDS
                    while worker in self._slots and time.monotonic() < deadline:
                        await asyncio.sleep(WATCH_SECONDS)
                    if worker in self._slots:  # its worker is there: a failure of another kind, reported as it is
                        raise
                    return RemoteOutcome(lost=True, reason=f"its Dask worker went away as the attempt was sent "
                                                           f"({type(error).__name__}: {error})")
                on_submitted(key)
                outcome = await self._collect(key, future, (job.task_id, job.attempt))
                if not outcome.stale:
                    return outcome
                self._known.pop(worker, None)
            return outcome
        finally:
            self._followers.pop((job.task_id, job.attempt), None)

    async def follow(self, key: str, task_id: str, attempt: int, on_event: OnEvent) -> RemoteOutcome:
        """Reconnect to an attempt an earlier controller of this run submitted; collect it when it ends."""
        try:
            future = await distributed.Variable(key, client=self.client).get(timeout=1)
        except (asyncio.TimeoutError, TimeoutError):
            return RemoteOutcome(lost=True, reason="the cluster no longer holds it (its scheduler restarted?)")
        self._followers[(task_id, attempt)] = on_event
        try:
            return await self._collect(key, future, (task_id, attempt))
        finally:
            self._followers.pop((task_id, attempt), None)

    async def stop(self, key: str) -> None:
        """Ask the attempt to stop its step; what it did so far still comes back."""
        await distributed.Event(key + "-stop", client=self.client).set()

    async def pause(self, key: str, paused: bool) -> None:
        """Ask the attempt to pause its step (its timeout stands still meanwhile), or to go on."""
        event = distributed.Event(key + "-pause", client=self.client)
        await (event.set() if paused else event.clear())

    async def _free_worker(self) -> str:
        """The worker with the most free slots (among those whose clone is known first); waits for one.

        A worker whose host is loaded (:meth:`loaded`) is passed over.
        """
        while True:
            if self.gone:
                raise SchedulerGone(self.gone)
            busy: dict[str, int] = {}
            for worker in self._running.values():
                busy[worker] = busy.get(worker, 0) + 1
            free = [(self._slots[w] - busy.get(w, 0), w in self._known, w) for w in self._slots
                    if self._slots[w] > busy.get(w, 0) and not self.loaded(w)]
            if free:
                return max(free)[2]
            self._changed.clear()
            # A loaded host's figures may grow old without news: look again a while later in any case.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), WATCH_SECONDS)

    def loaded(self, worker: str) -> str | None:
        """Why the adaptive rule gives ``worker`` no new attempt now (its host's CPU or memory), or None."""
        figures = self._hosts.get(worker)
        if self.host_limits is None or figures is None or time.monotonic() - figures[2] > HOST_FIGURES_SECONDS:
            return None
        (cpu_high, min_free_memory), (cpu, available, _) = self.host_limits, figures
        if cpu > cpu_high:
            return f"its host's CPU is at {cpu:.0f}% > {cpu_high:.0f}%"
        if available < min_free_memory:
            return f"its host has {available / 2**30:.1f} GB free < {min_free_memory / 2**30:.1f} GB"
        return None

    async def _collect(self, key: str, future: distributed.Future, attempt: tuple[str, int]) -> RemoteOutcome:
        """Wait for the attempt (task id, number) to end, or be lost with its worker; then let the cluster forget it."""
        while True:
            try:
                ended = await self._wait(key, future)
                break
            except distributed.client.FutureCancelledError:
                # The client cancels every future when its connection to the scheduler drops: either the
                # scheduler comes back (and still holds the attempt) or it is gone for good.
                while self.client.status != "running":
                    if self.gone:
                        raise SchedulerGone(self.gone) from None
                    await asyncio.sleep(WATCH_SECONDS)
                try:
                    future = await distributed.Variable(key, client=self.client).get(timeout=1)
                except (asyncio.TimeoutError, TimeoutError):
                    return await self._lost(key, None, "the cluster no longer holds it (its scheduler restarted?)",
                                            attempt)
            except (SchedulerGone, asyncio.CancelledError):
                raise
            except Exception as error:  # the function failed on the worker in a way it could not report
                await self._forget(key)
                return RemoteOutcome(reason=f"failed on its Dask worker: {type(error).__name__}: {error}")
        if ended is None:
            return await self._lost(key, future, "its Dask worker went away", attempt)
        worker = self._running.get(key)
        outcome = RemoteOutcome(commit=ended.get("commit"), reason=ended.get("reason"), kept=ended.get("kept"),
                                host=ended.get("host", ""), stale=bool(ended.get("stale")),
                                tips=list(ended.get("tips") or []), bundle=self._save_bundle(key, ended.get("bundle")))
        self._leaving.discard(attempt)  # its result came all the same: what a leaving worker posted is not needed
        self._sent_back.pop(attempt, None)
        if worker is not None and outcome.tips:
            self._known[worker] = outcome.tips
        await self._forget(key)
        return outcome

    async def _wait(self, key: str, future: distributed.Future) -> dict | None:
        """The attempt's result once it ends; None if it never will (its worker went away)."""
        result = asyncio.ensure_future(self._result(future))
        try:
            while not result.done():
                await asyncio.wait({result}, timeout=WATCH_SECONDS)
                if result.done():
                    break
                if self.gone:
                    raise SchedulerGone(self.gone)
                if self.client.status != "running":
                    continue  # the future is cancelled in a moment; _collect waits for the scheduler
                worker = self._running.get(key)
                status = (await self.client.scheduler.get_task_status(keys=[key]) or {}).get(key)
                if status in LOST_STATES or (worker is not None and worker not in self._slots):
                    return None
            return result.result()
        except BaseException:
            result.cancel()
            if not result.cancelled() and result.done():
                result.exception()  # retrieved: it is reported by the caller, not as "never retrieved"
            raise

    async def _lost(self, key: str, future: distributed.Future | None, why: str,
                    attempt: tuple[str, int]) -> RemoteOutcome:
        """The attempt will never end; with the work its worker sent back while shutting down, if it did."""
        if future is not None:
            with contextlib.suppress(Exception):
                await self.client.cancel([future], force=True)
        await self._forget(key)
        deadline = time.monotonic() + LEAVE_SECONDS
        while attempt in self._leaving and attempt not in self._sent_back and time.monotonic() < deadline:
            await asyncio.sleep(WATCH_SECONDS)
        self._leaving.discard(attempt)
        sent = self._sent_back.pop(attempt, {})
        return RemoteOutcome(lost=True, reason=why, kept=sent.get("kept"),
                             bundle=self._save_bundle(key, sent.get("bundle")))

    def _save_bundle(self, key: str, data: bytes | None) -> Path | None:
        """Where the attempt's bundle is kept on this machine until it is taken in (None: none came)."""
        if not data:
            return None
        path = ensure_private_dir(self.bundles) / f"{key}.bundle"
        path.write_bytes(data)
        return path

    @staticmethod
    async def _result(future: distributed.Future) -> dict:
        return await future

    async def _forget(self, key: str) -> None:
        """The attempt is collected (or lost): the cluster need hold it no longer."""
        self._running.pop(key, None)
        self._changed.set()
        with contextlib.suppress(Exception):
            distributed.Variable(key, client=self.client).delete()

    def _on_event(self, event: tuple[float, dict]) -> None:
        _, message = event
        if not isinstance(message, dict):
            return
        kind, attempt = message.get("kind"), (message.get("task"), message.get("attempt"))
        if kind == USAGE and message.get("worker") in self._slots:
            self._hosts[message["worker"]] = (float(message.get("host_cpu", 0.0)),
                                              float(message.get("host_memory_available", 0.0)), time.monotonic())
            self._changed.set()
        elif kind == LEAVING:
            self._leaving.add(attempt)
        elif kind == KEPT:
            self._sent_back[attempt] = message
        follower = self._followers.get(attempt)
        if follower is not None:
            follower(message)
