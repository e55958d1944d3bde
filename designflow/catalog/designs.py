"""Designs in the catalog: lookups by content, the batch insert, near-duplicate search,
upkeep. A thin repository: it only talks to the database; every statement is
parameterised; each batch is one round trip for the lookup and one transaction for the
insert."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from designflow.catalog.database import Database
from designflow.images.similarity import (
    DESIGN_CHUNKS,
    MAX_RADIUS,
    TRIMMED,
    VIEW_CHUNKS,
    VIEW_PROBE_RADIUS,
    NearMatch,
    NearQuery,
    chunk_radii,
)

# A batch's near-duplicate lookup runs as this many statements at once (see _near_parts),
# from this many queries up (a batch of 20 asks 40-60).
NEAR_LOOKUP_PARTS = 2
NEAR_LOOKUP_SPLIT_FROM = 16


@dataclass(frozen=True)
class ExistingDesign:
    id: int
    sha256: str
    nas_path: str
    flow_run_id: uuid.UUID | None = None
    batch_id: uuid.UUID | None = None


@dataclass(frozen=True)
class NewDesign:
    user_id: str
    sha256: str
    phash: int
    ahash: int
    dhash: int
    whash: int
    width: int
    height: int
    bytes: int
    format: str
    original_name: str
    nas_path: str
    batch_id: uuid.UUID
    flow_run_id: uuid.UUID | None
    nd_phash: int = 0
    nd_dhash: int = 0
    # Stored although it is a near duplicate (--allow-near-duplicates): of which design,
    # or of which sha256 in the same batch (resolved to an id in the same transaction).
    near_duplicate_of: int | None = None
    near_duplicate_of_sha256: str | None = None
    near_distance: int | None = None
    # The views' hashes and the verifier's reduction (migration 0011); a row without them
    # is found by its own hashes only until `designflow db backfill` makes them.
    views: tuple[int, ...] = ()
    reduction: bytes = b""
    # A better version of this stored design (--replace-with-better): the old one becomes
    # inactive, superseded by this one, and its listing follows (same transaction).
    replaces: int | None = None


@dataclass(frozen=True)
class RecordResult:
    inserted: dict[str, int]  # sha256 -> new design id
    # Rows another run inserted first (same user, same sha256): sha256 -> existing design.
    already_present: dict[str, ExistingDesign]


# A claim older than this belongs to a process that died: another batch may take it over.
CLAIM_STALE_S = 600


class DesignRepository(Database):
    def find_by_sha256(self, user_id: str, sha256s: Sequence[str]) -> dict[str, ExistingDesign]:
        """The user's designs with any of these contents, one query for the whole batch."""
        if not sha256s:
            return {}
        with self.connect() as conn:
            return _by_sha256(conn, user_id, sha256s)

    def count_designs(self, user_id: str, active_only: bool = True) -> int:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT count(*) FROM design_images WHERE user_id = %s AND (is_active OR NOT %s)",
                (user_id, active_only),
            ).fetchone()
        return int(row[0]) if row else 0

    def designs_of_user(self, user_id: str) -> list[dict[str, object]]:
        with self.connect() as conn:
            cur = conn.execute(
                "SELECT id, sha256, nas_path, original_name, width, height, bytes, format,"
                " phash, batch_id, flow_run_id, is_active FROM design_images"
                " WHERE user_id = %s ORDER BY id",
                (user_id,),
            )
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def stored_by_run(self, user_id: str, flow_run_id: str) -> list[dict[str, object]]:
        """The designs one run stored, in the order it stored them (report fields)."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT original_name, id, nas_path FROM design_images"
                " WHERE user_id = %s AND flow_run_id = %s ORDER BY id",
                (user_id, uuid.UUID(flow_run_id)),
            ).fetchall()
        return [{"file": name, "design_id": id_, "nas_path": path} for name, id_, path in rows]

    def list_designs(
        self, user_id: str, near_of: int | None = None, limit: int = 50, offset: int = 0,
        filters: DesignFilter | None = None,
    ) -> tuple[list[dict[str, object]], int]:  # fmt: skip
        """A page of the seller's active designs, newest first, with their mockup count and
        Etsy listing; with `near_of`, that design and those stored as its near duplicates;
        narrowed by `filters`. Returns the page and the number of designs in all."""
        where = "d.user_id = %(user)s AND d.is_active"
        if near_of is not None:
            where += " AND (d.id = %(near)s OR d.near_duplicate_of = %(near)s)"
        params = {"user": user_id, "near": near_of, "limit": limit, "offset": offset}
        if filters is not None:
            clauses, values = filters.sql()
            where = " AND ".join([where, *clauses])
            params.update(values)
        with self.connect() as conn:
            (total,) = conn.execute(
                sql.SQL("SELECT count(*) FROM design_images d WHERE {}").format(sql.SQL(where)),
                params,
            ).fetchone()
            cur = conn.execute(sql.SQL(_LIST_DESIGNS).format(where=sql.SQL(where)), params)
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()], total

    def record_designs(
        self, designs: Sequence[NewDesign], claims_of: uuid.UUID | None = None
    ) -> RecordResult:
        """Insert a batch in one transaction with one set-based statement.

        `ON CONFLICT DO NOTHING` makes a re-run or a concurrent run of the same upload safe:
        the loser gets the winner's row back as `already_present` instead of an error.
        `claims_of`: the batch whose claims end in the same transaction.
        """
        if not designs:
            if claims_of is not None:
                self.release_claims(claims_of)
            return RecordResult({}, {})
        if len({d.user_id for d in designs}) != 1:
            raise ValueError("a batch belongs to exactly one user")
        cols = list(zip(*(_row(d) for d in designs), strict=True))
        with self.connect() as conn, conn.transaction():
            inserted_rows = conn.execute(
                """
                INSERT INTO design_images (user_id, sha256, phash, ahash, dhash, whash, width,
                    height, bytes, format, original_name, nas_path, batch_id, flow_run_id,
                    nd_phash, nd_dhash, near_duplicate_of, near_distance, nd_version)
                SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[],
                    %s::bigint[], %s::bigint[], %s::integer[], %s::integer[], %s::bigint[],
                    %s::text[], %s::text[], %s::text[], %s::uuid[], %s::uuid[],
                    %s::bigint[], %s::bigint[], %s::bigint[], %s::integer[], %s::smallint[])
                ON CONFLICT (user_id, sha256) DO NOTHING
                RETURNING id, sha256
                """,
                [list(c) for c in cols],
            ).fetchall()
            inserted = {sha: id_ for id_, sha in inserted_rows}
            _insert_views(conn, [(inserted[d.sha256], d) for d in designs if d.sha256 in inserted])
            in_batch_near = [
                d for d in designs if d.near_duplicate_of_sha256 and d.sha256 in inserted
            ]
            if in_batch_near:
                conn.execute(
                    """
                    UPDATE design_images AS d SET near_duplicate_of = o.id
                    FROM unnest(%s::text[], %s::text[]) AS pair(copy_sha, original_sha)
                    JOIN design_images AS o ON o.user_id = %s AND o.sha256 = pair.original_sha
                    WHERE d.user_id = %s AND d.sha256 = pair.copy_sha
                    """,
                    (
                        [d.sha256 for d in in_batch_near],
                        [d.near_duplicate_of_sha256 for d in in_batch_near],
                        designs[0].user_id,
                        designs[0].user_id,
                    ),
                )
            replacing = [(inserted[d.sha256], d.replaces) for d in designs
                         if d.replaces is not None and d.sha256 in inserted]  # fmt: skip
            if replacing:
                _supersede(conn, designs[0].user_id, replacing)
            missing = [d for d in designs if d.sha256 not in inserted]
            already: dict[str, ExistingDesign] = {}
            if missing:
                already = _by_sha256(conn, missing[0].user_id, [d.sha256 for d in missing])
            if claims_of is not None:  # they end with the insert: a waiter finds the rows
                conn.execute("DELETE FROM design_claims WHERE batch_id = %s", (claims_of,))
            _analyze_if_stale(conn, len(inserted))
        return RecordResult(inserted, already)

    # -- claims ------------------------------------------------------------------------

    def claim_designs(
        self, user_id: str, sha256s: Sequence[str], batch_id: uuid.UUID,
        stale_after_s: float = CLAIM_STALE_S,
    ) -> dict[str, uuid.UUID]:  # fmt: skip
        """Claim the right to store these contents for `batch_id`. Returns the contents
        another live batch holds (sha256 -> its batch). A claim is live while the session
        that made it is open (the claimer's process holds it in its pool) and younger than
        `stale_after_s`; any other is taken over."""
        if not sha256s:
            return {}
        with self.connect() as conn, conn.transaction():
            won = {
                row[0]
                for row in conn.execute(
                    """
                    INSERT INTO design_claims (user_id, sha256, batch_id, backend_pid)
                    SELECT %(user)s, sha, %(batch)s, pg_backend_pid()
                    FROM unnest(%(shas)s::text[]) AS sha
                    ON CONFLICT (user_id, sha256) DO UPDATE
                        SET batch_id = EXCLUDED.batch_id, claimed_at = now(),
                            backend_pid = EXCLUDED.backend_pid
                        WHERE design_claims.batch_id = EXCLUDED.batch_id
                           OR design_claims.claimed_at < now() - make_interval(secs => %(stale)s)
                           OR NOT EXISTS (SELECT 1 FROM pg_stat_activity
                                          WHERE pid = design_claims.backend_pid)
                    RETURNING sha256
                    """,
                    {
                        "user": user_id,
                        "batch": batch_id,
                        "shas": list(sha256s),
                        "stale": stale_after_s,
                    },
                )
            }
            lost = [sha for sha in sha256s if sha not in won]
            held = dict(
                conn.execute(
                    "SELECT sha256, batch_id FROM design_claims WHERE user_id = %s AND sha256 = ANY(%s)",
                    (user_id, lost),
                ).fetchall()
            ) if lost else {}  # fmt: skip
            # Stored (and released) by another batch since our lookup: nothing to send.
            held.update(
                conn.execute(
                    "SELECT sha256, batch_id FROM design_images WHERE user_id = %s AND sha256 = ANY(%s)",
                    (user_id, sorted(won)),
                ).fetchall()
            )
        return held

    def claimed_outcome(
        self, user_id: str, sha256s: Sequence[str], stale_after_s: float = CLAIM_STALE_S
    ) -> tuple[dict[str, ExistingDesign], list[str]]:
        """For contents other batches claimed: the designs they stored so far, and the
        contents no live claim holds any more without a design (the claimer gave up)."""
        with self.connect() as conn:
            rows = conn.execute(
                """
                SELECT s.sha, d.id, d.nas_path, d.flow_run_id, d.batch_id, c.batch_id
                FROM unnest(%(shas)s::text[]) AS s(sha)
                LEFT JOIN design_images d ON d.user_id = %(user)s AND d.sha256 = s.sha
                LEFT JOIN design_claims c ON c.user_id = %(user)s AND c.sha256 = s.sha
                    AND c.claimed_at >= now() - make_interval(secs => %(stale)s)
                    AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = c.backend_pid)
                """,
                {"user": user_id, "shas": list(sha256s), "stale": stale_after_s},
            ).fetchall()
        stored = {
            sha: ExistingDesign(id_, sha, path, run, batch)
            for sha, id_, path, run, batch, _ in rows
            if id_ is not None
        }
        abandoned = [sha for sha, id_, *_, claim in rows if id_ is None and claim is None]
        return stored, abandoned

    def release_claims(self, batch_id: uuid.UUID) -> None:
        with self.connect() as conn:
            conn.execute("DELETE FROM design_claims WHERE batch_id = %s", (batch_id,))

    def copy_designs(self, designs: Iterable[NewDesign]) -> int:
        """Bulk load with COPY (~3x the rows/s of INSERT): imports and benchmarks. No
        conflict handling: the caller loads rows it knows are new."""
        count = 0
        with self.connect() as conn, conn.transaction():
            with conn.cursor().copy(
                "COPY design_images (user_id, sha256, phash, ahash, dhash, whash, width, height,"
                " bytes, format, original_name, nas_path, batch_id, flow_run_id, nd_phash,"
                " nd_dhash, near_duplicate_of, near_distance, nd_version) FROM STDIN"
            ) as copy:
                for d in designs:
                    copy.write_row(_row(d))
                    count += 1
            _analyze_if_stale(conn, count)
        return count

    def find_duplicates(
        self, user_id: str, sha256s: Sequence[str], queries: Sequence[NearQuery], distance: int
    ) -> tuple[dict[str, ExistingDesign], list[NearMatch], dict[int, bytes]]:
        """Every lookup of a batch: the user's designs with these contents; those near the
        queries of the files the first lookup did not find (a query's `sha256`); and the
        verifier's reductions of the near candidates."""
        existing = self.find_by_sha256(user_id, sha256s)
        # Queries of files already known would only find what the exact lookup settles: at
        # 1M designs they cost as much as the others (8.0 vs 5.1 ms an image, issue figures).
        open_queries = [q for q in queries if not q.sha256 or q.sha256 not in existing]
        matches = self.find_near(user_id, open_queries, distance)
        return existing, matches, self.reductions([m.design_id for m in matches])

    def find_near(
        self, user_id: str, queries: Sequence[NearQuery], distance: int,
        view_distance: int | None = None,
    ) -> list[NearMatch]:  # fmt: skip
        """Every active design of the user within `distance` bits of phash of any query, in
        one statement for the batch, or its halves at once (multi-index hashing, see
        similarity.py; _near_parts); trimmed queries are also looked up among the designs'
        views (crops, cut sides, small rotations) within `view_distance` bits.

        The probes (each query chunk XOR every mask of up to its radius) are made inside
        PostgreSQL, so the statement carries only the queries; each probe is one index
        lookup (sending ~48,000 probes per batch from here cost ~0.1 s more, bench)."""
        if not queries:
            return []
        view_distance = distance if view_distance is None else view_distance
        if max(chunk_radii(distance)) > MAX_RADIUS:
            raise ValueError(f"near-duplicate distance {distance} is too large (at most 15)")
        parts = self._near_parts(queries)
        if len(parts) == 1:
            rows = self._near_rows(user_id, queries, distance, view_distance)
        else:
            with ThreadPoolExecutor(len(parts), thread_name_prefix="near-lookup") as pool:
                found = pool.map(
                    lambda part: self._near_rows(user_id, part, distance, view_distance), parts
                )
                rows = [row for got in found for row in got]
        return [
            NearMatch(
                key=q.key,
                design_id=id_,
                distance=pd,
                confirm=pd + dd if dd is not None else pd + 64,
                flipped=q.flipped,
                nas_path=path,
                view=view,
                width=width,
                height=height,
            )
            for q, id_, pd, dd, view, path, width, height in rows
        ]

    def _near_parts(self, queries: Sequence[NearQuery]) -> list[list[NearQuery]]:
        """The batch's queries in NEAR_LOOKUP_PARTS statements on as many pooled connections
        at once: at 1M designs a batch's statement is ~14,000 index lookups of ~7 us, all on
        one server core; two halves at once took 85 ms instead of 142 (median of 25, 2 cores,
        bench/near_duplicates). The server does the same work either way; without a pool (one
        connection a call) or for a few queries the split is not worth a second connection."""
        parts = min(NEAR_LOOKUP_PARTS, os.cpu_count() or 1)
        if self._pool is None or parts < 2 or len(queries) < NEAR_LOOKUP_SPLIT_FROM:
            return [list(queries)]
        return [list(queries[i::parts]) for i in range(parts)]

    def _near_rows(
        self, user_id: str, queries: Sequence[NearQuery], distance: int, view_distance: int
    ) -> list[tuple]:
        """_NEAR_SQL's rows for these queries; each row's first value is its NearQuery."""
        params = near_parameters(user_id, queries, distance, view_distance)
        with self.connect() as conn, conn.transaction():
            # The planner cannot see how many probes there are (it guessed ~27 per chunk for
            # ~9,000): on a small history it joined every probe against a scan of the
            # seller's designs, 4.1 s for a batch of 20 against 500 designs (measured).
            conn.execute("SET LOCAL enable_seqscan = off")
            rows = conn.execute(_NEAR_SQL, params).fetchall()
        return [(queries[q], *rest) for q, *rest in rows]

    def reductions(self, design_ids: Sequence[int]) -> dict[int, bytes]:
        """The verifier's grey reductions of these designs (those that have one)."""
        if not design_ids:
            return {}
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT design_id, image FROM design_reductions WHERE design_id = ANY(%s)",
                (sorted(set(design_ids)),),
            ).fetchall()
        return {id_: bytes(image) for id_, image in rows}

    def rows_to_backfill(self, limit: int = 500) -> list[tuple[int, str, str]]:
        with self.connect() as conn:
            return [
                (r[0], r[1], r[2])
                for r in conn.execute(
                    "SELECT id, user_id, nas_path FROM design_images WHERE nd_version < 2"
                    " ORDER BY id LIMIT %s",
                    (limit,),
                ).fetchall()
            ]

    def set_near_hashes(
        self, updates: Sequence[tuple[int, int, int]], extras: Sequence[NewDesign] = ()
    ) -> int:
        """(design id, nd_phash, nd_dhash) for rows recomputed from their files; `extras`
        (same order) carry each row's views and reduction (nd_version 2 when given)."""
        if not updates:
            return 0
        ids, ph, dh = (list(c) for c in zip(*updates, strict=True))
        version = 2 if extras else 1
        with self.connect() as conn, conn.transaction():
            cur = conn.execute(
                """
                UPDATE design_images AS d SET nd_phash = u.ph, nd_dhash = u.dh, nd_version = %s
                FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS u(id, ph, dh)
                WHERE d.id = u.id
                """,
                (version, ids, ph, dh),
            )
            if extras:
                conn.execute("DELETE FROM design_views WHERE design_id = ANY(%s)", (ids,))
                conn.execute("DELETE FROM design_reductions WHERE design_id = ANY(%s)", (ids,))
                _insert_views(conn, list(zip(ids, extras, strict=True)))
            return cur.rowcount

    def designs_by_id(self, design_ids: Sequence[int]) -> dict[int, dict[str, object]]:
        with self.connect() as conn:
            cur = conn.execute(
                "SELECT id, user_id, sha256, nas_path, format, original_name FROM design_images"
                " WHERE id = ANY(%s)",
                (list(design_ids),),
            )
            names = [d.name for d in cur.description or []]
            return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}

    def users(self) -> list[str]:
        with self.connect() as conn:
            return [
                r[0] for r in conn.execute("SELECT DISTINCT user_id FROM design_images ORDER BY 1")
            ]

    def mark_missing(self, user_id: str, design_ids: Sequence[int]) -> list[int]:
        with self.connect() as conn, conn.transaction():
            rows = conn.execute(
                "UPDATE design_images SET is_active = false, missing_since = now()"
                " WHERE user_id = %s AND id = ANY(%s) RETURNING id",
                (user_id, list(design_ids)),
            ).fetchall()
        return sorted(r[0] for r in rows)

    def deactivate(self, user_id: str, design_ids: Sequence[int]) -> int:
        with self.connect() as conn, conn.transaction():
            cur = conn.execute(
                "UPDATE design_images SET is_active = false WHERE user_id = %s AND id = ANY(%s)",
                (user_id, list(design_ids)),
            )
            return cur.rowcount


