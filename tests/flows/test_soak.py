"""Soak: 500 designs in 25 batches through SFTP and PostgreSQL; every design accounted for,
and the process's memory flat batch over batch."""

from __future__ import annotations

import hashlib
import os
import statistics

import numpy as np
from PIL import Image

from designflow.catalog import Catalog
from designflow.flows.upload import upload_designs
from designflow.ingest import progress
from tests.sftp_servers import start_sftp_server


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_500_designs_in_25_batches(designflow_env, tmp_path, monkeypatch) -> None:
    server = start_sftp_server(tmp_path / "sftp")
    try:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        folder = designflow_env.inputs / "soak"
        folder.mkdir()
        rng = np.random.default_rng(500)
        digests = set()
        for i in range(500):
            pixels = rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)
            path = folder / f"soak-{i:03d}.png"
            Image.fromarray(pixels, "RGB").save(path, compress_level=1)
            digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
        samples: list[float] = []

        def sample(event: progress.Progress) -> None:
            if event.message.startswith("batch "):
                samples.append(rss_mb())

        unsubscribe = progress.subscribe(sample)
        try:
            report = upload_designs(paths=[str(folder)], user_id="soak", batch_max_images=20)
        finally:
            unsubscribe()
        assert report["batches"] == 25 and len(samples) == 25
        assert len(report["stored"]) == 500 and report["failed"] == report["rejected"] == []
        rows = Catalog(designflow_env.database_url).designs_of_user("soak")
        assert {r["sha256"] for r in rows} == digests and len(rows) == 500
        on_nas = [p for p in server.root.rglob("*.png")]
        assert len(on_nas) == 500
        assert {hashlib.sha256(p.read_bytes()).hexdigest() for p in on_nas} == digests
        # Flat memory: the last five batches against batches 6-10 (after warm-up).
        early, late = statistics.median(samples[5:10]), statistics.median(samples[-5:])
        print(
            f"RSS per batch (MB): {', '.join(f'{s:.0f}' for s in samples)}; growth {late - early:+.1f} MB"
        )
        assert late - early < 40, samples
    finally:
        server.stop()
