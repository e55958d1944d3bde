"""upload_designs: files -> batches -> (fingerprint, dedup, NAS, catalog) per batch.

The decisions (which file is stored, which is a duplicate of what, which failed) belong to
the ingest service (designflow.ingest.service); this module only runs its steps as tasks.
"""

from __future__ import annotations

import contextvars
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.settings import temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import unmapped

from designflow.etsy.listings import listing_for, read_manifest
from designflow.flows.mockups import generate_mockups
from designflow.flows.publish import publish_designs
from designflow.flows.states import failure_reason, item_outcomes
from designflow.images.fingerprint import Fingerprint
from designflow.ingest.batching import CandidateFile, plan_batches
from designflow.ingest.report import BatchReport, RejectedFile, SkippedFile, UploadReport
from designflow.ingest.service import BatchIngest, NasUpload, NearChoices, stored_name
from designflow.orchestration.reporting import (
    progress_artifact,
    publish_upload_outcomes,
    publish_upload_summary,
)
from designflow.orchestration.resources import (
    check_source,
    current_settings,
    release_nas,
    resume_sends,
    settle_on_interrupt,
    staging_folder,
)
from designflow.orchestration.retry import io_retry_delays
from designflow.orchestration.runners import (
    fingerprint_runner_kind,
    fingerprint_task_runner,
    no_heartbeat_settings,
)
from designflow.storage.nas import check_user_id
from designflow.tasks.catalog import (
    await_claimed,
    claim_designs,
    count_user_designs,
    find_duplicates,
    prepare_catalog,
    record_designs,
)
from designflow.tasks.etsy import save_listing_drafts
from designflow.tasks.files import collect_files
from designflow.tasks.fingerprint import (
    fingerprint_file,
    fingerprint_files_in_threads,
    fingerprint_threads,
)
from designflow.tasks.metrics import record_run_metrics
from designflow.tasks.mockups import templates_of_replaced, trigger_mockup_run
from designflow.tasks.nas import upload_batch_to_nas


def subflow_settings():
    """Sub-flows run without their own heartbeat thread: the parent run's heartbeat already
    tells the server this process is alive, and each sub-flow's heartbeat thread costs ~1 s
    at exit (it sleeps in 1 s steps before it can be joined): 0.12 s instead of 1.1 s per
    batch, measured."""
    return temporary_settings(updates=no_heartbeat_settings())


class UploadIncomplete(RuntimeError):
    """Some good files could not be stored (NAS or catalog down after retries)."""

    def __init__(self, report: dict) -> None:
        self.report = report
        failed = report["failed"]
        super().__init__(
            f"{len(failed)} file(s) could not be stored; upload them again to complete: "
            # A name that is not UTF-8 would make the state message unsendable to the API.
            + "; ".join(stored_name(f"{f['file']}: {f['reason']}") for f in failed[:5])
        )

    def __reduce__(self):
        # The failed run's persisted result is this exception, pickled: without this,
        # reading it back (`designflow status`, the UI) called __init__ with the message.
        return (type(self), (self.report,))


class NothingToUpload(UploadIncomplete):
    """Nothing the seller named could be read (a mistyped path, a folder of other formats):
    the run fails, with the report saying why for each name."""

    def __init__(self, report: dict) -> None:
        self.report = report
        named = [*report["rejected"], *report["skipped"]]
        RuntimeError.__init__(
            self,
            "nothing to upload: "
            + "; ".join(stored_name(f"{r['file']}: {r['reason']}") for r in named[:5]),
        )


