"""The ingest service decides each file's fate without Prefect, the NAS or the database: it
is fed the answers those would give and must settle every file in exactly one list."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from designflow.catalog import ExistingDesign, RecordResult
from designflow.images.fingerprint import Fingerprint
from designflow.images.similarity import NearMatch
from designflow.ingest.report import RejectedFile
from designflow.ingest.service import BatchIngest, new_design_row, stored_name
from designflow.storage.nas import NasError, SourceChangedError

RUN = str(uuid.uuid4())
# A phash with 32 bits set has detail; its twin differs in 3 bits (a near duplicate).
DETAILED = 0x0F0F0F0F0F0F0F0F
NEAR_TWIN = DETAILED ^ 0b111


def fp(name: str, content: str | None = None, phash: int = DETAILED) -> Fingerprint:
    sha = hashlib.sha256((content or name).encode("utf-8", "surrogateescape")).hexdigest()
    return Fingerprint(
        path=f"/in/{name}", name=name, sha256=sha, bytes=10, format="PNG", width=8, height=8,
        phash=phash, ahash=1, dhash=phash, whash=1, nd_phash=phash, nd_dhash=phash,
        nd_phash_flip=~phash, nd_dhash_flip=~phash,
    )  # fmt: skip


def ingest(allow_near: bool = False) -> BatchIngest:
    return BatchIngest("seller", RUN, allow_near_duplicates=allow_near)


def inserted(service: BatchIngest, start: int = 100) -> RecordResult:
    rows = service.rows()
    return RecordResult({r.sha256: start + i for i, r in enumerate(rows)}, {})


def fates(report) -> dict[str, str]:
    out = {}
    for kind in ("stored", "duplicates", "rejected", "failed"):
        for entry in getattr(report, kind):
            name = entry.file.rsplit("/", 1)[-1]
            assert name not in out, f"{name} settled twice"
            out[name] = entry.kind if kind == "duplicates" else kind
    return out


def run_clean(service: BatchIngest, results, existing=None, near=()) -> None:
    service.fingerprinted(results)
    service.known(existing or {})
    for upload in service.near(list(near)):
        service.uploaded(upload, None)


def test_new_files_are_stored_with_rows_built_from_their_fingerprints() -> None:
    service = ingest()
    a, b = fp("a.png"), fp("b.png", phash=0x00FF00FF00FF00FF)
    run_clean(service, [a, b, RejectedFile("/in/c.png", "empty file (0 bytes)")])
    rows = service.rows()
    assert [r.original_name for r in rows] == ["a.png", "b.png"]
    assert rows[0].nas_path == f"users/seller/designs/{a.sha256[:2]}/{a.sha256}.png"
    assert rows[0].flow_run_id == uuid.UUID(RUN) and rows[0].batch_id == service.batch_id
    report = service.recorded(RecordResult({a.sha256: 1, b.sha256: 2}, {}))
    assert fates(report) == {"a.png": "stored", "b.png": "stored", "c.png": "rejected"}
    assert {s.design_id for s in report.stored} == {1, 2}
    assert set(report.timings_ms) == {"fingerprint", "dedup", "nas", "insert"}


def test_exact_in_batch_and_earlier_batch_duplicates() -> None:
    service = ingest()
    old, new, copy, mine = fp("old.png"), fp("new.png", phash=0x3C3C3C3C3C3C3C3C), fp("copy.png", "new.png", phash=0x3C3C3C3C3C3C3C3C), fp("mine.png", phash=0x5A5A5A5A5A5A5A5A)  # fmt: skip
    existing = {
        old.sha256: ExistingDesign(7, old.sha256, "users/seller/designs/x/old.png"),
        # stored by an earlier batch of this same upload run
        mine.sha256: ExistingDesign(8, mine.sha256, "p", flow_run_id=uuid.UUID(RUN)),
    }
    run_clean(service, [old, new, copy, mine], existing)
    report = service.recorded(inserted(service))
    assert fates(report) == {"old.png": "exact", "new.png": "stored", "copy.png": "in-batch", "mine.png": "in-batch"}  # fmt: skip
    by_file = {d.file: d for d in report.duplicates}
    assert by_file["/in/old.png"].duplicate_of == 7
    assert by_file["/in/copy.png"].duplicate_of == report.stored[0].design_id


def test_near_duplicate_of_history_is_reported_or_stored_when_allowed() -> None:
    for allow in (False, True):
        service = ingest(allow_near=allow)
        a = fp("a.png")
        service.fingerprinted([a])
        queries = service.all_near_queries()
        assert queries and {q.key for q in queries} == {0}
        service.known({})
        uploads = service.near([NearMatch(0, 42, 3, 6, False, "users/seller/designs/q.png")])
        for upload in uploads:
            service.uploaded(upload, None)
        if allow:
            assert service.rows()[0].near_duplicate_of == 42
            report = service.recorded(inserted(service))
            assert report.stored[0].near_duplicate_of == 42 and report.stored[0].distance == 3
        else:
            assert uploads == []
            report = service.recorded(inserted(service))
            assert fates(report) == {"a.png": "near"}
            assert report.duplicates[0].duplicate_of == 42


def test_near_twin_within_the_batch() -> None:
    service = ingest()
    a, b = fp("a.png"), fp("b.png", phash=NEAR_TWIN)
    run_clean(service, [a, b])
    report = service.recorded(inserted(service))
    assert fates(report) == {"a.png": "stored", "b.png": "near"}
    assert report.duplicates[0].duplicate_of == report.stored[0].design_id


def test_own_insert_seen_again_on_a_retry_is_stored_a_concurrent_winner_is_a_duplicate() -> None:
    service = ingest()
    ours, theirs = fp("ours.png"), fp("theirs.png", phash=0x3C3C3C3C3C3C3C3C)
    run_clean(service, [ours, theirs])
    result = RecordResult(
        {},
        {
            ours.sha256: ExistingDesign(5, ours.sha256, "p1", batch_id=service.batch_id),
            theirs.sha256: ExistingDesign(6, theirs.sha256, "p2", batch_id=uuid.uuid4()),
        },
    )
    report = service.recorded(result)
    assert fates(report) == {"ours.png": "stored", "theirs.png": "exact"}
    assert report.stored[0].design_id == 5 and report.duplicates[0].duplicate_of == 6


def test_copies_of_a_file_that_was_not_stored_share_its_fate() -> None:
    service = ingest()
    a, copy, twin = fp("a.png"), fp("copy.png", "a.png"), fp("twin.png", phash=NEAR_TWIN)
    service.fingerprinted([a, copy, twin])
    service.known({})
    (upload,) = service.near([])
    service.uploaded(upload, NasError("connection reset"), "NasError: connection reset")
    assert service.rows() == []
    report = service.recorded(RecordResult({}, {}))
    assert fates(report) == {"a.png": "failed", "copy.png": "failed", "twin.png": "failed"}
    reasons = {f.file: f.reason for f in report.failed}
    assert reasons["/in/copy.png"] == "same content as /in/a.png, which was not stored"
    assert reasons["/in/twin.png"] == "resembles /in/a.png, which was not stored"
    assert "connection reset" in reasons["/in/a.png"]


def test_a_changed_source_file_is_recognised_by_its_type_not_its_message() -> None:
    service = ingest()
    a, b = fp("a.png"), fp("b.png", phash=0x3C3C3C3C3C3C3C3C)
    service.fingerprinted([a, b])
    service.known({})
    up_a, up_b = service.near([])
    service.uploaded(up_a, SourceChangedError(a.path, a.sha256, "0" * 64))
    # a message that merely mentions the phrase is still a failure, not a rejection
    service.uploaded(up_b, NasError("file changed after it was fingerprinted"), "x")
    report = service.recorded(RecordResult({}, {}))
    assert fates(report) == {"a.png": "rejected", "b.png": "failed"}
    assert "changed after it was fingerprinted" in report.rejected[0].reason


@pytest.mark.parametrize("failing_step", ["lookup", "near", "insert"])
def test_catalog_unavailable_fails_every_file_without_a_fate(failing_step: str) -> None:
    service = ingest()
    old, new, copy = fp("old.png"), fp("new.png", phash=0x3C3C3C3C3C3C3C3C), fp("copy.png", "new.png", phash=0x3C3C3C3C3C3C3C3C)  # fmt: skip
    bad = RejectedFile("/in/bad.png", "not an image")
    service.fingerprinted([old, new, copy, bad])
    if failing_step == "lookup":
        report = service.unavailable("catalog unavailable after retries: down")
        assert fates(report) == {"old.png": "failed", "new.png": "failed", "copy.png": "failed", "bad.png": "rejected"}  # fmt: skip
        return
    service.known({old.sha256: ExistingDesign(1, old.sha256, "p")})
    if failing_step == "insert":
        for upload in service.near([]):
            service.uploaded(upload, None)
        service.rows()
    report = service.unavailable("catalog unavailable after retries: down")
    assert fates(report) == {"old.png": "exact", "new.png": "failed", "copy.png": "failed", "bad.png": "rejected"}  # fmt: skip
    reasons = {f.file.rsplit("/", 1)[-1]: f.reason for f in report.failed}
    assert reasons["copy.png"] == "catalog unavailable after retries: down"
    if failing_step == "insert":  # sent before the catalog failed: said, not silently orphaned
        assert reasons["new.png"] == (
            "catalog unavailable after retries: down; on the NAS, not recorded: the next "
            "upload of it or `designflow verify --repair` adopts it"
        )
    else:
        assert reasons["new.png"] == "catalog unavailable after retries: down"
    assert report.unavailable == "catalog unavailable after retries: down"


def test_a_name_that_is_not_utf8_is_kept_losslessly_escaped() -> None:
    name = b"\xff\xfe design.png".decode("utf-8", "surrogateescape")
    assert stored_name(name) == "\\xff\\xfe design.png"
    assert stored_name("café.png") == "café.png"
    row = new_design_row(fp(name), "seller", uuid.uuid4(), None)
    row.original_name.encode("utf-8")  # what PostgreSQL needs


def test_designs_another_upload_is_storing_become_exact_duplicates_of_its_rows() -> None:
    service = ingest()
    mine, theirs, gave_up = fp("mine.png"), fp("theirs.png", phash=0x3C3C3C3C3C3C3C3C), fp("gave-up.png", phash=0x5A5A5A5A5A5A5A5A)  # fmt: skip
    copy = fp("copy.png", "theirs.png", phash=0x3C3C3C3C3C3C3C3C)
    service.fingerprinted([mine, theirs, gave_up, copy])
    service.known({})
    uploads = service.near([])
    other_batch = uuid.uuid4()
    ours = service.claimed({theirs.sha256: other_batch, gave_up.sha256: other_batch}, uploads)
    assert [u.sha256 for u in ours] == [mine.sha256]
    assert sorted(service.contested()) == sorted([theirs.sha256, gave_up.sha256])
    for upload in ours:
        service.uploaded(upload, None)
    found = {
        theirs.sha256: ExistingDesign(
            77, theirs.sha256, "users/seller/designs/t.png", batch_id=other_batch
        )
    }
    left = service.stored_elsewhere(found)
    assert [u.sha256 for u in left] == [gave_up.sha256]  # its claimer gave up: ours to send
    for upload in left:
        service.uploaded(upload, None)
    report = service.recorded(inserted(service))
    assert fates(report) == {"mine.png": "stored", "gave-up.png": "stored", "theirs.png": "exact", "copy.png": "in-batch"}  # fmt: skip
    by_file = {d.file: d for d in report.duplicates}
    assert (
        by_file["/in/theirs.png"].duplicate_of == 77 and by_file["/in/copy.png"].duplicate_of == 77
    )


def test_one_lookup_for_exact_and_near_keeps_each_answer_to_its_file() -> None:
    """The flow asks the catalog both questions at once (one task run): near matches come
    keyed by position among all fingerprints, including files the exact lookup settles."""
    service = ingest()
    old = fp("old.png")
    a = fp("a.png", phash=0x3C3C3C3C3C3C3C3C)
    b = fp("b.png", phash=0x5A5A5A5A5A5A5A5A)
    copy = fp("copy.png", "b.png", phash=0x5A5A5A5A5A5A5A5A)
    service.fingerprinted([old, a, b, copy])
    queries = service.all_near_queries()
    # every content asked once: old too (decoded here), not b's copy (it follows b)
    assert {q.key for q in queries} == {0, 1, 2}
    existing = {old.sha256: ExistingDesign(7, old.sha256, "users/seller/designs/x/old.png")}
    history = "users/seller/designs/q.png"
    matches = [
        NearMatch(0, 50, 1, 2, False, history),  # old: settled as exact, ignored here
        NearMatch(1, 42, 3, 6, False, history),  # a: a near duplicate of design 42
        NearMatch(3, 51, 2, 4, False, history),  # copy: an in-batch copy of b, ignored
    ]
    uploads = service.looked_up(existing, matches)
    assert [u.fingerprint.name for u in uploads] == ["b.png"]
    for upload in uploads:
        service.uploaded(upload, None)
    report = service.recorded(inserted(service))
    assert fates(report) == {"old.png": "exact", "a.png": "near", "b.png": "stored", "copy.png": "in-batch"}  # fmt: skip
    by_file = {d.file: d.duplicate_of for d in report.duplicates}
    assert by_file["/in/old.png"] == 7 and by_file["/in/a.png"] == 42


def test_a_second_file_with_the_same_bytes_asks_no_near_query() -> None:
    """The batch's near queries: one set per content; the copy follows the first file."""
    service = ingest()
    new = fp("new.png", phash=0x3C3C3C3C3C3C3C3C)
    copy = fp("copy.png", "new.png", phash=0x3C3C3C3C3C3C3C3C)
    other = fp("other.png", phash=0x5A5A5A5A5A5A5A5A)
    service.fingerprinted([new, copy, other])
    asked = {q.key for q in service.all_near_queries()}
    assert asked == {0, 2}
