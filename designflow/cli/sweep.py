"""`designflow sweep`: one sweep of the inbox now, in this process, as the scheduled
deployment would run it."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import typer

from designflow.cli.app import app, fail, guard_children, out, print_json, watched


@app.command()
def sweep(
    inbox: str | None = typer.Option(None, "--inbox", help="inbox root, a folder or nas:<folder> (default DESIGNFLOW_INBOX)"),
    user: str | None = typer.Option(None, "--user", help="one seller's folder (default: every seller)"),
    settle_seconds: float = typer.Option(
        30.0, "--settle-seconds", help="a file unchanged this long (by the clock) is complete"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the sweep's result as one JSON object"),
) -> int:  # fmt: skip
    """Sweep the inbox once now and print each file's outcome."""
    from designflow.settings import Settings
    from designflow.storage.nas import InvalidUserId, check_user_id

    if user:
        try:
            check_user_id(user)
        except InvalidUserId as exc:
            return fail(str(exc))
    root = inbox or Settings.from_env().inbox
    if not root.startswith("nas:"):
        root = str(Path(root).absolute())
    guard_children()
    with contextlib.redirect_stdout(sys.stderr):
        from designflow.flows.sweep import sweep_inbox

        state = watched(sweep_inbox)(
            inbox=root, user_id=user, settle_seconds=settle_seconds, return_state=True
        )
    if not state.is_completed():
        return fail(f"sweep run failed: {state.result(raise_on_failure=False)}", 1)
    result = state.result()
    if as_json:
        print_json(result)
        return 0
    per_user = result["users"] if "users" in result else {user: result}
    if not per_user:
        out(f"{root}: no seller folders")
    for name, swept in per_user.items():
        if "skipped" in swept:
            out(f"{name}: skipped ({swept['skipped']})")
            continue
        out(f"{name}: {len(swept['processed'])} processed, {len(swept['quarantined'])} "
            f"quarantined, {len(swept['waiting'])} waiting, {len(swept['left_for_retry'])} left for retry")  # fmt: skip
        for row in swept["outcomes"]:
            detail = f"  ({row['detail']})" if row["detail"] else ""
            out(f"  {row['outcome']:<15} {row['file']}{detail}")
    return 0
