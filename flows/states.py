"""Reading Prefect states in orchestration code."""

from __future__ import annotations


def failure_reason(state) -> str:
    """What went wrong in a failed task or flow state, in one line for a report."""
    try:
        state.result()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return state.message or state.name


def item_outcomes(state, count: int) -> list[tuple[BaseException | None, str]]:
    """Each item's (error, reason) of a group task (a batch of uploads): None for the items
    that succeeded. A PartlyFailed task carries its items' outcomes; a task that failed as a
    whole failed every item with its reason."""
    from designflow.errors import PartlyFailed

    if state.is_completed():
        return [(None, "")] * count
    error = state.result(raise_on_failure=False)
    if isinstance(error, PartlyFailed) and len(error.outcomes) == count:
        return [
            (o, f"{type(o).__name__}: {o}") if isinstance(o, BaseException) else (None, "")
            for o in error.outcomes
        ]
    return [(error, failure_reason(state))] * count
