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
from pathlib import Path

import pytest

from engine_helpers import git, make_repo, tree_files, write_epic
from waveui.git.bundles import BundleRefused, WorkerClone, bundle_bytes, fetch_bundle_bytes
from waveui.git.command import Repository

pytest.importorskip("distributed")

DASK = Path(sys.executable).parent / "dask"
WAIT = 60.0  # generous bound for a loaded machine; nothing asserts on time


def wait_for(condition, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


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

    def add_worker(self, slots: int = 2, env: dict | None = None, user: str | None = None) -> subprocess.Popen:
        """A worker process with ``slots`` waveui resources; as ``user`` (a folder of its own in /tmp) if given."""
        if user is None:
            folder = self.root / f"worker-{len(self.workers)}"
            folder.mkdir()
        else:
            folder = Path(tempfile.mkdtemp(prefix="waveui-worker-"))
            shutil.chown(folder, user)
        command = [str(DASK), "worker", self.address, "--no-nanny", "--nthreads", str(slots),
                   "--resources", f"waveui={slots}", "--local-directory", str(folder), "--no-dashboard"]
        if user is not None:
            command = ["runuser", "-u", user, "--", "env", f"PYTHONPATH={os.environ.get('PYTHONPATH', '')}",
                       f"HOME={folder}", *command]
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
    assert tree_files(remote, "waveui/e") == tree_files(local, "waveui/e")
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


def test_workers_that_cannot_read_the_repository_still_run_its_tasks(tmp_path, cluster):
    """Workers as another user, who cannot read the controller's repository: only Dask carries the work."""
    user = "nobody"
    probe = subprocess.run(["runuser", "-u", user, "--", sys.executable, "-c", "import waveui, distributed"],
                           capture_output=True, text=True, env=os.environ)
    if os.geteuid() != 0 or probe.returncode != 0:
        pytest.skip(f"cannot run this Python as {user}: {probe.stderr.strip()[:200]}")
    repo = make_repo(tmp_path / "repo")
    os.chmod(tmp_path, 0o700)
    write_epic(repo, """
        [epic]
        name = "apart"
        base = "main"

        [[task]]
        id = "a"
        command = 'cat README.md > a.txt; id -un >> a.txt'
    """)
    cluster.add_worker(user=user)
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
