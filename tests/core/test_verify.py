"""`verify`: the catalog against the NAS, and what --repair does about the differences."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from designflow.catalog import Catalog, NewDesign
from designflow.images.fingerprint import fingerprint_design
from designflow.ops.verify import verify
from designflow.storage.nas import LocalNas, design_path
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
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))  # left by a dead upload
    writing = leftover.with_name(".y.png.456.part")
    writing.write_bytes(b"an upload in progress")
    store(catalog, nas, images.write_png(tmp_path / "other.png", seed=1400), "jon")

    report = verify(catalog, nas, "ivy")
    assert report.checked == 4 and not report.clean
    assert [m["nas_path"] for m in report.missing] == [gone]
    assert [m["nas_path"] for m in report.mismatched] == [cut]
    assert report.orphans == [orphan]
    assert report.temporary == [str(leftover.relative_to(tmp_path / "nas"))]
    assert report.in_progress == [str(writing.relative_to(tmp_path / "nas"))]

    repaired = verify(catalog, nas, "ivy", repair=True)
    assert [a["nas_path"] for a in repaired.adopted] == [orphan]
    assert len(repaired.marked_missing) == 1
    rows = {r["nas_path"]: r for r in catalog.designs_of_user("ivy")}
    assert rows[orphan]["is_active"] and not rows[gone]["is_active"]
    assert not leftover.exists() and writing.exists()  # stale removed, in-progress kept
    assert repaired.unresolved == [cut]  # a mismatch is for a person to look at

    after = verify(catalog, nas, "ivy")
    assert (
        after.missing == []
        and after.orphans == []
        and [m["nas_path"] for m in after.mismatched] == [cut]
    )
    assert verify(catalog, nas, "jon").clean
    deep = verify(catalog, nas, "jon", deep=True)
    assert deep.clean and deep.checked == 1


def test_verify_finds_files_of_a_seller_with_no_catalog_rows(
    database_url: str, tmp_path: Path
) -> None:
    """A run killed before its first insert leaves files of a seller the catalog has never
    seen: verify used to walk only the catalog's sellers and report "clean"."""
    catalog = Catalog(database_url)
    catalog.migrate()
    nas = LocalNas(tmp_path / "nas")
    first = store(
        catalog, nas, images.write_png(tmp_path / "n0.png", seed=1500), "newbie", record=False
    )
    second = store(
        catalog, nas, images.write_png(tmp_path / "n1.png", seed=1501), "newbie", record=False
    )
    store(catalog, nas, images.write_png(tmp_path / "k.png", seed=1502), "known")
    report = verify(catalog, nas)
    assert not report.clean and sorted(report.orphans) == sorted([first, second])
    repaired = verify(catalog, nas, repair=True)
    assert sorted(a["nas_path"] for a in repaired.adopted) == sorted([first, second])
    assert repaired.unresolved == []
    assert {r["nas_path"] for r in catalog.designs_of_user("newbie")} == {first, second}
    assert verify(catalog, nas).clean


def test_verify_command_exit_code_follows_what_is_wrong(
    database_url: str, tmp_path: Path, monkeypatch
) -> None:
    from designflow.cli import main

    monkeypatch.setenv("DESIGNFLOW_DATABASE_URL", database_url)
    monkeypatch.setenv("DESIGNFLOW_NAS_URL", f"file://{tmp_path / 'nas'}")
    monkeypatch.setenv("DESIGNFLOW_HOME", str(tmp_path / "home"))
    catalog = Catalog(database_url)
    catalog.migrate()
    nas = LocalNas(tmp_path / "nas")
    store(catalog, nas, images.write_png(tmp_path / "o.png", seed=1503), "orphaned", record=False)
    assert main(["verify"]) == 1
    assert main(["verify", "--repair"]) == 0
    assert main(["verify"]) == 0
