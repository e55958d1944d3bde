"""Near-duplicate search with full recall: multi-index hashing over 64-bit perceptual hashes.

A design's own 64-bit hashes are split into 4 chunks of 16 bits. If every chunk i were
probed with radius r_i and two hashes differed by more than r_i bits in each, they would
differ in at least sum(r_i + 1) bits (pigeonhole). So probing chunk values within radii that
add up to sum(r_i + 1) > T, and checking the full distance, finds every match a full scan
would find. At T = 8: radii (2, 1, 1, 1), 188 probes per query. The earlier layout, 3 chunks
of 21 bits each probed at radius 2, made 785 (one index lookup each, ~4.5 us, bench): the
16-bit chunks find ~15 rows a probe at 1M designs of random hashes instead of ~0.5, and a row
costs far less than a lookup.

The views (17 per design, views.py) keep 3 chunks of 21 and 22 bits: at 17M rows a 16-bit
chunk value would find ~260 rows per probe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

MASK64 = (1 << 64) - 1
# The designs' own hashes: (bits, shift) per chunk.
DESIGN_CHUNKS = ((16, 48), (16, 32), (16, 16), (16, 0))
# The views' hashes.
VIEW_CHUNKS = ((21, 43), (21, 22), (22, 0))
DEFAULT_DISTANCE = 8
# phash + dhash distance above which a phash match is treated as a coincidence; chosen from
# the quality benchmark (bench/near_duplicates.py): transformed copies stay below ~20,
# distinct designs that happen to be within 8 bits of phash lie far above.
DEFAULT_CONFIRM_SUM = 26
# Masks of up to this many bits are made in SQL (the statement's masks).
MAX_RADIUS = 3


def unsigned(value: int) -> int:
    return value & MASK64


def signed(value: int) -> int:
    value &= MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & MASK64).bit_count()


def chunks(value: int, layout: tuple[tuple[int, int], ...] = DESIGN_CHUNKS) -> tuple[int, ...]:
    u = unsigned(value)
    return tuple((u >> shift) & ((1 << bits) - 1) for bits, shift in layout)


def chunk_radii(distance: int, parts: int = len(DESIGN_CHUNKS)) -> tuple[int, ...]:
    """The smallest probe radii per chunk that still find every hash within `distance`:
    sum(r_i + 1) = distance + 1, spread as evenly as the chunks allow."""
    total = max(0, distance) + 1
    return tuple(total // parts + (1 if i < total % parts else 0) - 1 for i in range(parts))


@lru_cache(maxsize=16)
def _masks(bits: int, radius: int) -> tuple[int, ...]:
    out = [0]
    for r in range(1, radius + 1):
        for positions in combinations(range(bits), r):
            mask = 0
            for p in positions:
                mask |= 1 << p
            out.append(mask)
    return tuple(out)


def probe_values(value: int, distance: int) -> list[tuple[int, int]]:
    """(chunk index, chunk value) pairs the catalog looks up for one design hash query."""
    out: list[tuple[int, int]] = []
    radii = chunk_radii(distance)
    for index, (chunk, (bits, _), radius) in enumerate(
        zip(chunks(value), DESIGN_CHUNKS, radii, strict=True)
    ):
        out.extend((index, chunk ^ mask) for mask in _masks(bits, radius))
    return out


TRIMMED = "trimmed"  # nd_phash / nd_dhash: the design trimmed to its content
PLAIN = "plain"  # phash / dhash of the whole image


@dataclass(frozen=True)
class NearQuery:
    """One hash to look for: `key` identifies the new design, `flipped` its mirror image,
    `kind` which of the stored hashes it is compared with."""

    key: int
    phash: int
    dhash: int
    flipped: bool = False
    kind: str = TRIMMED
    sha256: str = ""  # the new design's content: its queries are dropped when it is known


@dataclass(frozen=True)
class NearMatch:
    key: int
    design_id: int
    distance: int  # phash Hamming distance
    confirm: int  # phash + dhash distance
    flipped: bool
    nas_path: str = ""
    view: int = 0  # 0: the design's own hash; else which view of it matched (views.py)
    why: str = ""  # what the verifier saw, once it has looked
    width: int = 0  # the stored design's size
    height: int = 0


# The views are probed with radius 1 per chunk, not the radius that guarantees every view
# within the distance (2 at 8 bits): 66 lookups a query instead of 762, against 17 views per
# design (16M rows at 1M designs: 37 -> ~14 ms an image, bench). A copy within 8 bits of a
# view nearly always has a chunk within 1 bit of it: on bench.near_duplicates' evaluation
# set the first stage found the same copies either way but one (half size + JPEG + crop) of
# 408. The designs' own hashes keep the full radius: every one within the distance is found.
VIEW_PROBE_RADIUS = 1


def is_near(phash_distance: int, dhash_distance: int, distance: int, confirm_sum: int) -> bool:
    return phash_distance <= distance and phash_distance + dhash_distance <= confirm_sum


def best_matches(matches: Iterable[NearMatch]) -> dict[int, NearMatch]:
    """The closest match per query key (ties: the oldest design)."""
    best: dict[int, NearMatch] = {}
    for m in matches:
        current = best.get(m.key)
        if current is None or (m.distance, m.confirm, m.design_id) < (
            current.distance,
            current.confirm,
            current.design_id,
        ):
            best[m.key] = m
    return best
