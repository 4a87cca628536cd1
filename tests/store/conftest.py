"""Fixtures for the index tests: every store test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.store import IndexStore, open_store


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An index URL for a fresh, empty index on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/index.sqlite3"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[IndexStore]:
    """A migrated, empty index store on each backend, closed afterwards."""
    opened = open_store(store_url)
    yield opened
    opened.close()
