"""Sellers' API tokens and their HTTP uploads (jobs), for `designflow web`."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from designflow.catalog.database import Database

TOKEN_PREFIX = "dfw_"
OPEN = ("pending", "running")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Token:
    id: int
    user_id: str
    name: str
    created_at: Any
    last_used_at: Any
    revoked_at: Any


class WebRepository(Database):
    """api_tokens and web_jobs."""

    # -- tokens ----------------------------------------------------------------------------

    def create_token(self, user_id: str, name: str = "") -> tuple[int, str]:
        """A new token for the seller: (its id, the token itself, shown once)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.connect() as conn:
            (id_,) = conn.execute(
                "INSERT INTO api_tokens (user_id, name, token_sha256) VALUES (%s, %s, %s)"
                " RETURNING id",
                (user_id, name, token_digest(token)),
            ).fetchone()
        return id_, token

    def user_of_token(self, token: str) -> str | None:
        """The seller a token signs in, None for an unknown or revoked one."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        with self.connect() as conn:
            row = conn.execute(
                "UPDATE api_tokens SET last_used_at = now() WHERE token_sha256 = %s"
                " AND revoked_at IS NULL RETURNING user_id",
                (token_digest(token),),
            ).fetchone()
        return row[0] if row else None

    def tokens(self, user_id: str | None = None) -> list[Token]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT id, user_id, name, created_at, last_used_at, revoked_at FROM api_tokens"
                " WHERE %(user)s::text IS NULL OR user_id = %(user)s ORDER BY id",
                {"user": user_id},
            ).fetchall()
        return [Token(*row) for row in rows]

    def revoke_token(self, token_id: int) -> bool:
        with self.connect() as conn:
            cur = conn.execute(
                "UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL",
                (token_id,),
            )
            return cur.rowcount == 1

    # -- jobs ------------------------------------------------------------------------------

    def open_jobs(self, user_id: str) -> int:
        with self.connect() as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM web_jobs WHERE user_id = %s AND status = ANY(%s)",
                (user_id, list(OPEN)),
            ).fetchone()
        return count

    def create_job(self, job_id: uuid.UUID, user_id: str, files: int) -> None:
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO web_jobs (id, user_id, status, files) VALUES (%s, %s, 'pending', %s)",
                (job_id, user_id, files),
            )

    def update_job(self, job_id: uuid.UUID, **changes: Any) -> None:
        """Set status, flow_run_id, report or error (a final status stamps finished_at)."""
        allowed = {"status", "flow_run_id", "report", "error"}
        if not changes or set(changes) - allowed:
            raise ValueError(f"cannot change {sorted(set(changes) - allowed)} of a job")
        values = {k: Jsonb(v) if k == "report" else v for k, v in changes.items()}
        # Column names from the fixed set above, quoted by psycopg; values are parameters.
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in values
        )
        statement = sql.SQL(
            "UPDATE web_jobs SET {}, finished_at = CASE WHEN %(final)s THEN now()"
            " ELSE finished_at END WHERE id = %(id)s"
        ).format(assignments)
        with self.connect() as conn:
            conn.execute(
                statement,
                {**values, "id": job_id, "final": changes.get("status") in ("completed", "failed")},
            )

    def job(self, job_id: uuid.UUID, user_id: str) -> dict[str, Any] | None:
        """The seller's job (None for another seller's: they cannot tell it exists)."""
        with self.connect() as conn:
            cur = conn.execute(
                "SELECT id, user_id, status, files, flow_run_id, report, error, created_at,"
                " finished_at FROM web_jobs WHERE id = %s AND user_id = %s",
                (job_id, user_id),
            )
            row = cur.fetchone()
            names = [d.name for d in cur.description or []]
        return dict(zip(names, row, strict=True)) if row else None

    def fail_open_jobs(self, reason: str) -> int:
        """Jobs left open by a web process that stopped: failed with the reason."""
        with self.connect() as conn:
            cur = conn.execute(
                "UPDATE web_jobs SET status = 'failed', error = %s, finished_at = now()"
                " WHERE status = ANY(%s) AND flow_run_id IS NULL",
                (reason, list(OPEN)),
            )
            return cur.rowcount
