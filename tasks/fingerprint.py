"""Fingerprinting as a Prefect task."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from designflow.images.fingerprint import Fingerprint
from designflow.ingest.report import FailedFile, RejectedFile
from designflow.ingest.sources import fingerprint_source
from designflow.settings import ImageLimits
from designflow.tasks.resources import current, current_settings


def _run_name() -> str:
    from prefect.runtime import task_run

    return f"fingerprint {Path(task_run.parameters.get('path', '?')).name}"


# No retries: a file that cannot be decoded will not decode on a second try, and a file that
# cannot be read is the seller's to fix. No cache: a path's content can change between runs.
# No tags: a tagged task asks the server for concurrency slots on every run (~0.5 s each).
@task(
    name="fingerprint-design", task_run_name=_run_name, cache_policy=NO_CACHE, persist_result=False
)
def fingerprint_file(
    path: str, staging: str | None = None
) -> Fingerprint | RejectedFile | FailedFile:
    return fingerprint_one(path, current_settings().limits, staging)


def fingerprint_one(
    path: str, limits: ImageLimits, staging: str | None
) -> Fingerprint | RejectedFile | FailedFile:
    return fingerprint_source(path, limits, staging, current().locate)


def _batch_run_name() -> str:
    from prefect.runtime import task_run

    paths = task_run.parameters.get("paths") or []
    first = Path(paths[0]).name if paths else "?"
    return f"fingerprint {len(paths)} file(s) from {first}"


# One task per batch, its files in 4 threads (decoding releases the GIL): a task run per file
# cost the server ~3 events per design, and after a 500-design upload the default SQLite
# server took ~1 min to catch up (the next test's runs waited). Each file still gets its own
# outcome (a Fingerprint or a RejectedFile) and its own row in the outcome table.
@task(
    name="fingerprint-batch", task_run_name=_batch_run_name, cache_policy=NO_CACHE,
    persist_result=False,
)  # fmt: skip
def fingerprint_files_in_threads(
    paths: list[str], staging: str | None = None
) -> list[Fingerprint | RejectedFile | FailedFile]:
    from concurrent.futures import ThreadPoolExecutor

    limits = current_settings().limits
    with ThreadPoolExecutor(max_workers=FINGERPRINT_THREADS) as pool:
        return list(pool.map(lambda path: fingerprint_one(path, limits, staging), paths))


FINGERPRINT_THREADS = 4
