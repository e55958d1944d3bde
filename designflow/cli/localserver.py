"""A local Prefect server that stays between commands: the default when no PREFECT_API_URL
is configured (DESIGNFLOW_LOCAL_SERVER=stay).

Prefect's temporary server started with every command (10-20 s of a 4-file upload on this
kind of machine) and took the command's runs with it when it stopped: the Prefect UI of a
default setup never showed any history. This server is started by the first command that
needs one, in a session of its own (out of reach of the terminal's Ctrl-C and of the
command's watchdog), with its database in the embedded PostgreSQL (database 'prefect';
`designflow db stop` stops this server first) or, with DESIGNFLOW_TEMPORARY_SERVER_DB=sqlite,
under DESIGNFLOW_HOME/prefect-server. Later commands find it through its state file. A
keeper process owns it: it stops the server after DESIGNFLOW_LOCAL_SERVER_IDLE_MINUTES
without a new command or a run in progress, when it is asked to (`designflow stop`), and
ends with it. Starting happens under a file lock, like
the embedded PostgreSQL's: a second command waits for the first one's server instead of
starting another.

    python -m designflow.cli.localserver --home DIR --port N --idle-seconds S   (the keeper)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from designflow.settings import Settings

STATE = "state.json"
LAST_USED = "last-used"
# Runs in these states keep the server up whatever the idle time.
BUSY_STATES = ["RUNNING", "PENDING", "CANCELLING"]


class LocalServerError(RuntimeError):
    """The local server did not start (the message says why and where its log is)."""


def server_home(settings: Settings) -> Path:
    return settings.home / "prefect-server"


def state_file(home: Path) -> Path:
    """Where the local server of DESIGNFLOW_HOME `home` says it runs (gone when it stops)."""
    return home / "prefect-server" / STATE


def running_server(settings: Settings, patience_s: float = 20.0) -> str | None:
    """The API URL of this home's local server if it is up and answering, else None. While
    its keeper lives, a slow answer is waited for (a server busy with a crashed run's states
    took more than the 2 s of one health check): a second server is never started beside it."""
    state = _read_state(server_home(settings))
    if state is None or not _alive(int(state["keeper"])):
        return None
    deadline = time.monotonic() + patience_s
    while True:
        if _healthy(state["url"]):
            return state["url"]
        if time.monotonic() > deadline or not _alive(int(state["keeper"])):
            return None
        time.sleep(0.5)


def ensure_local_server(settings: Settings, timeout_s: float = 180.0) -> tuple[str, bool]:
    """This home's local server's API URL, started if it is not running; and whether this
    call started it. Marks the server as used now (its idle time starts again)."""
    home = server_home(settings)
    with _start_lock(home):
        url = running_server(settings)
        started = url is None
        if url is None:
            url = _start(settings, home, timeout_s)
        (home / LAST_USED).touch()
        return url, started


def stop_local_server(settings: Settings, timeout_s: float = 30.0) -> str | None:
    """Stop this home's local server; returns its URL if one was running."""
    home = server_home(settings)
    with _start_lock(home):
        state = _read_state(home)
        if state is None:
            return None
        for pid in (int(state["keeper"]), int(state.get("server") or 0)):
            if pid and psutil.pid_exists(pid):
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).terminate()
        deadline = time.monotonic() + timeout_s
        pids = [int(state["keeper"]), int(state.get("server") or 0)]
        while any(p and _alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in pids:  # still there after the grace: ended
            if pid and _alive(pid):
                _end_tree(pid, 0)
        (home / STATE).unlink(missing_ok=True)
        from designflow.cli.warmstart import stop_warm_processes

        stop_warm_processes(settings.home)
        return str(state["url"])


def _start(settings: Settings, home: Path, timeout_s: float) -> str:
    home.mkdir(parents=True, exist_ok=True)
    (home / STATE).unlink(missing_ok=True)
    port = _free_port()
    idle_s = settings.local_server_idle_minutes * 60
    log = open(home / "server.log", "ab")  # noqa: SIM115 (the keeper writes to it)
    # The keeper detaches itself (double fork): the command's child exits at once, so the
    # command's watchdog never counts the server among the command's processes.
    launcher = subprocess.Popen(
        [sys.executable, "-m", "designflow.cli.localserver", "--home", str(home),
         "--port", str(port), "--idle-seconds", str(idle_s)],
        env=_server_env(settings, home), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        start_new_session=True, close_fds=True,
    )  # fmt: skip
    launcher.wait(30)
    log.close()
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = _read_state(home)
        if state is not None and not psutil.pid_exists(int(state["keeper"])):
            break
        if state is not None and _healthy(url):
            return url
        time.sleep(0.3)
    raise LocalServerError(
        f"the local Prefect server did not start within {timeout_s:.0f} s; its log: "
        f"{home / 'server.log'}"
    )


def _server_env(settings: Settings, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_API_HOST="127.0.0.1")  # fmt: skip
    # A command's settings for its own process (heartbeats, the temporary server's) are
    # not the server's.
    for name in [k for k in env if k.startswith("PREFECT__")]:
        del env[name]
    if settings.temporary_server_db == "postgresql":
        from designflow.catalog.embedded import embedded_database_url
        from designflow.cli.server import asyncpg_url

        url = embedded_database_url(settings.home, "prefect")
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = asyncpg_url(url)
    return env


def _start_lock(home: Path):
    from designflow.catalog.embedded import exclusive_file_lock

    return exclusive_file_lock(home / "start.lock")


def _read_state(home: Path) -> dict | None:
    try:
        return json.loads((home / STATE).read_text())
    except (OSError, ValueError):
        return None


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _end_tree(pid: int, grace_s: float) -> None:
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    for process in tree:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(tree, timeout=grace_s)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()


# -- the keeper ----------------------------------------------------------------------------


def _busy(url: str) -> bool:
    """Runs in progress on the server (they keep it up however long they take)."""
    import httpx

    try:
        answer = httpx.post(
            f"{url}/flow_runs/count",
            json={"flow_runs": {"state": {"type": {"any_": BUSY_STATES}}}},
            timeout=10,
        )
        return answer.status_code != 200 or int(answer.json()) > 0
    except (httpx.HTTPError, ValueError):
        return True  # unsure: stay


def keep(home: Path, port: int, idle_s: float) -> int:
    """Run the server until it is idle for `idle_s`, asked to stop, or gone."""
    url = f"http://127.0.0.1:{port}/api"
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    state = {"keeper": os.getpid(), "server": server.pid, "url": url, "port": port}
    (home / STATE).write_text(json.dumps(state))
    (home / LAST_USED).touch()
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping and server.poll() is None:
            time.sleep(1.0)
            if time.time() - (home / LAST_USED).stat().st_mtime < idle_s:
                continue
            if not _busy(url):
                print(f"designflow: the local Prefect server was idle {idle_s:.0f} s: stopping")
                break
            (home / LAST_USED).touch()  # a run in progress: look again after another wait
    finally:
        _end_tree(server.pid, 20)
        current = _read_state(home)
        if current is not None and current.get("keeper") == os.getpid():
            (home / STATE).unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="designflow.cli.localserver")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--idle-seconds", type=float, required=True)
    args = parser.parse_args(argv)
    if os.fork() > 0:  # the launcher returns at once; the keeper lives on in its session
        os._exit(0)
    os.setsid()
    return keep(args.home, args.port, args.idle_seconds)


if __name__ == "__main__":
    sys.exit(main())
