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
from designflow.errors import PermanentError
from designflow.etsy.client import MAX_LISTING_IMAGES, EtsyClient
from designflow.etsy.listings import content_sha256

# Etsy's created_timestamp has second resolution and clocks differ: look this far back.
ADOPT_SLACK = timedelta(minutes=5)


class ListingProfileError(LookupError, PermanentError):
    """A physical listing needs a shop profile the listing content does not name and the
    shop does not make unambiguous (none, or several); the message says which setting to fill
    and lists the shop's choices."""


@dataclass(frozen=True)
class ProfileKind:
    field: str  # listing field
    setting: str  # DESIGNFLOW_* default
    what: str  # in words
    read: str  # EtsyClient method listing the shop's own
    needed_for_draft: bool  # createDraftListing refuses a physical listing without it


PROFILE_KINDS = (
    ProfileKind("shipping_profile_id", "DESIGNFLOW_LISTING_SHIPPING_PROFILE_ID", "shipping profile", "shipping_profiles", True),
    ProfileKind("readiness_state_id", "DESIGNFLOW_LISTING_READINESS_STATE_ID", "processing profile (readiness state)", "readiness_state_definitions", True),
    # not needed for a draft, only to activate it: looked up, but its absence is no error
    ProfileKind("return_policy_id", "DESIGNFLOW_LISTING_RETURN_POLICY_ID", "return policy", "return_policies", False),
)  # fmt: skip


def resolve_profiles(
    client: EtsyClient, shop_id: str, drafts: list[dict[str, Any]],
    defaults: dict[str, int] | None = None,
) -> dict[str, int]:  # fmt: skip
    """For each kind some physical listing does not name: the Etsy block's default, else the
    shop's own, looked up once (per run): exactly one of a kind is used; none or several is
    an error before anything is created, naming the setting to fill and the shop's choices."""
    physical = [d for d in drafts if d.get("type", "physical") in ("physical", "both")]
    resolved: dict[str, int] = {}
    for kind in PROFILE_KINDS:
        if not any(d.get(kind.field) is None for d in physical):
            continue
        if defaults and defaults.get(kind.field) is not None:
            resolved[kind.field] = int(defaults[kind.field])
            continue
        choices = getattr(client, kind.read)(shop_id)
        if len(choices) == 1:
            resolved[kind.field] = int(choices[0][kind.field])
        elif kind.needed_for_draft or choices:
            listed = "; ".join(f"{c[kind.field]} ({_profile_label(c)})" for c in choices)
            raise ListingProfileError(
                f"a physical listing needs a {kind.what}: give one as the manifest's "
                f"{kind.field} column, {kind.setting} or the Etsy block's {kind.field}; "
                "the shop has "
                + (f"{len(choices)}: {listed}" if choices else "none (create one on Etsy)")
            )
    return resolved


def _profile_label(profile: dict[str, Any]) -> str:
    if profile.get("title"):
        return str(profile["title"])
    if "min_processing_time" in profile:
        unit = profile.get("processing_time_unit", "days")
        return f"{profile.get('readiness_state', '')} {profile['min_processing_time']}-{profile.get('max_processing_time')} {unit}".strip()
    if "accepts_returns" in profile:
        return f"returns {'accepted' if profile['accepts_returns'] else 'not accepted'}, {profile.get('return_deadline')} days"
    return "untitled"


def with_profiles(fields: dict[str, Any], resolved: dict[str, int]) -> dict[str, Any]:
    """The listing's fields as sent: a profile it does not name taken from the shop's."""
    out = dict(fields)
    out.setdefault("type", "physical")
    if out["type"] in ("physical", "both"):
        for name, value in resolved.items():
            if out.get(name) is None:
                out[name] = value
    return out


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
    mockups: list[dict[str, Any]], title: str, limit: int = MAX_LISTING_IMAGES
) -> tuple[list[ImagePlan], list[dict[str, Any]]]:
    """The first `limit` (Etsy: 20) mockups by template id become images 1..limit; the rest
    are reported."""
    ordered = sorted(mockups, key=lambda m: str(m["template_id"]))
    planned = [
        ImagePlan(int(m["id"]), str(m["template_id"]), str(m["nas_path"]), rank,
                  f"{title} ({m['template_id']} mockup)"[:250])
        for rank, m in enumerate(ordered[:limit], start=1)
    ]  # fmt: skip
    skipped = [
        {
            "mockup_id": int(m["id"]),
            "template_id": str(m["template_id"]),
            "reason": f"at most {limit} images per listing; "
            f"{len(ordered)} mockups, the first {limit} by template id were uploaded",
        }
        for m in ordered[limit:]
    ]
    return planned, skipped


