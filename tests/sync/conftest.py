"""Fixtures shared by the indexer tests: the index on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.store import IndexStore, open_store


@pytest.fixture(params=["sqlite", "postgres"])
def index_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty index URL, once for SQLite and once for PostgreSQL (a database per test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(index_url: str) -> Iterator[IndexStore]:
    """The index store at `index_url`, migrated."""
    with open_store(index_url) as opened:
        yield opened
