"""Commands that run flows start warm on the local server: a fork of a process that has
Prefect and the flows imported runs them with the command's folder, environment, terminal
and exit code; `designflow stop` ends it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests import images


def _designflow(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "designflow", *args], env=env, cwd=cwd, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip


def test_a_command_runs_warm_in_its_own_folder_and_environment(tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    folder = work / "designs"
    folder.mkdir(parents=True)
    for i in range(2):
        images.write_png(folder / f"w{i}.png", seed=7700 + i)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DESIGNFLOW_"))}
    env.update(DESIGNFLOW_HOME=str(home), PREFECT_HOME=str(tmp_path / "prefect-home"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false")  # fmt: skip
    try:
        first = _designflow(env, work, "upload", "designs", "--user", "warm", "--json")
        assert first.returncode == 0, first.stderr[-2000:]
        assert len(json.loads(first.stdout)["stored"]) == 2
        # The first command started the warm process for the next ones.
        deadline = time.monotonic() + 120
        while not list((home / "warm").glob("*.sock")) and time.monotonic() < deadline:
            time.sleep(0.5)
        (pid_file,) = (home / "warm").glob("*.pid")
        warm_pid = int(pid_file.read_text())

        # A relative path from the command's own folder, a setting of its own environment.
        client = subprocess.Popen(
            [sys.executable, "-m", "designflow", "upload", "designs", "--user", "warm", "--json"],
            env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        out, err = client.communicate(timeout=300)
        assert client.returncode == 0, err[-2000:]
        again = json.loads(out)
        assert [d["kind"] for d in again["duplicates"]] == ["exact", "exact"]
        log = (home / "warm" / "warm.log").read_text()
        assert f"command of pid {client.pid} runs as pid" in log, log[-2000:]

        # Its exit code and its error, on its own stderr.
        served = (home / "warm" / "warm.log").read_text().count("runs as pid")
        missing = _designflow(env, work, "upload", "nowhere", "--user", "warm")
        assert missing.returncode == 1, missing.stderr[-2000:]
        assert "no such file or folder" in missing.stdout + missing.stderr
        assert (home / "warm" / "warm.log").read_text().count("runs as pid") == served + 1

        # Turned off: the command runs in its own process.
        cold = _designflow({**env, "DESIGNFLOW_WARM_START": "0"}, work, "upload", "designs",
                           "--user", "warm")  # fmt: skip
        assert cold.returncode == 0, cold.stderr[-2000:]
        assert (home / "warm" / "warm.log").read_text().count("runs as pid") == served + 1
    finally:
        _designflow(env, tmp_path, "stop")
        _designflow(env, tmp_path, "db", "stop")
    # `designflow stop` ended the warm process with the server.
    gone = (
        psutil.wait_procs([psutil.Process(warm_pid)], timeout=10)[0]
        if psutil.pid_exists(warm_pid)
        else [True]
    )
    assert gone, f"warm process {warm_pid} still running after `designflow stop`"
