"""Inbox sweeping as Prefect tasks, on a local inbox folder or one on the NAS (`nas:inbox`)."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from designflow.ingest.inbox import (
    InboxFolder,
    InboxScan,
    file_sweep_outcomes,
    open_inbox,
    scan_inbox,
)
from designflow.ingest.inbox import inbox_users as list_inbox_users
from designflow.orchestration.resources import current, source_roots


def inbox_folder(inbox: str, user_id: str) -> InboxFolder:
    """The seller's inbox folder, with the source folders this run may read."""
    return open_inbox(inbox, user_id, current(), source_roots(user_id))


def inbox_users(inbox: str) -> list[str]:
    return list_inbox_users(inbox, current())


@task(name="scan-inbox", cache_policy=NO_CACHE, persist_result=False)
def scan_user_inbox(folder: InboxFolder, settle_seconds: float) -> InboxScan:
    return scan_inbox(folder, settle_seconds)


@task(name="file-swept-designs", cache_policy=NO_CACHE, persist_result=False)
def file_swept(folder: InboxFolder, report: dict, scan: InboxScan, settle_seconds: float) -> dict:
    """Move what the upload accounted for: stored and duplicates to processed/, rejected to
    quarantine/ with the reason, unless the file was still being written (it waits). Failed
    files stay for the next sweep. Returns one outcome row per file as well."""
    return file_sweep_outcomes(folder, report, scan, settle_seconds)


@task(name="publish-sweep-outcomes", cache_policy=NO_CACHE, persist_result=False)
def publish_sweep_outcomes(folder: str, rows: list[dict], upload_link: str | None) -> None:
    """The sweep's own table in the UI: each file's outcome, and the upload run it went to."""
    note = f"; upload run: {upload_link}" if upload_link else ""
    create_table_artifact(
        table=rows or [{"file": "", "outcome": "nothing to do", "detail": ""}],
        key="sweep-outcomes",
        description=f"Outcome of each file in {folder}{note}",
    )
