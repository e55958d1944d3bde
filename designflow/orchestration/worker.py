"""`designflow worker`: Prefect's process worker under a supervisor that makes SIGTERM mean
stop. Prefect's worker, on SIGTERM, stops asking for runs but waits for the runs it started
to finish, however long they take (seen: 2 of 3 SIGTERMs did not stop it, one starting a
scheduled sweep after the signal), and a run it polled in the instant of the signal still
starts (seen in test_worker_stops_on_sigterm_five_times_in_a_row, 1 try in 3 when it was
forwarded SIGTERM). Here the worker is frozen (SIGSTOP) at the signal, so it takes nothing
more; its runs get a grace period to finish, are then interrupted (Prefect's engine reports
them Crashed), anything left is killed, the frozen worker too, and a run the server still
shows as Running or Pending is set Crashed with the reason: nothing is left stuck.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import psutil

from designflow.settings import Settings

# Within 30 s of the signal, all told: runs finishing by themselves (15 s unless
# DESIGNFLOW_WORKER_STOP_GRACE_SECONDS says otherwise), then interrupted runs reporting
# their crash.
INTERRUPT_SECONDS = 10.0


def run_worker(cmd: list[str], env: dict[str, str]) -> int:
    grace = Settings.from_env(env).worker_stop_grace_s
    child = subprocess.Popen(cmd, env=env, start_new_session=True)
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        if not stop.is_set():
            stop.set()
            _send(child, signal.SIGSTOP)  # takes no run from here on

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while child.poll() is None and not stop.is_set():
        stop.wait(0.5)
    if not stop.is_set():
        return child.returncode
    runs = _flow_run_processes(child)
    left = _wait_gone(runs, grace)
    for process in left:  # the engine catches SIGINT and reports the run Crashed
        _send(process, signal.SIGINT)
    left = _wait_gone(left, INTERRUPT_SECONDS)
    for process in [*left, child]:
        _send(process, signal.SIGKILL)
    child.wait(10)
    _crash_runs_left_running([p.pid for p in runs])
    return 0


def _wait_gone(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """The processes still running after `seconds`. A run that ended is a zombie until its
    (frozen) parent is killed: ended all the same."""
    deadline = time.monotonic() + seconds
    while True:
        left = [p for p in processes if _running(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _flow_run_processes(child: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(child.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _send(process, signum: int) -> None:
    try:
        process.send_signal(signum)
    except (psutil.NoSuchProcess, ProcessLookupError):
        pass


def _crash_runs_left_running(pids: list[int]) -> None:
    """Runs whose process this worker started and that the server still shows as Running or
    Pending: their process is gone, so they are Crashed, with the reason."""
    if not pids:
        return
    import socket

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    ours = {str(pid) for pid in pids} | {f"{socket.gethostname()}:{pid}" for pid in pids}
    try:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
                    )
                ),
                limit=200,
            )
            for run in runs:
                if run.infrastructure_pid in ours:
                    client.set_flow_run_state(
                        run.id,
                        Crashed(message="the worker was stopped (SIGTERM) while it ran"),
                        force=True,
                    )
    except Exception as exc:  # noqa: BLE001 - the server may be gone too; say so, exit anyway
        print(f"designflow worker: could not mark interrupted runs crashed: {exc}")
