"""A client for the parts of Etsy's Open API v3 that designflow uses.

Etsy cannot be reached from the development machines: the client is tested against
`designflow.testing.etsy_stub`, a local server that follows the documented endpoints, status codes
and rate-limit headers. Nothing here logs or raises with a token or the shared secret in it.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from designflow.errors import PermanentError

# Etsy's cap on images per listing: the spec's image_ids "can include up to 20".
MAX_LISTING_IMAGES = 20
# Listing fields that updateListing does not take: they change through the inventory.
INVENTORY_FIELDS = ("price", "quantity")
# Fields Etsy may name in an error although the request did not send them.
KNOWN_FIELDS = (
    "quantity", "title", "description", "price", "who_made", "when_made", "taxonomy_id",
    "tags", "is_supply", "image", "rank", "type", "shipping_profile_id", "readiness_state_id",
    "return_policy_id", "products",
)  # fmt: skip
# Refresh this long before the access token's stated expiry, so a call never starts with a
# token that lapses on its way to Etsy.
REFRESH_MARGIN_S = 60.0


class EtsyError(PermanentError, RuntimeError):
    """Base of every error the client raises; messages carry no credentials. Not retried
    by the tasks: the client itself already retried 429, 5xx and dropped connections."""


class EtsyAuthError(EtsyError):
    """The credentials were refused (the shop has to be connected again)."""


class EtsyUnavailable(EtsyError):
    """Etsy kept answering 429 or 5xx (or could not be reached) through every retry."""


class EtsyRequestError(EtsyError):
    """Etsy rejected the request (a 4xx other than 401 and 429): retrying will not help."""

    def __init__(self, operation: str, status: int, message: str, field: str | None) -> None:
        self.operation = operation
        self.status = status
        self.etsy_message = message
        self.field = field
        where = f" (field {field!r})" if field else ""
        super().__init__(f"{operation}: Etsy refused the request with {status}{where}: {message}")

    def __reduce__(self):  # picklable for Prefect's result store
        return (type(self), (self.operation, self.status, self.etsy_message, self.field))


@dataclass
class EtsyTokens:
    """OAuth2 tokens of one shop. Etsy rotates the refresh token on every refresh."""

    refresh_token: str = field(repr=False)
    access_token: str | None = field(default=None, repr=False)
    expires_at: float = 0.0  # epoch seconds

    def fresh(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return bool(self.access_token) and self.expires_at - REFRESH_MARGIN_S > now


class TokenStore(Protocol):
    """Where the tokens live between runs (a Prefect block in deployments)."""

    def load(self) -> EtsyTokens: ...

    def save(self, tokens: EtsyTokens) -> None: ...


class MemoryTokenStore:
    def __init__(self, tokens: EtsyTokens) -> None:
        self._tokens = tokens
        self.saves = 0

    def load(self) -> EtsyTokens:
        return EtsyTokens(
            self._tokens.refresh_token, self._tokens.access_token, self._tokens.expires_at
        )

    def save(self, tokens: EtsyTokens) -> None:
        self._tokens = EtsyTokens(tokens.refresh_token, tokens.access_token, tokens.expires_at)
        self.saves += 1


class PerSecondLimiter:
    """At most `limit` requests in any window of one second, shared by every thread using
    one client. The window is widened by a margin: requests sent 1.0 s apart arrive closer
    together when the first one was delayed on its way; 150 ms costs ~13% of the budget and
    absorbs a loaded machine's scheduling and ordinary network jitter. Etsy's own figure,
    sent in `x-limit-per-second`, lowers the limit; `x-remaining-this-second: 0` and a 429
    pause all callers, not only the one that saw it."""

    def __init__(
        self, limit: int, margin_s: float = 0.15, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1:
            raise ValueError("the per-second limit must be at least 1")
        self.configured = limit
        self.limit = limit
        self.margin_s = margin_s
        self._clock = clock
        self._sent: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                window = 1.0 + self.margin_s
                while self._sent and self._sent[0] <= now - window:
                    self._sent.popleft()
                wait = self._paused_until - now
                if wait <= 0 and len(self._sent) < self.limit:
                    self._sent.append(now)
                    return
                if len(self._sent) >= self.limit:
                    wait = max(wait, self._sent[0] + window - now)
            time.sleep(max(wait, 0.001))

    def observe(self, headers: Mapping[str, str]) -> None:
        limit = _int_header(headers, "x-limit-per-second")
        remaining = _int_header(headers, "x-remaining-this-second")
        with self._lock:
            if limit is not None and limit >= 1:
                self.limit = min(self.configured, limit)
            if remaining is not None and remaining <= 0:
                self._paused_until = max(self._paused_until, self._clock() + 1.0 + self.margin_s)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for 429, 5xx and connection errors: base * 2**attempt, capped, with jitter
    (each delay drawn between half and all of it), or Etsy's Retry-After if longer."""

    attempts: int = 6
    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        step = min(self.cap_s, self.base_s * (2**attempt))
        delay = random.uniform(step / 2, step)
        return max(delay, retry_after or 0.0)


