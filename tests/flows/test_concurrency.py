"""Uploads at the same time, each in its own process (as a worker runs them): the same user
twice with the same files, two users with the same file, four users at once."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from designflow.catalog import Catalog
from tests import images
from tests.conftest import DesignflowEnv

ROOT = Path(__file__).resolve().parents[2]


def start_upload(folder: Path, user: str) -> subprocess.Popen:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "designflow.cli", "upload", str(folder), "--user", user,
         "--batch-max-images", "3", "--json"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def meet_after_start(runs: list[subprocess.Popen], marker: str, on_met=None) -> list[dict]:
    """A barrier across processes with no hook in the code: each run is paused (SIGSTOP) at
    the log line `marker` (written after start-up, before any batch), and all go on together
    (SIGCONT) once every one has reached it; `on_met` sees the moment they met. Returns the
    reports."""
    arrived = threading.Barrier(len(runs) + 1, timeout=180)
    errors: list[list[str]] = [[] for _ in runs]

    def follow(index: int, proc: subprocess.Popen) -> None:
        waiting = True
        for line in proc.stderr:
            errors[index].append(line)
            if waiting and marker in line:
                proc.send_signal(signal.SIGSTOP)
                waiting = False
                arrived.wait()
        if waiting:
            arrived.abort()  # it ended without reaching the marker: fail, do not hang

    readers = [threading.Thread(target=follow, args=(i, p)) for i, p in enumerate(runs)]
    for reader in readers:
        reader.start()
    try:
        arrived.wait()
    except threading.BrokenBarrierError:
        for proc in runs:
            proc.kill()
        raise AssertionError(
            "a run ended before the others started: " + "".join(sum(errors, []))
        ) from None
    if on_met:
        on_met()
    for proc in runs:
        proc.send_signal(signal.SIGCONT)
    reports = []
    for index, proc in enumerate(runs):
        out = proc.stdout.read()
        proc.wait(300)
        readers[index].join(60)
        assert proc.returncode == 0, "".join(errors[index])[-3000:]
        reports.append(json.loads(out))
    return reports


def designs(folder: Path, count: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True)
    return [images.write_png(folder / f"d{i}.png", seed=seed + i) for i in range(count)]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_files_same_user_twice_and_another_user_at_once(designflow_env: DesignflowEnv) -> None:
    catalog = Catalog(designflow_env.database_url)
    catalog.migrate()
    folder = designflow_env.inputs / "shared"
    files = designs(folder, 9, seed=1400)
    runs = [start_upload(folder, "ann"), start_upload(folder, "ann"), start_upload(folder, "bob")]
    met_with: list[int] = []

    def nothing_stored_yet() -> None:  # all three are past start-up, none has stored a file
        met_with.append(len(catalog.designs_of_user("ann")) + len(catalog.designs_of_user("bob")))

    first, second, other = meet_after_start(runs, "9 file(s) in 3 batch(es)", nothing_stored_yet)
    assert met_with == [0]
    # Each of ann's designs once: stored by one run, a duplicate in the other.
    ann = catalog.designs_of_user("ann")
    assert sorted(r["sha256"] for r in ann) == sorted(sha(f) for f in files)
    assert len(first["stored"]) + len(second["stored"]) == 9
    assert len(first["duplicates"]) + len(second["duplicates"]) == 9
    assert first["failed"] == second["failed"] == []
    ann_ids = {r["id"] for r in ann}
    assert {s["design_id"] for s in first["stored"] + second["stored"]} == ann_ids
    assert {d["duplicate_of"] for d in first["duplicates"] + second["duplicates"]} <= ann_ids
    # bob gets rows of his own for the same bytes, under his own folder.
    bob = catalog.designs_of_user("bob")
    assert len(other["stored"]) == 9 and sorted(r["sha256"] for r in bob) == sorted(
        r["sha256"] for r in ann
    )
    assert not ({r["id"] for r in bob} & ann_ids)
    assert all(r["nas_path"].startswith("users/bob/") for r in bob)
    on_nas = sorted(p for p in (designflow_env.nas_root / "users").rglob("*.png"))
    assert len(on_nas) == 18 and all(sha(p) == p.stem for p in on_nas)


def test_four_users_at_once_all_complete(designflow_env: DesignflowEnv) -> None:
    catalog = Catalog(designflow_env.database_url)
    catalog.migrate()
    folders = {}
    for n, user in enumerate(["u1", "u2", "u3", "u4"]):
        folders[user] = designflow_env.inputs / user
        designs(folders[user], 5, seed=1500 + 10 * n)
    runs = {user: start_upload(folder, user) for user, folder in folders.items()}
    reports = {user: finish(proc) for user, proc in runs.items()}
    for user, report in reports.items():
        assert len(report["stored"]) == 5 and report["failed"] == [] and report["rejected"] == []
        rows = catalog.designs_of_user(user)
        assert sorted(r["sha256"] for r in rows) == sorted(sha(p) for p in folders[user].iterdir())
        assert all(r["nas_path"].startswith(f"users/{user}/") for r in rows)


def test_same_seller_twice_sends_shared_designs_once(
    designflow_env: DesignflowEnv, monkeypatch
) -> None:
    """Two uploads by one seller with 20 files in common, made to meet: a design one of them
    is storing is claimed in PostgreSQL, so the other does not send it to the NAS again
    (both used to) and reports it as an exact duplicate."""
    import threading

    from designflow.flows.upload import upload_designs
    from designflow.ingest import progress
    from designflow.storage.nas import LocalNas

    # Every file either run hands to the NAS, counted where it happens (both runs are in
    # this process): not from the server's task-run events, which may arrive late.
    sends: list[str] = []
    sends_lock = threading.Lock()
    real_put = LocalNas.put_file

    def counted_put(self, source, dest, expected_sha256):
        with sends_lock:
            sends.append(dest)
        return real_put(self, source, dest, expected_sha256)

    monkeypatch.setattr(LocalNas, "put_file", counted_put)

    catalog = Catalog(designflow_env.database_url)
    catalog.migrate()
    shared = designs(designflow_env.inputs / "common", 20, seed=1600)
    folders = []
    for name, seed in (("left", 1700), ("right", 1800)):
        folder = designflow_env.inputs / name
        designs(folder, 5, seed=seed)
        for path in shared:
            (folder / f"shared-{path.name}").write_bytes(path.read_bytes())
        folders.append(folder)
    # Both runs wait for each other once their files are listed, then race.
    met = threading.Barrier(2, timeout=120)
    unsubscribe = progress.subscribe(lambda e: met.wait() if e.message == "starting" else None)
    reports: dict[int, dict] = {}

    def run(index: int) -> None:
        reports[index] = upload_designs(paths=[str(folders[index])], user_id="cleo")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    finally:
        unsubscribe()
    left, right = reports[0], reports[1]
    assert left["failed"] == right["failed"] == []
    assert len(left["stored"]) + len(right["stored"]) == 30
    shared_outcomes = [
        d for d in left["duplicates"] + right["duplicates"] if "shared-" in d["file"]
    ]
    assert len(shared_outcomes) == 20 and {d["kind"] for d in shared_outcomes} == {"exact"}
    assert len(catalog.designs_of_user("cleo")) == 30

    # each design sent to the NAS by one run only: 20 shared + 5 + 5 of their own
    assert len(sends) == 30 and len(set(sends)) == 30, sorted(sends)
