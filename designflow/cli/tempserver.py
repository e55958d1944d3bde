"""Prefect's temporary server for one command, out of reach of the terminal's Ctrl-C.

A command that runs flows without a configured server starts Prefect's temporary server as
its child. Ctrl-C at a terminal signals the whole foreground process group, so the server
died with the command's first Ctrl-C; the command then waited on it (73.8 s from SIGINT to
exit on the first upload of a fresh home, exit 1 and two tracebacks; more than 2.5 minutes
in an earlier report). Started in a session of its own, the server keeps answering while
the command records its run as interrupted, and is stopped by the command at exit (or by
the command's watchdog if the command is killed), as before.
"""

from __future__ import annotations

import os
import subprocess
import sys

import prefect
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import get_current_settings


class DetachedTemporaryServer(SubprocessASGIServer):
    """Prefect's SubprocessASGIServer with the same uvicorn command, in a new session."""

    def _run_uvicorn_command(self) -> subprocess.Popen:
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **get_current_settings().to_environment_variables(exclude_unset=True),
        }
        command = [
            sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent),
            "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
            "--port", str(self.port), "--log-level", "error", "--lifespan", "on",
        ]  # fmt: skip
        return subprocess.Popen(command, env=env, start_new_session=True)


def use_detached_temporary_server() -> None:
    """The server Prefect's clients start on first use (the instance registered without a
    port, as Prefect's own test utilities register theirs) is the detached one."""
    if None not in SubprocessASGIServer._instances:
        DetachedTemporaryServer()
