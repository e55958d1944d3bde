"""Ends a command's child processes when the command itself dies.

`designflow upload` starts children: Prefect's temporary server, SFTP upload worker
processes, multiprocessing's resource tracker. SIGKILLed alone, the command can clean up
none of them, and they lived on (the server ~200 MB, the workers holding SFTP connections;
still alive 100 s later). This small process, started by the command, watches it: when the
command is gone, it ends the processes that were its descendants at the last look (SIGTERM,
then SIGKILL after a grace period).

    python -m designflow.ops.watchdog PARENT_PID
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

POLL_S = 0.5
GRACE_S = 4.0
# The embedded PostgreSQL is started by a command but meant to outlive it (later runs reuse
# it; `designflow db stop` stops it): while pg_ctl starts it, it is briefly a descendant.
KEEP = frozenset({"postgres", "postmaster", "pg_ctl"})


def start(parent_pid: int | None = None) -> subprocess.Popen:
    """Start the watchdog of this process (or of `parent_pid`), in its own session so that
    a Ctrl-C to the terminal's process group reaches the command and its children, not it."""
    return subprocess.Popen(
        [sys.executable, "-m", "designflow.ops.watchdog", str(parent_pid or os.getpid())],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
    )  # fmt: skip


def descendants(parent: psutil.Process, me: int) -> list[psutil.Process]:
    out = []
    for child in parent.children(recursive=True):
        try:
            if child.pid != me and child.name() not in KEEP:
                out.append(child)
        except psutil.Error:
            continue
    return out


def watch(parent_pid: int) -> int:
    me = os.getpid()
    try:
        parent = psutil.Process(parent_pid)
    except psutil.NoSuchProcess:
        return 0
    last: list[psutil.Process] = []
    while True:
        try:
            if parent.status() == psutil.STATUS_ZOMBIE:
                break
            # The latest look only: a process that left the tree (the embedded server,
            # reparented to init once started) is no longer ours to end.
            last = descendants(parent, me)
        except psutil.NoSuchProcess:
            break
        time.sleep(POLL_S)
    survivors = [p for p in last if p.is_running()]  # is_running also guards pid reuse
    for process in survivors:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(survivors, timeout=GRACE_S)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(watch(int(sys.argv[1])))
