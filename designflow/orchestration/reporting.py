"""Artifacts and progress: what a person watching the Prefect UI (or the CLI) sees."""

from __future__ import annotations

from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from designflow.ingest import progress
from designflow.ingest.report import UploadReport
from designflow.orchestration.links import flow_run_markdown


class UploadProgress:
    """A progress artifact in the UI plus in-process events for the CLI's bar."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 0)
        self.done = 0
        self._artifact: UUID | None = create_progress_artifact(
            progress=0.0, description=f"Designs processed (of {self.total})"
        )
        progress.publish(progress.Progress(0, self.total, "starting"))

    def advance(self, count: int, message: str) -> None:
        self.done = min(self.total, self.done + count)
        percent = 100.0 * self.done / self.total if self.total else 100.0
        if self._artifact is not None:
            update_progress_artifact(self._artifact, percent, description=message)
        progress.publish(progress.Progress(self.done, self.total, message))

    def finish(self, message: str) -> None:
        if self._artifact is not None:
            update_progress_artifact(self._artifact, 100.0, description=message)
        progress.publish(progress.Progress(self.total, self.total, message))


def publish_upload_report(report: UploadReport) -> None:
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
            f"| stage | ms |\n|---|---|\n{timings}\n"
        ),
        description="Counts and per-stage timings",
    )
