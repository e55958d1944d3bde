"""The decode memory budget holds for the worst accepted input: four 100 Mpx 16-bit grey
PNGs (under a MB each) in one upload peaked at 4.7 GB; the budget keeps it under 1 GB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import DesignflowEnv

ROOT = Path(__file__).resolve().parents[2]
# Runs the upload as a child and prints the child's peak RSS (ru_maxrss, KiB on Linux):
# only that process, not the test runner's other children.
MEASURE = (
    "import json, resource, subprocess, sys;"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
    "print(json.dumps({'code': done.returncode, 'out': done.stdout, 'err': done.stderr[-2000:],"
    " 'peak_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))"
)


def test_four_huge_16bit_pngs_upload_under_one_gigabyte(designflow_env: DesignflowEnv) -> None:
    from prefect.settings import PREFECT_API_URL

    folder = designflow_env.inputs / "huge"
    folder.mkdir()
    first = folder / "gray16-0.png"
    subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; from tests.images import "
         "large_gray16_png; large_gray16_png(Path(sys.argv[1]))", str(first)],
        cwd=ROOT, check=True, timeout=120,
    )  # fmt: skip
    data = first.read_bytes()
    for i in range(1, 4):  # different bytes (not in-batch duplicates): all four are decoded
        (folder / f"gray16-{i}.png").write_bytes(data + b"\x00" * i)
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE, sys.executable, "-m", "designflow", "upload", str(folder),
         "--user", "huge", "--json"],
        env=env, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    result = json.loads(measured.stdout)
    assert result["code"] == 0, result["err"]
    report = json.loads(result["out"])
    # Trailing bytes after IEND do not change the pixels: one stored, three near duplicates
    # (or stored, had the images differed), each one fingerprinted.
    assert report["counts"]["stored"] + report["counts"]["duplicates"] == 4
    assert report["counts"]["rejected"] == 0
    peak_mb = result["peak_kib"] / 1024
    print(f"peak RSS of the upload: {peak_mb:.0f} MB")
    assert peak_mb < 1024
