"""Catalog access as Prefect tasks, retried on database errors."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from prefect import task

from designflow.catalog import ExistingDesign, NewDesign, RecordResult
from designflow.images.similarity import NearMatch, NearQuery
from designflow.ingest.claims import wait_for_claimed
from designflow.orchestration import resources
from designflow.orchestration.retry import io_retry
from designflow.storage.unrecorded import LEDGER


@task(name="prepare-catalog", **io_retry())
def prepare_catalog() -> list[str]:
    """Apply pending migrations (the first upload on a fresh machine creates the schema)."""
    cat = resources.catalog()
    return cat.applied_migrations()


# Exact and near lookups in one task: each task run costs the Prefect server ~40 ms of CPU
# (measured on its SQLite database), a second one per batch bought nothing the log lines
# and the outcome table do not already show.
@task(name="find-duplicates", **io_retry())
def find_duplicates(
    user_id: str, sha256s: Sequence[str], queries: Sequence[NearQuery], distance: int
) -> tuple[dict[str, ExistingDesign], list[NearMatch], dict[int, bytes]]:
    """The user's designs with these contents, those near these hashes, and the near
    candidates' reductions for the verifier."""
    return resources.catalog().find_duplicates(user_id, sha256s, queries, distance)


@task(name="count-user-designs", **io_retry())
def count_user_designs(user_id: str) -> int:
    return resources.catalog().count_designs(user_id)


@task(name="record-designs", **io_retry())
def record_designs(designs: Sequence[NewDesign], batch_id: uuid.UUID | None = None) -> RecordResult:
    """One transaction per batch, ending the batch's claims; safe to retry (ON CONFLICT DO
    NOTHING)."""
    # An interrupt waits for the insert in flight (designflow.storage.unrecorded).
    with LEDGER.recording():
        result = resources.catalog().record_designs(designs, claims_of=batch_id)
    if designs:
        LEDGER.recorded_sha256s(designs[0].user_id, [d.sha256 for d in designs])
    return result


@task(name="claim-designs", **io_retry())
def claim_designs(
    user_id: str, sha256s: Sequence[str], batch_id: uuid.UUID
) -> dict[str, uuid.UUID]:
    """Claim the contents this batch is about to send to the NAS; returns those another
    live batch (a concurrent upload by the same seller) is storing."""
    return resources.catalog().claim_designs(user_id, sha256s, batch_id)


@task(name="wait-for-claimed-designs", **io_retry())
def await_claimed(
    user_id: str, sha256s: Sequence[str]
) -> tuple[dict[str, ExistingDesign], list[str]]:
    """Wait for the batches that claimed these contents to store them."""
    return wait_for_claimed(resources.catalog(), user_id, sha256s)
