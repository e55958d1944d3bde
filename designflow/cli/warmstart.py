"""Commands that run flows start warm: a process that has already imported Prefect and the
flows forks a copy of itself for each such command, which runs it with the command's
arguments, folder, environment and terminal.

Importing Prefect and the flows took 2.5 s of every `designflow upload` here (of 3.2-3.4 s for
the 4 example designs already stored: `python3 -X importtime -c "import
designflow.flows.upload"`), and is the same work every time. The first command of a home
runs cold and starts the warm process as it ends; the next ones with the same
environment (every PREFECT_* and DESIGNFLOW_* variable, the Python and the installed code)
run in a fork of it. A command whose environment differs runs cold and starts its own.

The command process stays the parent a shell sees: it passes its stdin/stdout/stderr over a
Unix socket (mode 0600, in DESIGNFLOW_HOME), forwards SIGINT, SIGTERM and SIGHUP to the
fork, and exits with the fork's exit code; a fork whose command process is gone is
interrupted as by Ctrl-C (and ended 10 s later). The warm process ends with the local
server (`designflow stop`), after the local server's idle time, or when its code changes.
DESIGNFLOW_WARM_START=0 turns it off.

    python -m designflow.cli.warmstart HOME KEY    (the warm process)
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from designflow.settings import Settings

# The modules a command that runs flows needs: imported once by the warm process.
PRELOAD = ("designflow.cli.upload", "designflow.cli.sweep", "designflow.flows.upload",
           "designflow.flows.sweep", "designflow.flows.publish", "prefect.flow_engine")  # fmt: skip
CLIENT_GONE_GRACE_S = 10.0
LAUNCHER = """import os, sys
if os.fork() == 0:
    os.setsid()
    os.execv(sys.executable, [sys.executable, "-m", "designflow.cli.warmstart", *sys.argv[1:]])
"""
MESSAGE_MAX = 1 << 20


def enabled(settings: Settings, env: Mapping[str, str]) -> bool:
    """Warm start applies to the local server that stays (no Prefect API configured)."""
    return (
        os.name == "posix"
        and settings.warm_start
        and settings.local_server == "stay"
        and not env.get("PREFECT_API_URL")
    )


def environment_key(env: Mapping[str, str]) -> str:
    """What a warm process must share with a command to run it: the settings it imported
    Prefect with, the interpreter, and the code (its files' sizes and times)."""
    digest = hashlib.sha256(sys.executable.encode())
    for name in sorted(env):
        if name.startswith(("PREFECT_", "DESIGNFLOW_")) or name in ("PYTHONPATH", "HOME"):
            digest.update(f"{name}={env[name]}\0".encode())
    for root in _code_roots():
        for path in sorted(root.rglob("*.py")):
            with contextlib.suppress(OSError):
                stat = path.stat()
                digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def _code_roots() -> list[Path]:
    import designflow

    return [Path(p) for p in designflow.__path__] + [
        Path(p) for name in ("flows", "tasks") for p in _package_path(f"designflow.{name}")
    ]


def _package_path(name: str) -> list[str]:
    import importlib.util

    spec = importlib.util.find_spec(name)
    return list(spec.submodule_search_locations or []) if spec else []


def socket_path(home: Path, key: str) -> Path:
    return home / "warm" / f"{key}.sock"


def run_warm(argv: Sequence[str], home: Path) -> int | None:
    """Run this command in a fork of the warm process; None when there is none for this
    environment (one is started for the next command, and this one runs cold)."""
    key = environment_key(os.environ)
    path = socket_path(home, key)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        connection.connect(str(path))
    except OSError:
        connection.close()
        # Started when this command ends: importing beside a first run (which starts the
        # servers) made that run 1.6 s slower (bench.everyday: 13.1 s against 11.5 s).
        atexit.register(_start_warm_process, home, key, dict(os.environ))
        return None
    with connection:
        request = {"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ),
                   "client": os.getpid()}  # fmt: skip
        try:
            socket.send_fds(connection, [json.dumps(request).encode()], [0, 1, 2])
            started = json.loads(connection.recv(MESSAGE_MAX) or b"null")
        except (OSError, ValueError):
            return None  # the warm process went away: cold start
        if not started:
            return None
        return _wait_for(connection, int(started["pid"]))


def _wait_for(connection: socket.socket, pid: int) -> int:
    """Forward the terminal's signals to the fork; its exit code is the command's."""

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        try:
            answer = connection.recv(MESSAGE_MAX)
        except InterruptedError:
            continue
        if not answer:
            sys.stderr.write("designflow: the command ended without an exit code\n")
            return 1
        return int(json.loads(answer)["exit"])


def _start_warm_process(home: Path, key: str, env: dict[str, str]) -> None:
    """In the background, detached from the terminal (its Ctrl-C does not reach it)."""
    folder = home / "warm"
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / f"{key}.starting"
    if _answers(socket_path(home, key)):
        return  # one started while this command ran (it was importing when it began)
    try:  # one starter per environment; a stale marker (a start that died) is retried
        if lock.exists() and time.time() - lock.stat().st_mtime < 120:
            return
        lock.write_text(str(os.getpid()))
    except OSError:
        return
    # The launcher detaches the warm process (double fork) and exits at once: the command's
    # watchdog, which ends the command's own children, never counts it; and the command waits
    # for a bare interpreter, not for one that imported designflow's CLI first.
    with open(folder / "warm.log", "ab") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(home), key],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            close_fds=True,
        )  # fmt: skip
    with contextlib.suppress(subprocess.TimeoutExpired):
        launcher.wait(10)


