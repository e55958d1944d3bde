"""The process's resources (designflow.resources) with Prefect blocks wired in.

Tasks receive no connection strings as parameters (flow and task inputs are visible in the
Prefect UI); they take the catalog, the NAS and the Etsy shop from here, built once per
process from the environment or from Prefect blocks.
"""

from __future__ import annotations

import logging
from pathlib import Path

from psycopg.conninfo import make_conninfo

from designflow import resources as core
from designflow.catalog import Catalog
from designflow.ingest.interrupts import Settled, settle_unrecorded
from designflow.ingest.roots import SourceRoots
from designflow.resources import BlockReaders, EtsyNotConfigured, EtsyShop, Resources
from designflow.settings import Settings
from designflow.storage.nas import Nas
from designflow.storage.unrecorded import LEDGER


def _catalog_url_from_block(block_name: str) -> str:
    """A psycopg conninfo from a prefect-sqlalchemy `SqlAlchemyConnector` block, so that
    deployments keep the database credentials in Prefect rather than in the environment."""
    from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector
    from sqlalchemy.engine import make_url

    block = SqlAlchemyConnector.load(block_name)
    info = block.connection_info
    url = info.create_url() if isinstance(info, ConnectionComponents) else make_url(str(info))
    if not url.drivername.startswith("postgresql"):
        raise ValueError(f"catalog block {block_name!r} is not a PostgreSQL connection")
    params: dict[str, object] = {
        "host": url.host,
        "port": url.port,
        "dbname": url.database,
        "user": url.username,
        "password": url.password,
    }
    # Query arguments (for example host=/socket/dir) override the URL's parts.
    params.update({k: v for k, v in dict(url.query).items() if isinstance(v, str)})
    return make_conninfo(**{k: v for k, v in params.items() if v not in (None, "")})


def _nas_from_block(block_name: str) -> Nas:
    from designflow.orchestration.blocks import SftpNasBlock

    return SftpNasBlock.load(block_name).nas()


def _etsy_from_block(block_name: str, settings: Settings) -> EtsyShop:
    from designflow.etsy.client import EtsyClient, RetryPolicy
    from designflow.orchestration.blocks import BlockTokenStore, EtsyShopBlock

    try:
        block = EtsyShopBlock.load(block_name)
    except ValueError:
        raise EtsyNotConfigured(
            f"no Etsy credentials: Prefect block {block_name!r} (type 'designflow Etsy shop') "
            "does not exist; create it with `designflow etsy connect`"
        ) from None
    client = EtsyClient(
        block.base_url, block.keystring, block.shared_secret.get_secret_value(),
        BlockTokenStore(block_name), per_second=settings.etsy_per_second,
        retry=RetryPolicy(base_s=settings.etsy_backoff_s),
    )  # fmt: skip
    defaults = {
        name: int(value)
        for name in ("shipping_profile_id", "readiness_state_id", "return_policy_id")
        if (value := getattr(block, name, None)) is not None
    }
    return EtsyShop(client, block.shop_id, defaults)


BLOCKS = BlockReaders(
    catalog_url=_catalog_url_from_block, nas=_nas_from_block, etsy=_etsy_from_block
)


def current(settings: Settings | None = None) -> Resources:
    """The resources of this process and the current settings (built once)."""
    return core.current(BLOCKS, settings)


def current_settings() -> Settings:
    return current().settings


def database_url(settings: Settings | None = None) -> str:
    return current(settings).database_url()


def catalog(settings: Settings | None = None) -> Catalog:
    """The catalog, migrated before first use in this process."""
    return current(settings).catalog()


def nas(settings: Settings | None = None) -> Nas:
    return current(settings).nas()


def release_nas(staging: str | None = None) -> None:
    """End of a run: idle NAS connections closed, the run's copies of NAS sources deleted."""
    current().release_nas()
    if staging is not None:
        from designflow.ingest.sources import discard_staging

        discard_staging(Path(staging))


def staging_folder(run_key: str) -> str:
    """Where this run keeps the NAS sources it read (on this worker's disk, for the run)."""
    return str(current_settings().home / "staging" / run_key)


def close_all() -> None:
    core.close_current()


def started_by_deployment() -> bool:
    """True inside a run (or a task of one) that a deployment started: its parameters came
    through the Prefect API, so what it may read is limited (designflow.ingest.roots)."""
    from prefect.runtime import deployment

    return deployment.id is not None


def source_roots(user_id: str) -> SourceRoots | None:
    return current().source_roots(user_id, started_by_deployment())


def check_source(name: str, user_id: str) -> str:
    """`name` if this run may read it, else SourceNotAllowed (the run's error says why)."""
    roots = source_roots(user_id)
    return roots.check(name) if roots is not None else name


# What this process removed on interrupts so far (a flow hook may settle before the CLI asks).
_removed_on_interrupt: list[str] = []


def settle_interrupted_sends() -> Settled:
    """The run is ending on an interrupt: the files it sent and did not record are removed
    (designflow.ingest.interrupts), while this process still holds their claims. Returns
    every file this process removed so."""
    try:
        settled = settle_unrecorded(catalog(), nas())
        _removed_on_interrupt.extend(settled.removed)
        return Settled(list(_removed_on_interrupt), settled.left)
    except Exception as exc:  # noqa: BLE001 - the catalog may be why the run stopped
        logging.getLogger(__name__).warning("files sent but not recorded were not settled: %s", exc)
        return Settled()


def settle_on_interrupt(_flow, _flow_run, state) -> None:
    """Flow hook (on_crashed, on_cancellation): see settle_interrupted_sends."""
    settled = settle_interrupted_sends()
    if settled.removed or settled.left:
        logging.getLogger(__name__).warning(
            "interrupted: %d file(s) sent but not recorded were removed from the NAS%s",
            len(settled.removed),
            f"; {len(settled.left)} left for the next run to adopt" if settled.left else "",
        )


def resume_sends() -> None:
    """A run starting in a process where an earlier one was interrupted (tests, the web
    app's in-process runs) sends and records again."""
    LEDGER.resume()
