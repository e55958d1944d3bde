"""Several machines on loopback, for tests and benchmarks: an OpenSSH sshd as the NAS, a
Prefect server on PostgreSQL (`designflow server`), the catalog on PostgreSQL reached over
TCP, and workers each started from its own empty folder with its own HOME and its own venv
holding the installed wheel (not the checkout). Runs are created over the REST API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from designflow.ops.api_auth import basic_auth
from tests.conftest import _url_for_database
from tests.relay import TcpToUnixRelay
from tests.sftp_servers import free_port, start_sftp_server

FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def new_database(admin_url: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _url_for_database(admin_url, name)


def clean_env() -> dict[str, str]:
    """This process's environment without anything that points at the test session or the
    checkout (a machine of its own starts from nothing of ours)."""
    drop = ("PREFECT_", "DESIGNFLOW_", "PYTHONPATH")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


class Machines:
    def __init__(self, root: Path, pg_admin_url: str, wheel: Path) -> None:
        self.root, self.wheel = root, wheel
        self.nas = start_sftp_server(root / "sftp")
        self.catalog_url = new_database(pg_admin_url, "df_machines")
        params = conninfo_to_dict(self.catalog_url)
        self.relay = None
        if str(params.get("host", "")).startswith("/"):  # the test server listens on a socket
            self.relay = TcpToUnixRelay(f"{params['host']}/.s.PGSQL.{params.get('port', 5432)}")
            params |= {"host": "127.0.0.1", "port": str(self.relay.port)}
        self.catalog_tcp = make_conninfo(**params)
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.base = clean_env()
        self._server_log = open(root / "server.log", "wb")  # noqa: SIM115
        self.server = subprocess.Popen(
            [sys.executable, "-m", "designflow.cli", "server", "--port", str(port),
             "--database-url", new_database(pg_admin_url, "prefect_machines")],
            env=dict(self.base, PREFECT_HOME=str(root / "server-prefect"), DESIGNFLOW_HOME=str(root / "server-home")),
            stdout=self._server_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        # The server makes its API secret in its DESIGNFLOW_HOME on start; the other machines
        # are given the file (as an operator copies it).
        self.auth_file = root / "server-home" / "api-auth"
        self.shared = {
            "PREFECT_API_URL": self.api_url,
            "DESIGNFLOW_API_AUTH_FILE": str(self.auth_file),
            "DESIGNFLOW_DATABASE_URL": self.catalog_tcp,
            **self.nas.env(),
            "DESIGNFLOW_TEMPLATES": "nas:templates",
            "DESIGNFLOW_INBOX": "nas:inbox",
            # designflow web stages a seller's files under web-uploads/<seller>/.
            "DESIGNFLOW_SOURCE_ROOTS": "nas:uploads,nas:inbox,nas:sellers/{user_id},nas:web-uploads/{user_id}",
        }
        self.workers: dict[str, subprocess.Popen] = {}
        self._logs: list = []
        self.api = httpx.Client(base_url=self.api_url, timeout=30)
        try:
            self._wait_for_server()
        except BaseException:
            self.close()
            raise
        self.api.auth = basic_auth(self.auth_file.read_text().strip())

    def _wait_for_server(self) -> None:
        wait_until_healthy(f"{self.api_url}/health", self.server, self.root / "server.log", 120)

    def admin_env(self, name: str = "admin") -> dict[str, str]:
        """A machine that runs commands against the shared setup (the checkout's Python)."""
        return dict(self.base, **self.shared, DESIGNFLOW_HOME=str(self.root / name),
                    PREFECT_HOME=str(self.root / f"{name}-prefect"))  # fmt: skip

    def deploy(self, pool: str) -> str:
        done = subprocess.run([sys.executable, "-m", "designflow.cli", "deploy", "--pool", pool],
                              env=self.admin_env(), capture_output=True, text=True, timeout=180)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def start_worker(self, name: str, pool: str, limit: int = 1) -> Path:
        """A worker on a machine of its own; returns that machine's folder."""
        from tests.flows.conftest import install_in_venv

        machine = self.root / name
        (machine / "home").mkdir(parents=True)
        (machine / "work").mkdir()
        command = install_in_venv(self.wheel, machine / "venv")
        env = dict(self.base, **self.shared, HOME=str(machine / "home"))
        located = subprocess.run(
            [str(machine / "venv" / "bin" / "python"), "-c", "import designflow.flows.upload as m; print(m.__file__)"],
            cwd=machine / "work", env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert located.stdout.strip().startswith(str(machine / "venv")), located.stdout
        self._logs.append(open(machine / "worker.log", "wb"))  # noqa: SIM115
        self.workers[name] = subprocess.Popen(
            [str(command), "worker", "--pool", pool, "--name", name, "--limit", str(limit), "--poll-seconds", "1"],
            cwd=machine / "work", env=env, stdout=self._logs[-1], stderr=subprocess.STDOUT,
        )  # fmt: skip
        return machine

    def worker_log(self, name: str) -> str:
        return (self.root / name / "worker.log").read_text(errors="replace")

    def run(self, deployment: str, parameters: dict, queue: str | None = None) -> str:
        found = self.api.get(f"/deployments/name/{deployment}")
        found.raise_for_status()
        body: dict = {"parameters": parameters}
        if queue:
            body["work_queue_name"] = queue
        made = self.api.post(f"/deployments/{found.json()['id']}/create_flow_run", json=body)
        made.raise_for_status()
        return made.json()["id"]

    def wait_final(self, run_ids: list[str], timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for name, worker in self.workers.items():
                assert worker.poll() is None, f"worker {name} exited with {worker.returncode}"
            runs = {r: self.api.get(f"/flow_runs/{r}").json() for r in run_ids}
            if all(run["state"]["type"] in FINAL for run in runs.values()):
                return runs
            assert time.monotonic() < deadline, {r: x["state"]["name"] for r, x in runs.items()}
            time.sleep(0.5)

    def stop_workers(self) -> None:
        for worker in self.workers.values():
            worker.terminate()
        for worker in self.workers.values():
            worker.wait(60)
        self.workers.clear()

    def close(self) -> None:
        self.stop_workers()
        for log in self._logs:
            log.close()
        self.server.terminate()
        self.server.wait(60)
        self._server_log.close()
        self.nas.stop()
        if self.relay is not None:
            self.relay.close()
        self.api.close()


def wait_until_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    """Until `url` answers 200; fails with the end of `log` if `process` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer within {timeout:.0f} s"
        time.sleep(0.3)
