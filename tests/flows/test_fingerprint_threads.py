"""A run's batches share one pool of fingerprint threads, and the pool ends with the run."""

from __future__ import annotations

import threading
import time

from designflow.flows.upload import upload_designs
from designflow.tasks.fingerprint import FINGERPRINT_THREADS, fingerprint_threads
from tests import images
from tests.conftest import DesignflowEnv


def _fingerprint_threads_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("designflow-fingerprint")]


def _wait_gone(timeout: float = 10.0) -> list[threading.Thread]:
    deadline = time.monotonic() + timeout
    while _fingerprint_threads_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    return _fingerprint_threads_alive()


def test_holders_share_one_pool_until_the_last_lets_go() -> None:
    with fingerprint_threads() as first:
        with fingerprint_threads() as second:  # a second batch task, or an overlapping run
            assert second is first
            names = set(first.map(lambda _: threading.current_thread().name, range(40)))
        assert len(names) <= FINGERPRINT_THREADS
        # Still held by the first holder: the threads (and their decode buffers) stay.
        assert first.submit(lambda: 7).result() == 7
    assert _wait_gone() == []
    with fingerprint_threads() as again:
        assert again is not first  # a fresh pool for the next run


def test_upload_in_many_batches_uses_the_run_pool_and_leaves_no_thread(
    designflow_env: DesignflowEnv, monkeypatch
) -> None:
    folder = designflow_env.inputs / "many"
    folder.mkdir(parents=True)
    made = [images.write_png(folder / f"d{i}.png", seed=300 + i) for i in range(7)]
    seen: set[str] = set()
    real_start = threading.Thread.start

    def spy_start(thread: threading.Thread) -> None:
        if thread.name.startswith("designflow-fingerprint"):
            seen.add(thread.name)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", spy_start)
    report = upload_designs(paths=[str(folder)], user_id="pool", batch_max_images=2)
    monkeypatch.undo()
    assert len(report["stored"]) == len(made)
    assert report["batches"] == 4
    # Four batches, yet no more threads were ever started than one pool holds.
    assert 1 <= len(seen) <= FINGERPRINT_THREADS, seen
    assert _wait_gone() == []


def test_many_small_files_are_fingerprinted_in_processes_with_the_same_outcomes(
    designflow_env: DesignflowEnv, caplog
) -> None:
    """A batch of many small local files goes to worker processes (threads fought over the
    GIL for them); each file still gets its own outcome: stored, rejected with its reason,
    or an in-batch copy."""
    import logging

    folder = designflow_env.inputs / "small"
    folder.mkdir(parents=True)
    for i in range(110):
        images.write_png(folder / f"s{i:03}.png", seed=5000 + i, size=(48, 48))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (folder / "z-copy.png").write_bytes((folder / "s000.png").read_bytes())
    with caplog.at_level(logging.INFO):
        report = upload_designs(paths=[str(folder)], user_id="tiny")
    assert "112 small files fingerprinted in worker processes" in caplog.text
    assert report["batches"] == 1 and len(report["stored"]) == 110
    (rejected,) = report["rejected"]
    assert rejected["file"].endswith("broken.png") and rejected["reason"]
    (copy,) = report["duplicates"]
    assert copy["file"].endswith("z-copy.png") and copy["kind"] == "in-batch"
