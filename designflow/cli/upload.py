"""`designflow upload`: the main job, run in this process on the Prefect server configured
(or Prefect's temporary one)."""

from __future__ import annotations

import contextlib
import sys
from enum import StrEnum
from pathlib import Path

import typer

from designflow.cli.app import (
    app,
    fail,
    guard_children,
    interrupted_upload,
    out,
    print_json,
    watched,
)


class Priority(StrEnum):
    high = "high"
    normal = "normal"
    low = "low"


@app.command()
def upload(
    paths: list[str] = typer.Argument(..., help="files or folders (searched recursively); nas:<path> or sftp://user@host:port/path for ones on the NAS"),
    user: str = typer.Option(..., "--user", help="the seller's user id"),
    as_json: bool = typer.Option(False, "--json", help="print the report as one JSON object"),
    batch_max_mb: float | None = typer.Option(None, "--batch-max-mb", help="most megabytes per batch (default: DESIGNFLOW_BATCH_MAX_MB)"),
    batch_max_images: int | None = typer.Option(None, "--batch-max-images", help="most files per batch (default: DESIGNFLOW_BATCH_MAX_IMAGES)"),
    allow_near_duplicates: bool = typer.Option(
        False, "--allow-near-duplicates",
        help="store designs that resemble existing ones, marked as near duplicates",
    ),
    replace_with_better: bool = typer.Option(
        False, "--replace-with-better",
        help="a near duplicate with more pixels than the stored design replaces it (its Etsy listing follows)",
    ),
    mockups: str = typer.Option("", "--mockups", metavar="TEMPLATE,...", help="render these mockup templates"),
    priority: Priority = typer.Option(Priority.normal, "--priority", help="work queue of the background mockup run"),
    sync_mockups: bool = typer.Option(False, "--sync-mockups", help="render mockups before returning"),
    listings: str | None = typer.Option(
        None, "--listings", metavar="FILE.csv|FILE.parquet",
        help="Etsy listing content per file (published after the mockups)",
    ),
) -> int:  # fmt: skip
    """Upload design files or folders for a user."""
    from designflow.settings import Settings
    from designflow.storage.nas import InvalidUserId, check_user_id, nas_settings_problem

    try:
        check_user_id(user)
    except InvalidUserId as exc:
        return fail(str(exc))
    # A wrong setting costs one line before any file is read, not retries per batch.
    problem = nas_settings_problem(Settings.from_env())
    if problem:
        return fail(problem)
    from designflow.ingest.sources import is_remote

    # Local names are made absolute (the run may resolve them elsewhere); nas: and sftp://
    # names are kept as given.
    absolute = [p if is_remote(p) else str(Path(p).absolute()) for p in paths]
    guard_children()
    state = _run_upload_flow(
        {
            "paths": absolute,
            "user_id": user,
            "batch_max_mb": batch_max_mb,
            "batch_max_images": batch_max_images,
            "allow_near_duplicates": allow_near_duplicates,
            "replace_with_better": replace_with_better,
            "mockup_templates": [t for t in mockups.split(",") if t] or None,
            "async_mockups": not sync_mockups,
            "priority": priority.value,
            "listings_manifest": str(Path(listings).absolute()) if listings else None,
        },
        progress=sys.stderr.isatty() and not as_json,
    )
    if state is None:
        return interrupted_upload(user, as_json)
    if state.is_completed():
        print_report(state.result(), as_json)
        return 0
    from designflow.flows.upload import UploadIncomplete

    error = state.result(raise_on_failure=False)
    if isinstance(error, UploadIncomplete):
        print_report(error.report, as_json)
    return fail(f"upload run failed: {error}", 1)


def _run_upload_flow(parameters: dict, progress: bool):
    """The upload run in this process: its final state, or None when Ctrl-C or SIGTERM
    interrupted it (the run is recorded as Crashed by then)."""
    with _progress_bar(enabled=progress):
        # Anything a library prints must not end up in the JSON on stdout.
        with contextlib.redirect_stdout(sys.stderr):
            from designflow.flows.upload import upload_designs

            try:
                return watched(upload_designs)(**parameters, return_state=True)
            except KeyboardInterrupt:
                return None


@contextlib.contextmanager
def _progress_bar(enabled: bool):
    """rich's progress bar on stderr, fed by the pipeline's in-process progress events."""
    if not enabled:
        yield
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from designflow.cli.app import err
    from designflow.ingest import progress

    with Progress(
        TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=False,
    ) as bar:  # fmt: skip
        task = bar.add_task("starting", total=None)

        def update(event: progress.Progress) -> None:
            bar.update(
                task,
                completed=event.done,
                total=max(event.total, 1),
                description=event.message[:32],
            )

        unsubscribe = progress.subscribe(update)
        try:
            yield
        finally:
            unsubscribe()


def duplicate_line(d: dict) -> str:
    line = f"  duplicate  {d['file']} -> {d['kind']} copy of design {d['duplicate_of']} (distance {d['distance']})"
    if d.get("better"):
        line += f" [better: {d['size']} against the stored {d['stored_size']}]"
    return line + (f": {d['why']}" if d.get("why") else "")


def mockup_and_listing_lines(report: dict) -> list[str]:
    lines = [
        f"  mockups    background run {m['flow_run_id']} on queue {m['priority']} ({m['designs']} designs)"
        for m in report.get("mockup_runs", [])
    ]
    lines += [
        f"  mockup     design {m['design_id']} {m['template_id']} at {m['nas_path']}"
        for m in report.get("mockups", [])
    ]
    if report.get("mockup_error"):
        lines.append(f"  mockups    {report['mockup_error']}")
    for item in report.get("listings", []):
        what = item["error"] or f"{item['action']}, {len(item['images'])} image(s)"
        lines.append(
            f"  listing    design {item['design_id']} -> Etsy listing {item['listing_id']}: {what}"
        )
    if report.get("listing_skipped"):
        lines.append(f"  listings   {report['listing_skipped']}")
    return lines


def print_report(report: dict, as_json: bool) -> None:
    if as_json:
        print_json(report)
        return
    counts = report["counts"]
    out(f"flow run {report['flow_run_id']}")
    for s in report["stored"]:
        replaced = f" (replaces design {s['replaces']})" if s.get("replaces") else ""
        out(f"  stored     {s['file']} -> design {s['design_id']} at {s['nas_path']}{replaced}")
    for d in report["duplicates"]:
        out(duplicate_line(d))
    for r in report["rejected"]:
        out(f"  rejected   {r['file']}: {r['reason']}")
    for f in report.get("failed", []):
        out(f"  failed     {f['file']}: {f['reason']}")
    for k in report.get("skipped", []):
        out(f"  skipped    {k['file']}: {k['reason']}")
    for line in mockup_and_listing_lines(report):
        out(line)
    out(
        f"{counts['stored']} stored, {counts['duplicates']} duplicate(s), "
        f"{counts['rejected']} rejected, {counts.get('failed', 0)} failed"
        + (f", {counts['skipped']} skipped" if counts.get("skipped") else "")
        + f" in {report['batches']} batch(es)"
    )
