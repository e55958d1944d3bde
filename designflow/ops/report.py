"""`designflow report`: the per-run metrics as a polars table, CSV, Parquet or a chart."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
from PIL import Image, ImageDraw

from designflow.catalog import Catalog

STAGES = ("fingerprint_ms", "dedup_ms", "nas_ms", "insert_ms")
COLORS = {
    "fingerprint_ms": (66, 133, 244),
    "dedup_ms": (251, 188, 5),
    "nas_ms": (52, 168, 83),
    "insert_ms": (234, 67, 53),
}
SHOWN = [
    "finished_at", "user_id", "duration_ms", *STAGES, "stored", "duplicates", "rejected", "failed",
    "mockup_runs", "mockup_queue_depth", "mockup_failure_rate", "peak_memory_mb",
]  # fmt: skip


def parse_since(text: str) -> float:
    """'7d', '12h', '30m', '90s' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not match:
        raise ValueError(
            f"--since takes a number and a unit (s, m, h, d, w), e.g. 7d; got {text!r}"
        )
    value, unit = float(match.group(1)), match.group(2)
    return value * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]


def runs_frame(catalog: Catalog, since: str = "7d", user_id: str | None = None) -> pl.DataFrame:
    rows = catalog.upload_runs(parse_since(since), user_id)
    if not rows:
        return pl.DataFrame(schema={c: pl.Utf8 for c in SHOWN})
    frame = pl.DataFrame(
        [{**r, "flow_run_id": str(r["flow_run_id"])} for r in rows], infer_schema_length=None
    )
    return frame.select([c for c in ["flow_run_id", *SHOWN] if c in frame.columns])


def summary(frame: pl.DataFrame) -> pl.DataFrame:
    if frame.is_empty():
        return frame
    return frame.select(
        pl.len().alias("runs"),
        pl.col("stored").sum(),
        pl.col("duplicates").sum(),
        pl.col("rejected").sum(),
        pl.col("failed").sum(),
        pl.col("duration_ms").median().alias("median_duration_ms"),
        pl.col("nas_ms").median().alias("median_nas_ms"),
        pl.col("dedup_ms").median().alias("median_dedup_ms"),
        pl.col("insert_ms").median().alias("median_insert_ms"),
        pl.col("peak_memory_mb").max().alias("max_peak_memory_mb"),
    )


def plot_stage_times(
    frame: pl.DataFrame, path: str | Path, width: int = 1000, height: int = 500
) -> Path:
    """A stacked bar per run: where the time of each upload went."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 70, 20, 40, 60
    draw.text((left, 10), "upload stage time per run (ms)", fill="black")
    if frame.is_empty():
        draw.text((left, height // 2), "no runs in this period", fill="black")
        image.save(path)
        return Path(path)
    totals = [sum(float(row[s] or 0) for s in STAGES) for row in frame.iter_rows(named=True)]
    peak = max(max(totals), 1.0)
    n = len(totals)
    slot = (width - left - right) / n
    bar = max(2.0, slot * 0.7)
    for tick in range(5):
        y = bottom_y = height - bottom - (height - top - bottom) * tick / 4
        draw.line([(left - 5, y), (width - right, y)], fill=(225, 225, 225))
        draw.text((5, bottom_y - 6), f"{peak * tick / 4:,.0f}", fill="black")
    for i, row in enumerate(frame.iter_rows(named=True)):
        x0 = left + i * slot + (slot - bar) / 2
        y = height - bottom
        for stage in STAGES:
            h = (height - top - bottom) * float(row[stage] or 0) / peak
            draw.rectangle([x0, y - h, x0 + bar, y], fill=COLORS[stage])
            y -= h
    for k, stage in enumerate(STAGES):
        x = left + k * 180
        draw.rectangle([x, height - 25, x + 12, height - 13], fill=COLORS[stage])
        draw.text((x + 18, height - 26), stage.removesuffix("_ms"), fill="black")
    image.save(path)
    return Path(path)