@dataclass(frozen=True)
class DesignFilter:
    """What the catalog page narrows a seller's designs to: a name containing `name`; only
    designs in a near-duplicate group; with or without mockups; listed on Etsy or not."""

    name: str = ""
    near_groups: bool = False
    mockups: bool | None = None
    listed: bool | None = None

    def sql(self) -> tuple[list[str], dict[str, object]]:
        """Constant WHERE fragments (chosen here, never built from the values) and values."""
        clauses: list[str] = []
        values: dict[str, object] = {}
        if self.name:
            escaped = self.name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("d.original_name ILIKE %(name)s")
            values["name"] = f"%{escaped}%"
        if self.near_groups:
            clauses.append(_NEAR_GROUP)
        if self.mockups is not None:
            clauses.append(("" if self.mockups else "NOT ") + _HAS_MOCKUPS)
        if self.listed is not None:
            clauses.append(("" if self.listed else "NOT ") + _IS_LISTED)
        return clauses, values


_NEAR_GROUP = (
    "(d.near_duplicate_of IS NOT NULL OR EXISTS (SELECT 1 FROM design_images n"
    " WHERE n.near_duplicate_of = d.id AND n.is_active))"
)
_HAS_MOCKUPS = "EXISTS (SELECT 1 FROM design_mockups m WHERE m.design_id = d.id)"
_IS_LISTED = (
    "EXISTS (SELECT 1 FROM etsy_listings l WHERE l.design_id = d.id AND l.listing_id IS NOT NULL)"
)

