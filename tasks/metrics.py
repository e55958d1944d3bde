"""Per-run metrics into the catalog database: what `designflow report` shows."""

from __future__ import annotations

import resource
import time
import uuid
from datetime import UTC, datetime, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from designflow.orchestration import resources
from designflow.tasks.mockups import MOCKUP_DEPLOYMENT


def mockup_queue_figures() -> tuple[int | None, float | None]:
    """(runs of generate-mockups waiting, failure rate over the last 24 h), or None when the
    deployment does not exist (no background mockups configured)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(MOCKUP_DEPLOYMENT)
        except ObjectNotFound:
            return None, None
        by_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        waiting = client.count_flow_runs(
            deployment_filter=by_deployment,
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING])
                )
            ),
        )
        day = FlowRunFilterStartTime(after_=datetime.now(UTC) - timedelta(days=1))
        finished_types = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED]
        finished = client.count_flow_runs(
            deployment_filter=by_deployment,
            flow_run_filter=FlowRunFilter(
                start_time=day,
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=finished_types)),
            ),
        )
        failed = client.count_flow_runs(
            deployment_filter=by_deployment,
            flow_run_filter=FlowRunFilter(
                start_time=day,
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED])
                ),
            ),
        )
    return waiting, (failed / finished if finished else 0.0)


# Metrics are recorded after the run's work: a short retry for a catalog hiccup, no result kept.
_METRICS_TASK = dict(
    retries=2, retry_delay_seconds=[1, 3], cache_policy=NO_CACHE, persist_result=False
)


@task(name="record-run-metrics", **_METRICS_TASK)
def record_run_metrics(report: dict, started_at: datetime) -> dict:
    timings = report.get("timings_ms", {})
    counts = report.get("counts", {})
    try:
        depth, failure_rate = mockup_queue_figures()
    except Exception:  # metrics must never fail an upload; a missing figure stays empty
        depth, failure_rate = None, None
    metrics = {
        "flow_run_id": uuid.UUID(report["flow_run_id"]),
        "user_id": report["user_id"],
        "started_at": started_at,
        "duration_ms": timings.get("total", 0.0),
        "fingerprint_ms": timings.get("fingerprint", 0.0),
        "dedup_ms": timings.get("dedup", 0.0),
        "nas_ms": timings.get("nas", 0.0),
        "insert_ms": timings.get("insert", 0.0),
        "batches": report.get("batches", 0),
        "stored": counts.get("stored", 0),
        "duplicates": counts.get("duplicates", 0),
        "rejected": counts.get("rejected", 0),
        "failed": counts.get("failed", 0),
        "mockup_runs": len(report.get("mockup_runs", [])),
        "mockup_queue_depth": depth,
        "mockup_failure_rate": failure_rate,
        # ru_maxrss is in KiB on Linux: the peak of the process that ran the upload.
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "run_name": flow_run.name,
        "files": sum(counts.get(k, 0) for k in ("stored", "duplicates", "rejected", "failed")),
    }
    resources.catalog().record_upload_run(metrics)
    return {k: (str(v) if isinstance(v, uuid.UUID | datetime) else v) for k, v in metrics.items()}


@task(name="record-mockup-run-metrics", **_METRICS_TASK)
def record_mockup_run_metrics(result: dict, started: float, designs: int) -> None:
    """The mockup run's row for `designflow report`: its queue, how long it waited there,
    how long it took and what it produced."""
    created = flow_run.scheduled_start_time
    resources.catalog().record_mockup_run(
        {
            "flow_run_id": uuid.UUID(result["flow_run_id"]),
            "run_name": flow_run.name,
            "upload_run_id": result.get("upload_run_id"),
            "queue": _queue_name(),
            "created_at": created,
            "started_at": datetime.now(UTC) - timedelta(seconds=time.perf_counter() - started),
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "designs": designs,
            "mockups": len(result.get("mockups", [])),
            "failed": len(result.get("failed", [])),
            "listings": sum(1 for o in result.get("listings", []) if not o.get("error")),
        }
    )


def _queue_name() -> str | None:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return context.flow_run.work_queue_name if context and context.flow_run else None
