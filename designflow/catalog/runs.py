"""Run metrics in the catalog (upload_runs)."""

from __future__ import annotations

from designflow.catalog.database import Database


class RunRepository(Database):
    def record_upload_run(self, metrics: dict[str, object]) -> None:
        """One row per upload run; a retried or re-recorded run replaces its row."""
        columns = [
            "flow_run_id", "user_id", "started_at", "duration_ms", "fingerprint_ms", "dedup_ms",
            "nas_ms", "insert_ms", "batches", "stored", "duplicates", "rejected", "failed",
            "mockup_runs", "mockup_queue_depth", "mockup_failure_rate", "peak_memory_mb",
            "run_name", "files",
        ]  # fmt: skip
        with self.connect() as conn, conn.transaction():
            conn.execute(
                """
                INSERT INTO upload_runs (flow_run_id, user_id, started_at, duration_ms, fingerprint_ms,
                    dedup_ms, nas_ms, insert_ms, batches, stored, duplicates, rejected, failed,
                    mockup_runs, mockup_queue_depth, mockup_failure_rate, peak_memory_mb,
                    run_name, files)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (flow_run_id) DO UPDATE SET finished_at = now(),
                    duration_ms = EXCLUDED.duration_ms, stored = EXCLUDED.stored,
                    duplicates = EXCLUDED.duplicates, rejected = EXCLUDED.rejected,
                    failed = EXCLUDED.failed, peak_memory_mb = EXCLUDED.peak_memory_mb,
                    run_name = EXCLUDED.run_name, files = EXCLUDED.files
                """,
                [metrics.get(c) for c in columns],
            )

    def upload_runs(
        self, since_seconds: float, user_id: str | None = None
    ) -> list[dict[str, object]]:
        with self.connect() as conn:
            cur = conn.execute(
                "SELECT * FROM upload_runs WHERE finished_at >= now() - make_interval(secs => %s)"
                " AND (%s::text IS NULL OR user_id = %s) ORDER BY finished_at",
                (since_seconds, user_id, user_id),
            )
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def record_mockup_run(self, metrics: dict[str, object]) -> None:
        columns = ("flow_run_id", "run_name", "upload_run_id", "queue", "created_at",
                   "started_at", "duration_ms", "designs", "mockups", "failed", "listings")  # fmt: skip
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO mockup_runs (flow_run_id, run_name, upload_run_id, queue, created_at,"
                " started_at, duration_ms, designs, mockups, failed, listings)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (flow_run_id) DO UPDATE SET finished_at = now(),"
                " duration_ms = EXCLUDED.duration_ms, mockups = EXCLUDED.mockups,"
                " failed = EXCLUDED.failed, listings = EXCLUDED.listings",
                [metrics.get(c) for c in columns],
            )

    def mockup_runs(self, since_seconds: float) -> list[dict[str, object]]:
        with self.connect() as conn:
            cur = conn.execute(
                "SELECT * FROM mockup_runs WHERE finished_at >= now() - make_interval(secs => %s)"
                " ORDER BY finished_at",
                (since_seconds,),
            )
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
