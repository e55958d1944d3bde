"""Prefect block types of designflow, registered so they show in the UI:

prefect block register -m designflow.orchestration.blocks
"""

from __future__ import annotations

import os
import tempfile

import anyio.to_thread
from prefect.blocks.core import Block
from prefect.filesystems import WritableFileSystem
from pydantic import Field, SecretStr

from designflow.storage.sftp import SftpCredentials, SftpNas, SftpTarget, sftp_nas


class SftpNasBlock(Block):
    """Where the NAS is and how to log in to it. Secrets are stored encrypted by Prefect
    and never shown in the UI, logs or run parameters."""

    _block_type_name = "designflow SFTP NAS"
    _block_type_slug = "designflow-sftp-nas"
    _description = "SFTP NAS that stores designflow designs: URL, host key and credentials."

    url: str = Field(description="sftp://user@host:port/base/path")
    known_hosts: str = Field(
        description="known_hosts line(s) for the NAS, e.g. from `ssh-keyscan -p PORT HOST` "
        "(checked against the fingerprint you expect)"
    )
    private_key: SecretStr | None = Field(default=None, description="OpenSSH private key text")
    key_passphrase: SecretStr | None = Field(default=None, description="passphrase of the key")
    password: SecretStr | None = Field(default=None, description="password, if no key is used")
    max_connections: int = Field(default=10, ge=1, le=64)
    upload_processes: int = Field(default=2, ge=0, le=16, description="0: upload in-thread")

    def nas(self) -> SftpNas:
        target = SftpTarget.from_url(self.url)
        handle, path = tempfile.mkstemp(prefix="designflow-known-hosts-")
        with os.fdopen(handle, "w") as out:
            out.write(self.known_hosts.strip() + "\n")
        credentials = SftpCredentials(
            known_hosts=path,
            password=_reveal(self.password),
            key_data=_reveal(self.private_key),
            key_passphrase=_reveal(self.key_passphrase),
        )
        return sftp_nas(target, credentials, self.max_connections, self.upload_processes)


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


class EtsyShopBlock(Block):
    """An Etsy shop designflow publishes to: the app's keys and the shop's OAuth tokens.
    Etsy rotates the refresh token on every refresh; the client saves the new one here."""

    _block_type_name = "designflow Etsy shop"
    _block_type_slug = "designflow-etsy-shop"
    _description = "Etsy Open API v3 app keys and shop tokens used to publish draft listings."

    base_url: str = Field(description="Etsy API root, https://api.etsy.com for the real Etsy")
    keystring: str = Field(description="the app's API keystring (its OAuth client id)")
    shared_secret: SecretStr = Field(description="the app's shared secret")
    shop_id: str = Field(description="numeric id of the shop")
    refresh_token: SecretStr = Field(description="OAuth refresh token (rotated on each use)")
    access_token: SecretStr | None = Field(default=None, description="current access token")
    access_expires_at: float = Field(default=0.0, description="epoch seconds")
    # Defaults for listings whose manifest names none (the shop's only one otherwise).
    shipping_profile_id: int | None = Field(
        default=None, description="shipping profile of physical listings"
    )
    readiness_state_id: int | None = Field(
        default=None, description="processing profile (readiness state) of physical listings"
    )
    return_policy_id: int | None = Field(default=None, description="return policy of listings")


class BlockTokenStore:
    """Etsy tokens kept in an `EtsyShopBlock`: every process that publishes reads the block,
    and a refresh writes the rotated tokens back before they are used."""

    def __init__(self, block_name: str) -> None:
        self.block_name = block_name

    def load(self):
        from designflow.etsy.client import EtsyTokens

        block = EtsyShopBlock.load(self.block_name)
        return EtsyTokens(
            refresh_token=block.refresh_token.get_secret_value(),
            access_token=_reveal(block.access_token),
            expires_at=block.access_expires_at,
        )

    def save(self, tokens) -> None:
        block = EtsyShopBlock.load(self.block_name)
        block.refresh_token = SecretStr(tokens.refresh_token)
        block.access_token = SecretStr(tokens.access_token) if tokens.access_token else None
        block.access_expires_at = tokens.expires_at
        block.save(self.block_name, overwrite=True)


class NasResultStorage(WritableFileSystem):
    """Prefect result storage in a folder on the NAS, so a run's result can be read back on
    any machine (`designflow status`, the UI, a retried run on another worker). Each process
    reaches the NAS with its own settings (DESIGNFLOW_NAS_URL or the NAS block), as its
    uploads do: no credentials are kept in this block."""

    _block_type_name = "designflow NAS result storage"
    _block_type_slug = "designflow-nas-results"
    _description = "Flow run results kept in a folder on the designflow NAS."

    folder: str = Field(default="prefect-results", description="folder under the NAS root")

    def _path(self, path: str) -> str:
        return f"{self.folder.strip('/')}/{path.lstrip('/')}"

    def _read(self, path: str) -> bytes:
        from designflow.orchestration.resources import nas

        return nas().read_bytes(self._path(path))

    def _write(self, path: str, content: bytes) -> None:
        from designflow.orchestration.resources import nas

        nas().write_small(self._path(path), content)

    async def read_path(self, path: str) -> bytes:
        return await anyio.to_thread.run_sync(self._read, path)

    async def write_path(self, path: str, content: bytes) -> None:
        await anyio.to_thread.run_sync(self._write, path, content)

    async def aread_path(self, path: str) -> bytes:
        return await self.read_path(path)

    async def awrite_path(self, path: str, content: bytes) -> None:
        await self.write_path(path, content)
