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
from designflow.storage.nas import LocalNas
from designflow.testing.etsy_stub import EtsyStub
from tests.core.publishing import publish_design
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
    from tests.core.publishing import publish_design
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


def test_publish_run_decides_outcomes_errors_and_rows() -> None:
    """The run's decisions without any I/O: the listing's error wins, else the first failed
    image's; only listings whose every step succeeded are finished; one row per design."""
    from designflow.etsy.publish import PublishRun

    run = PublishRun({"shop_id": "7", "shop_name": "S"}, [1, 2, 3], max_images=2)
    mockups = [{"design_id": d, "id": 10 * d + m, "template_id": f"t{m}", "nas_path": f"m/{d}/{m}"}
               for d in (1, 2) for m in range(3)]  # fmt: skip
    listing = {"listing_id": 501, "action": "created", "title": "One", "on_etsy": {}}
    plans = run.listing_made(1, listing, None, mockups)
    assert [(p.rank, p.template_id) for p in plans] == [(1, "t0"), (2, "t1")]
    assert [s["template_id"] for s in run.outcomes[1].skipped] == ["t2"]  # over the limit
    for plan in plans:
        run.image_done(1, {"rank": plan.rank}, None)
    two = dict(listing, listing_id=502, title="Two")
    assert len(run.listing_made(2, two, None, mockups)) == 2
    run.image_done(2, None, "HTTP 500 from Etsy")
    run.image_done(2, None, "timed out")
    assert run.listing_made(3, None, "EtsyError: 400 title", mockups) == []
    assert run.outcomes[2].error == "image upload failed: HTTP 500 from Etsy"
    assert run.outcomes[3].error == "EtsyError: 400 title"
    assert run.to_finish() == [(1, run.outcomes[1].skipped)]
    rows = {r["design_id"]: r for r in run.rows()}
    assert (rows[1]["images"], rows[1]["not_uploaded"], rows[1]["error"]) == (2, 1, "")
    assert rows[2]["listing_id"] == 502 and rows[2]["error"].startswith("image upload failed")
    assert [o["design_id"] for o in run.result()["listings"]] == [1, 2, 3]
    run.fail_all("no shipping profile")
    assert {o.error for o in run.outcomes.values()} == {"no shipping profile"}
