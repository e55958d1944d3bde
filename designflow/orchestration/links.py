"""Links between runs, as the Prefect UI opens them."""

from __future__ import annotations


def flow_run_url(run_id: str | None) -> str | None:
    """The run's page in the UI (PREFECT_UI_URL, derived by Prefect from the API URL)."""
    from prefect.settings import get_current_settings

    from designflow.orchestration.trigger import flow_run_page

    return flow_run_page(get_current_settings().ui_url, run_id)


def flow_run_markdown(run_id: str | None, label: str = "run") -> str:
    """`[label](url)` where the UI's address is known, else the run id."""
    if not run_id:
        return "none"
    url = flow_run_url(run_id)
    return f"[{label} {run_id[:8]}]({url})" if url else f"{label} {run_id}"
