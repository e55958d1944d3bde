"""NAS uploads as Prefect tasks: retried with exponential backoff on connection errors."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from designflow.storage.nas import PutResult
from designflow.tasks import resources
from designflow.tasks.retry import io_retry


def _run_name() -> str:
    from prefect.runtime import task_run

    return f"upload {Path(task_run.parameters.get('source', '?')).name}"


# No tags: a tagged task asks the server for concurrency slots on every run (~0.5 s each);
# SFTP connections are capped in-process by the pool instead.
@task(
    name="upload-to-nas",
    task_run_name=_run_name,
    **io_retry(),
)
def upload_to_nas(source: str, dest: str, sha256: str) -> PutResult:
    """Publish one design at its content address; a repeat of the same bytes is a no-op."""
    return resources.nas().put_file(source, dest, sha256)
