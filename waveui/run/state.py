"""RunState and the one reducer that folds events into it.

The live app, ``waveui watch``, the headless reporter and resume after a
crash all build their view of a run with :func:`fold`, so they can never
disagree. ``fold`` reads no clock and touches nothing outside the state: the
same events always give the same state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from waveui.run.events import (
    AttemptKept,
    ControllerGone,
    Event,
    LimitChanged,
    MetricsSample,
    PriorityChanged,
    RunFinished,
    RunPaused,
    Notice,
    RunStarted,
    SetupRan,
    StepEnded,
    TaskProgress,
    TaskStateChanged,
)

# States in which a task holds a worker slot; its clock runs only in CLOCK_STATES
# (setup while "preparing" is timed apart, and a paused task's clock stops).
SLOT_STATES = frozenset({"preparing", "running", "paused", "verifying"})
CLOCK_STATES = frozenset({"running", "verifying"})
FINAL_STATES = frozenset({"done", "cancelled"})
TROUBLE_STATES = frozenset({"failed", "conflicted", "blocked"})
ACTIVE_STATES = SLOT_STATES | {"merging"}  # holding a worker or about to be merged: work in hand
SAMPLES_KEPT = 120
NOTICES_KEPT = 200  # enough for every notice of a run; a flood of them cannot grow the state without end


@dataclass
class Attempt:
    number: int
    started: float
    ended: float | None = None
    outcome: str = ""  # the state it ended in
    reason: str = ""
    ref: str = ""  # where its work is kept (refs/waveui/<epic>/<task>/<n>), once kept
    commit: str = ""
    base: str = ""  # the commit it started from: `git diff base commit` is its work
    seconds: float = 0.0  # its task's clock when it ended (see TaskView.elapsed)


@dataclass
class TaskView:
    id: str
    title: str
    requires: list[str]
    story_points: float
    affected_files: list[str]
    wave: int
    rank: int
    critical: bool
    priority: int = 0
    state: str = "pending"
    reason: str = ""
    attempt: int = 0
    progress: float = 0.0
    cost: float = 0.0  # every attempt's, so a retry never hides what was spent
    earlier_cost: float = 0.0  # what attempts before the current one cost
    iterations: int = 0
    message: str = ""
    # Tokens as agents report them, every attempt's like cost; earlier_tokens holds the attempts before.
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0
    earlier_tokens: tuple[int, int, int] = (0, 0, 0)
    failed: str = ""  # the agent's own words when the current attempt's result said it failed
    denied: list[str] = field(default_factory=list)  # tool calls the agent was refused in the current attempt
    sandboxed: bool = False  # a step of the current attempt ran in a sandbox
    worker: int | None = None
    worktree: str = ""
    pid: int | None = None
    pid_started: float | None = None
    host: str = ""  # where its attempt runs, when not on this machine
    remote: str = ""  # the cluster's name for its attempt in flight
    started: float | None = None  # first start of the current attempt
    finished: float | None = None
    busy_seconds: float = 0.0  # time running, pauses excluded, over the current attempt
    clock_since: float | None = None  # while the clock runs: when it last started
    setup_seconds: float = 0.0
    exit_code: int | None = None
    files: list[str] = field(default_factory=list)
    undeclared: list[str] = field(default_factory=list)
    commit: str = ""
    start_point: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    after: list[str] = field(default_factory=list)  # only ordered after these (they share files)

    def kept_attempts(self) -> list[Attempt]:
        """The attempts whose work is kept under a ref, oldest first."""
        return [attempt for attempt in self.attempts if attempt.ref]

    def elapsed(self, now: float) -> float:
        """Running time of the current attempt, pauses excluded: the one clock every view shows for a task."""
        running = now - self.clock_since if self.clock_since is not None else 0.0
        return self.busy_seconds + max(0.0, running)


# The groups of task states a summary counts, in the order it names them. Every state belongs to exactly
# one, and a state this version does not know counts as "other": the parts always add up to the total.
BREAKDOWN_GROUPS: dict[str, frozenset[str]] = {
    "done": frozenset({"done"}),
    "active": ACTIVE_STATES,
    "waiting": frozenset({"pending", "ready"}),
    "failed": frozenset({"failed"}),
    "conflicted": frozenset({"conflicted"}),
    "blocked": frozenset({"blocked"}),
    "cancelled": frozenset({"cancelled"}),
}
GROUP_OF_STATE = {state: group for group, states in BREAKDOWN_GROUPS.items() for state in states}


@dataclass(frozen=True)
class Breakdown:
    """How many tasks are in each group of states; every task is in exactly one, so the parts add up to the total."""

    done: int = 0
    active: int = 0
    waiting: int = 0
    failed: int = 0
    conflicted: int = 0
    blocked: int = 0
    cancelled: int = 0
    other: int = 0

    @property
    def total(self) -> int:
        return sum(count for _, count in self.parts())

    @property
    def problems(self) -> int:
        """Tasks that need the user: failed, conflicted, or blocked by one that did."""
        return self.failed + self.conflicted + self.blocked

    def parts(self) -> list[tuple[str, int]]:
        """Every group with its count, done first, in the order summaries name them."""
        return [(group, getattr(self, group)) for group in (*BREAKDOWN_GROUPS, "other")]

    def as_dict(self) -> dict[str, int]:
        return dict(self.parts())


@dataclass
class RunState:
    run_id: str = ""
    epic: str = ""
    branch: str = ""
    base: str = ""
    strategy: str = "eager"
    conflict_mode: str = "serialise"
    max_parallel: int = 1
    limit: int = 1
    limit_reason: str = ""
    critical_length: float = 0.0
    tasks: dict[str, TaskView] = field(default_factory=dict)
    conflicts: list[dict] = field(default_factory=list)
    paused: bool = False
    started: float | None = None
    now: float = 0.0  # time of the last event folded
    finished: bool = False
    ok: bool = False
    finish_reason: str = ""
    resumes: int = 0
    away_seconds: float = 0.0  # between one controller's last event and the next one's start: no one's run time
    capacity_seconds: float = 0.0  # worker slots available, integrated over time
    busy_seconds: float = 0.0  # worker slots in use (clock running), integrated over time
    clocked: int = 0  # tasks whose clock runs now (kept by _stop_clock/_start_clock: no scan per event)
    setup_seconds: float = 0.0
    setups_skipped: int = 0
    samples: list[MetricsSample] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)  # the latest NOTICES_KEPT
    dependents: dict[str, list[str]] = field(default_factory=dict)  # task -> the tasks that require it
    followers: dict[str, list[str]] = field(default_factory=dict)  # task -> the tasks only ordered after it
    tip: str = ""  # the integration branch as waveui last left it
    max_cost: float | None = None  # the run's budget in dollars, when it has one
    controller_gone: float | None = None  # a watcher's: the last event of a controller that is gone, unfinished
    idle: bool = False  # nothing left to run, the run still open for the user (the engine's "idle" notice)
    events: int = 0

    # ---- derived figures (never stored, so they cannot drift) ----
    def count(self, *states: str) -> int:
        return sum(1 for t in self.tasks.values() if t.state in states)

    @property
    def total(self) -> int:
        return len(self.tasks)

    def breakdown(self) -> Breakdown:
        """The tasks counted by group of states: what every summary of the run shows."""
        counts = dict.fromkeys((*BREAKDOWN_GROUPS, "other"), 0)
        for task in self.tasks.values():
            counts[GROUP_OF_STATE.get(task.state, "other")] += 1
        return Breakdown(**counts)

    @property
    def done(self) -> int:
        return self.count("done")

    def undeclared(self) -> dict[str, list[str]]:
        """Files each task changed without declaring them in affected_files, for the whole run."""
        return {task.id: list(task.undeclared) for task in self.tasks.values() if task.undeclared}

    @property
    def active(self) -> int:
        return self.count(*SLOT_STATES)

    @property
    def blocked(self) -> int:
        return self.count("blocked")

    @property
    def cost(self) -> float:
        return sum(t.cost for t in self.tasks.values())

    @property
    def tokens_in(self) -> int:
        return sum(t.tokens_in for t in self.tasks.values())

    @property
    def tokens_out(self) -> int:
        return sum(t.tokens_out for t in self.tasks.values())

    @property
    def tokens_cached(self) -> int:
        return sum(t.tokens_cached for t in self.tasks.values())

    @property
    def iterations(self) -> int:
        return sum(t.iterations for t in self.tasks.values())

    def elapsed(self, now: float | None = None) -> float:
        """The run's time so far (up to ``now``, else its last event), the time between its controllers left out."""
        if self.started is None:
            return 0.0
        return max(0.0, (self.now if now is None else max(now, self.now)) - self.started - self.away_seconds)

    def efficiency(self, now: float | None = None) -> float:
        """Busy worker time / (elapsed × capacity), capacity integrated as the limit changed."""
        capacity, busy = self.capacity_seconds, self.busy_seconds
        if now is not None and now > self.now and not self.finished:
            dt = now - self.now
            capacity += self.limit * dt
            busy += self._clock_running() * dt
        return busy / capacity if capacity > 0 else 0.0

    def _clock_running(self) -> int:
        return self.clocked


