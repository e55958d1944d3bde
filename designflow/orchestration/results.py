"""A finished run's persisted result, read back through Prefect (front ends only)."""

from __future__ import annotations

import uuid
from typing import Any


def final_result(run: Any) -> Any:
    """The result of a flow run read from the server (None while it is not final). A failed
    upload's result is its UploadIncomplete: the report it carries is returned."""
    if not (run.state and run.state.is_final()):
        return None
    try:
        result = run.state.result(raise_on_failure=False)
    except Exception as exc:  # noqa: BLE001 - result not persisted: say so rather than fail
        return f"(result not available: {type(exc).__name__})"
    report = getattr(result, "report", None)
    if report is not None:
        return report
    return (
        result if isinstance(result, dict | list | str | int | float | type(None)) else str(result)
    )


def upload_report(run_id: uuid.UUID | str) -> dict | None:
    """An upload run's report once it has finished, else None."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        result = final_result(client.read_flow_run(uuid.UUID(str(run_id))))
    return result if isinstance(result, dict) else None
