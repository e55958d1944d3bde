"""The catalog and its upkeep: `db migrate|backfill|stop`, `verify`, `report`, `fingerprint`."""

from __future__ import annotations

import contextlib
import sys
from enum import StrEnum

import typer

from designflow.cli.app import app, fail, out, print_json

db = typer.Typer(help="The catalog database.", no_args_is_help=True)
app.add_typer(db, name="db")


@contextlib.contextmanager
def catalog_and_nas():
    """The process's settings, catalog and NAS, resolved the way the upload tasks resolve
    them (a catalog or NAS block counts here too); closed when the command ends."""
    from designflow.orchestration import resources

    current = resources.current()
    try:
        yield current.settings, current.catalog(), current.nas()
    finally:
        resources.close_all()


@db.command("migrate")
def db_migrate() -> int:
    """Apply pending migrations."""
    from designflow.catalog import Catalog
    from designflow.orchestration import resources

    catalog = Catalog(resources.database_url())
    applied = catalog.migrate()
    out(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    out(f"schema at {catalog.applied_migrations()[-1]}")
    return 0


@db.command("backfill")
def db_backfill() -> int:
    """Recompute near-duplicate hashes of older designs."""
    from designflow.ops.backfill import backfill_near_hashes

    with catalog_and_nas() as (settings, catalog, nas):
        result = backfill_near_hashes(catalog, nas, settings.limits)
    out(f"recomputed near-duplicate hashes of {result.updated} design(s)")
    for line in result.missing or []:
        sys.stderr.write(f"  could not read {line}\n")
    return 0 if not result.missing else 1


@db.command("stop")
def db_stop() -> int:
    """Stop the embedded PostgreSQL server (and first the local Prefect server kept on it)."""
    from designflow.catalog.embedded import EmbeddedStopError, stop_embedded
    from designflow.cli.localserver import stop_local_server
    from designflow.settings import Settings

    settings = Settings.from_env()
    if settings.temporary_server_db == "postgresql":
        server = stop_local_server(settings)
        if server:
            out(f"stopped the local Prefect server at {server} (its database is stopping)")
    try:
        stopped = stop_embedded(settings.home)
    except EmbeddedStopError as exc:
        return fail(str(exc), 1)
    out("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return 0


def verify_lines(report, repair: bool) -> list[str]:
    """The verify report for a terminal, one line per finding."""
    lines = [f"checked {report.checked} design(s): {'clean' if report.clean else 'problems found'}"]
    lines += [f"  missing    design {m['design_id']}: {m['nas_path']}" for m in report.missing]
    lines += [
        f"  mismatch   design {m['design_id']}: {m['nas_path']} ({m['why']})"
        for m in report.mismatched
    ]
    lines += [f"  orphan     {p}" for p in report.orphans]
    lines += [f"  temporary  {p} (stale, over an hour old)" for p in report.temporary]
    lines += [
        f"  writing    {p} (a temporary under an hour old: left alone)" for p in report.in_progress
    ]
    lines += [f"  adopted    {a['nas_path']} as design {a['design_id']}" for a in report.adopted]
    lines += [f"  removed    {p}" for p in report.removed]
    if report.marked_missing:
        lines.append(f"  marked missing (inactive): {report.marked_missing}")
    if repair and report.unresolved:
        lines.append(f"  unresolved after repair: {len(report.unresolved)}")
    return lines


@app.command()
def verify(
    user: str | None = typer.Option(None, "--user", help="only this seller"),
    repair: bool = typer.Option(False, "--repair", help="adopt orphan files, mark missing designs"),
    deep: bool = typer.Option(False, "--deep", help="also compare sha256 (reads every file)"),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> int:  # fmt: skip
    """Compare the catalog with the NAS (and repair)."""
    from designflow.ops.verify import verify as verify_catalog

    with catalog_and_nas() as (settings, catalog, nas):
        report = verify_catalog(
            catalog, nas, user, repair=repair, deep=deep, limits=settings.limits
        )
    if as_json:
        print_json(report.as_dict())
    else:
        for line in verify_lines(report, repair):
            out(line)
    # Non-zero while anything is wrong: before a repair, any problem; after, what it left.
    still_wrong = bool(report.unresolved) if repair else not report.clean
    return 1 if still_wrong else 0


class ReportFormat(StrEnum):
    table = "table"
    csv = "csv"
    parquet = "parquet"


@app.command()
def report(
    since: str = typer.Option("7d", "--since", help="period, e.g. 7d, 24h, 30m"),
    user: str | None = typer.Option(None, "--user"),
    format: ReportFormat = typer.Option(ReportFormat.table, "--format"),
    output: str | None = typer.Option(None, "--output", help="file to write (needed for parquet)"),
    wide: bool = typer.Option(False, "--wide", help="every recorded column (the table is wider than 100 characters)"),
    plot: str | None = typer.Option(
        None, "--plot", metavar="FILE", help="also draw where each upload run's time went (.png, .svg, .pdf or .html)"
    ),
) -> int:  # fmt: skip
    """Per-run metrics: upload runs and background mockup runs (queue wait, failures)."""
    import polars as pl

    from designflow.ops.report import (
        mockup_runs_frame,
        mockup_summary,
        narrow_mockups,
        narrow_uploads,
        plot_stage_times,
        runs_frame,
        summary,
    )
    from designflow.orchestration import resources

    try:
        frame = runs_frame(resources.catalog(), since, user)
        mockups = mockup_runs_frame(resources.catalog(), since)
    except ValueError as exc:
        return fail(str(exc))
    finally:
        resources.close_all()
    if format is ReportFormat.parquet:
        if not output:
            return fail("--format parquet needs --output FILE")
        frame.write_parquet(output)
        out(f"wrote {frame.height} run(s) to {output}")
    elif format is ReportFormat.csv:
        if output:
            frame.write_csv(output)
        else:
            sys.stdout.write(frame.write_csv())
    else:
        width = 400 if wide else 100
        with pl.Config(tbl_rows=200, tbl_cols=40, tbl_width_chars=width, fmt_str_lengths=36,
                       tbl_hide_column_data_types=not wide, tbl_hide_dataframe_shape=True):  # fmt: skip
            out("upload runs")
            out(str(frame if wide else narrow_uploads(frame)) if not frame.is_empty() else "  none")
            if not frame.is_empty():
                out(str(summary(frame)))
            out(mockup_summary(mockups))
            if not mockups.is_empty():
                out(str(mockups if wide else narrow_mockups(mockups)))
    if plot:
        plot_stage_times(frame, plot)
        sys.stderr.write(f"plot written to {plot}\n")
    return 0


@app.command()
def fingerprint(
    files: list[str] = typer.Argument(..., help="image files"),
    as_json: bool = typer.Option(False, "--json"),
) -> int:
    """Print the fingerprints of image files (no Prefect involved)."""
    from designflow.images.fingerprint import RejectedDesign, fingerprint_design
    from designflow.settings import Settings

    limits = Settings.from_env().limits
    results: list[dict] = []
    for path in files:
        try:
            results.append(fingerprint_design(path, limits).as_dict())
        except RejectedDesign as exc:
            results.append({"path": path, "rejected": exc.reason})
    if as_json:
        print_json(results)
    else:
        for r in results:
            if "rejected" in r:
                out(f"{r['path']}: rejected: {r['rejected']}")
            else:
                out(
                    f"{r['path']}: {r['format']} {r['width']}x{r['height']} sha256 {r['sha256'][:16]}… "
                    f"phash {r['phash_hex']} ahash {r['ahash_hex']} dhash {r['dhash_hex']} whash {r['whash_hex']}"
                )
    return 0 if all("rejected" not in r for r in results) else 1