class EtsyClient:
    """getShop, createDraftListing, uploadListingImage, updateListing and the reads that let
    a retried publish find what an earlier attempt already did."""

    def __init__(
        self,
        base_url: str,
        keystring: str,
        shared_secret: str,
        tokens: TokenStore,
        per_second: int = 5,
        retry: RetryPolicy | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("the Etsy base URL must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self._keystring = keystring
        self._api_key = f"{keystring}:{shared_secret}"
        self._store = tokens
        self._tokens = tokens.load()
        self._token_lock = threading.Lock()
        self.limiter = PerSecondLimiter(per_second)
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s)
        self.refreshes = 0

    def close(self) -> None:
        self._http.close()

    # -- endpoints ---------------------------------------------------------------------------

    def get_shop(self, shop_id: str) -> dict[str, Any]:
        return self._call("getShop", "GET", f"/v3/application/shops/{_id(shop_id)}")

    def create_draft_listing(self, shop_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(
            "createDraftListing", "POST", f"/v3/application/shops/{_id(shop_id)}/listings",
            data=_form(fields),
        )  # fmt: skip

    def update_listing(
        self, shop_id: str, listing_id: int, fields: Mapping[str, Any]
    ) -> dict[str, Any]:
        """updateListing: every field but price and quantity, which Etsy's updateListing does
        not take (they go through `update_listing_inventory`)."""
        editable = {k: v for k, v in fields.items() if k not in INVENTORY_FIELDS}
        return self._call(
            "updateListing", "PATCH",
            f"/v3/application/shops/{_id(shop_id)}/listings/{int(listing_id)}", data=_form(editable),
        )  # fmt: skip

    def update_listing_inventory(
        self, listing_id: int, price: float, quantity: int, sku: str = ""
    ) -> dict[str, Any]:
        """updateListingInventory (JSON) for a listing without variations: one product with
        one offering carries the price and the quantity."""
        body = {
            "products": [{
                "sku": sku, "property_values": [],
                "offerings": [{"price": float(price), "quantity": int(quantity), "is_enabled": True}],
            }],
            "price_on_property": [], "quantity_on_property": [], "sku_on_property": [],
        }  # fmt: skip
        return self._call(
            "updateListingInventory", "PUT", f"/v3/application/listings/{int(listing_id)}/inventory",
            json=body,
        )  # fmt: skip

    def get_listing_inventory(self, listing_id: int) -> dict[str, Any]:
        return self._call(
            "getListingInventory", "GET", f"/v3/application/listings/{int(listing_id)}/inventory"
        )

    def shipping_profiles(self, shop_id: str) -> list[dict[str, Any]]:
        return self._results("getShopShippingProfiles", shop_id, "shipping-profiles")

    def readiness_state_definitions(self, shop_id: str) -> list[dict[str, Any]]:
        return self._results(
            "getShopReadinessStateDefinitions", shop_id, "readiness-state-definitions"
        )

    def return_policies(self, shop_id: str) -> list[dict[str, Any]]:
        return self._results("getShopReturnPolicies", shop_id, "policies/return")

    def _results(self, operation: str, shop_id: str, resource: str) -> list[dict[str, Any]]:
        """A shop's list resource (its `results`)."""
        body = self._call(operation, "GET", f"/v3/application/shops/{_id(shop_id)}/{resource}")
        return list(body.get("results", []))

    def upload_listing_image(
        self, shop_id: str, listing_id: int, image: bytes, filename: str,
        rank: int | None = None, alt_text: str | None = None, overwrite: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """`overwrite`: the image replaces the one at `rank` (Etsy's overwrite parameter)."""
        data: dict[str, str] = {}
        if rank is not None:
            data["rank"] = str(rank)
        if overwrite:
            data["overwrite"] = "true"
        if alt_text:
            data["alt_text"] = alt_text[:500]
        return self._call(
            "uploadListingImage", "POST",
            f"/v3/application/shops/{_id(shop_id)}/listings/{int(listing_id)}/images",
            data=data, files={"image": (filename, image, "image/jpeg")},
        )  # fmt: skip

    def get_listing_images(self, listing_id: int) -> list[dict[str, Any]]:
        body = self._call(
            "getListingImages", "GET", f"/v3/application/listings/{int(listing_id)}/images"
        )
        return list(body.get("results", []))

    def draft_listings(self, shop_id: str, page: int = 100) -> Iterator[dict[str, Any]]:
        """Every draft listing of the shop (getListingsByShop, state=draft), paged with
        limit/offset. No sort order is asked for: Etsy's spec applies `sort_on` only with
        search options, so a shop's newest draft may be on any page."""
        offset = 0
        while True:
            body = self._call(
                "getListingsByShop", "GET", f"/v3/application/shops/{_id(shop_id)}/listings",
                params={"state": "draft", "limit": page, "offset": offset},
            )  # fmt: skip
            results = list(body.get("results", []))
            yield from results
            offset += len(results)
            if len(results) < page or offset >= int(body.get("count", offset)):
                return

    # -- transport ---------------------------------------------------------------------------

    def _call(self, operation: str, method: str, path: str, **request: Any) -> dict[str, Any]:
        refreshed = False
        attempt = 0
        while True:
            self.limiter.acquire()
            token = self._access_token()
            headers = {"x-api-key": self._api_key, "Authorization": f"Bearer {token}"}
            try:
                response = self._http.request(method, path, headers=headers, **request)
            except httpx.TransportError as exc:
                attempt = self._back_off(operation, attempt, f"{type(exc).__name__}", None)
                continue
            self.limiter.observe(response.headers)
            status = response.status_code
            if status == 401 and not refreshed:
                refreshed = True  # one refresh per call: a second 401 is a real refusal
                self._refresh(stale=token)
                continue
            if status == 401:
                raise EtsyAuthError(f"{operation}: Etsy refused the access token after a refresh")
            if status == 429 or status >= 500:
                retry_after = _retry_after(response.headers)
                if status == 429:  # everyone waits, not only this caller
                    self.limiter.pause(retry_after or 1.0)
                attempt = self._back_off(operation, attempt, f"HTTP {status}", retry_after)
                continue
            if status >= 400:
                message = _error_message(response)
                raise EtsyRequestError(operation, status, message, _field_of(message, request))
            return response.json() if response.content else {}

    def _back_off(self, operation: str, attempt: int, what: str, retry_after: float | None) -> int:
        if attempt + 1 >= self.retry.attempts:
            raise EtsyUnavailable(
                f"{operation}: Etsy answered {what} {attempt + 1} time(s) in a row"
            )
        time.sleep(self.retry.delay(attempt, retry_after))
        return attempt + 1

    def _access_token(self) -> str:
        with self._token_lock:
            if self._tokens.fresh():
                return str(self._tokens.access_token)
        self._refresh(stale=None)
        with self._token_lock:
            return str(self._tokens.access_token)

    def _refresh(self, stale: str | None) -> None:
        """Exchange the refresh token for new tokens and save them before using them (the old
        refresh token is void once Etsy answers). One thread refreshes; the others reuse."""
        with self._token_lock:
            current = self._tokens
            if current.fresh() and current.access_token != stale:
                return  # another thread refreshed while this one waited
            stored = self._store.load()
            if stored.refresh_token != current.refresh_token:
                self._tokens = current = stored  # another process rotated the tokens
                if current.fresh() and current.access_token != stale:
                    return
            try:
                self._tokens = self._exchange(current.refresh_token)
            except EtsyAuthError:
                # Another process may have used the same refresh token a moment earlier (two
                # workers refreshing at once): its rotated tokens are in the store by now.
                stored = self._store.load()
                if stored.refresh_token == current.refresh_token:
                    raise
                self._tokens = stored
                if stored.fresh() and stored.access_token != stale:
                    return
                self._tokens = self._exchange(stored.refresh_token)
            self._store.save(self._tokens)
            self.refreshes += 1

    def _exchange(self, refresh_token: str) -> EtsyTokens:
        attempt = 0
        while True:
            self.limiter.acquire()
            try:
                response = self._http.post(
                    "/v3/public/oauth/token",
                    data={"grant_type": "refresh_token", "client_id": self._keystring,
                          "refresh_token": refresh_token},
                    headers={"x-api-key": self._api_key},
                )  # fmt: skip
            except httpx.TransportError as exc:
                attempt = self._back_off("token refresh", attempt, type(exc).__name__, None)
                continue
            self.limiter.observe(response.headers)
            if response.status_code == 429 or response.status_code >= 500:
                attempt = self._back_off(
                    "token refresh", attempt, f"HTTP {response.status_code}",
                    _retry_after(response.headers),
                )  # fmt: skip
                continue
            if response.status_code >= 400:
                raise EtsyAuthError(
                    f"token refresh: Etsy refused the refresh token ({_error_message(response)}); "
                    "connect the shop again (`designflow etsy connect`)"
                )
            body = response.json()
            return EtsyTokens(
                refresh_token=str(body["refresh_token"]),
                access_token=str(body["access_token"]),
                expires_at=time.time() + float(body.get("expires_in", 3600)),
            )


def _id(value: str | int) -> str:
    text = str(value)
    if not text.isdigit():
        raise ValueError(f"Etsy ids are numbers, got {text!r}")
    return text


def _form(fields: Mapping[str, Any]) -> dict[str, str]:
    """Etsy takes listing fields form-encoded; lists (tags) as comma-separated strings."""
    out: dict[str, str] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, list | tuple):
            out[key] = ",".join(str(v) for v in value)
        else:
            out[key] = str(value)
    return out


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("retry-after")
    try:
        return min(float(raw), 120.0) if raw is not None else None
    except ValueError:
        return None


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, ValueError):
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("error", "error_description") if body.get(k)]
        if parts:
            return ": ".join(parts)[:500]
    return str(body)[:300]


def _field_of(message: str, request: Mapping[str, Any]) -> str | None:
    """The request field Etsy's message names (Etsy names it in prose, not in a key)."""
    names = list((request.get("data") or {}).keys()) + list((request.get("files") or {}).keys())
    names += [n for n in KNOWN_FIELDS if n not in names]  # a missing field is not in the request
    for name in sorted(names, key=len, reverse=True):
        if re.search(rf"(?<![A-Za-z_]){re.escape(name)}(?![A-Za-z_])", message):
            return name
    return None
