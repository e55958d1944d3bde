from __future__ import annotations

import shutil
import subprocess
import sys
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


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def designflow_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as users get it: a wheel built from a copy of the checkout."""
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build-src")
    # Build from a copy: a build in the checkout would leave build/ and egg-info behind.
    source = build / "designflow"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "bench", "tests", "*.egg-info", "build", "__pycache__"))  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True, timeout=300,
    )  # fmt: skip
    (found,) = out.glob("designflow-*.whl")
    return found


def install_in_venv(wheel: Path, venv: Path) -> Path:
    """A fresh venv holding the installed wheel (its dependencies from this interpreter's
    site-packages: no network in tests); returns the venv's `designflow` command."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)  # fmt: skip
    return venv / "bin" / "designflow"
