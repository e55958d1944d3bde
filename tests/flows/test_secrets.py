"""Secrets stay secret: the NAS key passphrase never reaches logs, reports, artifacts or errors."""

from __future__ import annotations

import json
import logging
import subprocess
import uuid
from pathlib import Path

import pytest

from designflow.settings import Settings
from flows.upload import UploadIncomplete, upload_designs
from tests import images
from tests.conftest import DesignflowEnv
from tests.sftp_servers import start_sftp_server

PASSPHRASE = "s3cret-Passphrase-" + uuid.uuid4().hex[:8]


@pytest.fixture
def locked_key_server(designflow_env: DesignflowEnv, tmp_path: Path, monkeypatch):
    server = start_sftp_server(tmp_path / "sftp")
    # Re-encrypt the client key with a passphrase (OpenSSH format, bcrypt KDF).
    subprocess.run(["ssh-keygen", "-q", "-p", "-N", PASSPHRASE, "-f", server.key_file], check=True,
                   capture_output=True)  # fmt: skip
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DESIGNFLOW_NAS_UPLOAD_PROCESSES", "0")
    yield server
    server.stop()


def _artifact_text(run_id: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(run_id)])
            )
        )
    return json.dumps([a.data for a in artifacts], default=str)


def test_passphrase_never_leaks(
    designflow_env: DesignflowEnv, locked_key_server, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    path = images.write_png(designflow_env.inputs / "s.png", seed=1500)

    monkeypatch.setenv("DESIGNFLOW_NAS_KEY_PASSPHRASE", PASSPHRASE)
    assert PASSPHRASE not in repr(Settings.from_env())
    report = upload_designs(paths=[str(path)], user_id="secret-user")
    assert len(report["stored"]) == 1  # the key really was unlocked with it
    seen = [json.dumps(report), _artifact_text(report["flow_run_id"]), caplog.text]

    monkeypatch.setenv("DESIGNFLOW_NAS_KEY_PASSPHRASE", PASSPHRASE + "-wrong")
    other = images.write_png(designflow_env.inputs / "t.png", seed=1501)
    state = upload_designs(paths=[str(other)], user_id="secret-user", return_state=True)
    error = state.result(raise_on_failure=False)
    assert isinstance(error, UploadIncomplete)
    assert "NAS private key" in error.report["failed"][0]["reason"]
    seen += [
        str(error),
        json.dumps(error.report),
        _artifact_text(error.report["flow_run_id"]),
        caplog.text,
    ]
    for text in seen:
        assert PASSPHRASE not in text
