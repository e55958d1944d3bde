"""An interrupt between a batch's NAS sends and its insert: the files sent and not recorded are
removed, recorded ones stay, a send in flight ends at its next chunk, an insert in flight is
waited for (real PostgreSQL, a real NAS folder)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from designflow.catalog import Catalog, NewDesign
from designflow.images.fingerprint import fingerprint_design
from designflow.ingest.interrupts import settle_unrecorded
from designflow.ops.verify import verify
from designflow.storage.nas import LocalNas, design_path
from designflow.storage.unrecorded import LEDGER, Interrupted
from tests import images


@pytest.fixture(autouse=True)
def fresh_ledger():
    LEDGER.resume()
    yield
    LEDGER.stop(0)
    LEDGER.resume()


def _send(nas: LocalNas, path: Path, user: str):
    fp = fingerprint_design(path)
    dest = design_path(user, fp.sha256, fp.extension)
    with LEDGER.sending(user, fp.sha256, dest):
        nas.put_file(path, dest, fp.sha256)
    return fp, dest


def _row(fp, dest: str, user: str) -> NewDesign:
    return NewDesign(user, fp.sha256, fp.phash, fp.ahash, fp.dhash, fp.whash, fp.width,
                     fp.height, fp.bytes, fp.format, fp.name, dest, uuid.uuid4(), None,
                     fp.nd_phash, fp.nd_dhash)  # fmt: skip


def test_files_sent_and_not_recorded_are_removed_and_recorded_ones_stay(
    catalog: Catalog, tmp_path: Path
) -> None:
    nas = LocalNas(tmp_path / "nas")
    paths = [images.write_png(tmp_path / f"i{i}.png", seed=4400 + i) for i in range(3)]
    sent = [_send(nas, p, "ines") for p in paths]
    recorded_fp, recorded_dest = sent[0]
    with LEDGER.recording():
        catalog.record_designs([_row(recorded_fp, recorded_dest, "ines")])
    # The row exists but the ledger was not told (the interrupt came right after the commit).
    settled = settle_unrecorded(catalog, nas)
    assert sorted(settled.removed) == sorted(dest for _, dest in sent[1:])
    assert settled.left == []
    assert (tmp_path / "nas" / recorded_dest).exists()
    assert not any((tmp_path / "nas" / dest).exists() for _, dest in sent[1:])
    assert verify(catalog, nas, "ines").clean
    # Stopped: no new send starts.
    with pytest.raises(Interrupted):
        _send(nas, paths[1], "ines")


def test_a_send_in_flight_ends_at_its_next_chunk_and_leaves_no_temporary(
    catalog: Catalog, tmp_path: Path
) -> None:
    nas = LocalNas(tmp_path / "nas")
    chunks = [os.urandom(1024 * 1024) for _ in range(10)]
    sha256 = hashlib.sha256(b"".join(chunks)).hexdigest()
    dest = design_path("ines", sha256, "png")
    source = tmp_path / "slow-source"
    os.mkfifo(source)  # a slow disk or link: a chunk every 0.2 s

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), open(source, "wb") as pipe:
            for chunk in chunks:
                pipe.write(chunk)
                pipe.flush()
                time.sleep(0.2)

    outcome: list[BaseException | None] = []

    def put() -> None:
        try:
            with LEDGER.sending("ines", sha256, dest):
                nas.put_file(source, dest, sha256)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - what the put ended with
            outcome.append(exc)

    feeder, sender = threading.Thread(target=feed), threading.Thread(target=put)
    feeder.start()
    sender.start()
    time.sleep(0.5)
    started = time.monotonic()
    settled = settle_unrecorded(catalog, nas, wait_s=5)
    took = time.monotonic() - started
    sender.join(5)
    feeder.join(5)
    assert outcome and isinstance(outcome[0], Interrupted), outcome
    assert took < 1.0, took  # the next chunk, not the last byte (~1.5 s later)
    assert settled.left == [] and not (tmp_path / "nas" / dest).exists()
    assert not list((tmp_path / "nas").rglob("*.part"))


def test_an_insert_in_flight_is_waited_for_and_its_files_kept(
    catalog: Catalog, tmp_path: Path
) -> None:
    nas = LocalNas(tmp_path / "nas")
    fp, dest = _send(nas, images.write_png(tmp_path / "w.png", seed=4420), "ines")
    inserting = threading.Event()

    def insert() -> None:
        with LEDGER.recording():
            inserting.set()
            time.sleep(0.8)  # the insert's transaction, still running when the stop comes
            catalog.record_designs([_row(fp, dest, "ines")])

    inserter = threading.Thread(target=insert)
    inserter.start()
    inserting.wait(5)
    settled = settle_unrecorded(catalog, nas, wait_s=5)
    inserter.join(5)
    assert settled.removed == [] and settled.left == []
    assert (tmp_path / "nas" / dest).exists() and verify(catalog, nas, "ines").clean
