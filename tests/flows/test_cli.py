"""The `designflow` command: in-process against the harness, and once as a real process
on Prefect's temporary server, the way the README runs it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from designflow.catalog.database import migrations_dir
from designflow.cli import main
from tests import images
from tests.conftest import DesignflowEnv

# The README's stable `--json` fields and their types.
REPORT_FIELDS = {
    "flow_run_id": str, "stored": list, "duplicates": list, "rejected": list, "failed": list, "skipped": list,
    "user_id": str, "batches": int, "counts": dict, "timings_ms": dict,
}  # fmt: skip


ROOT = Path(__file__).resolve().parents[2]


def test_upload_json_report(designflow_env: DesignflowEnv, capsys) -> None:
    folder = designflow_env.inputs / "cli"
    folder.mkdir()
    images.write_png(folder / "one.png", seed=90)
    images.write_png(folder / "two.png", seed=91)
    (folder / "bad.png").write_text("no")
    code = main(["upload", str(folder), "--user", "cli-user", "--json"])
    out = capsys.readouterr().out
    assert code == 0  # completed, even with a rejected file
    report = json.loads(out)  # stdout is exactly one JSON object
    assert {k: type(report.get(k)) for k in REPORT_FIELDS} == REPORT_FIELDS
    uuid.UUID(report["flow_run_id"])
    assert report["user_id"] == "cli-user" and report["batches"] == 1 and report["failed"] == []
    assert report["counts"] == {
        "stored": 2,
        "duplicates": 0,
        "rejected": 1,
        "failed": 0,
        "skipped": 0,
    }
    assert set(report["timings_ms"]) >= {"fingerprint", "dedup", "nas", "insert", "total"}
    assert all(isinstance(v, int | float) and v >= 0 for v in report["timings_ms"].values())
    assert {Path(s["file"]).name for s in report["stored"]} == {"one.png", "two.png"}
    for stored in report["stored"]:
        assert set(stored) == {"file", "design_id", "sha256", "nas_path"}
        assert isinstance(stored["design_id"], int)
        content = Path(stored["file"]).read_bytes()
        assert stored["sha256"] == hashlib.sha256(content).hexdigest()
        assert (designflow_env.nas_root / stored["nas_path"]).read_bytes() == content
    [rejected] = report["rejected"]
    assert rejected["file"] == str(folder / "bad.png")
    assert "not a PNG, JPEG, WebP or GIF image" in rejected["reason"]

    code = main(["upload", str(folder), "--user", "cli-user", "--json"])
    again = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {d["kind"] for d in again["duplicates"]} == {"exact"}
    ids = {s["file"]: s["design_id"] for s in report["stored"]}
    for duplicate in again["duplicates"]:
        assert set(duplicate) >= {"file", "duplicate_of", "distance", "kind", "nas_path"}
        assert duplicate["duplicate_of"] == ids[duplicate["file"]] and duplicate["distance"] == 0
    assert again["counts"] == {
        "stored": 0,
        "duplicates": 2,
        "rejected": 1,
        "failed": 0,
        "skipped": 0,
    }


def test_upload_with_failed_files_exits_1(
    designflow_env: DesignflowEnv, monkeypatch, capsys
) -> None:
    """The README: exit code 1 when files are in `failed` (the NAS stayed unavailable)."""
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("DESIGNFLOW_NAS_URL", f"sftp://nobody@127.0.0.1:{port}/srv")
    monkeypatch.setenv("DESIGNFLOW_NAS_PASSWORD", "unused")
    known_hosts = designflow_env.home / "known_hosts"  # the settings are right: the NAS is down
    known_hosts.write_text("")
    monkeypatch.setenv("DESIGNFLOW_NAS_KNOWN_HOSTS", str(known_hosts))
    monkeypatch.setenv("DESIGNFLOW_RETRY_BACKOFF_SECONDS", "0.05")
    path = images.write_png(designflow_env.inputs / "unstored.png", seed=97)
    code = main(["upload", str(path), "--user", "failing", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [f["file"] for f in report["failed"]] == [str(path)]
    assert report["counts"]["failed"] == 1 and report["stored"] == []
    # `designflow status` of that run: Failed, exit 1, the report's failed file named.
    assert main(["status", report["flow_run_id"]]) == 1
    shown = capsys.readouterr().out
    assert ": Failed" in shown and f"failed     {path}" in shown


def test_upload_human_summary(designflow_env: DesignflowEnv, capsys) -> None:
    path = images.write_png(designflow_env.inputs / "h.png", seed=92)
    assert main(["upload", str(path), "--user", "human"]) == 0
    out = capsys.readouterr().out
    assert "1 stored, 0 duplicate(s), 0 rejected" in out


def test_every_file_is_accounted_for_and_a_mistyped_path_exits_1(
    designflow_env: DesignflowEnv, capsys
) -> None:
    folder = designflow_env.inputs / "mixed"
    folder.mkdir()
    images.write_png(folder / "art.png", seed=94)
    (folder / "scan.tif").write_bytes(b"II*\x00")
    (folder / "readme.txt").write_text("notes")
    assert main(["upload", str(folder), "--user", "skips"]) == 0
    out = capsys.readouterr().out
    assert f"skipped    {folder / 'readme.txt'}: a .txt file is not an accepted format" in out
    assert f"skipped    {folder / 'scan.tif'}: TIFF is not an accepted format" in out
    assert "1 stored, 0 duplicate(s), 0 rejected, 0 failed, 2 skipped" in out

    # Nothing usable at all: the run fails, the report says why, exit code 1.
    typo = designflow_env.inputs / "desgins"
    assert main(["upload", str(typo), "--user", "skips", "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["rejected"] == [{"file": str(typo), "reason": "no such file or folder"}]
    assert "nothing to upload" in captured.err


def test_bad_user_id_is_a_usage_error(designflow_env: DesignflowEnv, capsys) -> None:
    path = images.write_png(designflow_env.inputs / "u.png", seed=93)
    assert main(["upload", str(path), "--user", "a/b"]) == 2
    assert "invalid user id" in capsys.readouterr().err


def test_fingerprint_json(tmp_path: Path, capsys) -> None:
    good = images.write_png(tmp_path / "g.png", seed=94)
    bad = tmp_path / "b.png"
    bad.write_bytes(b"")
    assert main(["fingerprint", str(good), str(bad), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out[0]["format"] == "PNG" and len(out[0]["phash_hex"]) == 16
    assert out[1] == {"path": str(bad), "rejected": "empty file (0 bytes)"}


def test_db_migrate_says_where_the_schema_is(designflow_env: DesignflowEnv, capsys) -> None:
    assert main(["db", "migrate"]) == 0
    latest = sorted(migrations_dir().glob("*.sql"))[-1].stem
    assert f"schema at {latest}" in capsys.readouterr().out


def test_the_readme_first_command_on_embedded_defaults(tmp_path: Path) -> None:
    """The README's first command as a new user runs it: the installed `designflow`, a fresh
    HOME and DESIGNFLOW_HOME, no database URL (the embedded PostgreSQL), no NAS URL (a local
    folder), no Prefect API (the local server that stays, started by the first command), the
    shipped examples. Then the same command again: every file an exact duplicate, nothing new
    on the NAS, both runs kept on the local server; `designflow stop` ends it."""
    command = shutil.which("designflow")
    assert command, "the installed designflow command is not on PATH"
    home = tmp_path / "user-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DESIGNFLOW_"))}
    env.update(HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    examples = ROOT / "examples" / "designs"
    shipped = sorted(p for p in examples.iterdir() if p.is_file())

    def the_first_command() -> dict:
        done = subprocess.run(
            [command, "upload", str(examples), "--user", "demo", "--json"],
            env=env, cwd=home, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    try:
        report = the_first_command()
        assert sorted(s["file"] for s in report["stored"]) == [str(p) for p in shipped]
        designflow_home = home / ".designflow"
        nas_files = sorted(
            p for p in designflow_home.rglob("users/demo/designs/*/*") if p.is_file()
        )
        assert len(nas_files) == len(shipped)

        second = the_first_command()  # the same command again
        assert second["stored"] == [] and [d["kind"] for d in second["duplicates"]] == [
            "exact"
        ] * len(shipped)
        ids = {s["file"]: s["design_id"] for s in report["stored"]}
        assert {d["file"]: d["duplicate_of"] for d in second["duplicates"]} == ids
        assert (
            sorted(p for p in designflow_home.rglob("users/demo/designs/*/*") if p.is_file())
            == nas_files
        )
        # Both runs are on the local server, which is still up after the commands exited.
        ui = subprocess.run([command, "ui"], env=env, cwd=home, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
        assert ui.returncode == 0 and ui.stdout.startswith("http://127.0.0.1:"), ui.stderr
        runs = httpx.post(f"{ui.stdout.strip()}/api/flow_runs/filter", json={}, timeout=30)
        ids = {r["id"] for r in runs.json()}
        assert {report["flow_run_id"], second["flow_run_id"]} <= ids
    finally:
        state = home / ".designflow" / "prefect-server" / "state.json"
        keeper = json.loads(state.read_text())["keeper"] if state.exists() else None
        stopped = subprocess.run([command, "stop"], env=env, cwd=home, capture_output=True,
                                 text=True, timeout=120)  # fmt: skip
        subprocess.run([command, "db", "stop"], env=env, cwd=home, capture_output=True, timeout=120)
    assert "stopped the local Prefect server" in stopped.stderr
    assert keeper is not None and not state.exists()
    try:  # gone, or ended and not yet reaped by init
        assert psutil.Process(keeper).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        pass


@pytest.mark.parametrize(
    ("url", "said"),
    [("/mnt/nas", "is not a URL"), ("smb://nas/share", "the scheme 'smb'")],
)
def test_a_wrong_nas_url_costs_one_line_and_no_retries(
    designflow_env: DesignflowEnv, monkeypatch, capsys, url: str, said: str
) -> None:
    """Checked before any file is read: exit 2, one line naming the setting, no traceback,
    no run (the same mistake used to be retried 3 times per batch, 11.6 s, 57-66 lines)."""
    monkeypatch.setenv("DESIGNFLOW_NAS_URL", url)
    path = images.write_png(designflow_env.inputs / "w.png", seed=98)
    started = time.monotonic()
    assert main(["upload", str(path), "--user", "wrongnas"]) == 2
    assert time.monotonic() - started < 5
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("designflow: DESIGNFLOW_NAS_URL: ")
    assert said in lines[0] and captured.out == ""


def test_the_local_server_is_started_once_and_stops_when_idle(tmp_path: Path, monkeypatch) -> None:
    """Two commands asking for the local server at once get the same one (the second waits
    on the start lock); with no command and no run for the idle time its keeper stops it."""
    from concurrent.futures import ThreadPoolExecutor

    from designflow.catalog.embedded import stop_embedded
    from designflow.cli.localserver import ensure_local_server, running_server
    from designflow.settings import Settings

    for name in [k for k in os.environ if k.startswith("PREFECT_API")]:
        monkeypatch.delenv(name)
    settings = Settings.from_env(
        {"DESIGNFLOW_HOME": str(tmp_path / "home"), "DESIGNFLOW_LOCAL_SERVER_IDLE_MINUTES": "0.1"}
    )
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: ensure_local_server(settings), range(2)))
    assert answers[0][0] == answers[1][0] and sorted(a[1] for a in answers) == [False, True]
    assert running_server(settings) == answers[0][0]
    deadline = time.monotonic() + 90
    while running_server(settings) is not None and time.monotonic() < deadline:
        time.sleep(1)
    stop_embedded(settings.home)  # the server's database stays after it: not in a test
    assert running_server(settings) is None, "still running 90 s after an idle time of 6 s"
    log = (tmp_path / "home" / "prefect-server" / "server.log").read_text()
    assert "was idle 6 s: stopping" in log
