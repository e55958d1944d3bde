"""`designflow server`: a Prefect server whose own database is PostgreSQL."""

from __future__ import annotations

import os
import sys
from urllib.parse import quote

import typer

from designflow.cli.app import app, err, fail
from designflow.ops.api_auth import ApiAuthError


@app.command()
def server(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0 for other machines)"),
    port: int = typer.Option(4200, "--port"),
    database_url: str | None = typer.Option(
        None, "--database-url",
        help="PostgreSQL for Prefect's own tables (libpq URL); default: the embedded PostgreSQL, database 'prefect'",
    ),
    auth: bool = typer.Option(
        True, "--auth/--no-auth",
        help="require the shared secret of DESIGNFLOW_API_AUTH_FILE (made on first start) on every API call",
    ),
) -> int:  # fmt: skip
    """Start a Prefect server on PostgreSQL: for several workers and a web app that triggers
    runs (the default SQLite server answered 503 to 3 of ~45 triggers under load)."""
    from designflow.catalog.embedded import embedded_database_url
    from designflow.settings import Settings

    try:
        url = database_url or embedded_database_url(Settings.from_env().home, "prefect")
        connection = asyncpg_url(url)
    except Exception as exc:  # noqa: BLE001 - said plainly, without the URL (it may hold a password)
        return fail(f"cannot prepare Prefect's database: {type(exc).__name__}")
    env = dict(os.environ, PREFECT_API_DATABASE_CONNECTION_URL=connection)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if auth:
        try:
            env["PREFECT_SERVER_API_AUTH_STRING"] = server_secret(env)
        except ApiAuthError as exc:
            return fail(str(exc))
        env["PREFECT_API_AUTH_STRING"] = env["PREFECT_SERVER_API_AUTH_STRING"]
        err.print(f"API auth on: clients need the secret in {Settings.from_env().api_auth_file}"
                  " (DESIGNFLOW_API_AUTH_FILE on their machine)")  # fmt: skip
    else:
        env.pop("PREFECT_SERVER_API_AUTH_STRING", None)
        err.print("API auth OFF: anyone who reaches this port can start runs and read results")
    where = (
        "the embedded PostgreSQL (database prefect)" if not database_url else "the given PostgreSQL"
    )
    err.print(f"Prefect server on {where}: http://{host}:{port} (API /api); Ctrl-C stops it")
    sys.stdout.flush()
    sys.stderr.flush()
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    os.execve(sys.executable, cmd, env)  # becomes the server: signals reach it directly
    return 0  # not reached


def server_secret(env: dict[str, str]) -> str:
    """Prefect's own setting if given, else the auth file's secret (made if missing)."""
    from designflow.ops.api_auth import ensure_api_auth
    from designflow.settings import Settings

    given = env.get("PREFECT_SERVER_API_AUTH_STRING")
    return given or ensure_api_auth(Settings.from_env(env).api_auth_file)


def asyncpg_url(conninfo: str) -> str:
    """A libpq URL or conninfo as the SQLAlchemy asyncpg URL Prefect's server takes (a Unix
    socket folder as `?host=`)."""
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(conninfo)
    user = quote(str(parts.get("user") or os.environ.get("USER", "postgres")), safe="")
    password = f":{quote(str(parts['password']), safe='')}" if parts.get("password") else ""
    host = str(parts.get("host") or "127.0.0.1")
    port = str(parts.get("port") or 5432)
    database = quote(str(parts.get("dbname") or "postgres"), safe="")
    if host.startswith("/"):
        return f"postgresql+asyncpg://{user}{password}@/{database}?host={quote(host, safe='/')}&port={port}"
    return f"postgresql+asyncpg://{user}{password}@{host}:{port}/{database}"


@app.command()
def ui() -> int:
    """Print the Prefect UI's address: the configured server's, else the local server's
    (started if it is not running). Every command's runs are there."""
    from prefect.settings import get_current_settings

    from designflow.cli.localserver import LocalServerError, ensure_local_server
    from designflow.settings import Settings

    configured = get_current_settings()
    if configured.api.url:
        ui_url = configured.ui_url or configured.api.url.removesuffix("/api")
        print(ui_url)
        return 0
    try:
        url, started = ensure_local_server(Settings.from_env())
    except LocalServerError as exc:
        return fail(str(exc), 1)
    if started:
        err.print("started the local Prefect server (`designflow stop` stops it)")
    print(url.removesuffix("/api"))
    return 0


@app.command()
def stop() -> int:
    """Stop the local Prefect server that commands keep running between them (the embedded
    PostgreSQL has its own: `designflow db stop`)."""
    from designflow.cli.localserver import stop_local_server
    from designflow.settings import Settings

    stopped = stop_local_server(Settings.from_env())
    err.print(f"stopped the local Prefect server at {stopped}" if stopped
              else "no local Prefect server is running")  # fmt: skip
    return 0
