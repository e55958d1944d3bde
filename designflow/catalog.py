"""The design catalog in PostgreSQL (psycopg 3): migrations, duplicate lookups, bulk inserts.

A thin repository: it only talks to the database. Every statement is parameterised; each
batch is one round trip for the lookup and one transaction for the insert.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(
    os.environ.get("DESIGNFLOW_MIGRATIONS_DIR")
    or Path(__file__).resolve().parent.parent / "migrations"
)
# Any constant works; it only has to be the same for every designflow process.
_MIGRATION_LOCK = 0x64657369676E


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


@dataclass(frozen=True)
class RecordResult:
    inserted: dict[str, int]  # sha256 -> new design id
    # Rows another run inserted first (same user, same sha256): sha256 -> existing design.
    already_present: dict[str, ExistingDesign]


class Catalog:
    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self._conninfo, connect_timeout=10)

    # -- migrations -------------------------------------------------------------------

    def migrate(self, migrations_dir: Path = MIGRATIONS_DIR) -> list[str]:
        """Apply the SQL files not yet recorded, in name order, each in its own transaction."""
        files = sorted(migrations_dir.glob("*.sql"))
        if not files:
            raise FileNotFoundError(f"no migrations found in {migrations_dir}")
        applied_now: list[str] = []
        with self.connect() as conn:
            with conn.transaction():
                # Two processes starting at once must not both apply the same file.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
                for path in files:
                    if path.stem in done:
                        continue
                    conn.execute(path.read_text(encoding="utf-8"))
                    conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES (%s)", (path.stem,)
                    )
                    applied_now.append(path.stem)
        return applied_now

    def applied_migrations(self) -> list[str]:
        with self.connect() as conn:
            rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        return [r[0] for r in rows]

    # -- lookups ----------------------------------------------------------------------

    def find_by_sha256(self, user_id: str, sha256s: Sequence[str]) -> dict[str, ExistingDesign]:
        """The user's designs with any of these contents, one query for the whole batch."""
        if not sha256s:
            return {}
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT id, sha256, nas_path, flow_run_id, batch_id FROM design_images"
                " WHERE user_id = %s AND sha256 = ANY(%s)",
                (user_id, list(sha256s)),
            ).fetchall()
        return {row[1]: ExistingDesign(*row) for row in rows}

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

    # -- inserts ----------------------------------------------------------------------

    def record_designs(self, designs: Sequence[NewDesign]) -> RecordResult:
        """Insert a batch in one transaction with one set-based statement.

        `ON CONFLICT DO NOTHING` makes a re-run or a concurrent run of the same upload safe:
        the loser gets the winner's row back as `already_present` instead of an error.
        """
        if not designs:
            return RecordResult({}, {})
        if len({d.user_id for d in designs}) != 1:
            raise ValueError("a batch belongs to exactly one user")
        cols = list(zip(*(_row(d) for d in designs), strict=True))
        with self.connect() as conn, conn.transaction():
            inserted_rows = conn.execute(
                """
                INSERT INTO design_images (user_id, sha256, phash, ahash, dhash, whash, width,
                    height, bytes, format, original_name, nas_path, batch_id, flow_run_id)
                SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[],
                    %s::bigint[], %s::bigint[], %s::integer[], %s::integer[], %s::bigint[],
                    %s::text[], %s::text[], %s::text[], %s::uuid[], %s::uuid[])
                ON CONFLICT (user_id, sha256) DO NOTHING
                RETURNING id, sha256
                """,
                [list(c) for c in cols],
            ).fetchall()
            inserted = {sha: id_ for id_, sha in inserted_rows}
            missing = [d for d in designs if d.sha256 not in inserted]
            already: dict[str, ExistingDesign] = {}
            if missing:
                rows = conn.execute(
                    "SELECT id, sha256, nas_path, flow_run_id, batch_id FROM design_images"
                    " WHERE user_id = %s AND sha256 = ANY(%s)",
                    (missing[0].user_id, [d.sha256 for d in missing]),
                ).fetchall()
                already = {row[1]: ExistingDesign(*row) for row in rows}
        return RecordResult(inserted, already)


def _row(d: NewDesign) -> tuple[object, ...]:
    return (
        d.user_id, d.sha256, d.phash, d.ahash, d.dhash, d.whash, d.width, d.height, d.bytes,
        d.format, d.original_name, d.nas_path, d.batch_id, d.flow_run_id,
    )  # fmt: skip
