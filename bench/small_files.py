"""Many small files in one upload: batches sized by work against batches of 20 files.

Run: python -m bench.small_files [--files 5000] [--size 64]

On a fresh DESIGNFLOW_HOME with the local server that stays (started and warmed by a first
small upload, not timed), wall time of `python -m designflow upload FOLDER --json`:

- (a) designflow as it runs by default (batches sized by work);
- (b) the same files for another seller with `--batch-max-images 20` (the former default);
- (floor) the same files read, hashed, fingerprinted and copied by a plain loop in one
  process: no Prefect, no PostgreSQL, one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_files(folder: Path, count: int, side: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for i in range(count):
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"s{i:05}.png")


def upload(env: dict[str, str], folder: Path, user: str, *extra: str) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "designflow", "upload", str(folder), "--user", user, "--json",
         *extra],
        env=env, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"upload failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, json.loads(done.stdout)


def floor(folder: Path, out: Path) -> float:
    """Read, hash, fingerprint and copy each file in a plain loop."""
    from designflow.images.fingerprint import fingerprint_bytes

    out.mkdir()
    started = time.perf_counter()
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        fp = fingerprint_bytes(data, path)
        (out / f"{fp.sha256}.png").write_bytes(data)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-small-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DESIGNFLOW_"))}
    env.update(DESIGNFLOW_HOME=str(work / "home"), PREFECT_HOME=str(work / "prefect"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false")  # fmt: skip
    try:
        make_files(work / "small", args.files, args.size)
        make_files(work / "warm", 4, args.size)
        upload(env, work / "warm", "warm")  # the local server and the catalog made
        by_work, report = upload(env, work / "small", "seller-a")
        by_20, report_20 = upload(env, work / "small", "seller-b", "--batch-max-images", "20")
        plain = floor(work / "small", work / "copies")
    finally:
        for command in (["stop"], ["db", "stop"]):
            subprocess.run([sys.executable, "-m", "designflow", *command], env=env,
                           capture_output=True, timeout=120)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)
    n = args.files
    print(f"{n} PNGs of {args.size}x{args.size} in one upload, wall time")
    for label, wall, r in (("(a) batches sized by work", by_work, report),
                           ("(b) batches of 20 files", by_20, report_20)):  # fmt: skip
        print(f"  {label:28}: {wall:7.1f} s, {1000 * wall / n:5.1f} ms/file, "
              f"{r['batches']} batches, {r['counts']['stored']} stored")  # fmt: skip
    print(f"  {'(floor) plain loop':28}: {plain:7.1f} s, {1000 * plain / n:5.1f} ms/file")
    print(f"  a/b {by_work / by_20:.2f}, a/floor {by_work / plain:.2f} (target: a <= 4 ms/file)")


if __name__ == "__main__":
    main()
