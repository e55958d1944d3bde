"""The `designflow` command: a front end like the Prefect UI, on typer and rich (Prefect's
own CLI stack). One module per command group; flows are imported inside the commands that
run them, so `designflow --help` and `designflow fingerprint` never start a Prefect server.

Exit codes: 0 done, 1 the work failed (a failed run, rejected files for `fingerprint`,
problems found by `verify`), 2 a usage error, 130 interrupted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import typer
from typer.exceptions import TyperException

from designflow.cli import catalog, etsy, runs, server, sweep, templates, trigger, upload  # noqa: F401  (registers)
from designflow.cli.app import app, err


def main(argv: Sequence[str] | None = None) -> int:
    args = list(argv) if argv is not None else None
    # Prefect's temporary server gets 20 s to start; a first run (its database is created)
    # on a busy 2-core machine took longer. No telemetry from a seller's machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    _results_under_designflow_home()
    try:
        code = app(args=args, standalone_mode=False, prog_name="designflow")
    except TyperException as exc:  # a usage error: the message (or help) and exit code 2
        exc.show()
        return int(getattr(exc, "exit_code", 2))
    except typer.Exit as exc:  # --help
        return int(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted")
        return 130
    return int(code or 0)


def _results_under_designflow_home() -> None:
    """Runs started here (and by `designflow worker`, whose runs inherit the environment) keep
    their results under DESIGNFLOW_HOME/results, beside the embedded catalog, unless Prefect's
    own setting says otherwise: `designflow status` and the UI read them back from there."""
    if (
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH" in os.environ
        or "PREFECT_LOCAL_STORAGE_PATH" in os.environ
    ):
        return
    from designflow.settings import Settings

    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(Settings.from_env().home / "results")
