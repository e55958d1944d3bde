"""The Etsy client against the local Etsy-like server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image

from designflow.etsy.client import (
    EtsyAuthError,
    EtsyClient,
    EtsyRequestError,
    EtsyTokens,
    EtsyUnavailable,
    MemoryTokenStore,
    RetryPolicy,
)
from designflow.testing.etsy_stub import EtsyStub

LISTING = {
    "title": "Retro sunset cat t-shirt",
    "description": "A cat watching a sunset.",
    "price": 24.5,
    "quantity": 10,
    "taxonomy_id": 482,
    "who_made": "i_did",
    "when_made": "made_to_order",
    "is_supply": False,
    "tags": ["cat", "sunset", "retro"],
    # the stub shop's own profiles (a physical listing needs the first two)
    "shipping_profile_id": 200000001,
    "readiness_state_id": 300000001,
}


def jpeg(color=(200, 30, 30), size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def stub():
    with EtsyStub(per_second=5) as server:
        yield server


def client_for(stub: EtsyStub, per_second: int = 10, attempts: int = 8, **token_args) -> EtsyClient:
    tokens = stub.authorize()
    store = MemoryTokenStore(
        EtsyTokens(
            refresh_token=token_args.get("refresh_token", tokens["refresh_token"]),
            access_token=token_args.get("access_token", tokens["access_token"]),
            expires_at=token_args.get("expires_at", time.time() + tokens["expires_in"]),
        )
    )
    return EtsyClient(
        stub.url, stub.keystring, stub.shared_secret, store, per_second=per_second,
        retry=RetryPolicy(attempts=attempts, base_s=0.05, cap_s=0.5),
    )  # fmt: skip


def test_listing_with_images_and_update(stub: EtsyStub) -> None:
    client = client_for(stub)
    shop = client.get_shop(str(stub.shop_id))
    assert shop["shop_name"] == stub.shop_name and shop["shop_id"] == stub.shop_id
    listing = client.create_draft_listing(str(stub.shop_id), LISTING)
    assert listing["state"] == "draft" and listing["tags"] == ["cat", "sunset", "retro"]
    assert listing["price"] == {"amount": 2450, "divisor": 100, "currency_code": "USD"}
    image = client.upload_listing_image(
        str(stub.shop_id), listing["listing_id"], jpeg(), "tshirt.jpg", rank=1, alt_text="front"
    )
    assert (image["rank"], image["full_width"], image["alt_text"]) == (1, 64, "front")
    assert [i["listing_image_id"] for i in client.get_listing_images(listing["listing_id"])] == [
        image["listing_image_id"]
    ]
    client.update_listing(str(stub.shop_id), listing["listing_id"], {"title": "New title"})
    assert stub.listings[listing["listing_id"]]["title"] == "New title"
    assert [d["listing_id"] for d in client.draft_listings(str(stub.shop_id))] == [
        listing["listing_id"]
    ]


def test_wrong_shared_secret_is_refused_without_showing_it(stub: EtsyStub) -> None:
    tokens = stub.authorize()
    store = MemoryTokenStore(
        EtsyTokens(tokens["refresh_token"], tokens["access_token"], time.time() + 3600)
    )
    client = EtsyClient(stub.url, stub.keystring, "not-the-secret-xyz", store)
    with pytest.raises(EtsyRequestError) as caught:
        client.get_shop(str(stub.shop_id))
    assert caught.value.status == 403
    assert "not-the-secret-xyz" not in str(caught.value)
    assert tokens["access_token"] not in str(caught.value)


def test_expired_access_token_is_refreshed_and_the_rotated_refresh_token_saved(
    stub: EtsyStub,
) -> None:
    client = client_for(stub)
    store = client._store
    first = store.load()
    client.get_shop(str(stub.shop_id))
    stub.expire_tokens()  # Etsy says 401 although our clock thinks the token is fresh
    client.get_shop(str(stub.shop_id))
    second = store.load()
    assert client.refreshes == 1 and store.saves == 1
    assert second.refresh_token != first.refresh_token and second.access_token != first.access_token
    assert stub.count("getShop", 401) == 1 and stub.count("getShop", 200) == 2
    # The old refresh token is void now (rotation): a client still holding it is refused.
    stale = client_for(stub, refresh_token=first.refresh_token, access_token=None, expires_at=0)
    with pytest.raises(EtsyAuthError, match="already used"):
        stale.get_shop(str(stub.shop_id))
    assert first.refresh_token not in repr(second)


def test_token_near_expiry_is_refreshed_before_the_call(stub: EtsyStub) -> None:
    client = client_for(stub, expires_at=time.time() + 10)  # inside the refresh margin
    client.get_shop(str(stub.shop_id))
    assert client.refreshes == 1 and stub.count("getShop", 401) == 0


def test_concurrent_callers_refresh_once(stub: EtsyStub) -> None:
    stub.per_second = 50
    client = client_for(stub, per_second=50)
    stub.expire_tokens()
    threads = [
        threading.Thread(target=client.get_shop, args=(str(stub.shop_id),)) for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.refreshes == 1 and stub.count("token") == 1
    assert stub.count("getShop", 200) == 6


def test_429_storm_finishes_and_never_exceeds_the_limit(stub: EtsyStub) -> None:
    client = client_for(stub, per_second=10)  # Etsy's header (5) lowers our 10
    listing = client.create_draft_listing(str(stub.shop_id), LISTING)
    stub.fail_next(12, status=429, headers=False)  # a 429 may come without any header
    errors: list[BaseException] = []

    def upload(rank: int) -> None:
        try:
            client.upload_listing_image(
                str(stub.shop_id), listing["listing_id"], jpeg(), "m.jpg", rank=rank
            )
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(r,)) for r in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(stub.images[listing["listing_id"]]) == 8
    assert stub.count("uploadListingImage", 429) >= 12
    assert client.limiter.limit == 5
    # The client spaces each 5 requests 1.15 s apart (1 s and a 150 ms margin for the way
    # there); what the server sees may come closer by how much later some requests travel,
    # which a busy 2-core machine stretches: the server's view is checked over 0.85 s, the
    # client's own over the full window it keeps.
    assert stub.max_requests_in_a_second(window_s=0.85) <= 5
    sent = sorted(r.at for r in stub.requests if r.endpoint != "token")
    assert len(sent) >= 8 + 12


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(stub: EtsyStub, status: int) -> None:
    """The README: Etsy's Retry-After is waited out when it is longer than our backoff."""
    client = client_for(stub)  # backoff of a few hundredths of a second
    stub.fail_next(1, status=status, retry_after=1.5)
    assert client.get_shop(str(stub.shop_id))["shop_id"] == stub.shop_id
    refused, answered = [r for r in stub.requests if r.endpoint == "getShop"]
    assert refused.status == status and answered.status == 200
    assert answered.at - refused.at >= 1.5


