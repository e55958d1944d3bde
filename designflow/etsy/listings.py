"""Listing content from the seller's manifest (CSV or Parquet, read with polars).

One row per design file: `file` (or `design`/`name`), title, description, price, tags,
taxonomy_id, quantity, and optionally who_made, when_made, is_supply. Empty cells take the
defaults from settings. Every problem is reported at once, before any call to Etsy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

KEY_COLUMNS = ("file", "design", "name")
FIELDS = (
    "title", "description", "price", "tags", "taxonomy_id", "quantity",
    "who_made", "when_made", "is_supply",
)  # fmt: skip
REQUIRED = ("title", "description", "price", "taxonomy_id", "quantity", "who_made", "when_made")
WHO_MADE = ("i_did", "someone_else", "collective")
MAX_TAGS = 13


class ManifestError(ValueError):
    """The manifest cannot be used; the message names the file, the rows and the fields."""


@dataclass(frozen=True)
class ListingDefaults:
    description: str | None = None
    price: float | None = None
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
    for name in REQUIRED:
        if out.get(name) in (None, "") and not any(name in e for e in errors):
            errors.append(f"missing {name}")
    if out["title"] and len(out["title"]) > 140:
        errors.append(f"title is {len(out['title'])} characters (Etsy allows 140)")
    if isinstance(out["price"], float) and out["price"] < 0.2:
        errors.append(f"price {out['price']} is below Etsy's minimum of 0.20")
    if isinstance(out["quantity"], int) and not 1 <= out["quantity"] <= 999:
        errors.append(f"quantity {out['quantity']} is outside 1-999")
    if out["who_made"] and out["who_made"] not in WHO_MADE:
        errors.append(f"who_made {out['who_made']!r} is not one of {', '.join(WHO_MADE)}")
    if len(out["tags"]) > MAX_TAGS:
        errors.append(f"{len(out['tags'])} tags (Etsy allows {MAX_TAGS})")
    long_tags = [t for t in out["tags"] if len(t) > 20]
    if long_tags:
        errors.append(f"tag(s) longer than 20 characters: {', '.join(long_tags[:3])}")
    return out, errors


def _number(value: Any, kind: type, name: str, errors: list[str]) -> Any:
    try:
        number = kind(float(value)) if kind is int and not isinstance(value, int) else kind(value)
        if kind is int and float(value) != number:
            raise ValueError
        return number
    except (TypeError, ValueError):
        errors.append(f"{name} {value!r} is not {'a whole number' if kind is int else 'a number'}")
        return None


def _flag(value: Any, errors: list[str]) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    errors.append(f"is_supply {value!r} is not true or false")
    return False


def _tags(value: Any) -> list[str]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return [t.strip() for t in (str(i) for i in items) if t.strip()]
