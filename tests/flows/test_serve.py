"""`designflow serve`: the deployments with their schedule in one process, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def test_serve_registers_schedules_and_stops_cleanly(designflow_env, tmp_path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "designflow.cli", "serve", "--inbox", str(tmp_path / "inbox"), "--cron", "*/7 * * * *"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        deployment = None
        with get_client(sync_client=True) as client:
            # `designflow deploy` may have made the same deployment earlier: wait for serve's.
            while (
                deployment is None
                or not deployment.schedules
                or deployment.schedules[0].schedule.cron != "*/7 * * * *"
            ):
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "serve did not register its deployments"
                try:
                    deployment = client.read_deployment_by_name("sweep-inbox/sweep-inbox")
                except ObjectNotFound:
                    pass
                time.sleep(0.5)
            assert client.read_deployment_by_name("upload-designs/upload-designs")
        assert deployment.schedules[0].schedule.cron == "*/7 * * * *"
        assert deployment.parameters["inbox"] == str(tmp_path / "inbox")
        assert deployment.concurrency_limit == 1 or deployment.global_concurrency_limit is not None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert "stopped" in (tmp_path / "serve.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
