"""designflow as its users get it: a built wheel installed into a fresh venv, used from a
folder outside the checkout. The wheel holds only the `designflow` package (the card's
`flows/`, `tasks/`, `deployments/`, `migrations/` inside it), and the installed command
finds its migrations and example templates as package data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import DesignflowEnv

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(designflow_wheel: Path) -> Path:
    return designflow_wheel


def test_the_wheel_installs_only_the_designflow_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"designflow"}
    for expected in (
        "designflow/flows/upload.py",
        "designflow/tasks/nas.py",
        "designflow/deployments/deploy.py",
        "designflow/migrations/0001_design_images.sql",
        "designflow/examples/templates/tshirt/template.json",
    ):
        assert expected in names


def test_installed_wheel_uploads_from_outside_the_checkout(
    wheel: Path, designflow_env: DesignflowEnv, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    # The dependencies come from this interpreter (no network in tests); designflow itself
    # only from the wheel.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    designs = elsewhere / "designs"
    shutil.copytree(ROOT / "examples" / "designs", designs)
    from prefect.settings import PREFECT_API_URL

    # The session's Prefect server (test_cli.py covers the temporary one).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    located = subprocess.run(
        [str(python), "-c", "import designflow.flows.upload as m; print(m.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert located.stdout.strip().startswith(str(venv))
    command = venv / "bin" / "designflow"
    listed = subprocess.run([str(command), "templates", "list"], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "tshirt" in listed.stdout and "poster" in listed.stdout
    done = subprocess.run(
        [str(command), "upload", "designs", "--user", "demo", "--json"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["counts"]["stored"] == len(list(designs.iterdir()))
    assert all((designflow_env.nas_root / s["nas_path"]).is_file() for s in report["stored"])
