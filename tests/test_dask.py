"""Runs on a real Dask cluster: a scheduler and worker processes on 127.0.0.1, their folders apart from the repository.

The controller is `waveui run --dask` in a process of its own, as a user
runs it, so that it can be killed. Workers get the task's history only in
bundles through Dask: their local directories are fresh temporary folders.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from engine_helpers import WAIT, git, make_repo, tree_files, wait_for, write_epic
from waveui.git.bundles import BundleRefused, WorkerClone, bundle_bytes, fetch_bundle_bytes
from waveui.git.command import Repository

pytest.importorskip("distributed")

DASK = Path(sys.executable).parent / "dask"


class Cluster:
    """A `dask scheduler` and `dask worker` processes, each worker with its own local directory."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True)
        self.scheduler_file = root / "scheduler.json"
        self.processes: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.scheduler = self._start([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                      "--no-dashboard", "--scheduler-file", str(self.scheduler_file)])
        self.address = wait_for(lambda: self.scheduler_file.is_file() and json.loads(
            self.scheduler_file.read_text() or "{}").get("address"), "the scheduler")

    def _start(self, command: list[str], env: dict | None = None) -> subprocess.Popen:
        log = (self.root / f"process-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **(env or {})}, start_new_session=True)
        self.processes.append(process)
        return process

    def add_worker(self, slots: int = 2, env: dict | None = None, user: str | None = None,
                   python: OtherPython | None = None, nanny: bool = False) -> subprocess.Popen:
        """A worker process with ``slots`` waveui resources; as ``user`` (a folder of its own in /tmp) if given,
        running the ``dask`` and the waveui of ``python``; under a nanny process if asked (as `dask worker`
        runs by default: it is the nanny that shuts its worker down gracefully on SIGTERM)."""
        if user is None:
            folder = self.root / f"worker-{len(self.workers)}"
            folder.mkdir()
        else:
            folder = Path(tempfile.mkdtemp(prefix="waveui-worker-"))
            shutil.chown(folder, user)
        dask = python.dask if python else DASK
        command = [str(dask), "worker", self.address, "--nanny" if nanny else "--no-nanny", "--nthreads", str(slots),
                   "--resources", f"waveui={slots}", "--local-directory", str(folder), "--no-dashboard"]
        if user is not None:
            path = python.package if python else os.environ.get("PYTHONPATH", "")
            command = ["runuser", "-u", user, "--", "env", f"PYTHONPATH={path}", f"HOME={folder}", *command]
        worker = self._start(command, env)
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(count, timeout=WAIT)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@dataclass
class OtherPython:
    dask: Path  # its `dask` command
    package: Path  # a folder holding a copy of waveui, for PYTHONPATH


# Made once per machine (pip takes a while): a venv of the system's Python, which any user may run.
OTHER_USER_VENV = Path(tempfile.gettempdir()) / "waveui-dask-test-venv"
# What a worker imports, pinned to the versions here: a client and its workers must agree on distributed's.
WORKER_PACKAGES = ("distributed", "dask", "cloudpickle", "msgpack", "psutil", "networkx", "GitPython", "tomli-w")


@pytest.fixture(scope="session")
def other_user_python(tmp_path_factory) -> OtherPython:
    """waveui and distributed for a user who cannot read this test's Python (it lives under /root, mode 700)."""
    from importlib.metadata import version
    from importlib.util import find_spec

    system = shutil.which("python3", path="/usr/local/bin:/usr/bin")
    if system is None or subprocess.run([system, "-c", "import sys, venv; assert sys.version_info >= (3, 11)"],
                                        capture_output=True).returncode != 0:
        pytest.skip("no system Python 3.11+ with venv for another user")
    dask = OTHER_USER_VENV / "bin" / "dask"
    pins = [f"{name}=={version(name)}" for name in WORKER_PACKAGES]
    pinned = OTHER_USER_VENV / "pins.txt"
    if not pinned.is_file() or pinned.read_text() != "\n".join(pins):
        shutil.rmtree(OTHER_USER_VENV, ignore_errors=True)
        made = subprocess.run([system, "-m", "venv", str(OTHER_USER_VENV)], capture_output=True, text=True)
        installed = made.returncode == 0 and subprocess.run(
            [str(OTHER_USER_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *pins],
            capture_output=True, text=True, timeout=900)
        if not installed or installed.returncode != 0:
            said = (installed.stderr if installed else made.stderr).strip().splitlines()[-1:]
            shutil.rmtree(OTHER_USER_VENV, ignore_errors=True)
            pytest.skip(f"cannot install distributed for another user: {' '.join(said)[:200]}")
        pinned.write_text("\n".join(pins))
    # This checkout's waveui, copied where any user may read it (pytest's own tmp folders are the owner's alone).
    package = Path(tempfile.mkdtemp(prefix="waveui-package-"))
    shutil.copytree(Path(find_spec("waveui").origin).parent, package / "waveui",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for folder, _, _ in os.walk(package):
        os.chmod(folder, 0o755)
    for file in package.rglob("*.py"):
        os.chmod(file, 0o644)
    yield OtherPython(dask, package)
    shutil.rmtree(package, ignore_errors=True)


@pytest.fixture
def cluster(tmp_path):
    running = Cluster(tmp_path / "cluster")
    yield running
    running.stop()


def waveui(repo: Path, *args: str, background: bool = False):
    command = [sys.executable, "-m", "waveui", "run", "--headless", *args]
    if background:
        return subprocess.Popen(command, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def events(repo: Path) -> list[dict]:
    [journal] = (repo / ".waveui" / "runs").glob("*/events.jsonl")
    return [json.loads(line) for line in journal.read_text().splitlines()]


EPIC = """
[epic]
name = "e"
base = "main"
conflicts = "defer"

[[task]]
id = "a"
command = "echo a > a.txt"

[[task]]
id = "b"
requires = ["a"]
command = "cat a.txt > b.txt; echo b >> b.txt"
verify = "grep -q b b.txt"

[[task]]
id = "first"
command = "echo first > shared.txt"

[[task]]
id = "second"
command = "sleep 2; echo second > shared.txt"

[[task]]
id = "broken"
command = "echo partial > partial.txt; exit 4"

[[task]]
id = "slow"
command = 'if [ -n "$KILL_MARK" ] && [ "$WAVEUI_ATTEMPT" = 1 ]; then echo $PPID > "$KILL_MARK"; sleep 60; fi; echo slow > slow.txt'
"""


def test_an_epic_on_a_cluster_merges_what_a_local_run_merges_though_a_worker_is_killed(tmp_path, cluster):
    """Dependencies, a merge conflict, a failing task and a worker killed mid-task, against the same epic run here."""
    local = make_repo(tmp_path / "local")
    write_epic(local, EPIC)
    remote = tmp_path / "remote"
    shutil.copytree(local, remote)
    mark = tmp_path / "kill-mark"
    cluster.add_worker(env={"KILL_MARK": str(mark)})
    cluster.add_worker(env={"KILL_MARK": str(mark)})
    cluster.wait_for_workers(2)

    here = waveui(local, "--max-parallel", "4")  # as many at once as the cluster's slots
    controller = waveui(remote, "--dask", cluster.address, background=True)
    # `slow` prints its worker's pid ($PPID: the worker runs the shell itself) and waits to be killed.
    pid = int(wait_for(lambda: mark.is_file() and mark.read_text().strip(), "the slow task to start"))
    os.kill(pid, signal.SIGKILL)
    out, err = controller.communicate(timeout=300)

    assert here.returncode == controller.returncode == 1, err.decode()
    assert tree_files(remote, "waveui/e") == tree_files(local, "waveui/e"), out.decode() + err.decode()
    assert {"a.txt", "b.txt", "shared.txt", "slow.txt"} <= set(tree_files(remote, "waveui/e"))
    final = {e["task"]: e for e in events(remote) if e.get("type") == "task_state"}
    assert final["broken"]["state"] == "failed" and "exit 4" in final["broken"]["reason"]
    assert final["second"]["state"] == "conflicted"
    slow = [e for e in events(remote) if e.get("type") == "task_state" and e["task"] == "slow"]
    assert any("lost" in e["reason"] for e in slow)  # the killed worker's attempt
    # rerun as a new attempt (a further one if it was sent to the dead worker before its going was seen)
    assert slow[-1]["state"] == "done" and slow[-1]["attempt"] >= 2
    merges = git(remote, "log", "--merges", "--format=%s", "waveui/e").splitlines()
    assert len(merges) == len(set(merges))  # nothing merged twice
    # The failed attempt's work came back too, kept under its ref as a local attempt's is.
    assert git(remote, "show", "refs/waveui/e/broken/1:partial.txt") == "partial"


def test_tasks_go_on_while_the_controller_is_away_and_the_next_run_collects_them(tmp_path, cluster):
    repo = make_repo(tmp_path / "repo")
    count, started = tmp_path / "count", tmp_path / "started"
    write_epic(repo, f"""
        [epic]
        name = "away"
        base = "main"

        [[task]]
        id = "long"
        command = 'echo run >> "{count}"; touch "{started}"; sleep 3; echo done > long.txt'
    """)
    cluster.add_worker()
    cluster.wait_for_workers(1)
    controller = waveui(repo, "--dask", cluster.address, background=True)
    wait_for(started.is_file, "the task to start")
    os.killpg(controller.pid, signal.SIGKILL)
    controller.wait()
    time.sleep(4)  # the task ends on the cluster meanwhile; its result is held there

    again = waveui(repo, "--dask", cluster.address)

    assert again.returncode == 0, again.stderr
    assert count.read_text() == "run\n"  # collected, never run again
    assert git(repo, "show", "waveui/away:long.txt") == "done"


def test_the_scheduler_gone_is_one_line_and_the_run_resumes_on_a_new_one(tmp_path, cluster):
    repo = make_repo(tmp_path / "repo")
    started = tmp_path / "started"
    write_epic(repo, f"""
        [epic]
        name = "gone"
        base = "main"

        [[task]]
        id = "t"
        command = 'touch "{started}"; sleep 30; echo t > t.txt'
    """)
    cluster.add_worker()
    cluster.wait_for_workers(1)
    controller = waveui(repo, "--dask", cluster.address, background=True)
    wait_for(started.is_file, "the task to start")
    os.killpg(cluster.scheduler.pid, signal.SIGKILL)
    out, err = controller.communicate(timeout=120)

    lines = err.decode().strip().splitlines()
    assert controller.returncode == 2 and len(lines) == 1, err.decode()
    assert lines[0].startswith("waveui: error: the Dask scheduler at") and "resumes the run" in lines[0]
    # A new cluster: what was lost with the old one runs again, to the end.
    cluster.stop()
    started.unlink()
    fresh = Cluster(tmp_path / "cluster2")
    try:
        fresh.add_worker()
        fresh.wait_for_workers(1)
        write_epic(repo, (repo / "waveui.toml").read_text().replace("sleep 30", "true"))
        again = waveui(repo, "--dask", fresh.address)
    finally:
        fresh.stop()
    assert again.returncode == 0, again.stderr
    assert git(repo, "show", "waveui/gone:t.txt") == "t"


def test_workers_that_cannot_read_the_repository_still_run_its_tasks(tmp_path, cluster, other_user_python):
    """Workers as another user, who cannot read the controller's repository: only Dask carries the work."""
    user = "nobody"
    if os.geteuid() != 0:
        pytest.skip("only root can run a worker as another user")
    repo = make_repo(tmp_path / "repo")
    os.chmod(tmp_path, 0o700)
    refused = subprocess.run(["runuser", "-u", user, "--", "cat", str(repo / "README.md")], capture_output=True)
    assert refused.returncode != 0  # the worker's user cannot read the repository
    write_epic(repo, """
        [epic]
        name = "apart"
        base = "main"

        [[task]]
        id = "a"
        command = 'cat README.md > a.txt; id -un >> a.txt'
    """)
    cluster.add_worker(user=user, python=other_user_python)
    cluster.wait_for_workers(1)

    done = waveui(repo, "--dask", cluster.address)

    assert done.returncode == 0, done.stderr
    assert git(repo, "show", "waveui/apart:a.txt") == f"hello\n{user}"


def test_a_bundle_that_does_not_apply_is_refused_with_its_reason(tmp_path):
    """A clone sent only the last commit of a history it lacks says so; nothing is fetched."""
    repo = make_repo(tmp_path / "repo")
    first = git(repo, "rev-parse", "HEAD")
    (repo / "more.txt").write_text("more\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "more")
    repository = Repository.open(repo)
    increment = bundle_bytes(repository, "refs/heads/main", [first])
    clone = WorkerClone(tmp_path / "clone", "e", None, [])

    said = clone.receive(increment, "refs/heads/main", git(repo, "rev-parse", "HEAD"))

    assert said is not None and "does not apply" in said and first[:7] in said
    assert clone.tips() == []
    with pytest.raises(BundleRefused, match="does not hold"):
        fetch_bundle_bytes(repository, increment, {"refs/heads/other": "refs/heads/x"})
    # The whole history does apply, and the next bundle need hold only what is new.
    assert clone.receive(bundle_bytes(repository, "refs/heads/main"), "refs/heads/main", first) is None
    assert clone.tips() == [git(repo, "rev-parse", "HEAD")]
    assert bundle_bytes(repository, "refs/heads/main", clone.tips()) is None


def test_a_task_on_a_worker_is_paused_resumed_and_cancelled_from_the_controller(tmp_path, cluster):
    """The app's pause and cancel reach the step on the worker; the cancelled attempt's work still comes back."""
    import asyncio

    from waveui.engine.engine import Engine, RunOptions
    from waveui.engine.remote import dask_executor

    repo = make_repo(tmp_path / "repo")
    ticks = tmp_path / "ticks"
    epic = write_epic(repo, f"""
        [epic]
        name = "ctl"
        base = "main"

        [[task]]
        id = "t"
        command = 'echo begun > begun.txt; while true; do echo . >> "{ticks}"; sleep 0.2; done'
    """)
    cluster.add_worker()
    cluster.wait_for_workers(1)
    engine = Engine(epic, repo, RunOptions(executor=dask_executor(cluster.address), grace=0.5, backoff=0.05))

    def ticked() -> int:
        return len(ticks.read_text()) if ticks.is_file() else 0

    async def drive() -> None:
        run = asyncio.create_task(engine.run())
        while engine.state.tasks.get("t") is None or engine.state.tasks["t"].state != "running" or not ticked():
            await asyncio.sleep(0.1)
        engine.pause_task("t")
        await asyncio.sleep(2.5)  # the worker asks once a second
        paused_at = ticked()
        await asyncio.sleep(1.0)
        assert ticked() <= paused_at + 1  # stopped ticking (one tick may have been on its way)
        engine.resume_task("t")
        while ticked() <= paused_at + 3:
            await asyncio.sleep(0.1)
        engine.cancel("t")
        await asyncio.wait_for(run, WAIT)

    asyncio.run(drive())

    assert engine.state.tasks["t"].state == "cancelled"
    assert git(repo, "show", "refs/waveui/ctl/t/1:begun.txt") == "begun"


def test_a_scheduler_address_that_is_none_is_one_line(tmp_path):
    repo = make_repo(tmp_path / "repo")
    write_epic(repo, '[epic]\nname = "x"\n\n[[task]]\nid = "a"\ncommand = "true"\n')

    done = waveui(repo, "--dask", "scheduler:8786")

    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("waveui: error: --dask 'scheduler:8786' is no scheduler address")


def test_a_worker_reports_its_tasks_cpu_and_memory_and_a_loaded_host_gets_no_new_task(tmp_path, cluster):
    """The step's process tree is sampled on the worker; its host's figures put the adaptive rule to work there."""
    import asyncio

    from waveui.engine.engine import Engine, RunOptions
    from waveui.engine.remote import dask_executor

    repo = make_repo(tmp_path / "repo")
    # No host has a thousand GB free: once the worker has reported, it is loaded by the rule's measure.
    epic = write_epic(repo, """
        [epic]
        name = "busy"
        base = "main"
        adaptive = true
        min_free_memory = "1000GB"

        [[task]]
        id = "t"
        command = 'sleep 60'
    """)
    cluster.add_worker()
    cluster.wait_for_workers(1)
    engine = Engine(epic, repo, RunOptions(executor=dask_executor(cluster.address), grace=0.5))

    async def drive() -> None:
        run = asyncio.create_task(engine.run())
        while "t" not in engine.remote_usage:
            await asyncio.sleep(0.1)
        [worker] = engine.executor._slots
        assert "GB free" in (engine.executor.loaded(worker) or "")
        engine.cancel("t")
        await asyncio.wait_for(run, WAIT)

    asyncio.run(drive())

    assert engine.remote_usage == {}  # figures are for running tasks only
    notices = [e["text"] for e in events(repo) if e.get("type") == "notice"]
    assert any("adaptive applies per worker host" in text for text in notices)


def test_a_worker_whose_host_is_loaded_is_passed_over(tmp_path):
    """The worker with the most free slots gets the attempt, unless its host last said it is loaded."""
    import asyncio

    from waveui.executors.dask import DaskExecutor

    executor = DaskExecutor(make_repo(tmp_path / "repo"), "run", "local:1")
    executor._slots = {"tcp://roomy:1": 4, "tcp://small:1": 1}
    executor.host_limits = (80.0, 2 * 2**30)

    def report(worker: str, cpu: float, free: float) -> None:
        executor._on_event((0.0, {"kind": "usage", "task": "t", "attempt": 1, "worker": worker, "host_cpu": cpu,
                                  "host_memory_available": free, "cpu": 0.0, "memory": 0}))

    report("tcp://roomy:1", 20.0, 8 * 2**30)
    assert asyncio.run(executor._free_worker()) == "tcp://roomy:1"
    report("tcp://roomy:1", 95.0, 8 * 2**30)
    assert executor.loaded("tcp://roomy:1") == "its host's CPU is at 95% > 80%"
    assert asyncio.run(executor._free_worker()) == "tcp://small:1"
    report("tcp://roomy:1", 20.0, 2**30)
    assert "1.0 GB free < 2.0 GB" in executor.loaded("tcp://roomy:1")
    executor.host_limits = None  # adaptive off: the figures decide nothing
    assert asyncio.run(executor._free_worker()) == "tcp://roomy:1"


def test_history_goes_through_a_git_remote_when_one_is_named(tmp_path, cluster):
    """With dask_remote, the start point and the attempt's work travel through that remote, not in bundles."""
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    repo = make_repo(tmp_path / "repo")
    write_epic(repo, f"""
        [epic]
        name = "via"
        base = "main"
        dask_remote = "file://{remote}"

        [[task]]
        id = "a"
        command = 'cat README.md > a.txt'

        [[task]]
        id = "b"
        requires = ["a"]
        command = 'cat a.txt > b.txt'
    """)
    cluster.add_worker()
    cluster.wait_for_workers(1)

    done = waveui(repo, "--dask", cluster.address)

    assert done.returncode == 0, done.stderr
    assert git(repo, "show", "waveui/via:b.txt") == "hello"
    for task in ("a", "b"):  # each attempt's work is on the remote, under its ref, as it came back here
        ref = f"refs/waveui/via/{task}/1"
        assert git(remote, "rev-parse", ref) == git(repo, "rev-parse", ref)
    assert not list((repo / ".waveui").rglob("*.bundle"))


def test_a_worker_shut_down_gracefully_sends_its_attempts_work_back(tmp_path, cluster):
    """SIGTERM to a worker mid-task: the attempt's work so far is kept under its ref; a new attempt finishes it."""
    mark = tmp_path / "mark"
    # The first attempt prints its worker's pid ($PPID: the worker runs the shell itself) and waits.
    repo = make_repo(tmp_path / "repo", {"README.md": "hello\n", "step.sh": f"""
        echo "$WAVEUI_ATTEMPT" > partial.txt
        if [ "$WAVEUI_ATTEMPT" = 1 ]; then echo $PPID > "{mark}"; sleep 60; fi
        echo done > done.txt
    """})
    write_epic(repo, """
        [epic]
        name = "term"
        base = "main"

        [[task]]
        id = "t"
        command = ". ./step.sh"
    """)
    cluster.add_worker(nanny=True)
    cluster.add_worker(nanny=True)
    cluster.wait_for_workers(2)
    controller = waveui(repo, "--dask", cluster.address, background=True)
    worker = int(wait_for(lambda: mark.is_file() and mark.read_text().strip(), "the task to start"))
    os.kill(psutil.Process(worker).ppid(), signal.SIGTERM)  # to its nanny, as a cluster scaling down does
    out, err = controller.communicate(timeout=300)

    assert controller.returncode == 0, err.decode()
    assert git(repo, "show", "refs/waveui/term/t/1:partial.txt") == "1"  # what the first attempt did
    states = [e for e in events(repo) if e.get("type") == "task_state" and e["task"] == "t"]
    assert any("lost" in e["reason"] for e in states)
    assert states[-1]["state"] == "done" and states[-1]["attempt"] >= 2
    assert git(repo, "show", "waveui/term:done.txt") == "done"
