"""Background mockup runs: deployments, a real process worker, priorities, status.

One work pool, made as the README says (`designflow deploy`, no limit), and one
`designflow worker` process with its default limit serve the whole module;
the worker inherits this module's catalog and NAS through its environment."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from designflow.catalog import Catalog
from tests import images
from tests.conftest import _url_for_database


@pytest.fixture(scope="module")
def background(prefect_harness, pg_admin_url: str, tmp_path_factory):
    from prefect.settings import PREFECT_API_URL

    name = f"df_bg_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    root = tmp_path_factory.mktemp("bg")
    env = {
        "DESIGNFLOW_HOME": str(root / "home"),
        "DESIGNFLOW_DATABASE_URL": _url_for_database(pg_admin_url, name),
        "DESIGNFLOW_NAS_URL": f"file://{root / 'nas'}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    pool = f"pool-{uuid.uuid4().hex[:6]}"
    from designflow.deployments.deploy import deploy_all

    deploy_all(pool)
    # Runs the worker takes came through the API: they may read this test's folder only.
    worker_env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), PYTHONUNBUFFERED="1",
                      DESIGNFLOW_SOURCE_ROOTS=str(root))  # fmt: skip
    log = open(root / "worker.log", "wb")  # noqa: SIM115
    state = {
        "pool": pool,
        "root": root,
        "env": env,
        "worker": None,
        "log": log,
        "worker_env": worker_env,
    }
    yield state
    if state["worker"] is not None:
        state["worker"].terminate()
        state["worker"].wait(30)
    log.close()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def start_worker(background) -> None:
    if background["worker"] is None:
        background["worker"] = subprocess.Popen(
            [sys.executable, "-m", "designflow.cli", "worker", "--pool", background["pool"], "--poll-seconds", "1",
             "--name", "worker-a"],
            env=background["worker_env"], stdout=background["log"], stderr=subprocess.STDOUT,
        )  # fmt: skip


def pause_tree(worker: subprocess.Popen | None, pause: bool) -> None:
    """Freeze (or thaw) `designflow worker` and Prefect's worker under it: the command
    supervises Prefect's worker in its own session, so a signal to it alone does not."""
    import signal

    import psutil

    if worker is None:
        return
    tree = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGSTOP if pause else signal.SIGCONT)


def wait_final(run_ids: list[str], timeout: float = 240, workers: tuple = ()) -> dict:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            for worker in workers:
                assert worker.poll() is None, f"worker exited with {worker.returncode}"
            runs = {r: client.read_flow_run(uuid.UUID(r)) for r in run_ids}
            if all(run.state and run.state.is_final() for run in runs.values()):
                return runs
            if time.monotonic() > deadline:
                raise AssertionError({r: run.state.name for r, run in runs.items()})
            time.sleep(0.5)


def stored_design(background, seed: int) -> int:
    from designflow.flows.upload import upload_designs

    path = images.write_png(Path(background["root"]) / f"d{seed}.png", seed=seed)
    return upload_designs(paths=[str(path)], user_id="bg")["stored"][0]["design_id"]


def test_backlog_runs_in_priority_order(background) -> None:
    """The issue's backlog: 3 low, then 3 normal, then 3 high queued while no worker runs;
    then one worker as the README starts it. No low run starts before every high run has
    finished, and normal runs start before low ones."""
    from designflow.tasks.mockups import trigger_mockup_run

    design = stored_design(background, 800)
    queued = {
        priority: [trigger_mockup_run([design], ["poster"], priority, None) for _ in range(3)]
        for priority in ("low", "normal", "high")
    }
    start_worker(background)
    runs = wait_final(sum(queued.values(), []), workers=(background["worker"],))
    assert all(run.state.is_completed() for run in runs.values()), {
        r: x.state.message for r, x in runs.items()
    }
    started = {p: [runs[r].start_time for r in ids] for p, ids in queued.items()}
    ended = {p: [runs[r].end_time for r in ids] for p, ids in queued.items()}
    order = sorted((runs[r].start_time, p) for p, ids in queued.items() for r in ids)
    assert min(started["low"]) >= max(ended["high"]), order
    assert max(started["normal"]) <= min(started["low"]), order
    assert all(runs[r].work_queue_name == p for p, ids in queued.items() for r in ids)