# The upload flow's own runner decodes ahead: while batch N waits on the NAS and the catalog,
# the fingerprints of batch N+1 are being computed (decoding is the dominant cost).
@flow(
    name="upload-designs",
    validate_parameters=True,
    task_runner=ThreadPoolTaskRunner(max_workers=4),
    persist_result=True,
    on_crashed=[settle_on_interrupt],
    on_cancellation=[settle_on_interrupt],
)
def upload_designs(
    paths: list[str],
    user_id: str,
    batch_max_mb: float | None = None,
    batch_max_images: int | None = None,
    allow_near_duplicates: bool = False,
    replace_with_better: bool = False,
    mockup_templates: list[str] | None = None,
    async_mockups: bool = True,
    priority: Literal["high", "normal", "low"] = "normal",
    listings_manifest: str | None = None,
) -> dict:
    """Store a seller's design files: fingerprint them, skip duplicates of the seller's
    history, upload the new ones to the NAS and record them in the catalog. Optionally
    render product mockups in a background run and publish Etsy draft listings.

    Args:
        paths: Files or folders to upload; folders are searched recursively.
            Paths as the worker sees them.
        user_id: The seller's id (letters, digits and . _ - @, at most 128): designs are
            kept and compared per seller.
        batch_max_mb: Most megabytes per batch (default: DESIGNFLOW_BATCH_MAX_MB).
        batch_max_images: Most files per batch; empty or 0: 20, or up to 1,000 small files
            (DESIGNFLOW_BATCH_MAX_IMAGES when set).
        allow_near_duplicates: Store designs that resemble an existing one anyway, marked as
            near duplicates of it, instead of reporting them as duplicates.
        replace_with_better: A near duplicate with more pixels than the stored design is
            stored as its new version: the old one is set aside (superseded), its Etsy
            listing and listing content follow the new one.
        mockup_templates: Mockup templates to render for the stored designs (names as
            `designflow templates list` shows them); empty for none.
        async_mockups: Render the mockups in a background generate-mockups run (returned at
            once); off: render them in this run before it finishes.
        priority: Work queue of the background mockup run: high, normal or low.
        listings_manifest: Etsy listing content, one row per file (CSV or Parquet path);
            checked before anything is uploaded and published after the mockups.
    """
    logger = get_run_logger()
    check_user_id(user_id)
    resume_sends()
    settings = current_settings().with_batch_limits(batch_max_mb, batch_max_images or None)
    run_id = str(flow_run.id) if flow_run.id else None
    started, started_at = time.perf_counter(), datetime.now(UTC)
    prepare_catalog()
    # A manifest with a missing title fails the run here, before any file or Etsy call.
    listings = (
        read_manifest(check_source(listings_manifest, user_id), settings.listing_defaults)
        if listings_manifest
        else {}
    )
    files, unusable = collect_files(paths, user_id)
    batches = plan_batches(files, settings.batch_max_bytes, settings.batch_max_images,
                           by_work=not settings.batch_max_images_set)  # fmt: skip
    report = UploadReport(flow_run_id=run_id, user_id=user_id)
    report.rejected.extend(RejectedFile(u.path, u.reason) for u in unusable if not u.skipped)
    report.skipped.extend(SkippedFile(u.path, u.reason) for u in unusable if u.skipped)
    logger.info(
        "upload for %s: %d file(s) in %d batch(es); user has %d existing designs",
        user_id, len(files), len(batches), count_user_designs(user_id),
    )  # fmt: skip
    catalog_down = ""
    staging = staging_folder(run_id or uuid.uuid4().hex)  # for sources on the NAS
    with progress_artifact(run_id):
        report.begin(files=len(files), batches=len(batches))
        try:
            near = NearChoices(allow_near_duplicates, replace_with_better)
            for outcome in run_batches(batches, user_id, run_id, near, staging):
                report.add_batch(outcome)
                catalog_down = catalog_down or outcome.unavailable
        finally:
            release_nas(staging)
        enqueued = publish_listings_and_mockups(report, listings, listings_manifest,
                                                mockup_templates, async_mockups, priority)  # fmt: skip
        publish_upload_outcomes(report)  # while the background mockup run is being created
        report_mockup_run(report, enqueued)
        report.finish(total_ms=(time.perf_counter() - started) * 1000)
    publish_upload_summary(report)
    result = report.as_dict()
    if run_id and catalog_down:
        logger.warning("run metrics not recorded: %s", catalog_down)
    elif run_id:
        metrics = record_run_metrics(result, started_at, return_state=True)
        if not metrics.is_completed():
            logger.warning("run metrics not recorded: %s", failure_reason(metrics))
    if report.failed:
        raise UploadIncomplete(result)
    if report.nothing_usable():
        raise NothingToUpload(result)
    return result


