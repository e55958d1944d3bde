"""The inbox a scheduled sweep ingests: which files are complete, and where each one goes.

Layout, one folder per seller:

    inbox/<user_id>/...                 drop design files here (sub-folders are fine)
    inbox/<user_id>/processed/          stored designs and duplicates, moved here after the upload
    inbox/<user_id>/quarantine/         rejected files, each with <name>.reason.txt beside it

A file is taken when it is complete: its size and mtime have stayed the same for
`settle_seconds` by the clock (its mtime is that old, or the sweeps have seen the same size
and mtime for that long), however many looks there were: a writer that pauses longer than
the gap between two sweeps is not mistaken for a finished one. A file rejected as bad that
changed after the scan's look, or was rejected as truncated while still inside its settle
time, waits for a later sweep instead of quarantine. Files are moved only after the
upload recorded them, so a crash mid-sweep loses nothing: the next sweep uploads them again
(exact duplicates, stored once) and moves them then.

The inbox is a local folder (`LocalInboxFolder`: a per-seller file lock) or a folder on the
SFTP NAS (`NasInboxFolder`, swept as `nas:inbox`: SFTP stat and posix-rename, the per-seller
lock held in PostgreSQL so sweeps on several machines exclude each other).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import posixpath
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

from designflow.images.fingerprint import IMAGE_EXTENSIONS
from designflow.storage.nas import Nas, NasEntry, check_user_id, links_inside

if TYPE_CHECKING:
    from designflow.ingest.roots import SourceRoots
    from designflow.resources import Resources

PROCESSED = "processed"
QUARANTINE = "quarantine"
STATE_FILE = ".sweep-state.json"
LOCK_FILE = ".sweep.lock"
RESERVED = {PROCESSED, QUARANTINE}


class SweepBusy(RuntimeError):
    """Another sweep of the same inbox folder is running."""


@dataclass(frozen=True)
class InboxScan:
    ready: list[str]
    waiting: list[str]  # still being written: left for the next sweep
    outside: list[str]  # symlinks that point outside the inbox: quarantined, never followed
    looks: dict[str, tuple[int, float]] = field(default_factory=dict)  # name -> size, mtime


class InboxFolder(Protocol):
    """One seller's inbox folder. Files are named as the upload reads them: a local path,
    or `nas:<path>` for an inbox on the NAS."""

    label: str  # how the folder is shown (logs, the sweep's outcome table)

    def lock(self) -> ContextManager[None]:
        """Held for the whole sweep; raises SweepBusy when another sweep holds it."""
        ...

    def files(self) -> list[NasEntry]:
        """Design files in the folder (sub-folders too, not processed/ or quarantine/),
        each entry's path being the file's name."""
        ...

    def look(self, name: str) -> tuple[int, float] | None: ...

    def exists(self, name: str) -> bool: ...

    def relative(self, name: str) -> str: ...

    def move(self, name: str, dest: str) -> str:
        """Move a file to `dest` (relative to the folder); returns its new name."""
        ...

    def unlink(self, name: str) -> None: ...

    def write_text(self, relative: str, text: str) -> None: ...

    def taken(self, relative: str) -> bool:
        """Whether a file exists at `relative` (inside the folder)."""
        ...

    def read_state(self) -> str | None: ...

    def write_state(self, text: str) -> None: ...


def _design_name(relative: str) -> bool:
    parts = PurePosixPath(relative).parts
    return (
        bool(parts)
        and parts[0] not in RESERVED
        and not any(p.startswith(".") for p in parts)
        and PurePosixPath(relative).suffix.lower() in IMAGE_EXTENSIONS
    )


class LocalInboxFolder:
    """A seller's inbox folder on this machine's disk (or a mount)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.label = str(folder)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive, non-blocking file lock: overlapping sweeps are refused."""
        with sweep_lock(self.folder):
            yield

    def files(self) -> list[NasEntry]:
        out = []
        root = self.folder.resolve()
        for path in _candidates(self.folder):
            try:
                if path.is_symlink() and not links_inside(path, root):
                    out.append(NasEntry(str(path), 0, 0.0, link_outside=True))
                    continue
                info = path.stat()
            except OSError:
                continue  # vanished between listing and looking: nothing to do
            out.append(NasEntry(str(path), info.st_size, info.st_mtime))
        return out

    def look(self, name: str) -> tuple[int, float] | None:
        try:
            info = os.stat(name)
        except OSError:
            return None
        return info.st_size, info.st_mtime

    def exists(self, name: str) -> bool:
        return Path(name).exists() or Path(name).is_symlink()

    def relative(self, name: str) -> str:
        return str(_relative(self.folder, Path(name)))

    def move(self, name: str, dest: str) -> str:
        target = self.folder / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(name, target)
        return str(target)

    def unlink(self, name: str) -> None:
        Path(name).unlink(missing_ok=True)

    def write_text(self, relative: str, text: str) -> None:
        target = self.folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")

    def taken(self, relative: str) -> bool:
        return (self.folder / relative).exists()

    def read_state(self) -> str | None:
        try:
            return (self.folder / STATE_FILE).read_text()
        except OSError:
            return None

    def write_state(self, text: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        temp = self.folder / (STATE_FILE + ".tmp")
        temp.write_text(text)
        os.replace(temp, self.folder / STATE_FILE)


class NasInboxFolder:
    """A seller's inbox folder on the SFTP NAS, named `nas:<prefix>/...`. The lock comes
    from the caller (a PostgreSQL advisory lock: every machine sees the same one)."""

    def __init__(self, nas: Nas, prefix: str, lock: Callable[[], ContextManager[None]]) -> None:
        self.nas = nas
        self.prefix = prefix.strip("/")
        self.label = f"nas:{self.prefix}"
        self._lock = lock

    def lock(self) -> ContextManager[None]:
        return self._lock()

    def _path(self, name: str) -> str:
        return name[len("nas:") :] if name.startswith("nas:") else name

    def files(self) -> list[NasEntry]:
        out = []
        for entry in self.nas.entries(self.prefix):
            relative = posixpath.relpath(entry.path, self.prefix)
            if _design_name(relative):
                out.append(
                    NasEntry(f"nas:{entry.path}", entry.size, entry.mtime, entry.link_outside)
                )
        return out

    def look(self, name: str) -> tuple[int, float] | None:
        entry = self.nas.stat(self._path(name))
        return None if entry is None else (entry.size, entry.mtime)

    def exists(self, name: str) -> bool:
        return self.nas.stat(self._path(name)) is not None

    def relative(self, name: str) -> str:
        path = self._path(name)
        if path.startswith(self.prefix + "/"):
            return path[len(self.prefix) + 1 :]
        return posixpath.basename(path)

    def move(self, name: str, dest: str) -> str:
        target = f"{self.prefix}/{dest}"
        self.nas.move(self._path(name), target)
        return f"nas:{target}"

    def unlink(self, name: str) -> None:
        self.nas.remove(self._path(name))

    def write_text(self, relative: str, text: str) -> None:
        self.nas.write_small(f"{self.prefix}/{relative}", text.encode("utf-8"))

    def taken(self, relative: str) -> bool:
        return self.nas.stat(f"{self.prefix}/{relative}") is not None

    def read_state(self) -> str | None:
        try:
            return self.nas.read_bytes(f"{self.prefix}/{STATE_FILE}").decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def write_state(self, text: str) -> None:
        self.nas.write_small(f"{self.prefix}/{STATE_FILE}", text.encode("utf-8"))


@contextlib.contextmanager
def sweep_lock(folder: Path) -> Iterator[None]:
    """An exclusive, non-blocking lock per user folder: overlapping sweeps are refused."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "a+")  # noqa: SIM115
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepBusy(f"another sweep of {folder} is running") from None
        yield
    finally:
        handle.close()  # releases the lock, also when the process dies


