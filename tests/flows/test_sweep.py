"""sweep_inbox against a real inbox folder, catalog and NAS."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from designflow.catalog import Catalog
from designflow.flows.sweep import sweep_inbox
from designflow.flows.upload import upload_designs
from designflow.ingest.inbox import sweep_lock
from tests import images
from tests.conftest import DesignflowEnv


def age(path: Path, seconds: float = 7200) -> Path:
    old = time.time() - seconds
    os.utime(path, (old, old))
    return path


def test_sweep_files_complete_partial_bad_and_duplicate(designflow_env: DesignflowEnv) -> None:
    inbox = designflow_env.inputs / "inbox"
    folder = inbox / "sam"
    (folder / "shop").mkdir(parents=True)
    done = age(images.write_png(folder / "done.png", seed=900))
    age(images.write_png(folder / "shop" / "nested.png", seed=901))
    writing = images.write_png(folder / "writing.png", seed=902)  # just written: first look
    bad = folder / "notes.png"
    bad.write_text("not an image")
    age(bad)
    dup = folder / "again.png"
    shutil.copy(images.write_png(designflow_env.inputs / "earlier.png", seed=903), dup)
    age(dup)
    upload_designs(paths=[str(designflow_env.inputs / "earlier.png")], user_id="sam")

    # A long settle time: a paused VM whose clock then jumps must not make a file written a
    # moment ago look settled (seen once in CI with 30 s).
    first = sweep_inbox(str(inbox), "sam", settle_seconds=3600)
    assert sorted(first["processed"]) == ["again.png", "done.png", "nested.png"]
    assert first["quarantined"] == ["notes.png"]
    assert first["waiting"] == ["writing.png"]
    assert (folder / "processed" / "done.png").is_file() and not done.exists()
    assert (folder / "processed" / "shop" / "nested.png").is_file()
    reason = (folder / "quarantine" / "notes.png.reason.txt").read_text()
    assert "not a PNG, JPEG" in reason
    assert writing.exists()

    # Unchanged since the last look, but not for the settle time by the clock: it waits.
    second = sweep_inbox(str(inbox), "sam", settle_seconds=3600)
    assert second["processed"] == [] and second["waiting"] == ["writing.png"]
    outcomes = {r["file"]: r["outcome"] for r in second["outcomes"]}
    assert outcomes == {"writing.png": "waiting"}
    while time.time() - writing.stat().st_mtime < 1.0:
        time.sleep(0.1)
    third = sweep_inbox(str(inbox), "sam", settle_seconds=1.0)
    assert third["processed"] == ["writing.png"]
    names = {
        r["original_name"] for r in Catalog(designflow_env.database_url).designs_of_user("sam")
    }
    assert names == {"earlier.png", "done.png", "nested.png", "writing.png"}


def test_overlapping_sweep_is_refused(designflow_env: DesignflowEnv) -> None:
    inbox = designflow_env.inputs / "inbox"
    age(images.write_png((inbox / "tom").mkdir(parents=True) or inbox / "tom" / "a.png", seed=910))
    with sweep_lock(inbox / "tom"):
        result = sweep_inbox(str(inbox), "tom", settle_seconds=30)
    assert "another sweep" in result["skipped"]
    assert (inbox / "tom" / "a.png").exists()
    assert sweep_inbox(str(inbox), "tom", settle_seconds=30)["processed"] == ["a.png"]


def test_crash_between_upload_and_move_loses_nothing(designflow_env: DesignflowEnv) -> None:
    inbox = designflow_env.inputs / "inbox"
    folder = inbox / "uma"
    folder.mkdir(parents=True)
    files = [age(images.write_png(folder / f"c{i}.png", seed=920 + i)) for i in range(3)]
    # What a sweep that died right after its upload leaves: stored designs, files still here.
    upload_designs(paths=[str(f) for f in files], user_id="uma")
    result = sweep_inbox(str(inbox), "uma", settle_seconds=30)
    assert sorted(result["processed"]) == ["c0.png", "c1.png", "c2.png"]
    assert len(Catalog(designflow_env.database_url).designs_of_user("uma")) == 3
    assert sorted(p.name for p in (folder / "processed").iterdir()) == [
        "c0.png",
        "c1.png",
        "c2.png",
    ]


def test_symlink_outside_inbox_is_quarantined_not_followed(designflow_env: DesignflowEnv) -> None:
    inbox = designflow_env.inputs / "inbox"
    folder = inbox / "vic"
    folder.mkdir(parents=True)
    secret = images.write_png(designflow_env.inputs / "outside.png", seed=930)
    (folder / "link.png").symlink_to(secret)
    result = sweep_inbox(str(inbox), "vic", settle_seconds=0)
    assert result["quarantined"] == ["link.png"] and result["processed"] == []
    assert secret.is_file()  # the target is untouched
    assert "outside the inbox" in (folder / "quarantine" / "link.png.reason.txt").read_text()
    catalog = Catalog(designflow_env.database_url)
    catalog.migrate()  # no upload ran: nothing in the inbox was a design
    assert catalog.designs_of_user("vic") == []


def test_symlink_loops_in_the_inbox_are_quarantined_and_the_rest_swept(
    designflow_env: DesignflowEnv,
) -> None:
    folder = designflow_env.inputs / "inbox" / "lou"
    folder.mkdir(parents=True)
    (folder / "self.png").symlink_to("self.png")
    (folder / "ping.png").symlink_to("pong.png")
    (folder / "pong.png").symlink_to("ping.png")
    age(images.write_png(folder / "good.png", seed=931))
    result = sweep_inbox(str(designflow_env.inputs / "inbox"), "lou", settle_seconds=0)
    assert result["processed"] == ["good.png"]
    assert sorted(result["quarantined"]) == ["ping.png", "pong.png", "self.png"]


def test_sweep_all_users(designflow_env: DesignflowEnv) -> None:
    inbox = designflow_env.inputs / "inbox"
    for user, seed in (("wes", 940), ("xia", 941)):
        (inbox / user).mkdir(parents=True)
        age(images.write_png(inbox / user / "d.png", seed=seed))
    result = sweep_inbox(str(inbox), settle_seconds=30)
    assert {u: r["processed"] for u, r in result["users"].items()} == {
        "wes": ["d.png"],
        "xia": ["d.png"],
    }


def test_writer_pausing_longer_than_the_gap_between_sweeps_is_stored(
    designflow_env: DesignflowEnv,
) -> None:
    """Half a PNG, a pause longer than the gap between two sweeps, then the rest: real
    timing, as a seller's slow copy over the network. Never quarantined; stored once done.
    An empty file that was just created waits too."""
    inbox = designflow_env.inputs / "inbox"
    folder = inbox / "yan"
    folder.mkdir(parents=True)
    whole = images.write_png(designflow_env.inputs / "slow.png", seed=950).read_bytes()
    target = folder / "slow.png"
    target.write_bytes(whole[: len(whole) // 2])
    (folder / "empty.png").touch()
    # The writer's pause is shorter than the settle time and longer than the gap between
    # two sweeps: a settle time far above what two sweeps take even on a busy machine, so
    # the test does not depend on the sweeps' speed (a 4 s window did).
    settle = 120.0
    written = time.monotonic()
    looks = [sweep_inbox(str(inbox), "yan", settle_seconds=settle)]
    looks.append(sweep_inbox(str(inbox), "yan", settle_seconds=settle))  # the pause goes on
    assert time.monotonic() - written < settle  # both looks fell inside the pause
    for look in looks:
        assert look["processed"] == look["quarantined"] == []
        assert look["waiting"] == ["empty.png", "slow.png"]
    with target.open("ab") as rest:  # the writer wakes up and finishes
        rest.write(whole[len(whole) // 2 :])
    settle = 1.0  # now each file counts as complete once it rests 1 s: no waiting on the clock
    deadline = time.monotonic() + 60
    while not (folder / "processed" / "slow.png").exists():
        assert time.monotonic() < deadline, looks[-1]
        time.sleep(settle)
        looks.append(sweep_inbox(str(inbox), "yan", settle_seconds=settle))
        assert looks[-1]["quarantined"] in ([], ["empty.png"]), looks[-1]
    assert (folder / "processed" / "slow.png").read_bytes() == whole
    assert not (folder / "quarantine" / "slow.png").exists()
    stored = Catalog(designflow_env.database_url).designs_of_user("yan")
    assert [r["original_name"] for r in stored] == ["slow.png"]


def test_transient_failure_leaves_the_file_in_the_inbox(
    designflow_env: DesignflowEnv, monkeypatch
) -> None:
    """The NAS is unreachable: the file is reported left for retry and stays where it was;
    the next sweep, with the NAS back, stores it."""
    import socket

    inbox = designflow_env.inputs / "inbox"
    folder = inbox / "zed"
    folder.mkdir(parents=True)
    design = age(images.write_png(folder / "later.png", seed=960))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with monkeypatch.context() as down:
        down.setenv("DESIGNFLOW_NAS_URL", f"sftp://nobody@127.0.0.1:{port}/srv")
        down.setenv("DESIGNFLOW_NAS_PASSWORD", "unused")
        result = sweep_inbox(str(inbox), "zed", settle_seconds=30)
    assert result["left_for_retry"] == ["later.png"] and result["processed"] == []
    assert {r["outcome"] for r in result["outcomes"]} == {"left for retry"}
    assert design.is_file() and not (folder / "quarantine").exists()
    assert sweep_inbox(str(inbox), "zed", settle_seconds=30)["processed"] == ["later.png"]


def test_sweep_command_prints_each_outcome(designflow_env: DesignflowEnv, capsys) -> None:
    from designflow.cli import main

    inbox = designflow_env.inputs / "inbox"
    folder = inbox / "cli"
    folder.mkdir(parents=True)
    age(images.write_png(folder / "ok.png", seed=970))
    broken = folder / "broken.png"
    broken.write_text("not a png")
    age(broken)
    images.write_png(folder / "fresh.png", seed=971)
    assert main(["sweep", "--inbox", str(inbox), "--user", "cli", "--settle-seconds", "600"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "cli: 1 processed, 1 quarantined, 1 waiting, 0 left for retry"
    outcomes = {line.split()[1]: line.split()[0] for line in lines[1:]}
    assert outcomes == {"ok.png": "stored", "broken.png": "quarantined", "fresh.png": "waiting"}
    assert main(["sweep", "--inbox", str(inbox), "--json", "--settle-seconds", "600"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["users"]["cli"]["waiting"] == ["fresh.png"]
