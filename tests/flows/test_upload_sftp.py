"""upload_designs into a real SFTP server on 127.0.0.1, including the server dying mid-run."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import threading
import uuid
from pathlib import Path

from designflow.catalog import Catalog
from designflow.flows.upload import UploadIncomplete, upload_designs
from designflow.ingest import progress
from tests import images
from tests.conftest import DesignflowEnv
from tests.flows.test_nas_block import server_kept_text
from tests.retries import watch_retries


def final_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".part"))


def assert_consistent(env: DesignflowEnv, root: Path, user: str) -> list[dict]:
    """Every catalog row has its file, every file under a final name has its content."""
    rows = Catalog(env.database_url).designs_of_user(user)
    files = final_files(root)
    assert sorted(str(root / r["nas_path"]) for r in rows) == [str(f) for f in files]
    for f in files:
        assert hashlib.sha256(f.read_bytes()).hexdigest() == f.stem
    return rows


def test_upload_over_sftp(sftp_env) -> None:
    env, server = sftp_env
    folder = env.inputs / "s"
    folder.mkdir()
    for i in range(6):
        images.write_png(folder / f"design {i} ✓.png", seed=300 + i)
    report = upload_designs(paths=[str(folder)], user_id="sftp-user")
    assert len(report["stored"]) == 6
    assert len(assert_consistent(env, server.root, "sftp-user")) == 6

    again = upload_designs(paths=[str(folder)], user_id="sftp-user")
    assert again["stored"] == [] and len(again["duplicates"]) == 6
    assert len(final_files(server.root)) == 6


def test_server_killed_mid_run_then_back(sftp_env, monkeypatch) -> None:
    env, server = sftp_env
    monkeypatch.setenv("DESIGNFLOW_RETRY_BACKOFF_SECONDS", "0.5")
    folder = env.inputs / "k"
    folder.mkdir()
    for i in range(8):
        images.noisy_png(folder / f"k{i}.png", seed=400 + i, size=(900, 900))
    healed = threading.Event()

    def heal_after_first_retry() -> None:
        if watch.first.wait(120):  # the dead server met the run and a task will retry
            server.start()
        healed.set()

    def kill_after_batch_1(event: progress.Progress) -> None:
        # In the flow's thread, before batch 2's uploads: the pooled connections die too.
        if event.message.startswith("batch 1/") and server.proc is not None:
            server.kill()
            threading.Thread(target=heal_after_first_retry, daemon=True).start()

    unsubscribe = progress.subscribe(kill_after_batch_1)
    try:
        with watch_retries() as watch:
            state = upload_designs(
                paths=[str(folder)], user_id="kill", batch_max_images=4, return_state=True
            )
    finally:
        unsubscribe()
    assert healed.wait(120) and watch.lines, "the killed server never met the run"
    assert any("cannot reach the NAS" in line or "Connection" in line for line in watch.lines)
    assert state.is_completed(), state.message
    report = state.result()
    assert len(report["stored"]) == 8 and report["failed"] == []
    assert len(assert_consistent(env, server.root, "kill")) == 8

    rerun = upload_designs(paths=[str(folder)], user_id="kill")
    assert rerun["stored"] == [] and len(rerun["duplicates"]) == 8
    assert len(assert_consistent(env, server.root, "kill")) == 8


def test_wrong_host_key_fails_clearly(sftp_env, monkeypatch) -> None:
    env, server = sftp_env
    monkeypatch.setenv("DESIGNFLOW_NAS_KNOWN_HOSTS", server.wrong_known_hosts)
    path = images.write_png(env.inputs / "h.png", seed=500)
    state = upload_designs(paths=[str(path)], user_id="hostkey", return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, UploadIncomplete)
    reason = error.report["failed"][0]["reason"]
    assert "does not match known_hosts" in reason
    # The README: the error names the host and the offered key's fingerprint.
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(server.folder / "host_ed25519.pub")],
        capture_output=True, text=True, check=True,
    ).stdout.split()[1]  # fmt: skip
    assert f"[127.0.0.1]:{server.port}" in reason and fingerprint in reason, reason
    assert final_files(server.root) == []
    assert Catalog(env.database_url).count_designs("hostkey") == 0


def test_wrong_credentials_fail_at_once_and_the_password_never_shows(
    sftp_env, monkeypatch, caplog
) -> None:
    """The README: wrong credentials fail without retries; DESIGNFLOW_NAS_PASSWORD never
    appears in logs, reports, artifacts or errors."""
    env, server = sftp_env
    caplog.set_level(logging.DEBUG)
    password = "Nas-Pass-" + uuid.uuid4().hex
    monkeypatch.setenv("DESIGNFLOW_NAS_KEY_FILE", server.wrong_key_file)
    monkeypatch.setenv("DESIGNFLOW_NAS_PASSWORD", password)
    monkeypatch.setenv("DESIGNFLOW_RETRY_BACKOFF_SECONDS", "0.05")
    path = images.write_png(env.inputs / "w.png", seed=501)
    with watch_retries() as watch:
        state = upload_designs(paths=[str(path)], user_id="badcreds", return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert "refused the credentials" in error.report["failed"][0]["reason"]
    assert watch.lines == []  # not retried
    assert final_files(server.root) == []
    kept = server_kept_text(error.report["flow_run_id"])
    assert "badcreds" in kept
    for text in (kept, str(error), json.dumps(error.report), caplog.text):
        assert password not in text