def _advance(state: RunState, t: float) -> None:
    """Integrate capacity and busy time up to ``t``."""
    if state.started is not None and t > state.now and not state.finished:
        dt = t - state.now
        state.capacity_seconds += state.limit * dt
        state.busy_seconds += state._clock_running() * dt
    state.now = max(state.now, t)


def _stop_clock(state: RunState, task: TaskView, t: float) -> None:
    if task.clock_since is not None:
        task.busy_seconds += max(0.0, t - task.clock_since)
        task.clock_since = None
        state.clocked -= 1


def _start_run(state: RunState, e: RunStarted) -> None:
    state.resumes += e.resumed
    state.tip = e.tip or state.tip
    state.max_cost = e.max_cost  # a resumed run goes on under the budget the epic file sets now
    state.finished = False
    if e.resumed and state.tasks:
        # Resuming: tasks keep what was done; the engine re-sends states of the
        # rest. A running task's clock runs on: its supervisor outlives waveui,
        # so it went on while no controller watched (adopted, its time counts
        # in full; rerun, its attempt ends when this run says so).
        state.away_seconds += max(0.0, e.t - state.now)
        state.now = max(state.now, e.t)
        state.strategy, state.conflict_mode = e.strategy, e.conflict_mode
        state.limit, state.max_parallel = e.limit, e.max_parallel
        state.critical_length, state.conflicts = e.critical_length, list(e.conflicts)
        # The epic may have been edited meanwhile: the task set is the new one. A task still
        # there keeps its history; one removed is dropped, one added starts pending.
        earlier = state.tasks
        state.tasks = {}
        for info in e.tasks:
            task = earlier.get(info.id)
            if task is None:
                state.tasks[info.id] = _new_task(info)
                continue
            task.title, task.requires, task.story_points = info.title, list(info.requires), info.story_points
            task.affected_files, task.wave, task.rank = list(info.affected_files), info.wave, info.rank
            task.critical = info.critical  # priority stays: the user may have changed it during the run
            task.after = list(info.after)
            state.tasks[info.id] = task
        for task_id, task in earlier.items():
            if task_id not in state.tasks:  # removed: no longer anyone's clock
                _stop_clock(state, task, state.now)
        state.dependents, state.followers = _dependents(state.tasks)
        return
    state.run_id, state.epic, state.branch, state.base = e.run_id, e.epic, e.branch, e.base
    state.strategy, state.conflict_mode = e.strategy, e.conflict_mode
    state.max_parallel, state.limit = e.max_parallel, e.limit
    state.critical_length, state.conflicts = e.critical_length, list(e.conflicts)
    state.started = e.t
    state.now = e.t
    state.tasks = {info.id: _new_task(info) for info in e.tasks}
    state.dependents, state.followers = _dependents(state.tasks)


