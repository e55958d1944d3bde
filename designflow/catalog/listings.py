"""Listings in the catalog database: drafts from manifests, Etsy listings and their images."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from designflow.catalog import Catalog


@dataclass(frozen=True)
class ListingRecord:
    design_id: int
    shop_id: str
    listing_id: int | None
    status: str
    title: str
    content_sha256: str
    create_started_at: datetime
    # Moved from a design this one replaced: its images are replaced rank by rank.
    replace_images: bool = False


class ListingCatalog:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # -- drafts ------------------------------------------------------------------------------

    def save_drafts(self, drafts: dict[int, dict[str, Any]], source: str | None) -> int:
        if not drafts:
            return 0
        with self.catalog.connect() as conn, conn.transaction():
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO listing_drafts (design_id, fields, source) VALUES (%s, %s, %s)"
                    " ON CONFLICT (design_id) DO UPDATE SET fields = EXCLUDED.fields,"
                    " source = EXCLUDED.source, updated_at = now()",
                    [(d, Jsonb(f), source) for d, f in drafts.items()],
                )
        return len(drafts)

    def drafts(self, design_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        with self.catalog.connect() as conn:
            rows = conn.execute(
                "SELECT design_id, fields FROM listing_drafts WHERE design_id = ANY(%s)",
                (list(design_ids),),
            ).fetchall()
        return {int(r[0]): dict(r[1]) for r in rows}

    # -- listings ----------------------------------------------------------------------------

    @contextmanager
    def publishing(self, design_id: int, shop_id: str) -> Iterator[None]:
        """Held while one process creates or adopts the listing of a design in a shop: a
        second run for the same design waits here, then finds the listing. A session lock on
        its own connection, so a crashed process releases it with its connection."""
        conn = self.catalog.dedicated_connection()
        try:
            conn.autocommit = True
            key = (zlib.crc32(shop_id.encode()) & 0x7FFFFFFF, design_id & 0x7FFFFFFF)
            conn.execute("SELECT pg_advisory_lock(%s, %s)", key)
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", key)
        finally:
            conn.close()

    def listing(self, design_id: int, shop_id: str) -> ListingRecord | None:
        with self.catalog.connect() as conn:
            row = conn.execute(
                "SELECT design_id, shop_id, listing_id, status, title, content_sha256,"
                " create_started_at, replace_images FROM etsy_listings"
                " WHERE design_id = %s AND shop_id = %s",
                (design_id, shop_id),
            ).fetchone()
        return ListingRecord(*row) if row else None

    def begin_create(self, design_id: int, shop_id: str, title: str, content_sha: str) -> None:
        """Written before the create call, so a retry after a crash knows to look for it."""
        with self.catalog.connect() as conn:
            conn.execute(
                "INSERT INTO etsy_listings (design_id, shop_id, status, title, content_sha256)"
                " VALUES (%s, %s, 'creating', %s, %s) ON CONFLICT (design_id, shop_id) DO UPDATE"
                " SET title = EXCLUDED.title, content_sha256 = EXCLUDED.content_sha256,"
                " create_started_at = now(), updated_at = now()"
                " WHERE etsy_listings.status = 'creating'",
                (design_id, shop_id, title, content_sha),
            )

    def set_listing(self, design_id: int, shop_id: str, listing_id: int, content_sha: str) -> None:
        with self.catalog.connect() as conn:
            conn.execute(
                "UPDATE etsy_listings SET listing_id = %s, content_sha256 = %s,"
                " status = CASE WHEN status = 'creating' THEN 'created' ELSE status END,"
                " updated_at = now() WHERE design_id = %s AND shop_id = %s",
                (listing_id, content_sha, design_id, shop_id),
            )

    def linked_listing_ids(self, shop_id: str) -> set[int]:
        with self.catalog.connect() as conn:
            rows = conn.execute(
                "SELECT listing_id FROM etsy_listings WHERE shop_id = %s AND listing_id IS NOT NULL",
                (shop_id,),
            ).fetchall()
        return {int(r[0]) for r in rows}

    def complete(self, design_id: int, shop_id: str, skipped: list[dict[str, Any]]) -> None:
        with self.catalog.connect() as conn:
            conn.execute(
                "UPDATE etsy_listings SET status = 'complete', images_skipped = %s, updated_at = now()"
                " WHERE design_id = %s AND shop_id = %s",
                (Jsonb(skipped), design_id, shop_id),
            )

    # -- images ------------------------------------------------------------------------------

    def images(self, design_id: int, shop_id: str) -> dict[int, tuple[int, int]]:
        """mockup id -> (rank, Etsy listing image id) of the images already uploaded."""
        with self.catalog.connect() as conn:
            rows = conn.execute(
                "SELECT mockup_id, rank, listing_image_id FROM etsy_listing_images"
                " WHERE design_id = %s AND shop_id = %s",
                (design_id, shop_id),
            ).fetchall()
        return {int(r[0]): (int(r[1]), int(r[2])) for r in rows}

    def record_image(
        self, design_id: int, shop_id: str, mockup_id: int, rank: int, listing_image_id: int
    ) -> None:
        with self.catalog.connect() as conn:
            conn.execute(
                "INSERT INTO etsy_listing_images (design_id, shop_id, mockup_id, rank, listing_image_id)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (design_id, shop_id, mockup_id)"
                " DO UPDATE SET rank = EXCLUDED.rank, listing_image_id = EXCLUDED.listing_image_id",
                (design_id, shop_id, mockup_id, rank, listing_image_id),
            )
