"""Speed at scale: 200 and 800 designs through `designflow upload`, per design.

Run: python -m bench.scale [--sizes 200,800] [--setups embedded,server] [--size 1200x1500]

Designs: generated RGBA PNGs (kept under bench/out/). For each setup and each upload size,
one fresh `designflow upload FOLDER --user U --json` process, as a seller runs it:
  embedded  the README's default: embedded PostgreSQL catalog, a local folder as NAS, and
            Prefect's temporary server started by the command (DESIGNFLOW_HOME fresh per
            setup, so the 200 and 800 runs share one embedded PostgreSQL)
  server    against a running `designflow server` (Prefect on the embedded PostgreSQL)
Printed per run: the flow's own time per design (its `timings_ms.total`), wall time per design
(process start to exit), peak memory of the upload process (RSS, sampled every 0.1 s), Prefect
task runs per design (from the run's log lines), CPU-seconds per design of the Prefect server
(the temporary one is the upload command's child) and of the upload process, and error
lines in the server's and the command's logs. Then the ratio of the 800-design run's
per-design time to the 200-design run's (target: within 10%).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil

from bench.designs import OUT
from bench.mockups import _wait_http
from designflow.testing.samples import make_artwork, png_bytes


def _make(args: tuple[Path, int, tuple[int, int]]) -> Path:
    path, seed, size = args
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(png_bytes(make_artwork(seed, size, grain=(seed % 5) / 10)))
        tmp.rename(path)
    return path


def designs(count: int, size: tuple[int, int], seed0: int) -> Path:
    """A folder of `count` distinct designs (links into the shared cache)."""
    cache = OUT / f"scale-{size[0]}x{size[1]}"
    cache.mkdir(parents=True, exist_ok=True)
    jobs = [(cache / f"d-{seed0 + i:06d}.png", seed0 + i, size) for i in range(count)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        paths = list(pool.map(_make, jobs, chunksize=8))
    folder = Path(tempfile.mkdtemp(prefix=f"scale-{count}-"))
    for p in paths:
        os.link(p, folder / p.name)
    return folder


class Sampler:
    """Peak RSS of one process and the last CPU times seen of it and of its children."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak_rss = 0
        self.cpu: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
                for p in [self.proc, *self.proc.children(recursive=True)]:
                    with p.oneshot():
                        t = p.cpu_times()
                        self.cpu[p.pid] = (" ".join(p.cmdline()), t.user + t.system)
            except psutil.Error:
                pass
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ERROR_LINE = re.compile(r"\b(ERROR|Error|Traceback|Exception)\b")


def one_upload(folder: Path, user: str, env: dict, server_pid: int | None) -> dict:
    server = psutil.Process(server_pid) if server_pid else None
    server_cpu0 = sum(server.cpu_times()[:2]) if server else 0.0
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "designflow.cli", "upload", str(folder), "--user", user, "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    sampler = Sampler(proc.pid)
    stdout, stderr = proc.communicate(timeout=3600)
    wall = time.perf_counter() - started
    sampler.stop()
    report = json.loads(stdout) if proc.returncode in (0, 1) and stdout.strip() else {}
    own = next((cpu for pid, (_cmd, cpu) in sampler.cpu.items() if pid == proc.pid), 0.0)
    temporary = sum(
        cpu for pid, (cmd, cpu) in sampler.cpu.items() if "prefect" in cmd and "server" in cmd
    )
    server_cpu = (sum(server.cpu_times()[:2]) - server_cpu0) if server else temporary
    task_runs = len(set(re.findall(r"Task run '([^']+)' - Finished in state", stderr)))
    errors = [line for line in stderr.splitlines() if ERROR_LINE.search(line)]
    return {
        "code": proc.returncode,
        "stored": len(report.get("stored", [])),
        "flow_s": report.get("timings_ms", {}).get("total", float("nan")) / 1000,
        "wall_s": wall,
        "peak_mb": sampler.peak_rss / 1e6,
        "task_runs": task_runs,
        "server_cpu_s": server_cpu,
        "upload_cpu_s": own,
        "errors": errors,
    }


def run_setup(setup: str, sizes: list[int], size: tuple[int, int], work: Path) -> dict[int, dict]:
    home = work / f"home-{setup}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DESIGNFLOW_"))}
    env.update(DESIGNFLOW_HOME=str(home), PREFECT_HOME=str(work / f"prefect-{setup}"))
    if setup != "server":  # each command on Prefect's temporary server, as measured before
        env["DESIGNFLOW_LOCAL_SERVER"] = "temporary"
    server = None
    server_log = None
    if setup == "server":
        port = _free_port()
        server_log = open(work / "server.log", "w")  # noqa: SIM115
        server = subprocess.Popen(
            [sys.executable, "-m", "designflow.cli", "server", "--port", str(port)],
            env=env, stdout=server_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        _wait_http(port, timeout=180)
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    results = {}
    try:
        # A first small upload: the embedded PostgreSQL made, migrations applied (not timed).
        warm = designs(4, size, 900_000)
        one_upload(warm, f"warm-{setup}", env, server.pid if server else None)
        for count in sizes:
            folder = designs(count, size, 100_000 + 10_000 * sizes.index(count))
            results[count] = one_upload(
                folder, f"{setup}-{count}", env, server.pid if server else None
            )
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait(60)
            server_log.close()
            results["server_log_errors"] = [
                line for line in (work / "server.log").read_text(errors="replace").splitlines()
                if ERROR_LINE.search(line)
            ]  # fmt: skip
        subprocess.run([sys.executable, "-m", "designflow.cli", "db", "stop"], env=env,
                       capture_output=True, timeout=120)  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="200,800")
    parser.add_argument("--setups", default="embedded,server")
    parser.add_argument("--size", default="1200x1500")
    args = parser.parse_args()
    sizes = [int(v) for v in args.sizes.split(",")]
    size = tuple(int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        for setup in args.setups.split(","):
            results = run_setup(setup, sizes, size, work)
            print(
                f"\n{setup}: designflow upload of {size[0]}x{size[1]} RGBA PNG designs, local-folder NAS"
            )
            for count in sizes:
                r = results[count]
                print(f"  {count:4} designs: flow {1000 * r['flow_s'] / count:6.1f} ms/design, wall "
                      f"{1000 * r['wall_s'] / count:6.1f} ms/design, peak {r['peak_mb']:5.0f} MB, "
                      f"{r['task_runs'] / count:4.2f} task runs/design, Prefect server "
                      f"{1000 * r['server_cpu_s'] / count:5.1f} CPU-ms/design, upload process "
                      f"{1000 * r['upload_cpu_s'] / count:5.1f} CPU-ms/design, stored {r['stored']}, "
                      f"exit {r['code']}, {len(r['errors'])} error line(s) in its log")  # fmt: skip
                for line in r["errors"][:3]:
                    print(f"      {line[:160]}")
            if "server_log_errors" in results:
                print(f"  server log: {len(results['server_log_errors'])} error line(s)")
                for line in results["server_log_errors"][:3]:
                    print(f"      {line[:160]}")
            if len(sizes) >= 2:
                a, b = results[sizes[0]], results[sizes[-1]]
                flow = (b["flow_s"] / sizes[-1]) / (a["flow_s"] / sizes[0])
                wall = (b["wall_s"] / sizes[-1]) / (a["wall_s"] / sizes[0])
                print(f"  per design at {sizes[-1]} vs {sizes[0]}: flow {flow:.2f}x, wall {wall:.2f}x "
                      f"(target <= 1.10x); peak memory {b['peak_mb'] / a['peak_mb']:.2f}x")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
