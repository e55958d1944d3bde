"""The things a process talks to, built once from the settings: catalog, NAS, Etsy, templates.

One `Resources` object per process (see `current`); each resource is made on first use under
a lock, so four threads asking at once build it once. The front ends (Prefect tasks, the
CLI) pass in how to read Prefect blocks; the core itself never imports Prefect.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from designflow.catalog import Catalog
from designflow.settings import Settings
from designflow.storage.nas import Nas, NasError, nas_from_url

if TYPE_CHECKING:
    from designflow.etsy.client import EtsyClient
    from designflow.ingest.roots import SourceRoots
    from designflow.ingest.sources import RemoteLocation
    from designflow.ingest.urls import UrlSource
    from designflow.mockups.render import Template


class EtsyNotConfigured(LookupError):
    """No Etsy credentials: publishing is skipped, nothing fails."""


@dataclass(frozen=True)
class EtsyShop:
    client: EtsyClient
    shop_id: str
    # Profile ids from the shop's settings, for listings whose content names none.
    profile_defaults: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BlockReaders:
    """How to read what lives in Prefect blocks (given by the front end; None: no blocks).

    catalog_url(block_name) -> conninfo; nas(block_name) -> Nas; etsy(block_name, settings)
    -> EtsyShop (raises EtsyNotConfigured when there is no such block)."""

    catalog_url: Callable[[str], str] | None = None
    nas: Callable[[str], Nas] | None = None
    etsy: Callable[[str, Settings], EtsyShop] | None = None


# Connections one process holds open to the catalog: the flow's 4 task threads, the 4 NAS
# threads and the flow itself, with room to spare.
CATALOG_POOL_SIZE = 10


class Resources:
    def __init__(self, settings: Settings, blocks: BlockReaders | None = None) -> None:
        self.settings = settings
        self._blocks = blocks or BlockReaders()
        self._lock = threading.RLock()
        self._catalog: Catalog | None = None
        self._database_url: str | None = None
        self._nas: Nas | None = None
        self._source_servers: dict[tuple[str, str, int], Nas] = {}  # other SFTP sources
        self._etsy: EtsyShop | None = None
        self._url_source: UrlSource | None = None
        self._templates: dict[tuple[str, float], Template] = {}

    # -- catalog ---------------------------------------------------------------------------

    def database_url(self) -> str:
        with self._lock:
            if self._database_url is None:
                self._database_url = self._resolve_database_url()
            return self._database_url

    def _resolve_database_url(self) -> str:
        s = self.settings
        if s.database_url:
            return s.database_url
        if s.catalog_block:
            if self._blocks.catalog_url is None:
                raise LookupError(f"catalog block {s.catalog_block!r} needs Prefect")
            return self._blocks.catalog_url(s.catalog_block)
        from designflow.catalog.embedded import embedded_database_url

        return embedded_database_url(s.home)

    def catalog(self) -> Catalog:
        """The catalog on a connection pool, migrated once per process."""
        with self._lock:
            if self._catalog is None:
                catalog = Catalog(self.database_url(), pool_size=CATALOG_POOL_SIZE)
                try:
                    catalog.migrate()
                except BaseException:
                    catalog.close()
                    raise
                self._catalog = catalog
            return self._catalog

    # -- NAS -------------------------------------------------------------------------------

    def nas(self) -> Nas:
        """One NAS client per process, so the SFTP connection pool is shared by every task,
        batch and run in it."""
        with self._lock:
            if self._nas is None:
                s = self.settings
                if s.nas_block:
                    if self._blocks.nas is None:
                        raise LookupError(f"NAS block {s.nas_block!r} needs Prefect")
                    self._nas = self._blocks.nas(s.nas_block)
                else:
                    self._nas = nas_from_url(s.nas_url, s)
            return self._nas

    def source_roots(self, user_id: str, from_deployment: bool) -> SourceRoots | None:
        """The folders a run for this seller may read (None: any). Set by
        DESIGNFLOW_SOURCE_ROOTS; unset, a run started by a deployment may read the inbox and
        the NAS, and a run started on one's own machine any path its user can."""
        from designflow.ingest.roots import default_deployment_roots, parse_source_roots
        from designflow.storage.nas import LocalNas

        text = self.settings.source_roots
        if text is None:
            if not from_deployment:
                return None
            text = default_deployment_roots(self.settings.inbox)
        nas = self.nas()
        return parse_source_roots(text, user_id, nas.root if isinstance(nas, LocalNas) else None)

    def release_nas(self) -> None:
        """End of a run: close idle NAS connections (the pool itself stays usable)."""
        with self._lock:
            held = [self._nas, *self._source_servers.values()]
        for nas in held:
            if nas is not None:
                nas.release()

    def locate(self, name: str) -> RemoteLocation | Path:
        """Where a `nas:` or `sftp://` source name points. `nas:` is relative to the NAS root
        (a local path when the NAS is a folder); an `sftp://` URL on the NAS's own server
        and under its root is read through the NAS's pool, any other through a pool of its
        own with the NAS's credentials and known hosts."""
        from designflow.ingest.sources import NAS_PREFIX, RemoteLocation, nas_relative
        from designflow.ingest.urls import is_url
        from designflow.storage.nas import LocalNas

        if is_url(name):
            return RemoteLocation(self.url_source(), name, "", origin="its server")
        nas = self.nas()
        if name.startswith(NAS_PREFIX):
            rel = nas_relative(name)
            if isinstance(nas, LocalNas):
                return nas.root / rel
            return RemoteLocation(nas, rel, NAS_PREFIX)
        return self._locate_sftp_url(name, nas)

    def url_source(self) -> UrlSource:
        """Downloads of https:// sources (designflow.ingest.urls), under the settings' guards."""
        from designflow.ingest.urls import UrlSource, parse_networks

        with self._lock:  # one per process: its TLS context loads the trust store once
            if self._url_source is None:
                self._url_source = UrlSource(
                    parse_networks(self.settings.url_sources_allow_networks),
                    self.settings.url_sources_timeout_s,
                )
            return self._url_source

    def _locate_sftp_url(self, name: str, nas: Nas) -> RemoteLocation:
        import posixpath

        from designflow.ingest.sources import RemoteLocation
        from designflow.storage.sftp import SftpCredentials, SftpNas, SftpPool, SftpTarget

        target = SftpTarget.from_url(name)
        if ".." in target.base_path.split("/"):
            raise NasError(f"{name}: '..' is not allowed in a source URL")
        server = (target.username, target.host, target.port)
        if isinstance(nas, SftpNas):
            own = nas.target
            root = own.base_path.rstrip("/") + "/"
            if server == (own.username, own.host, own.port) and target.base_path.startswith(root):
                rel = target.base_path[len(root) :].strip("/")
                return RemoteLocation(
                    nas, rel, f"sftp://{own.username}@{own.host}:{own.port}{root}"
                )
        with self._lock:
            other = self._source_servers.get(server)
            if other is None:
                credentials = (
                    nas.pool.credentials
                    if isinstance(nas, SftpNas)
                    else SftpCredentials.from_settings(self.settings)
                )
                at_root = SftpTarget(target.host, target.port, target.username, "/")
                other = SftpNas(at_root, SftpPool(at_root, credentials, 4))
                self._source_servers[server] = other
        rel = posixpath.normpath(target.base_path).lstrip("/")
        return RemoteLocation(other, rel, f"sftp://{target.username}@{target.host}:{target.port}/")

    # -- Etsy ------------------------------------------------------------------------------

    def etsy(self) -> EtsyShop:
        """The shop of the settings' Etsy block, read once per process (tokens rotated by
        another process are read back from the block when a refresh is due)."""
        with self._lock:
            if self._etsy is None:
                if self._blocks.etsy is None:
                    raise EtsyNotConfigured("no Etsy credentials: Etsy blocks need Prefect")
                self._etsy = self._blocks.etsy(self.settings.etsy_block, self.settings)
            return self._etsy

    def forget_etsy(self) -> None:
        with self._lock:
            etsy, self._etsy = self._etsy, None
        if etsy is not None:
            etsy.client.close()

    # -- templates -------------------------------------------------------------------------

    def template(self, template_id: str) -> Template:
        """A mockup template, read once per folder version (not once per design)."""
        from designflow.mockups.render import TemplateError, load_template

        folder = self.template_folder(template_id)
        manifest = folder / "template.json"
        if not manifest.is_file():
            raise TemplateError(f"template {template_id!r} not found ({manifest} does not exist)")
        key = (str(folder), manifest.stat().st_mtime)
        with self._lock:
            cached = self._templates.get(key)
        if cached is None:
            cached = load_template(folder)
            with self._lock:
                self._templates[key] = cached
        return cached

    def template_folder(self, template_id: str) -> Path:
        _check_template_id(template_id)
        prefix = self._templates_on_nas()
        if prefix is not None:
            return self._template_from_nas(prefix, template_id)
        return Path(self.settings.templates) / template_id

    def _templates_on_nas(self) -> str | None:
        """The templates folder under the NAS root for `nas:<folder>`, else None."""
        root = self.settings.templates
        return root[len("nas:") :].strip("/") if root.startswith("nas:") else None

    def _template_from_nas(self, prefix: str, template_id: str) -> Path:
        """Templates kept on the NAS are copied once into a local cache folder."""
        from designflow.mockups.render import TemplateError

        nas = self.nas()
        remote = f"{prefix}/{template_id}"
        local = self.settings.home / "template-cache" / template_id
        files = nas.list_files(remote)
        if not files:
            raise TemplateError(f"template {template_id!r} not found on the NAS under {remote}/")
        local.mkdir(parents=True, exist_ok=True)
        for path in files:
            target = local / Path(path).relative_to(remote)
            data = nas.read_bytes(path)
            if not target.exists() or target.stat().st_size != len(data):
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        return local

    def template_names(self) -> list[str]:
        """The templates in the settings' folder (on the NAS for `nas:<folder>`)."""
        prefix = self._templates_on_nas()
        if prefix is not None:
            nas = self.nas()
            return [n for n in nas.folders(prefix) if nas.stat(f"{prefix}/{n}/template.json")]
        return sorted(p.parent.name for p in Path(self.settings.templates).glob("*/template.json"))

    def template_manifest(self, template_id: str) -> dict:
        import json

        prefix = self._templates_on_nas()
        if prefix is not None:
            data = self.nas().read_bytes(f"{prefix}/{template_id}/template.json")
        else:
            data = (Path(self.settings.templates) / template_id / "template.json").read_bytes()
        manifest = json.loads(data)
        return manifest if isinstance(manifest, dict) else {}

    def save_template(self, template_id: str, files: dict[str, bytes]) -> str:
        """Write a template's files where every worker reads templates; returns where. The
        manifest goes last, so a reader never finds a manifest whose images are missing."""
        from designflow.mockups.render import MANIFEST

        _check_template_id(template_id)
        order = sorted(files, key=lambda name: name == MANIFEST)
        on_nas = self._templates_on_nas()
        if on_nas is not None:
            prefix = f"{on_nas}/{template_id}"
            for name in order:
                self.nas().write_small(f"{prefix}/{name}", files[name])
            return f"nas:{prefix}/"
        folder = Path(self.settings.templates) / template_id
        folder.mkdir(parents=True, exist_ok=True)
        for name in order:
            temp = folder / f".{name}.part"
            temp.write_bytes(files[name])
            temp.replace(folder / name)
        return f"{folder}/"

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            catalog, nas, etsy = self._catalog, self._nas, self._etsy
            self._catalog = self._nas = self._etsy = None
            sources, self._source_servers = list(self._source_servers.values()), {}
            self._templates.clear()
        for source in [nas, *sources]:
            if source is not None:
                source.close()
        if etsy is not None:
            etsy.client.close()
        if catalog is not None:
            catalog.close()


def _check_template_id(template_id: str) -> None:
    """Template names become folder names: no paths, no hidden names."""
    from designflow.mockups.render import TemplateError

    if not template_id or "/" in template_id or template_id.startswith("."):
        raise TemplateError(f"invalid template id {template_id!r}")


_current: Resources | None = None
_current_lock = threading.Lock()


def current(blocks: BlockReaders | None = None, settings: Settings | None = None) -> Resources:
    """The process's resources for the current settings. When the settings change (a test,
    a changed environment), the previous resources are closed and new ones built."""
    global _current
    settings = settings or Settings.from_env()
    with _current_lock:
        if _current is not None and _current.settings == settings:
            return _current
        previous, _current = _current, Resources(settings, blocks)
    if previous is not None:
        previous.close()
    return _current


def close_current() -> None:
    global _current
    with _current_lock:
        previous, _current = _current, None
    if previous is not None:
        previous.close()
