"""The process sampler: a live tree is measured; a gone or reused pid is left out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from waveui.executors.local.processes import ProcessSampler, Target


def test_a_live_process_tree_is_measured():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"], stdin=subprocess.DEVNULL)
    try:
        me = psutil.Process(os.getpid())
        usage = ProcessSampler().sample([Target("t", os.getpid(), me.create_time())])
        assert usage["t"].memory > psutil.Process(child.pid).memory_info().rss  # the child is counted too
        assert usage["t"].cpu >= 0
    finally:
        child.kill()
        child.wait()


def test_a_gone_pid_is_left_out():
    child = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.DEVNULL)
    child.wait()
    assert ProcessSampler().sample([Target("t", child.pid, None)]) == {}


def test_a_reused_pid_is_left_out():
    me = psutil.Process(os.getpid())
    assert ProcessSampler().sample([Target("t", os.getpid(), me.create_time() - 3600)]) == {}


def test_cpu_is_measured_between_samples_over_the_whole_tree():
    shell = subprocess.Popen(["/bin/sh", "-c", "sleep 1000 & sleep 1000 & while :; do :; done"],
                             stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        root = psutil.Process(shell.pid)
        deadline = time.monotonic() + 5
        while len(root.children(recursive=True)) < 2:
            assert time.monotonic() < deadline, "the sleeps did not start"
            time.sleep(0.02)
        sampler, target = ProcessSampler(), Target("t", shell.pid, root.create_time())
        first = sampler.sample([target])["t"]
        assert first.memory > 0
        time.sleep(0.3)
        second = sampler.sample([target])["t"]
        assert second.cpu > 1  # the busy loop, measured since the first sample (0 on a first one)
        assert second.memory >= root.memory_info().rss
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
    assert ProcessSampler().sample([target]) == {}
