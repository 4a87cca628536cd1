"""The registry in both databases: migration of the first table, selections, search."""

from __future__ import annotations

import posixpath
import sqlite3
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.data.storage import StorageSite
from indexer.errors import InvalidInput
from indexer.sites.registry import (
    SiteRecord,
    SiteRegistry,
    placement_changes,
    validate_site,
    validated,
)

OLD_TABLE = (
    "CREATE TABLE storage_sites (name TEXT PRIMARY KEY, kind TEXT NOT NULL, bucket TEXT NOT NULL"
    " DEFAULT '', prefix TEXT NOT NULL DEFAULT '', endpoint_url TEXT, region TEXT, description"
    " TEXT NOT NULL DEFAULT '', access_mode TEXT NOT NULL DEFAULT 'proxy', credentials_ref TEXT,"
    " path TEXT)"
)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database holding the registry's first table with one site, as an older dshub left it."""
    insert = "INSERT INTO storage_sites (name, kind, path) VALUES ('old', 'local', '/srv/old')"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
        with sqlite3.connect(tmp_path / "index.sqlite3") as conn:
            conn.execute(OLD_TABLE)
            conn.execute(insert)
        return url
    pg_url: str = request.getfixturevalue("postgres_url")
    with psycopg.connect(pg_url) as conn:
        conn.execute(OLD_TABLE)
        conn.execute(insert)
    return pg_url


def test_an_older_table_is_migrated_and_keeps_its_sites(database_url: str) -> None:
    registry = SiteRegistry(database_url)
    old = registry.record("old")
    assert old is not None and old.site.path == "/srv/old" and not old.validated
    site = StorageSite("team", "s3", bucket="b", prefix="p", credentials_ref="rw",
                       access_mode="direct", description="Team bucket")  # fmt: skip
    registry.save(validated(SiteRecord(site, "ro", registered_by=7)))
    again = SiteRegistry(database_url).record("team")  # a second start migrates nothing
    assert again is not None and again.validated and again.credentials_ref_readonly == "ro"
    assert [r.site.name for r in registry.records("glacier")] == []
    assert [r.site.name for r in registry.records("TEAM Bucket")] == ["team"]


def test_the_first_selection_wins_and_is_never_replaced(database_url: str) -> None:
    registry = SiteRegistry(database_url)
    first, created = registry.select(42, "old", 7)
    assert created and first.site == "old" and first.applied_at is None
    second, created = registry.select(42, "team", 8)
    assert not created and second.site == "old" and second.selected_by == 7
    registry.mark_applied(42)
    applied = registry.selection(42)
    assert applied is not None and applied.applied_at is not None
    assert registry.datasets_using("old") == 1 and registry.datasets_using("team") == 0
    assert registry.selection(43) is None


def test_direct_mode_is_only_for_s3_with_both_keys() -> None:
    local = StorageSite("d", "local", path="/srv/d", access_mode="direct")
    with pytest.raises(InvalidInput, match="s3"):
        validate_site(local, "ro")
    site = StorageSite("d", "s3", bucket="b", credentials_ref="rw", access_mode="direct")
    with pytest.raises(InvalidInput, match="credentials_ref_readonly"):
        validate_site(site, None)
    moved = StorageSite("d", "s3", bucket="c", prefix="q", credentials_ref="rw")
    assert placement_changes(site, moved) == ["bucket", "prefix"]


@pytest.mark.parametrize(
    "path",
    ["/srv/../etc", "/srv/x/..", "/srv/./x", "/srv//x", "/srv/x/", "//srv/x", "/srv/x\\..\\y"],
)
def test_a_local_path_that_normalising_would_change_is_refused(path: str) -> None:
    with pytest.raises(InvalidInput, match="path must be a normalised absolute directory"):
        validate_site(StorageSite("d", "local", path=path))


@given(path=st.text(alphabet="/.a\\", max_size=12))
def test_an_accepted_local_path_is_its_own_normal_form(path: str) -> None:
    try:
        validate_site(StorageSite("d", "local", path=path))
    except InvalidInput:
        return
    assert path == posixpath.normpath(path) and ".." not in path.split("/")
    assert path.startswith("/") and not path.startswith("//")
