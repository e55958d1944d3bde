"""Where design files are stored: the `Nas` interface, content-addressed paths, a local folder.

Every backend publishes atomically: bytes go to a temporary name in the target folder, are
flushed to disk, then renamed into place, so a reader never sees a half-written design and a
retried upload of the same content is a no-op.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlparse

from designflow.errors import PermanentError, TransientError
from designflow.settings import Settings
from designflow.storage.unrecorded import LEDGER

CHUNK = 1024 * 1024
USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$"
_USER_ID = re.compile(USER_ID_PATTERN)


class NasError(TransientError):
    """The NAS refused or failed an operation (worth a retry when it is a connection error)."""


class NasFullError(NasError, PermanentError):
    """The NAS disk (or the seller's quota) is full: retrying sends the same bytes into it."""


class NasPermissionError(NasError, PermanentError):
    """The NAS refused to let us write there (permissions, a read-only share)."""


def refused_write(dest: str, exc: OSError) -> NasPermissionError:
    """The operation and the NAS folder, in one line: "cannot write users/x/designs/ab/:
    permission denied" (the bare PermissionError named neither)."""
    why = "read-only file system" if exc.errno == errno.EROFS else "permission denied"
    return NasPermissionError(f"cannot write {posixpath.dirname(dest)}/: {why}")


class SourceChangedError(PermanentError):
    """The file on disk no longer has the content that was fingerprinted."""

    def __init__(self, path: str, expected: str, actual: str) -> None:
        self.path, self.expected, self.actual = path, expected, actual
        super().__init__(
            f"{path}: file changed after it was fingerprinted (sha256 {actual[:12]}…, "
            f"expected {expected[:12]}…)"
        )

    def __reduce__(self):  # travels back from an upload worker process intact
        return (type(self), (self.path, self.expected, self.actual))


class SourceUnreadable(PermanentError):
    """A source file on the NAS vanished, changed while it was read, or is over the size
    cap: the seller's (or the web app's) to fix, not worth a retry."""


class InvalidUserId(ValueError):
    pass


def check_user_id(user_id: str) -> str:
    """User ids become path components: only a plain, short token is accepted."""
    if not isinstance(user_id, str) or not _USER_ID.match(user_id) or ".." in user_id:
        raise InvalidUserId(
            f"invalid user id {user_id!r}: use 1-128 letters, digits, '_', '-', '.', '@', "
            "starting with a letter or digit, without '..'"
        )
    return user_id


def design_path(user_id: str, sha256: str, extension: str) -> str:
    """Content-addressed path of a design, relative to the NAS root."""
    check_user_id(user_id)
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    if not re.fullmatch(r"[a-z0-9]{1,5}", extension):
        raise ValueError(f"bad extension {extension!r}")
    return f"{user_folder(user_id)}/designs/{sha256[:2]}/{sha256}.{extension}"


def mockup_path(user_id: str, design_sha256: str, template_id: str, mockup_sha256: str) -> str:
    """A design's mockup from one template, beside the design: one file per content."""
    folder = design_path(user_id, design_sha256, "png").removesuffix(".png")
    # `tee:front` (a print area of a template): no colon in a file name (SMB shares refuse it)
    return f"{folder}.mockups/{template_id.replace(':', '@')}-{mockup_sha256[:16]}.jpg"


def user_folder(user_id: str) -> str:
    """The NAS folder of everything stored for a seller."""
    return f"users/{check_user_id(user_id)}"


def is_design_file(user_id: str, path: str) -> bool:
    """Whether a NAS path is where design_path puts a design of this user (not a mockup)."""
    return path.startswith(f"{user_folder(user_id)}/designs/") and ".mockups/" not in path


@dataclass(frozen=True)
class PutResult:
    path: str
    written: bool  # False when the content was already there under that address
    bytes: int


def links_inside(link: Path, folder: Path) -> bool:
    """Whether a symbolic link leads to a file inside `folder`; a loop (a link to itself,
    two links to each other: RuntimeError on Python 3.11, ELOOP later) leads nowhere."""
    try:
        return link.resolve().is_relative_to(folder)
    except (RuntimeError, OSError):
        return False


@dataclass(frozen=True)
class NasEntry:
    """A file on the NAS as a listing sees it."""

    path: str  # relative to the NAS root
    size: int
    mtime: float
    link_outside: bool = False  # a symbolic link out of the listed folder (never followed)


class Nas(Protocol):
    url: str

    def put_file(
        self, source: str | os.PathLike[str], dest: str, expected_sha256: str
    ) -> PutResult:
        """Publish `source` at `dest` atomically, verifying its sha256 on the way."""
        ...

    def exists(self, dest: str) -> bool: ...

    def size(self, dest: str) -> int | None: ...

    def modified(self, dest: str) -> float | None:
        """Last modification (Unix time) of `dest`, None when it does not exist."""
        ...

    def remove(self, dest: str) -> None:
        """Delete one file (`verify --repair`: stale temporaries)."""
        ...

    def read_bytes(self, dest: str) -> bytes: ...

    def list_files(self, prefix: str = "") -> list[str]:
        """Relative paths of every file under `prefix`."""
        ...

    def entries(self, prefix: str) -> list[NasEntry]:
        """Every file under `prefix` (a folder, searched recursively; or one file) with its
        size and mtime, skipping hidden names; [] when nothing is there."""
        ...

    def stat(self, path: str) -> NasEntry | None: ...

    def folders(self, prefix: str) -> list[str]:
        """Names of the folders directly under `prefix` (not hidden); [] when none."""
        ...

    def fetch(self, path: str, target: Path, max_bytes: int) -> int:
        """Copy one file to the local `target`, reading it once; raise SourceUnreadable when
        it vanished, changed while read or is larger than `max_bytes`."""
        ...

    def move(self, source: str, dest: str) -> None:
        """Rename within the NAS (folders made as needed); refuses to replace a file."""
        ...

    def write_small(self, dest: str, data: bytes) -> None:
        """Write a small file in place (state, reasons), replacing it atomically."""
        ...

    def release(self) -> None:
        """End of a run: give back what the run held (idle connections)."""
        ...

    def close(self) -> None: ...


def copy_verified(src: BinaryIO, dst: BinaryIO, source_name: str, expected_sha256: str) -> int:
    """Stream `src` into `dst`, hashing as it goes; raise if the content is not what we expect."""
    digest = hashlib.sha256()
    total = 0
    while chunk := src.read(CHUNK):
        LEDGER.check(source_name)  # a stopping run's send ends here, not at the last byte
        digest.update(chunk)
        dst.write(chunk)
        total += len(chunk)
    actual = digest.hexdigest()
    if actual != expected_sha256:
        raise SourceChangedError(source_name, expected_sha256, actual)
    return total


class LocalNas:
    """A folder on a local or mounted filesystem."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.url = f"file://{self.root}"

    def _full(self, dest: str) -> Path:
        full = (self.root / dest).resolve()
        root = self.root.resolve()
        if root not in full.parents:
            raise NasError(f"path escapes the NAS root: {dest!r}")
        return full

    def put_file(
        self, source: str | os.PathLike[str], dest: str, expected_sha256: str
    ) -> PutResult:
        final = self._full(dest)
        source_size = os.stat(source).st_size
        if final.exists() and final.stat().st_size == source_size:
            return PutResult(dest, written=False, bytes=source_size)
        temp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.part")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            with open(source, "rb") as src, open(temp, "wb") as dst:
                size = copy_verified(src, dst, str(source), expected_sha256)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(temp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NasFullError(f"{dest}: the NAS disk is full ({exc.strerror})") from None
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and exc.filename != str(
                source
            ):
                raise refused_write(dest, exc) from None
            raise
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)
        return PutResult(dest, written=True, bytes=size)

    def exists(self, dest: str) -> bool:
        return self._full(dest).is_file()

    def size(self, dest: str) -> int | None:
        try:
            return self._full(dest).stat().st_size
        except FileNotFoundError:
            return None

    def modified(self, dest: str) -> float | None:
        try:
            return self._full(dest).stat().st_mtime
        except FileNotFoundError:
            return None

    def remove(self, dest: str) -> None:
        self._full(dest).unlink(missing_ok=True)

    def read_bytes(self, dest: str) -> bytes:
        return self._full(dest).read_bytes()

    def list_files(self, prefix: str = "") -> list[str]:
        base = self._full(prefix) if prefix else self.root.resolve()
        root = self.root.resolve()
        return sorted(str(p.relative_to(root)) for p in base.rglob("*") if p.is_file())

    def entries(self, prefix: str) -> list[NasEntry]:
        base = self._full(prefix)
        if base.is_file():
            info = base.stat()
            return [NasEntry(prefix, info.st_size, info.st_mtime)]
        if not base.is_dir():
            return []
        root = self.root.resolve()
        out = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                full = Path(dirpath) / name
                rel = str(full.relative_to(root))
                if full.is_symlink() and not links_inside(full, base):
                    out.append(NasEntry(rel, 0, 0.0, link_outside=True))
                    continue
                try:
                    info = full.stat()
                except OSError:
                    continue  # vanished between listing and looking
                out.append(NasEntry(rel, info.st_size, info.st_mtime))
        return out

    def folders(self, prefix: str) -> list[str]:
        base = self._full(prefix)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))

    def stat(self, path: str) -> NasEntry | None:
        try:
            info = self._full(path).stat()
        except FileNotFoundError:
            return None
        return NasEntry(path, info.st_size, info.st_mtime)

    def fetch(self, path: str, target: Path, max_bytes: int) -> int:
        try:
            with open(self._full(path), "rb") as src:
                return fetch_checked(src, os.fstat(src.fileno()), lambda: os.fstat(src.fileno()),
                                     path, target, max_bytes)  # fmt: skip
        except FileNotFoundError:
            raise SourceUnreadable(f"{path}: vanished before it could be read") from None

    def move(self, source: str, dest: str) -> None:
        final = self._full(dest)
        if final.exists():
            raise NasError(f"{dest} already exists on the NAS")
        final.parent.mkdir(parents=True, exist_ok=True)
        full = self.root / source  # a link is moved as itself, never resolved
        folder, root = full.parent.resolve(), self.root.resolve()
        if folder != root and root not in folder.parents:
            raise NasError(f"path escapes the NAS root: {source!r}")
        os.replace(full, final)

    def write_small(self, dest: str, data: bytes) -> None:
        final = self._full(dest)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.part")
        temp.write_bytes(data)
        os.replace(temp, final)

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


def fetch_checked(src: BinaryIO, before, stat_now, name: str, target: Path, max_bytes: int) -> int:
    """Stream an open source file to `target`; the size and mtime it had when opened must
    still hold when the last byte is read, or it changed while read (a writer still at it)."""
    if before.st_size > max_bytes:
        raise SourceUnreadable(
            f"{name}: {before.st_size:,} bytes is over the size limit of {max_bytes:,} bytes"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    total = 0
    with open(target, "wb") as dst:
        while chunk := src.read(CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise SourceUnreadable(f"{name}: grew past the size limit while being read")
            dst.write(chunk)
    after = stat_now()
    if total != before.st_size or (after.st_size, after.st_mtime) != (
        before.st_size,
        before.st_mtime,
    ):
        target.unlink(missing_ok=True)
        raise SourceUnreadable(
            f"{name}: changed while being read ({before.st_size:,} bytes when opened, "
            f"{total:,} read, {after.st_size:,} now)"
        )
    return total


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def nas_from_url(url: str, settings: Settings | None = None) -> Nas:
    """The NAS a URL names; SFTP credentials come from `settings` (the environment)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalNas(unquote(parsed.path))
    if parsed.scheme == "sftp":
        from designflow.storage.sftp import SftpCredentials, SftpTarget, sftp_nas

        settings = settings or Settings.from_env()
        target = SftpTarget.from_url(url)
        credentials = SftpCredentials.from_settings(settings)
        return sftp_nas(
            target, credentials, settings.nas_max_connections, settings.nas_upload_processes
        )
    raise NasSettingError(nas_url_problem(url) or f"DESIGNFLOW_NAS_URL: {url!r} is not usable")


class NasSettingError(NasError, PermanentError):
    """A NAS setting that cannot work (an unknown scheme, a missing key file): no retry."""


def nas_url_problem(url: str) -> str | None:
    """What is wrong with a NAS URL, in one line naming the setting; None when it is usable."""
    scheme = urlparse(url).scheme
    if scheme in ("file", "sftp"):
        return None
    if not scheme:
        return (
            f"DESIGNFLOW_NAS_URL: {url!r} is not a URL "
            f"(a local folder is file://{url if url.startswith('/') else '/' + url}; "
            "an SFTP NAS is sftp://user@host:port/path)"
        )
    return f"DESIGNFLOW_NAS_URL: the scheme {scheme!r} of {url!r} is not supported (use file:// or sftp://)"


def nas_settings_problem(settings: Settings) -> str | None:
    """Checked before any file is read: the NAS URL's scheme, and the SFTP key and
    known_hosts files it names. One line naming the setting, or None."""
    if settings.nas_block:
        return None  # the block holds them: checked when it is loaded
    problem = nas_url_problem(settings.nas_url)
    if problem or not settings.nas_url.startswith("sftp:"):
        return problem
    known_hosts = Path(settings.nas_known_hosts).expanduser()
    if not known_hosts.is_file():
        return f"DESIGNFLOW_NAS_KNOWN_HOSTS: {str(known_hosts)!r} does not exist (it must hold the NAS's host key)"
    if settings.nas_key_file and not Path(settings.nas_key_file).expanduser().is_file():
        return f"DESIGNFLOW_NAS_KEY_FILE: {settings.nas_key_file!r} does not exist"
    return None
