"""Etsy publishing steps as Prefect tasks: one task per API call, retried with backoff.

The client (its rate limiter and tokens) is one per process and block, so every task and
run in a worker shares the per-second budget. Requests Etsy refuses (4xx) and refused
credentials are not retried: they do not heal by waiting.
"""

from __future__ import annotations

from prefect import task

from designflow.catalog.listings import ListingCatalog
from designflow.etsy.publish import (
    ImagePlan,
    listing_step,
    needs_profiles,
    resolve_profiles,
    upload_image,
)
from designflow.orchestration import resources
from designflow.orchestration.retry import io_retry
from designflow.resources import EtsyShop


def etsy_shop() -> EtsyShop:
    """The shop named by DESIGNFLOW_ETSY_BLOCK (EtsyNotConfigured if there is no such block),
    read once per process, so every task and run in a worker shares its per-second budget."""
    return resources.current().etsy()


def forget_shops() -> None:
    """Read the Etsy block again on next use (after the block was changed)."""
    resources.current().forget_etsy()


def _store() -> ListingCatalog:
    return ListingCatalog(resources.catalog())


@task(name="etsy-get-shop", **io_retry())
def fetch_shop() -> dict:
    """getShop: the shop's name and id, once per run."""
    shop = etsy_shop()
    body = shop.client.get_shop(shop.shop_id)
    return {"shop_id": str(body["shop_id"]), "shop_name": body.get("shop_name")}


@task(name="etsy-shop-profiles", **io_retry())
def fetch_profiles(design_ids: list[int]) -> dict[str, int] | None:
    """The shop's shipping, processing and return profiles for listings that name none,
    once per run and only when a listing will be created or changed (None otherwise); fails
    before any listing is created when the choice is not clear."""
    shop = etsy_shop()
    store = _store()
    drafts = store.drafts(design_ids)
    if not needs_profiles(store, shop.shop_id, drafts):
        return None
    return resolve_profiles(shop.client, shop.shop_id, list(drafts.values()), shop.profile_defaults)


@task(name="etsy-create-listing", task_run_name="listing for design {design_id}", **io_retry())
def create_listing(design_id: int, profiles: dict[str, int] | None) -> dict:
    """createDraftListing (or, when the manifest changed, updateListing and
    updateListingInventory), at most once per design and shop; also returns the images
    already on the listing."""
    shop = etsy_shop()
    return listing_step(_store(), shop.client, shop.shop_id, design_id, profiles)


@task(name="listing-mockups", **io_retry())
def listing_mockups(design_ids: list[int]) -> list[dict]:
    """The designs' stored mockups, the listings' images."""
    return resources.catalog().mockups_of(design_ids)


@task(name="listing-drafts", **io_retry())
def listing_drafts(design_ids: list[int]) -> dict[int, dict]:
    """The listing content of these designs (those that have some)."""
    return _store().drafts(design_ids)


@task(
    name="etsy-upload-image",
    task_run_name="image {plan.rank} of design {design_id}",
    **io_retry(),
)
def upload_mockup_image(design_id: int, listing_id: int, plan: ImagePlan, on_etsy: dict) -> dict:
    """uploadListingImage of one stored mockup, read from the NAS."""
    shop = etsy_shop()
    nas = resources.nas()
    return upload_image(
        _store(), shop.client, shop.shop_id, design_id, listing_id, plan, nas.read_bytes, on_etsy
    )


@task(name="etsy-finish-listing", **io_retry())
def finish_listing(design_id: int, skipped: list[dict]) -> None:
    shop = etsy_shop()
    _store().complete(design_id, shop.shop_id, skipped)


@task(name="save-listing-drafts", **io_retry())
def save_listing_drafts(drafts: dict[int, dict], source: str | None) -> int:
    """Listing content of stored designs, kept in the catalog for the publish step."""
    return _store().save_drafts(drafts, source)
