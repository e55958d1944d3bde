"""Recompute near-duplicate hashes for designs stored before they existed (migration 0002
gave those rows their plain phash/dhash as a stand-in), from the files on the NAS."""

from __future__ import annotations

from dataclasses import dataclass

from designflow.catalog import Catalog
from designflow.images.fingerprint import RejectedDesign, fingerprint_bytes
from designflow.settings import ImageLimits
from designflow.storage.nas import Nas


@dataclass
class BackfillResult:
    updated: int = 0
    missing: list[str] | None = None  # NAS paths that could not be read


def backfill_near_hashes(
    catalog: Catalog, nas: Nas, limits: ImageLimits, batch: int = 200
) -> BackfillResult:
    result = BackfillResult(missing=[])
    seen: set[int] = set()
    while True:
        rows = [r for r in catalog.rows_to_backfill(batch) if r[0] not in seen]
        if not rows:
            return result
        updates = []
        for design_id, _user, path in rows:
            seen.add(design_id)
            try:
                fp = fingerprint_bytes(nas.read_bytes(path), path, limits)
            except (OSError, RejectedDesign) as exc:
                result.missing.append(f"{path}: {exc}")
                continue
            updates.append((design_id, fp.nd_phash, fp.nd_dhash))
        result.updated += catalog.set_near_hashes(updates)
