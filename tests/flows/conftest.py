from __future__ import annotations

from pathlib import Path

import pytest

from tests.sftp_servers import start_sftp_server


@pytest.fixture(autouse=True)
def _harness(prefect_harness):
    """Every flow test runs against the session's Prefect test server."""
    yield


@pytest.fixture
def sftp_env(designflow_env, tmp_path: Path, monkeypatch):
    """designflow_env with the NAS on a real SFTP server on 127.0.0.1 (OpenSSH's sshd)."""
    server = start_sftp_server(tmp_path / "sftp")
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    yield designflow_env, server
    server.stop()
