"""File names the seller's file system allows but UTF-8 does not: a PNG named with the bytes
0xff 0xfe beside three good files. It used to fail the whole batch's insert
(UnicodeEncodeError reported as "catalog unavailable"), leave the run Running and print no
report; every re-run failed the same way."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from designflow.catalog import Catalog
from designflow.cli import main
from designflow.flows.upload import upload_designs
from tests import images
from tests.conftest import DesignflowEnv

ODD = b"\xff\xfe odd.png"


def folder_with_an_odd_name(root: Path) -> Path:
    folder = root / "odd-names"
    folder.mkdir()
    for i in range(3):
        images.write_png(folder / f"good-{i}.png", seed=700 + i)
    data = images.image_bytes(images.design(777))
    with open(os.path.join(os.fsencode(folder), ODD), "wb") as out:
        out.write(data)
    return folder


def test_a_name_that_is_not_utf8_is_stored_with_the_rest(designflow_env: DesignflowEnv) -> None:
    from prefect.client.orchestration import get_client

    folder = folder_with_an_odd_name(designflow_env.inputs)
    state = upload_designs(paths=[str(folder)], user_id="odd", return_state=True)
    assert state.is_completed(), state.message
    report = state.result()
    assert report["counts"] == {
        "stored": 4,
        "duplicates": 0,
        "rejected": 0,
        "failed": 0,
        "skipped": 0,
    }
    names = {
        r["original_name"] for r in Catalog(designflow_env.database_url).designs_of_user("odd")
    }
    assert "\\xff\\xfe odd.png" in names  # kept, its undecodable bytes escaped
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(state.state_details.flow_run_id).state.is_completed()
    again = upload_designs(paths=[str(folder)], user_id="odd", return_state=True)
    assert again.is_completed() and again.result()["counts"]["duplicates"] == 4


@pytest.mark.parametrize("as_json", [True, False])
def test_the_cli_prints_the_report_for_such_a_name(
    designflow_env: DesignflowEnv, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    folder = folder_with_an_odd_name(designflow_env.inputs)
    code = main(["upload", str(folder), "--user", "odd-cli"] + (["--json"] if as_json else []))
    printed = capsys.readouterr().out
    assert code == 0
    if as_json:
        assert json.loads(printed)["counts"]["stored"] == 4
    else:
        assert "\\xff\\xfe odd.png" in printed and "4 stored" in printed
