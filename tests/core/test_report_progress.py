"""The upload report publishes the upload's progress: one source for the CLI's bar and the
Prefect UI's progress artifact, each following its own run."""

from __future__ import annotations

from designflow.ingest import progress
from designflow.ingest.report import BatchReport, RejectedFile, StoredDesign, UploadReport


def batch(index: int, stored: int, rejected: int) -> BatchReport:
    return BatchReport(
        batch_index=index,
        batch_id=f"b{index}",
        stored=[StoredDesign(f"{index}-{i}.png", i, "0" * 64, f"p/{i}") for i in range(stored)],
        rejected=[RejectedFile(f"{index}-bad{i}.png", "not an image") for i in range(rejected)],
    )


def test_progress_follows_the_report_of_one_run() -> None:
    seen: list[progress.Progress] = []
    unsubscribe = progress.subscribe(seen.append)
    try:
        other = UploadReport(flow_run_id="run-b", user_id="bo")
        report = UploadReport(flow_run_id="run-a", user_id="ada")
        report.begin(files=5, batches=2)
        other.begin(files=1, batches=1)
        report.add_batch(batch(1, stored=2, rejected=1))
        report.add_batch(batch(2, stored=2, rejected=0))
        report.finish(total_ms=12.34)
    finally:
        unsubscribe()
    mine = [(e.done, e.total, e.message) for e in seen if e.run == "run-a"]
    assert mine == [
        (0, 5, "starting"),
        (3, 5, "batch 1/2 done"),
        (5, 5, "batch 2/2 done"),
        (5, 5, "4 stored, 0 duplicates, 1 rejected, 0 failed"),
    ]
    assert [(e.done, e.total) for e in seen if e.run == "run-b"] == [(0, 1)]
    assert report.timings_ms["total"] == 12.3
    assert "planned_files" not in report.as_dict()
