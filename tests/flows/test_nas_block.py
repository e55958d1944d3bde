"""The SFTP NAS Prefect block: registered, secrets kept secret, usable by the flow."""

from __future__ import annotations

import uuid
from pathlib import Path

from designflow.flows.upload import upload_designs
from designflow.tasks.blocks import SftpNasBlock
from tests import images
from tests.conftest import DesignflowEnv
from tests.sftp_servers import start_sftp_server


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
    finally:
        server.stop()
