"""Re-deploying keeps what an operator set on the work pool."""

from __future__ import annotations

import uuid

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolUpdate

from designflow.deployments.deploy import ensure_work_pool
from designflow.mockups import PRIORITY_QUEUES as QUEUES


def test_a_plain_redeploy_keeps_the_operators_pool_limit() -> None:
    name = f"pool-{uuid.uuid4().hex[:8]}"
    ensure_work_pool(name)  # the first deploy: no limit
    with get_client(sync_client=True) as client:
        client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=3))  # the operator's
    ensure_work_pool(name)  # `designflow deploy` again, without --concurrency-limit
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool(name)
        queues = {q.name: q.priority for q in client.read_work_queues(work_pool_name=name)}
    assert pool.concurrency_limit == 3
    assert {q: queues[q] for q in QUEUES} == QUEUES
    ensure_work_pool(name, concurrency_limit=5)  # asked for: changed
    with get_client(sync_client=True) as client:
        assert client.read_work_pool(name).concurrency_limit == 5
