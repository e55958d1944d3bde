"""Create or update everything runs are triggered with: the work pool, its priority queues and
the deployments. One command: `designflow deploy` (idempotent).

    work pool "designflow" (process)  queues: high (priority 1), normal (2), low (3)
    upload-designs/upload-designs      on queue normal
    generate-mockups/generate-mockups  on the queue each trigger names (high | normal | low)
    publish-listing/publish-listing    on queue low (Etsy draft listings of stored designs)

Run them with `designflow worker` (a process worker polling every second).
"""

from __future__ import annotations

from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectAlreadyExists

PROJECT_ROOT = Path(__file__).resolve().parent.parent
QUEUES = {"high": 1, "normal": 2, "low": 3}


def ensure_work_pool(name: str, concurrency_limit: int | None = None) -> None:
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(
                WorkPoolCreate(name=name, type="process", concurrency_limit=concurrency_limit)
            )
        except ObjectAlreadyExists:
            client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=concurrency_limit))
        for queue, priority in QUEUES.items():
            try:
                client.create_work_queue(name=queue, work_pool_name=name, priority=priority)
            except ObjectAlreadyExists:
                existing = client.read_work_queue_by_name(queue, work_pool_name=name)
                client.update_work_queue(existing.id, priority=priority)


def deploy_all(
    work_pool: str = "designflow",
    concurrency_limit: int | None = None,
    inbox: str | None = None,
    sweep_cron: str | None = None,
) -> list[str]:
    """Idempotent: re-running updates the pool, the queues and the deployments in place."""
    from prefect import flow

    from designflow.settings import Settings

    settings = Settings.from_env()
    ensure_work_pool(work_pool, concurrency_limit)
    made = []
    for entrypoint, name, queue, extra in (
        ("flows/upload.py:upload_designs", "upload-designs", "normal", {}),
        ("flows/mockups.py:generate_mockups", "generate-mockups", "normal", {}),
        # Etsy publishing on its own (the mockup run also publishes after rendering); the
        # low queue: a listing can wait behind uploads and mockups.
        ("flows/publish.py:publish_listing", "publish-listing", "low", {}),
        (
            "flows/sweep.py:sweep_inbox",
            "sweep-inbox",
            "normal",
            # One sweep at a time; a scheduled sweep that finds one running waits its turn.
            {
                "cron": sweep_cron or settings.sweep_cron,
                "parameters": {"inbox": inbox or settings.inbox},
                "concurrency_limit": 1,
            },
        ),
    ):
        source_flow = flow.from_source(source=str(PROJECT_ROOT), entrypoint=entrypoint)
        deployment_id = source_flow.deploy(
            name=name,
            work_pool_name=work_pool,
            work_queue_name=queue,
            description=(source_flow.description or "").strip().split("\n")[0],
            print_next_steps=False,
            **extra,
        )
        made.append(f"{source_flow.name}/{name} ({deployment_id})")
    return made
