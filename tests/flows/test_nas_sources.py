"""Uploads whose sources live on the NAS (`nas:` names and sftp:// URLs), against OpenSSH."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest

from designflow.flows.upload import upload_designs
from designflow.storage.nas import SourceUnreadable, fetch_checked
from tests import images


def test_upload_from_a_nas_folder_and_an_sftp_url(sftp_env) -> None:
    env, server = sftp_env
    batch = server.root / "inbox" / "demo" / "batch-17"
    (batch / "more").mkdir(parents=True)
    sources = [images.write_png(batch / f"web {i}.png", seed=900 + i) for i in range(3)]
    sources.append(images.write_jpeg(batch / "more" / "photo.jpg", seed=904))
    (batch / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a PNG")
    (batch / "notes.txt").write_text("not a design: skipped in a folder")
    (server.root / "handoff").mkdir()
    single = images.write_png(server.root / "handoff" / "single.png", seed=905)

    report = upload_designs(
        paths=["nas:inbox/demo/batch-17/", f"{server.url}/handoff/single.png"],
        user_id="demo",
        batch_max_images=2,  # several batches, so later ones are read ahead
    )

    stored = {s["file"]: s for s in report["stored"]}
    assert sorted(stored) == sorted(
        [f"nas:inbox/demo/batch-17/{p.relative_to(batch)}" for p in sources]
        + [f"{server.url}/handoff/single.png"]
    )
    for source in [*sources, single]:
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        assert digest in {s["sha256"] for s in report["stored"]}
    assert [
        (r["file"], "PNG" in r["reason"] or "decode" in r["reason"]) for r in report["rejected"]
    ] == [("nas:inbox/demo/batch-17/bad.png", True)]
    rows = assert_consistent_without(env, server.root, "demo", skip=("inbox", "handoff"))
    assert len(rows) == 5
    # The sources stay where the web app put them; the run's local copies are gone.
    assert all(p.exists() for p in sources)
    staging = env.home / "staging"
    assert not staging.exists() or not any(staging.rglob("*.*"))

    again = upload_designs(paths=["nas:inbox/demo/batch-17"], user_id="demo")
    assert again["stored"] == [] and len(again["duplicates"]) == 4


def assert_consistent_without(env, root: Path, user: str, skip: tuple[str, ...]) -> list[dict]:
    """assert_consistent over the stored designs only (the sources also live on this NAS)."""
    from designflow.catalog import Catalog

    rows = Catalog(env.database_url).designs_of_user(user)
    stored = sorted(p for p in (root / "users").rglob("*") if p.is_file())
    assert sorted(str(root / r["nas_path"]) for r in rows) == [str(p) for p in stored]
    for p in stored:
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.stem
    assert all((root / s).exists() for s in skip)
    return rows


def test_missing_and_escaping_nas_sources_are_named_with_the_reason(sftp_env) -> None:
    env, server = sftp_env
    (server.root / "in").mkdir()
    images.write_png(server.root / "in" / "ok.png", seed=910)
    report = upload_designs(
        paths=["nas:in/ok.png", "nas:in/gone.png", "nas:../etc/passwd"], user_id="demo"
    )
    assert [s["file"] for s in report["stored"]] == ["nas:in/ok.png"]
    reasons = {r["file"]: r["reason"] for r in report["rejected"]}
    assert "no such file or folder on the NAS" in reasons["nas:in/gone.png"]
    assert "'..' is not allowed" in reasons["nas:../etc/passwd"]


def test_a_source_that_vanishes_before_it_is_read_is_rejected(sftp_env) -> None:
    from designflow.orchestration.resources import current

    env, server = sftp_env
    (server.root / "in").mkdir(exist_ok=True)
    images.write_png(server.root / "in" / "soon-gone.png", seed=911)
    folder = current().locate("nas:in")
    listed = [e.path for e in folder.nas.entries(folder.path)]
    assert "in/soon-gone.png" in listed  # listed while it was there
    (server.root / "in" / "soon-gone.png").unlink()  # gone between the listing and the read
    where = current().locate("nas:in/soon-gone.png")
    with pytest.raises(SourceUnreadable, match="vanished before it could be read"):
        where.nas.fetch(where.path, env.home / "x.png", 10**9)
    assert not (env.home / "x.png").exists()


def test_a_source_that_changes_while_read_is_rejected(tmp_path: Path) -> None:
    """The copy compares the size and mtime the file had when opened with what it has after
    the last byte: a writer appending mid-read is caught (the bytes would be a mix)."""
    source = tmp_path / "growing.png"
    source.write_bytes(os.urandom(3 * 1024 * 1024))

    with open(source, "rb") as handle:
        before = os.fstat(handle.fileno())

        class AppendsAfterFirstRead(io.RawIOBase):
            reads = 0

            def read(self, n: int = -1) -> bytes:
                self.reads += 1
                data = handle.read(n)
                if self.reads == 1:
                    with open(source, "ab") as writer:
                        writer.write(b"more bytes from a writer still at it")
                return data

        with pytest.raises(SourceUnreadable, match="changed while being read"):
            fetch_checked(
                AppendsAfterFirstRead(), before, lambda: os.fstat(handle.fileno()),
                "nas:in/growing.png", tmp_path / "copy.png", 10**9,
            )  # fmt: skip
    assert not (tmp_path / "copy.png").exists()


def test_sweep_of_an_inbox_on_the_nas(sftp_env, capsys) -> None:
    """`nas:inbox` swept through SFTP: completeness from SFTP stat, files filed on the NAS
    with posix-rename, the reason beside a quarantined file, the lock held in PostgreSQL."""
    from designflow.cli import main
    from designflow.flows.sweep import sweep_inbox
    from designflow.tasks.inbox import inbox_folder
    from tests.flows.test_sweep import age

    env, server = sftp_env
    folder = server.root / "inbox" / "nina"
    (folder / "sub").mkdir(parents=True)
    good = [age(images.write_png(folder / f"g{i}.png", seed=940 + i)) for i in range(2)]
    good.append(age(images.write_png(folder / "sub" / "nested.png", seed=942)))
    broken = folder / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    age(broken)
    images.write_png(folder / "fresh.png", seed=943)  # just written: waits

    # Another machine's sweep holds the seller's lock: this one is refused, nothing moves.
    with inbox_folder("nas:inbox", "nina").lock():
        busy = sweep_inbox("nas:inbox", "nina", settle_seconds=30)
    assert "another sweep of nas:inbox/nina is running" in busy["skipped"]
    assert all(p.exists() for p in good)

    assert main(["sweep", "--inbox", "nas:inbox", "--settle-seconds", "30", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["users"]["nina"]
    assert result["inbox"] == "nas:inbox/nina"
    assert sorted(result["processed"]) == ["g0.png", "g1.png", "nested.png"]
    assert result["quarantined"] == ["broken.png"] and result["waiting"] == ["fresh.png"]
    assert sorted(p.relative_to(folder / "processed").as_posix() for p in (folder / "processed").rglob("*.png")) == [
        "g0.png", "g1.png", "sub/nested.png",
    ]  # fmt: skip
    assert (folder / "quarantine" / "broken.png").exists()
    reason = (folder / "quarantine" / "broken.png.reason.txt").read_text()
    assert reason.startswith("broken.png: ") and len(reason) > len("broken.png: \n")
    assert (folder / "fresh.png").exists()
    rows = assert_consistent_without(env, server.root, "nina", skip=("inbox",))
    assert sorted(r["original_name"] for r in rows) == ["g0.png", "g1.png", "nested.png"]


def test_a_source_the_nas_cannot_give_fails_and_is_not_rejected(sftp_env, tmp_path) -> None:
    """A dropped NAS is not the file's fault: failed (read again by the next upload or
    sweep), never rejected (a sweep would quarantine a good file)."""
    from designflow.ingest.report import FailedFile
    from designflow.ingest.sources import fingerprint_remote
    from designflow.orchestration.resources import current
    from designflow.settings import ImageLimits

    env, server = sftp_env
    images.write_png(server.root / "gone-nas.png", seed=950)
    where = current().locate("nas:gone-nas.png")
    server.stop()  # the NAS goes away after the listing
    outcome = fingerprint_remote("nas:gone-nas.png", where, tmp_path / "staging", ImageLimits())
    assert isinstance(outcome, FailedFile), outcome
    assert outcome.reason.startswith("could not read it from the NAS")
    assert not any((tmp_path / "staging").glob("*"))  # nothing half-read left behind
