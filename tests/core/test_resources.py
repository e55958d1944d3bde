"""Resources are built once per process: four threads of a fresh process asking for the
catalog at once start the embedded PostgreSQL once and all get the same pooled catalog;
two such processes at once (a file lock) both succeed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from designflow.catalog.embedded import stop_embedded

# Runs in a fresh interpreter: counts how often the embedded server is started.
SCRIPT = textwrap.dedent(
    """
    import json, threading
    from designflow.catalog import embedded
    from designflow import resources

    starts = []
    real_server = embedded._server

    def counting_server(*args, **kwargs):
        starts.append(threading.get_ident())
        return real_server(*args, **kwargs)

    embedded._server = counting_server
    barrier = threading.Barrier(4)
    got, errors = [], []

    def ask():
        barrier.wait()
        try:
            catalog = resources.current().catalog()
            with catalog.connect() as conn:
                conn.execute("SELECT count(*) FROM design_images").fetchone()
            got.append(id(catalog))
        except BaseException as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    resources.close_current()
    print(json.dumps({"starts": len(starts), "catalogs": len(set(got)), "ok": len(got), "errors": errors}))
    """
)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESIGNFLOW_")}
    env["DESIGNFLOW_HOME"] = str(home)
    return env


def test_four_threads_in_a_fresh_process_start_the_database_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    try:
        procs = [
            subprocess.Popen([sys.executable, "-c", SCRIPT], env=_env(home), stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]  # fmt: skip
        results = [
            json.loads(p.communicate(timeout=180)[0].strip().splitlines()[-1]) for p in procs
        ]
    finally:
        stop_embedded(home)
    for result in results:
        assert result["errors"] == []
        assert result["ok"] == 4
        assert result["starts"] == 1  # one start per process, not one per thread
        assert result["catalogs"] == 1  # the same pooled catalog for every thread
