"""Near duplicates a seller agrees with: the views find crops and small rotations, the
verifier keeps the same artwork with other words apart. A small fixed set of the
evaluation designs (bench.near_duplicates has the full table)."""

from __future__ import annotations

import uuid
from functools import cache

from designflow.catalog import Catalog
from designflow.images.fingerprint import Fingerprint, fingerprint_bytes
from designflow.images.similarity import DEFAULT_CONFIRM_SUM, DEFAULT_DISTANCE, hamming
from designflow.images.verify import compare
from designflow.ingest.dedup import classify_near, near_queries
from designflow.ingest.service import new_design_row
from designflow.testing import near_cases

T = DEFAULT_DISTANCE
# One design of each family, at a size that keeps the test quick.
SPECS = [near_cases.spec(seed, size=(700, 840)) for seed in (9100, 9101, 9102, 9103)]
HARD_COPIES = (
    "crop 8% each side", "crop 10% one side", "rotate 3 degrees", "mild keystone",
    "mirror + crop 6%", "half size + JPEG 75 + 3% crop",
)  # fmt: skip


@cache
def original(index: int) -> Fingerprint:
    return fingerprint_bytes(
        near_cases.png(near_cases.render(SPECS[index])), f"original-{index}.png"
    )


@cache
def copies(index: int) -> dict[str, Fingerprint]:
    art = near_cases.render(SPECS[index])
    out = {
        k: fingerprint_bytes(b, f"{k}-{index}.png")
        for k, b in near_cases.copies_of(art, list(HARD_COPIES)).items()
    }
    for kind, variant in near_cases.variants(SPECS[index]).items():
        out[kind] = fingerprint_bytes(
            near_cases.png(near_cases.render(variant)), f"{kind}-{index}.png"
        )
    return out


def test_verifier_agrees_on_copies_and_refuses_other_words() -> None:
    refused: dict[str, int] = {}
    for index, spec in enumerate(SPECS):
        stored = original(index).reduction
        for kind, fp in copies(index).items():
            verdict = compare(fp.reduction, stored, kind.startswith("mirror"))
            if kind.startswith("text"):
                refused[kind] = refused.get(kind, 0) + (not verdict.same)
                continue
            assert verdict.same, (spec.family, kind, verdict)
            assert verdict.why.startswith("same artwork")
    # Other words always; a changed number or emblem is missed when it differs from what
    # it replaced in colour only (the verifier compares grey: blue digits on a brown photo
    # of the same lightness), as the bench's table shows.
    assert refused["text: other words"] == 4, refused
    assert refused["text: other number"] >= 3 and refused["text: other emblem"] >= 3, refused
    text = compare(copies(0)["text: other words"].reduction, original(0).reduction)
    assert text.why == "aligns but one region differs (another word or element)"


def test_verdict_says_what_was_seen() -> None:
    crop = compare(copies(1)["crop 8% each side"].reduction, original(1).reduction)
    assert crop.same and "cropped (7" in crop.why  # ~71% of the design shown
    turned = compare(copies(1)["rotate 3 degrees"].reduction, original(1).reduction)
    assert turned.same and "rotated ~3.0 degrees" in turned.why
    mirrored = compare(copies(1)["mirror + crop 6%"].reduction, original(1).reduction, True)
    assert mirrored.same and mirrored.why.startswith("same artwork: mirrored, cropped")


def test_unrelated_designs_do_not_align() -> None:
    for a in range(len(SPECS)):
        for b in range(len(SPECS)):
            if a != b:
                assert not compare(original(a).reduction, original(b).reduction).same


def test_views_bring_hard_copies_within_the_search_distance() -> None:
    """The whole design's hash misses most crops; some stored view is within T of each."""
    missed_without_views = 0
    for index in range(len(SPECS)):
        stored = original(index)
        for kind, fp in copies(index).items():
            if kind.startswith("text"):
                continue
            own = min(
                hamming(fp.nd_phash, stored.nd_phash), hamming(fp.nd_phash_flip, stored.nd_phash)
            )
            views = min(
                min(hamming(fp.nd_phash, v), hamming(fp.nd_phash_flip, v)) for v in stored.views
            )
            missed_without_views += own > T
            assert min(own, views) <= T, (SPECS[index].family, kind, own, views)
    assert missed_without_views >= 4  # the views are what finds them


def test_catalog_finds_crops_through_views_and_the_upload_rules_decide(catalog: Catalog) -> None:
    """Stored designs with their views and reductions; a batch of copies and text variants
    asked as an upload asks: the crops are near duplicates (with what was seen), the other
    words are new designs."""
    batch = uuid.uuid4()
    rows = [new_design_row(original(i), "vera", batch, None) for i in range(len(SPECS))]
    catalog.record_designs(rows)
    ids = {r["sha256"]: r["id"] for r in catalog.designs_of_user("vera")}
    new = [copies(i)["crop 8% each side"] for i in range(2)]
    new += [copies(i)["text: other words"] for i in range(2)]
    existing, matches, reductions = catalog.find_duplicates(
        "vera", [fp.sha256 for fp in new], near_queries(new), T
    )
    assert existing == {}
    assert any(m.view > 0 for m in matches)  # found through a view, not the design's own hash
    out = classify_near(new, matches, T, DEFAULT_CONFIRM_SUM, reductions)
    assert [fp.name for fp, _ in out.near] == [new[0].name, new[1].name]
    for (fp, match), i in zip(out.near, range(2), strict=True):
        assert match.design_id == ids[original(i).sha256]
        assert out.why[fp.sha256].startswith("same artwork: cropped")
    assert [fp.name for fp in out.to_store] == [new[2].name, new[3].name]
    # The text variants were candidates by their hashes; the verifier turned them down.
    assert {file for file, _, _ in out.turned_down} >= {new[2].path, new[3].path}


def test_in_batch_text_variants_are_kept_and_copies_follow() -> None:
    a = original(2)
    other_words = copies(2)["text: other words"]
    cropped = copies(2)["crop 10% one side"]
    out = classify_near([a, other_words, cropped], [], T, DEFAULT_CONFIRM_SUM)
    assert [fp.name for fp in out.to_store] == [a.name, other_words.name]
    assert [(c.name, o.name) for c, o, _ in out.in_batch] == [(cropped.name, a.name)]
    assert out.why[cropped.sha256].startswith("same artwork")


def test_of_near_twins_in_one_upload_the_best_file_is_kept() -> None:
    """A 75% downscale named to sort first, a brightened copy and a JPEG of the same design:
    the full-resolution PNG is kept and the others are its near duplicates."""
    import io

    from PIL import Image, ImageEnhance

    art = near_cases.render(SPECS[0])
    full = fingerprint_bytes(near_cases.png(art), "z-original.png")
    small = art.resize((art.width * 3 // 4, art.height * 3 // 4), Image.Resampling.LANCZOS)
    downscale = fingerprint_bytes(near_cases.png(small), "a-small.png")
    jpeg = fingerprint_bytes(near_cases.jpeg(art, 85), "b-copy.jpg")
    bright = io.BytesIO()
    ImageEnhance.Brightness(small).enhance(1.1).save(bright, format="PNG")
    brightened = fingerprint_bytes(bright.getvalue(), "c-bright.png")
    out = classify_near([downscale, jpeg, brightened, full], [], T, DEFAULT_CONFIRM_SUM)
    assert [fp.name for fp in out.to_store] == ["z-original.png"]
    assert sorted(c.name for c, o, _ in out.in_batch if o.name == "z-original.png") == [
        "a-small.png", "b-copy.jpg", "c-bright.png",
    ]  # fmt: skip
