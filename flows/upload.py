"""upload_designs: files -> batches -> (fingerprint, dedup, NAS, catalog) per batch."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Literal

from prefect import flow, get_run_logger
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner

from designflow.batching import CandidateFile, plan_batches
from designflow.catalog import NewDesign
from designflow.dedup import classify_exact, classify_near, near_queries
from designflow.fingerprint import Fingerprint
from designflow.listings import listing_for, read_manifest
from designflow.nas import check_user_id, design_path
from designflow.report import (
    BatchReport,
    DuplicateDesign,
    FailedFile,
    RejectedFile,
    StoredDesign,
    UploadReport,
)
from flows.mockups import generate_mockups
from flows.publish import publish_designs
from flows.states import failure_reason
from tasks.catalog import (
    count_user_designs,
    find_known_designs,
    find_near_designs,
    prepare_catalog,
    record_designs,
)
from tasks.etsy import save_listing_drafts
from tasks.files import collect_files
from tasks.fingerprint import fingerprint_file
from tasks.metrics import record_run_metrics
from tasks.mockups import enqueue_mockups
from tasks.nas import upload_to_nas
from tasks.reporting import UploadProgress, publish_upload_report
from tasks.resources import current_settings, release_nas
from tasks.retry import io_retry_delays
from tasks.runners import fingerprint_runner_kind, fingerprint_task_runner


def subflow_settings():
    """Sub-flows run without their own heartbeat thread: the parent run's heartbeat already
    tells the server this process is alive, and each sub-flow's heartbeat thread costs ~1 s
    at exit (it sleeps in 1 s steps before it can be joined): 0.12 s instead of 1.1 s per
    batch, measured."""
    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


class UploadIncomplete(RuntimeError):
    """Some good files could not be stored (NAS or catalog down after retries)."""

    def __init__(self, report: dict) -> None:
        self.report = report
        failed = report["failed"]
        super().__init__(
            f"{len(failed)} file(s) could not be stored; upload them again to complete: "
            + "; ".join(f"{f['file']}: {f['reason']}" for f in failed[:5])
        )


# The upload flow's own runner decodes ahead: while batch N waits on the NAS and the catalog,
# the fingerprints of batch N+1 are being computed (decoding is the dominant cost).
@flow(
    name="upload-designs", validate_parameters=True, task_runner=ThreadPoolTaskRunner(max_workers=4)
)
def upload_designs(
    paths: list[str],
    user_id: str,
    batch_max_mb: float | None = None,
    batch_max_images: int | None = None,
    allow_near_duplicates: bool = False,
    mockup_templates: list[str] | None = None,
    async_mockups: bool = True,
    priority: Literal["high", "normal", "low"] = "normal",
    listings_manifest: str | None = None,
) -> dict:
    """Store design files for `user_id`: fingerprint, skip duplicates, upload to the NAS,
    record in the catalog. `paths` are files or folders (searched recursively). With
    `allow_near_duplicates`, designs that resemble existing ones are stored anyway, marked
    as near duplicates of the design they resemble. `mockup_templates` renders product
    mockups of the stored designs: in a background `generate-mockups` run on the work queue
    named by `priority` (returned at once), or inline before returning with
    `async_mockups=False`. `listings_manifest` (CSV or Parquet, one row per file) gives the
    Etsy listing of each design; it is checked before anything is uploaded, and the mockup
    run publishes the listings after rendering."""
    logger = get_run_logger()
    check_user_id(user_id)
    settings = current_settings().with_batch_limits(batch_max_mb, batch_max_images)
    run_id = str(flow_run.id) if flow_run.id else None
    prepare_catalog()
    # A manifest with a missing title fails the run here, before any file or Etsy call.
    listings = (
        read_manifest(listings_manifest, settings.listing_defaults) if listings_manifest else {}
    )

    files, unusable = collect_files(paths)
    batches = plan_batches(files, settings.batch_max_bytes, settings.batch_max_images)
    report = UploadReport(flow_run_id=run_id, user_id=user_id)
    report.rejected.extend(RejectedFile(u.path, u.reason) for u in unusable)
    existing = count_user_designs(user_id)
    logger.info(
        "upload for %s: %d file(s) in %d batch(es); user has %d existing designs",
        user_id, len(files), len(batches), existing,
    )  # fmt: skip

    progress = UploadProgress(total=len(files))
    started = time.perf_counter()
    started_at = datetime.now(UTC)
    # NAS uploads get their own 4 threads: on the flow's runner they would queue behind the
    # fingerprints of later batches, which are submitted up front.
    try:
        with ThreadPoolTaskRunner(max_workers=4) as nas_runner:
            prefetched = (
                fingerprint_file.map([f.path for f in files])
                if fingerprint_runner_kind() == "threads"
                else None
            )
            position = 0
            for index, batch in enumerate(batches, start=1):
                ready = None
                waited = time.perf_counter()
                if prefetched is not None:
                    ready = [f.result() for f in prefetched[position : position + len(batch)]]
                    position += len(batch)
                outcome = run_batch(
                    files=batch,
                    fingerprints=ready,
                    # decoded ahead: the time this batch still waited for its fingerprints
                    fingerprint_wait_ms=round((time.perf_counter() - waited) * 1000, 1),
                    user_id=user_id,
                    batch_index=index,
                    batch_count=len(batches),
                    upload_run_id=run_id,
                    allow_near_duplicates=allow_near_duplicates,
                    nas_runner=nas_runner,
                )
                report.add_batch(outcome)
                progress.advance(outcome.files, f"batch {index}/{len(batches)} done")
    finally:
        release_nas()
    stored_ids = [s.design_id for s in report.stored]
    if listings:
        drafts = {s.design_id: listing_for(listings, s.file) for s in report.stored}
        drafts = {d: f for d, f in drafts.items() if f is not None}
        save_listing_drafts(drafts, listings_manifest)
        logger.info("listing content for %d of %d stored design(s)", len(drafts), len(stored_ids))
        if not mockup_templates and drafts:  # no mockup run to publish them: publish here
            published = publish_designs(list(drafts))
            report.listings, report.listing_skipped = published["listings"], published["skipped"]
    if mockup_templates and stored_ids:
        t_mockups = time.perf_counter()
        if async_mockups:
            enqueued = enqueue_mockups(
                stored_ids, list(mockup_templates), priority, run_id, return_state=True
            )
            if enqueued.is_completed():
                mockup_run = enqueued.result()
                report.mockup_runs.append(
                    {"flow_run_id": mockup_run, "priority": priority, "designs": len(stored_ids)}
                )
                logger.info(
                    "enqueued mockup run %s on queue %s for %d design(s)",
                    mockup_run,
                    priority,
                    len(stored_ids),
                )
            else:
                report.mockup_error = f"mockup run not enqueued (run `designflow deploy` first?): {failure_reason(enqueued)}"
                logger.warning(report.mockup_error)
        else:
            with subflow_settings():
                made = generate_mockups(
                    stored_ids, list(mockup_templates), upload_run_id=run_id, return_state=True
                )
            if made.is_completed():
                made_result = made.result()
                report.mockups = made_result["mockups"]
                report.listings = made_result["listings"]
                report.listing_skipped = made_result["listing_skipped"]
            else:
                report.mockup_error = f"mockups failed: {failure_reason(made)}"
        report.timings_ms["mockups"] = round((time.perf_counter() - t_mockups) * 1000, 1)
    report.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 1)
    progress.finish(
        f"{len(report.stored)} stored, {len(report.duplicates)} duplicates, "
        f"{len(report.rejected)} rejected, {len(report.failed)} failed"
    )
    publish_upload_report(report)
    result = report.as_dict()
    if run_id:
        metrics = record_run_metrics(result, started_at, return_state=True)
        if not metrics.is_completed():
            logger.warning("run metrics not recorded: %s", failure_reason(metrics))
    if report.failed:
        raise UploadIncomplete(result)
    return result


@flow(
    name="process-batch",
    flow_run_name="batch {batch_index} of {batch_count}",
    task_runner=ThreadPoolTaskRunner(max_workers=4),
)
def process_batch(
    files: list[CandidateFile],
    user_id: str,
    batch_index: int = 1,
    batch_count: int = 1,
    upload_run_id: str | None = None,
    allow_near_duplicates: bool = False,
    fingerprints: list[Fingerprint | RejectedFile] | None = None,
) -> BatchReport:
    """One batch as a run of its own: fingerprints (computed here unless the caller computed
    them ahead), duplicate checks, NAS uploads 4 at a time, one catalog transaction."""
    return run_batch(
        files, user_id, batch_index, batch_count, upload_run_id, allow_near_duplicates,
        fingerprints,
    )  # fmt: skip


def run_batch(
    files: list[CandidateFile],
    user_id: str,
    batch_index: int = 1,
    batch_count: int = 1,
    upload_run_id: str | None = None,
    allow_near_duplicates: bool = False,
    fingerprints: list[Fingerprint | RejectedFile] | None = None,
    nas_runner: ThreadPoolTaskRunner | None = None,
    fingerprint_wait_ms: float = 0.0,
) -> BatchReport:
    """The steps of one batch as tasks of the calling flow. upload_designs calls this for
    each batch rather than starting a process-batch sub-flow: creating a sub-flow run (and
    its parent task run) per batch cost ~2.5 s on the default SQLite server, whose writes
    of the batch's task events lock it (a 503 the client retries after 2 s), measured on
    every batch of a 25-batch upload. `nas_runner`: where NAS uploads run (the flow's own
    runner if None). `fingerprint_wait_ms`: with `fingerprints` computed ahead, how long the
    caller waited for them (reported as this batch's fingerprint time)."""
    logger = get_run_logger()
    settings = current_settings()
    batch_id = uuid.uuid4()
    run_uuid = uuid.UUID(upload_run_id) if upload_run_id else None
    out = BatchReport(batch_index=batch_index, batch_id=str(batch_id))
    label = f"batch {batch_index}/{batch_count}"

    t0 = time.perf_counter()
    fingerprints_given = fingerprints is not None
    if fingerprints is not None:
        results = list(fingerprints)
    elif fingerprint_runner_kind() == "threads":
        results = [f.result() for f in fingerprint_file.map([f.path for f in files])]
    else:  # fingerprinting on a Dask cluster; the I/O tasks stay in this process
        with subflow_settings():
            results = fingerprint_batch.with_options(task_runner=fingerprint_task_runner())(
                [f.path for f in files]
            )
    fingerprints = [r for r in results if isinstance(r, Fingerprint)]
    out.rejected.extend(r for r in results if isinstance(r, RejectedFile))
    t1 = time.perf_counter()
    logger.info(
        "%s: fingerprinted %d file(s), %d rejected", label, len(fingerprints), len(out.rejected)
    )

    lookup = find_known_designs(
        user_id, sorted({fp.sha256 for fp in fingerprints}), return_state=True
    )
    if not lookup.is_completed():
        reason = f"catalog unavailable after retries: {failure_reason(lookup)}"
        out.failed.extend(FailedFile(fp.path, reason) for fp in fingerprints)
        return out
    known = lookup.result()
    dedup = classify_exact(fingerprints, known, run_uuid)
    for fp, match in dedup.exact:
        out.duplicates.append(DuplicateDesign(fp.path, match.id, 0, "exact", match.nas_path))
    for fp, match in dedup.earlier_batch:
        out.duplicates.append(DuplicateDesign(fp.path, match.id, 0, "in-batch", match.nas_path))

    distance, confirm = settings.near_dup_distance, settings.near_dup_confirm
    near_lookup = find_near_designs(
        user_id, near_queries(dedup.to_store), distance, return_state=True
    )
    if not near_lookup.is_completed():
        reason = f"catalog unavailable after retries: {failure_reason(near_lookup)}"
        out.failed.extend(FailedFile(fp.path, reason) for fp in dedup.to_store)
        out.failed.extend(FailedFile(c.path, reason) for c, _ in dedup.in_batch)
        return out
    near = classify_near(dedup.to_store, near_lookup.result(), distance, confirm)
    near_of: dict[str, tuple[int | None, str | None, int]] = {}  # sha -> (id, twin sha, distance)
    if allow_near_duplicates:
        to_store = list(dedup.to_store)
        near_of.update({fp.sha256: (m.design_id, None, m.distance) for fp, m in near.near})
        near_of.update({fp.sha256: (None, twin.sha256, d) for fp, twin, d in near.in_batch})
    else:
        to_store = near.to_store
        for fp, m in near.near:
            out.duplicates.append(
                DuplicateDesign(fp.path, m.design_id, m.distance, "near", m.nas_path)
            )
    t2 = time.perf_counter()
    logger.info(
        "%s: %d new, %d exact duplicate(s), %d in-batch duplicate(s), %d near duplicate(s)%s",
        label, len(to_store), len(dedup.exact), len(dedup.in_batch) + len(dedup.earlier_batch),
        len(near.near) + len(near.in_batch), " (stored anyway)" if allow_near_duplicates else "",
    )  # fmt: skip

    logger.info("%s: uploading %d image(s) to NAS in parallel", label, len(to_store))
    upload = upload_to_nas.with_options(retry_delay_seconds=io_retry_delays())
    futures = {}
    for fp in to_store:
        args = {"source": fp.path, "dest": design_path(user_id, fp.sha256, fp.extension),
                "sha256": fp.sha256}  # fmt: skip
        futures[fp.sha256] = (
            nas_runner.submit(upload, parameters=args) if nas_runner else upload.submit(**args)
        )
    wait(list(futures.values()))
    on_nas: list[Fingerprint] = []
    for fp in to_store:
        state = futures[fp.sha256].state
        if state.is_completed():
            on_nas.append(fp)
        else:
            reason = failure_reason(state)
            if "changed after it was fingerprinted" in reason:
                out.rejected.append(RejectedFile(fp.path, reason.split(": ", 1)[-1]))
            else:
                out.failed.append(FailedFile(fp.path, f"NAS upload failed after retries: {reason}"))
    t3 = time.perf_counter()

    # Only files already on the NAS get a row: a row never points at a missing file.
    rows = [_new_design(fp, user_id, batch_id, run_uuid, near_of.get(fp.sha256)) for fp in on_nas]
    insert = record_designs(rows, return_state=True)
    if not insert.is_completed():
        # The files are on the NAS under their content address; a re-run records them
        # without uploading again, and `designflow verify` can adopt them.
        reason = f"catalog unavailable after retries: {failure_reason(insert)}"
        out.failed.extend(FailedFile(fp.path, reason) for fp in on_nas)
        out.failed.extend(FailedFile(c.path, reason) for c, _ in dedup.in_batch)
        out.failed.extend(
            FailedFile(c.path, reason) for c, _, _ in near.in_batch if not allow_near_duplicates
        )
        return out
    recorded = insert.result()
    for fp in on_nas:
        if fp.sha256 in recorded.inserted:
            out.stored.append(
                StoredDesign(
                    fp.path,
                    recorded.inserted[fp.sha256],
                    fp.sha256,
                    design_path(user_id, fp.sha256, fp.extension),
                )
            )
            continue
        match = recorded.already_present[fp.sha256]
        if match.batch_id == batch_id:  # our own insert, committed before a retried attempt
            out.stored.append(StoredDesign(fp.path, match.id, fp.sha256, match.nas_path))
        else:  # a concurrent upload of the same content won the race
            out.duplicates.append(DuplicateDesign(fp.path, match.id, 0, "exact", match.nas_path))
    stored_by_sha = {s.sha256: s for s in out.stored}
    for copy, original in dedup.in_batch:
        twin = stored_by_sha.get(original.sha256)
        if twin is not None:
            out.duplicates.append(
                DuplicateDesign(copy.path, twin.design_id, 0, "in-batch", twin.nas_path)
            )
        else:  # the first copy could not be stored: this one shares its fate
            out.failed.append(
                FailedFile(copy.path, f"same content as {original.path}, which was not stored")
            )
    if allow_near_duplicates:
        ids = {s.sha256: s.design_id for s in out.stored}
        out.stored = [_with_near(s, near_of.get(s.sha256), ids) for s in out.stored]
    else:
        for copy, original, d in near.in_batch:
            twin = stored_by_sha.get(original.sha256)
            if twin is not None:
                out.duplicates.append(
                    DuplicateDesign(copy.path, twin.design_id, d, "near", twin.nas_path)
                )
            else:
                out.failed.append(
                    FailedFile(copy.path, f"resembles {original.path}, which was not stored")
                )
    t4 = time.perf_counter()

    out.timings_ms = {
        "fingerprint": fingerprint_wait_ms if fingerprints_given else round((t1 - t0) * 1000, 1),
        "dedup": round((t2 - t1) * 1000, 1),
        "nas": round((t3 - t2) * 1000, 1),
        "insert": round((t4 - t3) * 1000, 1),
    }
    logger.info(
        "%s: recorded %d design(s); fingerprint %.0f ms, dedup %.0f ms, NAS %.0f ms, insert %.0f ms",
        label, len(out.stored), *out.timings_ms.values(),
    )  # fmt: skip
    return out


@flow(name="fingerprint-batch", task_runner=ThreadPoolTaskRunner(max_workers=4))
def fingerprint_batch(paths: list[str]) -> list:
    """Fingerprint files in parallel on the configured task runner (threads or Dask)."""
    return [f.result() for f in fingerprint_file.map(paths)]


def _new_design(
    fp: Fingerprint,
    user_id: str,
    batch_id: uuid.UUID,
    run_id: uuid.UUID | None,
    near: tuple[int | None, str | None, int] | None = None,
) -> NewDesign:
    return NewDesign(
        user_id=user_id, sha256=fp.sha256, phash=fp.phash, ahash=fp.ahash, dhash=fp.dhash,
        whash=fp.whash, width=fp.width, height=fp.height, bytes=fp.bytes, format=fp.format,
        original_name=fp.name, nas_path=design_path(user_id, fp.sha256, fp.extension),
        batch_id=batch_id, flow_run_id=run_id, nd_phash=fp.nd_phash, nd_dhash=fp.nd_dhash,
        near_duplicate_of=near[0] if near else None,
        near_duplicate_of_sha256=near[1] if near else None,
        near_distance=near[2] if near else None,
    )  # fmt: skip


def _with_near(
    stored: StoredDesign, near: tuple[int | None, str | None, int] | None, ids: dict[str, int]
) -> StoredDesign:
    if near is None:
        return stored
    of = near[0] if near[0] is not None else ids.get(near[1] or "")
    return StoredDesign(stored.file, stored.design_id, stored.sha256, stored.nas_path, of, near[2])
