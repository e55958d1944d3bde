"""The README's main command as a seller runs it every day, from a fresh DESIGNFLOW_HOME.

Run: python -m bench.everyday [--repeat 2]

Three setups, each on its own fresh home, the shipped example designs, wall time of the
installed command (`python -m designflow`) as a seller's shell would see it:

- (a) the default: the local Prefect server that stays (started by the first command), and
  commands started warm (a fork of a process that has Prefect and the flows imported);
- (a0) the same without the warm start (DESIGNFLOW_WARM_START=0);
- (b) Prefect's temporary server for each command (DESIGNFLOW_LOCAL_SERVER=temporary, what
  every command did before);
- (c) the baseline a Prefect user would set up: `prefect server start` by hand, then the same
  command with PREFECT_API_URL (the server's start is timed separately).

First upload (4 designs stored; the embedded PostgreSQL is started by it in every setup)
and the same command again (4 exact duplicates), `--repeat` times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "designs"


def upload(env: dict[str, str], user: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "designflow", "upload", str(EXAMPLES), "--user", user],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"upload failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - started


def fresh_env(work: Path, name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DESIGNFLOW_"))}
    env.update(DESIGNFLOW_HOME=str(work / name), PREFECT_HOME=str(work / f"prefect-{name}"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false")  # fmt: skip
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(env: dict[str, str], repeat: int) -> tuple[float, list[float]]:
    first = upload(env, "seller")
    again = [upload(env, "seller") for _ in range(repeat)]
    return first, again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-everyday-"))
    rows = []
    try:
        for label, name, warm in (("(a) local server that stays", "stay", "1"),
                                  ("(a0) the same, no warm start", "cold", "0")):  # fmt: skip
            env = fresh_env(work, name)
            env["DESIGNFLOW_WARM_START"] = warm
            try:
                rows.append((label, None, *measure(env, args.repeat)))
            finally:
                subprocess.run([sys.executable, "-m", "designflow", "stop"], env=env,
                               capture_output=True, timeout=120)  # fmt: skip
                subprocess.run([sys.executable, "-m", "designflow", "db", "stop"], env=env,
                               capture_output=True, timeout=120)  # fmt: skip
        env = fresh_env(work, "temporary")
        env["DESIGNFLOW_LOCAL_SERVER"] = "temporary"
        try:
            rows.append(("(b) temporary server each time", None, *measure(env, args.repeat)))
        finally:
            subprocess.run([sys.executable, "-m", "designflow", "db", "stop"], env=env,
                           capture_output=True, timeout=120)  # fmt: skip
        env = fresh_env(work, "prefect")
        port = _free_port()
        started = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).is_success:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            server_s = time.perf_counter() - started
            env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
            rows.append(("(c) prefect server start + it", server_s, *measure(env, args.repeat)))
        finally:
            server.terminate()
            server.wait(60)
            subprocess.run([sys.executable, "-m", "designflow", "db", "stop"], env=env,
                           capture_output=True, timeout=120)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"designflow upload of the {len(list(EXAMPLES.iterdir()))} example designs, wall time")
    for label, server_s, first, again in rows:
        before = f"server start {server_s:5.1f} s, " if server_s is not None else ""
        print(
            f"  {label:34}: {before}first {first:5.1f} s, again median "
            f"{statistics.median(again):5.2f} s ({', '.join(f'{a:.2f}' for a in again)})"
        )
    again = {label.split()[0]: statistics.median(times) for label, _, _, times in rows}
    print(f"  again, (a) / (c): {again['(a)'] / again['(c)']:.2f}; (a0) / (c): "
          f"{again['(a0)'] / again['(c)']:.2f}; (b) / (c): {again['(b)'] / again['(c)']:.2f} "
          "(targets: (a) again <= 3 s, first <= 12 s)")  # fmt: skip


if __name__ == "__main__":
    main()