def run_batches(batches, user_id, run_id, near, staging):
    """Each batch's report in order, the fingerprints of later batches computed ahead."""
    # Fingerprints: one task per batch, all submitted up front on their own runner, so batch
    # N+1 is decoded while batch N goes to the NAS and the catalog. Two batch tasks at a time
    # feed the run's one pool of fingerprint threads (in order), so no core waits at a
    # batch's end for its last file.
    with ThreadPoolTaskRunner(max_workers=2) as ahead_runner, fingerprint_threads():
        ahead = None
        if fingerprint_runner_kind() == "threads":
            ahead = [
                ahead_runner.submit(
                    fingerprint_files_in_threads,
                    parameters={
                        "paths": [f.path for f in batch],
                        "staging": staging,
                        "user_id": user_id,
                    },
                )
                for batch in batches
            ]
        # One budget per run for a catalog that is down: once a batch has spent the retries,
        # the later ones fail at once with its reason (each spent ~46 s on its own before:
        # ~40 minutes for 50 batches before the seller learned the catalog was down).
        catalog_down = ""
        for index, batch in enumerate(batches, start=1):
            waited = time.perf_counter()
            ready = ahead[index - 1].result() if ahead is not None else None
            outcome = run_batch(
                batch, user_id, index, len(batches), run_id, near, ready,
                round((time.perf_counter() - waited) * 1000, 1), staging, catalog_down,
            )  # fmt: skip
            catalog_down = catalog_down or outcome.unavailable
            yield outcome


def run_batch(
    files: list[CandidateFile],
    user_id: str,
    batch_index: int,
    batch_count: int,
    upload_run_id: str | None,
    near: NearChoices,
    fingerprints: list[Fingerprint | RejectedFile] | None,
    fingerprint_wait_ms: float | None = None,
    staging: str | None = None,
    catalog_down: str = "",
) -> BatchReport:
    """One batch's steps as tasks of the calling flow (a sub-flow per batch cost ~2.5 s on
    the default SQLite server, measured); the ingest service decides each file's fate.
    `catalog_down`: why an earlier batch of the run could not use the catalog."""
    logger = get_run_logger()
    settings = current_settings()
    label = f"batch {batch_index}/{batch_count}"
    ingest = BatchIngest(
        user_id, upload_run_id, batch_index, near.allow, settings.near_dup_distance,
        settings.near_dup_confirm, log=lambda message: logger.info("%s: %s", label, message),
        debug=lambda message: logger.debug("%s: %s", label, message),
        replace_with_better=near.replace_with_better,
    )  # fmt: skip
    if fingerprints is None:
        fingerprints = fingerprint_files([f.path for f in files], staging)
        fingerprint_wait_ms = None
    sha256s = ingest.fingerprinted(fingerprints, fingerprint_wait_ms)
    if catalog_down:
        return ingest.skipped(catalog_down)

    found = find_duplicates(
        user_id, sha256s, ingest.all_near_queries(), settings.near_dup_distance, return_state=True
    )
    if not found.is_completed():
        return ingest.unavailable(f"catalog unavailable after retries: {failure_reason(found)}")
    uploads = ingest.looked_up(*found.result())
    # Claimed first: a concurrent upload by the same seller does not send them again.
    held = claim_designs(user_id, [u.sha256 for u in uploads], ingest.batch_id, return_state=True)
    if not held.is_completed():
        return ingest.unavailable(f"catalog unavailable after retries: {failure_reason(held)}")
    put_on_nas(ingest, ingest.claimed(held.result(), uploads), label)
    if ingest.contested():
        waited = await_claimed(user_id, ingest.contested(), return_state=True)
        if not waited.is_completed():
            return ingest.unavailable(
                f"catalog unavailable after retries: {failure_reason(waited)}"
            )
        put_on_nas(ingest, ingest.stored_elsewhere(waited.result()[0]), label)

    insert = record_designs(ingest.rows(), ingest.batch_id, return_state=True)
    if not insert.is_completed():
        return ingest.unavailable(f"catalog unavailable after retries: {failure_reason(insert)}")
    return ingest.recorded(insert.result())


def put_on_nas(ingest: BatchIngest, uploads: list[NasUpload], label: str) -> None:
    """Send a batch's files to the NAS (one task, 4 at a time); each file's outcome goes to
    the ingest service."""
    if not uploads:
        return
    get_run_logger().info("%s: uploading %d image(s) to NAS in parallel", label, len(uploads))
    upload = upload_batch_to_nas.with_options(retry_delay_seconds=io_retry_delays())
    state = upload(
        [
            {"source": u.source, "dest": u.dest, "sha256": u.sha256, "user_id": ingest.user_id}
            for u in uploads
        ],
        return_state=True,
    )
    for upload, (error, reason) in zip(uploads, item_outcomes(state, len(uploads)), strict=True):
        ingest.uploaded(upload, error, reason)


def fingerprint_files(paths: list[str], staging: str | None) -> list:
    """Fingerprints on the configured runner: this flow's threads, or a Dask cluster."""
    if fingerprint_runner_kind() == "threads":
        return fingerprint_files_in_threads(paths, staging)
    with subflow_settings():
        return fingerprint_batch.with_options(task_runner=fingerprint_task_runner())(paths, staging)


