"""Publishing a design to the local Etsy-like server: listing once, images once, 10 at most,
including after a process is killed mid-publish (real PostgreSQL, real HTTP, real processes)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from designflow.catalog import Catalog
from designflow.catalog.listings import ListingCatalog
from designflow.etsy.client import EtsyClient, EtsyTokens, MemoryTokenStore, RetryPolicy
from designflow.etsy.publish import publish_design
from designflow.storage.nas import LocalNas
from designflow.testing.etsy_stub import EtsyStub
from tests.core.test_catalog import new_design
from tests.core.test_etsy_client import LISTING, jpeg


@pytest.fixture
def stub():
    with EtsyStub(per_second=20) as server:
        yield server


@pytest.fixture
def store(catalog: Catalog) -> ListingCatalog:
    return ListingCatalog(catalog)


def design_with_mockups(
    store: ListingCatalog, nas: LocalNas, tmp: Path, mockups: int, n: int = 1
) -> int:
    design = new_design("pub", n)
    digest = design.sha256
    design_id = store.catalog.record_designs([design]).inserted[digest]
    for m in range(mockups):
        local = tmp / f"m{n}-{m}.jpg"
        local.write_bytes(jpeg((10 * m, 100, 200)))
        dest = f"users/pub/designs/{digest[:2]}/{digest}.mockups/t{m:02d}.jpg"
        nas.put_file(str(local), dest, hashlib.sha256(local.read_bytes()).hexdigest())
        store.catalog.record_mockup(
            design_id, f"t{m:02d}", dest, local.stat().st_size, 64, 48, None
        )
    store.save_drafts({design_id: dict(LISTING, title=f"Design {n}")}, "test")
    return design_id


def client_for(stub: EtsyStub, tokens: dict) -> EtsyClient:
    store = MemoryTokenStore(
        EtsyTokens(tokens["refresh_token"], tokens["access_token"], time.time() + 3600)
    )
    return EtsyClient(stub.url, stub.keystring, stub.shared_secret, store, per_second=20,
                      retry=RetryPolicy(base_s=0.05))  # fmt: skip


def test_publish_then_publish_again_changes_nothing(stub, store, tmp_path) -> None:
    nas = LocalNas(tmp_path / "nas")
    design_id = design_with_mockups(store, nas, tmp_path, mockups=3)
    client = client_for(stub, stub.authorize())
    first = publish_design(store, client, str(stub.shop_id), design_id, nas.read_bytes)
    assert first.action == "created" and [i["rank"] for i in first.images] == [1, 2, 3]
    assert [i["action"] for i in first.images] == ["uploaded"] * 3
    again = publish_design(store, client, str(stub.shop_id), design_id, nas.read_bytes)
    assert again.action == "existing" and again.listing_id == first.listing_id
    assert [i["action"] for i in again.images] == ["existing"] * 3
    assert len(stub.listings) == 1 and len(stub.images[first.listing_id]) == 3
    assert stub.count("createDraftListing") == 1 and stub.count("uploadListingImage") == 3
    assert stub.images[first.listing_id][0]["alt_text"] == "Design 1 (t00 mockup)"


def test_edited_listing_content_updates_the_same_listing(stub, store, tmp_path) -> None:
    nas = LocalNas(tmp_path / "nas")
    design_id = design_with_mockups(store, nas, tmp_path, mockups=1)
    client = client_for(stub, stub.authorize())
    first = publish_design(store, client, str(stub.shop_id), design_id, nas.read_bytes)
    store.save_drafts({design_id: dict(LISTING, title="Design 1", price=30.0)}, "edited")
    again = publish_design(store, client, str(stub.shop_id), design_id, nas.read_bytes)
    assert again.action == "updated" and again.listing_id == first.listing_id
    assert stub.listings[first.listing_id]["price"]["amount"] == 3000
    assert len(stub.listings) == 1 and stub.count("updateListing") == 1


def test_twenty_one_mockups_twenty_images_and_the_reason(stub, store, tmp_path) -> None:
    nas = LocalNas(tmp_path / "nas")
    design_id = design_with_mockups(store, nas, tmp_path, mockups=21)
    client = client_for(stub, stub.authorize())
    outcome = publish_design(store, client, str(stub.shop_id), design_id, nas.read_bytes)
    assert len(outcome.images) == 20 and len(stub.images[outcome.listing_id]) == 20
    assert [s["template_id"] for s in outcome.skipped] == ["t20"]
    assert "at most 20 images" in outcome.skipped[0]["reason"]
    assert stub.count("uploadListingImage", 400) == 0  # the cap is kept, not hit


def test_two_publishes_of_one_design_are_serialised(stub, store, tmp_path, database_url) -> None:
    """The README: two publishes of one design at once take turns on an advisory lock; the
    second finds the first's listing instead of making another."""
    import psycopg

    nas = LocalNas(tmp_path / "nas")
    design_id = design_with_mockups(store, nas, tmp_path, mockups=2)
    tokens = stub.authorize()
    hold = stub.hold("createDraftListing")
    outcomes: list = []

    def publish() -> None:
        client = client_for(stub, tokens)
        outcomes.append(publish_design(store, client, str(stub.shop_id), design_id, nas.read_bytes))

    first = threading.Thread(target=publish)
    first.start()
    assert hold.reached.wait(60)  # the first is inside, creating the listing
    second = threading.Thread(target=publish)
    second.start()
    deadline = time.monotonic() + 60
    with psycopg.connect(database_url, autocommit=True) as conn:
        while not conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory'"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the second publish did not wait for the lock"
            time.sleep(0.05)
    assert stub.count("createDraftListing") == 0  # the held call is not answered yet
    hold.released.set()
    first.join(60)
    second.join(60)
    assert len(outcomes) == 2 and outcomes[0].listing_id == outcomes[1].listing_id
    assert len(stub.listings) == 1 and stub.count("createDraftListing") == 1
    assert sorted(i["rank"] for i in stub.images[outcomes[0].listing_id]) == [1, 2]


