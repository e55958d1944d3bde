"""Inbox sweeping as Prefect tasks."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from designflow.ingest.inbox import (
    InboxScan,
    move_processed,
    move_quarantined,
    scan_inbox,
    still_being_written,
)


@task(name="scan-inbox", cache_policy=NO_CACHE, persist_result=False)
def scan_user_inbox(folder: str, settle_seconds: float) -> InboxScan:
    return scan_inbox(Path(folder), settle_seconds)


@task(name="file-swept-designs", cache_policy=NO_CACHE, persist_result=False)
def file_swept(folder: str, report: dict, scan: InboxScan, settle_seconds: float) -> dict:
    """Move what the upload accounted for: stored and duplicates to processed/, rejected to
    quarantine/ with the reason, unless the file was still being written (it waits). Failed
    files stay for the next sweep. Returns one outcome row per file as well."""
    root = Path(folder)
    moved: dict[str, list] = {"processed": [], "quarantined": [], "left": [], "waiting": []}
    rows = []
    for kind, entries in (("stored", report["stored"]), ("duplicate", report["duplicates"])):
        for entry in entries:
            if Path(entry["file"]).exists():
                moved["processed"].append(str(move_processed(root, entry["file"])))
                detail = (
                    f"duplicate of design {entry['duplicate_of']}" if kind == "duplicate" else ""
                )
                rows.append(_row(root, entry["file"], kind, detail))
    for entry in report["rejected"]:
        path, reason = entry["file"], entry["reason"]
        if still_being_written(scan, path, reason, settle_seconds):
            moved["waiting"].append(path)
            rows.append(_row(root, path, "waiting", f"still being written ({reason})"))
        elif Path(path).exists() or Path(path).is_symlink():
            moved["quarantined"].append(str(move_quarantined(root, path, reason)))
            rows.append(_row(root, path, "quarantined", reason))
    for path in scan.outside:
        reason = "symbolic link pointing outside the inbox"
        moved["quarantined"].append(str(move_quarantined(root, path, reason)))
        rows.append(_row(root, path, "quarantined", reason))
    for entry in report.get("failed", []):
        moved["left"].append(entry["file"])
        rows.append(_row(root, entry["file"], "left for retry", entry["reason"]))
    rows += [_row(root, path, "waiting", "still being written") for path in scan.waiting]
    moved["rows"] = rows
    return moved


def _row(root: Path, path: str, outcome: str, detail: str) -> dict:
    try:
        name = str(Path(path).relative_to(root))
    except ValueError:
        name = Path(path).name
    return {"file": name, "outcome": outcome, "detail": detail}


@task(name="publish-sweep-outcomes", cache_policy=NO_CACHE, persist_result=False)
def publish_sweep_outcomes(folder: str, rows: list[dict], upload_link: str | None) -> None:
    """The sweep's own table in the UI: each file's outcome, and the upload run it went to."""
    note = f"; upload run: {upload_link}" if upload_link else ""
    create_table_artifact(
        table=rows or [{"file": "", "outcome": "nothing to do", "detail": ""}],
        key="sweep-outcomes",
        description=f"Outcome of each file in {folder}{note}",
    )
