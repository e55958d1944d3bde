"""Scale-out configurations: fingerprinting on Dask, and a Prefect server on PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import psycopg
from psycopg import sql

from designflow.flows.upload import fingerprint_batch
from tests import images
from tests.conftest import DesignflowEnv, _url_for_database


def test_dask_runner_gives_the_same_fingerprints_as_threads(
    designflow_env: DesignflowEnv, monkeypatch
) -> None:
    from designflow.tasks.runners import fingerprint_task_runner

    paths = [
        str(images.write_png(designflow_env.inputs / f"k{i}.png", seed=1000 + i)) for i in range(4)
    ]
    (designflow_env.inputs / "bad.png").write_text("no")
    paths.append(str(designflow_env.inputs / "bad.png"))
    monkeypatch.setenv("DESIGNFLOW_TASK_RUNNER", "threads")
    with_threads = fingerprint_batch.with_options(task_runner=fingerprint_task_runner())(paths)
    monkeypatch.setenv("DESIGNFLOW_TASK_RUNNER", "dask")
    runner = fingerprint_task_runner()
    assert type(runner).__name__ == "DaskTaskRunner"
    with_dask = fingerprint_batch.with_options(task_runner=runner)(paths)
    assert with_dask == with_threads
    assert sum(1 for r in with_dask if hasattr(r, "sha256")) == 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_prefect_server_on_postgresql_runs_an_upload(
    designflow_env: DesignflowEnv, pg_admin_url: str, tmp_path
) -> None:
    """`designflow server --database-url` (Prefect's server on PostgreSQL, one command): an
    upload run through it leaves its flow run in that database."""
    import httpx

    name = f"prefect_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "designflow.cli", "server", "--port", str(port),
         "--database-url", _url_for_database(pg_admin_url, name)],
        env=env, stdout=open(tmp_path / "server.log", "wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prefect server did not start"
            time.sleep(0.5)
        path = images.write_png(designflow_env.inputs / "pg.png", seed=1100)
        run = subprocess.run(
            [sys.executable, "-m", "designflow.cli", "upload", str(path), "--user", "pgserver", "--json"],
            env=dict(env, PREFECT_API_URL=f"http://127.0.0.1:{port}/api"),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        report = json.loads(run.stdout)
        assert len(report["stored"]) == 1
        with psycopg.connect(pg_admin_url, dbname=name) as conn:
            (state,) = conn.execute(
                "SELECT state_type FROM flow_run WHERE id = %s", (report["flow_run_id"],)
            ).fetchone()
        assert state == "COMPLETED"
    finally:
        server.terminate()
        server.wait(60)