def ensure_listing(
    store: ListingCatalog, client: EtsyClient, shop_id: str, design_id: int,
    fields: dict[str, Any], profiles: dict[str, int] | None = None,
) -> tuple[int, str]:  # fmt: skip
    """The design's draft listing in the shop, created at most once: (listing id, action).
    `profiles`: the shop's profiles resolved for this run (looked up here when None)."""
    sha = content_sha256(fields)
    with store.publishing(design_id, shop_id):
        record = store.listing(design_id, shop_id)
        if profiles is None and (
            record is None or record.listing_id is None or record.content_sha256 != sha
        ):
            profiles = resolve_profiles(client, shop_id, [fields])
        sent = with_profiles(fields, profiles or {})
        if record is not None and record.listing_id is not None:
            if record.content_sha256 == sha:
                return record.listing_id, "existing"
            # The seller edited it: price and quantity through the listing's inventory (Etsy's
            # updateListing ignores them), the rest through updateListing; recorded as
            # applied only once Etsy confirmed both.
            client.update_listing(shop_id, record.listing_id, sent)
            client.update_listing_inventory(record.listing_id, sent["price"], sent["quantity"])
            store.set_listing(design_id, shop_id, record.listing_id, sha)
            return record.listing_id, "updated"
        if record is not None:  # 'creating': an attempt sent the create call, then stopped
            found = _created_by_earlier_attempt(store, client, shop_id, record)
            if found is not None:
                store.set_listing(design_id, shop_id, found, sha)
                return found, "adopted"
        store.begin_create(design_id, shop_id, str(fields["title"]), sha)
        listing = client.create_draft_listing(shop_id, sent)
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
    """One mockup as the listing image at its rank, unless it is already there. Under the
    design's publishing lock: two runs publishing one design at once each uploaded every
    image (found by test_two_publishes_of_one_design_are_serialised: ranks 1, 1, 2, 2)."""
    with store.publishing(design_id, shop_id):
        done = store.images(design_id, shop_id).get(plan.mockup_id)
        if done is not None:
            return _image(plan, done[1], "existing")
        # A listing moved from the design this one replaced: the image at the rank is the
        # old design's mockup, replaced (never adopted).
        record = store.listing(design_id, shop_id)
        overwrite = record is not None and record.replace_images
        there = on_etsy.get(plan.rank)
        if there is not None and not overwrite and there.get("alt_text") == plan.alt_text:
            # Uploaded by an attempt that stopped before recording it.
            store.record_image(
                design_id, shop_id, plan.mockup_id, plan.rank, int(there["listing_image_id"])
            )
            return _image(plan, int(there["listing_image_id"]), "adopted")
        data = read_bytes(plan.nas_path)
        answer = client.upload_listing_image(
            shop_id, listing_id, data, f"{plan.template_id}.jpg", rank=plan.rank,
            alt_text=plan.alt_text, overwrite=overwrite,
        )  # fmt: skip
        image_id = int(answer["listing_image_id"])
        store.record_image(design_id, shop_id, plan.mockup_id, plan.rank, image_id)
        return _image(plan, image_id, "uploaded")


def _image(plan: ImagePlan, image_id: int, action: str) -> dict[str, Any]:
    return {"mockup_id": plan.mockup_id, "template_id": plan.template_id, "rank": plan.rank,
            "listing_image_id": image_id, "action": action}  # fmt: skip


