"""A re-synced folder: the same designs uploaded again with a few new ones.

Run: python3 -m bench.resync [--designs 50] [--new 2] [--size 4500x5400]

Against a running `designflow server` (the embedded PostgreSQL catalog, a local folder as NAS),
as a seller runs it (`designflow upload FOLDER --user U --json`, one process each):
  (a) the first upload of the folder
  (b) the same folder again with --new more designs: the known ones are hashed, found in the
      catalog and reported as exact copies without being decoded
Printed: wall and flow time of each, b/a (target: <= 0.15), the counts of each report.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.designs import large_designs
from bench.mockups import _wait_http
from bench.scale import _free_port, one_upload


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--designs", type=int, default=50)
    parser.add_argument("--new", type=int, default=2)
    parser.add_argument("--size", default="4500x5400")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    paths = large_designs(args.designs + args.new, size)  # type: ignore[arg-type]
    work = Path(tempfile.mkdtemp(prefix="bench-resync-"))
    folder = work / "designs"
    folder.mkdir()
    for p in paths[: args.designs]:
        os.link(p, folder / p.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DESIGNFLOW_"))}
    env.update(DESIGNFLOW_HOME=str(work / "home"), PREFECT_HOME=str(work / "prefect"))
    port = _free_port()
    with open(work / "server.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "designflow.cli", "server", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait_http(port, timeout=180)
            env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
            warm = work / "warm"
            warm.mkdir()
            os.link(paths[-1], warm / "warm.png")
            one_upload(warm, "warm", env, server.pid)  # catalog made, migrations applied
            first = one_upload(folder, "seller", env, server.pid)
            for p in paths[args.designs : args.designs + args.new]:
                os.link(p, folder / p.name)
            again = one_upload(folder, "seller", env, server.pid)
        finally:
            server.terminate()
            server.wait(60)
            subprocess.run([sys.executable, "-m", "designflow.cli", "db", "stop"], env=env,
                           capture_output=True, timeout=120)  # fmt: skip
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"{args.designs} designs of {size[0]}x{size[1]}, then the same folder with {args.new} new"
    )
    for label, r in (("(a) first upload", first), ("(b) re-synced folder", again)):
        print(f"{label:22}: wall {r['wall_s']:6.1f} s, flow {r['flow_s']:6.1f} s, stored "
              f"{r['stored']}, exit {r['code']}, peak {r['peak_mb']:.0f} MB")  # fmt: skip
    print(f"b/a wall {again['wall_s'] / first['wall_s']:.2f}, flow "
          f"{again['flow_s'] / first['flow_s']:.2f} (target <= 0.15)")  # fmt: skip


if __name__ == "__main__":
    main()
