"""Near-duplicate search: the indexed query gives exactly the full scan's answers."""

from __future__ import annotations

import random
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

from PIL import Image

from designflow.catalog import Catalog, NewDesign
from designflow.catalog.database import migrations_dir
from designflow.images.fingerprint import fingerprint_design
from designflow.images.similarity import (
    DESIGN_CHUNKS,
    PLAIN,
    NearQuery,
    chunk_radii,
    chunks,
    hamming,
    probe_values,
    signed,
)
from designflow.images.views import VIEW_COUNT
from designflow.ingest.dedup import classify_near, near_pair, near_queries
from tests import images

T = 8


def flip_bits(value: int, count: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), count):
        value ^= 1 << bit
    return signed(value)


def design_row(user: str, n: int, nd_phash: int, nd_dhash: int = 0) -> NewDesign:
    digest = f"{n:064x}"
    return NewDesign(
        user_id=user, sha256=digest, phash=nd_phash, ahash=0, dhash=nd_dhash, whash=0,
        width=10, height=10, bytes=100, format="PNG", original_name=f"{n}.png",
        nas_path=f"users/{user}/designs/{digest[:2]}/{digest}.png", batch_id=uuid.uuid4(),
        flow_run_id=None, nd_phash=nd_phash, nd_dhash=nd_dhash,
    )  # fmt: skip


def python_scan(catalog: Catalog, rows: list[NewDesign], phash: int, kind: str = "trimmed"):
    """Reference answer, independent of the SQL: a Hamming scan over the rows as inserted."""
    ids = {r["sha256"]: r["id"] for r in catalog.designs_of_user(rows[0].user_id)}
    found = []
    for row in rows:
        stored = row.nd_phash if kind != PLAIN else row.phash
        distance = bin((stored ^ phash) & (1 << 64) - 1).count("1")
        if distance <= T:
            found.append((ids[row.sha256], distance))
    return sorted(found)


def test_pigeonhole_probes_cover_every_pair_within_t() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        a = signed(rng.getrandbits(64))
        d = rng.randint(0, T)
        b = flip_bits(a, d, rng)
        probes = set(probe_values(a, T))
        assert any((i, c) in probes for i, c in enumerate(chunks(b)))
    assert sum(bits for bits, _ in DESIGN_CHUNKS) == 64 and chunk_radii(8) == (2, 1, 1, 1)


def test_hashes_just_past_the_radii_in_every_chunk_are_beyond_t() -> None:
    """The radii are the smallest that work: a hash differing by r_i + 1 bits in every chunk
    is T + 1 away, and the probes miss it, as they may."""
    a = 0
    b = 0
    for (_bits, shift), radius in zip(DESIGN_CHUNKS, chunk_radii(T), strict=True):
        b |= ((1 << (radius + 1)) - 1) << shift
    assert hamming(a, b) == T + 1
    probes = set(probe_values(a, T))
    assert not any((i, c) in probes for i, c in enumerate(chunks(b)))


def test_indexed_search_equals_full_scan_random_and_clustered(catalog: Catalog) -> None:
    rng = random.Random(7)
    rows, n = [], 0
    centers = [signed(rng.getrandbits(64)) for _ in range(5)]
    for _ in range(4000):  # random history
        n += 1
        rows.append(design_row("alice", n, signed(rng.getrandbits(64))))
    for center in centers:  # clusters: many designs with similar hashes
        for _ in range(300):
            n += 1
            rows.append(design_row("alice", n, flip_bits(center, rng.randint(0, 14), rng)))
    catalog.copy_designs(rows)

    queries = [NearQuery(i, flip_bits(c, rng.randint(0, 3), rng), 0) for i, c in enumerate(centers)]
    queries += [NearQuery(10 + i, signed(rng.getrandbits(64)), 0) for i in range(15)]
    found = catalog.find_near("alice", queries, T)
    for q in queries:
        indexed = sorted((m.design_id, m.distance) for m in found if m.key == q.key)
        assert indexed == python_scan(catalog, rows, q.phash), q.key
    assert sum(1 for m in found if m.key < 10) > 100  # the clusters really were searched


def test_plain_hash_search_equals_full_scan(catalog: Catalog) -> None:
    rng = random.Random(8)
    center = signed(rng.getrandbits(64))
    rows = []
    for n in range(1, 1501):  # plain phash clustered, trimmed hash unrelated
        plain = flip_bits(center, rng.randint(0, 12), rng)
        rows.append(
            NewDesign(
                **{**design_row("zed", n, signed(rng.getrandbits(64))).__dict__, "phash": plain}
            )
        )
    catalog.copy_designs(rows)
    query = NearQuery(0, flip_bits(center, 2, rng), 0, kind=PLAIN)
    found = sorted((m.design_id, m.distance) for m in catalog.find_near("zed", [query], T))
    assert found == python_scan(catalog, rows, query.phash, kind=PLAIN)
    assert len(found) > 20


