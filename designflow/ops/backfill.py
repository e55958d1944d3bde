"""Recompute near-duplicate data for designs stored before it existed, from the files on
the NAS: the trimmed hashes (migration 0002 gave those rows their plain phash/dhash as a
stand-in), the views and the verifier's reduction (migration 0011)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from designflow.catalog import Catalog
from designflow.images.fingerprint import RejectedDesign, fingerprint_bytes
from designflow.ingest.service import new_design_row
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
        updates, extras = [], []
        for design_id, _user, path in rows:
            seen.add(design_id)
            try:
                fp = fingerprint_bytes(nas.read_bytes(path), path, limits)
            except (OSError, RejectedDesign) as exc:
                result.missing.append(f"{path}: {exc}")
                continue
            updates.append((design_id, fp.nd_phash, fp.nd_dhash))
            extras.append(new_design_row(fp, _user, uuid.uuid4(), None))
        result.updated += catalog.set_near_hashes(updates, extras)
