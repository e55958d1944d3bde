"""One retry policy for I/O tasks: exponential backoff with jitter (Prefect's own)."""

from __future__ import annotations

import os

from prefect.tasks import exponential_backoff

IO_RETRIES = 3
# Tests shorten the waits; production keeps 1 s, 2 s, 4 s (+/- jitter).
_BACKOFF = float(os.environ.get("DESIGNFLOW_RETRY_BACKOFF_SECONDS", "1"))
IO_RETRY_DELAYS = exponential_backoff(backoff_factor=_BACKOFF)
IO_RETRY_JITTER = 0.5
