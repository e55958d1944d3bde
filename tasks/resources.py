"""The catalog and NAS a task talks to, resolved from settings once per process.

Tasks receive no connection strings as parameters (flow and task inputs are visible in the
Prefect UI); they resolve them here from the environment or from a Prefect block.
"""

from __future__ import annotations

import threading
from functools import lru_cache

from psycopg.conninfo import make_conninfo

from designflow.catalog import Catalog
from designflow.embedded import embedded_database_url
from designflow.nas import Nas, nas_from_url
from designflow.settings import Settings

_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def current_settings() -> Settings:
    return Settings.from_env()


def database_url(settings: Settings) -> str:
    return _database_url(settings.database_url, settings.catalog_block, str(settings.home))


@lru_cache(maxsize=8)
def _database_url(url: str | None, block_name: str | None, home: str) -> str:
    if url:
        return url
    if block_name:
        return _url_from_block(block_name)
    from pathlib import Path

    return embedded_database_url(Path(home))


def _url_from_block(block_name: str) -> str:
    """A psycopg conninfo from a prefect-sqlalchemy `SqlAlchemyConnector` block, so that
    deployments keep the database credentials in Prefect rather than in the environment."""
    from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector
    from sqlalchemy.engine import make_url

    block = SqlAlchemyConnector.load(block_name)
    info = block.connection_info
    url = info.create_url() if isinstance(info, ConnectionComponents) else make_url(str(info))
    if not url.drivername.startswith("postgresql"):
        raise ValueError(f"catalog block {block_name!r} is not a PostgreSQL connection")
    params: dict[str, object] = {
        "host": url.host,
        "port": url.port,
        "dbname": url.database,
        "user": url.username,
        "password": url.password,
    }
    # Query arguments (for example host=/socket/dir) override the URL's parts.
    params.update({k: v for k, v in dict(url.query).items() if isinstance(v, str)})
    return make_conninfo(**{k: v for k, v in params.items() if v not in (None, "")})


def catalog(settings: Settings | None = None) -> Catalog:
    """The catalog, migrated before first use in this process."""
    settings = settings or current_settings()
    url = database_url(settings)
    cat = Catalog(url)
    if url not in _migrated:
        with _migrate_lock:
            if url not in _migrated:
                cat.migrate()
                _migrated.add(url)
    return cat


_nas_lock = threading.Lock()
_nas_by_key: dict[tuple, Nas] = {}


def _nas_key(settings: Settings) -> tuple:
    """Everything that makes a different NAS client, credentials included (a changed
    password or passphrase must not keep using the client made with the old one)."""
    return (
        settings.nas_block, settings.nas_url, settings.nas_key_file, settings.nas_known_hosts,
        settings.nas_password, settings.nas_key_passphrase, settings.nas_upload_processes,
    )  # fmt: skip


def nas(settings: Settings | None = None) -> Nas:
    """One NAS client per configuration and process, so the SFTP connection pool is shared
    by every task, batch and run in the process."""
    settings = settings or current_settings()
    key = _nas_key(settings)
    with _nas_lock:
        client = _nas_by_key.get(key)
        if client is None:
            if settings.nas_block:
                from tasks.blocks import SftpNasBlock

                client = SftpNasBlock.load(settings.nas_block).nas()
            else:
                client = nas_from_url(settings.nas_url, settings)
            _nas_by_key[key] = client
        return client


def release_nas(settings: Settings | None = None) -> None:
    """End of a run: close idle NAS connections (the pool itself stays usable)."""
    settings = settings or current_settings()
    key = _nas_key(settings)
    with _nas_lock:
        client = _nas_by_key.get(key)
    if client is not None:
        client.release()


def close_all() -> None:
    with _nas_lock:
        clients = list(_nas_by_key.values())
        _nas_by_key.clear()
    for client in clients:
        client.close()
