"""The inbox a scheduled sweep ingests: which files are complete, and where each one goes.

Layout, one folder per seller:

    inbox/<user_id>/...                 drop design files here (sub-folders are fine)
    inbox/<user_id>/processed/          stored designs and duplicates, moved here after the upload
    inbox/<user_id>/quarantine/         rejected files, each with <name>.reason.txt beside it

A file is taken when it is complete: its size and mtime are the same as at the previous
sweep's look, or it has not changed for `settle_seconds`. Files are moved only after the
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
from dataclasses import dataclass
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
    ready, waiting, outside = [], [], []
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
        look = [info.st_size, info.st_mtime]
        current[key] = look
        unchanged = previous.get(key) == look
        settled = now - info.st_mtime >= settle_seconds
        # An empty file may be one just created: it waits for the settle time either way.
        complete = settled or (unchanged and info.st_size > 0)
        (ready if complete else waiting).append(str(path))
    _save_state(folder, current)
    return InboxScan(sorted(ready), sorted(waiting), sorted(outside))


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
    try:
        data = json.loads((folder / STATE_FILE).read_text())
        return {k: list(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_state(folder: Path, state: dict[str, list[float]]) -> None:
    temp = folder / (STATE_FILE + ".tmp")
    temp.write_text(json.dumps(state))
    os.replace(temp, folder / STATE_FILE)