def test_server_errors_are_retried_then_succeed(stub: EtsyStub) -> None:
    client = client_for(stub)
    stub.fail_next(2, status=500)
    assert client.get_shop(str(stub.shop_id))["shop_id"] == stub.shop_id
    assert stub.count("getShop", 500) == 2 and stub.count("getShop", 200) == 1


def test_server_errors_past_the_retries_are_unavailable(stub: EtsyStub) -> None:
    client = client_for(stub, attempts=3)
    stub.fail_next(5, status=503)
    with pytest.raises(EtsyUnavailable, match="getShop: Etsy answered HTTP 503 3 time"):
        client.get_shop(str(stub.shop_id))


def test_a_400_names_the_field_and_is_not_retried(stub: EtsyStub) -> None:
    client = client_for(stub)
    with pytest.raises(EtsyRequestError) as caught:
        client.create_draft_listing(str(stub.shop_id), {**LISTING, "price": 0.1})
    assert caught.value.status == 400 and caught.value.field == "price"
    assert "createDraftListing" in str(caught.value) and "0.20" in str(caught.value)
    assert stub.count("createDraftListing") == 1
    with pytest.raises(EtsyRequestError) as missing:
        client.create_draft_listing(
            str(stub.shop_id), {k: v for k, v in LISTING.items() if k != "taxonomy_id"}
        )
    assert missing.value.field == "taxonomy_id"


def test_the_twenty_first_image_is_refused(stub: EtsyStub) -> None:
    client = client_for(stub, per_second=50)
    stub.per_second = 50
    listing = client.create_draft_listing(str(stub.shop_id), LISTING)
    for rank in range(1, 21):
        client.upload_listing_image(
            str(stub.shop_id), listing["listing_id"], jpeg(), "m.jpg", rank=rank
        )
    with pytest.raises(EtsyRequestError) as caught:
        client.upload_listing_image(str(stub.shop_id), listing["listing_id"], jpeg(), "m.jpg")
    assert caught.value.field == "image" and "at most 20" in str(caught.value)


def test_the_stub_command_serves_on_loopback() -> None:
    import subprocess
    import sys

    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "designflow.cli", "etsy-stub", "--port", "0", "--per-second", "3"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = proc.stdout.readline()
        assert first.startswith("Etsy-like server on http://127.0.0.1:"), first
        url = first.split(" on ", 1)[1].split(" ", 1)[0]
        answer = httpx.get(f"{url}/v3/application/shops/51234567")
        assert answer.status_code == 403 and "x-api-key" in answer.json()["error"]
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_two_processes_refreshing_at_once_do_not_lock_the_shop_out(stub: EtsyStub) -> None:
    """Both hold the same refresh token; the other one uses it first and saves the rotated
    tokens, so our exchange is refused (invalid_grant): we take the saved tokens instead of
    failing. The store is shared, as a Prefect block is between workers."""
    tokens = stub.authorize()
    shared = MemoryTokenStore(EtsyTokens(tokens["refresh_token"], tokens["access_token"], 0.0))
    ours = EtsyClient(stub.url, stub.keystring, stub.shared_secret, shared,
                      retry=RetryPolicy(base_s=0.05))  # fmt: skip
    other = EtsyClient(stub.url, stub.keystring, stub.shared_secret, shared,
                       retry=RetryPolicy(base_s=0.05))  # fmt: skip
    other.get_shop(str(stub.shop_id))  # refreshes first: the token we hold is now void
    assert other.refreshes == 1
    rotated = shared.load()
    # Make our client hold the void token and not see the rotation before exchanging it.
    ours._tokens = EtsyTokens(tokens["refresh_token"], None, 0.0)
    real_load = shared.load
    loads = iter([EtsyTokens(tokens["refresh_token"], None, 0.0)])
    shared.load = lambda: next(loads, None) or real_load()
    assert ours.get_shop(str(stub.shop_id))["shop_id"] == stub.shop_id
    assert stub.count("token", 400) == 1  # our exchange was refused...
    assert ours._tokens.refresh_token == rotated.refresh_token  # ...and we took the saved tokens
    assert ours.refreshes == 0
