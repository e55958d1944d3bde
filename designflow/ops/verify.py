"""Compare the catalog with the NAS: what `designflow verify` reports and repairs.

Missing: a row whose file is not on the NAS. Mismatch: the file's size (or, with `deep`,
its sha256) differs from the row. Orphan: a design file on the NAS with no row (an upload
stopped between the NAS and the catalog), of any seller folder on the NAS, including a
seller with no row at all (a run killed before its first insert). Temporary: a `.part`
file left by an upload or a server that died mid-file; one older than an hour is stale
(no upload writes for that long), a younger one may belong to an upload in progress.

Repair adopts orphans whose content matches their content address (a row is made from the
file itself), removes stale temporaries and marks missing designs inactive with
`missing_since`. Anything it cannot mend stays in the report as unresolved.
"""

from __future__ import annotations

import hashlib
import posixpath
import time
import uuid
from dataclasses import dataclass, field

from designflow.catalog import Catalog
from designflow.images.fingerprint import RejectedDesign, fingerprint_bytes
from designflow.ingest.service import new_design_row
from designflow.settings import ImageLimits
from designflow.storage.nas import Nas, check_user_id, design_path, is_design_file, user_folder

STALE_TEMPORARY_S = 3600


@dataclass
class VerifyReport:
    checked: int = 0
    missing: list[dict] = field(default_factory=list)
    mismatched: list[dict] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    temporary: list[str] = field(default_factory=list)  # stale: older than an hour
    in_progress: list[str] = field(default_factory=list)  # younger temporaries, left alone
    adopted: list[dict] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    marked_missing: list[int] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.mismatched or self.orphans or self.temporary)

    @property
    def unresolved(self) -> list[str]:
        """What is still wrong after a repair (all of it without one)."""
        adopted = {a["nas_path"] for a in self.adopted}
        marked = set(self.marked_missing)
        return (
            [m["nas_path"] for m in self.missing if m["design_id"] not in marked]
            + [m["nas_path"] for m in self.mismatched]
            + [p for p in self.orphans if p not in adopted]
            + [p for p in self.temporary if p not in self.removed]
        )

    def as_dict(self) -> dict:
        return {
            "checked": self.checked, "clean": self.clean, "missing": self.missing,
            "mismatched": self.mismatched, "orphans": self.orphans, "temporary": self.temporary,
            "in_progress": self.in_progress, "adopted": self.adopted, "removed": self.removed,
            "marked_missing": self.marked_missing, "unresolved": self.unresolved,
        }  # fmt: skip


def verify(
    catalog: Catalog,
    nas: Nas,
    user_id: str | None = None,
    repair: bool = False,
    deep: bool = False,
    limits: ImageLimits | None = None,
    now: float | None = None,
) -> VerifyReport:
    report = VerifyReport()
    now = time.time() if now is None else now
    files = nas.list_files(user_folder(user_id) if user_id else "users")
    users = [user_id] if user_id else sorted(set(catalog.users()) | _users_on_nas(files))
    for user in users:
        every = catalog.designs_of_user(user)
        _check_rows(nas, [r for r in every if r["is_active"]], deep, report)
        known = {str(r["nas_path"]) for r in every}
        for path in files:
            if not is_design_file(user, path):
                continue
            if posixpath.basename(path).endswith(".part"):
                modified = nas.modified(path)
                stale = modified is not None and now - modified > STALE_TEMPORARY_S
                (report.temporary if stale else report.in_progress).append(path)
            elif path not in known:
                report.orphans.append(path)
        if repair:
            _repair(catalog, nas, user, report, limits or ImageLimits())
    return report


def _users_on_nas(files: list[str]) -> set[str]:
    """Seller folders on the NAS (users/<user>/...), valid user ids only."""
    users = set()
    for path in files:
        parts = path.split("/")
        if len(parts) > 2 and parts[0] == "users":
            try:
                users.add(check_user_id(parts[1]))
            except ValueError:
                continue
    return users


def _check_rows(nas: Nas, rows: list[dict], deep: bool, report: VerifyReport) -> None:
    for row in rows:
        report.checked += 1
        path = str(row["nas_path"])
        size = nas.size(path)
        if size is None:
            report.missing.append({"design_id": row["id"], "nas_path": path})
        elif size != row["bytes"]:
            why = f"{size} bytes on the NAS, {row['bytes']} in the catalog"
            report.mismatched.append({"design_id": row["id"], "nas_path": path, "why": why})
        elif deep and hashlib.sha256(nas.read_bytes(path)).hexdigest() != row["sha256"]:
            report.mismatched.append(
                {"design_id": row["id"], "nas_path": path, "why": "sha256 differs"}
            )


def _repair(
    catalog: Catalog, nas: Nas, user: str, report: VerifyReport, limits: ImageLimits
) -> None:
    for path in [p for p in report.orphans if p.startswith(f"{user_folder(user)}/")]:
        data = nas.read_bytes(path)
        digest = hashlib.sha256(data).hexdigest()
        try:
            fp = fingerprint_bytes(data, path, limits)
        except RejectedDesign:
            continue
        if path != design_path(user, digest, fp.extension):
            continue  # not what its name says: left for a person to look at
        result = catalog.record_designs([new_design_row(fp, user, uuid.uuid4(), None)])
        if digest in result.inserted:
            report.adopted.append({"design_id": result.inserted[digest], "nas_path": path})
    for path in [p for p in report.temporary if p.startswith(f"{user_folder(user)}/")]:
        nas.remove(path)
        report.removed.append(path)
    missing = [m["design_id"] for m in report.missing]
    if missing:
        report.marked_missing = catalog.mark_missing(user, missing)
