"""Mockups of designs in the catalog (design_mockups)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from designflow.catalog.database import Database


class MockupRepository(Database):
    def record_mockup(
        self, design_id: int, template_id: str, nas_path: str, size: int, width: int, height: int,
        flow_run_id: uuid.UUID | None,
    ) -> int:  # fmt: skip
        """One mockup per (design, template): a re-render replaces the previous record."""
        with self.connect() as conn, conn.transaction():
            row = conn.execute(
                """
                INSERT INTO design_mockups (design_id, template_id, nas_path, bytes, width, height, flow_run_id)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (design_id, template_id) DO UPDATE SET nas_path = EXCLUDED.nas_path,
                    bytes = EXCLUDED.bytes, width = EXCLUDED.width, height = EXCLUDED.height,
                    flow_run_id = EXCLUDED.flow_run_id, created_at = now()
                RETURNING id
                """,
                (design_id, template_id, nas_path, size, width, height, flow_run_id),
            ).fetchone()
        return int(row[0])

    def mockups_of(self, design_ids: Sequence[int]) -> list[dict[str, object]]:
        with self.connect() as conn:
            cur = conn.execute(
                "SELECT id, design_id, template_id, nas_path, bytes, width, height, created_at"
                " FROM design_mockups WHERE design_id = ANY(%s) ORDER BY design_id, template_id",
                (list(design_ids),),
            )
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
