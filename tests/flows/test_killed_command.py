"""`designflow upload` SIGKILLed alone (its pid, not its process group): its children,
Prefect's temporary server and the SFTP upload worker processes among them, used to live on
for minutes. Every one must be gone within 10 s of the command's death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests import images
from tests.conftest import DesignflowEnv
from tests.sftp_servers import start_sftp_server


def test_children_of_a_killed_upload_exit_within_ten_seconds(
    designflow_env: DesignflowEnv, tmp_path: Path
) -> None:
    server = start_sftp_server(tmp_path / "sftp")
    folder = designflow_env.inputs / "kill-me"
    folder.mkdir()
    for i in range(24):
        images.noisy_png(folder / f"n{i}.png", seed=4000 + i, size=(800, 800))
    # No PREFECT_API_URL and the temporary server asked for: it is the command's child.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(server.env(), PREFECT_HOME=str(tmp_path / "prefect-home"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DESIGNFLOW_BATCH_MAX_IMAGES="4",
               DESIGNFLOW_LOCAL_SERVER="temporary")  # fmt: skip
    command = subprocess.Popen(
        [sys.executable, "-m", "designflow", "upload", str(folder), "--user", "kid", "--json"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    parent = psutil.Process(command.pid)
    try:
        # Wait until the uploads are under way: worker processes exist and files arrive.
        deadline = time.monotonic() + 180
        children: list[psutil.Process] = []
        while time.monotonic() < deadline and command.poll() is None:
            children = parent.children(recursive=True)
            workers = [c for c in children if "multiprocessing" in " ".join(_cmdline(c))]
            arrived = (
                list((server.root / "users" / "kid").rglob("*.png"))
                if (server.root / "users").exists()
                else []
            )
            if len(workers) >= 2 and arrived:
                break
            time.sleep(0.1)
        assert command.poll() is None, "the upload ended before it could be killed"
        kinds = {" ".join(_cmdline(c)) for c in children}
        assert any("uvicorn" in k or "prefect" in k for k in kinds), kinds  # the temporary server
        os.kill(command.pid, signal.SIGKILL)  # the command alone, not its group
        command.wait(10)
        killed_at = time.monotonic()
        _, alive = psutil.wait_procs(children, timeout=10)
        waited = time.monotonic() - killed_at
        assert alive == [], (
            f"still running {waited:.1f} s after the kill: {[(p.pid, _cmdline(p)) for p in alive]}"
        )
        print(f"{len(children)} children gone {waited:.1f} s after the kill")
    finally:
        if command.poll() is None:
            command.kill()
        for child in parent.children(recursive=True) if parent.is_running() else []:
            child.kill()
        server.stop()
        # The temporary server's database (the embedded PostgreSQL) stays between commands.
        subprocess.run([sys.executable, "-m", "designflow", "db", "stop"], env=env, timeout=120)


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []
