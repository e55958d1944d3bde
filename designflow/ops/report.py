"""`designflow report`: the per-run metrics as a polars table, CSV, Parquet or a chart."""

from __future__ import annotations

import html
import io
import re
from pathlib import Path

import polars as pl

from designflow.catalog import Catalog

STAGES = ("fingerprint_ms", "dedup_ms", "nas_ms", "insert_ms")
WIDE = [
    "flow_run_id", "run_name", "started_at", "finished_at", "user_id", "files", "duration_ms",
    *STAGES, "batches", "stored", "duplicates", "rejected", "failed", "mockup_runs",
    "mockup_queue_depth", "mockup_failure_rate", "peak_memory_mb",
]  # fmt: skip
MOCKUP_WIDE = [
    "flow_run_id", "run_name", "upload_run_id", "queue", "created_at", "started_at",
    "finished_at", "waited_s", "duration_ms", "designs", "mockups", "failed", "listings",
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


def _frame(rows: list[dict], columns: list[str]) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema={c: pl.Utf8 for c in columns})
    frame = pl.DataFrame(
        [{k: (str(v) if k.endswith("run_id") and v is not None else v) for k, v in r.items()}
         for r in rows],
        infer_schema_length=None,
    )  # fmt: skip
    return frame.select([c for c in columns if c in frame.columns])


def runs_frame(catalog: Catalog, since: str = "7d", user_id: str | None = None) -> pl.DataFrame:
    """Upload runs, every recorded column (`--wide`, CSV, Parquet)."""
    return _frame(catalog.upload_runs(parse_since(since), user_id), WIDE)


def mockup_runs_frame(catalog: Catalog, since: str = "7d") -> pl.DataFrame:
    rows = catalog.mockup_runs(parse_since(since))
    for row in rows:
        created, started = row.get("created_at"), row.get("started_at")
        row["waited_s"] = round((started - created).total_seconds(), 1) if created else None
    return _frame(rows, MOCKUP_WIDE)


def _name(frame: pl.DataFrame) -> pl.Expr:
    if "run_name" not in frame.columns:
        return pl.col("flow_run_id").str.slice(0, 8).alias("run")
    return pl.coalesce(pl.col("run_name"), pl.col("flow_run_id").str.slice(0, 8)).alias("run")


def _started(frame: pl.DataFrame) -> pl.Expr:
    return pl.col("started_at").dt.strftime("%m-%d %H:%M:%S").alias("started")


def narrow_uploads(frame: pl.DataFrame) -> pl.DataFrame:
    """The default view, within 100 columns: who, when, how many, what happened, how long."""
    if frame.is_empty():
        return frame
    return frame.select(
        _name(frame),
        _started(frame),
        pl.col("files").fill_null(
            pl.col("stored") + pl.col("duplicates") + pl.col("rejected") + pl.col("failed")
        ),
        pl.col("stored"),
        pl.col("duplicates").alias("dups"),
        pl.col("rejected"),
        pl.col("failed"),
        (pl.col("duration_ms") / 1000).round(1).alias("seconds"),
    )


def narrow_mockups(frame: pl.DataFrame) -> pl.DataFrame:
    if frame.is_empty():
        return frame
    return frame.select(
        _name(frame),
        _started(frame),
        pl.col("queue").fill_null("inline"),
        pl.col("waited_s").alias("waited"),
        pl.col("designs"),
        pl.col("mockups"),
        pl.col("failed"),
        (pl.col("duration_ms") / 1000).round(1).alias("seconds"),
    )


def mockup_summary(frame: pl.DataFrame) -> str:
    """Queue wait and failure rate: the figures the seed said to watch."""
    if frame.is_empty():
        return "mockup runs: none in this period"
    runs = frame.height
    failed = frame.filter(pl.col("failed") > 0).height
    waits = frame["waited_s"].drop_nulls()
    wait = f", median wait in queue {waits.median():.1f} s" if len(waits) else ""
    return f"mockup runs: {runs}, failure rate {failed / runs:.0%}{wait}"


def summary(frame: pl.DataFrame) -> pl.DataFrame:
    if frame.is_empty():
        return frame
    return frame.select(
        pl.len().alias("runs"),
        pl.col("stored").sum(),
        pl.col("duplicates").sum(),
        pl.col("rejected").sum(),
        pl.col("failed").sum(),
        (pl.col("duration_ms").median() / 1000).round(2).alias("median_s"),
        pl.col("peak_memory_mb").max().alias("max_peak_mb"),
    )


def stage_seconds(frame: pl.DataFrame) -> pl.DataFrame:
    """Per run, seconds per stage plus "other", summing to the run's duration. Stages that
    overlap (the next batch is fingerprinted while this one uploads) can add up to more
    than the run: then each is scaled to its share of the run's time."""
    rows = []
    for row in frame.iter_rows(named=True):
        total = float(row["duration_ms"] or 0) / 1000
        stages = {s.removesuffix("_ms"): float(row[s] or 0) / 1000 for s in STAGES}
        busy = sum(stages.values())
        scale = total / busy if busy > total > 0 else 1.0
        shares = {k: v * scale for k, v in stages.items()}
        shares["other"] = max(total - sum(shares.values()), 0.0)
        run = row.get("run_name") or str(row["flow_run_id"])[:8]
        rows.append({"run": run, "total": total, "overlap_scaled": scale < 1.0, **shares})
    return pl.DataFrame(rows)


def plot_stage_times(frame: pl.DataFrame, path: str | Path) -> Path:
    """One labelled stacked bar per upload run: where its time went (matplotlib; PNG, SVG or
    PDF by the file's extension, or HTML with the chart inline)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    path = Path(path)
    data = stage_seconds(frame) if not frame.is_empty() else pl.DataFrame()
    width = max(8.0, 0.6 * data.height + 3)
    fig, ax = plt.subplots(figsize=(min(width, 30), 4.5), layout="constrained")
    if data.is_empty():
        ax.text(0.5, 0.5, "no upload runs in this period", ha="center", va="center")
        ax.set_axis_off()
    else:
        bottom = [0.0] * data.height
        for stage in (*[s.removesuffix("_ms") for s in STAGES], "other"):
            values = data[stage].to_list()
            ax.bar(data["run"].to_list(), values, bottom=bottom, label=stage)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_ylabel("seconds")
        ax.set_xlabel("upload run")
        ax.set_title("Upload runs: time by stage (stages + other = the run's time)", fontsize=10)
        ax.tick_params(axis="x", labelrotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(axis="y", alpha=0.3)
    if path.suffix.lower() in (".html", ".htm"):
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg")
        path.write_text(_html_page(buffer.getvalue(), data), encoding="utf-8")
    else:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _html_page(svg: str, data: pl.DataFrame) -> str:
    """The chart and its figures in one self-contained page."""
    columns = data.columns if not data.is_empty() else []
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
        for row in data.iter_rows()
    )
    return (
        "<!doctype html><meta charset='utf-8'><title>designflow report</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}</style>"
        f"<h1>Upload runs</h1>{svg}<table><tr>{head}</tr>{body}</table>"
    )


def _cell(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