def _answers(path: Path) -> bool:
    """Whether a warm process serves at `path` (a pid file could name a reused pid)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def serve(home: Path, key: str) -> int:
    """The warm process: import once, then fork a copy per command."""
    folder = home / "warm"
    path = socket_path(home, key)
    original = dict(os.environ)  # what commands send; the key is made from it
    try:
        _prepare_like_a_command()
        for name in PRELOAD:
            __import__(name)
        if environment_key(original) != key:
            print(f"warm start {key}: the code changed while it imported; not serving")
            return 0
        if threading.active_count() != 1:  # a fork copies only the thread that forks
            print(f"warm start {key}: threads after import {threading.enumerate()}")
            return 0
        if _answers(path):
            print(f"warm start {key}: another process serves it", flush=True)
            return 0
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old_mask = os.umask(0o177)
        try:
            listener.bind(str(path))
        finally:
            os.umask(old_mask)
        listener.listen(16)
    finally:
        (folder / f"{key}.starting").unlink(missing_ok=True)
    (folder / f"{key}.pid").write_text(str(os.getpid()))
    print(f"warm start {key}: serving at {path} (pid {os.getpid()})", flush=True)
    warm_pid = os.getpid()
    try:
        _accept_until_idle(listener, home, key, original)
    finally:
        if os.getpid() == warm_pid:
            path.unlink(missing_ok=True)
            (folder / f"{key}.pid").unlink(missing_ok=True)
    return 0


def _prepare_like_a_command() -> None:
    """The environment designflow's main sets up before it imports Prefect."""
    from designflow.cli import prepare_environment

    prepare_environment()


def _accept_until_idle(
    listener: socket.socket, home: Path, key: str, original: dict[str, str]
) -> None:
    from designflow.cli.localserver import state_file
    from designflow.settings import Settings

    settings = Settings.from_env()
    idle_s = settings.local_server_idle_minutes * 60
    server_state = state_file(home)
    started = last = time.monotonic()
    server_seen = False
    listener.settimeout(5.0)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        _reap_forks()
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            if time.monotonic() - last > idle_s:
                print(f"warm start {key}: idle, stopping", flush=True)
                return
            # Started as a first command ended, the server is up; one that is gone (seen
            # before, or not there a minute on: `designflow stop` came first) ends it.
            server_up = server_state.exists()
            server_seen = server_seen or server_up
            gone = not server_up and (server_seen or time.monotonic() - started > 60)
            if gone or not home.exists() or environment_key(original) != key:
                print(f"warm start {key}: local server gone or code changed, stopping", flush=True)
                return
            continue
        last = time.monotonic()
        with connection:
            _start_fork(connection, listener)


def _reap_forks() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _start_fork(connection: socket.socket, listener: socket.socket) -> None:
    if _peer_uid(connection) != os.getuid():
        return  # only this user's commands (the socket is 0600 already)
    try:
        message, fds, _, _ = socket.recv_fds(connection, MESSAGE_MAX, 3)
        request = json.loads(message)
    except (OSError, ValueError):
        return
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return
    sys.stdout.flush()  # nothing of this process's output goes to the command's terminal
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the command's copy: never returns
        listener.close()
        _run_command(connection, request, fds)
    for fd in fds:
        os.close(fd)
    print(f"command of pid {request.get('client')} runs as pid {pid}", flush=True)


def _peer_uid(connection: socket.socket) -> int | None:
    try:
        creds = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return struct.unpack("3i", creds)[1]


def _run_command(connection: socket.socket, request: dict, fds: list[int]) -> None:
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["designflow", *request["argv"]]
        sys.stdout.reconfigure(line_buffering=os.isatty(1))
        _consoles_for_this_terminal()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        _end_with_client(int(request["client"]))
        connection.send(json.dumps({"pid": os.getpid()}).encode())
        from designflow.cli import main

        code = main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - the command's own report says the rest
        sys.stderr.write(f"designflow: {type(exc).__name__}: {exc}\n")
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    _exit_like_a_process(connection, code)


def _consoles_for_this_terminal() -> None:
    """The CLI's console was made for the warm process's log: made again for the command's
    terminal (colours, width)."""
    import importlib

    cli_app = importlib.import_module("designflow.cli.app")  # the module, not its Typer app
    cli_app.err.__init__(stderr=True, highlight=False, soft_wrap=True)  # others hold it


def _exit_like_a_process(connection: socket.socket, code: int) -> None:
    """Threads joined and exit handlers run (Prefect sends its last events and logs there),
    then the exit code to the command process."""
    threading._shutdown()  # type: ignore[attr-defined]  # what the interpreter does at exit
    atexit._run_exitfuncs()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    with contextlib.suppress(OSError):
        connection.send(json.dumps({"exit": code}).encode())
    os._exit(code)


def _end_with_client(client: int) -> None:
    """A fork whose command process is gone (killed) is interrupted like Ctrl-C: its run is
    recorded as interrupted; ended outright if that has not finished 10 s later."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(client, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(CLIENT_GONE_GRACE_S)
        os._exit(130)

    threading.Thread(target=watch, name="designflow-client-watch", daemon=True).start()


def stop_warm_processes(home: Path) -> int:
    """End every warm process of this home (`designflow stop`); how many there were."""
    stopped = 0
    for pid_file in (home / "warm").glob("*.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
            stopped += 1
        pid_file.unlink(missing_ok=True)
    return stopped


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1]), sys.argv[2]))
