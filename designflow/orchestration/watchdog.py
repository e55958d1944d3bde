"""Ends a command's child processes when the command itself dies.

`designflow upload` starts children: Prefect's temporary server, SFTP upload worker
processes, multiprocessing's resource tracker. SIGKILLed alone, the command can clean up
none of them, and they lived on (the server ~200 MB, the workers holding SFTP connections;
still alive 100 s later). This small process, started by the command, watches it: when the
command is gone, it ends the processes that were its descendants at the last look (SIGTERM,
then SIGKILL after a grace period).

    python -m designflow.orchestration.watchdog PARENT_PID

It also ends the command's flow runs: each run the command starts is registered with it
(`register_run`), and a run the server still shows as not finished when the command is gone
is set to Crashed through the Prefect API, before the temporary server (a child) is ended;
no run is left Running after its process died.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
        [sys.executable, "-m", "designflow.orchestration.watchdog", str(parent_pid or os.getpid())],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
    )  # fmt: skip


def runs_file(parent_pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"designflow-runs-{os.getuid()}-{parent_pid}.jsonl"


def register_run(run_id: str, api_url: str) -> None:
    """Called by the command as a run starts: the watchdog crashes it if the command dies."""
    path = runs_file(os.getpid())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as out:
        out.write(json.dumps({"run": run_id, "api": api_url}) + "\n")


FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def crash_unfinished_runs(parent_pid: int) -> list[str]:
    """The registered runs the server still shows unfinished, set to Crashed; returns them."""
    path = runs_file(parent_pid)
    try:
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []
    import httpx

    crashed = []
    headers = {}
    if os.environ.get("PREFECT_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['PREFECT_API_KEY']}"
    for entry in entries:
        try:
            with httpx.Client(base_url=entry["api"], headers=headers, timeout=10) as api:
                state = api.get(f"/flow_runs/{entry['run']}").json().get("state") or {}
                if state.get("type") in FINAL_STATES:
                    continue
                api.post(
                    f"/flow_runs/{entry['run']}/set_state",
                    json={
                        "state": {
                            "type": "CRASHED", "name": "Crashed",
                            "message": f"the designflow command (pid {parent_pid}) was killed",
                        },
                        "force": True,
                    },
                ).raise_for_status()  # fmt: skip
                crashed.append(entry["run"])
        except (httpx.HTTPError, ValueError, KeyError):
            continue  # the server is gone too: nothing shows the run any more
    path.unlink(missing_ok=True)
    return crashed


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
    crash_unfinished_runs(parent_pid)  # while a temporary server (a child) still answers
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
