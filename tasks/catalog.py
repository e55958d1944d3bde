"""Catalog access as Prefect tasks, retried on database errors."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task

from designflow.catalog import ExistingDesign, NewDesign, RecordResult
from designflow.images.similarity import NearMatch, NearQuery
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
def record_designs(designs: Sequence[NewDesign]) -> RecordResult:
    """One transaction per batch; safe to retry (ON CONFLICT DO NOTHING)."""
    return resources.catalog().record_designs(designs)


@task(name="find-near-duplicates", **io_retry())
def find_near_designs(user_id: str, queries: Sequence[NearQuery], distance: int) -> list[NearMatch]:
    """One indexed query for the whole batch over every active design of the user."""
    return resources.catalog().find_near(user_id, queries, distance)
