"""What a seller owns that looks like an image: `designflow designs find`.

The same two stages as an upload's duplicate check (designflow.ingest.dedup): the catalog's
hash lookup finds candidates (the design's own hashes within the distance, the views of each
stored design), then the verifier looks at each with the stored reduction and says whether it
is the same artwork. Nothing is stored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from designflow.catalog import Catalog
from designflow.images.fingerprint import Fingerprint
from designflow.images.similarity import best_matches
from designflow.images.verify import compare
from designflow.ingest.dedup import near_queries


@dataclass(frozen=True)
class Lookalike:
    design_id: int
    name: str
    nas_path: str
    distance: int  # phash bits; 0 for the same bytes
    kind: str  # "exact": the same file; "same artwork" or "different" as the verifier saw it
    why: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def designs_like(
    catalog: Catalog, user_id: str, fingerprint: Fingerprint, distance: int, limit: int = 20
) -> list[Lookalike]:
    """The seller's active designs that look like `fingerprint`, the same bytes first, then
    the closest hash; the verifier's verdict on each."""
    exact = catalog.find_by_sha256(user_id, [fingerprint.sha256])
    out = [Lookalike(e.id, "", e.nas_path, 0, "exact", "the same file") for e in exact.values()]
    seen = {e.id for e in exact.values()}
    found = catalog.find_near(user_id, near_queries([fingerprint]), distance)
    per_design = best_matches(replace(m, key=m.design_id) for m in found)  # closest per design
    ranked = sorted(
        (m for m in per_design.values() if m.design_id not in seen), key=lambda m: m.distance
    )[:limit]
    reductions = catalog.reductions([m.design_id for m in ranked])
    for m in ranked:
        verdict = compare(fingerprint.reduction, reductions.get(m.design_id, b""), m.flipped)
        kind = "same artwork" if verdict.same else "different"
        out.append(Lookalike(m.design_id, "", m.nas_path, m.distance, kind, verdict.why))
    names = catalog.designs_by_id([x.design_id for x in out])
    return [replace(x, name=str(names.get(x.design_id, {}).get("original_name", ""))) for x in out][
        :limit
    ]
