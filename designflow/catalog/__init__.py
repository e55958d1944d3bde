"""The catalog in PostgreSQL: one database, thin repositories per table group.

database.py   connections (a psycopg_pool pool per process), migrations
designs.py    design_images: content lookups, batch insert, near duplicates, upkeep
mockups.py    design_mockups
runs.py       upload_runs (run metrics)
listings.py   listing drafts, Etsy listings and their images
web.py        sellers' API tokens and HTTP uploads (jobs) of `designflow web`
embedded.py   the embedded PostgreSQL used when no database is configured
"""

from __future__ import annotations

from designflow.catalog.designs import DesignRepository, ExistingDesign, NewDesign, RecordResult
from designflow.catalog.mockups import MockupRepository
from designflow.catalog.runs import RunRepository
from designflow.catalog.web import WebRepository

__all__ = ["Catalog", "ExistingDesign", "NewDesign", "RecordResult"]


class Catalog(DesignRepository, MockupRepository, RunRepository, WebRepository):
    """Every repository on one database (one pool): what the tasks and commands use."""
