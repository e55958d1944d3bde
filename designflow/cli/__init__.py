"""The `designflow` command: a front end like the Prefect UI, on typer and rich (Prefect's
own CLI stack). One module per command group; flows are imported inside the commands that
run them, so `designflow --help` and `designflow fingerprint` never start a Prefect server.

Exit codes: 0 done, 1 the work failed (a failed run, rejected files for `fingerprint`,
problems found by `verify`), 2 a usage error, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Sequence

import typer
from typer.exceptions import TyperException

from designflow.cli import (  # noqa: F401  (registers)
    catalog,
    designs,
    etsy,
    runs,
    server,
    sweep,
    templates,
    trigger,
    upload,
    web,
)
from designflow.cli.app import app, err

# Help panels, each sorted by name: what a seller runs, what an operator runs.
_PANELS = {
    "Designs": ("upload", "sweep", "status", "report", "verify", "fingerprint", "publish"),
    "Running the service": ("server", "deploy", "worker", "serve", "trigger", "web", "ui", "stop"),
}


def _command_name(command) -> str:
    return command.name or command.callback.__name__.replace("_", "-")


for _command in app.registered_commands:
    _command.rich_help_panel = next(
        (panel for panel, names in _PANELS.items() if _command_name(_command) in names), "More"
    )
app.registered_commands.sort(key=lambda c: (list(_PANELS).index(c.rich_help_panel)
                             if c.rich_help_panel in _PANELS else 9, _command_name(c)))  # fmt: skip
for _group in app.registered_groups:
    _group.rich_help_panel = "Catalog, templates and Etsy"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(argv) if argv is not None else None
    command = next(
        (a for a in (args if args is not None else sys.argv[1:]) if not a.startswith("-")), None
    )
    if argv is None and command in COMMANDS_RUNNING_FLOWS:
        warm = _run_warm(sys.argv[1:])  # the program itself, not a caller's main([...])
        if warm is not None:
            return warm
    problem = prepare_environment()
    if problem:
        err.print(problem)
        return 2
    if argv is None and command in COMMANDS_RUNNING_FLOWS:  # a caller's main([...]) may have
        _start_local_server_early()  # set Prefect's API in-process, where this cannot see it
    if command in COMMANDS_RUNNING_FLOWS:
        signal.signal(signal.SIGTERM, _interrupt)
    if command in COMMANDS_READING_RUNS:
        _local_server_if_running()
    from designflow.cli.localserver import LocalServerError

    try:
        with _temporary_server_settings(command in COMMANDS_RUNNING_FLOWS):
            return _run(args)
    except LocalServerError as exc:
        err.print(f"designflow: {exc}")
        return 1


def prepare_environment() -> str | None:
    """What every command sets up before Prefect is imported; returns what is wrong with
    the API auth file, if anything."""
    # Prefect's temporary server gets 20 s to start; a first run (its database is created)
    # on a busy 2-core machine took longer. No telemetry from a seller's machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    _results_under_designflow_home()
    return _api_auth_for_clients()


def _run_warm(args: list[str]) -> int | None:
    """The command in a fork of the warm process (designflow.cli.warmstart), when one runs
    for this environment; None: run it here."""
    from designflow.cli import warmstart
    from designflow.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError:
        return None  # the command itself says what is wrong
    if not warmstart.enabled(settings, os.environ):
        return None
    return warmstart.run_warm(args, settings.home)


def _interrupt(signum, frame) -> None:
    """SIGTERM ends a command that runs flows as Ctrl-C does: its run recorded as
    interrupted, what it stored so far printed, exit code 130."""
    raise KeyboardInterrupt


def _run(args: list[str] | None) -> int:
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


def _api_auth_for_clients() -> str | None:
    """This process and the processes it starts talk to a `designflow server` with its
    secret (designflow.ops.api_auth): from PREFECT_API_AUTH_STRING if set, else from the
    auth file when there is one. Returns what is wrong with an auth file that was asked
    for and cannot be used."""
    if os.environ.get("PREFECT_API_AUTH_STRING"):
        return None
    from designflow.ops.api_auth import ApiAuthError, read_api_auth
    from designflow.settings import Settings

    settings = Settings.from_env()
    try:
        secret = read_api_auth(settings.api_auth_file)
    except ApiAuthError as exc:
        return f"DESIGNFLOW_API_AUTH_FILE: {exc}"
    if secret is None and settings.api_auth_file_set:
        return f"DESIGNFLOW_API_AUTH_FILE: no such file: {settings.api_auth_file}"
    if secret is not None:
        os.environ["PREFECT_API_AUTH_STRING"] = secret
    return None


# Commands that run flows in this process (on Prefect's temporary server when no server is
# configured). Not `serve`: its schedules need the full server.
COMMANDS_RUNNING_FLOWS = ("upload", "sweep", "publish")


# Commands that read runs from the server: the local one when it runs and none is configured.
COMMANDS_READING_RUNS = ("status",)


def _local_server_if_running() -> None:
    if os.environ.get("PREFECT_API_URL"):
        return
    from designflow.cli.localserver import running_server
    from designflow.settings import Settings

    settings = Settings.from_env()
    url = running_server(settings) if settings.local_server == "stay" else None
    if url:
        os.environ["PREFECT_API_URL"] = url


# Services of Prefect's server that a temporary server (one command's runs, gone when it
# exits) never needs: schedules, late-run and zombie detection, automations, cancellation
# and pause clean-up, and the event feed (task and flow run states are recorded all the same).
TEMPORARY_SERVER_OFF = (
    "SCHEDULER", "LATE_RUNS", "FOREMAN", "CANCELLATION_CLEANUP", "PAUSE_EXPIRATIONS",
    "REPOSSESSOR", "TRIGGERS", "EVENT_PERSISTER", "CLEANUP_RECONCILER",
)  # fmt: skip


def _start_local_server_early() -> None:
    """A first run's local server (its database first) starts while this process imports
    Prefect (~2.5 s), not after it: nothing here needs Prefect to start it. Only where no
    Prefect API is configured (in the environment or a Prefect profile)."""
    if os.environ.get("PREFECT_API_URL") or _profile_names_an_api():
        return
    from designflow.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError:
        return  # the command says what is wrong
    if settings.local_server != "stay":
        return
    _say_the_local_server_starts(settings)
    import threading

    from designflow.cli.localserver import ensure_local_server

    def start() -> None:
        with contextlib.suppress(Exception):  # use_local_server says what is wrong
            ensure_local_server(settings)

    threading.Thread(target=start, name="designflow-local-server", daemon=True).start()


_SAID_THE_SERVER_STARTS: list[bool] = []  # once per process


def _say_the_local_server_starts(settings) -> None:
    from designflow.cli.localserver import state_file

    if not _SAID_THE_SERVER_STARTS and not state_file(settings.home).exists():
        err.print("designflow: starting the local Prefect server (it stays for the next "
                  "commands; `designflow stop` stops it)")  # fmt: skip
        _SAID_THE_SERVER_STARTS.append(True)


def _profile_names_an_api() -> bool:
    from pathlib import Path

    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml")
    try:
        return "PREFECT_API_URL" in profiles.expanduser().read_text()
    except OSError:
        return False


def use_local_server() -> str:
    """The local server that stays (started on first use); this process and the processes
    it starts talk to it. Returns its API URL."""
    from designflow.cli.localserver import ensure_local_server, state_file
    from designflow.settings import Settings

    settings = Settings.from_env()
    if not state_file(settings.home).exists():
        _say_the_local_server_starts(settings)
        _warm_embedded_catalog(settings)
    url, _ = ensure_local_server(settings)
    os.environ["PREFECT_API_URL"] = url
    return url


def _warm_embedded_catalog(settings) -> None:
    """While the Prefect server starts (~18 s on a first run), the embedded PostgreSQL starts
    beside it (~5 s a first time) instead of after it, in the run's first task."""
    if settings.database_url or settings.catalog_block:
        return
    import threading

    from designflow.catalog.embedded import embedded_database_url

    def start() -> None:
        with contextlib.suppress(Exception):  # the run's own start says what is wrong
            embedded_database_url(settings.home)

    threading.Thread(target=start, name="designflow-warm-catalog", daemon=True).start()


