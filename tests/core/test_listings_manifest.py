"""Listing manifests (CSV and Parquet via polars): defaults, and every problem named up front."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from designflow.etsy.listings import ListingDefaults, ManifestError, listing_for, read_manifest
from designflow.settings import Settings


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


def test_csv_rows_with_defaults(tmp_path: Path) -> None:
    manifest = write_csv(
        tmp_path / "listings.csv",
        """
file,title,description,price,tags,taxonomy_id,quantity
cat.png,Sunset cat,A cat at sunset,24.50,"cat, sunset",482,5
dog.png,Happy dog,,19,,,
""",
    )
    defaults = ListingDefaults(description="Printed to order.", taxonomy_id=482, quantity=3)
    rows = read_manifest(manifest, defaults)
    assert rows["cat.png"] == {
        "title": "Sunset cat", "description": "A cat at sunset", "price": 24.5, "quantity": 5,
        "taxonomy_id": 482, "tags": ["cat", "sunset"], "who_made": "i_did",
        "when_made": "made_to_order", "is_supply": False, "type": "physical",
        "shipping_profile_id": None, "readiness_state_id": None, "return_policy_id": None,
    }  # fmt: skip
    assert rows["dog.png"]["description"] == "Printed to order."
    assert (rows["dog.png"]["quantity"], rows["dog.png"]["taxonomy_id"]) == (3, 482)
    assert listing_for(rows, "/uploads/batch 7/cat.png")["title"] == "Sunset cat"
    assert listing_for(rows, "/uploads/other.png") is None


def test_parquet_manifest(tmp_path: Path) -> None:
    path = tmp_path / "listings.parquet"
    pl.DataFrame(
        {
            "design": ["a.png"],
            "title": ["A"],
            "description": ["d"],
            "price": [12.0],
            "tags": [["x", "y"]],
            "taxonomy_id": [482],
            "quantity": [2],
        }  # fmt: skip
    ).write_parquet(path)
    rows = read_manifest(path)
    assert rows["a.png"]["tags"] == ["x", "y"] and rows["a.png"]["price"] == 12.0


def test_every_problem_is_named_before_any_call(tmp_path: Path) -> None:
    manifest = write_csv(
        tmp_path / "bad.csv",
        """
file,title,description,price,taxonomy_id,quantity,who_made
a.png,,desc,10,482,1,
b.png,B,desc,abc,482,1,
c.png,C,,10,482,1.5,robot
a.png,A again,desc,10,482,1,
""",
    )
    with pytest.raises(ManifestError) as caught:
        read_manifest(manifest)
    message = str(caught.value)
    assert str(manifest) in message
    assert "row 2 (a.png): title: missing" in message
    assert "row 3 (b.png): price: 'abc' is not a number" in message
    assert "row 4 (c.png): quantity: '1.5' is not a whole number" in message
    assert "row 4 (c.png): who_made: 'robot'" in message
    assert "row 4 (c.png): description: missing" in message
    assert "row 5 (a.png): a.png appears more than once" in message


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("missing.csv", None, "listing manifest not found"),
        ("listings.json", "{}", "must be .csv or .parquet"),
        ("nofile.csv", "title,price\nA,1\n", "no file column"),
        ("extra.csv", "file,title,colour\na.png,A,red\n", "unknown column(s) colour"),
        ("broken.parquet", "not parquet", "cannot be read as parquet"),
    ],
)
def test_unusable_manifests(tmp_path: Path, name: str, content: str | None, expected: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(ManifestError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        read_manifest(path)


def test_defaults_come_from_settings() -> None:
    settings = Settings.from_env(
        {
            "DESIGNFLOW_LISTING_PRICE": "22.5",
            "DESIGNFLOW_LISTING_TAXONOMY_ID": "482",
            "DESIGNFLOW_LISTING_TAGS": "tee, gift",
            "DESIGNFLOW_LISTING_WHEN_MADE": "2020_2026",
        }  # fmt: skip
    )
    d = settings.listing_defaults
    assert (d.price, d.taxonomy_id, d.tags, d.when_made, d.quantity) == (
        22.5,
        482,
        ("tee", "gift"),
        "2020_2026",
        1,
    )
