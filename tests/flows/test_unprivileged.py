"""The unreadable file as a seller's machine meets it: the CI runs as root, whom file
permissions do not stop, so the upload runs here as `nobody` (the test drops privileges for
the child process) and must reject the file, naming it and the reason, while the rest of the
batch is stored."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests import images
from tests.conftest import DesignflowEnv
from tests.relay import TcpToUnixRelay

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def nobody_dir():
    """A folder `nobody` can use (pytest's tmp_path is root's, mode 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="designflow-nobody-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_unreadable_file_rejected_when_not_root(designflow_env: DesignflowEnv, nobody_dir) -> None:
    from prefect.settings import PREFECT_API_URL

    if os.geteuid() != 0:  # already unprivileged: the corpus test covers it as it is
        user = None
    else:
        user = pwd.getpwnam("nobody")
    home = nobody_dir / "home"
    nas = nobody_dir / "nas"
    folder = nobody_dir / "in"
    for d in (home, nas, folder):
        d.mkdir()
        if user:
            os.chown(d, user.pw_uid, user.pw_gid)
    good = images.write_png(folder / "good.png", seed=2990)
    locked = images.write_png(folder / "locked.png", seed=2991)
    locked.chmod(0)  # owned by root: nobody may not read it
    good.chmod(0o644)
    # Over TCP: the embedded server's socket sits in root's private temporary folder.
    params, relay = conninfo_to_dict(designflow_env.database_url), None
    if params.get("host", "/").startswith("/"):
        relay = TcpToUnixRelay(f"{params['host']}/.s.PGSQL.{params.get('port', 5432)}")
        params |= {"host": "127.0.0.1", "port": str(relay.port)}
    database_url = make_conninfo(**params)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DESIGNFLOW_", "PREFECT_"))}
    env.update(
        HOME=str(home), PREFECT_HOME=str(home / ".prefect"), PYTHONPATH=str(ROOT),
        PREFECT_API_URL=PREFECT_API_URL.value(), DESIGNFLOW_HOME=str(home),
        DESIGNFLOW_DATABASE_URL=database_url, DESIGNFLOW_NAS_URL=f"file://{nas}",
    )  # fmt: skip
    try:
        run = subprocess.run(
        [sys.executable, "-m", "designflow.cli", "upload", str(folder), "--user", "unpriv", "--json"],
        cwd=nobody_dir, env=env, capture_output=True, text=True, timeout=300,
        user=user.pw_uid if user else None, group=user.pw_gid if user else None,
        )  # fmt: skip
    finally:
        if relay:
            relay.close()
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert [s["file"] for s in report["stored"]] == [str(good)]
    [rejected] = report["rejected"]
    assert rejected["file"] == str(locked)
    assert "permission denied" in rejected["reason"]