# The filter is made of constant strings (list_designs, DesignFilter); the values are
# parameters.
_LIST_DESIGNS = """
    SELECT d.id, d.original_name, d.bytes, d.width, d.height, d.format, d.created_at,
           d.near_duplicate_of, d.nas_path,
           (SELECT count(*) FROM design_mockups m WHERE m.design_id = d.id) AS mockups,
           (SELECT min(l.listing_id) FROM etsy_listings l WHERE l.design_id = d.id) AS listing_id
    FROM design_images d WHERE {where}
    ORDER BY d.created_at DESC, d.id DESC LIMIT %(limit)s OFFSET %(offset)s
"""


# One branch per chunk index: (table, id column, hash, dhash, query kind, chunk bits and
# shift, chunk column or None for an expression index, probe radius parameter, view lookup).
# design_images' trimmed hash chunks are asked by the trimmed queries, its plain phash chunks
# by the plain ones (4 chunks of 16 bits, expression indexes of migration 0012), the views'
# chunks (3 of 21/22 bits, stored columns) by the trimmed ones. See similarity.py.
_BRANCHES = [
    *(
        ("design_images", "id", h, dh, kind, bits, shift, None, f"r{i}", False)
        for h, dh, kind in (("nd_phash", "nd_dhash", 0), ("phash", "dhash", 1))
        for i, (bits, shift) in enumerate(DESIGN_CHUNKS)
    ),
    *(
        ("design_views", "design_id", "phash", None, 0, bits, shift, f"v{i}", "vradius", True)
        for i, (bits, shift) in enumerate(VIEW_CHUNKS)
    ),
]
# Names and numbers are constants, quoted by psycopg; the values travel as parameters. Each
# branch makes its own probes (its queries' chunk XOR every mask within the radius): one
# materialised list of all probes scanned by every branch cost ~0.1 us a row nine times
# over. LATERAL with OFFSET 0 (not flattened into a join the planner could turn around):
# one index lookup per probe whatever the planner guesses. Sorted probe arrays per column
# (= ANY) were tried: 4.4 us a key against 4.7 through LATERAL, 52 ms of planning for the
# arrays, and on design_views the planner scanned all 16M rows of the seller instead.
# The distance is checked inside the lookup: a 16-bit chunk finds ~15 rows a probe at 1M
# designs, nearly all of them far.
_BRANCH = sql.SQL(
    "        SELECT p.q, p.lim, d.id, d.h, d.dh, d.view FROM ("
    "SELECT q.q, q.ph, (((q.ph >> {shift}) & {low})::int # m.mask) AS val, {lim} AS lim"
    " FROM queries q JOIN masks m ON m.bits = {bits} AND m.w <= {radius}"
    " WHERE q.kind = {kind}) p CROSS JOIN LATERAL ("
    "SELECT {id} AS id, {h} AS h, {dh}::bigint AS dh, {view}::int AS view FROM {table}"
    " WHERE user_id = %(user)s AND {active} AND {chunk} = p.val"
    " AND bit_count(({h} # p.ph)::bit(64)) <= p.lim OFFSET 0) d\n"
)
_NEAR_HEAD = sql.SQL("""
    WITH queries AS (
        SELECT * FROM unnest(%(qi)s::int[], %(qk)s::int[], %(qp)s::bigint[], %(qd)s::bigint[])
            AS q(q, kind, ph, dh)
    ), widths(bits) AS (VALUES (16), (21), (22)),
    bit_positions AS (
        SELECT bits, i FROM widths, generate_series(0, bits - 1) AS i
    ), masks AS MATERIALIZED (
        SELECT bits, 0 AS mask, 0 AS w FROM widths
        UNION ALL
        SELECT bits, 1 << i, 1 FROM bit_positions
        UNION ALL
        SELECT a.bits, (1 << a.i) | (1 << b.i), 2 FROM bit_positions a
        JOIN bit_positions b ON b.bits = a.bits AND b.i > a.i
        UNION ALL
        SELECT a.bits, (1 << a.i) | (1 << b.i) | (1 << c.i), 3 FROM bit_positions a
        JOIN bit_positions b ON b.bits = a.bits AND b.i > a.i
        JOIN bit_positions c ON c.bits = a.bits AND c.i > b.i WHERE %(maxradius)s >= 3
    ), candidates AS (
""")
_NEAR_TAIL = sql.SQL("""    ), verified AS (
        -- A design found through two chunks (or two views) appears more than once: the
        -- closest one per query and design.
        SELECT DISTINCT ON (c.q, c.id) c.q, c.id,
               bit_count((c.h # q.ph)::bit(64))::int AS pd,
               bit_count((c.dh # q.dh)::bit(64))::int AS dd, c.view
        FROM candidates c JOIN queries q ON q.q = c.q
        ORDER BY c.q, c.id, bit_count((c.h # q.ph)::bit(64)), c.view
    )
    -- One primary-key lookup per match: with 16-bit chunks the planner expects ~1,700 rows
    -- a probe, and joined the few real matches against an index scan of every design
    -- instead (386 ms of 605 at 1M designs, EXPLAIN ANALYZE).
    SELECT v.q, v.id, v.pd, v.dd, v.view, d.nas_path, d.width, d.height
    FROM verified v CROSS JOIN LATERAL (
        SELECT nas_path, width, height FROM design_images d
        WHERE d.id = v.id AND d.is_active OFFSET 0) d
""")