def test_async_upload_returns_run_id_and_run_completes(background, capsys) -> None:
    from designflow.cli import main
    from designflow.flows.upload import upload_designs

    start_worker(background)
    path = images.write_png(Path(background["root"]) / "async.png", seed=801)
    from prefect.client.orchestration import get_client

    report = upload_designs(
        paths=[str(path)], user_id="bg", mockup_templates=["tshirt", "poster"], priority="high"
    )
    (run,) = report["mockup_runs"]
    assert report["mockups"] == [] and run["priority"] == "high"
    with get_client(sync_client=True) as client:  # the upload returned without waiting for it
        assert not client.read_flow_run(uuid.UUID(run["flow_run_id"])).state.is_final()
    runs = wait_final([run["flow_run_id"]])
    finished = runs[run["flow_run_id"]]
    assert finished.state.is_completed(), finished.state.message
    assert finished.end_time is not None
    design_id = report["stored"][0]["design_id"]
    assert {m["template_id"] for m in Catalog(os.environ["DESIGNFLOW_DATABASE_URL"]).mockups_of([design_id])} == {
        "tshirt", "poster"
    }  # fmt: skip

    assert main(["status", run["flow_run_id"]]) == 0
    out = capsys.readouterr().out
    assert "Completed" in out and "render mockups" in out


