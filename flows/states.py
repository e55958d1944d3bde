"""Reading Prefect states in orchestration code."""

from __future__ import annotations


def failure_reason(state) -> str:
    """What went wrong in a failed task or flow state, in one line for a report."""
    try:
        state.result()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return state.message or state.name