def chunk_expression(column: str, bits: int, shift: int) -> sql.Composable:
    """A 16-bit chunk of a hash column, written exactly as migration 0012's indexes are."""
    return sql.SQL("((({} >> {}) & {})::integer)").format(
        sql.Identifier(column), sql.Literal(shift), sql.Literal((1 << bits) - 1)
    )


def near_statement(branches: Sequence[tuple]) -> sql.Composed:
    """The lookup of every query of a batch through these chunk indexes (_BRANCHES)."""
    return (
        _NEAR_HEAD
        + sql.SQL("        UNION ALL\n").join(
            _BRANCH.format(
                shift=sql.Literal(shift),
                low=sql.Literal((1 << bits) - 1),
                bits=sql.Literal(bits),
                radius=sql.Placeholder(radius),
                lim=sql.Placeholder("vdist" if view else "dist"),
                kind=sql.Literal(kind),
                id=sql.Identifier(id_),
                h=sql.Identifier(h),
                dh=sql.Identifier(dh) if dh else sql.SQL("NULL"),
                view=sql.Identifier("view") if view else sql.Literal(0),
                table=sql.Identifier(table),
                chunk=sql.Identifier(chunk) if chunk else chunk_expression(h, bits, shift),
                active=sql.Identifier("is_active") if not view else sql.SQL("true"),
            )
            for table, id_, h, dh, kind, bits, shift, chunk, radius, view in branches
        )
        + _NEAR_TAIL
    )


