"""Fingerprinting as a Prefect task."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from designflow.images.fingerprint import Fingerprint, RejectedDesign, fingerprint_design
from designflow.ingest.report import RejectedFile
from designflow.tasks.resources import current_settings


def _run_name() -> str:
    from prefect.runtime import task_run

    return f"fingerprint {Path(task_run.parameters.get('path', '?')).name}"


# No retries: a file that cannot be decoded will not decode on a second try, and a file that
# cannot be read is the seller's to fix. No cache: a path's content can change between runs.
# No tags: a tagged task asks the server for concurrency slots on every run (~0.5 s each).
@task(
    name="fingerprint-design", task_run_name=_run_name, cache_policy=NO_CACHE, persist_result=False
)
def fingerprint_file(path: str) -> Fingerprint | RejectedFile:
    try:
        return fingerprint_design(path, current_settings().limits)
    except RejectedDesign as exc:
        return RejectedFile(file=path, reason=exc.reason)
