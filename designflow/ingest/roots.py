"""Where a run may read from: the allowed source folders (DESIGNFLOW_SOURCE_ROOTS).

A run started through the Prefect API names its files by path, and the worker reads them with
its own rights: without a limit, whoever can start a run can have any file the worker can read
(`/etc/passwd`, another seller's uploads) fingerprinted and stored. A root is a local folder
or a NAS prefix (`nas:uploads`); `{user_id}` in a root stands for the run's seller, so
`nas:uploads/{user_id}` keeps each seller to their own folder. Local paths are compared after
resolving symbolic links and `..`, so a link inside an allowed folder that leads out of it is
refused like the path it leads to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from designflow.ingest.sources import NAS_PREFIX, SFTP_PREFIX
from designflow.ingest.urls import is_url

NOT_ALLOWED = "not under an allowed source folder"


class SourceNotAllowed(PermissionError):
    """A run was asked to read a folder or file outside its allowed source folders."""


class BadSourceRoot(ValueError):
    """A DESIGNFLOW_SOURCE_ROOTS entry that cannot be used; the message names it."""


@dataclass(frozen=True)
class SourceRoots:
    """Allowed local folders (resolved) and NAS prefixes ("" is the whole NAS)."""

    local: tuple[Path, ...] = ()
    nas: tuple[str, ...] = ()

    def allows_nas(self, rel: str) -> bool:
        parts = PurePosixPath(rel.strip("/")).parts
        return ".." not in parts and any(
            parts[: len(PurePosixPath(p).parts)] == PurePosixPath(p).parts for p in self.nas
        )

    def allows_local(self, path: str | os.PathLike[str]) -> bool:
        """True when the file, with every link and `..` resolved, lies under a local root."""
        try:
            real = Path(os.path.realpath(path))
        except (OSError, ValueError):
            return False
        return any(real == root or real.is_relative_to(root) for root in self.local)

    def problem(self, name: str) -> str | None:
        """Why a source name (as given to a run) may not be read, or None."""
        if name.startswith(NAS_PREFIX):
            return None if self.allows_nas(name[len(NAS_PREFIX) :]) else NOT_ALLOWED
        if name.startswith(SFTP_PREFIX):
            return NOT_ALLOWED  # another server: only the NAS and local roots are allowed
        if is_url(name):  # public addresses only, unless a network is allowed (ingest.urls)
            return None
        return None if self.allows_local(name) else NOT_ALLOWED

    def check(self, name: str) -> str:
        if self.problem(name):
            raise SourceNotAllowed(f"{name}: {NOT_ALLOWED}")
        return name


def parse_source_roots(text: str, user_id: str, nas_folder: Path | None = None) -> SourceRoots:
    """`nas:uploads/{user_id},/srv/uploads` for this seller. With a NAS that is a local
    folder, `nas:` roots are also its local folders (a `nas:` name is read as a local path)."""
    local: list[Path] = []
    nas: list[str] = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        entry = raw.replace("{user_id}", user_id)
        if "{" in entry or "}" in entry:
            raise BadSourceRoot(f"source root {raw!r}: only {{user_id}} may be filled in")
        if entry.startswith(NAS_PREFIX):
            rel = entry[len(NAS_PREFIX) :].strip("/")
            if ".." in PurePosixPath(rel).parts:
                raise BadSourceRoot(f"source root {raw!r}: '..' is not allowed")
            nas.append(rel)
            if nas_folder is not None:
                local.append(Path(os.path.realpath(nas_folder / rel)))
        elif os.path.isabs(entry):
            local.append(Path(os.path.realpath(entry)))
        else:
            raise BadSourceRoot(f"source root {raw!r}: give an absolute folder or nas:<prefix>")
    return SourceRoots(tuple(local), tuple(nas))


def default_deployment_roots(inbox: str) -> str:
    """Runs started by a deployment, when no roots are set: the inbox and the NAS."""
    return ",".join(r for r in (inbox, NAS_PREFIX) if r)
