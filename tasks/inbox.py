"""Inbox sweeping as Prefect tasks."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from designflow.ingest.inbox import InboxScan, move_processed, move_quarantined, scan_inbox


@task(name="scan-inbox", cache_policy=NO_CACHE, persist_result=False)
def scan_user_inbox(folder: str, settle_seconds: float) -> InboxScan:
    return scan_inbox(Path(folder), settle_seconds)


@task(name="file-swept-designs", cache_policy=NO_CACHE, persist_result=False)
def file_swept(folder: str, report: dict, outside: list[str]) -> dict:
    """Move what the upload accounted for: stored and duplicates to processed/, rejected to
    quarantine/ with the reason. Failed files stay for the next sweep."""
    root = Path(folder)
    moved = {"processed": [], "quarantined": [], "left": []}
    for entry in report["stored"] + report["duplicates"]:
        if Path(entry["file"]).exists():
            moved["processed"].append(str(move_processed(root, entry["file"])))
    for entry in report["rejected"]:
        if Path(entry["file"]).exists() or Path(entry["file"]).is_symlink():
            moved["quarantined"].append(str(move_quarantined(root, entry["file"], entry["reason"])))
    for path in outside:
        moved["quarantined"].append(
            str(move_quarantined(root, path, "symbolic link pointing outside the inbox"))
        )
    moved["left"] = [f["file"] for f in report.get("failed", [])]
    return moved
