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
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from designflow.images.fingerprint import IMAGE_EXTENSIONS

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
    looks: dict[str, tuple[int, float]] = field(default_factory=dict)  # path -> size, mtime

    def changed_since(self, path: str) -> bool:
        """True when the file is not as the scan saw it (still being written)."""
        try:
            info = os.stat(path)
        except OSError:
            return False
        return self.looks.get(path) != (info.st_size, info.st_mtime)


def user_folder(inbox: str | os.PathLike[str], user_id: str) -> Path:
    from designflow.storage.nas import check_user_id

    return Path(inbox) / check_user_id(user_id)


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


def scan_inbox(folder: Path, settle_seconds: float, now: float | None = None) -> InboxScan:
    now = time.time() if now is None else now
    previous = _load_state(folder)
    current: dict[str, list[float]] = {}
    ready, waiting, outside, looks = [], [], [], {}
    root = folder.resolve()
    for path in _candidates(folder):
        try:
            if path.is_symlink() and root not in path.resolve().parents:
                outside.append(str(path))
                continue
            info = path.stat()
        except OSError:
            continue  # vanished between listing and looking: nothing to do
        key = str(path.relative_to(folder))
        seen = previous.get(key)
        # Since when the sweeps have seen this size and mtime (now, if it is new or changed).
        same = seen is not None and seen[:2] == [info.st_size, info.st_mtime] and len(seen) > 2
        stable_since = seen[2] if same else now
        current[key] = [info.st_size, info.st_mtime, stable_since]
        looks[str(path)] = (info.st_size, info.st_mtime)
        unchanged_for = max(now - info.st_mtime, now - stable_since)
        # An empty file may be one just created: it waits for the settle time like any other.
        (ready if unchanged_for >= settle_seconds else waiting).append(str(path))
    _save_state(folder, current)
    return InboxScan(sorted(ready), sorted(waiting), sorted(outside), looks)


def still_being_written(scan: InboxScan, path: str, reason: str, settle_seconds: float) -> bool:
    """A rejected file that should wait rather than go to quarantine: it changed after the
    scan looked at it, or it was found truncated while it had changed within the settle time
    (a writer's pause can outlast the sweeps' looks)."""
    if scan.changed_since(path):
        return True
    if "truncated" not in reason:
        return False
    try:
        return time.time() - os.stat(path).st_mtime < settle_seconds
    except OSError:
        return False


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


def move_processed(folder: Path, path: str) -> Path:
    return _move(folder, Path(path), folder / PROCESSED)


def move_quarantined(folder: Path, path: str, reason: str) -> Path:
    """The reason goes first, so a crash between the two never leaves a file unexplained."""
    source = Path(path)
    target = _free_name(folder / QUARANTINE, _relative(folder, source))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.with_name(target.name + ".reason.txt").write_text(
        f"{source.name}: {reason}\n", encoding="utf-8"
    )
    if source.is_symlink():
        source.unlink()  # never follow it out of the inbox; the sidecar says what it was
        return target
    os.replace(source, target)
    return target


def _move(folder: Path, source: Path, dest_root: Path) -> Path:
    target = _free_name(dest_root, _relative(folder, source))
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    return target


def _relative(folder: Path, source: Path) -> Path:
    try:
        return source.relative_to(folder)
    except ValueError:
        return Path(source.name)


def _free_name(dest_root: Path, relative: Path) -> Path:
    target = dest_root / relative
    n = 1
    while target.exists() or target.with_name(target.name + ".reason.txt").exists():
        target = dest_root / relative.with_name(f"{relative.stem}-{n}{relative.suffix}")
        n += 1
    return target


def _load_state(folder: Path) -> dict[str, list[float]]:
    # [size, mtime, seen unchanged since]; a state written by an older version has no third
    # field, and its files start their settle time again.
    try:
        data = json.loads((folder / STATE_FILE).read_text())
        return {k: list(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_state(folder: Path, state: dict[str, list[float]]) -> None:
    temp = folder / (STATE_FILE + ".tmp")
    temp.write_text(json.dumps(state))
    os.replace(temp, folder / STATE_FILE)
