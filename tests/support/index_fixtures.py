"""The index on both backends, for every test that asks for it (registered in tests/conftest.py).

`index_url` is an empty index URL, once for SQLite and once for PostgreSQL (a database per
test); `store` is the migrated `IndexStore` at that URL, closed afterwards. A folder that
needs one backend only overrides `index_url` in its own conftest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.store import IndexStore, open_index


@pytest.fixture(params=["sqlite", "postgres"])
def index_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty index URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(index_url: str) -> Iterator[IndexStore]:
    """The migrated index store at `index_url`, closed afterwards."""
    opened = open_index(index_url)
    yield opened
    opened.close()
