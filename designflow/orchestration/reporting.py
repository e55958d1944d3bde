"""Artifacts and progress: what a person watching the Prefect UI (or the CLI) sees."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from designflow.ingest import progress
from designflow.ingest.report import UploadReport
from designflow.ops.thumbnails import near_duplicates_markdown
from designflow.orchestration import resources
from designflow.orchestration.links import flow_run_markdown


@contextmanager
def progress_artifact(run_id: str | None) -> Iterator[None]:
    """The UI's progress artifact for this upload, following the progress events its report
    publishes (one subscription for the run)."""
    artifact: UUID | None = create_progress_artifact(progress=0.0, description="Designs processed")

    def show(event: progress.Progress) -> None:
        if event.run != run_id or artifact is None:
            return
        percent = 100.0 * event.done / event.total if event.total else 100.0
        update_progress_artifact(
            artifact, percent, description=f"{event.message} ({event.done} of {event.total})"
        )

    unsubscribe = progress.subscribe(show)
    try:
        yield
    finally:
        unsubscribe()


def publish_upload_outcomes(report: UploadReport) -> None:
    """The `upload-outcomes` table: one row per file."""
    rows = report.outcome_rows()
    create_table_artifact(
        table=rows
        or [
            {
                "file": "",
                "outcome": "no files",
                "design_id": None,
                "duplicate_of": None,
                "distance": None,
                "detail": "",
                "nas_path": "",
            }
        ],
        key="upload-outcomes",
        description=f"Outcome of each file uploaded for user {report.user_id}",
    )


def publish_upload_summary(report: UploadReport) -> None:
    """The `upload-summary`: counts, the mockup run, per-stage timings and pictures of the
    near duplicates beside the designs they matched."""
    try:
        pictures = near_duplicates_markdown(report, resources.catalog(), resources.nas())
    except Exception as exc:  # noqa: BLE001 - pictures are a courtesy: the summary goes on
        pictures = f"(no pictures of the near duplicates: {type(exc).__name__})\n"
    timings = "\n".join(f"| {stage} | {ms:,.1f} |" for stage, ms in report.timings_ms.items())
    create_markdown_artifact(
        key="upload-summary",
        markdown=(
            f"## Upload for {report.user_id}\n\n"
            f"- stored: **{len(report.stored)}**\n"
            f"- duplicates: **{len(report.duplicates)}**\n"
            f"- rejected: **{len(report.rejected)}**\n"
            f"- failed: **{len(report.failed)}**\n"
            f"- batches: {report.batches}\n"
            + "".join(
                f"- mockups: {flow_run_markdown(m['flow_run_id'], 'generate-mockups run')} "
                f"on queue {m['priority']} ({m['designs']} design(s))\n"
                for m in report.mockup_runs
            )
            + "\n"
            f"| stage | ms |\n|---|---|\n{timings}\n" + (f"\n{pictures}" if pictures else "")
        ),
        description="Counts and per-stage timings",
    )
