"""The typer application every command module adds its commands to."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import typer
from rich.console import Console

app = typer.Typer(
    name="designflow",
    help="Design files from upload to store: fingerprint, dedup, NAS, catalog, mockups, Etsy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out(f"designflow {version('designflow')}")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Design files from upload to store: fingerprint, dedup, NAS, catalog, mockups, Etsy."""


# Logs and messages go to stderr; stdout carries only what a script reads (--json).
err = Console(stderr=True, highlight=False, soft_wrap=True)


def out(line: str = "") -> None:
    """One line of plain output on stdout (no markup, no wrapping). A file name that is not
    valid UTF-8 is shown with its undecodable bytes as \\xff escapes, never an error."""
    safe = line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    sys.stdout.write(safe + "\n")


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


def fail(message: str, code: int = 2) -> int:
    """A usage or run error: 'designflow: <message>' on stderr, and the exit code."""
    sys.stderr.write(f"designflow: {message}\n")
    return code


_watchdog = None
# The flow runs this command started, in order (an interrupted upload reports the last).
started_runs: list[str] = []


def guard_children() -> None:
    """Commands that start child processes (Prefect's temporary server, upload workers)
    start a watchdog that ends them if this process is killed (designflow.orchestration.watchdog)."""
    global _watchdog
    if _watchdog is None:
        from designflow.orchestration import watchdog

        _watchdog = watchdog.start()


class _QuietWatchdogHook(logging.Filter):
    """Prefect logs every hook it runs at INFO: "Running hook 'register_with_watchdog'" on
    every run of every command said nothing a seller can use."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "'register_with_watchdog'" not in record.getMessage()


def watched(flow):
    """The flow, its runs registered with this command's watchdog as they start: if the
    command is killed, the watchdog sets them Crashed (designflow.orchestration.watchdog)."""
    for name in ("prefect.flow_runs", "prefect.engine"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _QuietWatchdogHook) for f in logger.filters):
            logger.addFilter(_QuietWatchdogHook())

    def register_with_watchdog(_flow, flow_run, _state) -> None:
        from prefect.client.orchestration import get_client

        from designflow.orchestration.watchdog import register_run

        started_runs.append(str(flow_run.id))

        with get_client(sync_client=True) as client:
            register_run(str(flow_run.id), str(client.api_url))

    return flow.with_options(on_running=[register_with_watchdog])


def interrupted_upload(user: str, as_json: bool) -> int:
    """After Ctrl-C or SIGTERM: what the interrupted run stored so far (from the catalog,
    the record every stored design has), how to finish, exit code 130."""
    run_id = started_runs[-1] if started_runs else None
    stored: list[dict[str, Any]] = []
    removed: list[str] = []
    if run_id is not None:
        from designflow.orchestration import resources

        try:
            # Files the run sent and did not record are removed first (the run's hook may
            # have done it already: then there is nothing left to settle).
            removed = resources.settle_interrupted_sends().removed
            stored = resources.catalog().stored_by_run(user, run_id)
        except Exception as exc:  # the catalog may be what the seller stopped waiting for
            err.print(f"(the designs stored so far could not be listed: {type(exc).__name__})")
        finally:
            resources.close_all()
    advice = (
        "run the same command again to finish: files already stored are reported as exact copies"
    )
    if as_json:
        print_json({"interrupted": True, "flow_run_id": run_id, "stored": stored,
                    "unrecorded_removed": removed, "next": advice})  # fmt: skip
        return 130
    for row in stored:
        out(f"  stored     {row['file']} -> design {row['design_id']} at {row['nas_path']}")
    where = f" by run {run_id}" if run_id else ""
    err.print(f"interrupted: {len(stored)} design(s) stored{where} so far; {advice}")
    return 130
