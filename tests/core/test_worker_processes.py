"""Spawned pool workers (SFTP uploads, small-file fingerprints) end with the process that made
them, even when it is killed and never shuts its pool down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

PARENT = textwrap.dedent(
    """
    import multiprocessing, os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from designflow.processes import exit_with_parent

    if __name__ == "__main__":
        pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=exit_with_parent)
        print(pool.submit(os.getpid).result(), flush=True)
        time.sleep(600)
    """
)


def test_a_pool_worker_exits_when_its_parent_is_killed(tmp_path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = psutil.Process(int(parent.stdout.readline()))
        assert worker.ppid() == parent.pid
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        _, alive = psutil.wait_procs([worker], timeout=5)
        assert alive == [], "the worker outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_without_the_watch_the_worker_would_stay(tmp_path) -> None:
    """The case the watch is for: the same parent without it leaves its worker behind."""
    script = tmp_path / "parent.py"
    script.write_text(
        PARENT.replace(",\n                                   initializer=exit_with_parent", "")
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = psutil.Process(int(parent.stdout.readline()))
    try:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        time.sleep(2)
        assert worker.is_running()
    finally:
        worker.kill()
