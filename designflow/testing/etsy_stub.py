"""A local server that behaves like the parts of Etsy's Open API v3 that designflow calls.

It checks the `x-api-key` (keystring:shared_secret) and Bearer headers, the required
listing fields, the 10-image cap and a per-second limit (429 with the rate-limit headers);
it issues OAuth tokens that expire and refresh tokens that rotate (a used one is void), and
it can be told to fail the next N calls or to hold a call, for fault tests. Run it with
`designflow etsy-stub`; it listens on 127.0.0.1 only.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from designflow.etsy.listings import when_made_values

REQUIRED_LISTING_FIELDS = (
    "quantity", "title", "description", "price", "who_made", "when_made", "taxonomy_id",
)  # fmt: skip
WHO_MADE = {"i_did", "someone_else", "collective"}
LISTING_TYPES = {"physical", "download", "both"}
MAX_IMAGES = 20  # the spec: image_ids "can include up to 20"
# Etsy: these characters at most once in a title; tags of letters, numbers, whitespace,
# - ' ™ © ® only.
TITLE_ONCE = "%:&+"
TAG_PATTERN = re.compile(r"^(?:[^\W_]|[\s\-'™©®])+$")


def when_made_now() -> set[str]:
    """The when_made values Etsy accepts this year (they move every January)."""
    return set(when_made_values(date.today().year))


@dataclass
class Fault:
    status: int
    remaining: int
    headers: bool
    retry_after: float | None = None


@dataclass
class Hold:
    """Blocks one endpoint: `reached` is set when a call arrives; it answers after `release`;
    `finished` is set once the call has had its effect and its answer is on its way."""

    endpoint: str
    after_effect: bool  # True: the call takes effect, then waits before answering
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


@dataclass
class Request:
    at: float
    method: str
    endpoint: str
    status: int
    path: str = ""
    content_type: str = ""  # the request's media type (form, multipart, JSON)


class EtsyStub:
    def __init__(
        self,
        keystring: str = "stubkeystring0001",
        shared_secret: str = "stubsharedsecret",
        shop_id: int = 51234567,
        shop_name: str = "DesignflowTestShop",
        per_second: int = 5,
        per_day: int = 10_000,
        access_ttl_s: float = 3600.0,
        port: int = 0,
    ) -> None:
        self.keystring = keystring
        self.shared_secret = shared_secret
        self.shop_id = shop_id
        self.shop_name = shop_name
        self.user_id = 87654321
        self.per_second = per_second
        self.per_day = per_day
        self.access_ttl_s = access_ttl_s
        self.lock = threading.Lock()
        self.access_tokens: dict[str, float] = {}  # token -> expiry (epoch)
        self.refresh_tokens: set[str] = set()
        self.used_refresh_tokens: set[str] = set()
        self.listings: dict[int, dict[str, Any]] = {}
        self.inventories: dict[int, dict[str, Any]] = {}
        # The shop's profiles: one of each by default, as a shop that sells physical goods has.
        self.shipping_profiles: list[dict[str, Any]] = [
            {"shipping_profile_id": 200000001, "title": "Standard shipping", "user_id": self.user_id,
             "origin_country_iso": "US", "processing_days_display_label": "1-3 days"}
        ]  # fmt: skip
        self.readiness_states: list[dict[str, Any]] = [
            {"readiness_state_id": 300000001, "readiness_state": "made_to_order",
             "min_processing_time": 1, "max_processing_time": 3, "processing_time_unit": "days"}
        ]  # fmt: skip
        self.return_policies: list[dict[str, Any]] = [
            {"return_policy_id": 400000001, "shop_id": shop_id, "accepts_returns": True,
             "accepts_exchanges": True, "return_deadline": 30}
        ]  # fmt: skip
        self.images: dict[int, list[dict[str, Any]]] = {}
        self.requests: list[Request] = []
        self._seen = threading.local()
        self._admitted: deque[float] = deque()
        self._today = 0
        self._faults: list[Fault] = []
        self._holds: list[Hold] = []
        self._next_listing = 1_500_000_000
        self._next_image = 5_000_000_000
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> EtsyStub:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for hold in self._holds:
            hold.released.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> EtsyStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- controls used by tests and the CLI -------------------------------------------------

    def authorize(self) -> dict[str, Any]:
        """Tokens as the OAuth authorization-code grant would return them."""
        with self.lock:
            return self._issue()

    def expire_tokens(self) -> None:
        with self.lock:
            for token in self.access_tokens:
                self.access_tokens[token] = 0.0

    def fail_next(
        self, count: int, status: int = 500, headers: bool = True, retry_after: float | None = None
    ) -> None:
        """The next `count` calls answer `status`; `retry_after` adds a Retry-After header."""
        with self.lock:
            self._faults.append(Fault(status, count, headers, retry_after))

    def hold(self, endpoint: str, after_effect: bool = False) -> Hold:
        hold = Hold(endpoint, after_effect)
        with self.lock:
            self._holds.append(hold)
        return hold

    def add_draft(self, title: str, **fields: Any) -> int:
        """A draft listing already in the shop (made by the seller or an earlier run)."""
        form = {
            "title": title, "description": "made elsewhere", "price": "10", "quantity": "1",
            "who_made": "i_did", "when_made": "made_to_order", "taxonomy_id": "1",
            "shipping_profile_id": str(self.shipping_profiles[0]["shipping_profile_id"]),
            "readiness_state_id": str(self.readiness_states[0]["readiness_state_id"]),
            **{k: str(v) for k, v in fields.items()},
        }  # fmt: skip
        with self.lock:
            status, body = self._create(form)
        if status != 201:
            raise ValueError(body["error"])
        return int(body["listing_id"])

    def max_requests_in_a_second(self, window_s: float = 1.0) -> int:
        """The most requests (admitted or not) that arrived within any `window_s`."""
        times = sorted(r.at for r in self.requests if r.endpoint != "token")
        best, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= window_s:
                start += 1
            best = max(best, end - start + 1)
        return best

    def count(self, endpoint: str, status: int | None = None) -> int:
        return sum(
            1
            for r in self.requests
            if r.endpoint == endpoint and (status is None or r.status == status)
        )

    # -- request handling --------------------------------------------------------------------

    def _issue(self) -> dict[str, Any]:
        access = f"{self.user_id}.{secrets.token_urlsafe(24)}"
        refresh = f"{self.user_id}.{secrets.token_urlsafe(24)}"
        self.access_tokens[access] = time.time() + self.access_ttl_s
        self.refresh_tokens.add(refresh)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(self.access_ttl_s),
            "refresh_token": refresh,
        }

    def _rate_headers(self, remaining: int) -> dict[str, str]:
        return {
            "x-limit-per-second": str(self.per_second),
            "x-remaining-this-second": str(max(remaining, 0)),
            "x-limit-per-day": str(self.per_day),
            "x-remaining-today": str(max(self.per_day - self._today, 0)),
        }

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes):
        """Returns (status, headers, json body, hold to wait on after answering is decided)."""
        url = urlsplit(target)
        endpoint, args = _route(method, url.path)
        self._seen.request = (url.path, headers.get("content-type", "").split(";")[0])
        now = time.time()
        with self.lock:
            fault = next((f for f in self._faults if f.remaining > 0), None)
            if fault is not None:
                fault.remaining -= 1
                extra = self._rate_headers(0) if fault.headers else {}
                if fault.retry_after is not None:
                    extra["retry-after"] = f"{fault.retry_after:g}"
                return self._log(now, method, endpoint, fault.status, extra,
                                 {"error": "Server Error" if fault.status >= 500 else "Too Many Requests"})  # fmt: skip
            if endpoint is None:
                return self._log(now, method, "unknown", 404, {}, {"error": "Resource not found"})
            if endpoint == "token":
                return self._log(now, method, endpoint, *self._token(body))
            if headers.get("x-api-key") != f"{self.keystring}:{self.shared_secret}":
                return self._log(now, method, endpoint, 403, {},
                                 {"error": "Invalid API key: expected keystring:shared_secret in x-api-key"})  # fmt: skip
            # The per-second limit counts admitted calls in the last second.
            while self._admitted and self._admitted[0] <= now - 1.0:
                self._admitted.popleft()
            if len(self._admitted) >= self.per_second or self._today >= self.per_day:
                return self._log(now, method, endpoint, 429, self._rate_headers(0),
                                 {"error": "You have exceeded your quota of requests per second"})  # fmt: skip
            self._admitted.append(now)
            self._today += 1
            rate = self._rate_headers(self.per_second - len(self._admitted))
            auth = headers.get("authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else ""
            expiry = self.access_tokens.get(token)
            if expiry is None or expiry <= now:
                return self._log(now, method, endpoint, 401, rate,
                                 {"error": "invalid_token", "error_description": "access token is expired or not valid"})  # fmt: skip
            hold = next(
                (h for h in self._holds if h.endpoint == endpoint and not h.reached.is_set()), None
            )
        if hold is not None and not hold.after_effect:
            hold.reached.set()
            hold.released.wait(timeout=120)
        with self.lock:
            status, body_out = self._dispatch(endpoint, args, url.query, headers, body)
            result = self._log(now, method, endpoint, status, rate, body_out)
        if hold is not None and hold.after_effect:
            hold.reached.set()
            hold.released.wait(timeout=120)
        if hold is not None:
            hold.finished.set()
        return result

    def _log(self, now: float, method: str, endpoint: str, status: int, headers: dict, body: Any):
        path, content_type = getattr(self._seen, "request", ("", ""))
        self.requests.append(Request(now, method, endpoint, status, path, content_type))
        return status, headers, body

    def _token(self, body: bytes) -> tuple[int, dict, dict]:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "refresh_token" or form.get("client_id") != self.keystring:
            return (
                400,
                {},
                {
                    "error": "invalid_request",
                    "error_description": "grant_type or client_id is wrong",
                },
            )
        token = form.get("refresh_token", "")
        if token not in self.refresh_tokens:
            reason = (
                "refresh token was already used"
                if token in self.used_refresh_tokens
                else "refresh token is not valid"
            )
            return 400, {}, {"error": "invalid_grant", "error_description": reason}
        self.refresh_tokens.discard(token)
        self.used_refresh_tokens.add(token)
        return 200, {}, self._issue()

    def _dispatch(self, endpoint: str, args: dict, query: str, headers: dict, body: bytes):
        shop_id = args.get("shop_id")
        if shop_id is not None and shop_id != self.shop_id:
            return 404, {"error": f"Shop with shop_id {shop_id} not found"}
        if endpoint == "getShop":
            return 200, self._shop()
        if endpoint == "createDraftListing":
            return self._create(_form(body))
        if endpoint == "getListingsByShop":
            return self._listings_by_shop({k: v[0] for k, v in parse_qs(query).items()})
        if endpoint == "getShopShippingProfiles":
            return 200, {
                "count": len(self.shipping_profiles),
                "results": [dict(p) for p in self.shipping_profiles],
            }
        if endpoint == "getShopReadinessStateDefinitions":
            return 200, {
                "count": len(self.readiness_states),
                "results": [dict(p) for p in self.readiness_states],
            }
        if endpoint == "getShopReturnPolicies":
            return 200, {
                "count": len(self.return_policies),
                "results": [dict(p) for p in self.return_policies],
            }
        listing = self.listings.get(args.get("listing_id", -1))
        if listing is None:
            return 404, {"error": f"Listing {args.get('listing_id')} not found"}
        if endpoint == "updateListing":
            return self._update(listing, _form(body))
        if endpoint == "getListingImages":
            found = self.images.get(listing["listing_id"], [])
            return 200, {"count": len(found), "results": [dict(i) for i in found]}
        if endpoint == "uploadListingImage":
            return self._upload_image(listing, headers.get("content-type", ""), body)
        if endpoint == "getListingInventory":
            return 200, self.inventories[listing["listing_id"]]
        if endpoint == "updateListingInventory":
            return self._update_inventory(listing, headers.get("content-type", ""), body)
        return 404, {"error": "Resource not found"}

    def _listings_by_shop(self, params: dict[str, str]):
        """Paged with limit (1-100, default 25) and offset. `sort_on` applies only with
        search options (the spec): without them, the order is the stub's own (oldest
        first), so a client that trusts a sort order misses new drafts of a large shop."""
        try:
            limit, offset = int(params.get("limit", 25)), int(params.get("offset", 0))
        except ValueError:
            return 400, {"error": "limit and offset must be integers"}
        if not 1 <= limit <= 100 or offset < 0:
            return 400, {"error": "limit must be between 1 and 100, offset at least 0"}
        rows = [
            dict(v) for v in self.listings.values() if v["state"] == params.get("state", "active")
        ]
        rows.sort(key=lambda r: r["listing_id"])
        return 200, {"count": len(rows), "results": rows[offset : offset + limit]}

    def _update_inventory(self, listing: dict[str, Any], content_type: str, body: bytes):
        if "application/json" not in content_type:
            return 400, {"error": "updateListingInventory takes a JSON body"}
        try:
            products = json.loads(body)["products"]
            offering = products[0]["offerings"][0]
            price, quantity = float(offering["price"]), int(offering["quantity"])
        except (ValueError, KeyError, IndexError, TypeError):
            return 400, {
                "error": "products: expected products[].offerings[] with price and quantity"
            }
        if price < 0.2:
            return 400, {"error": "price must be at least 0.20"}
        if not 0 <= quantity <= 999:
            return 400, {"error": "quantity must be an integer between 0 and 999"}
        listing["price"] = _money(str(price))
        listing["quantity"] = quantity
        self.inventories[listing["listing_id"]] = self._inventory(listing, products)
        return 200, self.inventories[listing["listing_id"]]

    def _inventory(self, listing: dict[str, Any], products: list | None = None) -> dict[str, Any]:
        given = (products or [{}])[0]
        return {
            "products": [{
                "product_id": listing["listing_id"] * 10, "sku": given.get("sku", ""),
                "is_deleted": False, "property_values": [],
                "offerings": [{"offering_id": listing["listing_id"] * 100, "quantity": listing["quantity"],
                               "is_enabled": True, "is_deleted": False, "price": listing["price"]}],
            }],
            "price_on_property": [], "quantity_on_property": [], "sku_on_property": [],
        }  # fmt: skip

    def _shop(self) -> dict[str, Any]:
        return {
            "shop_id": self.shop_id, "user_id": self.user_id, "shop_name": self.shop_name,
            "create_date": 1609459200, "created_timestamp": 1609459200, "title": "Designs for every day",
            "announcement": None, "currency_code": "USD", "is_vacation": False,
            "url": f"https://www.etsy.com/shop/{self.shop_name}",
            "listing_active_count": sum(1 for v in self.listings.values() if v["state"] == "active"),
            "digital_listing_count": 0, "login_name": "designflow-seller",
            "accepts_custom_requests": False, "num_favorers": 0, "languages": ["en-US"],
        }  # fmt: skip

    def _check_listing_fields(self, form: dict[str, str], required: bool) -> str | None:
        if required:
            missing = [f for f in REQUIRED_LISTING_FIELDS if not form.get(f)]
            if missing:
                return f"Missing required parameter(s): {', '.join(missing)}"
        if "title" in form and not 0 < len(form["title"]) <= 140:
            return "title must be between 1 and 140 characters"
        if "quantity" in form and not (
            form["quantity"].isdigit() and 1 <= int(form["quantity"]) <= 999
        ):
            return "quantity must be an integer between 1 and 999"
        if "price" in form:
            try:
                if float(form["price"]) < 0.2:
                    return "price must be at least 0.20"
            except ValueError:
                return f"price must be a number, got {form['price']!r}"
        if "taxonomy_id" in form and not form["taxonomy_id"].isdigit():
            return "taxonomy_id must be an integer"
        if "who_made" in form and form["who_made"] not in WHO_MADE:
            return f"who_made must be one of {', '.join(sorted(WHO_MADE))}"
        if "when_made" in form and form["when_made"] not in when_made_now():
            return f"when_made must be one of {', '.join(sorted(when_made_now()))}"
        if "title" in form and any(form["title"].count(c) > 1 for c in TITLE_ONCE):
            return "title may contain the characters %, :, & and + no more than once each"
        if form.get("tags"):
            tags = [t.strip() for t in form["tags"].split(",") if t.strip()]
            if len(tags) > 13:
                return "tags: a listing can have at most 13 tags"
            if any(len(t) > 20 for t in tags):
                return "tags: each tag must be 20 characters or fewer"
            if any(not TAG_PATTERN.match(t) for t in tags):
                return "tags may only contain letters, numbers, whitespace, -, ', ™, © and ®"
            if len({t.lower() for t in tags}) != len(tags):
                return "tags must be unique"
        listing_type = form.get("type", "physical")
        if listing_type not in LISTING_TYPES:
            return f"type must be one of {', '.join(sorted(LISTING_TYPES))}"
        for name, known in (
            ("shipping_profile_id", self.shipping_profiles),
            ("readiness_state_id", self.readiness_states),
            ("return_policy_id", self.return_policies),
        ):
            if form.get(name) and int(form[name]) not in {p[name] for p in known}:
                return f"{name} {form[name]} does not belong to this shop"
        if required and listing_type == "physical":
            if not form.get("shipping_profile_id"):
                return "A shipping_profile_id is required for physical listings."
            if not form.get("readiness_state_id"):
                return "A readiness_state_id is required for physical listings."
        return None

    def _create(self, form: dict[str, str]):
        problem = self._check_listing_fields(form, required=True)
        if problem:
            return 400, {"error": problem}
        listing_id = self._next_listing
        self._next_listing += 1
        now = int(time.time())
        listing = {
            "listing_id": listing_id, "user_id": self.user_id, "shop_id": self.shop_id,
            "title": form["title"], "description": form["description"], "state": "draft",
            "creation_timestamp": now, "created_timestamp": now, "ending_timestamp": now + 120 * 86400,
            "original_creation_timestamp": now, "last_modified_timestamp": now, "updated_timestamp": now,
            "state_timestamp": now, "quantity": int(form["quantity"]), "shop_section_id": None,
            "featured_rank": -1, "url": f"https://www.etsy.com/listing/{listing_id}",
            "num_favorers": 0, "non_taxable": False, "is_taxable": True, "is_customizable": False,
            "is_personalizable": False, "listing_type": form.get("type", "physical"),
            "tags": [t.strip() for t in form.get("tags", "").split(",") if t.strip()],
            "materials": [], "shipping_profile_id": _int_or_none(form.get("shipping_profile_id")),
            "return_policy_id": _int_or_none(form.get("return_policy_id")),
            "readiness_state_id": _int_or_none(form.get("readiness_state_id")),
            "who_made": form["who_made"], "when_made": form["when_made"],
            "is_supply": form.get("is_supply") == "true", "taxonomy_id": int(form["taxonomy_id"]),
            "price": _money(form["price"]), "views": 0,
        }  # fmt: skip
        self.listings[listing_id] = listing
        self.images[listing_id] = []
        self.inventories[listing_id] = self._inventory(listing)
        return 201, dict(listing)

    def _update(self, listing: dict[str, Any], form: dict[str, str]):
        problem = self._check_listing_fields(form, required=False)
        if problem:
            return 400, {"error": problem}
        # updateListing has no price or quantity (they live in the inventory): like Etsy,
        # the stub ignores them here.
        for key in ("title", "description", "who_made", "when_made", "type"):
            if key in form:
                listing[key] = form[key]
        for key in ("taxonomy_id", "shipping_profile_id", "readiness_state_id", "return_policy_id"):
            if key in form:
                listing[key] = int(form[key])
        if "tags" in form:
            listing["tags"] = [t.strip() for t in form["tags"].split(",") if t.strip()]
        listing["updated_timestamp"] = listing["last_modified_timestamp"] = int(time.time())
        return 200, dict(listing)

    def _upload_image(self, listing: dict[str, Any], content_type: str, body: bytes):
        parts = _multipart(content_type, body)
        if parts is None:
            return 400, {"error": "image: expected a multipart/form-data upload"}
        image = parts.get("image")
        if image is None or not image:
            return 400, {"error": "Missing required parameter(s): image"}
        if not (
            image.startswith(b"\xff\xd8\xff")
            or image.startswith(b"\x89PNG")
            or image.startswith(b"GIF8")
        ):
            return 400, {"error": "image: the file is not a JPEG, PNG or GIF image"}
        found = self.images[listing["listing_id"]]
        # overwrite=true: the new image takes the place of the one at its rank.
        overwrite = parts.get("overwrite", b"").decode().lower() in ("true", "1")
        if len(found) >= MAX_IMAGES and not overwrite:
            return 400, {"error": f"image: a listing can have at most {MAX_IMAGES} images"}
        rank_raw = parts.get("rank", b"").decode() or str(len(found) + 1)
        if not rank_raw.isdigit() or not 1 <= int(rank_raw) <= MAX_IMAGES:
            return 400, {"error": f"rank must be an integer between 1 and {MAX_IMAGES}"}
        if overwrite:
            found[:] = [i for i in found if i["rank"] != int(rank_raw)]
        if len(found) >= MAX_IMAGES:
            return 400, {"error": f"image: a listing can have at most {MAX_IMAGES} images"}
        image_id = self._next_image
        self._next_image += 1
        width, height = _jpeg_size(image)
        record = {
            "listing_id": listing["listing_id"], "listing_image_id": image_id,
            "hex_code": None, "red": None, "green": None, "blue": None, "hue": None,
            "saturation": None, "brightness": None, "is_black_and_white": None,
            "creation_tsz": int(time.time()), "created_timestamp": int(time.time()),
            "rank": int(rank_raw), "url_75x75": f"https://i.etsystatic.com/stub/{image_id}/il_75x75.jpg",
            "url_170x135": f"https://i.etsystatic.com/stub/{image_id}/il_170x135.jpg",
            "url_570xN": f"https://i.etsystatic.com/stub/{image_id}/il_570xN.jpg",
            "url_fullxfull": f"https://i.etsystatic.com/stub/{image_id}/il_fullxfull.jpg",
            "full_height": height, "full_width": width,
            "alt_text": parts.get("alt_text", b"").decode() or None, "bytes": len(image),
        }  # fmt: skip
        found.append(record)
        return 201, dict(record)


_ROUTES = [
    ("POST", re.compile(r"^/v3/public/oauth/token$"), "token"),
    ("GET", re.compile(r"^/v3/application/shops/(?P<shop_id>\d+)$"), "getShop"),
    ("POST", re.compile(r"^/v3/application/shops/(?P<shop_id>\d+)/listings$"), "createDraftListing"),
    ("GET", re.compile(r"^/v3/application/shops/(?P<shop_id>\d+)/listings$"), "getListingsByShop"),
    ("PATCH", re.compile(r"^/v3/application/shops/(?P<shop_id>\d+)/listings/(?P<listing_id>\d+)$"), "updateListing"),
    ("POST", re.compile(r"^/v3/application/shops/(?P<shop_id>\d+)/listings/(?P<listing_id>\d+)/images$"), "uploadListingImage"),
    ("GET", re.compile(r"^/v3/application/listings/(?P<listing_id>\d+)/images$"), "getListingImages"),
    ("GET", re.compile(r"^/v3/application/listings/(?P<listing_id>\d+)/inventory$"), "getListingInventory"),
    ("PUT", re.compile(r"^/v3/application/listings/(?P<listing_id>\d+)/inventory$"), "updateListingInventory"),
    ("GET", re.compile(r"^/v3/application/shops/(?P<shop_id>\d+)/shipping-profiles$"), "getShopShippingProfiles"),
    ("GET", re.compile(r"^/v3/application/shops/(?P<shop_id>\d+)/readiness-state-definitions$"), "getShopReadinessStateDefinitions"),
    ("GET", re.compile(r"^/v3/application/shops/(?P<shop_id>\d+)/policies/return$"), "getShopReturnPolicies"),
]  # fmt: skip


def _route(method: str, path: str) -> tuple[str | None, dict[str, int]]:
    for verb, pattern, name in _ROUTES:
        match = pattern.match(path)
        if match and verb == method:
            return name, {k: int(v) for k, v in match.groupdict().items()}
    return None, {}


def _form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}


def _multipart(content_type: str, body: bytes) -> dict[str, bytes] | None:
    if not content_type.startswith("multipart/form-data"):
        return None
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not message.is_multipart():
        return None
    parts: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            parts[str(name)] = part.get_payload(decode=True) or b""
    return parts


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value else None


def _money(price: str) -> dict[str, Any]:
    return {"amount": round(float(price) * 100), "divisor": 100, "currency_code": "USD"}


def _jpeg_size(data: bytes) -> tuple[int | None, int | None]:
    try:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return None, None


def _handler_for(stub: EtsyStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = stub.handle(self.command, self.path, headers, body)
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (a crash test)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # quiet; the request log is `stub.requests`

    return Handler