def test_api_triggered_upload_over_http(background) -> None:
    """What the seller's web app does: create an upload-designs run over REST, get its id at
    once, then read its state until it completes."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    start_worker(background)
    api = PREFECT_API_URL.value()
    path = images.write_png(Path(background["root"]) / "api.png", seed=802)
    with httpx.Client(base_url=api, timeout=10) as http:
        deployment = (
            http.get("/deployments/name/upload-designs/upload-designs").raise_for_status().json()
        )
        body = {"parameters": {"paths": [str(path)], "user_id": "api-user"},
                "work_queue_name": "high", "idempotency_key": "api-test-1"}  # fmt: skip
        # As a web app should (and designflow's own client does): a busy SQLite server answers
        # 503 now and then (CI saw it here); retried, the idempotency key returns one run.
        for attempt in range(6):
            answer = http.post(f"/deployments/{deployment['id']}/create_flow_run", json=body)
            if answer.status_code != 503:
                break
            time.sleep(0.5 * 2**attempt)
        created = answer.raise_for_status().json()
        run_id = created["id"]
        assert created["state"]["type"] == "SCHEDULED"
        deadline = time.monotonic() + 240
        while True:
            run = http.get(f"/flow_runs/{run_id}").raise_for_status().json()
            if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            assert time.monotonic() < deadline, run["state"]
            time.sleep(0.5)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert Catalog(os.environ["DESIGNFLOW_DATABASE_URL"]).count_designs("api-user") == 1

    # The same through `designflow trigger`: twice with one idempotency key, one run.
    other = images.write_png(Path(background["root"]) / "cli-api.png", seed=805)
    command = [sys.executable, "-m", "designflow.cli", "trigger", "upload-designs",
               "--param", f"paths={json.dumps([str(other)])}",
               "--param", "user_id=api-user", "--queue", "high", "--idempotency-key", "cli-api-1", "--json"]  # fmt: skip
    made = [
        json.loads(
            subprocess.run(
                command,
                env=background["worker_env"],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            ).stdout
        )  # fmt: skip
        for _ in range(2)
    ]
    assert made[0]["flow_run_id"] == made[1]["flow_run_id"] and made[0]["queue"] == "high"
    finished = wait_final([made[0]["flow_run_id"]])[made[0]["flow_run_id"]]
    assert finished.state.is_completed(), finished.state.message
    assert Catalog(os.environ["DESIGNFLOW_DATABASE_URL"]).count_designs("api-user") == 2


def test_two_workers_take_runs_from_one_pool(background) -> None:
    from designflow.tasks.mockups import trigger_mockup_run

    start_worker(background)  # worker-a serves every queue
    second_log = open(Path(background["root"]) / "worker-b.log", "wb")  # noqa: SIM115
    worker_b = subprocess.Popen(
        [sys.executable, "-m", "designflow.cli", "worker", "--pool", background["pool"], "--poll-seconds", "1",
         "--work-queue", "low", "--name", "worker-b"],
        env=background["worker_env"], stdout=second_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        design = stored_design(background, 803)
        # worker-a was started with all queues; pause it so the low queue goes to worker-b.
        pause_tree(background["worker"], True)
        low = [trigger_mockup_run([design], ["poster"], "low", None)]
        low_runs = wait_final(low)
        pause_tree(background["worker"], False)
        high = [trigger_mockup_run([design], ["tshirt"], "high", None)]
        high_runs = wait_final(high)
        states = {r: (x.state.name, x.state.message) for r, x in {**low_runs, **high_runs}.items()}
        assert all(name == "Completed" for name, _ in states.values()), states
    finally:
        pause_tree(background["worker"], False)
        worker_b.terminate()
        worker_b.wait(30)
        second_log.close()
    log_b = (Path(background["root"]) / "worker-b.log").read_text(errors="replace")
    log_a = (Path(background["root"]) / "worker.log").read_text(errors="replace")
    assert all(r in log_b for r in low), log_b[-2000:]  # worker-b ran the low-queue runs
    assert all(r in log_a for r in high), log_a[-2000:]  # worker-a ran the others


def test_background_mockup_run_publishes_the_etsy_listing(background) -> None:
    """The async path end to end: upload with a listing manifest -> background mockup run on
    the worker -> draft listing with the mockups on the local Etsy-like server."""
    from designflow.catalog.listings import ListingCatalog
    from designflow.flows.upload import upload_designs
    from designflow.orchestration.blocks import EtsyShopBlock
    from designflow.testing.etsy_stub import EtsyStub

    start_worker(background)
    root = Path(background["root"])
    path = images.write_png(root / "listed.png", seed=802)
    manifest = root / "listings.csv"
    manifest.write_text("file,title,description,price,taxonomy_id,quantity\n"
                        "listed.png,Listed in the background,D,21,482,2\n")  # fmt: skip
    with EtsyStub(per_second=10) as stub:
        tokens = stub.authorize()
        # The worker reads the default block name (it has no DESIGNFLOW_ETSY_BLOCK).
        EtsyShopBlock(
            base_url=stub.url, keystring=stub.keystring, shared_secret=stub.shared_secret,
            shop_id=str(stub.shop_id), refresh_token=tokens["refresh_token"],
            access_token=tokens["access_token"], access_expires_at=time.time() + 3600,
        ).save("designflow-etsy", overwrite=True)  # fmt: skip
        try:
            report = upload_designs(
                paths=[str(path)], user_id="bg-etsy", mockup_templates=["poster", "tshirt"],
                priority="high", listings_manifest=str(manifest),
            )  # fmt: skip
            (run,) = report["mockup_runs"]
            finished = wait_final([run["flow_run_id"]], workers=(background["worker"],))[
                run["flow_run_id"]
            ]
            assert finished.state.is_completed(), finished.state.message
            (listing,) = stub.listings.values()
            assert listing["title"] == "Listed in the background" and listing["state"] == "draft"
            assert sorted(i["rank"] for i in stub.images[listing["listing_id"]]) == [1, 2]
            design_id = report["stored"][0]["design_id"]
            store = ListingCatalog(Catalog(os.environ["DESIGNFLOW_DATABASE_URL"]))
            record = store.listing(design_id, str(stub.shop_id))
            assert record.listing_id == listing["listing_id"] and record.status == "complete"
        finally:
            EtsyShopBlock.delete("designflow-etsy")


def test_run_form_has_titles_descriptions_and_whole_descriptions(background) -> None:
    """What the UI's run form receives: GET /deployments/name/... for each deployment."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    from designflow.deployments.deploy import DEPLOYMENTS

    with httpx.Client(base_url=PREFECT_API_URL.value(), timeout=10) as http:
        for spec in DEPLOYMENTS:
            flow_name = spec.flow.split(":")[1].replace("_", "-")
            deployment = (
                http.get(f"/deployments/name/{flow_name}/{spec.name}").raise_for_status().json()
            )
            first_line = deployment["description"].split("\n")[0]
            assert first_line.endswith("."), (spec.name, first_line)  # a whole sentence
            assert "Args:" not in deployment["description"]
            properties = deployment["parameter_openapi_schema"]["properties"]
            for name, schema in properties.items():
                assert schema["title"] != name and "_" not in schema["title"], (spec.name, name)
                assert len(schema.get("description") or "") > 20, (spec.name, name)
                assert "\n" not in schema["description"]
            if "user_id" in properties:
                user_id = properties["user_id"]
                rule = next((o for o in user_id.get("anyOf", []) if "pattern" in o), user_id)
                assert rule["pattern"] and rule["maxLength"] == 128
            # Plain numbers with their real defaults (no "None" switch), templates as choices.
            if "batch_max_mb" in properties:
                assert properties["batch_max_mb"]["type"] == "number"
                assert properties["batch_max_mb"]["default"] == 200
                assert properties["batch_max_images"]["type"] == "integer"
                assert "anyOf" not in properties["batch_max_images"]
            for name in ("mockup_templates", "template_ids"):
                if name in properties:
                    assert {"poster", "tshirt"} <= set(properties[name]["items"]["enum"])
        # The deployment takes what the form sends: a run with the form's defaults.
        upload = http.get("/deployments/name/upload-designs/upload-designs").json()
        form = {name: schema["default"] for name, schema in
                upload["parameter_openapi_schema"]["properties"].items() if "default" in schema}  # fmt: skip
        made = http.post(f"/deployments/{upload['id']}/create_flow_run",
                         json={"parameters": {**form, "paths": ["/nowhere"], "user_id": "form"},
                               "state": {"type": "SCHEDULED"}})  # fmt: skip
        assert made.status_code == 201, made.text
        http.post(f"/flow_runs/{made.json()['id']}/set_state",
                  json={"state": {"type": "CANCELLED"}, "force": True})  # fmt: skip


