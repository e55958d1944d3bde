"""Per-run metrics in the catalog and `designflow report` over them (polars, matplotlib)."""

from __future__ import annotations

import io
import uuid

import polars as pl
from PIL import Image

from designflow.catalog import Catalog
from designflow.cli import main
from designflow.flows.upload import upload_designs
from designflow.ops.report import runs_frame, stage_seconds
from tests import images
from tests.conftest import DesignflowEnv


def run_name(run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(uuid.UUID(run_id)).name


def test_runs_are_recorded_and_reported(designflow_env: DesignflowEnv, tmp_path, capsys) -> None:
    folder = designflow_env.inputs / "r"
    folder.mkdir()
    images.write_png(folder / "a.png", seed=1200)
    (folder / "bad.png").write_text("x")
    first = upload_designs(paths=[str(folder)], user_id="rita")
    second = upload_designs(paths=[str(folder)], user_id="rita")
    other = upload_designs(
        paths=[str(images.write_png(tmp_path / "o.png", seed=1201))], user_id="other",
        mockup_templates=["tshirt"], async_mockups=False,
    )  # fmt: skip

    catalog = Catalog(designflow_env.database_url)
    runs = catalog.upload_runs(3600, "rita")
    assert [str(r["flow_run_id"]) for r in runs] == [first["flow_run_id"], second["flow_run_id"]]
    assert (runs[0]["stored"], runs[0]["rejected"], runs[1]["duplicates"]) == (1, 1, 1)
    assert runs[0]["files"] == 2 and runs[0]["run_name"] == run_name(first["flow_run_id"])
    assert runs[0]["duration_ms"] > 0 and runs[0]["fingerprint_ms"] > 0
    assert runs[0]["peak_memory_mb"] > 10
    [mockup_run] = catalog.mockup_runs(3600)
    assert mockup_run["mockups"] == 1 and mockup_run["designs"] == 1
    assert mockup_run["duration_ms"] > 0 and mockup_run["failed"] == 0

    assert main(["report", "--since", "1h", "--user", "rita", "--format", "csv"]) == 0
    frame = pl.read_csv(io.StringIO(capsys.readouterr().out))
    assert frame.height == 2 and set(frame["user_id"]) == {"rita"}
    assert frame["stored"].to_list() == [1, 0]

    # The default table fits 100 columns and names each run as the Prefect UI does.
    assert main(["report", "--since", "1h"]) == 0
    table = capsys.readouterr().out
    assert max(len(line) for line in table.splitlines()) <= 100, table
    for report in (first, second, other):
        assert run_name(report["flow_run_id"]) in table
    assert "mockup runs: 1, failure rate 0%" in table
    assert main(["report", "--since", "1h", "--wide"]) == 0
    assert "fingerprint_ms" in capsys.readouterr().out

    # The chart's bars: stages + other add up to each run's time.
    shares = stage_seconds(runs_frame(catalog, "1h"))
    parts = ["fingerprint", "dedup", "nas", "insert", "other"]
    sums = shares.select(pl.sum_horizontal(parts) - pl.col("total")).to_series().abs()
    assert shares.height == 3 and sums.max() < 1e-6
    parquet, png, page = tmp_path / "runs.parquet", tmp_path / "stages.png", tmp_path / "r.html"
    assert (
        main(["report", "--format", "parquet", "--output", str(parquet), "--plot", str(png)]) == 0
    )
    assert pl.read_parquet(parquet).height == 3
    chart = Image.open(png)
    assert chart.width >= 700 and len(chart.getcolors(1 << 20) or []) > 10  # drawn, not blank
    assert main(["report", "--since", "1h", "--plot", str(page)]) == 0
    html = page.read_text()
    assert "<svg" in html and run_name(first["flow_run_id"]) in html

    assert main(["report", "--since", "soon"]) == 2
