"""Publishing a design as an Etsy draft listing with its mockups, safe to retry at any point.

The catalog remembers each step (listing created, image N uploaded), and where a crash can
fall between Etsy acting and the catalog recording it, the next attempt looks at Etsy
first: a listing the crashed attempt created is adopted, not created again, and an image
already on the listing at its rank is not uploaded twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from designflow.catalog.listings import ListingCatalog
from designflow.etsy.client import MAX_LISTING_IMAGES, EtsyClient
from designflow.etsy.listings import content_sha256

# Etsy's created_timestamp has second resolution and clocks differ: look this far back.
ADOPT_SLACK = timedelta(minutes=5)


@dataclass(frozen=True)
class ImagePlan:
    mockup_id: int
    template_id: str
    nas_path: str
    rank: int
    alt_text: str


@dataclass
class PublishOutcome:
    design_id: int
    shop_id: str
    listing_id: int | None = None
    action: str = ""  # created, adopted, existing, updated
    images: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "design_id": self.design_id, "shop_id": self.shop_id, "listing_id": self.listing_id,
            "action": self.action, "images": self.images, "skipped": self.skipped,
            "error": self.error,
        }  # fmt: skip


def plan_images(
    mockups: list[dict[str, Any]], title: str
) -> tuple[list[ImagePlan], list[dict[str, Any]]]:
    """The first 10 mockups by template id become images 1-10; the rest are reported."""
    ordered = sorted(mockups, key=lambda m: str(m["template_id"]))
    planned = [
        ImagePlan(int(m["id"]), str(m["template_id"]), str(m["nas_path"]), rank,
                  f"{title} ({m['template_id']} mockup)"[:250])
        for rank, m in enumerate(ordered[:MAX_LISTING_IMAGES], start=1)
    ]  # fmt: skip
    skipped = [
        {
            "mockup_id": int(m["id"]),
            "template_id": str(m["template_id"]),
            "reason": f"Etsy allows at most {MAX_LISTING_IMAGES} images per listing; "
            f"{len(ordered)} mockups, the first {MAX_LISTING_IMAGES} by template id were uploaded",
        }
        for m in ordered[MAX_LISTING_IMAGES:]
    ]
    return planned, skipped


def ensure_listing(
    store: ListingCatalog, client: EtsyClient, shop_id: str, design_id: int, fields: dict[str, Any]
) -> tuple[int, str]:
    """The design's draft listing in the shop, created at most once: (listing id, action)."""
    sha = content_sha256(fields)
    with store.publishing(design_id, shop_id):
        record = store.listing(design_id, shop_id)
        if record is not None and record.listing_id is not None:
            if record.content_sha256 == sha:
                return record.listing_id, "existing"
            client.update_listing(shop_id, record.listing_id, fields)  # the seller edited it
            store.set_listing(design_id, shop_id, record.listing_id, sha)
            return record.listing_id, "updated"
        if record is not None:  # 'creating': an attempt sent the create call, then stopped
            found = _created_by_earlier_attempt(store, client, shop_id, record)
            if found is not None:
                store.set_listing(design_id, shop_id, found, sha)
                return found, "adopted"
        store.begin_create(design_id, shop_id, str(fields["title"]), sha)
        listing = client.create_draft_listing(shop_id, fields)
        listing_id = int(listing["listing_id"])
        store.set_listing(design_id, shop_id, listing_id, sha)
        return listing_id, "created"


def _created_by_earlier_attempt(store, client, shop_id, record) -> int | None:
    linked = store.linked_listing_ids(shop_id)
    since = (record.create_started_at - ADOPT_SLACK).timestamp()
    for listing in client.draft_listings(shop_id):
        if (
            listing.get("title") == record.title
            and float(listing.get("created_timestamp") or 0) >= since
            and int(listing["listing_id"]) not in linked
        ):
            return int(listing["listing_id"])
    return None


def remote_images(client: EtsyClient, listing_id: int) -> dict[int, dict[str, Any]]:
    """rank -> image already on the listing (read once per publish)."""
    return {int(i["rank"]): i for i in client.get_listing_images(listing_id)}


def upload_image(
    store: ListingCatalog,
    client: EtsyClient,
    shop_id: str,
    design_id: int,
    listing_id: int,
    plan: ImagePlan,
    read_bytes: Callable[[str], bytes],
    on_etsy: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    """One mockup as the listing image at its rank, unless it is already there."""
    done = store.images(design_id, shop_id).get(plan.mockup_id)
    if done is not None:
        return _image(plan, done[1], "existing")
    there = on_etsy.get(plan.rank)
    if there is not None and there.get("alt_text") == plan.alt_text:
        # Uploaded by an attempt that stopped before recording it.
        store.record_image(
            design_id, shop_id, plan.mockup_id, plan.rank, int(there["listing_image_id"])
        )
        return _image(plan, int(there["listing_image_id"]), "adopted")
    data = read_bytes(plan.nas_path)
    answer = client.upload_listing_image(
        shop_id, listing_id, data, f"{plan.template_id}.jpg", rank=plan.rank, alt_text=plan.alt_text
    )
    image_id = int(answer["listing_image_id"])
    store.record_image(design_id, shop_id, plan.mockup_id, plan.rank, image_id)
    return _image(plan, image_id, "uploaded")


def _image(plan: ImagePlan, image_id: int, action: str) -> dict[str, Any]:
    return {"mockup_id": plan.mockup_id, "template_id": plan.template_id, "rank": plan.rank,
            "listing_image_id": image_id, "action": action}  # fmt: skip


def publish_design(
    store: ListingCatalog,
    client: EtsyClient,
    shop_id: str,
    design_id: int,
    read_bytes: Callable[[str], bytes],
) -> PublishOutcome:
    """Every step in order, in the calling thread (the flow runs the same steps as tasks)."""
    outcome = PublishOutcome(design_id, shop_id)
    fields = store.drafts([design_id]).get(design_id)
    if fields is None:
        raise LookupError(f"design {design_id} has no listing content (give a listing manifest)")
    outcome.listing_id, outcome.action = ensure_listing(store, client, shop_id, design_id, fields)
    mockups = store.catalog.mockups_of([design_id])
    planned, outcome.skipped = plan_images(mockups, str(fields["title"]))
    on_etsy = remote_images(client, outcome.listing_id)
    for plan in planned:
        outcome.images.append(
            upload_image(
                store, client, shop_id, design_id, outcome.listing_id, plan, read_bytes, on_etsy
            )
        )
    store.complete(design_id, shop_id, outcome.skipped)
    return outcome
