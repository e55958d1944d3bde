"""Turn what the seller pointed at into design files, and the files into batches."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from designflow.images.fingerprint import IMAGE_EXTENSIONS
from designflow.ingest.roots import NOT_ALLOWED, SourceRoots
from designflow.ingest.sources import BadSourceName, RemoteLocation, is_remote
from designflow.storage.nas import NasError


@dataclass(frozen=True)
class CandidateFile:
    path: str
    size: int


@dataclass(frozen=True)
class UnusablePath:
    path: str
    reason: str
    skipped: bool = False  # not a design at all (another format, hidden): listed, not an error


# Formats sellers keep beside their designs, named in the reason a file is skipped.
_FORMAT_NAMES = {".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP", ".pdf": "PDF", ".psd": "PSD",
                 ".svg": "SVG", ".ai": "Illustrator", ".eps": "EPS", ".heic": "HEIC"}  # fmt: skip
ACCEPTED = "PNG, JPEG, WebP or GIF"


def skip_reason(name: str) -> str | None:
    """Why a file found in a folder is not taken as a design, or None to take it."""
    if name.startswith("."):
        return "hidden file"
    suffix = Path(name).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return None
    kind = _FORMAT_NAMES.get(suffix) or (
        f"a {suffix} file" if suffix else "a file without extension"
    )
    return f"{kind} is not an accepted format ({ACCEPTED})"


def collect_design_files(
    paths: Iterable[str | os.PathLike[str]],
    locate: Callable[[str], RemoteLocation | Path] | None = None,
    allowed: SourceRoots | None = None,
) -> tuple[list[CandidateFile], list[UnusablePath]]:
    """Files named directly are taken whatever their extension (decoding decides); folders
    are walked recursively for image extensions, skipping hidden entries. Paths that cannot
    be used are returned with the reason instead of stopping the upload. `nas:` and
    `sftp://` names are listed through `locate` (which says where they point). With
    `allowed`, a name outside the allowed source folders is refused, and so is a local file
    found in an allowed folder whose links lead out of it."""
    files: list[CandidateFile] = []
    unusable: list[UnusablePath] = []
    for raw in paths:
        if allowed is not None and allowed.problem(os.fspath(raw)):
            unusable.append(UnusablePath(os.fspath(raw), NOT_ALLOWED))
            continue
        if isinstance(raw, str) and is_remote(raw):
            where = _locate(raw, locate, unusable)
            if isinstance(where, RemoteLocation):
                found, problems = _list_remote(raw, where)
                files.extend(found)
                unusable.extend(problems)
                continue
            if where is None:
                continue
            raw = where
        found, problems = _collect_local(Path(raw))
        if allowed is not None:
            outside = [f for f in found if not allowed.allows_local(f.path)]
            found = [f for f in found if f not in outside]
            problems += [UnusablePath(f.path, NOT_ALLOWED) for f in outside]
        files.extend(found)
        unusable.extend(problems)
    return files, unusable


def _collect_local(path: Path) -> tuple[list[CandidateFile], list[UnusablePath]]:
    """A local file or folder named by the seller: its files, or why it cannot be used."""
    try:
        if path.is_dir():
            found, problems = _walk_folder(path)
            if not found and not any(not p.skipped for p in problems):
                problems.append(UnusablePath(str(path), "folder contains no design files"))
            return found, problems
        if path.exists():
            return [CandidateFile(str(path), _size(path))], []
        if path.is_symlink():
            return [], [UnusablePath(str(path), _named_link_problem(path))]
        return [], [UnusablePath(str(path), "no such file or folder")]
    except PermissionError:
        return [], [UnusablePath(str(path), "cannot read: permission denied")]
    except (RuntimeError, OSError) as exc:  # whatever the file system says: one outcome
        return [], [UnusablePath(str(path), _unresolvable(exc))]


def _named_link_problem(path: Path) -> str:
    try:
        path.resolve(strict=True)
    except (RuntimeError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            return "symbolic link to a file that does not exist"
        return _unresolvable(exc)
    return "cannot read the link's target"


def _locate(name: str, locate, unusable: list[UnusablePath]) -> RemoteLocation | Path | None:
    if locate is None:
        unusable.append(
            UnusablePath(name, "nas:, sftp:// and https:// sources need the NAS settings")
        )
        return None
    try:
        return locate(name)
    except (BadSourceName, NasError) as exc:
        unusable.append(UnusablePath(name, str(exc)))
        return None


def _list_remote(
    name: str, where: RemoteLocation
) -> tuple[list[CandidateFile], list[UnusablePath]]:
    try:
        entries = where.nas.entries(where.path)
    except Exception as exc:  # the NAS unreachable: say so for this name, go on with the rest
        return [], [UnusablePath(name, f"cannot list it on the NAS: {exc}")]
    if not entries:
        return [], [UnusablePath(name, "no such file or folder on the NAS")]
    if len(entries) == 1 and entries[0].path == where.path:  # a file named directly
        return [CandidateFile(name, entries[0].size)], []
    found, problems = [], []
    for entry in entries:
        if entry.link_outside:
            problems.append(
                UnusablePath(
                    where.name(entry.path), f"symbolic link to a file outside {name}: not followed"
                )
            )
        elif why := skip_reason(Path(entry.path).name):
            problems.append(UnusablePath(where.name(entry.path), why, skipped=True))
        else:
            found.append(CandidateFile(where.name(entry.path), entry.size))
    if not found and not any(not p.skipped for p in problems):
        problems.append(UnusablePath(name, "folder contains no design files"))
    return found, problems


def _walk_folder(folder: Path) -> tuple[list[CandidateFile], list[UnusablePath]]:
    found: list[CandidateFile] = []
    problems: list[UnusablePath] = []

    def on_error(exc: OSError) -> None:
        problems.append(
            UnusablePath(str(exc.filename or folder), f"cannot list folder: {exc.strerror}")
        )

    inside = folder.resolve()
    for root, dirs, names in os.walk(folder, onerror=on_error):
        problems += [UnusablePath(str(Path(root) / d), "hidden folder", skipped=True)
                     for d in sorted(dirs) if d.startswith(".")]  # fmt: skip
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if why := skip_reason(name):
                problems.append(UnusablePath(str(Path(root) / name), why, skipped=True))
                continue
            entry = _folder_entry(Path(root) / name, inside, folder)
            (found if isinstance(entry, CandidateFile) else problems).append(entry)  # type: ignore[arg-type]
    return found, problems


def _folder_entry(full: Path, inside: Path, folder: Path) -> CandidateFile | UnusablePath:
    """One file of a walked folder: taken, or refused with the reason (never an exception:
    the rest of the folder goes on)."""
    try:
        if full.is_symlink() and not full.resolve().is_relative_to(inside):
            # A folder upload takes what is in the folder; a link out of it could read any
            # file the worker can (another seller's, the worker's own).
            return UnusablePath(
                str(full), f"symbolic link to a file outside {folder}: not followed"
            )
    except (RuntimeError, OSError) as exc:
        # Python 3.11 raises RuntimeError("Symlink loop from ...") for a link to itself or
        # a pair pointing at each other; later versions raise OSError(ELOOP).
        return UnusablePath(str(full), _unresolvable(exc))
    return CandidateFile(str(full), _size(full))


def _unresolvable(exc: BaseException) -> str:
    if isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP:
        return "symbolic link loop (it points back at itself): not followed"
    return f"cannot resolve the link: {getattr(exc, 'strerror', None) or exc}"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # the fingerprint step reports why it cannot be read


# Batches sized by work: the file count caps a batch only once it holds this many bytes.
# Each batch costs ~0.5 CPU-s of task runs, lookups and log lines whatever it holds: 5,000
# PNGs of 64x64 in batches of 20 took 105-140 s (21-28 ms a file) for well under 1 ms of
# decoding each. 20 files of 1200x1500 (1-5 MB each) still make a batch of 20.
SMALL_FILES_BATCH_BYTES = 16 * 1024 * 1024
# However small the files, a batch holds at most this many (its near lookup asks up to 3
# queries a file in one statement; its fingerprints are kept until it is recorded).
MAX_FILES_PER_BATCH = 1000


def plan_batches(
    files: Sequence[CandidateFile], max_bytes: int, max_images: int, by_work: bool = False
) -> list[list[CandidateFile]]:
    """Consecutive batches of at most `max_images` files and `max_bytes` bytes, in input
    order. A single file larger than `max_bytes` travels alone rather than being refused
    here: the size cap is the fingerprint step's business. `by_work` (no file count was
    asked for): small files go many to a batch, `max_images` applying once a batch holds
    SMALL_FILES_BATCH_BYTES, up to MAX_FILES_PER_BATCH."""
    if max_bytes <= 0 or max_images <= 0:
        raise ValueError("batch limits must be positive")
    batches: list[list[CandidateFile]] = []
    current: list[CandidateFile] = []
    current_bytes = 0
    for item in files:
        too_many = len(current) >= max_images
        if by_work:
            too_many = (too_many and current_bytes >= SMALL_FILES_BATCH_BYTES) or (
                len(current) >= MAX_FILES_PER_BATCH
            )
        too_big = current and current_bytes + item.size > max_bytes
        if too_many or too_big:
            batches.append(current)
            current, current_bytes = [], 0
        current.append(item)
        current_bytes += item.size
    if current:
        batches.append(current)
    return batches
