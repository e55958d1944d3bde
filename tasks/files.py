"""Listing what the seller pointed at, as a task (the flow does no I/O of its own)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from designflow.ingest.batching import CandidateFile, UnusablePath, collect_design_files
from designflow.orchestration.resources import current, source_roots


@task(name="collect-design-files", cache_policy=NO_CACHE, persist_result=False)
def collect_files(paths: list[str], user_id: str) -> tuple[list[CandidateFile], list[UnusablePath]]:
    return collect_design_files(paths, locate=current().locate, allowed=source_roots(user_id))
