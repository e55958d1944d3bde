"""Fingerprinting as a Prefect task."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from designflow.images.fingerprint import Fingerprint
from designflow.ingest.report import FailedFile, RejectedFile
from designflow.ingest.sources import (
    fingerprint_local_files,
    fingerprint_source,
    is_remote,
    local_sha256,
)
from designflow.orchestration.resources import current, current_settings
from designflow.processes import exit_with_parent
from designflow.settings import ImageLimits


def _run_name() -> str:
    from prefect.runtime import task_run

    return f"fingerprint {Path(task_run.parameters.get('path', '?')).name}"


# No retries: a file that cannot be decoded will not decode on a second try, and a file that
# cannot be read is the seller's to fix. No cache: a path's content can change between runs.
# No tags: a tagged task asks the server for concurrency slots on every run (~0.5 s each).
@task(
    name="fingerprint-design", task_run_name=_run_name, cache_policy=NO_CACHE, persist_result=False
)
def fingerprint_file(
    path: str, staging: str | None = None
) -> Fingerprint | RejectedFile | FailedFile:
    return fingerprint_one(path, current_settings().limits, staging)


def fingerprint_one(
    path: str, limits: ImageLimits, staging: str | None, known: frozenset[str] = frozenset()
) -> Fingerprint | RejectedFile | FailedFile:
    return fingerprint_source(path, limits, staging, current().locate, known.__contains__)


def _batch_run_name() -> str:
    from prefect.runtime import task_run

    paths = task_run.parameters.get("paths") or []
    first = Path(paths[0]).name if paths else "?"
    return f"fingerprint {len(paths)} file(s) from {first}"


# One task per batch, its files on the run's fingerprint threads (decoding releases the GIL):
# a task run per file cost the server ~3 events per design, and after a 500-design upload
# the default SQLite server took ~1 min to catch up (the next test's runs waited). Each file
# still gets its own outcome (a Fingerprint or a RejectedFile) and its own row in the
# outcome table.
@task(
    name="fingerprint-batch", task_run_name=_batch_run_name, cache_policy=NO_CACHE,
    persist_result=False,
)  # fmt: skip
def fingerprint_files_in_threads(
    paths: list[str], staging: str | None = None, user_id: str | None = None
) -> list[Fingerprint | RejectedFile | FailedFile]:
    limits = current_settings().limits
    with fingerprint_threads() as pool:
        known = known_contents(pool, paths, user_id, limits) if user_id else frozenset()
        if many_small_local_files(paths):
            try:
                results = fingerprint_in_processes(paths, limits, known)
                get_run_logger().info("%d small files fingerprinted in worker processes",
                                      len(paths))  # fmt: skip
                return results
            except BrokenProcessPool as exc:  # a worker died (killed): the threads do it
                get_run_logger().warning("fingerprint processes failed (%s): using threads", exc)
        futures = [pool.submit(fingerprint_one, path, limits, staging, known) for path in paths]
        return [future.result() for future in futures]


# Many small files: fingerprinting them is Python work under the GIL, not decoding (which
# releases it), and threads fought over it: 400 PNGs of 64x64 took 7.5 ms a file on one
# thread, 11.8 on two, 15.5 on four. Processes, one per core, each take a share.
SMALL_FILE_BYTES = 256 * 1024
MIN_FILES_FOR_PROCESSES = 100


def many_small_local_files(paths: list[str]) -> bool:
    if len(paths) < MIN_FILES_FOR_PROCESSES or (os.cpu_count() or 1) < 2:
        return False
    if any(is_remote(p) for p in paths):
        return False
    sizes = []
    for path in paths:
        try:
            sizes.append(os.stat(path).st_size)
        except OSError:
            sizes.append(0)  # its fingerprint says why
    return sum(sizes) / len(sizes) <= SMALL_FILE_BYTES


def fingerprint_in_processes(
    paths: list[str], limits: ImageLimits, known: frozenset[str]
) -> list[Fingerprint | RejectedFile | FailedFile]:
    processes = _shared.processes()
    workers = processes._max_workers  # noqa: SLF001 (the pool's own size)
    chunk = max(1, -(-len(paths) // (workers * 4)))
    parts = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    done = processes.map(fingerprint_local_files, parts, [limits] * len(parts),
                         [known] * len(parts))  # fmt: skip
    return [result for part in done for result in part]


def known_contents(
    pool: ThreadPoolExecutor, paths: list[str], user_id: str, limits: ImageLimits
) -> frozenset[str]:
    """Known bytes first: the sha256s among these local files that the seller already has,
    one catalog lookup for the batch, so that those files are not decoded. A re-synced
    folder of 50 designs of 4500x5400 decoded every file again (0.93x the first upload's
    time); hashing reads ~1 GB/s, decoding ~30 MB/s. A lookup that fails decodes them all
    (the batch's own lookup reports the catalog)."""
    try:
        catalog = current().catalog()
    except Exception:  # the catalog cannot even be opened: decode them all
        return frozenset()
    if catalog.recently_unreachable():
        return frozenset()  # decode them all; the batch's own lookup reports the catalog
    digests = [d for d in pool.map(local_sha256, paths, [limits.max_file_bytes] * len(paths)) if d]
    if not digests:
        return frozenset()
    try:
        return frozenset(catalog.find_by_sha256(user_id, sorted(set(digests))))
    except Exception as exc:  # an optimisation only: the batch's own lookup retries
        get_run_logger().debug("known-bytes lookup skipped: %s", exc)
        return frozenset()


FINGERPRINT_THREADS = 4


class _SharedThreads:
    """One pool of fingerprint threads for every batch of a run (and for runs that overlap
    in one process), kept while any run holds it. Threads made per batch cost an upload of
    50 designs in 9 batches ~1.4 s (16.7 vs 15.3 s, bench.e2e --compare-env): at each
    batch's end the last file decoded with a core idle, and each new thread's decode buffer
    was allocated and faulted in again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._processes: ProcessPoolExecutor | None = None
        self._holders = 0

    def processes(self) -> ProcessPoolExecutor:
        """Worker processes for batches of many small files, made on first use and kept
        while the threads are held (spawned: ~0.5 s of imports each, once per run)."""
        with self._lock:
            if self._processes is None:
                self._processes = ProcessPoolExecutor(
                    max_workers=os.cpu_count() or 2,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=exit_with_parent,
                )
            return self._processes

    @contextlib.contextmanager
    def held(self) -> Iterator[ThreadPoolExecutor]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=FINGERPRINT_THREADS, thread_name_prefix="designflow-fingerprint"
                )
            self._holders += 1
            pool = self._pool
        try:
            yield pool
        finally:
            with self._lock:
                self._holders -= 1
                idle = self._holders == 0
                processes = self._processes if idle else None
                if idle:
                    self._pool = self._processes = None
            if idle:
                # The threads end with their decode buffers: nothing held between runs.
                pool.shutdown(wait=False)
                if processes is not None:
                    processes.shutdown(wait=True)


_shared = _SharedThreads()


def fingerprint_threads() -> contextlib.AbstractContextManager[ThreadPoolExecutor]:
    """The process's fingerprint threads, held for the duration of the `with`: a run holds
    them across its batches so that batch N+1's files start as soon as batch N's last ones
    leave a thread free."""
    return _shared.held()
