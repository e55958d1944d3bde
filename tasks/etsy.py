"""Etsy publishing steps as Prefect tasks: one task per API call, retried with backoff.

The client (its rate limiter and tokens) is one per process and block, so every task and
run in a worker shares the per-second budget. Requests Etsy refuses (4xx) and refused
credentials are not retried: they do not heal by waiting.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE

from designflow.etsy import EtsyAuthError, EtsyClient, EtsyRequestError, RetryPolicy
from designflow.listing_catalog import ListingCatalog
from designflow.publish import ImagePlan, ensure_listing, remote_images, upload_image
from tasks import resources
from tasks.retry import IO_RETRIES, IO_RETRY_DELAYS, IO_RETRY_JITTER


@dataclass(frozen=True)
class EtsyShop:
    client: EtsyClient
    shop_id: str


class EtsyNotConfigured(LookupError):
    pass


_lock = threading.Lock()
_shops: dict[tuple[str, int, float], EtsyShop] = {}


def etsy_shop() -> EtsyShop:
    """The shop named by DESIGNFLOW_ETSY_BLOCK; EtsyNotConfigured if there is no such block.
    The block is read once per process (a flow run's process), not once per task: tokens
    rotated by another process are read back from it when a refresh is due."""
    from tasks.blocks import BlockTokenStore, EtsyShopBlock

    settings = resources.current_settings()
    name = settings.etsy_block
    key = (name, settings.etsy_per_second, settings.etsy_backoff_s)
    with _lock:
        shop = _shops.get(key)
    if shop is not None:
        return shop
    try:
        block = EtsyShopBlock.load(name)
    except ValueError:
        raise EtsyNotConfigured(
            f"no Etsy credentials: Prefect block {name!r} (type 'designflow Etsy shop') does not "
            "exist; create it with `designflow etsy connect`"
        ) from None
    with _lock:
        shop = _shops.get(key)
        if shop is None:
            client = EtsyClient(
                block.base_url, block.keystring, block.shared_secret.get_secret_value(),
                BlockTokenStore(name), per_second=settings.etsy_per_second,
                retry=RetryPolicy(base_s=settings.etsy_backoff_s),
            )  # fmt: skip
            shop = _shops[key] = EtsyShop(client, block.shop_id)
        return shop


def forget_shops() -> None:
    with _lock:
        shops = list(_shops.values())
        _shops.clear()
    for shop in shops:
        shop.client.close()


def _worth_retrying(task, run, state) -> bool:
    try:
        state.result()
    except (EtsyRequestError, EtsyAuthError, LookupError):
        return False  # do not retry
    except Exception:
        return True
    return True


_retry = dict(
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_jitter_factor=IO_RETRY_JITTER,
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,
)


def _store() -> ListingCatalog:
    return ListingCatalog(resources.catalog())


@task(name="etsy-get-shop", **_retry)
def fetch_shop() -> dict:
    """getShop: the shop's name and id, once per run."""
    shop = etsy_shop()
    body = shop.client.get_shop(shop.shop_id)
    return {"shop_id": str(body["shop_id"]), "shop_name": body.get("shop_name")}


@task(name="etsy-create-listing", task_run_name="listing for design {design_id}", **_retry)
def create_listing(design_id: int) -> dict:
    """createDraftListing (or updateListing when the manifest changed), at most once per
    design and shop; also returns the images already on the listing and the plan."""
    shop = etsy_shop()
    store = _store()
    fields = store.drafts([design_id]).get(design_id)
    if fields is None:
        raise LookupError(f"design {design_id} has no listing content (give a listing manifest)")
    listing_id, action = ensure_listing(store, shop.client, shop.shop_id, design_id, fields)
    return {
        "listing_id": listing_id,
        "action": action,
        "title": fields["title"],
        "on_etsy": remote_images(shop.client, listing_id),
    }


@task(
    name="etsy-upload-image",
    task_run_name="image {plan.rank} of design {design_id}",
    **_retry,
)
def upload_mockup_image(design_id: int, listing_id: int, plan: ImagePlan, on_etsy: dict) -> dict:
    """uploadListingImage of one stored mockup, read from the NAS."""
    shop = etsy_shop()
    nas = resources.nas()
    return upload_image(
        _store(), shop.client, shop.shop_id, design_id, listing_id, plan, nas.read_bytes, on_etsy
    )


@task(name="etsy-finish-listing", cache_policy=NO_CACHE, retries=IO_RETRIES)
def finish_listing(design_id: int, skipped: list[dict]) -> None:
    shop = etsy_shop()
    _store().complete(design_id, shop.shop_id, skipped)


@task(name="save-listing-drafts", cache_policy=NO_CACHE, retries=IO_RETRIES,
      retry_delay_seconds=IO_RETRY_DELAYS)  # fmt: skip
def save_listing_drafts(drafts: dict[int, dict], source: str | None) -> int:
    """Listing content of stored designs, kept in the catalog for the publish step."""
    return _store().save_drafts(drafts, source)
