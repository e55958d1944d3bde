"""Duplicate detection: exact (sha256) and near (perceptual hashes), within a batch and
against the user's history.

A duplicate is an outcome, not an error: it is reported with the id of the design it copies.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from designflow.catalog import ExistingDesign
from designflow.images.fingerprint import Fingerprint
from designflow.images.similarity import (
    PLAIN,
    TRIMMED,
    NearMatch,
    NearQuery,
    best_matches,
    hamming,
    is_near,
)


@dataclass
class ExactDedup:
    to_store: list[Fingerprint] = field(default_factory=list)
    # (copy, design it copies) for designs already in the catalog
    exact: list[tuple[Fingerprint, ExistingDesign]] = field(default_factory=list)
    # (copy, first file of this upload with the same bytes)
    in_batch: list[tuple[Fingerprint, Fingerprint]] = field(default_factory=list)
    # copies of designs this same upload stored in an earlier batch
    earlier_batch: list[tuple[Fingerprint, ExistingDesign]] = field(default_factory=list)


def unique_by_sha256(
    fingerprints: Sequence[Fingerprint],
) -> tuple[list[Fingerprint], list[tuple[Fingerprint, Fingerprint]]]:
    """First occurrence of each content in input order, and the later copies with their first."""
    first: dict[str, Fingerprint] = {}
    copies: list[tuple[Fingerprint, Fingerprint]] = []
    for fp in fingerprints:
        if fp.sha256 in first:
            copies.append((fp, first[fp.sha256]))
        else:
            first[fp.sha256] = fp
    return list(first.values()), copies


def classify_exact(
    fingerprints: Sequence[Fingerprint],
    existing: Mapping[str, ExistingDesign],
    upload_run_id: uuid.UUID | None = None,
) -> ExactDedup:
    """Split a batch into what to store and what it duplicates (`existing`: by sha256)."""
    unique, copies = unique_by_sha256(fingerprints)
    out = ExactDedup()
    for fp in unique:
        match = existing.get(fp.sha256)
        if match is None:
            out.to_store.append(fp)
        elif upload_run_id is not None and match.flow_run_id == upload_run_id:
            out.earlier_batch.append((fp, match))
        else:
            out.exact.append((fp, match))
    for copy, original in copies:
        match = existing.get(original.sha256)
        if match is None:
            out.in_batch.append((copy, original))
        elif upload_run_id is not None and match.flow_run_id == upload_run_id:
            out.earlier_batch.append((copy, match))
        else:
            out.exact.append((copy, match))
    return out


@dataclass
class NearDedup:
    to_store: list[Fingerprint] = field(default_factory=list)
    # (copy, closest active design of the user's history)
    near: list[tuple[Fingerprint, NearMatch]] = field(default_factory=list)
    # (copy, earlier file of this batch it resembles, phash distance)
    in_batch: list[tuple[Fingerprint, Fingerprint, int]] = field(default_factory=list)


def has_detail(fp: Fingerprint) -> bool:
    """False for images with no structure at hash scale (a plain colour, a 1x1, a 20000x3
    strip): their phash is all zeros or nearly, so any two of them would look alike. They
    are still checked for exact copies, not for near ones."""
    bits = (fp.phash & 0xFFFFFFFFFFFFFFFF).bit_count()
    return 4 <= bits <= 60


def near_queries(fingerprints: Sequence[Fingerprint]) -> list[NearQuery]:
    """Three queries per design: its trimmed hash as it is and mirrored (copies on another
    canvas, flipped copies), and its plain hash (copies with additions such as a watermark,
    which move the trimmed outline)."""
    out: list[NearQuery] = []
    for key, fp in enumerate(fingerprints):
        if not has_detail(fp):
            continue
        out.append(NearQuery(key, fp.nd_phash, fp.nd_dhash, flipped=False, kind=TRIMMED))
        out.append(NearQuery(key, fp.nd_phash_flip, fp.nd_dhash_flip, flipped=True, kind=TRIMMED))
        out.append(NearQuery(key, fp.phash, fp.dhash, flipped=False, kind=PLAIN))
    return out


def near_pair(a: Fingerprint, b: Fingerprint, distance: int, confirm_sum: int) -> int | None:
    """phash distance when `a` is a near duplicate of `b` (by the same rules), else None."""
    best: int | None = None
    pairs = (
        (a.nd_phash, a.nd_dhash, b.nd_phash, b.nd_dhash),
        (a.nd_phash_flip, a.nd_dhash_flip, b.nd_phash, b.nd_dhash),
        (a.phash, a.dhash, b.phash, b.dhash),
    )
    for ph, dh, other_ph, other_dh in pairs:
        pd, dd = hamming(ph, other_ph), hamming(dh, other_dh)
        if is_near(pd, dd, distance, confirm_sum) and (best is None or pd < best):
            best = pd
    return best


def classify_near(
    fingerprints: Sequence[Fingerprint],
    history_matches: Sequence[NearMatch],
    distance: int,
    confirm_sum: int,
) -> NearDedup:
    """Split new designs (unique bytes, not exact duplicates) into near duplicates of the
    user's history, near duplicates of an earlier file in the batch, and the rest."""
    confirmed = [
        m
        for m in history_matches
        if is_near(m.distance, m.confirm - m.distance, distance, confirm_sum)
    ]
    best = best_matches(confirmed)
    out = NearDedup()
    kept: list[Fingerprint] = []
    for key, fp in enumerate(fingerprints):
        match = best.get(key)
        if match is not None:
            out.near.append((fp, match))
            continue
        if not has_detail(fp):
            out.to_store.append(fp)  # not compared, and nothing is compared with it
            continue
        twin = None
        for earlier in kept:
            d = near_pair(fp, earlier, distance, confirm_sum)
            if d is not None and (twin is None or d < twin[1]):
                twin = (earlier, d)
        if twin is not None:
            out.in_batch.append((fp, twin[0], twin[1]))
            continue
        kept.append(fp)
        out.to_store.append(fp)
    return out