def listing_step(
    store: ListingCatalog, client: EtsyClient, shop_id: str, design_id: int,
    profiles: dict[str, int] | None,
) -> dict[str, Any]:  # fmt: skip
    """A design's draft listing made or brought up to date (ensure_listing), with what the
    image uploads need: its id, what was done, its title and the images already on it."""
    fields = store.drafts([design_id]).get(design_id)
    if fields is None:
        raise LookupError(f"design {design_id} has no listing content (give a listing manifest)")
    listing_id, action = ensure_listing(store, client, shop_id, design_id, fields, profiles)
    return {"listing_id": listing_id, "action": action, "title": fields["title"],
            "on_etsy": remote_images(client, listing_id)}  # fmt: skip


def needs_profiles(store: ListingCatalog, shop_id: str, drafts: dict[int, dict[str, Any]]) -> bool:
    """Whether a listing of this run will be created or changed, so that the shop's profiles
    are needed (3 GETs): a run re-publishing unchanged listings asks for none."""
    for design_id, fields in drafts.items():
        record = store.listing(design_id, shop_id)
        if record is None or record.listing_id is None:
            return True
        if record.content_sha256 != content_sha256(fields):
            return True
    return False


class PublishRun:
    """One publish run's decisions, whoever carries out its steps (the publish flow's tasks,
    or a test calling the steps in order): each design's outcome, its image plan and the
    mockups left out, which error wins (the listing's, else the first image's), which
    listings are finished, the rows the artifact shows and the run's result."""

    def __init__(self, shop: dict[str, Any], design_ids: list[int], max_images: int) -> None:
        self.shop = shop
        self.max_images = max_images
        self.outcomes = {d: PublishOutcome(d, str(shop["shop_id"])) for d in design_ids}

    def fail_all(self, reason: str) -> None:
        """A step before any listing (the shop's profiles) failed: every design says why."""
        for outcome in self.outcomes.values():
            outcome.error = reason

    def listing_made(
        self, design_id: int, listing: dict[str, Any] | None, error: str | None,
        mockups: list[dict[str, Any]],
    ) -> list[ImagePlan]:  # fmt: skip
        """The listing step's answer (or its error); returns the images to upload to it."""
        outcome = self.outcomes[design_id]
        if listing is None:
            outcome.error = error or "the listing was not made"
            return []
        outcome.listing_id, outcome.action = listing["listing_id"], listing["action"]
        mine = [m for m in mockups if m["design_id"] == design_id]
        planned, outcome.skipped = plan_images(mine, str(listing["title"]), self.max_images)
        return planned

    def image_done(self, design_id: int, image: dict[str, Any] | None, error: str | None) -> None:
        outcome = self.outcomes[design_id]
        if image is not None:
            outcome.images.append(image)
        elif outcome.error is None:  # the first failed image says why
            outcome.error = f"image upload failed: {error}"

    def to_finish(self) -> list[tuple[int, list[dict[str, Any]]]]:
        """(design id, mockups left out) of each listing whose steps all succeeded."""
        return [(d, o.skipped) for d, o in self.outcomes.items()
                if o.error is None and o.listing_id is not None]  # fmt: skip

    def log_lines(self) -> list[str]:
        lines = []
        for d, o in self.outcomes.items():
            lines += [
                f"design {d}: {s['template_id']} not uploaded: {s['reason']}" for s in o.skipped
            ]
            if o.error:
                lines.append(f"design {d}: not published: {o.error}")
            else:
                lines.append(f"design {d}: draft listing {o.listing_id} ({o.action}), "
                             f"{len(o.images)} image(s)")  # fmt: skip
        return lines

    def rows(self) -> list[dict[str, Any]]:
        """The etsy-listings artifact: one row per design."""
        return [{"design_id": o.design_id, "listing_id": o.listing_id, "action": o.action,
                 "images": len(o.images), "not_uploaded": len(o.skipped), "error": o.error or ""}
                for o in self.outcomes.values()]  # fmt: skip

    def result(self) -> dict[str, Any]:
        return {"shop": self.shop, "listings": [o.as_dict() for o in self.outcomes.values()],
                "skipped": None}  # fmt: skip
