"""The process sampler: a live tree is measured; a gone or reused pid is left out."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil

from waveui.frontends.tui.processes import ProcessSampler, Target


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
