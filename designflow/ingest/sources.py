"""Upload sources that live on the NAS or another SFTP server instead of the worker's disk.

A web app on one host hands a seller's files to a worker on another by writing them to the
NAS and naming them `nas:<path>` (relative to the NAS root) or `sftp://user@host:port/path`.
Each such file is read once, into a run's staging folder on the worker, and from there it is
fingerprinted and stored exactly like a local file; the report keeps the name the seller
gave. With a local-folder NAS, `nas:` simply names a path under it.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from designflow.images.fingerprint import (
    Fingerprint,
    RejectedDesign,
    fingerprint_bytes,
    fingerprint_design,
    known_content,
    read_design_bytes,
)
from designflow.ingest.report import FailedFile, RejectedFile
from designflow.ingest.urls import is_url
from designflow.settings import ImageLimits
from designflow.storage.nas import Nas, NasError, SourceUnreadable

NAS_PREFIX = "nas:"
SFTP_PREFIX = "sftp://"


class BadSourceName(ValueError):
    """A `nas:` or `sftp://` name that cannot name a file on the NAS."""


def is_remote(name: str) -> bool:
    """A source read into the run's staging folder first: on the NAS, another SFTP server,
    or an https:// URL (designflow.ingest.urls)."""
    return name.startswith((NAS_PREFIX, SFTP_PREFIX)) or is_url(name)


def nas_relative(name: str) -> str:
    """`nas:inbox/demo/` -> `inbox/demo`; refuses names that climb out of the NAS root."""
    rel = name[len(NAS_PREFIX) :].strip("/")
    if ".." in PurePosixPath(rel).parts:
        raise BadSourceName(f"{name}: '..' is not allowed in a nas: path")
    return rel


@dataclass(frozen=True)
class RemoteLocation:
    """Where a remote name points: a NAS client, the path under its root, and the prefix
    that turns a path under the root back into a name the seller recognises."""

    nas: Nas
    path: str
    prefix: str
    origin: str = "the NAS"  # where a failed read was from, as the report says it

    def name(self, rel: str) -> str:
        return self.prefix + rel


def staged_path(staging: Path, name: str) -> Path:
    """Where a remote file is kept for the run: one name per source, its extension kept
    (the decoder's first guess)."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    path = urlsplit(name).path if is_url(name) else name  # no query in the extension
    return staging / f"{digest}{posixpath.splitext(path)[1].lower()[:10]}"


def fingerprint_remote(
    name: str, where: RemoteLocation, staging: Path, limits: ImageLimits
) -> Fingerprint | RejectedFile | FailedFile:
    """Read a remote file once into `staging`, then fingerprint the local copy. A file that
    vanished, changed while read or is too large is rejected with the reason; one the NAS
    could not give (the connection dropped) failed: the next upload or sweep reads it again."""
    local = staged_path(staging, name)
    try:
        where.nas.fetch(where.path, local, limits.max_file_bytes)
    except SourceUnreadable as exc:
        return RejectedFile(name, str(exc).split(": ", 1)[-1])
    except Exception as exc:  # OSError, paramiko's SSHException, EOFError: a dropped link
        local.unlink(missing_ok=True)
        return FailedFile(
            name, f"could not read it from {where.origin}: {type(exc).__name__}: {exc}"
        )
    try:
        fingerprint = fingerprint_design(str(local), limits)
    except RejectedDesign as exc:
        local.unlink(missing_ok=True)
        return RejectedFile(name, exc.reason)
    return replace(fingerprint, path=name, name=posixpath.basename(name), local_copy=str(local))


def fingerprint_source(
    path: str,
    limits: ImageLimits,
    staging: str | None,
    locate: Callable[[str], RemoteLocation | Path],
    known: Callable[[str], bool] | None = None,
) -> Fingerprint | RejectedFile | FailedFile:
    """A local file's fingerprint, or a NAS source's (read once into `staging`); a file that
    cannot be used is a RejectedFile with the reason. `known(sha256)`: whether the seller
    already has these bytes; such a file is not decoded (`decoded` False)."""
    if is_remote(path):
        if staging is None:
            return RejectedFile(path, "nas:, sftp:// and https:// sources need a staging folder")
        try:
            where = locate(path)
        except (BadSourceName, NasError) as exc:
            return RejectedFile(path, str(exc))
        if isinstance(where, RemoteLocation):
            return fingerprint_remote(path, where, Path(staging), limits)
        path = str(where)  # a local-folder NAS
    try:
        data = read_design_bytes(path, limits)
        if known is not None:
            sha256 = hashlib.sha256(data).hexdigest()
            if known(sha256):
                return known_content(path, sha256, len(data))
        return fingerprint_bytes(data, path, limits)
    except RejectedDesign as exc:
        return RejectedFile(path, exc.reason)


def _local_only(name: str) -> Path:
    raise BadSourceName(f"{name}: only local files are fingerprinted here")


def fingerprint_local_files(
    paths: list[str], limits: ImageLimits, known: frozenset[str]
) -> list[Fingerprint | RejectedFile | FailedFile]:
    """Local files' fingerprints, in order (a worker process's share of a batch)."""
    return [fingerprint_source(p, limits, None, _local_only, known.__contains__) for p in paths]


def local_sha256(path: str, max_bytes: int) -> str | None:
    """The sha256 of a local regular file's bytes, streamed (nothing kept), or None for
    anything else (a FIFO, a device, a file over the size cap, one that cannot be read: its
    fingerprint says why). Opened without blocking: a FIFO named like a design would wait
    for a writer forever (it did, in the bad-input corpus)."""
    if is_remote(path):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        try:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
                return None
            return hashlib.file_digest(handle, "sha256").hexdigest()
        except (OSError, ValueError):
            return None


def discard_staging(staging: Path) -> None:
    """The run's copies of remote files, once the run is over (stored or not)."""
    shutil.rmtree(staging, ignore_errors=True)
