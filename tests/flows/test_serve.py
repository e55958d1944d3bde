"""`designflow serve`: the deployments with their schedule in one process that runs them,
stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests import images

CRON = "*/7 * * * *"  # no other test uses it: the sweep deployment seen is serve's


def _served_sweep(client):
    """The sweep deployment once serve has registered it: with serve's own schedule. serve
    applies the deployments in order and the sweep last, so the others are serve's too."""
    from prefect.exceptions import ObjectNotFound

    try:
        deployment = client.read_deployment_by_name("sweep-inbox/sweep-inbox")
    except ObjectNotFound:
        return None
    if not deployment.schedules or deployment.schedules[0].schedule.cron != CRON:
        return None  # still the one `designflow deploy` (or an earlier serve) made
    return deployment


def test_serve_registers_schedules_runs_a_flow_and_stops(designflow_env, tmp_path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    design = images.write_png(designflow_env.inputs / "served.png", seed=4242)
    # Served deployments are started through the API: they read only the allowed folders.
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(),
               DESIGNFLOW_SOURCE_ROOTS=str(designflow_env.inputs))  # fmt: skip
    log_path = tmp_path / "serve.log"
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "designflow.cli", "serve", "--inbox", str(tmp_path / "inbox"), "--cron", CRON],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        with get_client(sync_client=True) as client:
            while not (sweep := _served_sweep(client)):
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "serve did not register its deployments"
                time.sleep(0.5)
            assert sweep.parameters["inbox"] == str(tmp_path / "inbox")
            # One sweep at a time: Prefect keeps a deployment's limit as a global limit.
            limit = sweep.global_concurrency_limit
            assert (limit.limit if limit else sweep.concurrency_limit) == 1
            # serve runs what is triggered (no worker runs in this test session any more).
            upload = client.read_deployment_by_name("upload-designs/upload-designs")
            run = client.create_flow_run_from_deployment(
                upload.id, parameters={"paths": [str(design), "/etc/passwd"], "user_id": "served"}
            )
            while not (state := client.read_flow_run(run.id).state).is_final():
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline + 120, f"served run stuck in {state.name}"
                time.sleep(0.5)
            assert state.is_completed(), state.message
            report = state.result(raise_on_failure=False)
            assert [os.path.basename(s["file"]) for s in report["stored"]] == ["served.png"]
            assert report["rejected"] == [
                {"file": "/etc/passwd", "reason": "not under an allowed source folder"}
            ]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert "stopped" in log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
