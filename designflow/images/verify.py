"""The second stage of near-duplicate detection: does a candidate show the same artwork?

The first stage (hash distance, views) finds every stored design that could be the same
artwork; it cannot tell "DOG MOM" from "CAT MOM" (13 of 16 such pairs were within its
distance on a held-out check). This stage decides the way a person would: it aligns the two
designs' small grey reductions (ORB keypoints and a RANSAC homography) and compares them where
they overlap. The same artwork aligns and differs only slightly and evenly (re-encoding,
brightness, a faint watermark); another product either does not align or differs strongly
in one place (a changed word, a swapped element).

Measured on bench.near_duplicates' evaluation set (384 px reductions): every copy kind kept
its largest strongly-differing block at <= 0.042 and its largest differing blob at <= 52 px,
while changed words reached >= 0.135 / 137 px and swapped emblems >= 0.076 / 60 px. A changed
number in small print is the hard case (see the bench's table). ~15-20 ms per candidate on
one core; the new design's keypoints are found once for all its candidates.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image

# Longer side of the grey reduction kept per design (PNG, ~40-120 kB).
REDUCTION_PX = 384
MIN_INLIERS = 10
# A pixel differs strongly when the two designs differ by more than this (0-255 grey, after
# a 1 px tolerance for alignment and the brightness of the one fitted to the other).
STRONG_DIFFERENCE = 40
BLOCK_PX = 24
EDGE_PX = 4
TOLERANCE_PX = 1  # no neighbour tolerance: ECC leaves the two within a fraction of a pixel
# Different products: a block this much covered by strong differences, or one connected
# area of strong differences this large (pixels at REDUCTION_PX).
MAX_BLOCK_SHARE = 0.012
MAX_BLOB_PX = 8
# A copy shows at least this share of the stored design (a 10% crop on every side: 64%).
MIN_VISIBLE = 0.5


@dataclass(frozen=True)
class Verdict:
    same: bool
    why: str  # in a seller's words: "same artwork: cropped (64% of it shown), rotated ~3 degrees"
    inliers: int = 0
    visible: float = 0.0
    rotation: float = 0.0
    block_share: float = 0.0
    blob_px: int = 0


def make_reduction(small: Image.Image) -> bytes:
    """The grey reduction kept per design, from the fingerprint's own reduced image."""
    grey = small.convert("L")
    if max(grey.size) > REDUCTION_PX:
        grey = grey.copy()
        grey.thumbnail((REDUCTION_PX, REDUCTION_PX), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    grey.save(out, format="PNG", compress_level=6)
    return out.getvalue()


@dataclass(frozen=True)
class _Prepared:
    grey: np.ndarray
    keypoints: tuple
    descriptors: np.ndarray | None


def _features(grey: np.ndarray) -> _Prepared:
    orb = cv2.ORB_create(
        nfeatures=700, scaleFactor=1.2, nlevels=6, edgeThreshold=12, patchSize=21, fastThreshold=8
    )
    keypoints, descriptors = orb.detectAndCompute(grey, None)
    return _Prepared(grey, tuple(keypoints), descriptors)


@lru_cache(maxsize=64)
def _prepared(data: bytes, mirrored: bool) -> _Prepared:
    grey = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    if max(grey.shape) > REDUCTION_PX:  # a reduction made at another size: same footing
        scale = REDUCTION_PX / max(grey.shape)
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    if mirrored:
        grey = np.ascontiguousarray(grey[:, ::-1])
    return _features(grey)


def compare(new: bytes, stored: bytes, mirrored_first: bool = False) -> Verdict:
    """Does the design whose reduction is `new` show the same artwork as `stored`?"""
    if not new or not stored:
        return Verdict(False, "no reduction to compare with")
    first = _compare(_prepared(new, mirrored_first), _prepared(stored, False), mirrored_first)
    if first.same or first.block_share > MAX_BLOCK_SHARE or first.blob_px > MAX_BLOB_PX:
        return first  # the same artwork, or aligned and found to differ: decided
    # Not aligned this way round: perhaps the other (a mirrored copy, asked without a hint).
    second = _compare(
        _prepared(new, not mirrored_first), _prepared(stored, False), not mirrored_first
    )
    return second if second.same or second.inliers > first.inliers else first


def _align(new: _Prepared, stored: _Prepared) -> tuple[np.ndarray | None, int]:
    if new.descriptors is None or stored.descriptors is None:
        return None, 0
    if len(new.keypoints) < MIN_INLIERS or len(stored.keypoints) < MIN_INLIERS:
        return None, 0
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(new.descriptors, stored.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.85 * p[1].distance]
    if len(good) < MIN_INLIERS:
        return None, len(good)
    source = np.float32([stored.keypoints[m.trainIdx].pt for m in good])
    target = np.float32([new.keypoints[m.queryIdx].pt for m in good])
    homography, mask = cv2.findHomography(source, target, cv2.USAC_MAGSAC, 3.0)
    if homography is None or mask is None:
        return None, 0
    return _refine(new.grey, stored.grey, homography), int(mask.sum())


def _refine(new: np.ndarray, stored: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """Keypoints leave the homography a pixel or two off where letters repeat (a "P" matched
    to the other "P"): enough to light up every edge of a 4%-cropped typography design.
    Dense alignment (ECC) from there, at half size, lands within a fraction of a pixel."""
    half = np.diag([0.5, 0.5, 1.0])
    small_new = cv2.GaussianBlur(
        cv2.resize(new, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA).astype(np.float32),
        (0, 0),
        1.0,
    )
    small_stored = cv2.GaussianBlur(
        cv2.resize(stored, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA).astype(np.float32),
        (0, 0),
        1.0,
    )
    # ECC's warp maps the template's (new) pixels to the input's (stored) pixels.
    warp = np.linalg.inv(half @ homography @ np.linalg.inv(half)).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 1e-5)
    try:
        _, warp = cv2.findTransformECC(
            small_new, small_stored, warp, cv2.MOTION_HOMOGRAPHY, criteria, None, 3
        )
    except cv2.error:  # did not converge: the keypoints' estimate stands
        return homography
    refined = np.linalg.inv(half) @ np.linalg.inv(warp.astype(np.float64)) @ half
    return refined / refined[2, 2]


def _compare(new: _Prepared, stored: _Prepared, mirrored: bool) -> Verdict:
    homography, inliers = _align(new, stored)
    if homography is None or inliers < MIN_INLIERS:
        return Verdict(False, f"does not align ({inliers} matching points)", inliers)
    height, width = new.grey.shape
    warped = cv2.warpPerspective(stored.grey, homography, (width, height), borderValue=0)
    frame = np.full_like(stored.grey, 255)
    overlap = cv2.warpPerspective(frame, homography, (width, height), flags=cv2.INTER_NEAREST)
    # Away from both frames' edges, where resampling differs from copy to copy.
    overlap = cv2.erode(overlap, np.ones((7, 7), np.uint8)) > 0
    overlap[:EDGE_PX], overlap[-EDGE_PX:], overlap[:, :EDGE_PX], overlap[:, -EDGE_PX:] = (
        False,
    ) * 4
    visible = _visible_share(homography, stored.grey.shape, (height, width))
    scale = math.sqrt(abs(float(np.linalg.det(homography[:2, :2]))))
    rotation = math.degrees(math.atan2(homography[1, 0], homography[0, 0]))
    if visible < MIN_VISIBLE or not 0.4 <= scale <= 2.5 or abs(rotation) > 15:
        return Verdict(False, "aligns only in part", inliers, visible, rotation)
    block_share, blob = _differences(new.grey, warped, overlap, scale)
    facts = Verdict(False, "", inliers, visible, rotation, block_share, blob)
    if block_share > MAX_BLOCK_SHARE or blob > MAX_BLOB_PX:
        return _with(facts, False, "aligns but one region differs (another word or element)")
    framed = float(overlap.mean()) < 0.85  # the new file shows more than the design
    return _with(facts, True, "same artwork: " + _describe(visible, rotation, mirrored, framed))


def _with(v: Verdict, same: bool, why: str) -> Verdict:
    return Verdict(same, why, v.inliers, v.visible, v.rotation, v.block_share, v.blob_px)


def _differences(
    new: np.ndarray, warped: np.ndarray, overlap: np.ndarray, scale: float
) -> tuple[float, int]:
    """The largest share of strongly differing pixels in a block, and the largest connected
    area of them. The sharper of the two is blurred to the other's detail first (a stored
    design enlarged 1.25x into a crop has less of it), each is allowed 1 px of misalignment,
    and the stored one's tones are matched to the new one's."""
    sigma_new = math.sqrt(1.0 + 1.44 * max(0.0, scale * scale - 1.0))
    a = cv2.GaussianBlur(new.astype(np.float32), (0, 0), sigma_new)
    b = cv2.GaussianBlur(warped.astype(np.float32), (0, 0), 1.0)
    if overlap.sum() < 64:
        return 1.0, 0
    # Tones matched by quantiles, not a straight line: a brightened copy clips its whites.
    levels = np.linspace(0.0, 1.0, 65)
    b = np.interp(
        b, *_increasing(np.quantile(b[overlap], levels), np.quantile(a[overlap], levels))
    ).astype(np.float32)
    kernel = np.ones((TOLERANCE_PX, TOLERANCE_PX), np.uint8)
    difference = np.maximum(np.maximum(a - cv2.dilate(b, kernel), cv2.erode(b, kernel) - a), 0)
    strong = (difference > STRONG_DIFFERENCE) & overlap
    h, w = (s // BLOCK_PX * BLOCK_PX for s in strong.shape)
    if h == 0 or w == 0:
        return float(strong.mean()), int(strong.sum())
    blocks = (
        strong[:h, :w].reshape(h // BLOCK_PX, BLOCK_PX, w // BLOCK_PX, BLOCK_PX).mean(axis=(1, 3))
    )
    covered = (
        overlap[:h, :w].reshape(h // BLOCK_PX, BLOCK_PX, w // BLOCK_PX, BLOCK_PX).mean(axis=(1, 3))
    )
    share = float(np.where(covered > 0.5, blocks, 0).max())
    closed = cv2.morphologyEx(strong.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(closed)
    blob = int(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else 0
    return share, blob


def _increasing(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantile pairs with strictly increasing x (flat runs of x kept once, at their mean y)."""
    keys, start = np.unique(x, return_index=True)
    return keys, np.add.reduceat(y, start) / np.diff(np.append(start, len(y)))


def _visible_share(homography: np.ndarray, stored: tuple[int, int], new: tuple[int, int]) -> float:
    """The share of the stored design's area that lands inside the new design's frame (the
    new frame mapped back onto the stored design)."""
    frame = np.full(new, 255, np.uint8)
    back = cv2.warpPerspective(
        frame, homography, (stored[1], stored[0]), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    return float(np.count_nonzero(back)) / float(back.size)


def _describe(visible: float, rotation: float, mirrored: bool, framed: bool) -> str:
    parts = ["on a larger canvas"] if framed else []
    if mirrored:
        parts.append("mirrored")
    if visible < 0.97:
        parts.append(f"cropped ({100 * visible:.0f}% of it shown)")
    if abs(rotation) >= 0.7:
        parts.append(f"rotated ~{abs(rotation):.1f} degrees")
    return ", ".join(parts) or "resized, re-encoded or retouched"
