"""The upload-session table on both index backends (created by the index migrations)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from indexer.store import open_index
from indexer.write.sessions import SessionStore, new_session


@pytest.fixture(params=["sqlite", "postgres"])
def index_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_sessions_are_found_only_by_their_owner_until_they_expire(index_url: str) -> None:
    open_index(index_url).close()  # the migrations create the table
    store = SessionStore(index_url)
    mine = new_session(
        7, 42, branch="main", folder="a", layout="files", new_branch=None, merge_request=False
    )
    store.create(mine)
    assert store.get(mine.id, 7) == mine
    assert store.get(mine.id, 8) is None and store.get("unknown", 7) is None
    assert store.open_ids(7) == [mine.id] and store.open_ids(8) == []
    old = replace(
        new_session(
            7, 42, branch=None, folder="", layout="directory", new_branch="b", merge_request=True
        ),
        expires_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    store.create(old)
    assert store.get(old.id, 7) is None and store.expired_ids() == [old.id]
    store.delete(old.id)
    store.delete(mine.id)
    assert store.open_ids(7) == [] and store.expired_ids() == []
