"""The catalog connection can come from a prefect-sqlalchemy SqlAlchemyConnector block."""

from __future__ import annotations

import uuid

from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector
from psycopg.conninfo import conninfo_to_dict

from designflow.catalog import Catalog
from designflow.flows.upload import upload_designs
from designflow.orchestration import resources
from tests import images
from tests.conftest import DesignflowEnv


def test_upload_with_catalog_from_block(designflow_env: DesignflowEnv, monkeypatch) -> None:
    parts = conninfo_to_dict(designflow_env.database_url)
    block_name = f"catalog-{uuid.uuid4().hex[:8]}"
    query = {"host": parts["host"]} if str(parts.get("host", "")).startswith("/") else {}
    SqlAlchemyConnector(
        connection_info=ConnectionComponents(
            driver="postgresql+psycopg",
            database=parts["dbname"],
            username=parts.get("user") or "postgres",
            password=parts.get("password") or None,
            host=None if query else parts.get("host"),
            port=int(parts["port"]) if parts.get("port") else None,
            query=query or None,
        )
    ).save(block_name)
    monkeypatch.delenv("DESIGNFLOW_DATABASE_URL")
    monkeypatch.setenv("DESIGNFLOW_CATALOG_BLOCK", block_name)

    url = resources.database_url(resources.current_settings())
    assert conninfo_to_dict(url)["dbname"] == parts["dbname"]
    path = images.write_png(designflow_env.inputs / "block.png", seed=123)
    report = upload_designs(paths=[str(path)], user_id="blocky")
    assert len(report["stored"]) == 1
    assert Catalog(designflow_env.database_url).count_designs("blocky") == 1
