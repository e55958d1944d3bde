"""Mockups in the flow: inline (sync) mode, retries of a failing render, broken templates."""

from __future__ import annotations

import shutil
import threading
import uuid
from pathlib import Path

import cv2

from designflow.catalog import Catalog
from designflow.flows.mockups import generate_mockups
from designflow.flows.upload import upload_designs
from tests import images
from tests.conftest import DesignflowEnv
from tests.retries import watch_retries


def test_sync_mockups_are_stored_before_returning(designflow_env: DesignflowEnv) -> None:
    folder = designflow_env.inputs / "m"
    folder.mkdir()
    images.write_png(folder / "a.png", seed=700)
    images.write_png(folder / "b.png", seed=701)
    report = upload_designs(
        paths=[str(folder)],
        user_id="mock",
        mockup_templates=["tshirt", "poster"],
        async_mockups=False,
    )
    assert len(report["stored"]) == 2 and report["mockup_error"] is None
    assert len(report["mockups"]) == 4
    rows = Catalog(designflow_env.database_url).mockups_of(
        [s["design_id"] for s in report["stored"]]
    )
    assert {(r["design_id"], r["template_id"]) for r in rows} == {
        (s["design_id"], t) for s in report["stored"] for t in ("tshirt", "poster")
    }
    for row in rows:
        path = designflow_env.nas_root / row["nas_path"]
        image = cv2.imread(str(path))
        assert image is not None and image.shape[:2] == (2000, 2000)
        design = next(s for s in report["stored"] if s["design_id"] == row["design_id"])
        assert row["nas_path"].startswith(
            design["nas_path"].rsplit(".", 1)[0]
        )  # next to the design


def test_failing_render_is_retried(designflow_env: DesignflowEnv, monkeypatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    monkeypatch.setenv("DESIGNFLOW_RETRY_BACKOFF_SECONDS", "1")  # retries after ~1, 2, 4 s
    path = images.write_png(designflow_env.inputs / "r.png", seed=702)
    (stored,) = upload_designs(paths=[str(path)], user_id="retry")["stored"]
    on_nas = designflow_env.nas_root / stored["nas_path"]
    hidden = on_nas.with_suffix(".away")
    on_nas.rename(hidden)  # the NAS "loses" the file: the first render attempt fails

    def bring_back() -> None:  # once the first attempt has failed and a retry is due
        if watch.first.wait(120):
            hidden.rename(on_nas)

    with watch_retries() as watch:
        helper = threading.Thread(target=bring_back)
        helper.start()
        state = generate_mockups([stored["design_id"]], ["tshirt"], return_state=True)
        helper.join(120)
    assert watch.lines, "the missing file never failed a render attempt"
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as client:
        run_id = (
            uuid.UUID(state.state_details.flow_run_id.hex)
            if state.state_details.flow_run_id
            else None
        )
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    render = [t for t in tasks if t.name.startswith("render mockups")]
    assert render and render[0].run_count >= 2  # it failed, then a retry succeeded
    assert len(Catalog(designflow_env.database_url).mockups_of([stored["design_id"]])) == 1


def test_unknown_template_is_reported_not_retried(
    designflow_env: DesignflowEnv, tmp_path: Path, monkeypatch
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(
        Path(__file__).resolve().parents[2] / "examples" / "templates" / "poster",
        templates / "poster",
    )
    (templates / "poster" / "shading.png").unlink()  # broken template
    monkeypatch.setenv("DESIGNFLOW_TEMPLATES", str(templates))
    path = images.write_png(designflow_env.inputs / "t.png", seed=703)
    report = upload_designs(
        paths=[str(path)], user_id="tpl", mockup_templates=["poster"], async_mockups=False
    )
    assert len(report["stored"]) == 1  # the design is stored all the same
    assert "shading.png is missing" in report["mockup_error"]


def test_templates_kept_on_the_sftp_nas(
    designflow_env: DesignflowEnv, tmp_path: Path, monkeypatch
) -> None:
    """DESIGNFLOW_TEMPLATES=nas:<folder>: templates are read from the NAS (here over SFTP)
    into a local cache once, and a template missing there is a clear error."""
    from tests.sftp_servers import start_sftp_server

    server = start_sftp_server(tmp_path / "sftp")
    try:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        shutil.copytree(
            Path(__file__).resolve().parents[2] / "examples" / "templates" / "poster",
            server.root / "shared" / "templates" / "poster",
        )
        monkeypatch.setenv("DESIGNFLOW_TEMPLATES", "nas:shared/templates")
        path = images.write_png(designflow_env.inputs / "n.png", seed=704)
        report = upload_designs(
            paths=[str(path)], user_id="nas-tpl", mockup_templates=["poster"], async_mockups=False
        )
        assert report["mockup_error"] is None and len(report["mockups"]) == 1
        (mockup,) = report["mockups"]
        assert cv2.imread(str(server.root / mockup["nas_path"])).shape[:2] == (2000, 2000)
        cached = designflow_env.home / "template-cache" / "poster" / "template.json"
        assert (
            cached.read_bytes()
            == (server.root / "shared/templates/poster/template.json").read_bytes()
        )

        other = images.write_png(designflow_env.inputs / "o.png", seed=705)
        missing = upload_designs(
            paths=[str(other)], user_id="nas-tpl", mockup_templates=["frame"], async_mockups=False
        )
        assert (
            "template 'frame' not found on the NAS under shared/templates/frame/"
            in missing["mockup_error"]
        )
    finally:
        server.stop()


def test_a_design_goes_into_every_print_area_or_the_one_named(
    designflow_env: DesignflowEnv, tmp_path: Path, monkeypatch
) -> None:
    """A template with two print areas: `duo` prints the design into both, `duo:right` into
    the right one only (the left stays the blank product); each is its own mockup, stored
    without a colon in its file name."""
    import json

    import numpy as np

    templates = tmp_path / "templates"
    (templates / "duo").mkdir(parents=True)
    cv2.imwrite(str(templates / "duo" / "base.jpg"), np.full((400, 600, 3), 200, np.uint8))
    manifest = {"name": "Two areas", "output_size": [600, 400], "base": "base.jpg",
                "print_areas": [{"name": "left", "print_area": [[20, 40], [260, 40], [260, 360], [20, 360]]},
                                {"name": "right", "print_area": [[320, 40], [580, 40], [580, 360], [320, 360]]}]}  # fmt: skip
    (templates / "duo" / "template.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("DESIGNFLOW_TEMPLATES", str(templates))
    path = images.write_png(designflow_env.inputs / "duo.png", seed=760, size=(300, 400))
    report = upload_designs(paths=[str(path)], user_id="duo",
                            mockup_templates=["duo", "duo:right"], async_mockups=False)  # fmt: skip
    assert report["mockup_error"] is None
    made = {m["template_id"]: designflow_env.nas_root / m["nas_path"] for m in report["mockups"]}
    assert set(made) == {"duo", "duo:right"} and ":" not in made["duo:right"].name
    both, right = (cv2.imread(str(made[t])).astype(int) for t in ("duo", "duo:right"))
    changed = lambda image, x: np.abs(image[100:300, x - 40 : x + 40] - 200).max() > 40  # noqa: E731
    assert changed(both, 140) and changed(both, 450)
    assert not changed(right, 140) and changed(right, 450)