def test_distance_boundary(catalog: Catalog) -> None:
    rng = random.Random(3)
    query = signed(rng.getrandbits(64))
    planted = {d: flip_bits(query, d, rng) for d in (T - 1, T, T + 1)}
    catalog.copy_designs(design_row("bob", i, h) for i, h in enumerate(planted.values(), start=1))
    found = {m.distance for m in catalog.find_near("bob", [NearQuery(0, query, 0)], T)}
    assert found == {T - 1, T}


def test_users_isolated_and_inactive_ignored(catalog: Catalog) -> None:
    h = signed(random.Random(5).getrandbits(64))
    catalog.copy_designs(
        [design_row("carol", 1, h), design_row("dave", 2, h), design_row("carol", 3, h ^ 1)]
    )
    assert {m.design_id for m in catalog.find_near("carol", [NearQuery(0, h, 0)], T)} == {1, 3}
    assert catalog.deactivate("carol", [1]) == 1
    assert {m.design_id for m in catalog.find_near("carol", [NearQuery(0, h, 0)], T)} == {3}
    assert catalog.find_near("erin", [NearQuery(0, h, 0)], T) == []


def _variants(tmp_path: Path, seed: int) -> dict[str, Path]:
    art = images.design(seed, (800, 960))
    out = {}
    out["original"] = tmp_path / "original.png"
    art.save(out["original"])
    out["flipped"] = tmp_path / "flipped.png"
    art.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(out["flipped"])
    canvas = Image.new("RGBA", (1200, 1300), (0, 0, 0, 0))
    canvas.paste(art, (150, 200))
    out["canvas"] = tmp_path / "canvas.png"
    canvas.save(out["canvas"])
    out["resized"] = tmp_path / "resized.jpg"
    images.flatten(art).resize((400, 480)).save(out["resized"], quality=80)
    out["other"] = tmp_path / "other.png"
    images.design(seed + 1000, (800, 960)).save(out["other"])
    return out


def test_flipped_and_extra_canvas_copies_are_near(tmp_path: Path) -> None:
    files = _variants(tmp_path, 11)
    fps = {k: fingerprint_design(p) for k, p in files.items()}
    for name in ("flipped", "canvas", "resized"):
        assert near_pair(fps[name], fps["original"], T, 26) is not None, name
    assert near_pair(fps["other"], fps["original"], T, 26) is None
    # The plain phash misses the canvas copy: trimming is what finds it.
    assert hamming(fps["canvas"].phash, fps["original"].phash) > T


def test_within_batch_near_duplicates() -> None:
    from designflow.images.fingerprint import Fingerprint

    def fp(name: str, ph: int) -> Fingerprint:
        return Fingerprint(name, name, name * 64 if len(name) == 1 else "0" * 64, 1, "PNG", 1, 1, ph, 0, 0, 0,
                           nd_phash=ph, nd_dhash=0, nd_phash_flip=~ph, nd_dhash_flip=0)  # fmt: skip

    a, b, c = fp("a", 0x0F0F), fp("b", 0x0F0F ^ 0b111), fp("c", signed(0xFFFF_0000_FFFF_0000))
    out = classify_near([a, b, c], [], T, 26)
    assert [f.name for f in out.to_store] == ["a", "c"]
    assert [(x.name, y.name, d) for x, y, d in out.in_batch] == [("b", "a", 3)]
    # Trimmed and trimmed mirrored; no plain query: trimming changed nothing.
    assert len(near_queries([a, b])) == 4
    bordered = replace(a, phash=0x7777)  # a design on a canvas: its plain hash is asked too
    assert [q.kind for q in near_queries([bordered])] == ["trimmed", "trimmed", "plain"]


def test_migration_adds_columns_without_losing_rows_and_backfill(
    database_url: str, tmp_path: Path
) -> None:
    from designflow.ops.backfill import backfill_near_hashes
    from designflow.settings import ImageLimits
    from designflow.storage.nas import LocalNas, design_path

    only_first = tmp_path / "m"
    only_first.mkdir()
    shutil.copy(migrations_dir() / "0001_design_images.sql", only_first)
    catalog = Catalog(database_url)
    assert catalog.migrate(only_first) == ["0001_design_images"]

    nas = LocalNas(tmp_path / "nas")
    src = tmp_path / "canvas.png"
    canvas = Image.new("RGBA", (1200, 1300), (0, 0, 0, 0))
    canvas.paste(images.design(12, (800, 960)), (150, 200))
    canvas.save(src)
    fp = fingerprint_design(src)
    path = design_path("old", fp.sha256, "png")
    nas.put_file(src, path, fp.sha256)
    with catalog.connect() as conn:
        conn.execute(
            "INSERT INTO design_images (user_id, sha256, phash, ahash, dhash, whash, width, height,"
            " bytes, format, original_name, nas_path, batch_id) VALUES"
            " ('old', %s, %s, 0, %s, 0, 1200, 1300, 10, 'PNG', 'canvas.png', %s, gen_random_uuid())",
            (fp.sha256, fp.phash, fp.dhash, path),
        )

    assert catalog.migrate()[0] == "0002_near_duplicates"
    (row,) = catalog.designs_of_user("old")
    with catalog.connect() as conn:
        nd, version = conn.execute(
            "SELECT nd_phash, nd_version FROM design_images WHERE id = %s", (row["id"],)
        ).fetchone()
    assert (nd, version) == (fp.phash, 0)  # stand-in until backfilled

    result = backfill_near_hashes(catalog, nas, ImageLimits())
    assert result.updated == 1 and result.missing == []
    with catalog.connect() as conn:
        nd, version = conn.execute(
            "SELECT nd_phash, nd_version FROM design_images WHERE id = %s", (row["id"],)
        ).fetchone()
        views = conn.execute(
            "SELECT view, phash FROM design_views WHERE design_id = %s ORDER BY view", (row["id"],)
        ).fetchall()
        (reduction,) = conn.execute(
            "SELECT image FROM design_reductions WHERE design_id = %s", (row["id"],)
        ).fetchone()
    # Migration 0011 adds views and the verifier's reduction; the backfill makes both.
    assert (nd, version) == (fp.nd_phash, 2)
    assert [h for _, h in views] == list(fp.views) and len(views) == VIEW_COUNT
    assert bytes(reduction) == fp.reduction
    assert catalog.rows_to_backfill() == []


