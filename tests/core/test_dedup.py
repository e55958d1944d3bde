"""The batch's in-batch near-duplicate search: arrays give what the pairwise rules give."""

from __future__ import annotations

from designflow.images.fingerprint import Fingerprint


def _fp(name: str) -> Fingerprint:
    return Fingerprint(path=name, name=name, sha256=name, bytes=1, format="PNG", width=8,
                       height=8, phash=0, ahash=0, dhash=0, whash=0)  # fmt: skip


def test_kept_hashes_find_what_pairwise_rules_find() -> None:
    """The batch's kept designs compared as arrays give the candidates, distances and order
    that near_pair gives pair by pair (random hashes close to each other, views or not)."""
    import random
    from dataclasses import replace

    from designflow.ingest.dedup import KeptHashes, near_pair

    rng = random.Random(5)
    base = [rng.getrandbits(64) for _ in range(6)]

    def near(value: int) -> int:
        for _ in range(rng.randrange(0, 12)):
            value ^= 1 << rng.randrange(64)
        return value - (1 << 64) if value >= 1 << 63 else value  # signed, as stored

    def fingerprint(i: int):
        b = rng.choice(base)
        return replace(
            _fp(f"k{i}"), phash=near(b), dhash=near(b), nd_phash=near(b), nd_dhash=near(b),
            nd_phash_flip=near(b), nd_dhash_flip=near(b),
            views=tuple(near(b) for _ in range(rng.randrange(0, 5))),
            reduction=b"r" if rng.random() < 0.7 else b"",
        )  # fmt: skip

    fps = [fingerprint(i) for i in range(120)]
    kept = KeptHashes(len(fps))
    for fp in fps[:80]:
        kept.add(fp)
    compared = 0
    for fp in fps[80:]:
        expected = [(d, e) for e in fps[:80] if (d := near_pair(fp, e, 8, 26)) is not None]
        assert kept.candidates(fp, 8, 26) == expected
        compared += len(expected)
    assert compared > 20  # the case is not vacuous
