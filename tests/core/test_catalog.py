"""The catalog against a real PostgreSQL."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from designflow.catalog import Catalog, NewDesign
from designflow.catalog.database import migrations_dir
from designflow.images.fingerprint import Fingerprint
from designflow.ingest.dedup import classify_exact


def new_design(user: str, n: int, batch: uuid.UUID | None = None) -> NewDesign:
    digest = f"{n:064x}"
    return NewDesign(
        user_id=user, sha256=digest, phash=n - 5, ahash=-n, dhash=n * 3, whash=(1 << 62) + n,
        width=100, height=120, bytes=1000 + n, format="PNG", original_name=f"d{n}.png",
        nas_path=f"users/{user}/designs/{digest[:2]}/{digest}.png",
        batch_id=batch or uuid.uuid4(), flow_run_id=None,
    )  # fmt: skip


def test_migrations_apply_once(database_url: str) -> None:
    cat = Catalog(database_url)
    expected = sorted(p.stem for p in migrations_dir().glob("*.sql"))
    assert expected[:2] == ["0001_design_images", "0002_near_duplicates"]
    assert cat.migrate() == expected
    assert cat.migrate() == []
    assert cat.applied_migrations() == expected


def test_concurrent_migrations_do_not_collide(database_url: str) -> None:
    errors: list[BaseException] = []
    applied: list[list[str]] = []

    def run() -> None:
        try:
            applied.append(Catalog(database_url).migrate())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(len(a) for a in applied) == [0, 0, 0, len(list(migrations_dir().glob("*.sql")))]


def test_schema_has_required_columns_and_indexes(catalog: Catalog) -> None:
    with catalog.connect() as conn:
        cols = {r[0]: r[1] for r in conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'design_images'"
        )}  # fmt: skip
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'design_images'"
            )
        }
    for col in ("phash", "ahash", "dhash", "whash"):
        assert cols[col] == "bigint"
    for col in ("id", "user_id", "sha256", "width", "height", "bytes", "format", "original_name",
                "nas_path", "batch_id", "flow_run_id", "is_active", "created_at"):  # fmt: skip
        assert col in cols
    text = "\n".join(indexes)
    assert "UNIQUE" in text and "(user_id, sha256)" in text
    assert "(user_id, is_active)" in text
    for col in ("phash", "ahash", "dhash", "whash"):
        assert f"(user_id, {col})" in text


def test_record_and_find(catalog: Catalog) -> None:
    rows = [new_design("alice", n) for n in range(1, 21)]
    result = catalog.record_designs(rows)
    assert len(result.inserted) == 20 and not result.already_present
    stored = catalog.designs_of_user("alice")
    assert [r["phash"] for r in stored] == [d.phash for d in rows]  # signed 64-bit round trip
    found = catalog.find_by_sha256("alice", [rows[0].sha256, "f" * 64])
    assert set(found) == {rows[0].sha256}
    assert found[rows[0].sha256].id == result.inserted[rows[0].sha256]


def test_conflict_returns_existing_instead_of_failing(catalog: Catalog) -> None:
    first = catalog.record_designs([new_design("alice", 1), new_design("alice", 2)])
    second = catalog.record_designs([new_design("alice", 2), new_design("alice", 3)])
    assert set(second.inserted) == {f"{3:064x}"}
    assert second.already_present[f"{2:064x}"].id == first.inserted[f"{2:064x}"]
    assert catalog.count_designs("alice") == 3


def test_users_are_isolated(catalog: Catalog) -> None:
    catalog.record_designs([new_design("alice", 1)])
    catalog.record_designs([new_design("bob", 1)])  # same content, other user: own row
    assert catalog.count_designs("alice") == 1 and catalog.count_designs("bob") == 1
    assert catalog.find_by_sha256("carol", [f"{1:064x}"]) == {}


def test_hostile_strings_are_data(catalog: Catalog) -> None:
    evil = "x'); DROP TABLE design_images; --"
    d = new_design("alice", 7)
    d = NewDesign(**{**d.__dict__, "original_name": evil})
    catalog.record_designs([d])
    assert catalog.designs_of_user("alice")[0]["original_name"] == evil
    assert catalog.find_by_sha256(evil, [d.sha256]) == {}


def test_batch_is_one_transaction(catalog: Catalog) -> None:
    good = new_design("alice", 1)
    bad = NewDesign(**{**new_design("alice", 2).__dict__, "sha256": "not-a-digest"})
    with pytest.raises(psycopg.errors.CheckViolation):
        catalog.record_designs([good, bad])
    assert catalog.count_designs("alice") == 0


def fp(n: int, path: str) -> Fingerprint:
    return Fingerprint(path, path, f"{n:064x}", 10, "PNG", 1, 1, 0, 0, 0, 0)


def test_classify_exact(catalog: Catalog) -> None:
    catalog.record_designs([new_design("alice", 1)])
    batch = [fp(1, "old.png"), fp(2, "new.png"), fp(2, "new-copy.png"), fp(1, "old-copy.png")]
    known = catalog.find_by_sha256("alice", [f.sha256 for f in batch])
    out = classify_exact(batch, known)
    assert [f.path for f in out.to_store] == ["new.png"]
    assert sorted(f.path for f, _ in out.exact) == ["old-copy.png", "old.png"]
    assert [(c.path, o.path) for c, o in out.in_batch] == [("new-copy.png", "new.png")]


def test_planner_statistics_follow_a_table_growing_within_an_upload(catalog: Catalog) -> None:
    """Stale statistics sent the near-duplicate lookup of a growing seller through a scan of
    their designs per probe (bench.scale: 218 -> 1706 ms per batch within one upload). The
    table is analysed once a fifth of it (and 20 rows) changed since the last analysis."""

    def planner_rows() -> float:
        with catalog.connect() as conn:
            return conn.execute(
                "SELECT reltuples FROM pg_class WHERE oid = 'design_images'::regclass"
            ).fetchone()[0]

    catalog.record_designs([new_design("grow", n) for n in range(1, 21)])
    assert planner_rows() == 20  # a new table: analysed at its first insert
    catalog.record_designs([new_design("grow", n) for n in range(21, 41)])
    catalog.record_designs([new_design("grow", n) for n in range(41, 61)])
    # 40 rows changed since: analysed again (at the second or third batch, as the server's
    # change counts come in), so the planner knows the seller has designs.
    assert planner_rows() in (40, 60)


def test_a_full_catalog_disk_fails_at_once_naming_the_database(catalog) -> None:
    """PostgreSQL's "could not extend file" (SQLSTATE 53100) is not retried and says which
    database is full; the address's password never appears."""
    from designflow.catalog.database import CatalogDiskFull
    from designflow.errors import is_transient

    with pytest.raises(CatalogDiskFull) as caught:
        with catalog.connect() as conn:
            conn.execute(
                "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '53100',"
                " MESSAGE = 'could not extend file \"base/5/1259\": No space left on device'; END $$"
            )
    message = str(caught.value)
    assert message.startswith("the catalog database ") and "no space left on its disk" in message
    assert "could not extend file" in message
    assert not is_transient(caught.value)
