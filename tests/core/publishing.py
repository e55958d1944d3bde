"""The publish flow's steps for one design, in order in the calling thread: the core step
functions its tasks wrap, decided by the same PublishRun (designflow.etsy.publish). Used by
tests that drive publishing without Prefect (and by their child processes)."""

from __future__ import annotations

from collections.abc import Callable

from designflow.catalog.listings import ListingCatalog
from designflow.etsy.client import MAX_LISTING_IMAGES, EtsyClient
from designflow.etsy.publish import (
    PublishOutcome,
    PublishRun,
    listing_step,
    needs_profiles,
    resolve_profiles,
    upload_image,
)


def publish_design(
    store: ListingCatalog, client: EtsyClient, shop_id: str, design_id: int,
    read_bytes: Callable[[str], bytes], max_images: int = MAX_LISTING_IMAGES,
) -> PublishOutcome:  # fmt: skip
    run = PublishRun({"shop_id": shop_id}, [design_id], max_images)
    drafts = store.drafts([design_id])
    profiles = (
        resolve_profiles(client, shop_id, list(drafts.values()))
        if needs_profiles(store, shop_id, drafts)
        else None
    )
    listing = listing_step(store, client, shop_id, design_id, profiles)
    mockups = store.catalog.mockups_of([design_id])
    for plan in run.listing_made(design_id, listing, None, mockups):
        image = upload_image(store, client, shop_id, design_id, listing["listing_id"], plan,
                             read_bytes, listing["on_etsy"])  # fmt: skip
        run.image_done(design_id, image, None)
    for finished, skipped in run.to_finish():
        store.complete(finished, shop_id, skipped)
    return run.outcomes[design_id]