def test_plain_images_are_not_near_duplicates_of_each_other(tmp_path: Path) -> None:
    """A plain red square, a 1x1 dot and a 20000x3 strip all have (almost) empty phashes:
    without the detail check every pair of them would be 'near duplicates'."""
    paths = [tmp_path / n for n in ("red.png", "dot.png", "strip.png", "art.png")]
    Image.new("RGB", (500, 500), (200, 0, 0)).save(paths[0])
    Image.new("RGB", (1, 1), (9, 9, 9)).save(paths[1])
    Image.new("RGB", (20000, 3), (30, 90, 200)).save(paths[2])
    images.write_png(paths[3], seed=77)
    fps = [fingerprint_design(p) for p in paths]
    assert near_pair(fps[0], fps[1], T, 26) is not None  # what the hashes alone would say
    out = classify_near(fps, [], T, 26)
    assert [f.name for f in out.to_store] == ["red.png", "dot.png", "strip.png", "art.png"]
    assert {q.key for q in near_queries(fps)} == {3}  # only the design with detail asks


def test_one_statement_per_batch_for_the_near_lookup(catalog: Catalog, monkeypatch) -> None:
    """The README: a batch's near-duplicate lookup is one catalog statement, however many
    files (and mirrored variants) it holds."""
    import psycopg

    rng = random.Random(11)
    rows = [design_row("erin", n, signed(rng.getrandbits(64))) for n in range(1, 201)]
    catalog.copy_designs(rows)
    queries = [NearQuery(i, flip_bits(rows[i].nd_phash, 2, rng), 0) for i in range(40)]
    queries += [NearQuery(100 + i, signed(rng.getrandbits(64)), 0, kind=PLAIN) for i in range(20)]
    statements: list[str] = []
    real_execute = psycopg.Cursor.execute

    def counting_execute(self, query, *args, **kwargs):
        statements.append(str(query))
        return real_execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting_execute)
    found = catalog.find_near("erin", queries, T)
    assert {m.key for m in found} >= set(range(40))  # every planted neighbour found
    # One statement, the designs' own hashes and their views together (plus the
    # transaction's planner setting, which reads nothing).
    assert statements[:-1] == ["SET LOCAL enable_seqscan = off"], statements
    assert "design_images" in statements[-1] and "design_views" in statements[-1]


def test_a_pooled_catalog_asks_a_batch_in_two_statements_at_once(
    catalog: Catalog, database_url: str, monkeypatch
) -> None:
    """Flows search through the process's pool: a batch's queries go as two statements on
    two connections at once (both server cores), with the same answer as one statement."""
    import threading

    import psycopg

    rng = random.Random(12)
    rows = [design_row("fay", n, signed(rng.getrandbits(64))) for n in range(1, 301)]
    catalog.copy_designs(rows)
    queries = [NearQuery(i, flip_bits(rows[i].nd_phash, i % 9, rng), 0) for i in range(40)]
    queries += [NearQuery(100 + i, rows[50 + i].phash, 0, kind=PLAIN) for i in range(20)]
    expected = catalog.find_near("fay", queries, T)  # no pool: one statement

    lookups: list[tuple[int, str]] = []
    real_execute = psycopg.Cursor.execute

    def recording_execute(self, query, *args, **kwargs):
        if "design_views" in str(query):
            lookups.append((self.connection.info.backend_pid, threading.current_thread().name))
        return real_execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", recording_execute)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    pooled = Catalog(database_url, pool_size=4)
    try:
        found = pooled.find_near("fay", queries, T)
    finally:
        pooled.close()

    def key(m):
        return (m.key, m.design_id, m.distance, m.confirm, m.flipped, m.view)

    assert sorted(map(key, found)) == sorted(map(key, expected))
    assert {m.key for m in found} >= set(range(40)) | {100 + i for i in range(20)}
    assert len(lookups) == 2 and len({pid for pid, _ in lookups}) == 2, lookups
    assert all(name.startswith("near-lookup") for _, name in lookups)
