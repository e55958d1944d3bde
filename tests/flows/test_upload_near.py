"""Near duplicates in the upload flow: against history, within a batch, and stored anyway."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from designflow.catalog import Catalog
from designflow.flows.upload import upload_designs
from tests import images
from tests.conftest import DesignflowEnv


def variants(folder: Path, seed: int) -> tuple[Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    art = images.design(seed, (800, 960))
    original = folder / "original.png"
    art.save(original)
    flipped = folder / "flipped.png"
    art.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped)
    canvas = Image.new("RGBA", (1100, 1200), (0, 0, 0, 0))
    canvas.paste(art, (120, 90))
    padded = folder / "padded.png"
    canvas.save(padded)
    return original, flipped, padded


def test_near_duplicates_of_history_are_reported(designflow_env: DesignflowEnv) -> None:
    original, flipped, padded = variants(designflow_env.inputs / "v", seed=21)
    first = upload_designs(paths=[str(original)], user_id="nina")
    (stored,) = first["stored"]
    other = images.write_png(designflow_env.inputs / "other.png", seed=22)

    second = upload_designs(paths=[str(flipped), str(padded), str(other)], user_id="nina")
    near = {Path(d["file"]).name: d for d in second["duplicates"]}
    assert set(near) == {"flipped.png", "padded.png"}
    for d in near.values():
        assert d["kind"] == "near" and d["duplicate_of"] == stored["design_id"]
        assert d["nas_path"] == stored["nas_path"] and 0 <= d["distance"] <= 8
    assert [Path(s["file"]).name for s in second["stored"]] == ["other.png"]
    assert Catalog(designflow_env.database_url).count_designs("nina") == 2
    _summary_shows_each_near_duplicate_beside_its_design(second["flow_run_id"], near)


def _summary_shows_each_near_duplicate_beside_its_design(run_id: str, near: dict) -> None:
    """The UI's upload summary: a row per near duplicate, the file's thumbnail and the
    matched design's, as small JPEGs inside the markdown."""
    import base64
    import io
    import re
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(run_id)])
            )
        )
    (summary,) = [a.data for a in artifacts if a.key == "upload-summary"]
    rows = [line for line in summary.splitlines() if line.startswith("| ") and ".png" in line]
    assert len(rows) == len(near), summary[:2000]
    for name, d in near.items():
        (row,) = [r for r in rows if r.startswith(f"| {name} ")]
        assert f"design {d['duplicate_of']}" in row
        pictures = re.findall(r"!\[\]\(data:image/jpeg;base64,([A-Za-z0-9+/=]+)\)", row)
        assert len(pictures) == 2, row[:300]
        for data in pictures:
            with Image.open(io.BytesIO(base64.b64decode(data))) as picture:
                assert picture.format == "JPEG" and max(picture.size) == 96


def test_a_larger_version_of_a_stored_design_is_reported_as_better(
    designflow_env: DesignflowEnv,
) -> None:
    """The seller first stored a 75% downscale; the full-size export is the version worth
    printing: reported as a near duplicate marked better, with both sizes. A copy on a
    larger canvas has more pixels but no more design: not better."""
    original, _, padded = variants(designflow_env.inputs / "b", seed=23)
    small = designflow_env.inputs / "b" / "small.png"
    with Image.open(original) as art:
        art.resize((600, 720), Image.Resampling.LANCZOS).save(small)
    upload_designs(paths=[str(small)], user_id="bea")
    report = upload_designs(paths=[str(original)], user_id="bea")
    (found,) = report["duplicates"]
    assert found["kind"] == "near" and found["better"] is True
    assert (found["size"], found["stored_size"]) == ("800x960", "600x720")

    upload_designs(paths=[str(original)], user_id="cal")
    (padded_copy,) = upload_designs(paths=[str(padded)], user_id="cal")["duplicates"]
    assert padded_copy["kind"] == "near" and "better" not in padded_copy


def test_near_duplicates_within_a_batch(designflow_env: DesignflowEnv) -> None:
    original, flipped, padded = variants(designflow_env.inputs / "w", seed=23)
    report = upload_designs(paths=[str(original), str(flipped), str(padded)], user_id="olga")
    assert [Path(s["file"]).name for s in report["stored"]] == ["original.png"]
    assert {d["kind"] for d in report["duplicates"]} == {"near"}
    assert {d["duplicate_of"] for d in report["duplicates"]} == {report["stored"][0]["design_id"]}


