"""Catalog access as Prefect tasks, retried on database errors."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE

from designflow.catalog import ExistingDesign, NewDesign, RecordResult
from designflow.similarity import NearMatch, NearQuery
from tasks import resources
from tasks.retry import IO_RETRIES, IO_RETRY_DELAYS, IO_RETRY_JITTER

_db_retry = dict(
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_jitter_factor=IO_RETRY_JITTER,
    retry_condition_fn=lambda task, run, state: _is_transient(state),
    cache_policy=NO_CACHE,
)


def _is_transient(state) -> bool:
    try:
        state.result()
    except psycopg.OperationalError:
        return True
    except Exception:
        return False
    return False


@task(name="prepare-catalog", **_db_retry)
def prepare_catalog() -> list[str]:
    """Apply pending migrations (the first upload on a fresh machine creates the schema)."""
    cat = resources.catalog()
    return cat.applied_migrations()


@task(name="find-known-designs", **_db_retry)
def find_known_designs(user_id: str, sha256s: Sequence[str]) -> dict[str, ExistingDesign]:
    return resources.catalog().find_by_sha256(user_id, sha256s)


@task(name="count-user-designs", **_db_retry)
def count_user_designs(user_id: str) -> int:
    return resources.catalog().count_designs(user_id)


@task(name="record-designs", **_db_retry)
def record_designs(designs: Sequence[NewDesign]) -> RecordResult:
    """One transaction per batch; safe to retry (ON CONFLICT DO NOTHING)."""
    return resources.catalog().record_designs(designs)


@task(name="find-near-duplicates", **_db_retry)
def find_near_designs(user_id: str, queries: Sequence[NearQuery], distance: int) -> list[NearMatch]:
    """One indexed query for the whole batch over every active design of the user."""
    return resources.catalog().find_near(user_id, queries, distance)
