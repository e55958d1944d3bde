"""Per-run metrics in the catalog and `designflow report` over them (polars)."""

from __future__ import annotations

import io

import polars as pl
from PIL import Image

from designflow.catalog import Catalog
from designflow.cli import main
from designflow.flows.upload import upload_designs
from tests import images
from tests.conftest import DesignflowEnv


def test_runs_are_recorded_and_reported(designflow_env: DesignflowEnv, tmp_path, capsys) -> None:
    folder = designflow_env.inputs / "r"
    folder.mkdir()
    images.write_png(folder / "a.png", seed=1200)
    (folder / "bad.png").write_text("x")
    first = upload_designs(paths=[str(folder)], user_id="rita")
    second = upload_designs(paths=[str(folder)], user_id="rita")
    upload_designs(paths=[str(images.write_png(tmp_path / "o.png", seed=1201))], user_id="other")

    runs = Catalog(designflow_env.database_url).upload_runs(3600, "rita")
    assert [str(r["flow_run_id"]) for r in runs] == [first["flow_run_id"], second["flow_run_id"]]
    assert (runs[0]["stored"], runs[0]["rejected"], runs[1]["duplicates"]) == (1, 1, 1)
    assert (
        runs[0]["duration_ms"] > 0
        and runs[0]["fingerprint_ms"] > 0
        and runs[0]["peak_memory_mb"] > 10
    )

    assert main(["report", "--since", "1h", "--user", "rita", "--format", "csv"]) == 0
    frame = pl.read_csv(io.StringIO(capsys.readouterr().out))
    assert frame.height == 2 and set(frame["user_id"]) == {"rita"}
    assert frame["stored"].to_list() == [1, 0]

    parquet = tmp_path / "runs.parquet"
    plot = tmp_path / "stages.png"
    assert (
        main(["report", "--format", "parquet", "--output", str(parquet), "--plot", str(plot)]) == 0
    )
    assert pl.read_parquet(parquet).height == 3
    chart = Image.open(plot)
    assert chart.size == (1000, 500)
    assert (66, 133, 244) in {c for _, c in chart.getcolors(100000)}  # fingerprint bars drawn

    assert main(["report", "--since", "1h"]) == 0
    assert "rita" in capsys.readouterr().out
    assert main(["report", "--since", "soon"]) == 2
