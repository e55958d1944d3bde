"""Prefect flows: orchestration only; the work happens in `tasks/` and the `designflow` core."""

import os

# Prefect's server sends usage telemetry to an outside host by default; designflow's
# defaults reach nothing beyond the machines it is configured for.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