@flow(name="fingerprint-batch", task_runner=ThreadPoolTaskRunner(max_workers=4))
def fingerprint_batch(paths: list[str], staging: str | None = None) -> list:
    """Fingerprint files in parallel on the configured task runner (threads or Dask)."""
    return [f.result() for f in fingerprint_file.map(paths, staging=unmapped(staging))]


def publish_listings_and_mockups(
    report: UploadReport, listings: dict, listings_manifest: str | None,
    mockup_templates: list[str] | None, async_mockups: bool, priority: str,
) -> EnqueuedMockupRun | None:  # fmt: skip
    """After the designs are stored: their listing content, then mockups (a background run
    being created, or made inline), or the listings published here when no mockup run will
    publish them."""
    logger = get_run_logger()
    stored_ids = [s.design_id for s in report.stored]
    replaced = [s.replaces for s in report.stored if s.replaces]
    if replaced:  # the mockups of designs replaced by better versions follow them
        mockup_templates = list(mockup_templates or [])
        mockup_templates += [
            t for t in templates_of_replaced(replaced) if t not in mockup_templates
        ]
    if listings:
        drafts = {s.design_id: listing_for(listings, s.file) for s in report.stored}
        drafts = {d: f for d, f in drafts.items() if f is not None}
        save_listing_drafts(drafts, listings_manifest)
        logger.info("listing content for %d of %d stored design(s)", len(drafts), len(stored_ids))
        if not mockup_templates and drafts:
            published = publish_designs(list(drafts))
            report.listings, report.listing_skipped = published["listings"], published["skipped"]
    if not (mockup_templates and stored_ids):
        return None
    started = time.perf_counter()
    if async_mockups:
        # One REST call in a thread of its own, retried by the client (503 and 429, backoff
        # from 50 ms); the run's outcomes table goes up meanwhile. Inline it took 141-147 ms of
        # the upload run on the PostgreSQL server, as a task run of its own 149-186 ms (its
        # own task-run events among the writes the server was busy with): bench.mockups.
        creating = ThreadPoolExecutor(max_workers=1, thread_name_prefix="enqueue-mockups")
        future = creating.submit(
            contextvars.copy_context().run,  # the command's Prefect settings (its server)
            trigger_mockup_run, stored_ids, list(mockup_templates), priority, report.flow_run_id,
        )  # fmt: skip
        creating.shutdown(wait=False)
        submit_ms = (time.perf_counter() - started) * 1000
        return EnqueuedMockupRun(future, priority, len(stored_ids), submit_ms)
    else:
        with subflow_settings():
            made = generate_mockups(
                stored_ids, list(mockup_templates), upload_run_id=report.flow_run_id,
                return_state=True,
            )  # fmt: skip
        if made.is_completed():
            result = made.result()
            report.mockups, report.listings = result["mockups"], result["listings"]
            report.listing_skipped = result["listing_skipped"]
        else:
            report.mockup_error = f"mockups failed: {failure_reason(made)}"
    report.timings_ms["mockups"] = round((time.perf_counter() - started) * 1000, 1)
    return None


@dataclass
class EnqueuedMockupRun:
    """A background mockup run being created while the upload run goes on."""

    future: Future
    priority: str
    designs: int
    submit_ms: float


def report_mockup_run(report: UploadReport, enqueued: EnqueuedMockupRun | None) -> None:
    """The background mockup run's id, or why there is none (the designs are stored either
    way); its `mockups` timing is what the upload run spent on it: submitting the call and
    waiting for the id."""
    if enqueued is None:
        return
    logger, waited = get_run_logger(), time.perf_counter()
    try:
        run_id = enqueued.future.result()
    except Exception as exc:  # noqa: BLE001 - said in the report, the run goes on
        report.mockup_error = f"mockup run not enqueued (run `designflow deploy` first?): {exc}"
        logger.warning(report.mockup_error)
    else:
        report.mockup_runs.append(
            {"flow_run_id": run_id, "priority": enqueued.priority, "designs": enqueued.designs}
        )
        logger.info("enqueued mockup run %s on queue %s for %d design(s)",
                    run_id, enqueued.priority, enqueued.designs)  # fmt: skip
    held_ms = enqueued.submit_ms + (time.perf_counter() - waited) * 1000
    report.timings_ms["mockups"] = round(held_ms, 1)