def _dependents(tasks: dict[str, TaskView]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Each task's dependents and followers, in file order: computed once per task list, read by the engine."""
    dependents: dict[str, list[str]] = {task_id: [] for task_id in tasks}
    followers: dict[str, list[str]] = {task_id: [] for task_id in tasks}
    for task in tasks.values():
        for dep in task.requires:
            if dep in dependents:
                dependents[dep].append(task.id)
        for earlier in task.after:
            if earlier in followers:
                followers[earlier].append(task.id)
    return dependents, followers


def _new_task(info) -> TaskView:
    return TaskView(info.id, info.title, list(info.requires), info.story_points, list(info.affected_files),
                    info.wave, info.rank, info.critical, info.priority, after=list(info.after))


def _attempt_kept(state: RunState, e: AttemptKept) -> None:
    task = state.tasks.get(e.task)
    if task is None:
        return
    for attempt in task.attempts:
        if attempt.number == e.attempt:
            break
    else:  # kept by a session that did not see it start (leftovers of a crash): listed all the same
        attempt = Attempt(e.attempt, e.t, e.t, "kept")
        task.attempts.append(attempt)
        task.attempts.sort(key=lambda a: a.number)
    attempt.ref, attempt.commit, attempt.base = e.ref, e.commit, e.base


def _task_state(state: RunState, e: TaskStateChanged) -> None:
    task = state.tasks.get(e.task)
    if task is None:
        return
    if e.state not in CLOCK_STATES:
        _stop_clock(state, task, e.t)
    if e.state in SLOT_STATES and task.state not in SLOT_STATES:
        # a new attempt
        task.busy_seconds, task.progress, task.finished = 0.0, 0.0, None
        task.message, task.earlier_cost = "", task.cost
        task.earlier_tokens = (task.tokens_in, task.tokens_out, task.tokens_cached)
        task.failed, task.denied = "", []
        task.commit = ""  # the commit of this attempt, once it has one
        task.started = e.t
        task.attempts.append(Attempt(e.attempt, e.t))
        task.files, task.undeclared, task.exit_code = [], [], None
        task.sandboxed = False
    task.sandboxed = task.sandboxed or e.sandboxed
    if e.state in CLOCK_STATES and task.clock_since is None:
        task.clock_since = e.t
        state.clocked += 1
    if e.state in SLOT_STATES:
        task.worker = e.worker if e.worker is not None else task.worker
        task.worktree = e.worktree or task.worktree
        task.pid = e.pid if e.pid is not None else task.pid
        task.pid_started = e.pid_started if e.pid_started is not None else task.pid_started
        task.host = e.host or task.host
        task.remote = e.remote or task.remote
    else:
        task.worker, task.pid, task.pid_started = None, None, None
        task.remote = ""
    if e.state not in ACTIVE_STATES and task.state in ACTIVE_STATES:
        if e.state != "pending":
            task.finished = e.t
        if task.attempts and task.attempts[-1].ended is None:  # pending: it ended to be retried
            task.attempts[-1].ended = e.t
            task.attempts[-1].seconds = task.busy_seconds  # its clock stopped above: not in CLOCK_STATES
            task.attempts[-1].outcome = "retried" if e.state == "pending" else e.state
            task.attempts[-1].reason = e.reason
    if e.state == "done":
        task.progress = 100.0
    task.state = e.state
    task.reason = e.reason
    task.attempt = e.attempt or task.attempt
    if e.exit_code is not None:
        task.exit_code = e.exit_code
    if e.files:
        task.files = list(e.files)
    if e.undeclared:
        task.undeclared = list(e.undeclared)
    if e.commit:
        task.commit = e.commit
        if e.state == "done":
            state.tip = e.commit  # a task is done once merged: its commit is the branch's new tip
    if e.start_point:
        task.start_point = e.start_point


def _step_ended(state: RunState, e: StepEnded) -> None:
    """A step that ended with no controller to hear it: its clock stops; done well, it is shown finished."""
    task = state.tasks.get(e.task)
    if task is None or task.state != e.step:
        return
    _stop_clock(state, task, e.t)
    task.exit_code = e.exit_code
    what = "verify" if e.step == "verifying" else "command"
    if e.exit_code == 0 and not e.timed_out:
        task.progress = 100.0
        task.message = f"{what} ended well; `waveui run` takes it from there"
    else:
        task.message = f"{what} " + ("timed out" if e.timed_out else f"failed (exit {e.exit_code})")


def _progress(state: RunState, e: TaskProgress) -> None:
    task = state.tasks.get(e.task)
    if task is None:
        return
    if e.progress is not None:
        task.progress = max(0.0, min(100.0, e.progress))
    if e.cost is not None:  # agents report what the attempt has cost so far
        task.cost = task.earlier_cost + e.cost
    if e.iterations is not None:
        task.iterations = e.iterations
    if e.message is not None:
        task.message = e.message
    earlier_in, earlier_out, earlier_cached = task.earlier_tokens
    if e.tokens_in is not None:
        task.tokens_in = earlier_in + e.tokens_in
    if e.tokens_out is not None:
        task.tokens_out = earlier_out + e.tokens_out
    if e.tokens_cached is not None:
        task.tokens_cached = earlier_cached + e.tokens_cached
    if e.failed is not None:
        task.failed = e.failed
    if e.denied:
        task.denied.extend(tool for tool in e.denied if tool not in task.denied)


def fold(state: RunState, event: Event) -> RunState:
    """Apply one event to ``state`` (changed in place) and return it."""
    if not (isinstance(event, RunStarted) and event.resumed):  # downtime is no one's capacity
        _advance(state, event.t)
    state.events += 1
    if isinstance(event, (RunStarted, TaskStateChanged, RunFinished)):
        state.idle = False  # something runs again, or the run is over
    if isinstance(event, RunStarted):
        state.controller_gone = None
        _start_run(state, event)
    elif isinstance(event, TaskStateChanged):
        _task_state(state, event)
    elif isinstance(event, TaskProgress):
        _progress(state, event)
    elif isinstance(event, AttemptKept):
        _attempt_kept(state, event)
    elif isinstance(event, StepEnded):
        _step_ended(state, event)
    elif isinstance(event, ControllerGone):
        state.controller_gone = None if state.finished else event.t
    elif isinstance(event, LimitChanged):
        state.limit, state.limit_reason = event.limit, event.reason
    elif isinstance(event, MetricsSample):
        state.samples.append(event)
        del state.samples[:-SAMPLES_KEPT]
    elif isinstance(event, RunPaused):
        state.paused = event.paused
    elif isinstance(event, PriorityChanged):
        if event.task in state.tasks:
            state.tasks[event.task].priority = event.priority
    elif isinstance(event, SetupRan):
        if event.skipped:
            state.setups_skipped += 1
        else:
            state.setup_seconds += event.seconds
            if event.task in state.tasks:
                state.tasks[event.task].setup_seconds += event.seconds
    elif isinstance(event, Notice):
        state.idle = state.idle or event.kind == "idle"
        state.notices.append(event)
        del state.notices[:-NOTICES_KEPT]
    elif isinstance(event, RunFinished):
        state.finished, state.ok, state.finish_reason = True, event.ok, event.reason
        for task in state.tasks.values():  # nothing runs past the end of a run
            _stop_clock(state, task, event.t)
    return state


def replay(events) -> RunState:
    state = RunState()
    for event in events:
        fold(state, event)
    return state
