"""The `designflow` command: a front end like the Prefect UI.

Flows are imported lazily inside the commands that run them, so `designflow --help` and
`designflow fingerprint` stay fast and never start a Prefect server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="designflow",
        description="Design files from upload to store: fingerprint, dedup, NAS, catalog.",
    )
    sub = parser.add_subparsers(dest="command")

    up = sub.add_parser("upload", help="upload design files or folders for a user")
    up.add_argument("paths", nargs="+", help="files or folders (searched recursively)")
    up.add_argument("--user", required=True, help="the seller's user id")
    up.add_argument("--json", action="store_true", help="print the report as one JSON object")
    up.add_argument("--batch-max-mb", type=float, default=None)
    up.add_argument("--batch-max-images", type=int, default=None)
    up.add_argument(
        "--allow-near-duplicates",
        action="store_true",
        help="store designs that resemble existing ones, marked as near duplicates",
    )
    up.add_argument(
        "--mockups", default="", metavar="TEMPLATE,...", help="render these mockup templates"
    )
    up.add_argument("--priority", choices=["high", "normal", "low"], default="normal",
                    help="work queue of the background mockup run")  # fmt: skip
    up.add_argument("--sync-mockups", action="store_true", help="render mockups before returning")
    up.add_argument("--listings", default=None, metavar="FILE.csv|FILE.parquet",
                    help="Etsy listing content per file (published after the mockups)")  # fmt: skip
    up.set_defaults(handler=_cmd_upload)

    tpl = sub.add_parser("templates", help="mockup templates")
    tplsub = tpl.add_subparsers(dest="templates_command")
    tpl_list = tplsub.add_parser("list", help="list the available templates")
    tpl_list.set_defaults(handler=_cmd_templates_list)

    dep = sub.add_parser(
        "deploy", help="create or update the work pool, its queues and the deployments"
    )
    dep.add_argument(
        "--pool", default=None, help="work pool name (default DESIGNFLOW_WORK_POOL or designflow)"
    )
    dep.add_argument("--concurrency", type=int, default=None, help="runs at once in the pool")
    dep.set_defaults(handler=_cmd_deploy)

    wrk = sub.add_parser("worker", help="run a Prefect process worker for the work pool")
    wrk.add_argument("--pool", default=None)
    wrk.add_argument(
        "--poll-seconds", type=float, default=1.0, help="how often to ask for new runs"
    )
    wrk.add_argument(
        "--work-queue", action="append", default=[], help="only these queues (repeatable)"
    )
    wrk.add_argument("--name", default=None, help="worker name shown in the UI")
    wrk.set_defaults(handler=_cmd_worker)

    srv = sub.add_parser(
        "serve", help="run the deployments, their schedules and the runs in one process tree"
    )
    srv.add_argument(
        "--inbox",
        default=None,
        help="inbox root for the scheduled sweep (default DESIGNFLOW_INBOX)",
    )
    srv.add_argument(
        "--cron", default=None, help="sweep schedule (default DESIGNFLOW_SWEEP_CRON, every 5 min)"
    )
    srv.add_argument("--limit", type=int, default=4, help="runs at once")
    srv.set_defaults(handler=_cmd_serve)

    rep = sub.add_parser(
        "report", help="per-run metrics: durations, stage times, outcomes, mockup queue"
    )
    rep.add_argument("--since", default="7d", help="period, e.g. 7d, 24h, 30m (default 7d)")
    rep.add_argument("--user", default=None)
    rep.add_argument("--format", choices=["table", "csv", "parquet"], default="table")
    rep.add_argument("--output", default=None, help="file to write (needed for parquet)")
    rep.add_argument(
        "--plot", default=None, metavar="FILE.png", help="also draw stage time per run"
    )
    rep.set_defaults(handler=_cmd_report)

    ver = sub.add_parser("verify", help="compare the catalog with the NAS (and repair)")
    ver.add_argument("--user", default=None)
    ver.add_argument(
        "--repair", action="store_true", help="adopt orphan files, mark missing designs"
    )
    ver.add_argument("--deep", action="store_true", help="also compare sha256 (reads every file)")
    ver.add_argument("--json", action="store_true")
    ver.set_defaults(handler=_cmd_verify)

    st = sub.add_parser("status", help="state of a flow run, its tasks and its result")
    st.add_argument("run_id")
    st.add_argument("--json", action="store_true")
    st.set_defaults(handler=_cmd_status)

    fp = sub.add_parser("fingerprint", help="print the fingerprints of image files")
    fp.add_argument("files", nargs="+")
    fp.add_argument("--json", action="store_true")
    fp.set_defaults(handler=_cmd_fingerprint)

    db = sub.add_parser("db", help="catalog database")
    dbsub = db.add_subparsers(dest="db_command")
    mig = dbsub.add_parser("migrate", help="apply pending migrations")
    mig.set_defaults(handler=_cmd_db_migrate)
    backfill = dbsub.add_parser("backfill", help="recompute near-duplicate hashes of older designs")
    backfill.set_defaults(handler=_cmd_db_backfill)
    stop = dbsub.add_parser("stop", help="stop the embedded PostgreSQL server")
    stop.set_defaults(handler=_cmd_db_stop)

    from designflow import cli_etsy

    cli_etsy.add_commands(sub)
    return parser


# -- upload ----------------------------------------------------------------------------


def _cmd_upload(args: argparse.Namespace) -> int:
    from designflow.nas import InvalidUserId, check_user_id

    try:
        check_user_id(args.user)
    except InvalidUserId as exc:
        print(f"designflow: {exc}", file=sys.stderr)
        return 2
    paths = [str(Path(p).absolute()) for p in args.paths]
    bar = _ProgressBar() if (sys.stderr.isatty() and not args.json) else None

    from designflow import progress

    unsubscribe = progress.subscribe(bar.update) if bar else (lambda: None)
    try:
        # Anything a library prints must not end up in the JSON on stdout.
        with contextlib.redirect_stdout(sys.stderr):
            from flows.upload import UploadIncomplete, upload_designs

            state = upload_designs(
                paths=paths,
                user_id=args.user,
                batch_max_mb=args.batch_max_mb,
                batch_max_images=args.batch_max_images,
                allow_near_duplicates=args.allow_near_duplicates,
                mockup_templates=[t for t in args.mockups.split(",") if t] or None,
                async_mockups=not args.sync_mockups,
                priority=args.priority,
                listings_manifest=str(Path(args.listings).absolute()) if args.listings else None,
                return_state=True,
            )
    finally:
        unsubscribe()
        if bar:
            bar.close()

    if state.is_completed():
        report = state.result()
        _print_report(report, args.json)
        return 0
    error = state.result(raise_on_failure=False)
    if isinstance(error, UploadIncomplete):
        _print_report(error.report, args.json)
    print(f"designflow: upload run failed: {error}", file=sys.stderr)
    return 1


def _print_report(report: dict, as_json: bool) -> None:
    if as_json:
        json.dump(report, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    counts = report["counts"]
    print(f"flow run {report['flow_run_id']}")
    for s in report["stored"]:
        print(f"  stored     {s['file']} -> design {s['design_id']} at {s['nas_path']}")
    for d in report["duplicates"]:
        print(
            f"  duplicate  {d['file']} -> {d['kind']} copy of design {d['duplicate_of']} (distance {d['distance']})"
        )
    for r in report["rejected"]:
        print(f"  rejected   {r['file']}: {r['reason']}")
    for f in report.get("failed", []):
        print(f"  failed     {f['file']}: {f['reason']}")
    for m in report.get("mockup_runs", []):
        print(
            f"  mockups    background run {m['flow_run_id']} on queue {m['priority']} ({m['designs']} designs)"
        )
    for m in report.get("mockups", []):
        print(f"  mockup     design {m['design_id']} {m['template_id']} at {m['nas_path']}")
    if report.get("mockup_error"):
        print(f"  mockups    {report['mockup_error']}")
    for item in report.get("listings", []):
        what = item["error"] or f"{item['action']}, {len(item['images'])} image(s)"
        print(
            f"  listing    design {item['design_id']} -> Etsy listing {item['listing_id']}: {what}"
        )
    if report.get("listing_skipped"):
        print(f"  listings   {report['listing_skipped']}")
    print(
        f"{counts['stored']} stored, {counts['duplicates']} duplicate(s), "
        f"{counts['rejected']} rejected, {counts.get('failed', 0)} failed in {report['batches']} batch(es)"
    )


class _ProgressBar:
    def __init__(self, width: int = 30) -> None:
        self.width = width
        self.shown = False

    def update(self, event) -> None:  # designflow.progress.Progress
        total = max(event.total, 1)
        filled = int(self.width * event.done / total)
        bar = "#" * filled + "-" * (self.width - filled)
        sys.stderr.write(f"\r[{bar}] {event.done}/{event.total} {event.message[:40]:<40}")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def _cmd_templates_list(args: argparse.Namespace) -> int:
    from designflow.mockup import TemplateError, load_template
    from designflow.settings import Settings

    root = Settings.from_env().templates
    if root.startswith("nas:"):
        print(f"templates on the NAS under {root[4:]} (copied locally on first use)")
        return 0
    folders = sorted(p.parent for p in Path(root).glob("*/template.json"))
    if not folders:
        print(f"no templates in {root}")
        return 1
    for folder in folders:
        try:
            t = load_template(folder)
        except TemplateError as exc:
            print(f"{folder.name:16} BROKEN: {exc}")
            continue
        w, h = t.output_size
        pw, ph = t.print_size
        extras = ", ".join(
            n
            for n, v in (("shading", t.shading), ("displacement", t.displacement))
            if v is not None
        )
        print(
            f"{t.id:16} {t.name:32} {w}x{h}, print area ~{pw}x{ph}{', ' + extras if extras else ''}"
        )
    return 0


def _cmd_deploy(args: argparse.Namespace) -> int:
    from designflow.settings import Settings

    with contextlib.redirect_stdout(sys.stderr):
        from deployments.deploy import deploy_all

        made = deploy_all(args.pool or Settings.from_env().work_pool, args.concurrency)
    for line in made:
        print(f"deployed {line}")
    print("queues: high (priority 1), normal (2), low (3); start a worker with `designflow worker`")
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    import os

    from designflow.settings import Settings

    env = dict(os.environ)
    # The worker asks for runs every `poll` seconds (Prefect's default is 10 s): the main
    # part of trigger-to-start latency.
    env["PREFECT_WORKER_QUERY_SECONDS"] = str(args.poll_seconds)
    env.setdefault("PREFECT_WORKER_PREFETCH_SECONDS", "5")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    pool = args.pool or Settings.from_env().work_pool
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]
    for queue in args.work_queue:
        cmd += ["--work-queue", queue]
    if args.name:
        cmd += ["--name", args.name]
    # Become the worker (exec), so signals such as Ctrl-C and SIGTERM reach it directly.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, cmd, env)
    return 0  # not reached


def _cmd_serve(args: argparse.Namespace) -> int:
    import os
    import signal

    from designflow.settings import Settings

    settings = Settings.from_env()
    # Served deployments have no work pool: mockup runs are triggered without a queue.
    os.environ["DESIGNFLOW_SERVED"] = "1"
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    def stop(signum, frame):  # SIGTERM stops like Ctrl-C: the runner cancels and cleans up
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    from prefect import serve

    from flows.mockups import generate_mockups
    from flows.publish import publish_listing
    from flows.sweep import sweep_inbox
    from flows.upload import upload_designs

    deployments = [
        upload_designs.to_deployment(name="upload-designs"),
        generate_mockups.to_deployment(name="generate-mockups"),
        publish_listing.to_deployment(name="publish-listing"),
        sweep_inbox.to_deployment(
            name="sweep-inbox",
            cron=args.cron or settings.sweep_cron,
            parameters={"inbox": args.inbox or settings.inbox},
            concurrency_limit=1,
        ),
    ]
    print(
        f"serving upload-designs, generate-mockups and sweep-inbox ({args.cron or settings.sweep_cron}); Ctrl-C stops"
    )
    try:
        serve(*deployments, limit=args.limit)
    except KeyboardInterrupt:
        pass
    print("stopped")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    import polars as pl

    from designflow.catalog import Catalog
    from designflow.run_report import plot_stage_times, runs_frame, summary
    from designflow.settings import Settings

    catalog = Catalog(_catalog_url(Settings.from_env()))
    catalog.migrate()
    try:
        frame = runs_frame(catalog, args.since, args.user)
    except ValueError as exc:
        print(f"designflow: {exc}", file=sys.stderr)
        return 2
    if args.format == "parquet":
        if not args.output:
            print("designflow: --format parquet needs --output FILE", file=sys.stderr)
            return 2
        frame.write_parquet(args.output)
        print(f"wrote {frame.height} run(s) to {args.output}")
    elif args.format == "csv":
        if args.output:
            frame.write_csv(args.output)
        else:
            sys.stdout.write(frame.write_csv())
    else:
        with pl.Config(tbl_rows=200, tbl_cols=30, tbl_width_chars=240, fmt_str_lengths=40):
            print(frame.drop("flow_run_id") if "flow_run_id" in frame.columns else frame)
            print(summary(frame))
    if args.plot:
        plot_stage_times(frame, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from designflow.verify import verify

    with _catalog_and_nas() as (settings, catalog, nas):
        report = verify(
            catalog, nas, args.user, repair=args.repair, deep=args.deep, limits=settings.limits
        )
    if args.json:
        json.dump(report.as_dict(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(
            f"checked {report.checked} design(s): {'clean' if report.clean else 'problems found'}"
        )
        for m in report.missing:
            print(f"  missing    design {m['design_id']}: {m['nas_path']}")
        for m in report.mismatched:
            print(f"  mismatch   design {m['design_id']}: {m['nas_path']} ({m['why']})")
        for p in report.orphans:
            print(f"  orphan     {p}")
        for p in report.temporary:
            print(f"  temporary  {p}")
        for a in report.adopted:
            print(f"  adopted    {a['nas_path']} as design {a['design_id']}")
        if report.marked_missing:
            print(f"  marked missing (inactive): {report.marked_missing}")
    return 0 if report.clean or args.repair else 1


def _cmd_status(args: argparse.Namespace) -> int:
    import uuid as uuid_mod

    with contextlib.redirect_stdout(sys.stderr):
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            TaskRunFilter,
            TaskRunFilterFlowRunId,
        )

    try:
        run_id = uuid_mod.UUID(args.run_id)
    except ValueError:
        print(f"designflow: not a run id: {args.run_id!r}", file=sys.stderr)
        return 2
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run_id])),
        )
        result = None
        if run.state and run.state.is_final():
            try:
                result = run.state.result(raise_on_failure=False)
            except Exception as exc:  # result not persisted: say so rather than fail
                result = f"(result not available: {type(exc).__name__})"
    info = {
        "flow_run_id": str(run.id),
        "name": run.name,
        "state": run.state.name if run.state else None,
        "message": run.state.message if run.state else None,
        "queue": run.work_queue_name,
        "start_time": str(run.start_time) if run.start_time else None,
        "end_time": str(run.end_time) if run.end_time else None,
        "tasks": sorted((t.name, t.state.name if t.state else "?") for t in tasks),
        "result": result
        if isinstance(result, dict | list | str | int | float | type(None))
        else str(result),
    }
    if args.json:
        json.dump(info, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(f"run {info['name']} ({info['flow_run_id']}): {info['state']}  queue {info['queue']}")
        if info["message"]:
            print(f"  {info['message']}")
        for name, state in info["tasks"]:
            print(f"  task {name}: {state}")
        if info["result"] is not None:
            print(f"  result: {json.dumps(info['result'], default=str)[:2000]}")
    return 0


# -- fingerprint -----------------------------------------------------------------------


def _cmd_fingerprint(args: argparse.Namespace) -> int:
    from designflow.fingerprint import RejectedDesign, fingerprint_design
    from designflow.settings import Settings

    limits = Settings.from_env().limits
    results: list[dict] = []
    for path in args.files:
        try:
            results.append(fingerprint_design(path, limits).as_dict())
        except RejectedDesign as exc:
            results.append({"path": path, "rejected": exc.reason})
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for r in results:
            if "rejected" in r:
                print(f"{r['path']}: rejected: {r['rejected']}")
            else:
                print(
                    f"{r['path']}: {r['format']} {r['width']}x{r['height']} sha256 {r['sha256'][:16]}… "
                    f"phash {r['phash_hex']} ahash {r['ahash_hex']} dhash {r['dhash_hex']} whash {r['whash_hex']}"
                )
    return 0 if all("rejected" not in r for r in results) else 1


# -- db --------------------------------------------------------------------------------


def _catalog_url(settings) -> str:
    """The catalog the flows use: DESIGNFLOW_DATABASE_URL, the catalog block, or embedded."""
    from tasks.resources import database_url

    return database_url(settings)


@contextlib.contextmanager
def _catalog_and_nas():
    """Migrated catalog and NAS client for the maintenance commands, resolved the way the
    upload tasks resolve them (so a NAS block counts here too); the NAS is closed after."""
    from designflow.catalog import Catalog
    from designflow.settings import Settings
    from tasks import resources

    settings = Settings.from_env()
    catalog = Catalog(_catalog_url(settings))
    catalog.migrate()
    nas = resources.nas(settings)
    try:
        yield settings, catalog, nas
    finally:
        resources.close_all()


def _cmd_db_migrate(args: argparse.Namespace) -> int:
    from designflow.catalog import Catalog
    from designflow.settings import Settings

    catalog = Catalog(_catalog_url(Settings.from_env()))
    applied = catalog.migrate()
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    print(f"schema at {catalog.applied_migrations()[-1]}")
    return 0


def _cmd_db_backfill(args: argparse.Namespace) -> int:
    from designflow.backfill import backfill_near_hashes

    with _catalog_and_nas() as (settings, catalog, nas):
        result = backfill_near_hashes(catalog, nas, settings.limits)
    print(f"recomputed near-duplicate hashes of {result.updated} design(s)")
    for line in result.missing or []:
        print(f"  could not read {line}", file=sys.stderr)
    return 0 if not result.missing else 1


def _cmd_db_stop(args: argparse.Namespace) -> int:
    from designflow.embedded import stop_embedded
    from designflow.settings import Settings

    stopped = stop_embedded(Settings.from_env().home)
    print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
