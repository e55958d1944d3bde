"""Scale-out: fingerprinting on Dask (the Prefect server on PostgreSQL and several workers are
in test_several_machines.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from designflow.flows.upload import fingerprint_batch
from tests import images


def test_dask_runner_gives_the_same_fingerprints_as_threads_from_nas_sources(
    sftp_env, monkeypatch
) -> None:
    """DESIGNFLOW_TASK_RUNNER=dask (a distributed LocalCluster of 2 worker processes) reading
    `nas:` sources over SFTP: the same outcome per file as the flow's threads."""
    from designflow.orchestration.runners import fingerprint_task_runner

    env, server = sftp_env
    folder = server.root / "from-web"
    folder.mkdir()
    for i in range(4):
        images.write_png(folder / f"k{i}.png", seed=1000 + i)
    (folder / "bad.png").write_text("no")
    paths = [f"nas:from-web/k{i}.png" for i in range(4)] + ["nas:from-web/bad.png"]
    staging = str(env.home / "staging" / "dask-test")
    monkeypatch.setenv("DESIGNFLOW_TASK_RUNNER", "threads")
    with_threads = fingerprint_batch.with_options(task_runner=fingerprint_task_runner())(
        paths, staging
    )
    monkeypatch.setenv("DESIGNFLOW_TASK_RUNNER", "dask")
    runner = fingerprint_task_runner()
    assert type(runner).__name__ == "DaskTaskRunner"
    with_dask = fingerprint_batch.with_options(task_runner=runner)(paths, staging)
    assert with_dask == with_threads
    fingerprints = [r for r in with_dask if hasattr(r, "sha256")]
    assert [f.path for f in fingerprints] == paths[:4]
    for f in fingerprints:  # read once from the NAS into the run's staging folder
        assert hashlib.sha256(Path(f.local_copy).read_bytes()).hexdigest() == f.sha256
    assert [r.file for r in with_dask if not hasattr(r, "sha256")] == ["nas:from-web/bad.png"]
