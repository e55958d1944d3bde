"""Which task runner the CPU-bound fingerprinting uses: threads (default) or Dask.

DESIGNFLOW_TASK_RUNNER=threads   ThreadPoolTaskRunner(max_workers=4) in the flow's process
DESIGNFLOW_TASK_RUNNER=dask      prefect-dask's DaskTaskRunner: a local cluster, or the
                                 scheduler at DESIGNFLOW_DASK_ADDRESS (tcp://host:8786)
"""

from __future__ import annotations

from prefect.task_runners import ThreadPoolTaskRunner

from designflow.settings import Settings


def fingerprint_runner_kind() -> str:
    return Settings.from_env().task_runner


def fingerprint_task_runner():
    if fingerprint_runner_kind() == "threads":
        return ThreadPoolTaskRunner(max_workers=4)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise RuntimeError(
            "DESIGNFLOW_TASK_RUNNER=dask needs prefect-dask: pip install -e '.[dask]'"
        ) from None
    address = Settings.from_env().dask_address
    if address:
        return DaskTaskRunner(address=address)
    # Two worker processes of two threads: one per core, threads for Pillow's released GIL.
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": 2, "threads_per_worker": 2, "dashboard_address": None}
    )


def no_heartbeat_settings() -> dict:
    """Prefect settings of a run without its heartbeat thread. The thread sleeps in 1 s steps
    and is joined at the run's end: ~0.9 s of every run (measured: 0.9 s from the last task to
    the flow's end, 39 ms without). Sub-flows have their parent's heartbeat; a command's runs
    are ended by the command, or Crashed by its watchdog when it is killed."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    return {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
