"""publish_listing: a stored design and its mockups as an Etsy draft listing."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from designflow.etsy.listings import listing_for, read_manifest
from designflow.etsy.publish import PublishRun
from designflow.flows.states import failure_reason
from designflow.orchestration import resources
from designflow.resources import EtsyNotConfigured
from designflow.tasks.etsy import (
    create_listing,
    etsy_shop,
    fetch_profiles,
    fetch_shop,
    finish_listing,
    listing_drafts,
    listing_mockups,
    save_listing_drafts,
    upload_mockup_image,
)


@flow(name="publish-listing", task_runner=ThreadPoolTaskRunner(max_workers=4), persist_result=True)
def publish_listing(design_ids: list[int], listings_manifest: str | None = None) -> dict:
    """Create (once) the Etsy draft listing of each design from its listing content and
    upload its mockups as listing images (at most 20). Skipped, not failed, without Etsy
    credentials. Safe to re-run: finished steps are not repeated.

    Args:
        design_ids: Stored designs to publish (ids from an upload's report).
        listings_manifest: A listing manifest (CSV or Parquet, one row per file) whose
            current rows replace these designs' listing content first: edit a price in it
            and publish again to change the listing on Etsy.
    """
    if listings_manifest:
        apply_manifest(design_ids, listings_manifest)
    result = publish_designs(design_ids)
    failed = [o for o in result["listings"] if o["error"]]
    if failed:
        raise RuntimeError(
            f"{len(failed)} listing(s) not published: "
            + "; ".join(f"design {o['design_id']}: {o['error']}" for o in failed[:3])
        )
    return result


def apply_manifest(design_ids: list[int], listings_manifest: str) -> int:
    """The manifest's rows for these stored designs (matched by their original file name)
    become their listing content; checked first, so a bad row stops the run here."""
    settings = resources.current_settings()
    listings = read_manifest(listings_manifest, settings.listing_defaults)
    designs = resources.catalog().designs_by_id(design_ids)
    drafts = {d: listing_for(listings, str(row["original_name"])) for d, row in designs.items()}
    drafts = {d: f for d, f in drafts.items() if f is not None}
    get_run_logger().info("listing content for %d of %d design(s) from %s",
                          len(drafts), len(design_ids), listings_manifest)  # fmt: skip
    return save_listing_drafts(drafts, listings_manifest)


def publish_designs(design_ids: list[int]) -> dict:
    """The publishing steps as tasks of the calling flow (publish-listing, or the mockup run);
    the decisions are the core's PublishRun. Returns {"shop", "listings", "skipped"}."""
    logger = get_run_logger()
    drafts, skipped = _publishable(design_ids, logger)
    if skipped:
        return {"shop": None, "listings": [], "skipped": skipped}
    shop = fetch_shop()  # once per run, whatever the number of designs
    logger.info("publishing %d design(s) to Etsy shop %s", len(drafts), shop["shop_name"])
    run = PublishRun(shop, list(drafts), resources.current_settings().etsy_max_images)
    profiles = fetch_profiles(list(drafts), return_state=True)
    if not profiles.is_completed():  # before anything is created
        run.fail_all(failure_reason(profiles))
        return run.result()
    _listings_and_images(run, profiles.result())
    wait([finish_listing.submit(d, skipped) for d, skipped in run.to_finish()])
    for line in run.log_lines():
        logger.info(line)
    create_table_artifact(key="etsy-listings", table=run.rows(),
                          description=f"Draft listings on Etsy shop {shop['shop_name']}")  # fmt: skip
    return run.result()


def _publishable(design_ids: list[int], logger) -> tuple[dict[int, dict], str | None]:
    """The designs' listing content, or why nothing is published (no Etsy shop configured,
    no listing content)."""
    try:
        etsy_shop()
    except EtsyNotConfigured as exc:
        logger.info("Etsy publishing skipped: %s", exc)
        return {}, f"Etsy publishing skipped: {exc}"
    drafts = listing_drafts(design_ids)
    if len(drafts) < len(design_ids):
        logger.info("no listing content for design(s) %s: not published",
                    [d for d in design_ids if d not in drafts])  # fmt: skip
    return drafts, None if drafts else "no listing content for these designs"


def _listings_and_images(run: PublishRun, profiles: dict | None) -> None:
    """Each design's listing, then its images as soon as its listing is there."""
    creating = {d: create_listing.submit(d, profiles) for d in run.outcomes}
    mockups = listing_mockups(list(run.outcomes))
    uploads = {}
    for design_id, future in creating.items():
        listing, error = _answer(future)
        uploads[design_id] = [
            upload_mockup_image.submit(design_id, listing["listing_id"], plan, listing["on_etsy"])
            for plan in run.listing_made(design_id, listing, error, mockups)
        ]
    for design_id, futures in uploads.items():
        for future in futures:
            run.image_done(design_id, *_answer(future))


def _answer(future) -> tuple[dict | None, str | None]:
    """A task's result, or None and why it failed (waits for it)."""
    future.wait()
    if future.state.is_completed():
        return future.result(), None
    return None, failure_reason(future.state)
