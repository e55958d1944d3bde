"""Several machines, simulated on loopback: one sshd as the NAS, a Prefect server on
PostgreSQL, the catalog on a PostgreSQL reached over TCP, and two workers, each started from
its own empty folder with its own HOME and its own venv holding the installed wheel (not the
checkout). Runs are created over Prefect's REST API, as a web app on a third host would."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests import images
from tests.flows.conftest import ROOT
from tests.flows.test_sweep import age
from tests.machines import Machines, wait_until_healthy


def test_two_workers_on_their_own_machines_share_nas_catalog_and_server(
    designflow_wheel: Path, pg_admin_url: str, tmp_path: Path
) -> None:
    cluster = Machines(tmp_path, pg_admin_url, designflow_wheel)
    nas = cluster.nas
    assert conninfo_to_dict(cluster.catalog_tcp)["host"] == "127.0.0.1"
    catalog_url = cluster.catalog_url
    try:
        # The NAS: templates every worker renders from, the web app's upload folders, and a
        # seller's inbox with 5 complete designs and 1 corrupt file.
        shutil.copytree(ROOT / "examples" / "templates", nas.root / "templates")
        folders, design_files = [], []
        for i in range(4):
            folder = nas.root / "uploads" / f"batch-{i}"
            folder.mkdir(parents=True)
            design_files += [
                images.write_png(folder / f"d{j}.png", seed=2000 + 10 * i + j) for j in range(2)
            ]
            folders.append(f"nas:uploads/batch-{i}/")
        shutil.copy(
            design_files[0], nas.root / "uploads" / "batch-3" / "again.png"
        )  # one design twice
        inbox = nas.root / "inbox" / "shop"
        inbox.mkdir(parents=True)
        swept = [age(images.write_png(inbox / f"s{j}.png", seed=2100 + j)) for j in range(5)]
        (inbox / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(300))
        age(inbox / "broken.png")
        expected = {hashlib.sha256(p.read_bytes()).hexdigest() for p in [*design_files, *swept]}

        # The API asks for the secret: a call without it (or with a wrong one) is refused.
        unauthenticated = httpx.post(f"{cluster.api_url}/flow_runs/filter", json={}, timeout=10)
        assert unauthenticated.status_code == 401, unauthenticated.text
        wrong = httpx.post(f"{cluster.api_url}/flow_runs/filter", json={}, timeout=10,
                           auth=("designflow", "guess"))  # fmt: skip
        assert wrong.status_code == 401
        secret = cluster.auth_file.read_text().strip()
        assert oct(cluster.auth_file.stat().st_mode & 0o777) == "0o600"

        # The admin's machine deploys (results go to the NAS: it is not a local folder).
        assert "result storage: nas:prefect-results/" in cluster.deploy("machines")
        for name in ("machine-1", "machine-2"):
            cluster.start_worker(name, "machines")

        uploads = [
            cluster.run("upload-designs/upload-designs", {"paths": [f], "user_id": "shop"})
            for f in folders
        ]
        sweep = cluster.run(
            "sweep-inbox/sweep-inbox",
            {"inbox": "nas:inbox", "user_id": "shop", "settle_seconds": 1},
        )
        first = cluster.wait_final([*uploads, sweep])
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
            cluster.run("generate-mockups/generate-mockups",
                    {"design_ids": design_ids[i::2], "template_ids": ["tshirt"], "publish": False}, queue="normal")
            for i in range(2)
        ]  # fmt: skip
        second = cluster.wait_final(mockups)
        assert {x["state"]["type"] for x in second.values()} == {"COMPLETED"}, second
        with psycopg.connect(catalog_url) as conn:
            (made,) = conn.execute("SELECT count(*) FROM design_mockups").fetchone()
        assert made == len(design_ids)

        # Every worker ran some of the runs (each logs the ids of the runs it took).
        ran = [cluster.worker_log(name) for name in ("machine-1", "machine-2")]
        all_runs = [*uploads, sweep, *mockups]
        taken = [{r for r in all_runs if r in log} for log in ran]
        assert all(taken), f"runs per worker: {[len(t) for t in taken]}"
        assert taken[0] | taken[1] == set(all_runs)

        # Results live on the NAS: read back from a third machine through the server.
        assert any((nas.root / "prefect-results").iterdir())
        status = subprocess.run(
            [sys.executable, "-m", "designflow.cli", "status", uploads[0]],
            env=cluster.admin_env("reader"), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr[-3000:]
        assert "result:" in status.stdout and "nas:uploads/batch-0/d0.png" in status.stdout

        # A run reads only under the allowed source folders (per seller here): not the
        # worker's own files, not another seller's folder, even through a link.
        for seller in ("shop", "other"):
            (nas.root / "sellers" / seller).mkdir(parents=True)
        own = images.write_png(nas.root / "sellers" / "shop" / "mine.png", seed=2200)
        images.write_png(nas.root / "sellers" / "other" / "theirs.png", seed=2201)
        (nas.root / "sellers" / "shop" / "peek").symlink_to(nas.root / "sellers" / "other")
        # Started with `designflow trigger`, which sends the secret from the copied file.
        paths = ["/etc/passwd", "nas:sellers/other/", "nas:sellers/shop/../other/theirs.png",
                 "nas:sellers/shop/"]  # fmt: skip
        triggered = subprocess.run(
            [sys.executable, "-m", "designflow.cli", "trigger", "upload-designs", "--json",
             "--param", f"paths={json.dumps(paths)}", "--param", "user_id=shop"],
            env=cluster.admin_env("web-app"), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert triggered.returncode == 0, triggered.stderr[-2000:]
        probe = json.loads(triggered.stdout)["flow_run_id"]
        (final,) = cluster.wait_final([probe]).values()
        assert final["state"]["type"] == "COMPLETED", final["state"]["message"]
        result = subprocess.run(
            [sys.executable, "-m", "designflow.cli", "status", probe, "--json"],
            env=cluster.admin_env("reader"), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        report = json.loads(result.stdout)["result"]
        rejected = {r["file"]: r["reason"] for r in report["rejected"]}
        assert rejected["/etc/passwd"] == "not under an allowed source folder", rejected
        assert rejected["nas:sellers/other/"] == "not under an allowed source folder", rejected
        assert [s["file"] for s in report["stored"]] == ["nas:sellers/shop/mine.png"], report
        assert hashlib.sha256(own.read_bytes()).hexdigest() == report["stored"][0]["sha256"]
        assert not any("theirs" in s["file"] for s in report["stored"])

        # A web app's calls exactly as the operator guide shows them: start an upload over
        # plain HTTP, wait for it, read each file's outcome from its upload-outcomes table.
        (nas.root / "uploads" / "shop-42").mkdir()
        web_app_file = images.write_png(nas.root / "uploads" / "shop-42" / "a.png", seed=2300)
        namespace = run_documented_client(cluster.api_url, cluster.auth_file)
        assert namespace["state"] == "COMPLETED"
        (row,) = namespace["outcomes"]
        assert (row["file"], row["outcome"]) == ("nas:uploads/shop-42/a.png", "stored"), row
        stored_a = [d for d in catalog_designs(catalog_url, "shop-42") if d[1] == "a.png"]
        assert [d[0] for d in stored_a] == [row["design_id"]]
        assert stored_a[0][2] == hashlib.sha256(web_app_file.read_bytes()).hexdigest()

        # designflow web on a machine of its own: a seller's upload goes through the
        # deployment to the workers (files staged on the SFTP NAS), outcomes under the names
        # the client gave.
        web_outcomes, web_run = upload_through_web(cluster, tmp_path, design_files[1])
        assert web_outcomes == {
            "fresh.png": "stored",
            "copy.png": "duplicate",
            "bad.png": "rejected",
        }
        assert any(web_run in cluster.worker_log(n) for n in ("machine-1", "machine-2"))
        assert not list((nas.root / "web-uploads").rglob("*.png"))  # staging removed after the run

        # The secret is in no log of the server, the workers or the commands above.
        logs = [(tmp_path / "server.log").read_text(errors="replace"), *ran,
                *(cluster.worker_log(n) for n in ("machine-1", "machine-2")), status.stdout,
                status.stderr, result.stdout, result.stderr, triggered.stdout, triggered.stderr]  # fmt: skip
        assert not any(secret.split(":", 1)[1] in log for log in logs)
    finally:
        cluster.close()


def run_documented_client(api_url: str, auth_file: Path) -> dict:
    """The operator guide's Python web-app example, run as written but for the server's
    address and where its secret file is."""
    guide = (ROOT / "docs" / "operator-guide.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", guide, flags=re.S)
    (code,) = [b for b in blocks if "upload-outcomes" in b]
    code = code.replace('"http://127.0.0.1:4200/api"', repr(api_url))
    code = code.replace(
        'pathlib.Path("~/.designflow/api-auth")', f"pathlib.Path({str(auth_file)!r})"
    )
    assert repr(api_url) in code and str(auth_file) in code
    namespace: dict = {}
    exec(compile(code, "docs/operator-guide.md", "exec"), namespace)  # noqa: S102
    return namespace


def catalog_designs(catalog_url: str, user: str) -> list[tuple]:
    with psycopg.connect(catalog_url) as conn:
        return conn.execute(
            "SELECT id, original_name, sha256 FROM design_images WHERE user_id = %s", (user,)
        ).fetchall()


def upload_through_web(cluster: Machines, tmp_path: Path, known: Path) -> tuple[dict, str]:
    """`designflow web` with DESIGNFLOW_WEB_RUNS=deployment: a seller's API upload of a new
    design, a copy of a stored one and a corrupt file; each file's outcome and the run."""
    import time

    from designflow.catalog import Catalog
    from tests.sftp_servers import free_port

    port = free_port()
    env = dict(cluster.admin_env("web"), DESIGNFLOW_WEB_RUNS="deployment")
    log = open(tmp_path / "web.log", "wb")  # noqa: SIM115
    web = subprocess.Popen([sys.executable, "-m", "designflow.cli", "web", "--port", str(port)],
                           env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_healthy(f"{base}/health", web, tmp_path / "web.log")
        token = Catalog(cluster.catalog_url).create_token("shop", "web test")[1]
        with httpx.Client(base_url=base, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as http:  # fmt: skip
            sent = http.post(
                "/api/v1/uploads",
                data={"async_mode": "true"},
                files=[("files", ("fresh.png", images.png_bytes(images.design(2400, (400, 480))), "image/png")),
                       ("files", ("copy.png", known.read_bytes(), "image/png")),
                       ("files", ("bad.png", b"\x89PNG\r\n\x1a\n" + os.urandom(100), "image/png"))],
            )  # fmt: skip
            assert sent.status_code == 202, sent.text
            deadline = time.monotonic() + 180
            while True:
                job = http.get(sent.json()["status_url"]).raise_for_status().json()
                if job["status"] in ("completed", "failed"):
                    break
                assert time.monotonic() < deadline, job
                time.sleep(0.5)
        assert job["status"] == "completed" and job["flow_run_id"], job
        return {o["file"]: o["outcome"] for o in job["outcomes"]}, job["flow_run_id"]
    finally:
        import psutil

        children = psutil.Process(web.pid).children(recursive=True)  # its SFTP upload workers
        web.terminate()
        web.wait(60)
        log.close()
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], [p.cmdline()[:3] for p in alive]
