"""Several machines, simulated on loopback: one sshd as the NAS, a Prefect server on
PostgreSQL, the catalog on a PostgreSQL reached over TCP, and two workers, each started from
its own empty folder with its own HOME and its own venv holding the installed wheel (not the
checkout). Runs are created over Prefect's REST API, as a web app on a third host would."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests import images
from tests.conftest import _url_for_database
from tests.flows.conftest import ROOT, install_in_venv
from tests.flows.test_sweep import age
from tests.relay import TcpToUnixRelay
from tests.sftp_servers import free_port, start_sftp_server


def _database(admin_url: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _url_for_database(admin_url, name)


def _clean_env() -> dict[str, str]:
    """This process's environment without anything that points at the test session or the
    checkout (a machine of its own starts from nothing of ours)."""
    drop = ("PREFECT_", "DESIGNFLOW_", "PYTHONPATH")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


class Api:
    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)

    def run(self, deployment: str, parameters: dict, queue: str | None = None) -> str:
        found = self.client.get(f"/deployments/name/{deployment}")
        found.raise_for_status()
        body: dict = {"parameters": parameters}
        if queue:
            body["work_queue_name"] = queue
        made = self.client.post(f"/deployments/{found.json()['id']}/create_flow_run", json=body)
        made.raise_for_status()
        return made.json()["id"]

    def wait_final(self, run_ids: list[str], workers: list, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for worker in workers:
                assert worker.poll() is None, f"a worker exited with {worker.returncode}"
            runs = {r: self.client.get(f"/flow_runs/{r}").json() for r in run_ids}
            if all(
                run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
                for run in runs.values()
            ):
                return runs
            assert time.monotonic() < deadline, {r: x["state"]["name"] for r, x in runs.items()}
            time.sleep(1)


def test_two_workers_on_their_own_machines_share_nas_catalog_and_server(
    designflow_wheel: Path, pg_admin_url: str, tmp_path: Path
) -> None:
    nas = start_sftp_server(tmp_path / "sftp")
    catalog_url = _database(pg_admin_url, "df_machines")
    params = conninfo_to_dict(catalog_url)
    relay = None
    if str(params.get("host", "")).startswith("/"):  # the test server listens on a socket
        relay = TcpToUnixRelay(f"{params['host']}/.s.PGSQL.{params.get('port', 5432)}")
        params |= {"host": "127.0.0.1", "port": str(relay.port)}
    catalog_tcp = make_conninfo(**params)
    assert conninfo_to_dict(catalog_tcp)["host"] == "127.0.0.1"

    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    base = _clean_env()
    server_log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "designflow.cli", "server", "--port", str(port),
         "--database-url", _database(pg_admin_url, "prefect_machines")],
        env=dict(base, PREFECT_HOME=str(tmp_path / "server-prefect"), DESIGNFLOW_HOME=str(tmp_path / "server-home")),
        stdout=server_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    shared = {
        "PREFECT_API_URL": api_url,
        "DESIGNFLOW_DATABASE_URL": catalog_tcp,
        **nas.env(),
        "DESIGNFLOW_TEMPLATES": "nas:templates",
        "DESIGNFLOW_INBOX": "nas:inbox",
        "DESIGNFLOW_NAS_UPLOAD_PROCESSES": "0",
    }
    workers, logs = [], []
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the Prefect server did not start"
            time.sleep(0.5)

        # The NAS: templates every worker renders from, the web app's upload folders, and a
        # seller's inbox with 5 complete designs and 1 corrupt file.
        shutil.copytree(ROOT / "examples" / "templates", nas.root / "templates")
        folders, design_files = [], []
        for i in range(6):
            folder = nas.root / "uploads" / f"batch-{i}"
            folder.mkdir(parents=True)
            design_files += [
                images.write_png(folder / f"d{j}.png", seed=2000 + 10 * i + j) for j in range(2)
            ]
            folders.append(f"nas:uploads/batch-{i}/")
        shutil.copy(
            design_files[0], nas.root / "uploads" / "batch-5" / "again.png"
        )  # one design twice
        inbox = nas.root / "inbox" / "shop"
        inbox.mkdir(parents=True)
        swept = [age(images.write_png(inbox / f"s{j}.png", seed=2100 + j)) for j in range(5)]
        (inbox / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300))
        age(inbox / "broken.png")
        expected = {hashlib.sha256(p.read_bytes()).hexdigest() for p in [*design_files, *swept]}

        # The admin's machine deploys (results go to the NAS: it is not a local folder).
        admin = dict(
            base,
            **shared,
            DESIGNFLOW_HOME=str(tmp_path / "admin"),
            PREFECT_HOME=str(tmp_path / "admin-prefect"),
        )
        deployed = subprocess.run([sys.executable, "-m", "designflow.cli", "deploy", "--pool", "machines"],
                                  env=admin, capture_output=True, text=True, timeout=180)  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr[-3000:]
        assert "result storage: nas:prefect-results/" in deployed.stdout

        for name in ("machine-1", "machine-2"):
            machine = tmp_path / name
            (machine / "home").mkdir(parents=True)
            (machine / "work").mkdir()
            command = install_in_venv(designflow_wheel, machine / "venv")
            env = dict(base, **shared, HOME=str(machine / "home"))
            located = subprocess.run(
                [str(machine / "venv" / "bin" / "python"), "-c", "import designflow.flows.upload as m; print(m.__file__)"],
                cwd=machine / "work", env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            assert located.stdout.strip().startswith(str(machine / "venv")), located.stdout
            logs.append(open(machine / "worker.log", "wb"))  # noqa: SIM115
            workers.append(subprocess.Popen(
                [str(command), "worker", "--pool", "machines", "--name", name, "--limit", "1", "--poll-seconds", "1"],
                cwd=machine / "work", env=env, stdout=logs[-1], stderr=subprocess.STDOUT,
            ))  # fmt: skip

        api = Api(api_url)
        uploads = [
            api.run("upload-designs/upload-designs", {"paths": [f], "user_id": "shop"})
            for f in folders
        ]
        sweep = api.run(
            "sweep-inbox/sweep-inbox",
            {"inbox": "nas:inbox", "user_id": "shop", "settle_seconds": 1},
        )
        first = api.wait_final([*uploads, sweep], workers)
        assert {r: x["state"]["type"] for r, x in first.items()} == {r: "COMPLETED" for r in first}, {
            r: x["state"]["message"] for r, x in first.items()
        }  # fmt: skip

        with psycopg.connect(catalog_url) as conn:
            rows = conn.execute(
                "SELECT id, sha256, nas_path FROM design_images WHERE user_id = 'shop'"
            ).fetchall()
        assert sorted(r[1] for r in rows) == sorted(expected)  # each design exactly once
        stored = sorted(
            p
            for p in (nas.root / "users" / "shop").rglob("*")
            if p.is_file() and "designs" in p.parts
        )
        assert sorted(p.stem for p in stored) == sorted(expected)
        assert sorted(p.name for p in (inbox / "processed").iterdir()) == sorted(
            p.name for p in swept
        )
        assert (inbox / "quarantine" / "broken.png").exists()
        assert (
            (inbox / "quarantine" / "broken.png.reason.txt").read_text().startswith("broken.png: ")
        )

        design_ids = sorted(r[0] for r in rows)
        mockups = [
            api.run("generate-mockups/generate-mockups",
                    {"design_ids": design_ids[i::4], "template_ids": ["tshirt"], "publish": False}, queue="normal")
            for i in range(4)
        ]  # fmt: skip
        second = api.wait_final(mockups, workers)
        assert {x["state"]["type"] for x in second.values()} == {"COMPLETED"}, second
        with psycopg.connect(catalog_url) as conn:
            (made,) = conn.execute("SELECT count(*) FROM design_mockups").fetchone()
        assert made == len(design_ids)

        # Every worker ran some of the runs (each logs the ids of the runs it took).
        ran = [p.read_text(errors="replace") for p in (tmp_path / "machine-1" / "worker.log", tmp_path / "machine-2" / "worker.log")]  # fmt: skip
        all_runs = [*uploads, sweep, *mockups]
        taken = [{r for r in all_runs if r in log} for log in ran]
        assert all(taken), f"runs per worker: {[len(t) for t in taken]}"
        assert taken[0] | taken[1] == set(all_runs)

        # Results live on the NAS: read back from a third machine through the server.
        assert any((nas.root / "prefect-results").iterdir())
        status = subprocess.run(
            [sys.executable, "-m", "designflow.cli", "status", uploads[0]],
            env=dict(admin, DESIGNFLOW_HOME=str(tmp_path / "reader")), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr[-3000:]
        assert "result:" in status.stdout and "nas:uploads/batch-0/d0.png" in status.stdout
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(60)
        for log in logs:
            log.close()
        server.terminate()
        server.wait(60)
        server_log.close()
        nas.stop()
        if relay is not None:
            relay.close()
