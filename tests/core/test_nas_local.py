from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest

from designflow.storage.nas import (
    InvalidUserId,
    LocalNas,
    NasError,
    NasFullError,
    SourceChangedError,
    check_user_id,
    design_path,
    nas_from_url,
)
from tests.disks import tmpfs


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


@pytest.fixture
def one_mb_disk(tmp_path: Path):
    """A 1 MB disk: a write fails in the middle of the copy."""
    with tmpfs(tmp_path / "disk", "1m") as mount_point:
        yield mount_point


def test_failed_write_mid_copy_leaves_no_temporary(tmp_path: Path, one_mb_disk: Path) -> None:
    nas = LocalNas(one_mb_disk)
    src = tmp_path / "big.png"
    src.write_bytes(os.urandom(3 * 1024 * 1024))
    dest = design_path("u1", sha(src.read_bytes()), "png")
    with pytest.raises(NasFullError, match="the NAS disk is full"):
        nas.put_file(src, dest, sha(src.read_bytes()))
    assert [p for p in one_mb_disk.rglob("*") if p.is_file()] == []  # no .part, no final
    assert shutil.disk_usage(one_mb_disk).used < 64 * 1024  # the partial bytes were freed
    small = tmp_path / "small.png"
    small.write_bytes(b"x" * 1000)
    assert nas.put_file(small, design_path("u1", sha(b"x" * 1000), "png"), sha(b"x" * 1000)).written


def test_data_and_directory_synced_around_the_rename(tmp_path: Path, monkeypatch) -> None:
    """The README: the file is flushed to disk before it is renamed into place, and the
    directory entry after."""
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(a, b) -> None:
        calls.append("rename")
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    src = tmp_path / "in.png"
    src.write_bytes(b"durable" * 100)
    LocalNas(tmp_path / "nas").put_file(
        src, design_path("u1", sha(src.read_bytes()), "png"), sha(src.read_bytes())
    )
    assert calls == ["fsync-file", "rename", "fsync-dir"]


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
    with pytest.raises(
        NasError, match="the scheme .ftp. of .ftp://example.invalid/x. is not supported"
    ):
        nas_from_url("ftp://example.invalid/x")


def test_a_nas_folder_that_refuses_writes_is_named(tmp_path: Path) -> None:
    """Writes refused (a read-only share here; permissions taken away behave the same): the
    error names the operation and the NAS folder, and no retry is asked for."""
    import subprocess

    from designflow.errors import is_transient

    src = tmp_path / "in.png"
    src.write_bytes(b"design bytes")
    digest = sha(src.read_bytes())
    dest = design_path("ro", digest, "png")
    with tmpfs(tmp_path / "ro-nas", "1m") as root:
        subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
        with pytest.raises(NasError) as caught:
            LocalNas(root).put_file(src, dest, digest)
    assert str(caught.value) == f"cannot write {os.path.dirname(dest)}/: read-only file system"
    assert not is_transient(caught.value)
