"""upload_designs end to end: Prefect's test harness, real PostgreSQL, real folder NAS."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path

import pytest

from designflow.catalog import Catalog
from designflow.flows.upload import UploadIncomplete, upload_designs
from tests import images
from tests.conftest import DesignflowEnv


def nas_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def catalog_rows(env: DesignflowEnv, user: str) -> list[dict]:
    return Catalog(env.database_url).designs_of_user(user)


def good_designs(folder: Path, count: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        if i % 3 == 2:
            made.append(images.write_jpeg(folder / f"design {start + i} ✓.jpg", seed=start + i))
        else:
            made.append(images.write_png(folder / f"design-{start + i}.png", seed=start + i))
    return made


def bad_inputs(folder: Path) -> dict[str, str]:
    """name -> expected words in the rejection reason."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.png").write_bytes(b"")
    (folder / "notes.png").write_text("just text\n")
    images.truncated_png(folder / "cut.png", 50)
    images.header_bomb_png(folder / "header-bomb.png")
    images.real_bomb_png(folder / "real-bomb.png")
    return {
        "zero.png": "empty file",
        "notes.png": "not a PNG, JPEG",
        "cut.png": "truncated",
        "header-bomb.png": "decompression bomb",
        "real-bomb.png": "decompression bomb",
    }


def test_folder_with_good_awkward_and_bad_files(designflow_env: DesignflowEnv, monkeypatch) -> None:
    inputs = designflow_env.inputs
    good = good_designs(inputs / "good", 4)
    images.palette_png_with_transparency(inputs / "good" / "palette.png", 60)
    images.png_16bit_gray(inputs / "good" / "deep.png", 61)
    images.cmyk_jpeg(inputs / "good" / "cmyk.jpg", 62)
    images.exif_rotated_jpeg(inputs / "good" / "rotated.jpg", 63)
    expected_bad = bad_inputs(inputs / "bad")
    images.noisy_png(inputs / "bad" / "huge.png", 3, (700, 700))  # ~1.5 MB
    expected_bad["huge.png"] = "over the size cap"
    monkeypatch.setenv("DESIGNFLOW_MAX_FILE_MB", "1")
    not_there = inputs / "vanished.png"
    expected_bad["vanished.png"] = "no such file"

    report = upload_designs(
        paths=[str(inputs / "good"), str(inputs / "bad"), str(not_there)], user_id="alice"
    )

    assert len(report["stored"]) == len(good) + 4
    rejected = {Path(r["file"]).name: r["reason"] for r in report["rejected"]}
    assert set(rejected) == set(expected_bad)
    for name, words in expected_bad.items():
        assert words in rejected[name], (name, rejected[name])
    assert report["duplicates"] == [] and report["failed"] == []

    rows = catalog_rows(designflow_env, "alice")
    assert len(rows) == len(report["stored"])
    on_nas = nas_files(designflow_env.nas_root)
    assert len(on_nas) == len(rows)
    for entry in report["stored"]:
        stored = designflow_env.nas_root / entry["nas_path"]
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == entry["sha256"]
        assert hashlib.sha256(Path(entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
    assert not [p for p in on_nas if p.name.endswith(".part")]
    assert {r["flow_run_id"] for r in rows} == {uuid.UUID(report["flow_run_id"])}
    rotated = next(r for r in rows if r["original_name"] == "rotated.jpg")
    assert (rotated["width"], rotated["height"]) == (600, 720)


def test_second_upload_stores_nothing_new(designflow_env: DesignflowEnv) -> None:
    folder = designflow_env.inputs / "set"
    good_designs(folder, 5)
    first = upload_designs(paths=[str(folder)], user_id="bob")
    assert len(first["stored"]) == 5
    before = nas_files(designflow_env.nas_root)

    second = upload_designs(paths=[str(folder)], user_id="bob")
    assert second["stored"] == []
    assert sorted(d["kind"] for d in second["duplicates"]) == ["exact"] * 5
    ids = {s["file"]: s["design_id"] for s in first["stored"]}
    assert {d["file"]: d["duplicate_of"] for d in second["duplicates"]} == ids
    assert nas_files(designflow_env.nas_root) == before
    assert len(catalog_rows(designflow_env, "bob")) == 5


def test_identical_files_in_one_upload(designflow_env: DesignflowEnv) -> None:
    folder = designflow_env.inputs / "twins"
    folder.mkdir()
    original = images.write_png(folder / "a.png", seed=70)
    shutil.copy(original, folder / "b.png")
    report = upload_designs(paths=[str(folder)], user_id="carol")
    assert len(report["stored"]) == 1
    (dup,) = report["duplicates"]
    assert dup["kind"] == "in-batch" and dup["distance"] == 0
    assert dup["duplicate_of"] == report["stored"][0]["design_id"]
    assert len(nas_files(designflow_env.nas_root)) == 1


def test_identical_files_in_different_batches(designflow_env: DesignflowEnv) -> None:
    folder = designflow_env.inputs / "spread"
    good_designs(folder, 3)
    shutil.copy(folder / "design-0.png", folder / "z-copy.png")
    report = upload_designs(paths=[str(folder)], user_id="dave", batch_max_images=2)
    assert report["batches"] == 2
    assert len(report["stored"]) == 3
    (dup,) = report["duplicates"]
    assert dup["kind"] == "in-batch"
    assert Path(dup["file"]).name == "z-copy.png"


def test_batches_follow_limits(designflow_env: DesignflowEnv) -> None:
    folder = designflow_env.inputs / "many"
    good_designs(folder, 5)
    report = upload_designs(paths=[str(folder)], user_id="erin", batch_max_images=2)
    assert report["batches"] == 3
    assert len(report["stored"]) == 5
    batch_ids = {r["batch_id"] for r in catalog_rows(designflow_env, "erin")}
    assert len(batch_ids) == 3
    assert set(report["timings_ms"]) >= {"fingerprint", "dedup", "nas", "insert", "total"}


def test_same_file_for_two_users(designflow_env: DesignflowEnv) -> None:
    path = images.write_png(designflow_env.inputs / "shared.png", seed=80)
    a = upload_designs(paths=[str(path)], user_id="user-a")
    b = upload_designs(paths=[str(path)], user_id="user-b")
    assert len(a["stored"]) == 1 and len(b["stored"]) == 1
    assert a["stored"][0]["design_id"] != b["stored"][0]["design_id"]
    assert a["stored"][0]["nas_path"] != b["stored"][0]["nas_path"]


def test_nas_failure_is_reported_and_nothing_recorded(
    designflow_env: DesignflowEnv, monkeypatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the NAS folder should be")
    monkeypatch.setenv("DESIGNFLOW_NAS_URL", f"file://{blocker}/nas")
    folder = designflow_env.inputs / "f"
    good_designs(folder, 2)
    state = upload_designs(paths=[str(folder)], user_id="frank", return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, UploadIncomplete)
    assert len(error.report["failed"]) == 2
    assert all("NAS upload failed" in f["reason"] for f in error.report["failed"])
    assert catalog_rows(designflow_env, "frank") == []

    # Once the NAS is reachable, the same upload completes it.
    monkeypatch.setenv("DESIGNFLOW_NAS_URL", f"file://{designflow_env.nas_root}")
    retry = upload_designs(paths=[str(folder)], user_id="frank")
    assert len(retry["stored"]) == 2


def test_invalid_user_id_fails_the_run(designflow_env: DesignflowEnv) -> None:
    path = images.write_png(designflow_env.inputs / "x.png", seed=1)
    state = upload_designs(paths=[str(path)], user_id="../../etc", return_state=True)
    assert state.is_failed()
    assert "invalid user id" in str(state.result(raise_on_failure=False))


def test_artifacts_show_outcomes(designflow_env: DesignflowEnv) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    folder = designflow_env.inputs / "art"
    good_designs(folder, 2)
    (folder / "broken.png").write_text("nope")
    first = upload_designs(paths=[str(folder / "design-0.png")], user_id="gina")
    report = upload_designs(paths=[str(folder)], user_id="gina")
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(report["flow_run_id"])])
            )
        )
    by_type = {}
    for a in artifacts:
        by_type.setdefault(a.type, []).append(a)
    table = (
        json.loads(by_type["table"][0].data)
        if isinstance(by_type["table"][0].data, str)
        else by_type["table"][0].data
    )
    outcomes = {Path(row["file"]).name: row["outcome"] for row in table}
    assert outcomes == {
        "design-0.png": "duplicate (exact)",
        "design-1.png": "stored",
        "broken.png": "rejected",
    }
    # The stored design's id and the copied one's are separate columns, the distance its
    # own, the long NAS path last (the UI's table keeps the rest on a 1400 px screen).
    rows = {Path(row["file"]).name: row for row in table}
    copied = first["stored"][0]["design_id"]
    assert rows["design-0.png"]["design_id"] is None
    assert (rows["design-0.png"]["duplicate_of"], rows["design-0.png"]["distance"]) == (copied, 0)
    assert rows["design-1.png"]["design_id"] == report["stored"][0]["design_id"]
    assert rows["design-1.png"]["duplicate_of"] is None
    assert list(rows["design-1.png"])[-1] == "nas_path"
    assert by_type["progress"][0].data == pytest.approx(100.0)
    assert any(
        "stored: **1**" in a.data and "duplicates: **1**" in a.data for a in by_type["markdown"]
    )


