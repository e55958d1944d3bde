"""One retry policy for I/O tasks: exponential backoff with jitter (Prefect's own), retried
only when the failure can heal (designflow.errors.is_transient)."""

from __future__ import annotations

from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from designflow.errors import is_transient
from designflow.settings import Settings

IO_RETRIES = 3
IO_RETRY_JITTER = 0.5


def io_retry_delays() -> list[float]:
    """1 s, 2 s, 4 s (+/- jitter) by default; DESIGNFLOW_RETRY_BACKOFF_SECONDS sets the base,
    read at run time so a deployment or a test can change it without a restart."""
    base = Settings.from_env().retry_backoff_s
    return exponential_backoff(backoff_factor=base)(IO_RETRIES)


def worth_retrying(task, run, state) -> bool:
    """Prefect's retry_condition_fn: retry only a failure that may heal."""
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False


def io_retry(**overrides) -> dict:
    """Task options of every I/O task (retries, backoff, jitter, the shared predicate)."""
    options = dict(
        retries=IO_RETRIES,
        retry_delay_seconds=io_retry_delays(),
        retry_jitter_factor=IO_RETRY_JITTER,
        retry_condition_fn=worth_retrying,
        cache_policy=NO_CACHE,
        # Only the flows' own results are kept (for `designflow status` and the UI): a
        # persisted result per task would write a file for every design and stage.
        persist_result=False,
    )
    options.update(overrides)
    return options
