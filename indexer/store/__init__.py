"""The index store: datasets, refs and files from GitLab + DVC, searchable with permissions.

`open_index(url)` returns the backend for `DSHUB_INDEX_URL` (migrated and ready). See
`indexer.store.base.IndexStore` for the operations the jobs use, and `indexer.read.search` for
permission-filtered queries.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from indexer.store.base import (
    Dataset,
    IndexedFile,
    IndexStore,
    ManifestRow,
    Ref,
    RefInfo,
    StaleRef,
    StoreError,
)

__all__ = [
    "Dataset",
    "IndexStore",
    "IndexedFile",
    "ManifestRow",
    "Ref",
    "RefInfo",
    "StaleRef",
    "StoreError",
    "open_index",
]


def open_index(url: str, *, migrate: bool = True) -> IndexStore:
    """The index store for `url` (`sqlite:///path` or `postgresql://…`), migrated unless told not to."""
    scheme = urlsplit(url).scheme
    store: IndexStore
    if scheme == "sqlite":
        from indexer.store.sqlite import SqliteIndexStore

        store = SqliteIndexStore(url)
    elif scheme in ("postgresql", "postgres"):
        from indexer.store.postgres import PostgresIndexStore

        store = PostgresIndexStore(url)
    else:
        raise StoreError(f"unsupported index URL {url!r}: use sqlite:///path or postgresql://…")
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store
