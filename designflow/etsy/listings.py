"""Listing content from the seller's manifest (CSV or Parquet, read with polars).

One row per design file: `file` (or `design`/`name`), title, description, price, tags,
taxonomy_id, quantity, and optionally who_made, when_made, is_supply, type,
shipping_profile_id, readiness_state_id, return_policy_id. Empty cells take the defaults
from settings. Every problem is reported at once, with its row and field, before any call
to Etsy; the rules are Etsy's (title characters, tag characters, the when_made values of
the current year).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePath
from typing import Any

KEY_COLUMNS = ("file", "design", "name")
PROFILE_FIELDS = ("shipping_profile_id", "readiness_state_id", "return_policy_id")
FIELDS = (
    "title", "description", "price", "tags", "taxonomy_id", "quantity",
    "who_made", "when_made", "is_supply", "type", *PROFILE_FIELDS,
)  # fmt: skip
REQUIRED = ("title", "description", "price", "taxonomy_id", "quantity", "who_made", "when_made")
WHO_MADE = ("i_did", "someone_else", "collective")
LISTING_TYPES = ("physical", "download", "both")
MAX_TAGS = 13
MAX_TAG_CHARS = 20
# Etsy: a title holds each of these at most once.
TITLE_ONCE = "%:&+"
# Etsy: tags hold letters, numbers, whitespace, '-', "'", '™', '©' and '®' only.
_TAG_ALLOWED = re.compile(r"^[\w\s\-'™©®]+$")


def when_made_values(year: int) -> tuple[str, ...]:
    """Etsy's when_made values in `year`: the ranges move every January (2020_2025, 2006_2009,
    before_2006, 2000_2005 in 2025; 2020_2026, 2007_2009, before_2007, 2000_2006 in 2026)."""
    vintage = year - 19  # vintage means at least 20 years old
    return (
        "made_to_order", f"2020_{year}", "2010_2019", f"{vintage}_2009", f"before_{vintage}",
        f"2000_{vintage - 1}", "1990s", "1980s", "1970s", "1960s", "1950s", "1940s", "1930s",
        "1920s", "1910s", "1900s", "1800s", "1700s", "before_1700",
    )  # fmt: skip


class ManifestError(ValueError):
    """The manifest cannot be used; the message names the file, the rows and the fields."""


@dataclass(frozen=True)
class ListingDefaults:
    description: str | None = None
    price: float | None = None
    type: str = "physical"  # print-on-demand products are physical
    shipping_profile_id: int | None = None
    readiness_state_id: int | None = None
    return_policy_id: int | None = None
    taxonomy_id: int | None = None
    quantity: int = 1
    who_made: str = "i_did"
    when_made: str = "made_to_order"
    is_supply: bool = False
    tags: tuple[str, ...] = ()


def read_manifest(
    path: str | Path, defaults: ListingDefaults | None = None
) -> dict[str, dict[str, Any]]:
    """File name -> listing fields (title, description, price, quantity, taxonomy_id, tags,
    who_made, when_made, is_supply), validated; raises ManifestError listing every problem."""
    path = Path(path)
    defaults = defaults or ListingDefaults()
    frame = _read(path)
    key = next((c for c in KEY_COLUMNS if c in frame.columns), None)
    if key is None:
        raise ManifestError(f"{path}: no file column (expected one of {', '.join(KEY_COLUMNS)})")
    unknown = [c for c in frame.columns if c not in (key, *FIELDS)]
    if unknown:
        raise ManifestError(f"{path}: unknown column(s) {', '.join(unknown)}")
    problems: list[str] = []
    listings: dict[str, dict[str, Any]] = {}
    for number, row in enumerate(frame.iter_rows(named=True), start=2):  # row 1 is the header
        name = _text(row.get(key))
        where = f"row {number}" + (f" ({name})" if name else "")
        if not name:
            problems.append(f"{where}: no file name")
            continue
        fields, errors = _listing(row, defaults)
        problems.extend(f"{where}: {e}" for e in errors)
        if name in listings:
            problems.append(f"{where}: {name} appears more than once")
        listings[name] = fields
    if problems:
        shown = "; ".join(problems[:20]) + (
            f"; and {len(problems) - 20} more" if len(problems) > 20 else ""
        )
        raise ManifestError(f"{path}: {len(problems)} problem(s): {shown}")
    return listings


def listing_for(listings: dict[str, dict[str, Any]], file_path: str) -> dict[str, Any] | None:
    """The row of a file: by its name as given, else by its base name."""
    return listings.get(file_path) or listings.get(PurePath(file_path).name)


def content_sha256(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _read(path: Path):
    import polars as pl  # here, not at import: settings import this module

    if not path.is_file():
        raise ManifestError(f"{path}: listing manifest not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # Strings throughout: numbers are checked here, with messages a seller can act on.
            return pl.read_csv(path, infer_schema=False)
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot be read as {suffix[1:]} ({exc})") from None
    raise ManifestError(f"{path}: a listing manifest must be .csv or .parquet")


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _listing(row: dict[str, Any], d: ListingDefaults) -> tuple[dict[str, Any], list[str]]:
    errors: list[str] = []
    raw = {f: row.get(f) for f in FIELDS}

    def given(name: str) -> bool:
        value = raw[name]
        return value is not None and not (isinstance(value, str) and not value.strip())

    out: dict[str, Any] = {
        "title": _text(raw["title"]) or None,
        "description": _text(raw["description"]) if given("description") else d.description,
        "who_made": _text(raw["who_made"]) if given("who_made") else d.who_made,
        "when_made": _text(raw["when_made"]) if given("when_made") else d.when_made,
    }
    out["price"] = _number(raw["price"], float, "price", errors) if given("price") else d.price
    out["quantity"] = (
        _number(raw["quantity"], int, "quantity", errors) if given("quantity") else d.quantity
    )
    out["taxonomy_id"] = (
        _number(raw["taxonomy_id"], int, "taxonomy_id", errors)
        if given("taxonomy_id")
        else d.taxonomy_id
    )
    out["is_supply"] = _flag(raw["is_supply"], errors) if given("is_supply") else d.is_supply
    out["tags"] = _tags(raw["tags"]) if given("tags") else list(d.tags)
    out["type"] = _text(raw["type"]) if given("type") else d.type
    for name in PROFILE_FIELDS:
        out[name] = _number(raw[name], int, name, errors) if given(name) else getattr(d, name)
    for name in REQUIRED:
        if out.get(name) in (None, "") and not any(name in e for e in errors):
            errors.append(f"{name}: missing")
    errors += _title_problems(out["title"] or "")
    if isinstance(out["price"], float) and out["price"] < 0.2:
        errors.append(f"price: {out['price']} is below Etsy's minimum of 0.20")
    if isinstance(out["quantity"], int) and not 1 <= out["quantity"] <= 999:
        errors.append(f"quantity: {out['quantity']} is outside 1-999")
    if out["who_made"] and out["who_made"] not in WHO_MADE:
        errors.append(f"who_made: {out['who_made']!r} is not one of {', '.join(WHO_MADE)}")
    allowed = when_made_values(date.today().year)
    if out["when_made"] and out["when_made"] not in allowed:
        errors.append(
            f"when_made: {out['when_made']!r} is not one of Etsy's values this year ({', '.join(allowed[:5])}, ...)"
        )
    if out["type"] not in LISTING_TYPES:
        errors.append(f"type: {out['type']!r} is not one of {', '.join(LISTING_TYPES)}")
    errors += _tag_problems(out["tags"])
    return out, errors


def _title_problems(title: str) -> list[str]:
    problems = []
    if len(title) > 140:
        problems.append(f"title: {len(title)} characters (Etsy allows 140)")
    repeated = [c for c in TITLE_ONCE if title.count(c) > 1]
    if repeated:
        problems.append(f"title: {' '.join(repeated)} may each appear only once (Etsy's rule)")
    return problems


def _tag_problems(tags: list[str]) -> list[str]:
    problems = []
    if len(tags) > MAX_TAGS:
        problems.append(f"tags: {len(tags)} tags (Etsy allows {MAX_TAGS})")
    long_tags = [t for t in tags if len(t) > MAX_TAG_CHARS]
    if long_tags:
        problems.append(f"tags: longer than {MAX_TAG_CHARS} characters: {', '.join(long_tags[:3])}")
    bad = [t for t in tags if not _TAG_ALLOWED.match(t) or "_" in t]
    if bad:
        problems.append(
            "tags: only letters, numbers, spaces, - ' ™ © ® are allowed: "
            + ", ".join(repr(t) for t in bad[:3])
        )
    seen: set[str] = set()
    doubled = [t for t in tags if t.lower() in seen or seen.add(t.lower())]
    if doubled:
        problems.append(f"tags: repeated: {', '.join(doubled[:3])}")
    return problems


def _number(value: Any, kind: type, name: str, errors: list[str]) -> Any:
    try:
        number = kind(float(value)) if kind is int and not isinstance(value, int) else kind(value)
        if kind is int and float(value) != number:
            raise ValueError
        return number
    except (TypeError, ValueError):
        errors.append(f"{name}: {value!r} is not {'a whole number' if kind is int else 'a number'}")
        return None


def _flag(value: Any, errors: list[str]) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    errors.append(f"is_supply: {value!r} is not true or false")
    return False


def _tags(value: Any) -> list[str]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return [t.strip() for t in (str(i) for i in items) if t.strip()]
