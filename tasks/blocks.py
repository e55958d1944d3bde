"""Prefect block types of designflow, registered so they show in the UI:

prefect block register -m tasks.blocks
"""

from __future__ import annotations

import os
import tempfile

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from designflow.sftp import SftpCredentials, SftpNas, SftpTarget, sftp_nas


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
