"""sweep_inbox: ingest the complete files of a seller's inbox folder, then file them."""

from __future__ import annotations

from pathlib import PurePosixPath

from prefect import flow, get_run_logger

from designflow.flows.upload import UploadIncomplete, subflow_settings, upload_designs
from designflow.ingest.inbox import SweepBusy
from designflow.orchestration.links import flow_run_markdown
from designflow.tasks.inbox import (
    file_swept,
    inbox_folder,
    inbox_users,
    publish_sweep_outcomes,
    scan_user_inbox,
)


@flow(name="sweep-inbox", persist_result=True)
def sweep_inbox(
    inbox: str,
    user_id: str | None = None,
    settle_seconds: float = 30.0,
    allow_near_duplicates: bool = False,
    mockup_templates: list[str] | None = None,
    replace_with_better: bool = False,
) -> dict:
    """Upload the complete design files in the inbox and file them: stored designs and
    duplicates to processed/, rejected files to quarantine/ with a .reason.txt. Files still
    being written, and files that failed for a transient reason, wait for the next sweep.

    Args:
        inbox: The inbox root folder, or nas:<folder> for one on the NAS; each seller has
            a folder in it named by their user id.
        user_id: One seller to sweep; empty: every seller folder in the inbox, one by one.
        settle_seconds: A file is complete once its size and modification time have stayed
            unchanged this many seconds.
        allow_near_duplicates: Store designs that resemble an existing one anyway, marked.
        mockup_templates: Mockup templates to render for the stored designs (names as
            `designflow templates list` shows them); empty for none.
        replace_with_better: A near duplicate with more pixels than the stored design is
            stored as its new version (the old one superseded; its listing follows).
    """
    choices = {"allow_near_duplicates": allow_near_duplicates,
               "replace_with_better": replace_with_better, "mockup_templates": mockup_templates}  # fmt: skip
    if not user_id:
        users = inbox_users(inbox)
        return {"users": {u: _sweep_user(inbox, u, settle_seconds, choices) for u in users}}
    return _sweep_user(inbox, user_id, settle_seconds, choices)


def _sweep_user(inbox: str, user_id: str, settle_seconds: float, choices: dict) -> dict:
    """`choices`: the upload's choices for near duplicates and mockups."""
    logger = get_run_logger()
    folder = inbox_folder(inbox, user_id)
    try:
        with folder.lock():
            scan = scan_user_inbox(folder, settle_seconds)
            logger.info(
                "inbox %s: %d ready, %d still being written, %d outside links",
                folder.label, len(scan.ready), len(scan.waiting), len(scan.outside),
            )  # fmt: skip
            report: dict = {
                "stored": [],
                "duplicates": [],
                "rejected": [],
                "failed": [],
                "flow_run_id": None,
            }
            if scan.ready:
                with subflow_settings():
                    state = upload_designs(
                        paths=scan.ready,
                        user_id=user_id,
                        **choices,
                        return_state=True,
                    )
                if state.is_completed():
                    report = state.result()
                else:
                    error = state.result(raise_on_failure=False)
                    if not isinstance(error, UploadIncomplete):
                        raise error
                    report = error.report  # file what was accounted for; the rest waits
            moved = file_swept(folder, report, scan, settle_seconds)
    except SweepBusy as exc:
        logger.info("skipped: %s", exc)
        return {"skipped": str(exc)}
    upload_run_id = report.get("flow_run_id")
    publish_sweep_outcomes(
        folder.label,
        moved["rows"],
        flow_run_markdown(upload_run_id, "upload run") if upload_run_id else None,
    )
    return {
        "inbox": folder.label,
        "upload_run_id": upload_run_id,
        "processed": [_name(p) for p in moved["processed"]],
        "quarantined": [_name(p) for p in moved["quarantined"]],
        "waiting": sorted(_name(p) for p in scan.waiting + moved["waiting"]),
        "left_for_retry": [_name(p) for p in moved["left"]],
        "outcomes": moved["rows"],
    }


def _name(path: str) -> str:
    return PurePosixPath(path).name
