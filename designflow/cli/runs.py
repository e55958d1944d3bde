"""Background runs: `deploy`, `worker`, `serve`, `status`."""

from __future__ import annotations

import contextlib
import json
import os
import sys

import typer

from designflow.cli.app import app, fail, guard_children, out, print_json


@app.command()
def deploy(
    pool: str | None = typer.Option(None, "--pool", help="work pool (default DESIGNFLOW_WORK_POOL or designflow)"),
    concurrency: int | None = typer.Option(
        None, "--concurrency", help="runs at once in the pool; an existing limit is kept when not given"
    ),
    results_on_nas: bool | None = typer.Option(
        None, "--results-on-nas/--results-local",
        help="keep flow results in nas:prefect-results/ as the server's default result storage "
        "(default: when the NAS is not a local folder), so every machine can read them",
    ),
) -> int:  # fmt: skip
    """Create or update the work pool, its queues and the deployments."""
    from designflow.settings import Settings

    with contextlib.redirect_stdout(sys.stderr):
        from designflow.deployments.deploy import deploy_all

        made = deploy_all(
            pool or Settings.from_env().work_pool, concurrency, results_on_nas=results_on_nas
        )
    for line in made:
        out(f"deployed {line}")
    from designflow.mockups import PRIORITY_QUEUES

    queues = ", ".join(f"{name} (priority {n})" for name, n in PRIORITY_QUEUES.items())
    out(f"queues: {queues}; start a worker with `designflow worker`")
    return 0


@app.command()
def worker(
    pool: str | None = typer.Option(None, "--pool", help="work pool (default DESIGNFLOW_WORK_POOL)"),
    poll_seconds: float = typer.Option(1.0, "--poll-seconds", help="how often to ask for new runs"),
    work_queue: list[str] = typer.Option([], "--work-queue", help="only these queues (repeatable)"),
    name: str | None = typer.Option(None, "--name", help="worker name shown in the UI"),
    limit: int = typer.Option(
        max(1, (os.cpu_count() or 2) // 2), "--limit",
        help="runs at once (default: one per two cores; each run already works in 4 threads). "
        "Queue priorities decide which run starts only while the worker is at its limit",
    ),
) -> int:  # fmt: skip
    """Run a Prefect process worker for the work pool; SIGTERM or Ctrl-C stops it within 30 s."""
    from designflow.settings import Settings

    env = dict(os.environ)
    # The worker asks for runs every `poll` seconds (Prefect's default is 10 s): the main
    # part of trigger-to-start latency.
    env["PREFECT_WORKER_QUERY_SECONDS"] = str(poll_seconds)
    env.setdefault("PREFECT_WORKER_PREFETCH_SECONDS", "5")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--type", "process",
           "--pool", pool or Settings.from_env().work_pool]  # fmt: skip
    for queue in work_queue:
        cmd += ["--work-queue", queue]
    if name:
        cmd += ["--name", name]
    cmd += ["--limit", str(limit)]
    guard_children()  # killed outright, its worker and runs go with it
    from designflow.orchestration.worker import run_worker

    return run_worker(cmd, env)


@app.command()
def serve(
    inbox: str | None = typer.Option(None, "--inbox", help="inbox root of the scheduled sweep (default DESIGNFLOW_INBOX)"),
    cron: str | None = typer.Option(None, "--cron", help="sweep schedule (default DESIGNFLOW_SWEEP_CRON, every 5 min)"),
    limit: int = typer.Option(4, "--limit", help="runs at once"),
) -> int:  # fmt: skip
    """Run the deployments, their schedules and the runs in one process tree."""
    import signal

    from designflow.settings import Settings

    settings = Settings.from_env()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    guard_children()

    def stop(signum, frame):  # SIGTERM stops like Ctrl-C: the runner cancels and cleans up
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    from prefect import serve as prefect_serve

    from designflow.deployments.deploy import DEPLOYMENTS, runner_deployments

    deployments = runner_deployments(settings, inbox, cron, work_queues=False)
    names = ", ".join(spec.name for spec in DEPLOYMENTS)
    out(f"serving {names} (sweep {cron or settings.sweep_cron}); Ctrl-C stops")
    sys.stdout.flush()
    try:
        prefect_serve(*deployments, limit=limit)
    except (KeyboardInterrupt, SystemExit):  # Prefect's runner ends a SIGTERM with an exit
        pass
    out("stopped")
    sys.stdout.flush()
    return 0


@app.command()
def status(
    run_id: str = typer.Argument(..., help="flow run id"),
    as_json: bool = typer.Option(
        False, "--json", help="Print the state, tasks and result as JSON."
    ),
) -> int:
    """State of a flow run, its tasks and its result. Exit code 1 when the run failed,
    crashed or was cancelled."""
    import uuid

    try:
        run_uuid = uuid.UUID(run_id)
    except ValueError:
        return fail(f"not a run id: {run_id!r}")
    with contextlib.redirect_stdout(sys.stderr):
        info = _run_status(run_uuid)
    code = 1 if str(info["state"]) in ("Failed", "Crashed", "Cancelled", "TimedOut") else 0
    if as_json:
        print_json(info)
        return code
    out(f"run {info['name']} ({info['flow_run_id']}): {info['state']}  queue {info['queue']}")
    if info["message"]:
        out(f"  {info['message']}")
    for task_name, state in info["tasks"]:
        out(f"  task {task_name}: {state}")
    result = info["result"]
    if isinstance(result, dict) and "counts" in result:
        from designflow.cli.upload import print_report

        out("  result: the upload's report")
        print_report(result, as_json=False)  # one line per file (--json for the raw result)
    elif result is not None:
        out(f"  result: {json.dumps(result, default=str)[:2000]}")
    return code


def _run_status(run_id) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )

    from designflow.orchestration.results import final_result

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run_id])),
        )
        result = final_result(run)
    return {
        "flow_run_id": str(run.id),
        "name": run.name,
        "state": run.state.name if run.state else None,
        "message": run.state.message if run.state else None,
        "queue": run.work_queue_name,
        "start_time": str(run.start_time) if run.start_time else None,
        "end_time": str(run.end_time) if run.end_time else None,
        "tasks": sorted((t.name, t.state.name if t.state else "?") for t in tasks),
        "result": result,
    }