def test_symlink_loops_do_not_stop_an_upload(designflow_env: DesignflowEnv) -> None:
    """A folder holding self.png -> self.png and ping.png <-> pong.png: the upload ends with
    a report in which each loop is rejected and the good file is stored."""
    folder = designflow_env.inputs / "loops"
    folder.mkdir()
    (folder / "self.png").symlink_to("self.png")
    (folder / "ping.png").symlink_to("pong.png")
    (folder / "pong.png").symlink_to("ping.png")
    images.write_png(folder / "good.png", seed=321)
    report = upload_designs(paths=[str(folder)], user_id="lena")
    assert [Path(s["file"]).name for s in report["stored"]] == ["good.png"]
    rejected = {Path(r["file"]).name: r["reason"] for r in report["rejected"]}
    assert set(rejected) == {"self.png", "ping.png", "pong.png"}
    assert all("symbolic link loop" in reason for reason in rejected.values())


def test_known_bytes_are_not_decoded_again(designflow_env: DesignflowEnv, monkeypatch) -> None:
    """A re-synced folder: the files the seller already has are reported as exact copies
    without being decoded; only the new one is."""
    import designflow.ingest.sources as sources

    folder = designflow_env.inputs / "resync"
    good_designs(folder, 5)
    upload_designs(paths=[str(folder)], user_id="rena")
    images.write_png(folder / "new.png", seed=4242)
    decoded: list[str] = []
    real = sources.fingerprint_bytes

    def counting(data, path, limits=None):
        decoded.append(Path(path).name)
        return real(data, path, limits)

    monkeypatch.setattr(sources, "fingerprint_bytes", counting)
    second = upload_designs(paths=[str(folder)], user_id="rena")
    assert decoded == ["new.png"]
    assert sorted(d["kind"] for d in second["duplicates"]) == ["exact"] * 5
    assert [Path(s["file"]).name for s in second["stored"]] == ["new.png"]
