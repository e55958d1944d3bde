"""Catalog access as Prefect tasks, retried on database errors."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from prefect import task

from designflow.catalog import ExistingDesign, NewDesign, RecordResult
from designflow.images.similarity import NearMatch, NearQuery
from designflow.ingest.claims import wait_for_claimed
from designflow.tasks import resources
from designflow.tasks.retry import io_retry


@task(name="prepare-catalog", **io_retry())
def prepare_catalog() -> list[str]:
    """Apply pending migrations (the first upload on a fresh machine creates the schema)."""
    cat = resources.catalog()
    return cat.applied_migrations()


@task(name="find-known-designs", **io_retry())
def find_known_designs(user_id: str, sha256s: Sequence[str]) -> dict[str, ExistingDesign]:
    return resources.catalog().find_by_sha256(user_id, sha256s)


@task(name="count-user-designs", **io_retry())
def count_user_designs(user_id: str) -> int:
    return resources.catalog().count_designs(user_id)


@task(name="record-designs", **io_retry())
def record_designs(designs: Sequence[NewDesign], batch_id: uuid.UUID | None = None) -> RecordResult:
    """One transaction per batch, ending the batch's claims; safe to retry (ON CONFLICT DO
    NOTHING)."""
    return resources.catalog().record_designs(designs, claims_of=batch_id)


@task(name="find-near-duplicates", **io_retry())
def find_near_designs(user_id: str, queries: Sequence[NearQuery], distance: int) -> list[NearMatch]:
    """One indexed query for the whole batch over every active design of the user."""
    return resources.catalog().find_near(user_id, queries, distance)


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
