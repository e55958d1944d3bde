"""Settings read from `DESIGNFLOW_*` environment variables, with defaults that work on a fresh machine."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from designflow.etsy.listings import ListingDefaults

MB = 1024 * 1024


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


@dataclass(frozen=True)
class ImageLimits:
    """Guards applied before and while decoding an untrusted file."""

    max_file_bytes: int = 200 * MB
    # 4500x5400 designs are 24.3 Mpx; 100 Mpx leaves room for large posters
    # while refusing decompression bombs long before they cost gigabytes.
    max_pixels: int = 100_000_000
    max_dimension: int = 30_000
    # Size of the shared reduction every hash is computed from.
    hash_reduction_px: int = 512
    # Decoded pixels held at once by all fingerprints of a process (see
    # designflow.images.budget): 4 threads decoding 100 Mpx 16-bit files held 4.7 GB.
    decode_budget_bytes: int = 512 * MB


@dataclass(frozen=True)
class Settings:
    home: Path
    # None: the embedded PostgreSQL under `home`. Not in repr: a URL may hold a password.
    database_url: str | None = field(repr=False)
    catalog_block: str | None  # name of a prefect-sqlalchemy SqlAlchemyConnector block
    nas_url: str
    batch_max_bytes: int
    batch_max_images: int
    limits: ImageLimits
    # SFTP NAS (used when nas_url is sftp://...): credentials from the environment for the
    # CLI, or from a designflow NAS block named by `nas_block` for deployments.
    nas_known_hosts: str = "~/.ssh/known_hosts"
    nas_key_file: str | None = None
    nas_password: str | None = field(default=None, repr=False)
    nas_key_passphrase: str | None = field(default=None, repr=False)
    nas_block: str | None = None
    nas_max_connections: int = 10
    # Worker processes that run SFTP uploads (0: in the task's own thread).
    nas_upload_processes: int = 2
    # Near duplicates: phash distance (of 64 bits) and phash+dhash sum that confirms it.
    near_dup_distance: int = 8
    near_dup_confirm: int = 26
    # Mockup templates: a local folder, or "nas:<folder>" for templates kept on the NAS.
    templates: str = ""
    work_pool: str = "designflow"
    inbox: str = ""
    sweep_cron: str = "*/5 * * * *"
    # Etsy: the Prefect block with the shop's credentials (publishing is skipped without
    # it), our own per-second cap (Etsy's x-limit-per-second lowers it), the backoff base.
    etsy_block: str = "designflow-etsy"
    etsy_per_second: int = 5
    etsy_backoff_s: float = 0.5
    # Images per listing: Etsy's spec allows up to 20.
    etsy_max_images: int = 20
    listing_defaults: ListingDefaults = field(default_factory=ListingDefaults)
    # Where a run may read its files (designflow.ingest.roots): None means any path for the
    # CLI and the inbox plus the NAS for runs started by a deployment.
    source_roots: str | None = None
    # The Prefect API's shared secret (designflow.ops.api_auth).
    api_auth_file: Path = Path("~/.designflow/api-auth")
    api_auth_file_set: bool = False
    # Operations: the fingerprint task runner ("threads" or "dask") and a Dask scheduler's
    # address, the I/O retry backoff base, how long a stopping worker lets runs finish,
    # Prefect's temporary server's database ("sqlite" or "postgresql"), a migrations folder
    # other than the package's, whether DESIGNFLOW_TEMPLATES was given.
    task_runner: str = "threads"
    dask_address: str | None = None
    retry_backoff_s: float = 1.0
    worker_stop_grace_s: float = 15.0
    # PostgreSQL by default: on SQLite the server answered 503 to the create of each upload's
    # mockup run (a write meeting the run's own) and an upload spent ~205 ms enqueueing it,
    # ~66 ms on PostgreSQL; a fresh local server also started sooner (9.5 s vs 14.8 s).
    temporary_server_db: str = "postgresql"
    # Without PREFECT_API_URL: a local Prefect server that stays between commands ("stay",
    # stopped after this many idle minutes or by `designflow stop`) or Prefect's temporary
    # server for each command ("temporary").
    # Whether a file count per batch was asked for (DESIGNFLOW_BATCH_MAX_IMAGES or the
    # flow's batch_max_images); else batches are sized by work (ingest.batching).
    batch_max_images_set: bool = False
    local_server: str = "stay"
    local_server_idle_minutes: float = 60.0
    # Commands that run flows on the local server start in a fork of a process that has
    # Prefect imported (designflow.cli.warmstart); DESIGNFLOW_WARM_START=0: each imports it.
    warm_start: bool = True
    migrations_dir: Path | None = None
    templates_set: bool = False
    # `designflow web`: files and megabytes per request, uploads in flight per seller.
    web_max_files: int = 100
    web_max_request_mb: float = 2048
    web_uploads_in_flight: int = 2
    # How web uploads run: "auto" (the deployment when a Prefect server is configured, else
    # `designflow upload` on the web machine), "deployment" or "local".
    web_runs: str = "auto"
    # https:// sources (designflow.ingest.urls): networks other than the public internet a
    # URL may lead to (CIDRs, comma-separated), and the deadline of one download.
    url_sources_allow_networks: str = ""
    url_sources_timeout_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("DESIGNFLOW_HOME") or "~/.designflow").expanduser()
        limits = ImageLimits(
            max_file_bytes=int(_number(env, "DESIGNFLOW_MAX_FILE_MB", 200) * MB),
            max_pixels=int(_number(env, "DESIGNFLOW_MAX_PIXELS", 100_000_000)),
            max_dimension=int(_number(env, "DESIGNFLOW_MAX_DIMENSION", 30_000)),
            decode_budget_bytes=int(_number(env, "DESIGNFLOW_DECODE_BUDGET_MB", 512) * MB),
        )
        return cls(
            home=home,
            database_url=env.get("DESIGNFLOW_DATABASE_URL") or None,
            catalog_block=env.get("DESIGNFLOW_CATALOG_BLOCK") or None,
            nas_url=env.get("DESIGNFLOW_NAS_URL") or f"file://{home / 'nas'}",
            # 200 MB, not the seed's 50: its batches were held in memory, ours are paths,
            # and each batch costs ~0.5 CPU-s of task runs and lookups (50 designs of
            # 4500x5400: 9 batches -> 3, 0.77-0.90x the time in bench.e2e --compare-env).
            batch_max_bytes=int(_number(env, "DESIGNFLOW_BATCH_MAX_MB", 200) * MB),
            batch_max_images=int(_number(env, "DESIGNFLOW_BATCH_MAX_IMAGES", 20)),
            batch_max_images_set=bool(env.get("DESIGNFLOW_BATCH_MAX_IMAGES")),
            limits=limits,
            nas_known_hosts=env.get("DESIGNFLOW_NAS_KNOWN_HOSTS") or "~/.ssh/known_hosts",
            nas_key_file=env.get("DESIGNFLOW_NAS_KEY_FILE") or None,
            nas_password=env.get("DESIGNFLOW_NAS_PASSWORD") or None,
            nas_key_passphrase=env.get("DESIGNFLOW_NAS_KEY_PASSPHRASE") or None,
            nas_block=env.get("DESIGNFLOW_NAS_BLOCK") or None,
            nas_max_connections=int(_number(env, "DESIGNFLOW_NAS_MAX_CONNECTIONS", 10)),
            nas_upload_processes=_count(env, "DESIGNFLOW_NAS_UPLOAD_PROCESSES", 2),
            near_dup_distance=int(_number(env, "DESIGNFLOW_NEAR_DUP_DISTANCE", 8)),
            near_dup_confirm=int(_number(env, "DESIGNFLOW_NEAR_DUP_CONFIRM", 26)),
            templates=env.get("DESIGNFLOW_TEMPLATES") or _default_templates(home),
            work_pool=env.get("DESIGNFLOW_WORK_POOL") or "designflow",
            inbox=env.get("DESIGNFLOW_INBOX") or str(home / "inbox"),
            sweep_cron=env.get("DESIGNFLOW_SWEEP_CRON") or "*/5 * * * *",
            etsy_block=env.get("DESIGNFLOW_ETSY_BLOCK") or "designflow-etsy",
            etsy_per_second=int(_number(env, "DESIGNFLOW_ETSY_PER_SECOND", 5)),
            etsy_backoff_s=_number(env, "DESIGNFLOW_ETSY_BACKOFF_SECONDS", 0.5),
            etsy_max_images=min(20, int(_number(env, "DESIGNFLOW_ETSY_MAX_IMAGES", 20))),
            listing_defaults=_listing_defaults(env),
            source_roots=env.get("DESIGNFLOW_SOURCE_ROOTS", "").strip() or None,
            api_auth_file=Path(
                env.get("DESIGNFLOW_API_AUTH_FILE") or home / "api-auth"
            ).expanduser(),
            api_auth_file_set=bool(env.get("DESIGNFLOW_API_AUTH_FILE")),
            task_runner=_choice(env, "DESIGNFLOW_TASK_RUNNER", ("threads", "dask")),
            dask_address=env.get("DESIGNFLOW_DASK_ADDRESS") or None,
            retry_backoff_s=_number(env, "DESIGNFLOW_RETRY_BACKOFF_SECONDS", 1.0),
            worker_stop_grace_s=_number(env, "DESIGNFLOW_WORKER_STOP_GRACE_SECONDS", 15.0),
            temporary_server_db=_choice(
                env, "DESIGNFLOW_TEMPORARY_SERVER_DB", ("postgresql", "sqlite")
            ),
            local_server=_choice(env, "DESIGNFLOW_LOCAL_SERVER", ("stay", "temporary")),
            local_server_idle_minutes=_number(env, "DESIGNFLOW_LOCAL_SERVER_IDLE_MINUTES", 60.0),
            warm_start=_choice(env, "DESIGNFLOW_WARM_START", ("1", "0")) == "1",
            migrations_dir=Path(env["DESIGNFLOW_MIGRATIONS_DIR"])
            if env.get("DESIGNFLOW_MIGRATIONS_DIR")
            else None,
            templates_set=bool(env.get("DESIGNFLOW_TEMPLATES")),
            web_max_files=int(_number(env, "DESIGNFLOW_WEB_MAX_FILES", 100)),
            web_max_request_mb=_number(env, "DESIGNFLOW_WEB_MAX_REQUEST_MB", 2048),
            web_uploads_in_flight=int(_number(env, "DESIGNFLOW_WEB_MAX_UPLOADS_IN_FLIGHT", 2)),
            web_runs=_choice(env, "DESIGNFLOW_WEB_RUNS", ("auto", "deployment", "local")),
            url_sources_allow_networks=_networks(env, "DESIGNFLOW_URL_SOURCES_ALLOW_NETWORKS"),
            url_sources_timeout_s=_number(env, "DESIGNFLOW_URL_SOURCES_TIMEOUT_SECONDS", 60.0),
        )

    def with_batch_limits(self, max_mb: float | None, max_images: int | None) -> Settings:
        """Per-run overrides (flow parameters) on top of the environment."""
        out = self
        if max_mb is not None:
            if max_mb <= 0:
                raise SettingsError(f"batch_max_mb must be positive, got {max_mb}")
            out = replace(out, batch_max_bytes=int(max_mb * MB))
        if max_images is not None:
            if max_images <= 0:
                raise SettingsError(f"batch_max_images must be positive, got {max_images}")
            out = replace(out, batch_max_images=max_images, batch_max_images_set=True)
        return out


def _networks(env: Mapping[str, str], name: str) -> str:
    from designflow.ingest.urls import parse_networks

    raw = env.get(name, "")
    try:
        parse_networks(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None
    return raw


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    """One of `allowed` (the first is the default), case and spaces ignored."""
    raw = (env.get(name) or allowed[0]).strip().lower()
    if raw not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must be 0 or more, got {raw!r}")
    return value


def _listing_defaults(env: Mapping[str, str]) -> ListingDefaults:
    """Values for cells a listing manifest leaves empty (DESIGNFLOW_LISTING_*)."""
    price = env.get("DESIGNFLOW_LISTING_PRICE")
    taxonomy = env.get("DESIGNFLOW_LISTING_TAXONOMY_ID")
    tags = env.get("DESIGNFLOW_LISTING_TAGS") or ""
    return ListingDefaults(
        description=env.get("DESIGNFLOW_LISTING_DESCRIPTION") or None,
        price=_number(env, "DESIGNFLOW_LISTING_PRICE", 1) if price else None,
        taxonomy_id=int(_number(env, "DESIGNFLOW_LISTING_TAXONOMY_ID", 1)) if taxonomy else None,
        quantity=int(_number(env, "DESIGNFLOW_LISTING_QUANTITY", 1)),
        who_made=env.get("DESIGNFLOW_LISTING_WHO_MADE") or "i_did",
        when_made=env.get("DESIGNFLOW_LISTING_WHEN_MADE") or "made_to_order",
        tags=tuple(t.strip() for t in tags.split(",") if t.strip()),
        type=env.get("DESIGNFLOW_LISTING_TYPE") or "physical",
        shipping_profile_id=_optional_id(env, "DESIGNFLOW_LISTING_SHIPPING_PROFILE_ID"),
        readiness_state_id=_optional_id(env, "DESIGNFLOW_LISTING_READINESS_STATE_ID"),
        return_policy_id=_optional_id(env, "DESIGNFLOW_LISTING_RETURN_POLICY_ID"),
    )


def _optional_id(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    return int(_number(env, name, 1)) if raw else None


def _default_templates(home: Path) -> str:
    """The seller's own folder once it exists, else the example templates shipped as package
    data (`examples/templates` of a checkout), so a fresh install renders mockups at once."""
    own = home / "templates"
    if own.is_dir():
        return str(own)
    return str(resources.files("designflow.examples") / "templates")
