"""Publishing that Etsy itself accepts, against a stub that refuses what Etsy refuses:
physical listings need a shipping and a processing profile, price and quantity change only
through the inventory, titles and tags follow Etsy's character rules, when_made moves with
the year, and a crashed attempt's draft is found among hundreds."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest

from designflow.catalog.listings import ListingCatalog
from designflow.etsy.client import EtsyRequestError
from designflow.etsy.listings import ManifestError, content_sha256, read_manifest, when_made_values
from designflow.etsy.publish import ListingProfileError
from designflow.storage.nas import LocalNas
from designflow.testing.etsy_stub import EtsyStub
from tests.core.publishing import publish_design
from tests.core.test_etsy_client import LISTING
from tests.core.test_publish import client_for, design_with_mockups

# The manifest of a seller who names no profile: the shop's own are looked up.
PLAIN = {k: v for k, v in LISTING.items() if k not in ("shipping_profile_id", "readiness_state_id")}


@pytest.fixture
def stub():
    with EtsyStub(per_second=50) as server:
        yield server


@pytest.fixture
def store(catalog) -> ListingCatalog:
    return ListingCatalog(catalog)


def test_a_physical_listing_without_profiles_is_refused_as_etsy_does(stub) -> None:
    client = client_for(stub, stub.authorize())
    with pytest.raises(EtsyRequestError) as caught:
        client.create_draft_listing(str(stub.shop_id), PLAIN)
    assert caught.value.status == 400
    assert caught.value.etsy_message == "A shipping_profile_id is required for physical listings."
    assert caught.value.field == "shipping_profile_id"
    with pytest.raises(EtsyRequestError) as caught:
        client.create_draft_listing(str(stub.shop_id), dict(PLAIN, shipping_profile_id=200000001))
    assert caught.value.etsy_message == "A readiness_state_id is required for physical listings."
    assert stub.listings == {}


def test_the_shops_only_profiles_are_found_and_used(stub, store, tmp_path: Path) -> None:
    nas = LocalNas(tmp_path / "nas")
    design_id = design_with_mockups(store, nas, tmp_path, mockups=1)
    store.save_drafts({design_id: dict(PLAIN, title="Plain cat")}, "test")
    outcome = publish_design(
        store, client_for(stub, stub.authorize()), str(stub.shop_id), design_id, nas.read_bytes
    )
    listing = stub.listings[outcome.listing_id]
    assert outcome.action == "created"
    assert (listing["shipping_profile_id"], listing["readiness_state_id"], listing["return_policy_id"]) == (
        200000001, 300000001, 400000001,
    )  # fmt: skip
    assert listing["listing_type"] == "physical"
    # one look-up of each kind, before the create
    calls = [r.endpoint for r in stub.requests if r.status < 400]
    assert calls.index("getShopShippingProfiles") < calls.index("createDraftListing")
    assert (
        calls.count("getShopShippingProfiles")
        == calls.count("getShopReadinessStateDefinitions")
        == 1
    )


def test_two_shipping_profiles_are_a_clear_error_before_anything_is_created(
    stub, store, tmp_path: Path
) -> None:
    stub.shipping_profiles.append(
        {"shipping_profile_id": 200000002, "title": "Express", "user_id": stub.user_id}
    )
    nas = LocalNas(tmp_path / "nas")
    design_id = design_with_mockups(store, nas, tmp_path, mockups=1)
    store.save_drafts({design_id: dict(PLAIN, title="Two ways")}, "test")
    with pytest.raises(ListingProfileError) as caught:
        publish_design(
            store, client_for(stub, stub.authorize()), str(stub.shop_id), design_id, nas.read_bytes
        )
    message = str(caught.value)
    assert "DESIGNFLOW_LISTING_SHIPPING_PROFILE_ID" in message and "shipping_profile_id" in message
    assert "200000001 (Standard shipping)" in message and "200000002 (Express)" in message
    assert stub.count("createDraftListing") == 0 and stub.listings == {}
    # naming one in the manifest settles it
    store.save_drafts(
        {design_id: dict(PLAIN, title="Two ways", shipping_profile_id=200000002)}, "test"
    )
    outcome = publish_design(
        store, client_for(stub, stub.authorize()), str(stub.shop_id), design_id, nas.read_bytes
    )
    assert stub.listings[outcome.listing_id]["shipping_profile_id"] == 200000002


def test_a_price_edit_reaches_the_listing_inventory(stub, store, tmp_path: Path) -> None:
    nas = LocalNas(tmp_path / "nas")
    design_id = design_with_mockups(store, nas, tmp_path, mockups=1)
    client = client_for(stub, stub.authorize())
    first = publish_design(store, client, str(stub.shop_id), design_id, nas.read_bytes)
    edited = dict(
        store.drafts([design_id])[design_id], price=31.0, quantity=4, title="Design 1, now 31"
    )
    store.save_drafts({design_id: edited}, "test")
    again = publish_design(store, client, str(stub.shop_id), design_id, nas.read_bytes)
    assert again.action == "updated" and again.listing_id == first.listing_id
    offering = client.get_listing_inventory(first.listing_id)["products"][0]["offerings"][0]
    assert offering["price"]["amount"] == 3100 and offering["quantity"] == 4
    assert stub.listings[first.listing_id]["title"] == "Design 1, now 31"
    update = next(r for r in stub.requests if r.endpoint == "updateListingInventory")
    assert (update.method, update.content_type) == ("PUT", "application/json")
    assert store.listing(design_id, str(stub.shop_id)).content_sha256 == content_sha256(edited)


def test_an_edit_etsy_refuses_is_not_recorded_as_applied(stub, store, tmp_path: Path) -> None:
    nas = LocalNas(tmp_path / "nas")
    design_id = design_with_mockups(store, nas, tmp_path, mockups=1)
    client = client_for(stub, stub.authorize())
    publish_design(store, client, str(stub.shop_id), design_id, nas.read_bytes)
    before = store.listing(design_id, str(stub.shop_id)).content_sha256
    # a title Etsy refuses (two '&'), as if the manifest check had been skipped
    store.save_drafts(
        {design_id: dict(store.drafts([design_id])[design_id], title="Cats & dogs & birds")}, "test"
    )
    with pytest.raises(EtsyRequestError):
        publish_design(store, client, str(stub.shop_id), design_id, nas.read_bytes)
    assert store.listing(design_id, str(stub.shop_id)).content_sha256 == before


def test_when_made_values_follow_the_year() -> None:
    # Etsy's published lists
    assert when_made_values(2026)[:6] == ("made_to_order", "2020_2026", "2010_2019", "2007_2009", "before_2007", "2000_2006")  # fmt: skip
    assert when_made_values(2025)[:6] == ("made_to_order", "2020_2025", "2010_2019", "2006_2009", "before_2006", "2000_2005")  # fmt: skip
    assert when_made_values(2021)[:6] == ("made_to_order", "2020_2021", "2010_2019", "2002_2009", "before_2002", "2000_2001")  # fmt: skip
    assert when_made_values(2026)[-1] == "before_1700" and len(when_made_values(2026)) == 19


def test_the_manifest_enforces_etsys_title_tag_and_when_made_rules(tmp_path: Path) -> None:
    last_year = when_made_values(date.today().year - 1)[1]
    this_year = when_made_values(date.today().year)[1]
    manifest = tmp_path / "rules.csv"
    manifest.write_text(
        "file,title,description,price,tags,taxonomy_id,quantity,when_made\n"
        'a.png,Cats & dogs & more,d,10,"cat",1,1,made_to_order\n'
        'b.png,Sale: 50% off: now,d,10,"cat_tee,wow!",1,1,made_to_order\n'
        'c.png,C,d,10,"cat,Cat,this tag is far too long",1,1,made_to_order\n'
        f"d.png,D,d,10,cat,1,1,{last_year}\n"
        f"e.png,E,d,10,cat's ™ tee,1,1,{this_year}\n",
        encoding="utf-8",
    )
    with pytest.raises(ManifestError) as caught:
        read_manifest(manifest)
    message = str(caught.value)
    assert "row 2 (a.png): title: & may each appear only once" in message
    assert "row 3 (b.png): title: : may each appear only once" in message
    assert (
        "row 3 (b.png): tags: only letters, numbers, spaces" in message
        and "'cat_tee'" in message
        and "'wow!'" in message
    )
    assert "row 4 (c.png): tags: longer than 20 characters" in message
    assert "row 4 (c.png): tags: repeated: Cat" in message
    assert f"row 5 (d.png): when_made: '{last_year}'" in message
    assert "e.png" not in message  # every rule kept
    # Every problem reported, each on its own (the count is the manifest's own).
    assert f"{manifest}: 6 problem(s): " in message


def test_a_crashed_attempts_draft_is_found_among_250_and_adopted(
    stub, store, tmp_path: Path
) -> None:
    nas = LocalNas(tmp_path / "nas")
    design_id = design_with_mockups(store, nas, tmp_path, mockups=1)
    fields = store.drafts([design_id])[design_id]
    shop = str(stub.shop_id)
    for n in range(250):
        stub.add_draft(f"Older draft {n}")
    # The interrupted attempt: it recorded that it was creating, Etsy created the draft,
    # and the process died before the listing id was recorded.
    store.begin_create(design_id, shop, str(fields["title"]), content_sha256(fields))
    time.sleep(0.01)
    crashed = stub.add_draft(str(fields["title"]))
    created_before = stub.count("createDraftListing")
    outcome = publish_design(
        store, client_for(stub, stub.authorize()), shop, design_id, nas.read_bytes
    )
    assert (outcome.action, outcome.listing_id) == ("adopted", crashed)
    assert stub.count("createDraftListing") == created_before and len(stub.listings) == 251
    pages = [r for r in stub.requests if r.endpoint == "getListingsByShop"]
    assert len(pages) == 3  # 251 drafts, 100 a page: the crashed one is on the last


def test_the_etsy_blocks_profiles_come_before_a_look_up(stub) -> None:
    from designflow.etsy.publish import resolve_profiles

    client = client_for(stub, stub.authorize())
    stub.shipping_profiles.append({"shipping_profile_id": 200000002, "title": "Express"})
    defaults = {
        "shipping_profile_id": 200000002,
        "readiness_state_id": 300000001,
        "return_policy_id": 400000001,
    }
    assert resolve_profiles(client, str(stub.shop_id), [PLAIN], defaults) == defaults
    assert stub.count("getShopShippingProfiles") == 0  # two on the shop, but the block named one
    assert resolve_profiles(client, str(stub.shop_id), [dict(PLAIN, type="download")]) == {}