_NEAR_SQL = near_statement(_BRANCHES)


def near_parameters(
    user_id: str, queries: Sequence[NearQuery], distance: int, view_distance: int
) -> dict[str, object]:
    """The parameters of _NEAR_SQL: the queries, the distances and the probe radii."""
    radii = chunk_radii(distance)
    view_radius = min(VIEW_PROBE_RADIUS, max(0, view_distance) // len(VIEW_CHUNKS))
    return {
        "user": user_id,
        "qi": list(range(len(queries))),
        "qk": [0 if q.kind == TRIMMED else 1 for q in queries],
        "qp": [q.phash for q in queries], "qd": [q.dhash for q in queries],
        "dist": distance, **{f"r{i}": r for i, r in enumerate(radii)},
        "vdist": view_distance, "vradius": view_radius,
        "maxradius": max(*radii, view_radius),
    }  # fmt: skip


def _analyze_if_stale(conn: psycopg.Connection, just_changed: int = 0) -> None:
    """Planner statistics that keep up with a table growing within one upload. Without them
    (a new catalog, or a small one: autovacuum takes up to a minute to come by) the
    near-duplicate lookup scanned the seller's designs once per probe: 2.1 s against 500
    designs instead of 45 ms, and in a 200-design upload to a 20-design catalog each batch's
    lookup took longer than the last (218 ms to 1706 ms, measured with bench.scale's
    designs); analysed, 49 ms. ANALYZE samples at most 30,000 rows, so it stays cheap; past
    that size autovacuum's own threshold (10% changed) comes first."""
    row = conn.execute(
        "SELECT c.reltuples, s.n_mod_since_analyze FROM pg_class c"
        " LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid"
        " WHERE c.oid = 'design_images'::regclass"
    ).fetchone()
    if row is None:
        return
    tuples, changed = row
    # The statistics count committed changes (flushed about once a second): this
    # transaction's own rows are added by the caller.
    if tuples < 0 or (changed or 0) + just_changed > 20 + 0.2 * tuples:
        conn.execute("ANALYZE design_images")


def _by_sha256(
    conn: psycopg.Connection, user_id: str, sha256s: Sequence[str]
) -> dict[str, ExistingDesign]:
    rows = conn.execute(
        "SELECT id, sha256, nas_path, flow_run_id, batch_id FROM design_images"
        " WHERE user_id = %s AND sha256 = ANY(%s)",
        (user_id, list(sha256s)),
    ).fetchall()
    return {row[1]: ExistingDesign(*row) for row in rows}


def _row(d: NewDesign) -> tuple[object, ...]:
    return (
        d.user_id, d.sha256, d.phash, d.ahash, d.dhash, d.whash, d.width, d.height, d.bytes,
        d.format, d.original_name, d.nas_path, d.batch_id, d.flow_run_id,
        d.nd_phash, d.nd_dhash, d.near_duplicate_of, d.near_distance,
        2 if d.views and d.reduction else 1,
    )  # fmt: skip


def _supersede(conn: psycopg.Connection, user_id: str, pairs: list[tuple[int, int]]) -> None:
    """Old designs replaced by better versions: inactive and pointing at the new ones; their
    listing content and Etsy listings move to the new ones (the listing's images are
    replaced on its next publish)."""
    new_ids, old_ids = [p[0] for p in pairs], [p[1] for p in pairs]
    conn.execute(
        """
        UPDATE design_images AS old SET is_active = false, superseded_by = r.new_id
        FROM unnest(%s::bigint[], %s::bigint[]) AS r(new_id, old_id)
        WHERE old.id = r.old_id AND old.user_id = %s
        """,
        (new_ids, old_ids, user_id),
    )
    conn.execute(
        """
        INSERT INTO listing_drafts (design_id, fields, source)
        SELECT r.new_id, l.fields, l.source
        FROM unnest(%s::bigint[], %s::bigint[]) AS r(new_id, old_id)
        JOIN listing_drafts l ON l.design_id = r.old_id
        ON CONFLICT (design_id) DO NOTHING
        """,
        (new_ids, old_ids),
    )
    # The images recorded for the old design are its mockups: the new design's replace them.
    conn.execute("DELETE FROM etsy_listing_images WHERE design_id = ANY(%s)", (old_ids,))
    moved = conn.execute(
        """
        DELETE FROM etsy_listings AS e USING unnest(%s::bigint[], %s::bigint[]) AS r(new_id, old_id)
        WHERE e.design_id = r.old_id
        RETURNING r.new_id, e.shop_id, e.listing_id, e.status, e.title, e.content_sha256,
            e.create_started_at, e.images_skipped
        """,
        (new_ids, old_ids),
    ).fetchall()
    for row in moved:
        conn.execute(
            """
            INSERT INTO etsy_listings (design_id, shop_id, listing_id, status, title,
                content_sha256, create_started_at, images_skipped, replace_images)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, true)
            ON CONFLICT (design_id, shop_id) DO NOTHING
            """,
            (*row[:7], Jsonb(row[7])),
        )


def _insert_views(conn: psycopg.Connection, rows: Sequence[tuple[int, NewDesign]]) -> None:
    """Each new design's views and reduction, in the transaction that inserts the design."""
    views = [(id_, d.user_id, n, h) for id_, d in rows for n, h in enumerate(d.views, start=1)]
    if views:
        ids, users, numbers, hashes = (list(c) for c in zip(*views, strict=True))
        conn.execute(
            "INSERT INTO design_views (design_id, user_id, view, phash)"
            " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::smallint[], %s::bigint[])",
            (ids, users, numbers, hashes),
        )
    reductions = [(id_, d.reduction) for id_, d in rows if d.reduction]
    if reductions:
        ids, images = (list(c) for c in zip(*reductions, strict=True))
        conn.execute(
            "INSERT INTO design_reductions (design_id, image)"
            " SELECT * FROM unnest(%s::bigint[], %s::bytea[])",
            (ids, images),
        )
