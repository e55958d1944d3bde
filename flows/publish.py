"""publish_listing: a stored design and its mockups as an Etsy draft listing."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from designflow.catalog.listings import ListingCatalog
from designflow.etsy.listings import listing_for, read_manifest
from designflow.etsy.publish import PublishOutcome, plan_images
from designflow.flows.states import failure_reason
from designflow.resources import EtsyNotConfigured
from designflow.tasks import resources
from designflow.tasks.etsy import (
    create_listing,
    etsy_shop,
    fetch_profiles,
    fetch_shop,
    finish_listing,
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


def start_image_uploads(
    creating: dict, shop_id
) -> tuple[dict[int, PublishOutcome], dict[int, list]]:
    """Each design's listing as it is created, and its mockup images' uploads started."""
    outcomes: dict[int, PublishOutcome] = {}
    uploads: dict[int, list] = {}
    mockups = resources.catalog().mockups_of(list(creating))
    max_images = resources.current_settings().etsy_max_images
    for design_id, future in creating.items():
        outcome = outcomes[design_id] = PublishOutcome(design_id, shop_id)
        future.wait()
        if not future.state.is_completed():
            outcome.error = failure_reason(future.state)
            continue
        listing = future.result()
        outcome.listing_id, outcome.action = listing["listing_id"], listing["action"]
        planned, outcome.skipped = plan_images(
            [m for m in mockups if m["design_id"] == design_id], listing["title"], max_images
        )
        uploads[design_id] = [
            upload_mockup_image.submit(design_id, outcome.listing_id, p, listing["on_etsy"])
            for p in planned
        ]
    return outcomes, uploads


def finish_listings(outcomes: dict[int, PublishOutcome], uploads: dict[int, list], logger) -> list:
    """Each design's uploaded images (or the error that wins) and its listing finished."""
    finishing = []
    for design_id, futures in uploads.items():
        outcome = outcomes[design_id]
        for future in futures:
            if future.state.is_completed():
                outcome.images.append(future.result())
            else:
                outcome.error = f"image upload failed: {failure_reason(future.state)}"
        if outcome.error is None:
            finishing.append(finish_listing.submit(design_id, outcome.skipped))
        for skipped in outcome.skipped:
            logger.info("design %d: %s not uploaded: %s",
                        design_id, skipped["template_id"], skipped["reason"])  # fmt: skip
        logger.info(
            "design %d: draft listing %s (%s), %d image(s)",
            design_id, outcome.listing_id, outcome.action, len(outcome.images),
        )  # fmt: skip
    return finishing


def publish_designs(design_ids: list[int]) -> dict:
    """The publishing steps as tasks of the calling flow (publish-listing, or the mockup run).
    Returns {"shop": ..., "listings": [...], "skipped": message or None}."""
    logger = get_run_logger()
    try:
        etsy_shop()
    except EtsyNotConfigured as exc:
        message = f"Etsy publishing skipped: {exc}"
        logger.info(message)
        return {"shop": None, "listings": [], "skipped": message}
    drafts = ListingCatalog(resources.catalog()).drafts(design_ids)
    without = [d for d in design_ids if d not in drafts]
    if without:
        logger.info("no listing content for design(s) %s: not published", without)
    if not drafts:
        return {"shop": None, "listings": [], "skipped": "no listing content for these designs"}
    shop = fetch_shop()  # once per run, whatever the number of designs
    logger.info("publishing %d design(s) to Etsy shop %s", len(drafts), shop["shop_name"])
    profiles = fetch_profiles(list(drafts), return_state=True)
    if not profiles.is_completed():  # before anything is created
        reason = failure_reason(profiles)
        listings = [PublishOutcome(d, shop["shop_id"], error=reason).as_dict() for d in drafts]
        return {"shop": shop, "listings": listings, "skipped": None}
    creating = {d: create_listing.submit(d, profiles.result()) for d in design_ids if d in drafts}
    outcomes, uploads = start_image_uploads(creating, shop["shop_id"])
    wait([f for fs in uploads.values() for f in fs])
    wait(finish_listings(outcomes, uploads, logger))
    listings = [o.as_dict() for o in outcomes.values()]
    create_table_artifact(
        key="etsy-listings",
        table=[
            {
                "design_id": o["design_id"],
                "listing_id": o["listing_id"],
                "action": o["action"],
                "images": len(o["images"]),
                "not_uploaded": len(o["skipped"]),
                "error": o["error"] or "",
            }
            for o in listings
        ],  # fmt: skip
        description=f"Draft listings on Etsy shop {shop['shop_name']}",
    )
    return {"shop": shop, "listings": listings, "skipped": None}