def test_allow_near_duplicates_stores_them_marked(designflow_env: DesignflowEnv) -> None:
    original, flipped, padded = variants(designflow_env.inputs / "x", seed=24)
    first = upload_designs(paths=[str(original)], user_id="pia")
    original_id = first["stored"][0]["design_id"]
    report = upload_designs(
        paths=[str(flipped), str(padded)], user_id="pia", allow_near_duplicates=True
    )
    assert report["duplicates"] == []
    assert {s["near_duplicate_of"] for s in report["stored"]} == {original_id}
    rows = {
        r["original_name"]: r for r in Catalog(designflow_env.database_url).designs_of_user("pia")
    }
    with Catalog(designflow_env.database_url).connect() as conn:
        marks = dict(
            conn.execute(
                "SELECT original_name, near_duplicate_of FROM design_images WHERE user_id = 'pia'"
            ).fetchall()
        )
    assert marks == {"original.png": None, "flipped.png": original_id, "padded.png": original_id}
    assert len(rows) == 3


def test_inactive_designs_do_not_count(designflow_env: DesignflowEnv) -> None:
    original, flipped, _ = variants(designflow_env.inputs / "y", seed=25)
    first = upload_designs(paths=[str(original)], user_id="quinn")
    Catalog(designflow_env.database_url).deactivate("quinn", [first["stored"][0]["design_id"]])
    report = upload_designs(paths=[str(flipped)], user_id="quinn")
    assert len(report["stored"]) == 1 and report["duplicates"] == []


def test_crops_are_near_duplicates_and_other_words_are_new_designs(
    designflow_env: DesignflowEnv,
) -> None:
    """The seller's view: a cropped copy is reported with what was seen; the same artwork
    with another word is a product of its own and is stored."""
    from designflow.testing import near_cases

    spec = near_cases.spec(9105, size=(700, 840))
    folder = designflow_env.inputs / "words"
    folder.mkdir()
    art = near_cases.render(spec)
    (folder / "dog-mom.png").write_bytes(near_cases.png(art))
    first = upload_designs(paths=[str(folder / "dog-mom.png")], user_id="wren")
    (stored,) = first["stored"]
    copy = near_cases.copies_of(art, ["crop 8% each side"])["crop 8% each side"]
    (folder / "cropped.png").write_bytes(copy)
    other = near_cases.variants(spec)["text: other words"]
    (folder / "other-words.png").write_bytes(near_cases.png(near_cases.render(other)))

    second = upload_designs(
        paths=[str(folder / "cropped.png"), str(folder / "other-words.png")], user_id="wren"
    )
    (near,) = second["duplicates"]
    assert Path(near["file"]).name == "cropped.png" and near["kind"] == "near"
    assert near["duplicate_of"] == stored["design_id"]
    assert near["why"].startswith("same artwork: cropped")
    assert [Path(s["file"]).name for s in second["stored"]] == ["other-words.png"]


def test_designs_list_and_find_show_what_a_seller_owns(
    designflow_env: DesignflowEnv, capsys
) -> None:
    """`designs list` pages the seller's designs newest first; `designs find` names the
    stored design a cropped copy shows (same artwork) and says the other-words one differs."""
    import json

    from designflow.cli import main
    from designflow.testing import near_cases

    spec = near_cases.spec(9106, size=(700, 840))
    folder = designflow_env.inputs / "owned"
    folder.mkdir()
    art = near_cases.render(spec)
    (folder / "bark.png").write_bytes(near_cases.png(art))
    other = near_cases.render(near_cases.variants(spec)["text: other words"])
    (folder / "taco.png").write_bytes(near_cases.png(other))
    report = upload_designs(paths=[str(folder)], user_id="owner")
    ids = {Path(s["file"]).name: s["design_id"] for s in report["stored"]}
    assert set(ids) == {"bark.png", "taco.png"}
    upload_designs(paths=[str(folder / "bark.png")], user_id="someone-else")

    assert main(["designs", "list", "--user", "owner", "--per-page", "1", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["total"] == 2 and len(first["designs"]) == 1
    assert (
        main(["designs", "list", "--user", "owner", "--per-page", "1", "--page", "2", "--json"])
        == 0
    )
    second = json.loads(capsys.readouterr().out)
    listed = {first["designs"][0]["original_name"], second["designs"][0]["original_name"]}
    assert listed == {"bark.png", "taco.png"}
    assert first["designs"][0]["id"] > second["designs"][0]["id"]  # newest first
    assert {d["mockups"] for d in first["designs"] + second["designs"]} == {0}

    (folder.parent / "copy.png").write_bytes(
        near_cases.copies_of(art, ["crop 8% each side"])["crop 8% each side"]
    )
    assert (
        main(["designs", "find", str(folder.parent / "copy.png"), "--user", "owner", "--json"]) == 0
    )
    found = json.loads(capsys.readouterr().out)["designs"]
    assert found[0]["design_id"] == ids["bark.png"] and found[0]["kind"] == "same artwork", found
    assert found[0]["why"].startswith("same artwork: cropped")
    assert all(f["kind"] != "same artwork" for f in found[1:])
    assert main(["designs", "find", str(folder / "bark.png"), "--user", "owner"]) == 0
    text = capsys.readouterr().out
    assert f"{ids['bark.png']}  bark.png  distance 0  exact: the same file" in text
