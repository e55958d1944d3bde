"""One retry policy for I/O tasks: exponential backoff with jitter (Prefect's own)."""

from __future__ import annotations

import os

from prefect.tasks import exponential_backoff

IO_RETRIES = 3
IO_RETRY_JITTER = 0.5


def io_retry_delays() -> list[float]:
    """1 s, 2 s, 4 s (+/- jitter) by default; DESIGNFLOW_RETRY_BACKOFF_SECONDS sets the base,
    read at run time so a deployment or a test can change it without a restart."""
    base = float(os.environ.get("DESIGNFLOW_RETRY_BACKOFF_SECONDS", "1"))
    return exponential_backoff(backoff_factor=base)(IO_RETRIES)


IO_RETRY_DELAYS = io_retry_delays()