def open_inbox(
    inbox: str, user_id: str, resources: Resources, roots: SourceRoots | None
) -> InboxFolder:
    """A seller's inbox folder: `nas:<path>` on the NAS (a folder under a local-folder NAS),
    anything else a local path. `roots`: the folders this run may read (None: any)."""
    from designflow.ingest.sources import NAS_PREFIX

    check_user_id(user_id)
    name = f"{inbox.rstrip('/')}/{user_id}"
    if roots is not None:
        roots.check(name)
    if not inbox.startswith(NAS_PREFIX):
        return LocalInboxFolder(Path(inbox) / user_id)
    where = resources.locate(name)
    if isinstance(where, Path):
        return LocalInboxFolder(where)

    @contextlib.contextmanager
    def held_in_postgres() -> Iterator[None]:
        # Sweeps on other machines see this lock; a file lock on the NAS would not be
        # reliable over SFTP (no flock) and would outlive a crashed sweeper.
        with resources.catalog().exclusive(
            f"designflow sweep {where.nas.url} {where.path}"
        ) as held:
            if not held:
                raise SweepBusy(f"another sweep of nas:{where.path} is running")
            yield

    return NasInboxFolder(where.nas, where.path, held_in_postgres)


def inbox_users(inbox: str, resources: Resources) -> list[str]:
    """The seller folders in the inbox (one sweep each when no seller is named)."""
    from designflow.ingest.sources import NAS_PREFIX

    if inbox.startswith(NAS_PREFIX):
        where = resources.locate(inbox)
        if not isinstance(where, Path):
            return where.nas.folders(where.path)
        root = where
    else:
        root = Path(inbox)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_inbox(folder: InboxFolder, settle_seconds: float, now: float | None = None) -> InboxScan:
    now = time.time() if now is None else now
    previous = _load_state(folder)
    current: dict[str, list[float]] = {}
    ready, waiting, outside, looks = [], [], [], {}
    for entry in folder.files():
        if entry.link_outside:
            outside.append(entry.path)
            continue
        key = folder.relative(entry.path)
        seen = previous.get(key)
        # Since when the sweeps have seen this size and mtime (now, if it is new or changed).
        same = seen is not None and seen[:2] == [entry.size, entry.mtime] and len(seen) > 2
        stable_since = seen[2] if same else now
        current[key] = [entry.size, entry.mtime, stable_since]
        looks[entry.path] = (entry.size, entry.mtime)
        unchanged_for = max(now - entry.mtime, now - stable_since)
        # An empty file may be one just created: it waits for the settle time like any other.
        (ready if unchanged_for >= settle_seconds else waiting).append(entry.path)
    folder.write_state(json.dumps(current))
    return InboxScan(sorted(ready), sorted(waiting), sorted(outside), looks)