@contextlib.contextmanager
def _temporary_server_settings(applies: bool) -> Iterator[None]:
    """Settings of a command that runs flows in its own process: no run heartbeat; and when
    it will start Prefect's temporary server (no API URL configured), that server's unused
    services off, and its database in the embedded PostgreSQL (database 'prefect'), or SQLite
    with DESIGNFLOW_TEMPORARY_SERVER_DB=sqlite. As Prefect settings for this
    command only (the temporary server is started with them)."""
    if not applies:
        yield
        return
    import prefect.settings as prefect_settings

    updates: dict = {}
    if "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" not in os.environ:
        # A command's runs are ended by the command (or Crashed by its watchdog).
        from designflow.orchestration.runners import no_heartbeat_settings

        updates.update(no_heartbeat_settings())
    if prefect_settings.get_current_settings().api.url:
        with prefect_settings.temporary_settings(updates=updates):
            yield
        return
    from designflow.settings import Settings

    if Settings.from_env().local_server == "stay":
        updates[prefect_settings.PREFECT_API_URL] = use_local_server()
        with prefect_settings.temporary_settings(updates=updates):
            yield
        return
    from designflow.cli.tempserver import use_detached_temporary_server

    use_detached_temporary_server()
    updates.update(
        {
            getattr(prefect_settings, f"PREFECT_SERVER_SERVICES_{service}_ENABLED"): False
            for service in TEMPORARY_SERVER_OFF
        }
    )
    wanted = Settings.from_env().temporary_server_db
    if wanted == "postgresql" and "PREFECT_API_DATABASE_CONNECTION_URL" not in os.environ:
        from designflow.catalog.embedded import embedded_database_url
        from designflow.cli.server import asyncpg_url
        from designflow.settings import Settings

        url = embedded_database_url(Settings.from_env().home, "prefect")
        updates[prefect_settings.PREFECT_API_DATABASE_CONNECTION_URL] = asyncpg_url(url)
    with prefect_settings.temporary_settings(updates=updates):
        yield
