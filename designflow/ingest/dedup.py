"""Duplicate detection: exact (sha256) and near (perceptual hashes), within a batch and
against the user's history.

A duplicate is an outcome, not an error: it is reported with the id of the design it copies.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from designflow.catalog import ExistingDesign
from designflow.images.fingerprint import Fingerprint
from designflow.images.similarity import (
    MASK64,
    PLAIN,
    TRIMMED,
    NearMatch,
    NearQuery,
    hamming,
    is_near,
)
from designflow.images.verify import Verdict, compare


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
    # (copy, closest active design of the user's history the verifier agreed with)
    near: list[tuple[Fingerprint, NearMatch]] = field(default_factory=list)
    # (copy, earlier file of this batch it resembles, phash distance)
    in_batch: list[tuple[Fingerprint, Fingerprint, int]] = field(default_factory=list)
    # sha256 of each near duplicate -> what the verifier saw
    why: dict[str, str] = field(default_factory=dict)
    # candidates the verifier turned down: (new file, design id or file, why)
    turned_down: list[tuple[str, str, str]] = field(default_factory=list)


# The verifier looks at no more than this many candidates per new design, closest first: a
# bound on its cost (~15-20 ms each) whatever the catalog holds.
MAX_VERIFIED = 6


def has_detail(fp: Fingerprint) -> bool:
    """False for images with no structure at hash scale (a plain colour, a 1x1, a 20000x3
    strip): their phash is all zeros or nearly, so any two of them would look alike. They
    are still checked for exact copies, not for near ones."""
    bits = (fp.phash & 0xFFFFFFFFFFFFFFFF).bit_count()
    return 4 <= bits <= 60


def near_queries(fingerprints: Sequence[Fingerprint]) -> list[NearQuery]:
    """Up to three queries per design: its trimmed hash as it is and mirrored (copies on
    another canvas, flipped copies; both also looked up among the stored designs' views:
    crops and small rotations), and its plain hash (copies with additions such as a
    watermark, which move the trimmed outline) when trimming changed the design (a design
    that fills its canvas would only ask the same hash again: a third of the lookup's time)."""
    out: list[NearQuery] = []
    for key, fp in enumerate(fingerprints):
        if not has_detail(fp):
            continue
        sha = fp.sha256
        out.append(NearQuery(key, fp.nd_phash, fp.nd_dhash, False, TRIMMED, sha))
        out.append(NearQuery(key, fp.nd_phash_flip, fp.nd_dhash_flip, True, TRIMMED, sha))
        if (fp.phash, fp.dhash) != (fp.nd_phash, fp.nd_dhash):  # a border was trimmed
            out.append(NearQuery(key, fp.phash, fp.dhash, False, PLAIN, sha))
    return out


def near_pair(a: Fingerprint, b: Fingerprint, distance: int, confirm_sum: int) -> int | None:
    """phash distance when `a` is a near duplicate candidate of `b` by the hash rules (its
    own hashes, its mirror, and the views of `b`), else None."""
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
    if a.reduction and b.reduction:  # the verifier decides: the views widen the net
        for view in b.views:
            pd = min(hamming(a.nd_phash, view), hamming(a.nd_phash_flip, view))
            if pd <= distance and (best is None or pd < best):
                best = pd
    return best


Verifier = Callable[[bytes, bytes, bool], Verdict]


def classify_near(
    fingerprints: Sequence[Fingerprint],
    history_matches: Sequence[NearMatch],
    distance: int,
    confirm_sum: int,
    reductions: Mapping[int, bytes] | None = None,
    verify: Verifier = compare,
) -> NearDedup:
    """Split new designs (unique bytes, not exact duplicates) into near duplicates of the
    user's history, near duplicates of an earlier file in the batch, and the rest.

    A candidate is a near duplicate only when the verifier agrees (it aligns the two
    reductions and compares them); a stored design without a reduction (stored before
    they existed and not yet backfilled) is judged by the hash rules alone, as before."""
    reductions = reductions or {}
    candidates: dict[int, list[NearMatch]] = {}
    for m in history_matches:
        candidates.setdefault(m.key, []).append(m)
    out = NearDedup()
    kept = KeptHashes(len(fingerprints))
    # The best file first (most pixels, then lossless, then the larger file), so that of
    # two near twins in one upload the seller keeps the one worth printing, whatever the
    # names: a 75% downscale that sorted first used to be kept and the original refused.
    order = sorted(range(len(fingerprints)), key=lambda i: best_first(fingerprints[i]))
    stored: set[int] = set()
    for key in order:
        fp = fingerprints[key]
        match = _verified_history_match(
            fp, candidates.get(key, []), distance, confirm_sum, reductions, verify, out
        )
        if match is not None:
            out.near.append((fp, match))
            out.why[fp.sha256] = match.why
            continue
        if not has_detail(fp):
            stored.add(key)  # not compared, and nothing is compared with it
            continue
        twin = _verified_twin(fp, kept, distance, confirm_sum, verify, out)
        if twin is not None:
            out.in_batch.append((fp, twin[0], twin[1]))
            continue
        kept.add(fp)
        stored.add(key)
    # Reported in the upload's own order, whatever order they were decided in.
    position = {id(fp): i for i, fp in enumerate(fingerprints)}
    out.to_store = [fingerprints[key] for key in sorted(stored)]
    out.near.sort(key=lambda pair: position[id(pair[0])])
    out.in_batch.sort(key=lambda triple: position[id(triple[0])])
    return out


LOSSLESS_FORMATS = frozenset({"PNG", "GIF"})


def best_first(fp: Fingerprint) -> tuple[int, int, int, int]:
    """Sort key: the better of two versions of a design comes first: more pixels of the
    design itself (a copy on a larger canvas has more pixels, not more design; counted in
    steps of 2%, as the content's box is measured on the 512 px reduction), lossless, less
    empty canvas, then the larger file (steps of 10%). Equals keep the upload's order."""
    design_pixels = max(1.0, fp.width * fp.height * fp.content_share)
    return (
        -round(math.log(design_pixels) / math.log(1.02)),
        0 if fp.format in LOSSLESS_FORMATS else 1,
        -round(fp.content_share * 20),
        -round(math.log(max(1, fp.bytes)) / math.log(1.1)),
    )


def _verified_history_match(
    fp: Fingerprint,
    matches: Sequence[NearMatch],
    distance: int,
    confirm_sum: int,
    reductions: Mapping[int, bytes],
    verify: Verifier,
    out: NearDedup,
) -> NearMatch | None:
    ordered = sorted(matches, key=lambda m: (m.distance, m.confirm, m.design_id))
    seen: set[int] = set()
    for m in ordered:
        if m.design_id in seen or m.distance > distance:
            continue
        seen.add(m.design_id)
        stored = reductions.get(m.design_id)
        if not stored or not fp.reduction:
            if m.view == 0 and is_near(m.distance, m.confirm - m.distance, distance, confirm_sum):
                return m  # no reduction to compare: the hash rules decide, as before
            continue
        if len(seen) > MAX_VERIFIED:
            break
        verdict = verify(fp.reduction, stored, m.flipped)
        if verdict.same:
            return replace(m, why=verdict.why)
        out.turned_down.append((fp.path, f"design {m.design_id}", verdict.why))
    return None


class KeptHashes:
    """The hashes of the batch's designs kept so far, as arrays: a new file is compared with
    all of them at once, by the rules of `near_pair`. Pair by pair in Python, 1,000 small
    files (~500,000 pairs, ~40 Hamming distances each) took ~6 s of a 16 s upload."""

    NO_MATCH = 1 << 16

    def __init__(self, capacity: int) -> None:
        self.fingerprints: list[Fingerprint] = []
        self._hashes = np.zeros((max(capacity, 1), 4), np.uint64)  # nd_phash nd_dhash phash dhash
        self._views: list[tuple[int, ...]] = []
        self._view_matrix: np.ndarray | None = None  # built when a view lookup needs it
        self._any_views = False
        self._reduced = np.zeros(max(capacity, 1), bool)

    def add(self, fp: Fingerprint) -> None:
        row = len(self.fingerprints)
        self.fingerprints.append(fp)
        self._hashes[row] = [v & MASK64 for v in (fp.nd_phash, fp.nd_dhash, fp.phash, fp.dhash)]
        self._reduced[row] = bool(fp.reduction)
        self._views.append(tuple(v & MASK64 for v in fp.views) if fp.reduction else ())
        self._any_views = self._any_views or bool(self._views[-1])
        self._view_matrix = None

    def candidates(
        self, fp: Fingerprint, distance: int, confirm_sum: int
    ) -> list[tuple[int, Fingerprint]]:
        """(phash distance, kept design) for each kept design `fp` is a near duplicate
        candidate of, in the order they were kept."""
        n = len(self.fingerprints)
        if n == 0:
            return []
        hashes = self._hashes[:n]
        best = np.full(n, self.NO_MATCH, np.int64)
        rules = ((fp.nd_phash, fp.nd_dhash, 0, 1), (fp.nd_phash_flip, fp.nd_dhash_flip, 0, 1),
                 (fp.phash, fp.dhash, 2, 3))  # fmt: skip
        for ph, dh, ph_col, dh_col in rules:
            pd = _distances(ph, hashes[:, ph_col])
            dd = _distances(dh, hashes[:, dh_col])
            near = (pd <= distance) & (pd + dd <= confirm_sum)
            best = np.where(near, np.minimum(best, pd), best)
        if fp.reduction and self._any_views:
            views, valid = self._matrix()
            vd = np.minimum(_distances(fp.nd_phash, views), _distances(fp.nd_phash_flip, views))
            closest = np.where(valid, vd, self.NO_MATCH).min(axis=1)
            near = self._reduced[:n] & (closest <= distance)
            best = np.where(near, np.minimum(best, closest), best)
        return [(int(best[i]), self.fingerprints[i]) for i in np.flatnonzero(best < self.NO_MATCH)]

    def _matrix(self) -> tuple[np.ndarray, np.ndarray]:
        width = max(len(v) for v in self._views)
        if self._view_matrix is None or self._view_matrix.shape != (len(self._views), width):
            matrix = np.zeros((len(self._views), width), np.uint64)
            valid = np.zeros((len(self._views), width), bool)
            for i, views in enumerate(self._views):
                matrix[i, : len(views)] = views
                valid[i, : len(views)] = True
            self._view_matrix, self._view_valid = matrix, valid
        return self._view_matrix, self._view_valid


def _distances(value: int, others: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.uint64(value & MASK64) ^ others).astype(np.int64)


def _verified_twin(
    fp: Fingerprint,
    kept: KeptHashes,
    distance: int,
    confirm_sum: int,
    verify: Verifier,
    out: NearDedup,
) -> tuple[Fingerprint, int] | None:
    found = kept.candidates(fp, distance, confirm_sum)
    for d, earlier in sorted(found, key=lambda pair: pair[0])[:MAX_VERIFIED]:
        if not (fp.reduction and earlier.reduction):
            if d is not None and near_pair_plain(fp, earlier, distance, confirm_sum):
                return earlier, d
            continue
        verdict = verify(fp.reduction, earlier.reduction, False)
        if verdict.same:
            out.why[fp.sha256] = verdict.why
            return earlier, d
        out.turned_down.append((fp.path, earlier.path, verdict.why))
    return None


def near_pair_plain(a: Fingerprint, b: Fingerprint, distance: int, confirm_sum: int) -> bool:
    """The hash rules alone (no views): how designs without a reduction are judged."""
    return near_pair(replace(a, reduction=b""), b, distance, confirm_sum) is not None
