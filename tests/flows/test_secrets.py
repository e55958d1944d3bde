"""Secrets stay secret: the NAS key passphrase never reaches logs, reports, artifacts or errors."""

from __future__ import annotations

import json
import logging
import subprocess
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from designflow.flows.upload import UploadIncomplete, upload_designs
from designflow.settings import Settings
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


def _logs_text(run_ids: list[str]) -> str:
    """What the Prefect UI shows as the runs' logs (stored on the server)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(r) for r in run_ids])
            )
        )
    return "\n".join(log.message for log in logs)


def test_etsy_credentials_never_leak(designflow_env: DesignflowEnv, monkeypatch, caplog) -> None:
    import time

    from designflow.orchestration.blocks import EtsyShopBlock
    from designflow.tasks.etsy import forget_shops
    from designflow.testing.etsy_stub import EtsyStub

    caplog.set_level(logging.DEBUG)
    with EtsyStub(shared_secret="Etsy-Shared-" + uuid.uuid4().hex, per_second=20) as stub:
        tokens = stub.authorize()
        name = f"etsy-secret-{uuid.uuid4().hex[:6]}"
        EtsyShopBlock(
            base_url=stub.url, keystring=stub.keystring, shared_secret=stub.shared_secret,
            shop_id=str(stub.shop_id), refresh_token=tokens["refresh_token"],
            access_token=tokens["access_token"], access_expires_at=time.time() + 3600,
        ).save(name, overwrite=True)  # fmt: skip
        monkeypatch.setenv("DESIGNFLOW_ETSY_BLOCK", name)
        path = images.write_png(designflow_env.inputs / "e.png", seed=1502)
        manifest = designflow_env.inputs / "l.csv"
        manifest.write_text(
            "file,title,description,price,taxonomy_id,quantity\ne.png,T,D,20,482,1\n"
        )
        stub.expire_tokens()  # a refresh happens: the rotated tokens are secrets too
        report = upload_designs(
            paths=[str(path)], user_id="etsy-secret", mockup_templates=["poster"],
            async_mockups=False, listings_manifest=str(manifest),
        )  # fmt: skip
        assert report["listings"][0]["error"] is None and stub.count("token") == 1
        secrets = [stub.shared_secret, tokens["access_token"], tokens["refresh_token"]]
        rotated = EtsyShopBlock.load(name)
        secrets += [
            rotated.refresh_token.get_secret_value(),
            rotated.access_token.get_secret_value(),
        ]
        assert stub.shared_secret not in repr(rotated) and secrets[-1] not in repr(rotated)
        run_ids = [report["flow_run_id"]] + [m["flow_run_id"] for m in report["mockup_runs"]]
        seen = [json.dumps(report), _artifact_text(report["flow_run_id"]), _logs_text(run_ids)]

        # Failures: Etsy refusing the app's key, then refusing a void refresh token.
        forget_shops()
        bad = EtsyShopBlock.load(name)
        bad.shared_secret = SecretStr("Wrong-Secret-" + uuid.uuid4().hex)
        bad.save(name, overwrite=True)
        secrets.append(bad.shared_secret.get_secret_value())
        from designflow.flows.publish import publish_listing

        ids = [s["design_id"] for s in report["stored"]]
        state = publish_listing(ids, return_state=True)
        assert state.is_failed()
        seen.append(str(state.result(raise_on_failure=False)))
        forget_shops()
        void = EtsyShopBlock.load(name)
        void.shared_secret = SecretStr(stub.shared_secret)
        void.refresh_token = SecretStr(tokens["refresh_token"])  # already used: Etsy refuses it
        void.access_token = None
        void.save(name, overwrite=True)
        state = publish_listing(ids, return_state=True)
        message = str(state.result(raise_on_failure=False))
        assert state.is_failed() and "refresh token" in message
        seen += [message, caplog.text]
        forget_shops()
    for text in seen:
        for secret in secrets:
            assert secret not in text


def test_database_password_never_leaks(
    designflow_env: DesignflowEnv, pg_admin_url: str, monkeypatch, caplog
) -> None:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    caplog.set_level(logging.DEBUG)
    password = "Db-Pass-" + uuid.uuid4().hex
    role = f"df_role_{uuid.uuid4().hex[:8]}"
    dbname = conninfo_to_dict(designflow_env.database_url)["dbname"]
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(dbname), sql.Identifier(role)
            )
        )
    params = conninfo_to_dict(designflow_env.database_url) | {"user": role, "password": password}
    monkeypatch.setenv("DESIGNFLOW_DATABASE_URL", make_conninfo(**params))
    assert password not in repr(Settings.from_env())
    path = images.write_png(designflow_env.inputs / "p.png", seed=1503)
    report = upload_designs(paths=[str(path)], user_id="db-secret")
    assert len(report["stored"]) == 1
    seen = [
        json.dumps(report),
        _artifact_text(report["flow_run_id"]),
        _logs_text([report["flow_run_id"]]),
    ]
    # The same password, a database that does not exist: the run fails, saying why.
    monkeypatch.setenv(
        "DESIGNFLOW_DATABASE_URL", make_conninfo(**(params | {"dbname": dbname + "_missing"}))
    )
    state = upload_designs(paths=[str(path)], user_id="db-secret", return_state=True)
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert "does not exist" in message
    seen += [message, caplog.text]
    for text in seen:
        assert password not in text
