"""NAS uploads as Prefect tasks: retried with exponential backoff on connection errors."""

from __future__ import annotations

from pathlib import Path

import paramiko
from prefect import task
from prefect.cache_policies import NO_CACHE

from designflow.nas import NasError, PutResult, SourceChangedError
from designflow.sftp import HostKeyError, NasAuthError
from tasks import resources
from tasks.retry import IO_RETRIES, IO_RETRY_DELAYS, IO_RETRY_JITTER


def _is_transient(task, run, state) -> bool:
    try:
        state.result()
    except SourceChangedError:
        return False  # the file changed under us: retrying uploads the same wrong bytes
    except (HostKeyError, NasAuthError):
        return False  # the same key or credentials fail the same way: say so at once
    except (OSError, EOFError, ConnectionError, NasError, paramiko.SSHException):
        return True
    except Exception:
        return False
    return False


def _run_name() -> str:
    from prefect.runtime import task_run

    return f"upload {Path(task_run.parameters.get('source', '?')).name}"


# No tags: a tagged task asks the server for concurrency slots on every run (~0.5 s each);
# SFTP connections are capped in-process by the pool instead.
@task(
    name="upload-to-nas",
    task_run_name=_run_name,
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_jitter_factor=IO_RETRY_JITTER,
    retry_condition_fn=_is_transient,
    cache_policy=NO_CACHE,
)
def upload_to_nas(source: str, dest: str, sha256: str) -> PutResult:
    """Publish one design at its content address; a repeat of the same bytes is a no-op."""
    return resources.nas().put_file(source, dest, sha256)
