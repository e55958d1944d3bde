"""The catalog database (PostgreSQL through psycopg 3): connections, a pool, migrations.

The repositories (designs, mockups, runs, listings) hold the statements; `Catalog` in
designflow.catalog puts them together on one database.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import psycopg
import psycopg.conninfo
import psycopg.errors

from designflow.errors import PermanentError


def migrations_dir() -> Path:
    """The ordered SQL files: package data of `designflow.migrations` (the top-level
    `migrations/` folder of a checkout), or DESIGNFLOW_MIGRATIONS_DIR."""
    from designflow.settings import Settings

    override = Settings.from_env().migrations_dir
    return override or Path(str(resources.files("designflow.migrations")))


CONNECT_TIMEOUT_S = 10


class CatalogDiskFull(PermanentError, psycopg.errors.DiskFull):
    """The catalog's disk is full: no retry heals it; the message names the database."""


# Any constant works; it only has to be the same for every designflow process.
_MIGRATION_LOCK = 0x64657369676E


class Database:
    """The catalog's statements. With `pool_size`, connections come from a psycopg_pool
    pool (one per process, see designflow.resources); without, each call opens its own,
    which suits one-off use (a command, a test)."""

    def __init__(self, conninfo: str, pool_size: int | None = None) -> None:
        self._conninfo = conninfo
        self._pool = None
        if pool_size:
            from psycopg_pool import ConnectionPool

            # One direct connection first: a wrong database, user or password raises the
            # server's own error here, where a pool would only time out waiting.
            psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_S).close()
            # min_size 1: the first call of a run finds a connection ready; check: a
            # connection the server dropped (a restart) is replaced, not handed out.
            self._pool = ConnectionPool(
                conninfo, min_size=1, max_size=pool_size, timeout=CONNECT_TIMEOUT_S,
                kwargs={"connect_timeout": CONNECT_TIMEOUT_S},
                check=ConnectionPool.check_connection, open=True,
                name="designflow-catalog",
            )  # fmt: skip

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A connection for one unit of work: committed when the block ends, rolled back
        on an error. A full disk is said as such, naming the database (never the password)."""
        try:
            with self._connect() as conn:
                yield conn
        except psycopg.errors.DiskFull as exc:
            raise CatalogDiskFull(
                f"the catalog database {self.describe()} has no space left on its disk: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        except psycopg.OperationalError:
            self._unreachable_at = time.monotonic()
            raise

    def recently_unreachable(self, within_s: float = 60.0) -> bool:
        """Whether a call of this process met the server down (or the pool without a
        connection) in the last `within_s`: optional lookups skip it rather than wait out
        the pool's timeout (each fingerprint batch's known-bytes lookup waited 10 s on a
        dead catalog: 191 s for a 50-batch run to report instead of < 60)."""
        at = getattr(self, "_unreachable_at", None)
        return at is not None and time.monotonic() - at < within_s

    def describe(self) -> str:
        """The database's name and server, for messages (no user or password)."""
        try:
            info = psycopg.conninfo.conninfo_to_dict(self._conninfo)
        except psycopg.ProgrammingError:
            return "(unparsable address)"
        where = info.get("host") or "localhost"
        return f"{info.get('dbname') or info.get('user') or 'postgres'!r} on {where}"

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection]:
        if self._pool is None:
            with psycopg.connect(self._conninfo, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                yield conn
            return
        from psycopg_pool import PoolTimeout

        try:
            pooled = self._pool.connection()
            conn = pooled.__enter__()
        except PoolTimeout:
            # Say why no connection came (server down, database gone) rather than only
            # that the pool waited: a direct attempt raises the server's own error.
            psycopg.connect(self._conninfo, connect_timeout=CONNECT_TIMEOUT_S).close()
            raise
        with contextlib.ExitStack() as stack:
            stack.push(pooled)
            yield conn

    def dedicated_connection(self) -> psycopg.Connection:
        """A connection of its own, outside the pool (session advisory locks: a crashed
        process releases them with its connection). The caller closes it."""
        return psycopg.connect(self._conninfo, connect_timeout=CONNECT_TIMEOUT_S)

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Try to hold a named session advisory lock for the block; yields whether it is
        held. Every process on every machine using this database sees the same lock, and a
        crashed process releases it with its connection."""
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        conn = self.dedicated_connection()
        try:
            conn.autocommit = True
            held = bool(conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0])
            try:
                yield held
            finally:
                if held:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        finally:
            conn.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def migrate(self, folder: Path | None = None) -> list[str]:
        """Apply the SQL files not yet recorded, in name order, each in its own transaction."""
        folder = folder or migrations_dir()
        files = sorted(folder.glob("*.sql"))
        if not files:
            raise FileNotFoundError(f"no migrations found in {folder}")
        applied_now: list[str] = []
        with self.connect() as conn:
            with conn.transaction():
                # Two processes starting at once must not both apply the same file.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
                for path in files:
                    if path.stem in done:
                        continue
                    conn.execute(path.read_text(encoding="utf-8"))
                    conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES (%s)", (path.stem,)
                    )
                    applied_now.append(path.stem)
        return applied_now

    def applied_migrations(self) -> list[str]:
        with self.connect() as conn:
            rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        return [r[0] for r in rows]
