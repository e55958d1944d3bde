"""Compare the catalog with the NAS: what `designflow verify` reports and repairs.

Missing: a row whose file is not on the NAS. Mismatch: the file's size (or, with `deep`,
its sha256) differs from the row. Orphan: a design file on the NAS with no row (an upload
stopped between the NAS and the catalog). Temporary: a `.part` file left by an upload that
died mid-file. Repair adopts orphans whose content matches their content address (a row is
made from the file itself) and marks missing designs inactive with `missing_since`.
"""

from __future__ import annotations

import hashlib
import posixpath
import uuid
from dataclasses import dataclass, field

from designflow.catalog import Catalog, NewDesign
from designflow.fingerprint import RejectedDesign, fingerprint_bytes
from designflow.nas import Nas, check_user_id
from designflow.settings import ImageLimits


@dataclass
class VerifyReport:
    checked: int = 0
    missing: list[dict] = field(default_factory=list)
    mismatched: list[dict] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    temporary: list[str] = field(default_factory=list)
    adopted: list[dict] = field(default_factory=list)
    marked_missing: list[int] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.mismatched or self.orphans)

    def as_dict(self) -> dict:
        return {
            "checked": self.checked, "clean": self.clean, "missing": self.missing,
            "mismatched": self.mismatched, "orphans": self.orphans, "temporary": self.temporary,
            "adopted": self.adopted, "marked_missing": self.marked_missing,
        }  # fmt: skip


def verify(
    catalog: Catalog,
    nas: Nas,
    user_id: str | None = None,
    repair: bool = False,
    deep: bool = False,
    limits: ImageLimits | None = None,
) -> VerifyReport:
    report = VerifyReport()
    users = [check_user_id(user_id)] if user_id else catalog.users()
    for user in users:
        every = catalog.designs_of_user(user)
        rows = [r for r in every if r["is_active"]]
        known = {str(r["nas_path"]) for r in every}
        for row in rows:
            report.checked += 1
            path = str(row["nas_path"])
            size = nas.size(path)
            if size is None:
                report.missing.append({"design_id": row["id"], "nas_path": path})
            elif size != row["bytes"]:
                report.mismatched.append(
                    {
                        "design_id": row["id"],
                        "nas_path": path,
                        "why": f"{size} bytes on the NAS, {row['bytes']} in the catalog",
                    }
                )
            elif deep and hashlib.sha256(nas.read_bytes(path)).hexdigest() != row["sha256"]:
                report.mismatched.append(
                    {"design_id": row["id"], "nas_path": path, "why": "sha256 differs"}
                )
        for path in nas.list_files(f"users/{user}/designs"):
            name = posixpath.basename(path)
            if ".mockups/" in path:
                continue
            if name.endswith(".part"):
                report.temporary.append(path)
            elif path not in known:
                report.orphans.append(path)
        if repair:
            _repair(catalog, nas, user, report, limits or ImageLimits())
    return report


def _repair(
    catalog: Catalog, nas: Nas, user: str, report: VerifyReport, limits: ImageLimits
) -> None:
    for path in [p for p in report.orphans if p.startswith(f"users/{user}/")]:
        data = nas.read_bytes(path)
        digest = hashlib.sha256(data).hexdigest()
        if posixpath.basename(path).split(".")[0] != digest:
            continue  # not what its name says: left for a person to look at
        try:
            fp = fingerprint_bytes(data, path, limits)
        except RejectedDesign:
            continue
        result = catalog.record_designs([
            NewDesign(
                user_id=user, sha256=digest, phash=fp.phash, ahash=fp.ahash, dhash=fp.dhash,
                whash=fp.whash, width=fp.width, height=fp.height, bytes=fp.bytes, format=fp.format,
                original_name=posixpath.basename(path), nas_path=path, batch_id=uuid.uuid4(),
                flow_run_id=None, nd_phash=fp.nd_phash, nd_dhash=fp.nd_dhash,
            )
        ])  # fmt: skip
        if digest in result.inserted:
            report.adopted.append({"design_id": result.inserted[digest], "nas_path": path})
    missing = [m["design_id"] for m in report.missing]
    if missing:
        report.marked_missing = catalog.mark_missing(user, missing)
