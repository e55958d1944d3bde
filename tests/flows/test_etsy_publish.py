"""Etsy publishing in the flows, against the local Etsy-like server over real HTTP:
upload -> mockups -> draft listing with images, credentials in a Prefect block (rotated
tokens written back), skipped without credentials, manifests checked before anything runs."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import pytest

from designflow.catalog import Catalog
from designflow.catalog.listings import ListingCatalog
from designflow.flows.publish import publish_listing
from designflow.flows.upload import upload_designs
from designflow.orchestration.blocks import EtsyShopBlock
from designflow.tasks.etsy import forget_shops
from designflow.testing.etsy_stub import EtsyStub
from tests import images
from tests.conftest import DesignflowEnv

TEMPLATES = Path(__file__).resolve().parents[2] / "examples" / "templates"


@pytest.fixture
def stub():
    with EtsyStub(per_second=5) as server:
        yield server


@pytest.fixture
def etsy_block(stub: EtsyStub, monkeypatch: pytest.MonkeyPatch) -> str:
    tokens = stub.authorize()
    name = f"etsy-{uuid.uuid4().hex[:8]}"
    EtsyShopBlock(
        base_url=stub.url, keystring=stub.keystring, shared_secret=stub.shared_secret,
        shop_id=str(stub.shop_id), refresh_token=tokens["refresh_token"],
        access_token=tokens["access_token"], access_expires_at=time.time() + tokens["expires_in"],
    ).save(name, overwrite=True)  # fmt: skip
    monkeypatch.setenv("DESIGNFLOW_ETSY_BLOCK", name)
    monkeypatch.setenv("DESIGNFLOW_ETSY_BACKOFF_SECONDS", "0.05")
    yield name
    forget_shops()


def manifest(path: Path, rows: list[dict]) -> Path:
    header = ["file", "title", "description", "price", "tags", "taxonomy_id", "quantity"]
    lines = [",".join(header)]
    for row in rows:
        lines.append(",".join(json.dumps(str(row.get(h, ""))) for h in header))
    path.write_text("\n".join(lines) + "\n")
    return path


def two_designs(env: DesignflowEnv) -> tuple[Path, Path]:
    folder = env.inputs / "designs"
    folder.mkdir()
    images.write_png(folder / "cat.png", seed=901)
    images.write_png(folder / "dog.png", seed=902)
    rows = [
        {"file": "cat.png", "title": "Sunset cat tee", "description": "A cat.", "price": "24.50",
         "tags": "cat,sunset", "taxonomy_id": "482", "quantity": "5"},
        {"file": "dog.png", "title": "Happy dog tee", "description": "A dog.", "price": "19",
         "tags": "dog", "taxonomy_id": "482", "quantity": "5"},
    ]  # fmt: skip
    return folder, manifest(env.inputs / "listings.csv", rows)


def test_upload_mockups_listing_end_to_end(designflow_env, stub, etsy_block) -> None:
    folder, listings = two_designs(designflow_env)
    report = upload_designs(
        paths=[str(folder)], user_id="shop1", mockup_templates=["tshirt", "poster"],
        async_mockups=False, listings_manifest=str(listings),
    )  # fmt: skip
    assert report["mockup_error"] is None and report["listing_skipped"] is None
    assert len(report["listings"]) == 2
    by_title = {v["title"]: v for v in stub.listings.values()}
    assert set(by_title) == {"Sunset cat tee", "Happy dog tee"}
    assert by_title["Sunset cat tee"]["price"]["amount"] == 2450
    assert by_title["Sunset cat tee"]["tags"] == ["cat", "sunset"]
    for listing in report["listings"]:
        assert listing["action"] == "created" and listing["error"] is None
        on_etsy = stub.images[listing["listing_id"]]
        assert sorted(i["rank"] for i in on_etsy) == [1, 2]  # poster, tshirt
        assert all(i["full_width"] == 2000 for i in on_etsy)
    assert stub.count("getShop") == 1  # fetched once for the run, not per design
    # The catalog knows each listing: a standalone re-run changes nothing on Etsy.
    ids = [s["design_id"] for s in report["stored"]]
    profile_calls = stub.count("getShopShippingProfiles")
    assert profile_calls == 1  # looked up once for the run's two new listings
    again = publish_listing(ids)
    assert {o["action"] for o in again["listings"]} == {"existing"}
    # Nothing to create or change: the shop's profiles are not asked for at all.
    assert stub.count("getShopShippingProfiles") == profile_calls
    assert len(stub.listings) == 2 and stub.count("createDraftListing") == 2
    assert stub.count("uploadListingImage") == 4
    store = ListingCatalog(Catalog(designflow_env.database_url))
    assert {store.listing(d, str(stub.shop_id)).status for d in ids} == {"complete"}
    # The seller edits a price in the manifest and publishes again (publish --listings):
    # it reaches the listing's inventory, the other listing is left alone.
    listings.write_text(listings.read_text().replace('"24.50"', '"27.00"'))
    edited = publish_listing(ids, listings_manifest=str(listings))
    actions = {o["design_id"]: o["action"] for o in edited["listings"]}
    assert sorted(actions.values()) == ["existing", "updated"]
    cat = next(v for v in stub.listings.values() if v["title"] == "Sunset cat tee")
    assert cat["price"]["amount"] == 2700
    assert stub.count("updateListingInventory") == 1 and stub.count("createDraftListing") == 2
    assert stub.count("getShopShippingProfiles") == profile_calls + 1  # a listing changed
    # the profiles were the shop's own, looked up once for the run
    assert cat["shipping_profile_id"] == stub.shipping_profiles[0]["shipping_profile_id"]
    calls = [(r.method, r.path, r.content_type) for r in stub.requests if r.status < 400]
    print("HTTP calls of the runs:\n" + "\n".join(f"{m} {p} {c}" for m, p, c in calls))


def test_rotated_tokens_are_written_back_to_the_block(designflow_env, stub, etsy_block) -> None:
    folder, listings = two_designs(designflow_env)
    before = EtsyShopBlock.load(etsy_block).refresh_token.get_secret_value()
    stub.expire_tokens()
    report = upload_designs(
        paths=[str(folder)], user_id="shop2", listings_manifest=str(listings)
    )  # no templates: the upload publishes the listings itself, without images
    assert [o["error"] for o in report["listings"]] == [None, None]
    after = EtsyShopBlock.load(etsy_block)
    assert after.refresh_token.get_secret_value() != before
    assert (
        stub.count("token") == 1 and after.refresh_token.get_secret_value() in stub.refresh_tokens
    )
    # A new process (fresh client) starts from the saved tokens and needs no refresh.
    forget_shops()
    publish_listing([s["design_id"] for s in report["stored"]])
    assert stub.count("token") == 1


def test_without_credentials_publishing_is_skipped(designflow_env, stub, monkeypatch) -> None:
    monkeypatch.setenv("DESIGNFLOW_ETSY_BLOCK", f"absent-{uuid.uuid4().hex[:6]}")
    folder, listings = two_designs(designflow_env)
    report = upload_designs(
        paths=[str(folder)], user_id="shop3", mockup_templates=["poster"], async_mockups=False,
        listings_manifest=str(listings),
    )  # fmt: skip
    assert len(report["stored"]) == 2 and len(report["mockups"]) == 2
    assert report["listings"] == [] and "no Etsy credentials" in report["listing_skipped"]
    assert "designflow etsy connect" in report["listing_skipped"]
    assert stub.requests == []


def test_bad_manifest_fails_before_anything_is_stored(designflow_env, stub, etsy_block) -> None:
    folder, _ = two_designs(designflow_env)
    bad = manifest(
        designflow_env.inputs / "bad.csv", [{"file": "cat.png", "title": "", "price": "x"}]
    )
    state = upload_designs(
        paths=[str(folder)], user_id="shop4", listings_manifest=str(bad), return_state=True
    )
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert "bad.csv" in message and "row 2 (cat.png): title: missing" in message
    assert "price: 'x' is not a number" in message
    assert Catalog(designflow_env.database_url).count_designs("shop4") == 0
    assert not (designflow_env.nas_root / "users").exists()
    assert stub.requests == []


def test_eleven_mockups_ten_images_and_the_report_says_why(
    designflow_env, stub, etsy_block, tmp_path, monkeypatch
) -> None:
    # Etsy takes 20; a seller's own cap of 10 (the setting) is kept and reported.
    monkeypatch.setenv("DESIGNFLOW_ETSY_MAX_IMAGES", "10")
    templates = tmp_path / "templates"
    names = [f"shirt{n:02d}" for n in range(11)]
    for name in names:
        shutil.copytree(TEMPLATES / "tshirt", templates / name)
    monkeypatch.setenv("DESIGNFLOW_TEMPLATES", str(templates))
    stub.per_second = 20
    path = images.write_png(designflow_env.inputs / "many.png", seed=903)
    listings = manifest(designflow_env.inputs / "l.csv", [
        {"file": "many.png", "title": "Many shirts", "description": "d", "price": "20",
         "taxonomy_id": "482", "quantity": "1"}])  # fmt: skip
    report = upload_designs(
        paths=[str(path)], user_id="shop5", mockup_templates=names, async_mockups=False,
        listings_manifest=str(listings),
    )  # fmt: skip
    assert len(report["mockups"]) == 11
    (listing,) = report["listings"]
    assert len(listing["images"]) == 10 and len(stub.images[listing["listing_id"]]) == 10
    (skipped,) = listing["skipped"]
    assert skipped["template_id"] == "shirt10" and "at most 10 images" in skipped["reason"]
    assert stub.count("uploadListingImage", 400) == 0


def test_a_field_etsy_refuses_is_reported_with_its_name(designflow_env, stub, etsy_block) -> None:
    path = images.write_png(designflow_env.inputs / "odd.png", seed=904)
    listings = manifest(designflow_env.inputs / "l.csv", [
        {"file": "odd.png", "title": "Odd", "description": "d", "price": "20",
         "taxonomy_id": "482", "quantity": "1", "tags": "banned"}])  # fmt: skip
    # Etsy is stricter than our manifest check on a field we pass on as given.
    lenient = stub._check_listing_fields

    def stricter(form, required):
        return (
            "tags: the tag 'banned' is not allowed"
            if "banned" in form.get("tags", "")
            else lenient(form, required)
        )

    stub._check_listing_fields = stricter
    report = upload_designs(paths=[str(path)], user_id="shop6", listings_manifest=str(listings))
    assert len(report["stored"]) == 1  # the design is stored; only its listing failed
    (listing,) = report["listings"]
    assert "field 'tags'" in listing["error"] and "400" in listing["error"]
    assert stub.count("createDraftListing") == 1  # a 400 is not retried
    assert stub.listings == {}


def test_a_better_version_replaces_the_design_and_takes_over_its_listing(
    designflow_env, stub, etsy_block
) -> None:
    """--replace-with-better: the full-size export of a design first stored as a downscale
    is stored as its new version; the old design is set aside (superseded, no longer found
    by lookups, its file and row kept so verify stays clean); its listing content, its
    Etsy listing (the same listing, images replaced rank by rank) and its mockup templates
    follow the new one."""
    from PIL import Image

    from designflow.ops.verify import verify
    from designflow.orchestration import resources

    folder = designflow_env.inputs / "better"
    folder.mkdir()
    art = images.design(931, (800, 960))
    art.resize((560, 672), Image.Resampling.LANCZOS).save(folder / "fox-small.png")
    rows = [{"file": "fox-small.png", "title": "Fox tee", "description": "A fox.",
             "price": "20", "tags": "fox", "taxonomy_id": "482", "quantity": "3"}]  # fmt: skip
    first = upload_designs(
        paths=[str(folder / "fox-small.png")], user_id="rex", mockup_templates=["tshirt"],
        async_mockups=False, listings_manifest=str(manifest(folder / "l.csv", rows)),
    )  # fmt: skip
    (old,) = first["stored"]
    (listing,) = first["listings"]
    assert listing["action"] == "created"
    listing_id = listing["listing_id"]
    old_image = stub.images[listing_id][0]
    art.save(folder / "fox.png")

    # Without the option the better version is only reported.
    reported = upload_designs(paths=[str(folder / "fox.png")], user_id="rex")
    assert reported["stored"] == [] and reported["duplicates"][0]["better"] is True

    second = upload_designs(
        paths=[str(folder / "fox.png")], user_id="rex", replace_with_better=True,
        async_mockups=False,
    )  # fmt: skip
    (new,) = second["stored"]
    assert new["replaces"] == old["design_id"] and new["design_id"] != old["design_id"]
    # Its mockups follow (the old design's template) and its listing: the same Etsy
    # listing, the image at rank 1 replaced by the new design's mockup.
    assert [m["template_id"] for m in second["mockups"]] == ["tshirt"]
    (moved,) = second["listings"]
    assert moved["listing_id"] == listing_id and moved["error"] is None
    assert [i["action"] for i in moved["images"]] == ["uploaded"]
    on_etsy = stub.images[listing_id]
    assert len(on_etsy) == 1 and on_etsy[0]["rank"] == 1
    assert on_etsy[0]["listing_image_id"] != old_image["listing_image_id"]
    assert stub.count("createDraftListing") == 1 and len(stub.listings) == 1

    catalog = Catalog(designflow_env.database_url)
    with catalog.connect() as conn:
        row = conn.execute(
            "SELECT is_active, superseded_by FROM design_images WHERE id = %s",
            (old["design_id"],),
        ).fetchone()
    assert row == (False, new["design_id"])
    # The next copy of the artwork is a duplicate of the new version, not of the old one.
    art.resize((700, 840), Image.Resampling.LANCZOS).save(folder / "fox-700.png")
    third = upload_designs(paths=[str(folder / "fox-700.png")], user_id="rex")
    assert [d["duplicate_of"] for d in third["duplicates"]] == [new["design_id"]]
    report = verify(catalog, resources.nas(), user_id="rex")
    assert report.orphans == [] and report.missing == []
