from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from designflow.storage.nas import (
    InvalidUserId,
    LocalNas,
    NasError,
    SourceChangedError,
    check_user_id,
    design_path,
    nas_from_url,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_put_is_atomic_content_addressed_and_idempotent(tmp_path: Path) -> None:
    nas = LocalNas(tmp_path / "nas")
    src = tmp_path / "in.png"
    src.write_bytes(b"design-bytes" * 1000)
    dest = design_path("u1", sha(src.read_bytes()), "png")
    first = nas.put_file(src, dest, sha(src.read_bytes()))
    assert first.written and nas.exists(dest)
    assert nas.read_bytes(dest) == src.read_bytes()
    mtime = (tmp_path / "nas" / dest).stat().st_mtime_ns
    again = nas.put_file(src, dest, sha(src.read_bytes()))
    assert not again.written
    assert (tmp_path / "nas" / dest).stat().st_mtime_ns == mtime
    leftovers = [p for p in (tmp_path / "nas").rglob("*") if p.name.endswith(".part")]
    assert leftovers == []


def test_changed_source_leaves_nothing(tmp_path: Path) -> None:
    nas = LocalNas(tmp_path / "nas")
    src = tmp_path / "in.png"
    src.write_bytes(b"new content")
    dest = design_path("u1", sha(b"old content"), "png")
    with pytest.raises(SourceChangedError):
        nas.put_file(src, dest, sha(b"old content"))
    assert not nas.exists(dest)
    assert [p for p in (tmp_path / "nas").rglob("*") if p.is_file()] == []


def test_failed_write_cleans_temp_and_final(tmp_path: Path) -> None:
    nas = LocalNas(tmp_path / "nas")
    src = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError):
        nas.put_file(src, design_path("u1", "a" * 64, "png"), "a" * 64)
    assert not list((tmp_path / "nas").rglob("*.part"))


def test_design_path_layout() -> None:
    digest = "ab" + "0" * 62
    assert design_path("shop-7", digest, "png") == f"users/shop-7/designs/ab/{digest}.png"


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", "a\x00b", "..", ".hidden", "x" * 200, "a..b"])
def test_hostile_user_ids_refused(bad: str) -> None:
    with pytest.raises(InvalidUserId):
        check_user_id(bad)


def test_paths_cannot_escape_root(tmp_path: Path) -> None:
    nas = LocalNas(tmp_path / "nas")
    with pytest.raises(NasError):
        nas.exists("../outside")


def test_nas_from_url(tmp_path: Path) -> None:
    assert isinstance(nas_from_url(f"file://{tmp_path}"), LocalNas)
    with pytest.raises(NasError, match="unsupported"):
        nas_from_url("ftp://example.invalid/x")
