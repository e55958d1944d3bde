"""The SFTP NAS Prefect block: registered, secrets kept secret, usable by the flow."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from designflow.flows.upload import upload_designs
from designflow.orchestration.blocks import SftpNasBlock
from tests import images
from tests.conftest import DesignflowEnv
from tests.sftp_servers import start_sftp_server


def server_kept_text(run_id: str) -> str:
    """The run's logs, artifacts and result as the Prefect server stores them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    run = uuid.UUID(run_id)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run]))
        )
        state = client.read_flow_run(run).state
    parts = [log.message for log in logs] + [json.dumps(a.data, default=str) for a in artifacts]
    return "\n".join(parts + [json.dumps(state.result(raise_on_failure=False), default=str)])


def test_block_registers_and_feeds_the_upload(
    designflow_env: DesignflowEnv, tmp_path: Path, monkeypatch
) -> None:
    from prefect.client.orchestration import get_client

    server = start_sftp_server(tmp_path / "sftp")
    try:
        SftpNasBlock.register_type_and_schema()
        with get_client(sync_client=True) as client:
            block_type = client.read_block_type_by_slug("designflow-sftp-nas")
        assert block_type.name == "designflow SFTP NAS"

        key_text = Path(server.key_file).read_text()
        name = f"nas-{uuid.uuid4().hex[:8]}"
        SftpNasBlock(
            url=server.url,
            known_hosts=Path(server.known_hosts).read_text(),
            private_key=key_text,
            upload_processes=0,
        ).save(name)
        loaded = SftpNasBlock.load(name)
        assert key_text.strip() not in repr(loaded)
        assert key_text.strip() not in str(loaded.model_dump())

        monkeypatch.setenv("DESIGNFLOW_NAS_BLOCK", name)
        monkeypatch.setenv("DESIGNFLOW_NAS_URL", "file:///nonexistent-the-block-wins")
        path = images.write_png(designflow_env.inputs / "b.png", seed=600)
        report = upload_designs(paths=[str(path)], user_id="blockuser")
        (stored,) = report["stored"]
        assert (server.root / stored["nas_path"]).is_file()
        # Nothing of the key in what the server keeps and the UI shows: logs, artifacts, result.
        key_body = "".join(key_text.strip().splitlines()[1:-1])
        kept = server_kept_text(report["flow_run_id"])
        assert "blockuser" in kept  # the logs and artifacts really were read
        for fragment in (key_text.strip(), key_body, key_body[:40], key_body[-40:]):
            assert fragment not in kept
    finally:
        server.stop()