def still_being_written(
    folder: InboxFolder, scan: InboxScan, name: str, reason: str, settle_seconds: float
) -> bool:
    """A rejected file that should wait rather than go to quarantine: it changed after the
    scan looked at it, or it was found truncated while it had changed within the settle time
    (a writer's pause can outlast the sweeps' looks)."""
    now = folder.look(name)
    if now is None:
        return False
    if scan.looks.get(name) != now:
        return True
    return "truncated" in reason and time.time() - now[1] < settle_seconds


def _candidates(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        if here == folder:
            dirnames[:] = [d for d in dirnames if d not in RESERVED and not d.startswith(".")]
        else:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            yield here / name


def move_processed(folder: InboxFolder, name: str) -> str:
    return folder.move(name, _free_name(folder, PROCESSED, folder.relative(name)))


def move_quarantined(folder: InboxFolder, name: str, reason: str, link: bool = False) -> str:
    """The reason goes first, so a crash between the two never leaves a file unexplained."""
    target = _free_name(folder, QUARANTINE, folder.relative(name))
    folder.write_text(target + ".reason.txt", f"{posixpath.basename(name)}: {reason}\n")
    if link:
        folder.unlink(name)  # never follow it out of the inbox; the sidecar says what it was
        return target
    return folder.move(name, target)


def _relative(folder: Path, source: Path) -> Path:
    try:
        return source.relative_to(folder)
    except ValueError:
        return Path(source.name)


def _free_name(folder: InboxFolder, dest_root: str, relative: str) -> str:
    """`dest_root/relative`, or with -1, -2, ... before the extension when taken."""
    stem, suffix = posixpath.splitext(relative)
    target, n = f"{dest_root}/{relative}", 1
    while folder.taken(target) or folder.taken(target + ".reason.txt"):
        target = f"{dest_root}/{stem}-{n}{suffix}"
        n += 1
    return target


def _load_state(folder: InboxFolder) -> dict[str, list[float]]:
    # [size, mtime, seen unchanged since]; a state written by an older version has no third
    # field, and its files start their settle time again.
    try:
        data = json.loads(folder.read_state() or "{}")
        return {k: list(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except ValueError:
        return {}


# The reason a symbolic link out of the inbox (or a loop) is quarantined with.
LINK_NOT_FOLLOWED = "symbolic link pointing outside the inbox or back at itself: not followed"


def file_sweep_outcomes(
    folder: InboxFolder, report: dict, scan: InboxScan, settle_seconds: float
) -> dict:
    """Move what the upload accounted for: stored and duplicates to processed/, rejected to
    quarantine/ with the reason, unless the file was still being written (it waits). Failed
    files stay for the next sweep. Returns the names moved or left, by fate, and one outcome
    row per file (`rows`)."""
    moved: dict[str, list] = {"processed": [], "quarantined": [], "left": [], "waiting": []}
    rows: list[dict] = []

    def row(name: str, outcome: str, detail: str) -> None:
        rows.append({"file": folder.relative(name), "outcome": outcome, "detail": detail})

    for kind, entries in (("stored", report["stored"]), ("duplicate", report["duplicates"])):
        for entry in (e for e in entries if folder.exists(e["file"])):
            moved["processed"].append(move_processed(folder, entry["file"]))
            of = f"duplicate of design {entry['duplicate_of']}" if kind == "duplicate" else ""
            row(entry["file"], kind, of)
    for entry in report["rejected"]:
        _file_rejected(folder, scan, entry["file"], entry["reason"], settle_seconds, moved, row)
    for name in scan.outside:
        moved["quarantined"].append(move_quarantined(folder, name, LINK_NOT_FOLLOWED, link=True))
        row(name, "quarantined", LINK_NOT_FOLLOWED)
    for entry in report.get("failed", []):
        moved["left"].append(entry["file"])
        row(entry["file"], "left for retry", entry["reason"])
    for name in scan.waiting:
        row(name, "waiting", "still being written")
    moved["rows"] = rows
    return moved


def _file_rejected(
    folder: InboxFolder, scan: InboxScan, name: str, reason: str, settle_seconds: float,
    moved: dict[str, list], row: Callable[[str, str, str], None],
) -> None:  # fmt: skip
    """A rejected file waits while it may still be being written, else goes to quarantine."""
    if still_being_written(folder, scan, name, reason, settle_seconds):
        moved["waiting"].append(name)
        row(name, "waiting", f"still being written ({reason})")
    elif folder.exists(name):
        moved["quarantined"].append(move_quarantined(folder, name, reason))
        row(name, "quarantined", reason)
