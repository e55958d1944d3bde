"""Inbox sweeping as Prefect tasks, on a local inbox folder or one on the NAS (`nas:inbox`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from designflow.ingest.inbox import (
    InboxFolder,
    InboxScan,
    LocalInboxFolder,
    NasInboxFolder,
    SweepBusy,
    file_sweep_outcomes,
    scan_inbox,
)
from designflow.ingest.sources import NAS_PREFIX
from designflow.orchestration.resources import check_source, current
from designflow.storage.nas import check_user_id


def inbox_folder(inbox: str, user_id: str) -> InboxFolder:
    """A seller's inbox folder: `nas:<path>` on the NAS (a folder under a local-folder NAS),
    anything else a local path. A run may sweep only an allowed source folder."""
    check_user_id(user_id)
    check_source(f"{inbox.rstrip('/')}/{user_id}", user_id)
    if not inbox.startswith(NAS_PREFIX):
        return LocalInboxFolder(Path(inbox) / user_id)
    resources = current()
    where = resources.locate(f"{inbox.rstrip('/')}/{user_id}")
    if isinstance(where, Path):
        return LocalInboxFolder(where)

    @contextlib.contextmanager
    def held_in_postgres() -> Iterator[None]:
        # Sweeps on other machines see this lock; a file lock on the NAS would not be
        # reliable over SFTP (no flock) and would outlive a crashed sweeper.
        with resources.catalog().exclusive(
            f"designflow sweep {where.nas.url} {where.path}"
        ) as held:
            if not held:
                raise SweepBusy(f"another sweep of nas:{where.path} is running")
            yield

    return NasInboxFolder(where.nas, where.path, held_in_postgres)


def inbox_users(inbox: str) -> list[str]:
    """The seller folders in the inbox (one sweep each when no seller is named)."""
    if inbox.startswith(NAS_PREFIX):
        where = current().locate(inbox)
        if not isinstance(where, Path):
            return where.nas.folders(where.path)
        root = where
    else:
        root = Path(inbox)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


@task(name="scan-inbox", cache_policy=NO_CACHE, persist_result=False)
def scan_user_inbox(inbox: str, user_id: str, settle_seconds: float) -> InboxScan:
    return scan_inbox(inbox_folder(inbox, user_id), settle_seconds)


@task(name="file-swept-designs", cache_policy=NO_CACHE, persist_result=False)
def file_swept(
    inbox: str, user_id: str, report: dict, scan: InboxScan, settle_seconds: float
) -> dict:
    """Move what the upload accounted for: stored and duplicates to processed/, rejected to
    quarantine/ with the reason, unless the file was still being written (it waits). Failed
    files stay for the next sweep. Returns one outcome row per file as well."""
    return file_sweep_outcomes(inbox_folder(inbox, user_id), report, scan, settle_seconds)


@task(name="publish-sweep-outcomes", cache_policy=NO_CACHE, persist_result=False)
def publish_sweep_outcomes(folder: str, rows: list[dict], upload_link: str | None) -> None:
    """The sweep's own table in the UI: each file's outcome, and the upload run it went to."""
    note = f"; upload run: {upload_link}" if upload_link else ""
    create_table_artifact(
        table=rows or [{"file": "", "outcome": "nothing to do", "detail": ""}],
        key="sweep-outcomes",
        description=f"Outcome of each file in {folder}{note}",
    )