_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from designflow.catalog import Catalog
    from designflow.etsy.client import EtsyClient, EtsyTokens, MemoryTokenStore
    from designflow.catalog.listings import ListingCatalog
    from designflow.storage.nas import LocalNas
    from designflow.etsy.publish import publish_design
    a = json.loads(sys.argv[1])
    store = ListingCatalog(Catalog(a["db"]))
    tokens = MemoryTokenStore(EtsyTokens(a["refresh"], a["access"], time.time() + 3600))
    client = EtsyClient(a["url"], a["key"], a["secret"], tokens, per_second=20)
    publish_design(store, client, a["shop"], a["design"], LocalNas(a["nas"]).read_bytes)
    """
)


@pytest.mark.parametrize(
    "endpoint, after_effect, what",
    [
        ("uploadListingImage", False, "killed after the listing was recorded, before any image"),
        (
            "createDraftListing",
            True,
            "killed after Etsy created the listing, before we recorded it",
        ),
        ("uploadListingImage", True, "killed after Etsy stored image 1, before we recorded it"),
    ],
)
def test_killed_mid_publish_then_retried_makes_one_listing(
    stub, store, tmp_path, database_url, endpoint, after_effect, what
) -> None:
    nas = LocalNas(tmp_path / "nas")
    design_id = design_with_mockups(store, nas, tmp_path, mockups=3)
    tokens = stub.authorize()
    hold = stub.hold(endpoint, after_effect=after_effect)
    args = {"db": database_url, "refresh": tokens["refresh_token"], "access": tokens["access_token"],
            "url": stub.url, "key": stub.keystring, "secret": stub.shared_secret,
            "shop": str(stub.shop_id), "design": design_id, "nas": str(tmp_path / "nas")}  # fmt: skip
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(args)], cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    try:
        assert hold.reached.wait(60), what
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        hold.released.set()
        if child.poll() is None:
            child.kill()
    assert hold.finished.wait(60)  # the held request has had its effect on the server
    client = client_for(stub, tokens)
    outcome = publish_design(store, client, str(stub.shop_id), design_id, nas.read_bytes)
    assert len(stub.listings) == 1, what
    assert outcome.listing_id in stub.listings
    assert sorted(i["rank"] for i in stub.images[outcome.listing_id]) == [1, 2, 3], what
    expected = "adopted" if endpoint == "createDraftListing" else "existing"
    assert outcome.action == expected
    assert store.listing(design_id, str(stub.shop_id)).status == "complete"
