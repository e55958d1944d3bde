"""`verify`: the catalog against the NAS, and what --repair does about the differences."""

from __future__ import annotations

import uuid
from pathlib import Path

from designflow.catalog import Catalog, NewDesign
from designflow.fingerprint import fingerprint_design
from designflow.nas import LocalNas, design_path
from designflow.verify import verify
from tests import images


def store(catalog: Catalog, nas: LocalNas, path: Path, user: str, record: bool = True) -> str:
    fp = fingerprint_design(path)
    dest = design_path(user, fp.sha256, fp.extension)
    nas.put_file(path, dest, fp.sha256)
    if record:
        catalog.record_designs([NewDesign(
            user, fp.sha256, fp.phash, fp.ahash, fp.dhash, fp.whash, fp.width, fp.height, fp.bytes,
            fp.format, fp.name, dest, uuid.uuid4(), None, fp.nd_phash, fp.nd_dhash)])  # fmt: skip
    return dest


def test_verify_reports_and_repairs(database_url: str, tmp_path: Path) -> None:
    catalog = Catalog(database_url)
    catalog.migrate()
    nas = LocalNas(tmp_path / "nas")
    paths = [images.write_png(tmp_path / f"v{i}.png", seed=1300 + i) for i in range(5)]
    kept, gone, cut, _ = (store(catalog, nas, p, "ivy") for p in paths[:4])
    orphan = store(catalog, nas, paths[4], "ivy", record=False)  # on the NAS, never recorded
    (tmp_path / "nas" / gone).unlink()
    full = (tmp_path / "nas" / cut).read_bytes()
    (tmp_path / "nas" / cut).write_bytes(full[: len(full) // 2])
    leftover = Path(tmp_path / "nas" / kept).with_name(".x.png.123.part")
    leftover.write_bytes(b"partial")
    store(catalog, nas, images.write_png(tmp_path / "other.png", seed=1400), "jon")

    report = verify(catalog, nas, "ivy")
    assert report.checked == 4 and not report.clean
    assert [m["nas_path"] for m in report.missing] == [gone]
    assert [m["nas_path"] for m in report.mismatched] == [cut]
    assert report.orphans == [orphan]
    assert report.temporary == [str(leftover.relative_to(tmp_path / "nas"))]

    repaired = verify(catalog, nas, "ivy", repair=True)
    assert [a["nas_path"] for a in repaired.adopted] == [orphan]
    assert len(repaired.marked_missing) == 1
    rows = {r["nas_path"]: r for r in catalog.designs_of_user("ivy")}
    assert rows[orphan]["is_active"] and not rows[gone]["is_active"]

    after = verify(catalog, nas, "ivy")
    assert (
        after.missing == []
        and after.orphans == []
        and [m["nas_path"] for m in after.mismatched] == [cut]
    )
    assert verify(catalog, nas, "jon").clean
    deep = verify(catalog, nas, "jon", deep=True)
    assert deep.clean and deep.checked == 1
