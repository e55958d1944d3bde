"""Fixtures of the core tests (the database ones come from tests/conftest.py)."""

from __future__ import annotations

import pytest

from designflow.catalog import Catalog


@pytest.fixture
def catalog(database_url: str) -> Catalog:
    """A migrated catalog in a brand-new database."""
    cat = Catalog(database_url)
    cat.migrate()
    return cat
