from __future__ import annotations

from pathlib import Path

import pytest

from designflow.ingest.batching import CandidateFile, collect_design_files, plan_batches


def files(*sizes: int) -> list[CandidateFile]:
    return [CandidateFile(f"f{i}.png", s) for i, s in enumerate(sizes)]


def test_batches_respect_image_count() -> None:
    batches = plan_batches(files(*[1] * 45), max_bytes=10**9, max_images=20)
    assert [len(b) for b in batches] == [20, 20, 5]


def test_batches_respect_bytes() -> None:
    batches = plan_batches(files(30, 30, 30, 10, 10), max_bytes=50, max_images=20)
    assert [[f.size for f in b] for b in batches] == [[30], [30], [30, 10, 10]]


def test_oversized_file_travels_alone_and_order_is_kept() -> None:
    items = files(10, 500, 10)
    batches = plan_batches(items, max_bytes=50, max_images=20)
    assert [[f.path for f in b] for b in batches] == [["f0.png"], ["f1.png"], ["f2.png"]]


def test_empty_and_invalid_limits() -> None:
    assert plan_batches([], 50, 20) == []
    with pytest.raises(ValueError):
        plan_batches(files(1), 0, 20)


def test_collect_walks_folders_and_reports_unusable(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.png", "a/b/two.JPG", "a/notes.txt", "a/.hidden.png", "a/b/three.webp",
                 "a/scan.TIFF", "a/.git/config"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "others").mkdir()
    (tmp_path / "others" / "flyer.pdf").write_bytes(b"%PDF")
    explicit = tmp_path / "named.bin"
    explicit.write_bytes(b"y")
    found, unusable = collect_design_files(
        [tmp_path / "a", explicit, tmp_path / "missing.png", tmp_path / "empty",
         tmp_path / "others"]
    )  # fmt: skip
    names = sorted(Path(f.path).name for f in found)
    assert names == ["named.bin", "one.png", "three.webp", "two.JPG"]
    reasons = {Path(u.path).name: u.reason for u in unusable if not u.skipped}
    assert reasons == {
        "missing.png": "no such file or folder",
        "empty": "folder contains no design files",
        "others": "folder contains no design files",
    }
    # Every other file found is accounted for, with why it was not taken.
    skipped = {str(Path(u.path).relative_to(tmp_path)): u.reason for u in unusable if u.skipped}
    assert skipped == {
        "a/.git": "hidden folder",
        "a/.hidden.png": "hidden file",
        "a/notes.txt": "a .txt file is not an accepted format (PNG, JPEG, WebP or GIF)",
        "a/scan.TIFF": "TIFF is not an accepted format (PNG, JPEG, WebP or GIF)",
        "others/flyer.pdf": "PDF is not an accepted format (PNG, JPEG, WebP or GIF)",
    }


def _loops(folder: Path) -> None:
    (folder / "self.png").symlink_to("self.png")
    (folder / "ping.png").symlink_to("pong.png")
    (folder / "pong.png").symlink_to("ping.png")


def test_symlink_loops_in_a_folder_are_refused_and_the_rest_goes_on(tmp_path: Path) -> None:
    """A link to itself and two links to each other: each gets a reason, the good file is
    taken (Path.resolve raised RuntimeError on Python 3.11 and stopped the whole walk)."""
    _loops(tmp_path)
    (tmp_path / "good.png").write_bytes(b"x")
    found, unusable = collect_design_files([tmp_path])
    assert [Path(f.path).name for f in found] == ["good.png"]
    assert {Path(u.path).name: u.reason for u in unusable} == {
        name: "symbolic link loop (it points back at itself): not followed"
        for name in ("self.png", "ping.png", "pong.png")
    }


def test_symlink_loops_named_directly_are_refused(tmp_path: Path) -> None:
    _loops(tmp_path)
    (tmp_path / "gone.png").symlink_to("nothing-here.png")
    found, unusable = collect_design_files(
        [tmp_path / "self.png", tmp_path / "ping.png", tmp_path / "gone.png"]
    )
    assert found == []
    reasons = {Path(u.path).name: u.reason for u in unusable}
    assert (
        reasons["self.png"]
        == reasons["ping.png"]
        == ("symbolic link loop (it points back at itself): not followed")
    )
    assert reasons["gone.png"] == "symbolic link to a file that does not exist"


def test_a_folder_replaced_by_a_file_mid_walk_gets_an_outcome(tmp_path: Path, monkeypatch) -> None:
    """The walk lists the top folder, then its sub-folder is replaced by a file before the
    walk goes in: the sub-folder is named with the reason, the rest is taken."""
    import os
    import shutil

    (tmp_path / "a.png").write_bytes(b"x")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.png").write_bytes(b"y")
    real_walk = os.walk

    def walk_then_replace(top, *args, **kwargs):
        for step in real_walk(top, *args, **kwargs):
            yield step
            if Path(step[0]) == tmp_path:  # listed: now the folder becomes a file
                shutil.rmtree(sub)
                sub.write_bytes(b"now a file")

    monkeypatch.setattr(os, "walk", walk_then_replace)
    found, unusable = collect_design_files([tmp_path])
    assert [Path(f.path).name for f in found] == ["a.png"]
    assert [(Path(u.path).name, u.reason) for u in unusable] == [
        ("sub", "cannot list folder: Not a directory")
    ]


def test_small_files_go_many_to_a_batch_unless_a_count_is_asked_for() -> None:
    from designflow.ingest.batching import MAX_FILES_PER_BATCH, SMALL_FILES_BATCH_BYTES

    small = files(*[12_000] * 2500)  # 64x64 PNGs
    by_work = plan_batches(small, max_bytes=200 * 2**20, max_images=20, by_work=True)
    assert [len(b) for b in by_work] == [MAX_FILES_PER_BATCH, MAX_FILES_PER_BATCH, 500]
    assert len(plan_batches(small, 200 * 2**20, 20)) == 125  # asked for 20 a batch: 20
    large = files(*[3 * 2**20] * 45)  # 1200x1500 designs keep today's batches of 20
    assert [len(b) for b in plan_batches(large, 200 * 2**20, 20, by_work=True)] == [20, 20, 5]
    mixed = files(*[12_000] * 30, *[SMALL_FILES_BATCH_BYTES] * 3)
    assert [len(b) for b in plan_batches(mixed, 200 * 2**20, 20, by_work=True)] == [31, 2]