def test_worker_stops_on_sigterm_five_times_in_a_row(background) -> None:
    """`designflow worker` stops within 30 s of SIGTERM, starts no run after it, leaves no
    process behind, and the run it was executing ends in a final state (not Running). (Five
    workers stopped at once instead overloaded the test server's SQLite.)"""
    import signal

    import psutil
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    from designflow.tasks.mockups import trigger_mockup_run

    design = stored_design(background, 804)
    if background["worker"] is not None:  # the module's worker must not take these runs
        pause_tree(background["worker"], True)
    env = dict(background["worker_env"], DESIGNFLOW_WORKER_STOP_GRACE_SECONDS="1")
    late: list[str] = []
    try:
        with get_client(sync_client=True) as client:
            for attempt in range(5):
                run = uuid.UUID(trigger_mockup_run([design], ["poster"], "low", None))
                worker = subprocess.Popen(
                    [sys.executable, "-m", "designflow.cli", "worker", "--pool", background["pool"],
                     "--poll-seconds", "1", "--name", f"stopping-{attempt}"],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                deadline = time.monotonic() + 120
                while not client.read_flow_run(run).state.is_running():
                    assert worker.poll() is None and time.monotonic() < deadline, attempt
                    time.sleep(0.2)
                tree = psutil.Process(worker.pid).children(recursive=True)
                signalled = time.monotonic()
                worker.send_signal(signal.SIGTERM)
                late.append(trigger_mockup_run([design], ["poster"], "low", None))
                assert worker.wait(30) == 0, attempt
                assert time.monotonic() - signalled < 30
                # The run's process and Prefect's worker are gone; the watchdog follows its
                # parent within a poll.
                _, alive = psutil.wait_procs(tree, timeout=10)
                assert not alive, (attempt, [p.cmdline() for p in alive])
                state = client.read_flow_run(run).state
                assert state.is_final(), (attempt, state.name)
                assert client.read_flow_run(uuid.UUID(late[-1])).state.is_scheduled(), attempt
                # The next worker must not take this one: cancel it now.
                client.set_flow_run_state(uuid.UUID(late[-1]), Cancelled(), force=True)
    finally:
        with get_client(sync_client=True) as client:
            for run_id in late:
                client.set_flow_run_state(uuid.UUID(run_id), Cancelled(), force=True)
        if background["worker"] is not None:
            pause_tree(background["worker"], False)
